"""Shared helpers of the benchmark scripts: the repository on `sys.path`, thread settings,
timing statistics, peak memory, and the authors' code (jik876/hifi-gan, a local checkout passed
with `--orig PATH`) imported next to ours for side-by-side runs in one process.

Nothing here is a benchmark by itself; see `bench_speed.py`.
"""

import importlib
import os
import resource
import statistics
import sys
import time
import types

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import torch  # noqa: E402

from utils import load_config  # noqa: E402

# Module names that exist in both code bases (the authors' import each other by these names).
_SHARED_NAMES = ("models", "utils", "env", "meldataset")


def repo_config(version: str):
    """The repository's `config_<version>.json` as a validated AttrDict."""
    return load_config(os.path.join(REPO, f"config_{version}.json"))


def set_threads(threads: int) -> int:
    """Use `threads` intra-op threads (0 keeps torch's default); returns the number in use."""
    if threads > 0:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def stats(times: list[float]) -> dict:
    """Median, min, max and interquartile range of a list of seconds."""
    ordered = sorted(times)
    q = statistics.quantiles(ordered, n=4) if len(ordered) >= 2 else [ordered[0]] * 3
    return {
        "median": statistics.median(ordered),
        "min": ordered[0],
        "max": ordered[-1],
        "iqr": q[2] - q[0],
        "n": len(ordered),
    }


def timed(fn) -> float:
    """Seconds one call of `fn()` takes (wall clock)."""
    return timed_cpu(fn)[0]


def timed_cpu(fn) -> tuple[float, float]:
    """(wall seconds, process CPU seconds over all threads) of one call of `fn()`. On a machine
    shared with other work, CPU seconds show the work itself, wall seconds include the waiting."""
    start, start_cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - start, time.process_time() - start_cpu


def reset_peak_memory() -> None:
    """Restart the peak-RSS count (Linux: /proc/self/clear_refs) and CUDA's peak counter."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_memory_mb() -> float:
    """Peak resident memory since `reset_peak_memory` (Linux VmHWM), else since process start."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cuda_peak_mb() -> float | None:
    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None


def load_authors_code(path: str) -> types.SimpleNamespace:
    """Import the authors' `models` and `meldataset` from the checkout at `path`.

    Their modules use the same names as ours (`models`, `utils`, ...), so ours are moved out of
    `sys.modules` while theirs import, then put back; the returned namespace holds theirs.
    """
    path = os.path.abspath(path)
    if not os.path.isfile(os.path.join(path, "models.py")):
        raise SystemExit(f"error: {path}: no models.py; pass --orig the folder of a jik876/hifi-gan checkout")
    saved = {name: sys.modules.pop(name) for name in _SHARED_NAMES if name in sys.modules}
    sys.path.insert(0, path)
    try:
        theirs = types.SimpleNamespace(
            models=importlib.import_module("models"), meldataset=importlib.import_module("meldataset")
        )
    finally:
        sys.path.remove(path)
        for name in _SHARED_NAMES:
            sys.modules.pop(name, None)
        sys.modules.update(saved)
    return theirs
