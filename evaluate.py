"""Objective metrics of generated speech against its reference recordings.

    python evaluate.py --generated_dir generated_files --reference_dir LJSpeech-1.1/wavs --output_csv metrics.csv
    python evaluate.py --checkpoint_file cp_hifigan/g_02500000 --reference_dir test_wavs --output_csv metrics.csv

The first form pairs files by name (`<name>.wav`, `<name>_generated.wav` or
`<name>_generated_e2e.wav` in --generated_dir with `<name>.wav` in --reference_dir); the second
vocodes the mel of every reference wav with the checkpoint (synthesis.py) and scores the result.
Both signals of a pair are trimmed to the shorter one. Metrics (definitions in the README,
"Evaluation"): the paper's validation mel L1, multi-resolution STFT distance, wide-band PESQ,
STOI, mel cepstral distortion, F0 RMSE, periodicity error and voiced/unvoiced F1. PESQ and STOI
need the optional `pesq` / `pystoi` packages (requirements-extra.txt) and are skipped with a
notice without them.

The metrics themselves are in metrics.py (also used by train.py's `--validation_metrics`).
"""

import argparse
import csv
import functools
import os
import sys

import numpy as np

from meldataset import load_audio, write_pcm16
from metrics import HIGHER_IS_BETTER, METRICS, available_metrics, compute_metrics, trim_pair
from synthesis import check_workload, load_generator, vocode, wav_to_mel
from synthesis_files import SAMPLING_OPTIONS, SYNTHESIS_SETTINGS, estimate_frames
from utils import DEFAULT_CONFIG, UserError, default_device, exit_with_user_error, load_config

# available_metrics, compute_metrics: re-exported for train.py until it imports them from metrics
__all__ = ["available_metrics", "compute_metrics", "main"]

GENERATED_SUFFIXES = ("_generated_e2e", "_generated")  # inference_e2e.py / inference.py output names


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def reference_name(generated_file: str) -> str:
    """`x_generated.wav` / `x_generated_e2e.wav` / `x.wav` -> `x.wav`."""
    stem = os.path.splitext(os.path.basename(generated_file))[0]
    for suffix in GENERATED_SUFFIXES:
        if stem.endswith(suffix):
            return stem[: -len(suffix)] + ".wav"
    return stem + ".wav"


def match_files(generated_dir: str, reference_dir: str, notify=print) -> list[tuple[str, str]]:
    """(reference, generated) path pairs, sorted by name; unmatched generated files are reported."""
    for folder, flag in ((generated_dir, "--generated_dir"), (reference_dir, "--reference_dir")):
        if not os.path.isdir(folder):
            raise UserError(f"{folder}: folder not found; check {flag}")
    pairs = []
    for name in sorted(os.listdir(generated_dir)):
        if not name.lower().endswith(".wav"):
            continue
        reference = os.path.join(reference_dir, reference_name(name))
        if os.path.isfile(reference):
            pairs.append((reference, os.path.join(generated_dir, name)))
        else:
            notify(f"warning: {name}: no reference {reference_name(name)} in {reference_dir}; skipped")
    if not pairs:
        raise UserError(
            f"{generated_dir}: no wav matches a file of {reference_dir} by name "
            "(<name>.wav, <name>_generated.wav or <name>_generated_e2e.wav); check both folders"
        )
    return pairs


def summarize(rows: list[dict], columns: list[str]) -> str:
    """A plain-text table: for each column its mean, min and max over the files (NaN ignored)."""
    lines = [f"{'metric':<18}{'mean':>10}{'min':>10}{'max':>10}{'files':>7}  better"]
    for col in columns:
        values = np.array([r[col] for r in rows], dtype=np.float64)
        ok = values[np.isfinite(values)]
        if ok.size:
            stats = f"{ok.mean():>10.4f}{ok.min():>10.4f}{ok.max():>10.4f}"
        else:
            stats = f"{'nan':>10}{'nan':>10}{'nan':>10}"
        better = "higher" if col in HIGHER_IS_BETTER else "lower"
        lines.append(f"{col:<18}{stats}{ok.size:>7d}  {better}")
    return "\n".join(lines)


def write_csv(path: str, rows: list[dict], columns: list[str]) -> None:
    """One row per file plus a final `MEAN` row (NaN-ignoring means)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "seconds", *columns])
        for r in rows:
            writer.writerow([r["file"], f"{r['seconds']:.3f}", *(f"{r[c]:.6g}" for c in columns)])
        means = []
        for col in columns:
            values = np.array([r[col] for r in rows], dtype=np.float64)
            means.append(f"{np.nanmean(values):.6g}" if np.isfinite(values).any() else "nan")
        writer.writerow(["MEAN", f"{sum(r['seconds'] for r in rows):.3f}", *means])


def checkpoint_jobs(
    checkpoint_file: str, config_file, reference_dir: str, device: str, output_dir=None, ema=False, settings=None
):
    """(name, load) per wav of `reference_dir`; `load()` -> (reference, its mel vocoded by the
    checkpoint (`ema`: its EMA weights), h), also written as 16-bit PCM to
    `<output_dir>/<name>_generated.wav` if given."""
    generator, h = load_generator(checkpoint_file, config_file, device=device, ema=ema, **(settings or {}))
    if not os.path.isdir(reference_dir):
        raise UserError(f"{reference_dir}: folder not found; check --reference_dir")
    names = sorted(n for n in os.listdir(reference_dir) if n.lower().endswith(".wav"))
    if not names:
        raise UserError(f"{reference_dir}: no .wav files; check --reference_dir")
    check_workload(generator, h, (estimate_frames(os.path.join(reference_dir, n), "wav", h) for n in names))
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)

    def load(path):
        reference = load_audio(path, h.sampling_rate)
        generated = vocode(generator, h, wav_to_mel(path, h))
        if output_dir:
            name = os.path.splitext(os.path.basename(path))[0]
            write_pcm16(os.path.join(output_dir, f"{name}_generated.wav"), generated, h.sampling_rate)
        return reference, generated, h

    return [(name, functools.partial(load, os.path.join(reference_dir, name))) for name in names]


def folder_jobs(generated_dir: str, reference_dir: str, h, notify=print):
    """(name, load) per matched pair; `load()` -> (reference, generated, h)."""

    def load(reference, generated):
        return load_audio(reference, h.sampling_rate), load_audio(generated, h.sampling_rate), h

    return [
        (os.path.basename(g), functools.partial(load, r, g))
        for r, g in match_files(generated_dir, reference_dir, notify)
    ]


def evaluate(a, notify=print) -> tuple[list[dict], list[str]]:
    """Score every pair named by the arguments -> (rows, names of files that could not be read)."""
    metrics = available_metrics(a.metrics.split(",") if a.metrics else None, notify)
    if a.checkpoint_file:
        device = a.device or default_device()
        settings = {name: getattr(a, name) for name in SYNTHESIS_SETTINGS}
        jobs = checkpoint_jobs(a.checkpoint_file, a.config, a.reference_dir, device, a.output_dir, a.ema, settings)
    else:
        jobs = folder_jobs(a.generated_dir, a.reference_dir, load_config(a.config or DEFAULT_CONFIG), notify)
    rows, failed = [], []
    for name, load in jobs:
        try:
            reference, generated, h = load()
        except UserError as e:  # one bad file does not stop the others
            print(f"error: {e}; skipped", file=sys.stderr)
            failed.append(name)
            continue
        reference, generated = trim_pair(reference, generated)
        row = {"file": name, "seconds": reference.size / h.sampling_rate}
        row.update(compute_metrics(reference, generated, h, metrics))
        rows.append(row)
        notify(f"{name}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k != "file"))
    if not rows:
        raise UserError(f"none of the {len(jobs)} file(s) could be evaluated; see the errors above")
    return rows, failed


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Objective metrics of generated speech against references.")
    parser.add_argument("--reference_dir", required=True, help="folder of the reference (ground-truth) wavs")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--generated_dir",
        help="folder of generated wavs named <name>.wav, <name>_generated.wav or <name>_generated_e2e.wav",
    )
    source.add_argument("--checkpoint_file", help="generator checkpoint g_XXXXXXXX: vocode the references' mels first")
    parser.add_argument(
        "--config",
        default=None,
        help="config JSON of the model (default: config.json next to --checkpoint_file, else config_v1.json)",
    )
    parser.add_argument(
        "--ema",
        action="store_true",
        help="with --checkpoint_file: vocode with its EMA weights (ema_XXXXXXXX beside it)",
    )
    parser.add_argument("--output_csv", default=None, help="write per-file metrics and their means to this CSV")
    parser.add_argument("--output_dir", default=None, help="with --checkpoint_file: also save the vocoded wavs here")
    parser.add_argument(
        "--metrics", default=None, help=f"comma-separated subset of {','.join(METRICS)} (default: all available)"
    )
    parser.add_argument(
        "--device", default=None, help="device for --checkpoint_file inference (default: cuda if available, else cpu)"
    )
    for flag, options in SAMPLING_OPTIONS:  # WaveGlow's and WaveNet's settings, as inference.py
        parser.add_argument(flag, **options)
    parser.add_argument("--debug", action="store_true", help="show full tracebacks for user errors")
    a = parser.parse_args(argv)
    try:
        rows, failed = evaluate(a)
        columns = [c for c in rows[0] if c not in ("file", "seconds")]
        if a.output_csv:
            write_csv(a.output_csv, rows, columns)
            print(f"wrote {a.output_csv}")
        print(f"\n{len(rows)} file(s), {sum(r['seconds'] for r in rows):.1f} s of audio")
        print(summarize(rows, columns))
        if failed:
            print(f"{len(failed)} file(s) skipped: {', '.join(failed)}")
    except UserError as e:
        exit_with_user_error(e, a.debug)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
