"""Inference speed in the format of the paper's Table 1, and batch throughput over a folder.

    python benchmarks/bench_inference.py                    # V1, V2, V3, MelGAN: params, kHz, x real time
    python benchmarks/bench_inference.py --folder 100       # 100 clips of 2-10 s through vocode_files

Table mode: each generator (random weights: speed does not depend on their values; eval mode,
weight norm removed, `torch.inference_mode()`) vocodes a mel of `--seconds` of audio (10 s) at
batch 1 through `synthesis.vocode`, the path `inference_e2e.py` uses. `--warmup` untimed runs,
then the median of `--runs`; the spread (min to max) is printed as the noise. CPU with the stated
number of threads, and CUDA when available.

Folder mode: writes `--folder` synthetic speech-like wavs of 2 to 10 s (V2 by default) and times
`synthesis_files.vocode_files` on them for each `--batch_sizes` and `--workers` (wav reading, mel frontend, generator,
16-bit wav writing): kHz of audio produced per second of wall time, and how many cores were busy
(process CPU time / wall time).
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from meldataset import synth_speechlike  # noqa: E402
from synthesis import build_generator, vocode  # noqa: E402
from synthesis_files import vocode_files  # noqa: E402
from utils import load_config  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Paper, Table 1 (V100 GPU; CPU: MKL, threads not stated): params (M), kHz GPU, kHz CPU.
PAPER = {
    "v1": (13.92, 3701.29, 31.74),
    "v2": (0.92, 16863.0, 214.97),
    "v3": (1.46, 26169.0, 296.38),
    "melgan": (4.26, 14238.0, 145.52),
}
CONFIGS = {"melgan": os.path.join("configs", "baselines", "config_melgan.json")}  # the others: config_<v>.json


def build(version: str, device: str):
    """Random-weight generator of config_<version>.json (or MelGAN's config), weight norm removed,
    eval, on device."""
    h = load_config(os.path.join(REPO, CONFIGS.get(version, f"config_{version}.json")))
    torch.manual_seed(0)
    generator = build_generator(h)
    generator.remove_weight_norm()
    return generator.eval().to(device), h


def time_vocode(generator, h, seconds: float, device: str, warmup: int, runs: int) -> list[float]:
    """Wall times of `vocode` on a `seconds`-long random mel at batch 1 (after warm-up)."""
    frames = int(seconds * h.sampling_rate) // h.hop_size
    mel = (torch.randn(h.num_mels, frames, generator=torch.Generator().manual_seed(0)) - 5).to(device)
    times = []
    for i in range(warmup + runs):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        vocode(generator, h, mel)  # returns numpy: includes the device -> host copy
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return times


def table(a) -> None:
    devices = [("cpu", n) for n in a.threads or [torch.get_num_threads()]]
    devices += [("cuda", None)] if torch.cuda.is_available() and not a.cpu_only else []
    rows = []
    for version in a.versions:
        for device, threads in devices:
            if threads:
                torch.set_num_threads(threads)
            generator, h = build(version, device)
            params = sum(p.numel() for p in generator.parameters())
            times = time_vocode(generator, h, a.seconds, device, a.warmup, a.runs)
            samples = int(a.seconds * h.sampling_rate) // h.hop_size * h.hop_size
            med = statistics.median(times)
            khz = samples / med / 1000
            spread = f"{samples / max(times) / 1000:.0f}-{samples / min(times) / 1000:.0f}"
            where = (
                f"CPU, {torch.get_num_threads()} thread{'s' if torch.get_num_threads() > 1 else ''}"
                if device == "cpu"
                else torch.cuda.get_device_name()
            )
            paper = PAPER[version][1 if device.startswith("cuda") else 2]
            rows.append(
                f"| {version.upper()} | {params / 1e6:.2f} M | {where} | {khz:.1f} ({spread}) | "
                f"{khz * 1000 / h.sampling_rate:.2f}x | {paper:g} ({paper * 1000 / h.sampling_rate:.2f}x) |"
            )
            print(f"{version} {device}: {khz:.1f} kHz median of {len(times)}", file=sys.stderr)
    print(
        f"\n{a.seconds:g} s of audio, batch 1, fp32, median of {a.runs} runs after {a.warmup} warm-up runs; torch {torch.__version__}\n"
    )
    print(
        "| model | params (no weight norm) | device | kHz, median (min-max) | x real time | paper, kHz (x real time) |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    print("\nPaper (Table 1): V100 GPU and an MKL CPU, different hardware; MelGAN's figures are the paper's too.")


def folder(a) -> None:
    generator, h = build(a.folder_version, "cpu")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        import soundfile as sf

        wavs = os.path.join(tmp, "wavs")
        os.makedirs(wavs)
        paths, total = [], 0.0
        for i in range(a.folder):
            seconds = rng.uniform(*a.clip_seconds)
            path = os.path.join(wavs, f"clip_{i:04d}.wav")
            sf.write(path, synth_speechlike(seconds, h.sampling_rate, rng), h.sampling_rate, subtype="PCM_16")
            paths.append(path)
            total += seconds
        vocode_files(generator, h, paths[:4], os.path.join(tmp, "warm"), batch_size=2)  # warm-up
        print(
            f"\n{a.folder} clips of {a.clip_seconds[0]:g}-{a.clip_seconds[1]:g} s ({total:.0f} s of audio), {a.folder_version.upper()} random weights, "
            f"CPU, {torch.get_num_threads()} threads, {os.cpu_count()} cores visible; wav -> mel -> generator -> wav\n"
        )
        print("| batch size | workers x threads | wall (s) | kHz | x real time | cores busy |")
        print("| --- | --- | --- | --- | --- | --- |")
        threads = torch.get_num_threads()
        for b in a.batch_sizes:
            for w in a.workers:
                cpu0 = _cpu_seconds()
                out = os.path.join(tmp, f"out{b}_{w}")
                result = vocode_files(generator, h, paths, out, batch_size=b, workers=w)
                cpu = _cpu_seconds() - cpu0
                if result["failed"]:
                    raise RuntimeError(f"{len(result['failed'])} files failed")
                khz = result["seconds"] * h.sampling_rate / result["wall"] / 1000
                print(
                    f"| {b} | {w} x {max(1, threads // w)} | {result['wall']:.1f} | {khz:.0f} | "
                    f"{result['seconds'] / result['wall']:.1f}x | {cpu / result['wall']:.2f} |"
                )


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the --workers processes)."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="HiFi-GAN inference speed (paper Table 1 format) and folder throughput.")
    p.add_argument(
        "--versions",
        nargs="+",
        default=["v1", "v2", "v3", "melgan"],
        choices=tuple(PAPER),
        help="generators (Table 1 rows)",
    )
    p.add_argument("--seconds", type=float, default=10.0, help="seconds of audio per run (paper: 10)")
    p.add_argument("--runs", type=int, default=5, help="timed runs (the median is reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs first")
    p.add_argument(
        "--threads", type=int, nargs="+", default=None, help="torch CPU thread counts, one row each (default: torch's)"
    )
    p.add_argument("--cpu_only", action="store_true", help="skip CUDA even when available")
    p.add_argument("--folder", type=int, default=0, help="folder mode: vocode this many synthetic clips of 2-10 s")
    p.add_argument(
        "--clip_seconds", type=float, nargs=2, default=[2.0, 10.0], help="folder mode: shortest and longest clip"
    )
    p.add_argument("--folder_version", default="v2", choices=("v1", "v2", "v3"), help="generator of folder mode")
    p.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 8], help="batch sizes of folder mode")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker processes of folder mode")
    a = p.parse_args(argv)
    if a.folder:
        if a.threads:
            torch.set_num_threads(a.threads[0])
        folder(a)
    else:
        table(a)


if __name__ == "__main__":
    main()
