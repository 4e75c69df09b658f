"""Shared helpers of the benchmark scripts: the repository on `sys.path`, thread settings,
timing statistics, peak memory, the machine's conv and matmul peaks (`measure_peaks`), markdown
tables, and the authors' code (jik876/hifi-gan, a local checkout passed
with `--orig PATH`) imported next to ours for side-by-side runs in one process.

Nothing here is a benchmark by itself; see `bench_speed.py` and `bench_roofline.py`.
"""

import importlib
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import types

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import torch  # noqa: E402

import engine  # noqa: E402
from models import Generator  # noqa: E402
from utils import load_config  # noqa: E402

# Module names that exist in both code bases (the authors' import each other by these names).
_SHARED_NAMES = ("models", "utils", "env", "meldataset")

# The peak shapes (measure_peaks): a large Conv1d of the generator's widest kind and a large
# square matmul; `smoke` shapes only check that the code runs.
PEAK_CONV = dict(channels=512, kernel=7, steps=8192)
PEAK_MATMUL = 2048
SMOKE_PEAK_CONV = dict(channels=64, kernel=7, steps=1024)
SMOKE_PEAK_MATMUL = 256


WEIGHT_G_SCALE = 1.5  # as the shared fixtures: non-trivial activations from a seeded init


def seeded_state_dict(h, seed: int) -> dict:
    """A HiFi-GAN generator state dict (original keys) from a seeded init, every `weight_g` x 1.5."""
    torch.manual_seed(seed)
    sd = Generator(h).state_dict()
    return {k: v * WEIGHT_G_SCALE if k.endswith("weight_g") else v for k, v in sd.items()}


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


def cpu_model() -> str:
    """The CPU's name: `lscpu`'s "Model name", else `platform.processor()`, else "unknown CPU"."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    for line in out.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Model name" and value.strip():
            return " ".join(value.split())
    return platform.processor() or "unknown CPU"


def median_seconds(fn, repeats: int, device: torch.device | str = "cpu") -> float:
    """Median wall seconds of `repeats` calls of `fn()` after one untimed call (CUDA synced)."""
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    fn()
    sync()
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_peaks(threads: int, repeats: int, device: torch.device | str = "cpu", smoke: bool = False) -> dict:
    """GFLOP/s of two compute-bound fp32 kernels on `device` at `threads` intra-op threads, the
    reference points of a roofline: "conv", a Conv1d of batch 1, 512 channels in and out, kernel 7,
    8192 steps (2 * 512 * 512 * 7 * 8192 FLOPs), the faster of `F.conv1d` and the CPU engine's
    convolution (oneDNN, weights prepacked, channels-last: `engine._FastConv`, faster here); "matmul",
    `torch.mm` of two 2048 x 2048 matrices (2 * 2048^3 FLOPs). Medians of `repeats` calls after one
    warm-up; `smoke`: tiny shapes."""

    set_threads(threads)
    device = torch.device(device)
    conv, n = (SMOKE_PEAK_CONV, SMOKE_PEAK_MATMUL) if smoke else (PEAK_CONV, PEAK_MATMUL)
    c, k, t = conv["channels"], conv["kernel"], conv["steps"]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, c, t, generator=gen).to(device)  # (B, C, T)
    w = torch.randn(c, c, k, generator=gen).mul_(k**-0.5 / c**0.5).to(device)
    a, b = (torch.randn(n, n, generator=gen).to(device) for _ in range(2))
    with torch.inference_mode():
        conv_s = median_seconds(lambda: torch.nn.functional.conv1d(x, w, padding=k // 2), repeats, device)
        if device.type == "cpu":
            fast = engine._FastConv(w, torch.zeros(c), k // 2, 1, t)
            x4 = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)  # (B, C, 1, T), the engine's layout
            conv_s = min(conv_s, median_seconds(lambda: fast(x4), repeats, device))
        mm_s = median_seconds(lambda: torch.mm(a, b), repeats, device)
    return {"conv": 2 * c * c * k * t / conv_s / 1e9, "matmul": 2 * n**3 / mm_s / 1e9}


def three_digits(x: float) -> str:
    """`x` to three significant digits, without an exponent (0.00123, 12.3, 1234)."""
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    return f"{x:.{max(0, 2 - math.floor(math.log10(abs(x))))}f}"


def markdown_table(header: list, rows: list[list], left: int = 1) -> str:
    """A markdown table, columns padded to a common width (the first `left` left-aligned, the others
    right-aligned)."""
    cells = [[str(c) for c in r] for r in [header] + rows]
    widths = [max(3, *(len(r[i]) for r in cells)) for i in range(len(header))]

    def line(r: list[str]) -> str:
        return (
            "| " + " | ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) + " |"
        )

    rule = "| " + " | ".join("-" * w for w in widths) + " |"
    return "\n".join([line(cells[0]), rule] + [line(r) for r in cells[1:]])
