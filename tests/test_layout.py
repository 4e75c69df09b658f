"""The architecture, checked mechanically (issue #12): libraries below, scripts on top.

- No script imports another script (a script is a file with an `if __name__ == "__main__":`
  block; every import counts, also one inside a function).
- The import floors (longest chain of imports between project modules) come in the order
  env -> utils -> models / meldataset / metrics / engine -> synthesis -> scripts; baselines/* sit
  below synthesis, training.py above it (its recipes build generators through it).
- No function in models.py, inference.py, train.py, training.py, synthesis.py or
  synthesis_files.py is longer than 80 lines.
"""

import ast
import pathlib

from conftest import REPO

ROOT = pathlib.Path(REPO)
MAX_FUNCTION_LINES = 80
SHORT_FUNCTION_FILES = ("models.py", "inference.py", "train.py", "training.py", "synthesis.py", "synthesis_files.py")
# the scripts of the issue; each must be recognised as one (it has a __main__ block)
KNOWN_SCRIPTS = {
    "train",
    "inference",
    "inference_e2e",
    "evaluate",
    "export",
    "check_mel",
    "check_data",
    "plot",
    "prepare_filelists",
    "benchmarks.bench_inference",
    "benchmarks.bench_speed",
    "benchmarks.compare",
}
LIBRARY_FLOOR = ("models", "meldataset", "metrics", "engine")  # between utils and synthesis
BASELINES = ("melgan", "waveglow", "wavenet")  # the vocoder families synthesis builds


def _module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    return ".".join(rel.parts)


def _sources() -> dict[str, pathlib.Path]:
    """Module name -> file, for the top-level modules, baselines/* and benchmarks/*."""
    files = sorted(ROOT.glob("*.py")) + sorted(ROOT.glob("baselines/*.py")) + sorted(ROOT.glob("benchmarks/*.py"))
    return {_module_name(p): p for p in files if p.name != "__init__.py"}


def _is_script(tree: ast.Module) -> bool:
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Compare):
            names = [n.id for n in ast.walk(node.test) if isinstance(n, ast.Name)]
            consts = [n.value for n in ast.walk(node.test) if isinstance(n, ast.Constant)]
            if names == ["__name__"] and consts == ["__main__"]:
                return True
    return False


def _imports(tree: ast.Module, name: str, modules: set[str]) -> set[str]:
    """The project modules that module `name` imports anywhere in its file."""
    found = set()
    package = name.rsplit(".", 1)[0] if "." in name else None  # benchmarks/* put their folder on sys.path
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            for candidate in (t, f"{package}.{t}" if package else None):
                if candidate in modules:
                    found.add(candidate)
    return found - {name}


def _graph():
    sources = _sources()
    trees = {m: ast.parse(p.read_text(encoding="utf-8")) for m, p in sources.items()}
    deps = {m: _imports(t, m, set(sources)) for m, t in trees.items()}
    scripts = {m for m, t in trees.items() if _is_script(t)}
    return trees, deps, scripts


def _floors(deps: dict[str, set[str]]) -> dict[str, int]:
    """1 + the longest chain of imports below each module (a module importing nothing: 1)."""
    floors: dict[str, int] = {}

    def floor(m: str, path: tuple) -> int:
        assert m not in path, f"import cycle: {' -> '.join((*path, m))}"
        if m not in floors:
            floors[m] = 1 + max((floor(d, (*path, m)) for d in deps[m]), default=0)
        return floors[m]

    for m in deps:
        floor(m, ())
    return floors


def test_no_script_imports_a_script():
    _, deps, scripts = _graph()
    assert KNOWN_SCRIPTS <= scripts, f"not recognised as scripts: {sorted(KNOWN_SCRIPTS - scripts)}"
    found = {(m, d) for m in deps for d in deps[m] if d in scripts}
    assert found == set(), "scripts imported by other modules (move the code to a library)"


def test_import_floors_come_in_order():
    _, deps, scripts = _graph()
    floors = _floors(deps)
    libraries = {m for m in deps if m not in scripts}
    assert floors["env"] == 1 and floors["utils"] == 2, floors
    assert all(floors[m] > floors["utils"] for m in LIBRARY_FLOOR), floors
    assert floors["synthesis"] > max(floors[m] for m in LIBRARY_FLOOR), floors
    assert all(floors[m] < floors["synthesis"] for m in libraries if m.startswith("baselines.")), floors
    assert floors["training"] > floors["synthesis"], floors  # the recipes build generators through it
    # scripts are on top: above everything they import, and they import libraries only
    for m in scripts:
        assert all(floors[m] > floors[d] and d in libraries for d in deps[m]), (m, deps[m])
    # the synthesis API sits on libraries only: importing it pulls in no folder or CLI machinery
    allowed = {"engine", "meldataset", "models", "utils", "env"} | {f"baselines.{b}" for b in BASELINES}
    assert deps["synthesis"] <= allowed, deps["synthesis"]


def test_functions_fit_on_a_screen():
    long = set()
    for name in SHORT_FUNCTION_FILES:
        tree = ast.parse((ROOT / name).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:
                    long.add((name, node.name))
    assert long == set(), f"functions over {MAX_FUNCTION_LINES} lines"
