"""The paper's Table 1 in one command, WaveNet's batched generation speed, and batch throughput over a folder.

    python benchmarks/bench_inference.py                      # Table 1: V1, V2, V3, MelGAN, WaveGlow, WaveNet
    python benchmarks/bench_inference.py --threads 2 1 --wavenet_batches 1 4 16
    python benchmarks/bench_inference.py --checkpoint v1=cp_hifigan/g_02500000 --reference_dir test_wavs
    python benchmarks/bench_inference.py --smoke              # every row on tiny clips, one run (CI)
    python benchmarks/bench_inference.py --folder 100         # 100 clips of 2-10 s through vocode_files

Table mode: each vocoder is built from its published config with random weights (speed does not
depend on their values), weight norm removed, in eval mode, and vocodes a random mel at batch 1 in
fp32 through `synthesis.vocode` (`torch.inference_mode()`), the path `inference_e2e.py` uses:
`--seconds` of audio (10 s) for HiFi-GAN and MelGAN, `--waveglow_seconds` (1 s, sigma 0.6) for
WaveGlow, and `--wavenet_samples` (512) for WaveNet. WaveNet's cost per sample is constant (its
per-layer queues have a fixed size), so its rate holds for any length: it is extrapolated, and the
row says so. `--warmup` untimed runs, then the median of `--runs`; the spread (min to max) is
printed as the noise. CPU with the stated number of threads, and CUDA when available.
Parameters are counted with weight norm removed and truncated to two decimals, as the paper does.
The paper's columns (MOS, parameters, CPU and V100 kHz) sit beside ours: its hardware, not this
machine. The mel L1 and PESQ columns are `evaluate.py`'s means over `--reference_dir` for the
checkpoints given as `--checkpoint NAME=PATH`, and blank for the others.

`--wavenet_batches 1 4 16` adds WaveNet's incremental engine generating that many utterances of
`--wavenet_samples` at once (samples/s summed over the batch), for each CPU thread count.

Folder mode: writes `--folder` synthetic speech-like wavs of 2 to 10 s (V2 by default) and times
`synthesis_files.vocode_files` on them for each `--batch_sizes` and `--workers` (wav reading, mel frontend, generator,
16-bit wav writing): kHz of audio produced per second of wall time, and how many cores were busy
(process CPU time / wall time).
"""

import argparse
import csv
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from typing import NamedTuple

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from meldataset import synth_speechlike  # noqa: E402
from synthesis import as_vocoder, build_generator, vocode  # noqa: E402
from synthesis_files import vocode_files  # noqa: E402
from utils import UserError, config_beside, exit_with_user_error, load_config  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASELINES = os.path.join("configs", "baselines")
# Table 1 rows: name -> published config, label
CONFIGS = {
    "v1": "config_v1.json",
    "v2": "config_v2.json",
    "v3": "config_v3.json",
    "melgan": os.path.join(BASELINES, "config_melgan.json"),
    "waveglow": os.path.join(BASELINES, "config_waveglow.json"),
    "wavenet": os.path.join(BASELINES, "config_wavenet.json"),
}
LABELS = {
    "v1": "HiFi-GAN V1",
    "v2": "HiFi-GAN V2",
    "v3": "HiFi-GAN V3",
    "melgan": "MelGAN",
    "waveglow": "WaveGlow",
    "wavenet": "WaveNet (MoL)",
}


class PaperRow(NamedTuple):
    mos: float
    params: float  # millions
    cpu_khz: float | None  # None: not reported
    gpu_khz: float  # V100


# Paper, Table 1 (LJSpeech; one V100 GPU; an MKL CPU, model and threads not stated). WaveNet's CPU
# speed is not given. Its 24.73 M is the count with weight norm (24,737,396; 24,693,586 without).
PAPER = {
    "v1": PaperRow(4.36, 13.92, 31.74, 3701.29),
    "v2": PaperRow(4.23, 0.92, 214.97, 16863.0),
    "v3": PaperRow(4.05, 1.46, 296.38, 26169.0),
    "melgan": PaperRow(3.79, 4.26, 145.52, 14238.0),
    "waveglow": PaperRow(3.81, 87.73, 4.72, 501.0),
    "wavenet": PaperRow(4.02, 24.73, None, 0.07),
}
PAPER_GROUND_TRUTH_MOS = 4.45
WAVEGLOW_SIGMA = 0.6  # WaveGlow paper's synthesis sigma (config_waveglow.json's infer_sigma)
SAMPLING_SEED = 0  # WaveGlow's noise and WaveNet's draws; speed does not depend on them
QUALITY_METRICS = ("mel_l1", "pesq")  # evaluate.py --metrics
QUALITY_COLUMNS = (("mel_l1", 4), ("pesq_wb", 3))  # their columns in its CSV, decimals printed
HEADER = (
    "| model | params (M) | device | precision | batch | kHz, median (min-max) | x real time | mel L1 | PESQ "
    "| paper MOS | paper params (M) | paper CPU kHz (other CPU) | paper V100 kHz |"
)
# --smoke: one run of 4 frames (MelGAN's least, its reflection padding), WaveNet one frame
SMOKE = {"seconds": 0.05, "waveglow_seconds": 0.05, "wavenet_samples": 256, "runs": 1, "warmup": 0}


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def cpu_name(cpuinfo: str | None = None) -> str:
    """The CPU model, e.g. "Intel Xeon Platinum 8375C CPU @ 2.90GHz": the first `model name` of
    /proc/cpuinfo (or of `cpuinfo`, its text) without (R)/(TM); else `platform`'s name for it."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as f:
                cpuinfo = f.read()
        except OSError:
            cpuinfo = ""
    found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    name = found.group(1) if found else platform.processor() or platform.machine() or "unknown CPU"
    return " ".join(re.sub(r"\((R|r|TM|tm)\)", "", name).split())


def params_m(n: int) -> str:
    """Parameters in millions, truncated (not rounded) to two decimals as the paper's Table 1:
    13,926,017 -> "13.92"."""
    q = n // 10_000
    return f"{q // 100}.{q % 100:02d}"


def _sig(x: float, digits: int) -> str:
    """x with `digits` significant digits and no exponent: 0.0000631 -> "0.000063" (digits 2)."""
    if x <= 0 or x >= 10 ** (digits - 1):
        return f"{x:.0f}"
    return f"{x:.{digits - 1 - math.floor(math.log10(x))}f}"


def realtime(khz: float, sampling_rate: int) -> str:
    """kHz as a multiple of real time: "1.44x", "0.0043x"."""
    x = khz * 1000 / sampling_rate
    return f"{x:.2f}x" if x >= 0.1 else f"{_sig(x, 2)}x"


def _n(count: int, thing: str) -> str:
    return f"{count} {thing}{'s' if count != 1 else ''}"


def _khz(x: float, spread: bool = False) -> str:
    if x >= 10:
        return f"{x:.0f}" if spread else f"{x:.1f}"
    return _sig(x, 3)


def paper_khz(khz: float | None, sampling_rate: int) -> str:
    """The paper's speed as it prints it, with its multiple of real time: "3,701.29 (167.86x)";
    "–" where it gives none."""
    if khz is None:
        return "–"
    return f"{f'{khz:,.2f}'.rstrip('0').rstrip('.')} ({realtime(khz, sampling_rate)})"


def build(version: str, device: str):
    """Random-weight vocoder of `CONFIGS[version]` as the synthesis API runs it (weight norm
    removed, eval, on device; WaveGlow at sigma 0.6; seeded draws) -> (vocoder, h, parameters)."""
    h = load_config(os.path.join(REPO, CONFIGS[version]))
    torch.manual_seed(0)
    model = build_generator(h)
    model.remove_weight_norm()
    params = sum(p.numel() for p in model.parameters())
    options = {"waveglow": {"sigma": WAVEGLOW_SIGMA, "seed": SAMPLING_SEED}, "wavenet": {"seed": SAMPLING_SEED}}
    vocoder = as_vocoder(model, h, CONFIGS[version], **options.get(h.get("model_family", "hifigan"), {}))
    return vocoder.eval().to(device), h, params


def clip_frames(version: str, h, a) -> int:
    """Mel frames timed for `version`: --wavenet_samples, --waveglow_seconds or --seconds of audio
    (at least one frame)."""
    if version == "wavenet":
        samples = a.wavenet_samples
    else:
        samples = int((a.waveglow_seconds if version == "waveglow" else a.seconds) * h.sampling_rate)
    return max(1, samples // h.hop_size)


def time_vocode(generator, h, frames: int, device: str, warmup: int, runs: int) -> list[float]:
    """Wall times of `vocode` on a random mel of `frames` frames at batch 1 (after warm-up)."""
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


def checkpoint_quality(version: str, checkpoint: str, reference_dir: str, device: str) -> dict[str, float]:
    """`evaluate.py`'s means over `reference_dir` for `checkpoint` -> {"mel_l1": .., "pesq_wb": ..}
    (a metric whose optional package is missing is left out, with evaluate.py's notice on stderr).
    `UserError` in one line when it fails or the checkpoint is not of `version`'s family."""
    family = load_config(config_beside(checkpoint)).get("model_family", "hifigan")
    want = load_config(os.path.join(REPO, CONFIGS[version])).get("model_family", "hifigan")
    if family != want:
        raise UserError(
            f"--checkpoint {version}={checkpoint}: its config.json is a {family} model, not {LABELS[version]} "
            f"({want}); pass it under the name of its row"
        )
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "metrics.csv")
        cmd = [sys.executable, os.path.join(REPO, "evaluate.py"), "--checkpoint_file", checkpoint]
        cmd += ["--reference_dir", reference_dir, "--metrics", ",".join(QUALITY_METRICS)]
        cmd += ["--output_csv", out, "--device", device]
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0:
            last = (run.stderr.strip().splitlines() or [f"exit status {run.returncode}"])[-1]
            raise UserError(f"--checkpoint {version}={checkpoint}: evaluate.py failed: {last}")
        sys.stderr.write(run.stderr)
        with open(out, newline="", encoding="utf-8") as f:
            mean = list(csv.DictReader(f))[-1]  # the MEAN row
    return {c: float(mean[c]) for c, _ in QUALITY_COLUMNS if c in mean}


# ---------------------------------------------------------------------------------------------
# Table 1, WaveNet batches
# ---------------------------------------------------------------------------------------------


def measure(version: str, device: str, a, quality: dict[str, float]) -> tuple[list[str], str | None]:
    """One Table 1 row of `version` on `device` (CPU at torch's current thread count) -> its cells,
    and for WaveNet the note on its extrapolation."""
    generator, h, params = build(version, device)
    frames = clip_frames(version, h, a)
    samples = frames * h.hop_size
    times = time_vocode(generator, h, frames, device, a.warmup, a.runs)
    del generator  # WaveGlow's weights are 350 MB
    khz = samples / statistics.median(times) / 1000
    measured = f"{_khz(khz)} ({_khz(samples / max(times) / 1000, True)}-{_khz(samples / min(times) / 1000, True)})"
    threads = torch.get_num_threads()
    where = f"{cpu_name()}, {_n(threads, 'thread')}" if device == "cpu" else torch.cuda.get_device_name()
    note = None
    if version == "wavenet":
        measured += f", {samples} samples, extrapolated"
        note = (
            f"WaveNet on {where}: timed on {samples} samples ({_n(frames, 'mel frame')}) and extrapolated (a sample "
            "costs the same at any length: fixed-size per-layer queues); 10 s of audio takes about "
            f"{10 * h.sampling_rate / (khz * 1000) / 60:.0f} min at this rate."
        )
    paper = PAPER[version]
    cells = [LABELS[version], params_m(params), where, "fp32", "1", measured, realtime(khz, h.sampling_rate)]
    cells += [f"{quality[c]:.{d}f}" if c in quality else "" for c, d in QUALITY_COLUMNS]
    cells += [f"{paper.mos:.2f}", f"{paper.params:.2f}"]
    cells += [paper_khz(paper.cpu_khz, h.sampling_rate), paper_khz(paper.gpu_khz, h.sampling_rate)]
    print(f"{version} {where}: {_khz(khz)} kHz median of {len(times)}", file=sys.stderr)
    return cells, note


def table(a, checkpoints: dict[str, str]) -> None:
    """Table 1: every --versions row on every device, the quality columns from evaluate.py (run
    first, so that a bad checkpoint fails before minutes of timing), the paper's columns, notes."""
    devices = [("cpu", n) for n in a.threads or [torch.get_num_threads()]]
    devices += [("cuda", None)] if torch.cuda.is_available() and not a.cpu_only else []
    quality = {v: checkpoint_quality(v, path, a.reference_dir, devices[-1][0]) for v, path in checkpoints.items()}
    load_start = os.getloadavg()[0]
    rows, notes = [], []
    for version in a.versions:
        for device, threads in devices:
            if threads:
                torch.set_num_threads(threads)
            cells, note = measure(version, device, a, quality.get(version, {}))
            rows.append("| " + " | ".join(cells) + " |")
            notes += [note] if note else []
    print(
        f"\nMeasured here: batch 1, fp32, random weights, median of {_n(a.runs, 'run')} after "
        f"{_n(a.warmup, 'warm-up run')}; HiFi-GAN and MelGAN on {a.seconds:g} s of audio, WaveGlow (sigma "
        f"{WAVEGLOW_SIGMA:g}) on {a.waveglow_seconds:g} s, WaveNet on a short clip (below); torch {torch.__version__}; "
        f"{_n(os.cpu_count(), 'core')} visible, load average {load_start:.2f} at the start, "
        f"{os.getloadavg()[0]:.2f} at the end{' (--smoke: one run of a tiny clip, the speeds are noise)' if a.smoke else ''}\n"
    )
    print(HEADER)
    print("| " + " | ".join(["---"] * (HEADER.count("|") - 1)) + " |")
    print("\n".join(rows))
    print("\nparams: weight norm removed, truncated to two decimals as the paper does.")
    for note in notes:
        print(note)
    if quality:
        names = ", ".join(f"{v}={p}" for v, p in checkpoints.items())
        print(
            f"mel L1, PESQ (wide band): evaluate.py means over {a.reference_dir} for {names}; speed: the published config."
        )
    else:
        print("mel L1, PESQ: blank; pass --checkpoint NAME=PATH --reference_dir DIR to fill them from evaluate.py.")
    print(
        "Paper (Table 1, LJSpeech): different hardware, one V100 GPU and an MKL CPU (model and threads not stated); "
        f"no CPU speed for WaveNet (–); ground truth MOS {PAPER_GROUND_TRUTH_MOS:.2f}; x real time at 22.05 kHz. Its "
        "WaveNet 24.73 M is the count with weight norm (24.69 M without)."
    )


def wavenet_batches(a) -> None:
    """WaveNet's incremental engine generating `a.wavenet_batches` utterances of
    `a.wavenet_samples` at once (published config, random weights), for each CPU thread count."""
    generator, h, _ = build("wavenet", "cpu")
    engine = generator.engine()
    frames = clip_frames("wavenet", h, a)
    samples = frames * h.hop_size
    first = a.wavenet_batches[0]
    print(
        f"\nWaveNet (MoL, published config, random weights): B utterances of {samples} samples generated at once; "
        f"fp32, {cpu_name()}, median of {_n(a.runs, 'run')} after {_n(a.warmup, 'warm-up run')}\n"
    )
    print(f"| batch | CPU threads | wall (s), median (min-max) | samples/s, all items | vs batch {first} |")
    print("| --- | --- | --- | --- | --- |")
    for threads in a.threads or [torch.get_num_threads()]:
        torch.set_num_threads(threads)
        base = None
        for b in a.wavenet_batches:
            mel = torch.randn(b, h.num_mels, frames, generator=torch.Generator().manual_seed(0)) - 5
            times = []
            for i in range(a.warmup + a.runs):
                t = time.perf_counter()
                engine.generate(mel, seed=SAMPLING_SEED)
                if i >= a.warmup:
                    times.append(time.perf_counter() - t)
            wall = statistics.median(times)
            rate = b * samples / wall
            base = base or rate
            print(
                f"| {b} | {threads} | {wall:.2f} ({min(times):.2f}-{max(times):.2f}) | {rate:.0f} | {rate / base:.2f}x |"
            )


# ---------------------------------------------------------------------------------------------
# Folder mode
# ---------------------------------------------------------------------------------------------


def folder(a) -> None:
    generator, h, _ = build(a.folder_version, "cpu")
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


def parse_checkpoints(p: argparse.ArgumentParser, a) -> dict[str, str]:
    """--checkpoint NAME=PATH items -> {row name: path}; argparse errors for bad ones."""
    out = {}
    for item in a.checkpoint or []:
        name, sep, path = item.partition("=")
        if not sep or name not in CONFIGS or not path:
            p.error(f"--checkpoint {item}: give NAME=PATH with NAME one of {', '.join(CONFIGS)}")
        if name not in a.versions:
            p.error(f"--checkpoint {item}: {name} is not among --versions ({' '.join(a.versions)})")
        out[name] = path
    if out and not a.reference_dir:
        p.error("--checkpoint needs --reference_dir, the folder of reference wavs that evaluate.py scores against")
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description="The paper's Table 1 measured here (six vocoders), WaveNet batch speed, and folder throughput."
    )
    p.add_argument("--versions", nargs="+", default=list(CONFIGS), choices=tuple(CONFIGS), help="Table 1 rows")
    p.add_argument(
        "--seconds", type=float, default=10.0, help="seconds of audio per run, HiFi-GAN and MelGAN (paper: 10)"
    )
    p.add_argument(
        "--waveglow_seconds",
        type=float,
        default=None,
        help="seconds of audio per WaveGlow run (default: 1, at most --seconds)",
    )
    p.add_argument(
        "--wavenet_samples",
        type=int,
        default=512,
        help="samples per WaveNet run, rounded down to whole mel frames (its rate is extrapolated)",
    )
    p.add_argument("--runs", type=int, default=5, help="timed runs (the median is reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs first")
    p.add_argument(
        "--threads", type=int, nargs="+", default=None, help="torch CPU thread counts, one row each (default: torch's)"
    )
    p.add_argument("--cpu_only", action="store_true", help="skip CUDA even when available")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="every row on a tiny clip, one run, no warm-up (overrides --seconds, --waveglow_seconds, "
        "--wavenet_samples, --runs, --warmup): checks that the table runs; its speeds are noise",
    )
    p.add_argument(
        "--checkpoint",
        action="append",
        metavar="NAME=PATH",
        help="fill the mel L1 and PESQ columns of row NAME (v1, ..., wavenet) from evaluate.py on this "
        "checkpoint (config.json beside it); repeat for several rows",
    )
    p.add_argument(
        "--reference_dir", default=None, help="reference wavs for --checkpoint (evaluate.py --reference_dir)"
    )
    p.add_argument(
        "--wavenet_batches",
        type=int,
        nargs="+",
        default=[],
        help="also time WaveNet generating this many utterances at once, e.g. 1 4 16 (CPU)",
    )
    p.add_argument("--folder", type=int, default=0, help="folder mode: vocode this many synthetic clips of 2-10 s")
    p.add_argument(
        "--clip_seconds", type=float, nargs=2, default=[2.0, 10.0], help="folder mode: shortest and longest clip"
    )
    p.add_argument("--folder_version", default="v2", choices=("v1", "v2", "v3"), help="generator of folder mode")
    p.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 8], help="batch sizes of folder mode")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker processes of folder mode")
    a = p.parse_args(argv)
    if a.smoke:
        for k, v in SMOKE.items():
            setattr(a, k, v)
    if a.waveglow_seconds is None:
        a.waveglow_seconds = min(1.0, a.seconds)
    checkpoints = parse_checkpoints(p, a)
    if a.folder:
        if a.threads:
            torch.set_num_threads(a.threads[0])
        folder(a)
        return
    try:
        table(a, checkpoints)
    except UserError as e:
        exit_with_user_error(e, debug=False)
    if a.wavenet_batches:
        wavenet_batches(a)


if __name__ == "__main__":
    main()
