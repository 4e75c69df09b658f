"""Whole-process speed of the command line (what a user waits for), and one file's latency on
several cores. Part of README "Performance".

    python benchmarks/bench_process.py folder --orig /path/to/hifi-gan   # ours vs the authors'
    python benchmarks/bench_process.py folder --versions v2 --files 30 --seconds 10 --repeats 3
    python benchmarks/bench_process.py one_file --threads 2 --seconds 10 --repeats 7

`folder`: `inference_e2e.py` on a folder of `.npy` mels (`--files` of `--seconds` each), started
as a fresh process with its default flags, timed from start to exit (interpreter start, imports,
loading the checkpoint, reading mels, the generator, writing wavs). With `--orig` the authors'
`inference_e2e.py` of that checkout runs on the same folder and checkpoint, alternating with ours
run by run, and the written wavs are compared (their cast to int16 truncates where ours rounds, so
up to 1 LSB apart). `one_file`: one mel through `synthesis.vocode` at 1 thread and at `--threads`,
alternating call by call in one process: the speed-up one utterance gets from more cores.
Checkpoints hold seeded random weights of the published configs (speed does not depend on their
values); medians with min-max.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from common import REPO, cpu_model, markdown_table, repo_config, seeded_state_dict, set_threads, stats, three_digits

# the repository's modules: `common` put its root on sys.path
from models import Generator  # noqa: E402
from synthesis import vocode  # noqa: E402


def write_workload(folder: str, version: str, files: int, seconds: float, seed: int) -> tuple[str, str]:
    """A checkpoint (`g_00000000` + config.json, original key names) and `files` mels of
    `seconds` each under `folder` -> (checkpoint file, mels folder)."""
    h = repo_config(version)
    sd = seeded_state_dict(h, seed)
    cp_dir, mel_dir = os.path.join(folder, "cp"), os.path.join(folder, "mels")
    os.makedirs(cp_dir), os.makedirs(mel_dir)
    torch.save({"generator": sd}, os.path.join(cp_dir, "g_00000000"))
    shutil.copyfile(os.path.join(REPO, f"config_{version}.json"), os.path.join(cp_dir, "config.json"))
    frames = round(seconds * h.sampling_rate / h.hop_size)
    rng = np.random.default_rng(seed)
    for i in range(files):
        mel = (rng.standard_normal((h.num_mels, frames)) - 5.0).astype(np.float32)  # log-mel-like values
        np.save(os.path.join(mel_dir, f"utt{i:03d}.npy"), mel)
    return os.path.join(cp_dir, "g_00000000"), mel_dir


def run_process(script: str, cwd: str, checkpoint: str, mels: str, out: str) -> float:
    """Wall seconds of `python script --checkpoint_file ... --input_mels_dir ... --output_dir ...`
    from start to exit, in `cwd` (its imports resolve there), CPU only."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHONPATH=cwd)
    argv = [sys.executable, script, "--checkpoint_file", checkpoint, "--input_mels_dir", mels, "--output_dir", out]
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"error: {script} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return wall


def max_lsb_diff(ours: str, theirs: str) -> int:
    """Largest int16 difference between same-named wavs of two output folders."""
    import soundfile as sf

    worst = 0
    for name in sorted(os.listdir(ours)):
        a = sf.read(os.path.join(ours, name), dtype="int16")[0].astype(np.int32)
        b = sf.read(os.path.join(theirs, name), dtype="int16")[0].astype(np.int32)
        if a.shape != b.shape:
            raise SystemExit(f"error: {name}: {a.shape[0]} samples ours, {b.shape[0]} the authors'")
        worst = max(worst, int(np.abs(a - b).max()))
    return worst


def fmt_stats(s: dict) -> str:
    return f"{three_digits(s['median'])} ({three_digits(s['min'])}-{three_digits(s['max'])})"


def bench_folder(a) -> None:
    print(f"inference_e2e.py on a folder: {a.files} mels of {a.seconds:g} s, default flags, CPU, {cpu_model()}")
    header = ["model", "audio (s)", "ours: wall s, median (min-max)", "x real time"]
    if a.orig:
        header += ["authors': wall s", "x real time", "ours / authors'", "max diff (LSB)"]
    rows = []
    for version in a.versions:
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint, mels = write_workload(tmp, version, a.files, a.seconds, a.seed)
            runs = {"ours": (os.path.join(REPO, "inference_e2e.py"), REPO)}
            if a.orig:
                runs["authors'"] = (os.path.join(a.orig, "inference_e2e.py"), os.path.abspath(a.orig))
            times = {name: [] for name in runs}
            for r in range(a.warmup + a.repeats):
                for name, (script, cwd) in runs.items():
                    wall = run_process(script, cwd, checkpoint, mels, os.path.join(tmp, f"out_{name[:4]}"))
                    if r >= a.warmup:
                        times[name].append(wall)
            audio = a.files * a.seconds
            ours = stats(times["ours"])
            row = [version.upper(), f"{audio:g}", fmt_stats(ours), f"{audio / ours['median']:.1f}x"]
            if a.orig:
                theirs = stats(times["authors'"])
                diff = max_lsb_diff(os.path.join(tmp, "out_ours"), os.path.join(tmp, "out_auth"))
                row += [fmt_stats(theirs), f"{audio / theirs['median']:.1f}x"]
                row += [f"{theirs['median'] / ours['median']:.2f}x", str(diff)]
            rows.append(row)
            print(" | ".join(row), flush=True)
    print()
    print(markdown_table(header, rows))


def bench_one_file(a) -> None:
    print(f"one file: {a.seconds:g} s of audio, synthesis.vocode, 1 vs {a.threads} threads, CPU, {cpu_model()}")
    header = ["model", "1 thread: s, median (min-max)", f"{a.threads} threads: s", "speed-up", "max abs diff"]
    rows = []
    for version in a.versions:
        h = repo_config(version)
        torch.manual_seed(a.seed)
        g = Generator(h).eval()
        g.remove_weight_norm()
        frames = round(a.seconds * h.sampling_rate / h.hop_size)
        mel = torch.randn(h.num_mels, frames, generator=torch.Generator().manual_seed(a.seed)) - 5.0
        outs, times = {}, {1: [], a.threads: []}
        for r in range(a.warmup + a.repeats):
            for n in times:
                set_threads(n)
                start = time.perf_counter()
                outs[n] = vocode(g, h, mel)
                if r >= a.warmup:
                    times[n].append(time.perf_counter() - start)
        one, many = stats(times[1]), stats(times[a.threads])
        diff = float(np.abs(outs[1] - outs[a.threads]).max())
        rows.append(
            [version.upper(), fmt_stats(one), fmt_stats(many), f"{one['median'] / many['median']:.2f}x", f"{diff:.1e}"]
        )
        print(" | ".join(rows[-1]), flush=True)
    print()
    print(markdown_table(header, rows))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("mode", choices=("folder", "one_file"), help="what to time")
    p.add_argument("--versions", nargs="+", default=["v1", "v2", "v3"], help="configs: v1 v2 v3")
    p.add_argument("--files", type=int, default=30, help="folder: number of mels")
    p.add_argument("--seconds", type=float, default=10.0, help="seconds of audio per mel")
    p.add_argument("--repeats", type=int, default=3, help="timed runs (folder) or calls (one_file) each")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs or calls first, each")
    p.add_argument("--threads", type=int, default=2, help="one_file: the thread count compared with 1")
    p.add_argument("--seed", type=int, default=1234, help="seed of the weights and mels")
    p.add_argument("--orig", default=None, help="folder: a jik876/hifi-gan checkout to compare against")
    a = p.parse_args(argv)
    if a.orig and not os.path.isfile(os.path.join(a.orig, "inference_e2e.py")):
        p.error(f"{a.orig}: no inference_e2e.py; pass --orig the folder of a jik876/hifi-gan checkout")
    return a


def main(argv=None) -> None:
    a = parse_args(argv)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs")
    (bench_folder if a.mode == "folder" else bench_one_file)(a)


if __name__ == "__main__":
    main()
