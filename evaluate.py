"""Objective metrics of generated speech against its reference recordings.

    python evaluate.py --generated_dir generated_files --reference_dir LJSpeech-1.1/wavs --output_csv metrics.csv
    python evaluate.py --checkpoint_file cp_hifigan/g_02500000 --reference_dir test_wavs --output_csv metrics.csv

The first form pairs files by name (`<name>.wav`, `<name>_generated.wav` or
`<name>_generated_e2e.wav` in --generated_dir with `<name>.wav` in --reference_dir); the second
vocodes the mel of every reference wav with the checkpoint (inference.py) and scores the result.
Both signals of a pair are trimmed to the shorter one. Metrics (definitions in the README,
"Evaluation"): the paper's validation mel L1, multi-resolution STFT distance, wide-band PESQ,
STOI, mel cepstral distortion, F0 RMSE, periodicity error and voiced/unvoiced F1. PESQ and STOI
need the optional `pesq` / `pystoi` packages (requirements-extra.txt) and are skipped with a
notice without them.

The metric functions take 1-D float arrays in [-1, 1] and are also used by train.py
(`--validation_metrics`).
"""

import argparse
import csv
import functools
import importlib.util
import math
import os
import sys
import warnings

import numpy as np
import torch

from meldataset import AudioError, load_wav, mel_from_config
from utils import UserError, exit_with_user_error, load_config

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "config_v1.json")  # scripts' default frontend
GENERATED_SUFFIXES = ("_generated_e2e", "_generated")  # inference_e2e.py / inference.py output names

# Multi-resolution STFT distance: the three resolutions of Parallel WaveGAN (Yamamoto et al., 2020)
MRSTFT_RESOLUTIONS = ((512, 50, 240), (1024, 120, 600), (2048, 240, 1200))  # (n_fft, hop, win)
MRSTFT_MAG_FLOOR = 1e-7  # magnitudes are sqrt(max(re^2 + im^2, 1e-7)), as Parallel WaveGAN

PESQ_RATE = 16000  # wide-band PESQ (ITU-T P.862.2) is defined at 16 kHz

# Mel cepstral distortion: 25 mel-cepstra c0..c24 of the log-mel frame, c0 (energy) excluded
MCD_NUM_CEPSTRA = 25
MCD_CONST = 10.0 * math.sqrt(2.0) / math.log(10.0)  # dB per unit of natural-log cepstral distance

# pyin search range: C2 (65.4 Hz) to C5 (523.3 Hz) covers adult male and female speech
F0_FMIN = 65.40639
F0_FMAX = 523.2511
F0_FRAME_SECONDS = 1024 / 22050  # pyin analysis frame (46 ms); the hop is the config's hop_size

# name -> (column(s), optional package it needs); the order of the CSV and of the summary
METRICS = {
    "mel_l1": (("mel_l1",), None),
    "mrstft": (("mrstft", "mrstft_sc", "mrstft_logmag"), None),
    "pesq": (("pesq_wb",), "pesq"),
    "stoi": (("stoi",), "pystoi"),
    "mcd": (("mcd_db",), None),
    "f0": (("f0_rmse_cents", "f0_rmse_hz", "periodicity_rmse", "vuv_f1"), None),
}
# which direction is better, for the summary table
HIGHER_IS_BETTER = {"pesq_wb", "stoi", "vuv_f1"}


# ---------------------------------------------------------------------------------------------
# Metrics: (reference, generated) 1-D float arrays of the same rate; lengths are trimmed
# ---------------------------------------------------------------------------------------------


def trim_pair(reference: np.ndarray, generated: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both signals as float32 1-D arrays cut to the shorter length."""
    reference = np.asarray(reference, dtype=np.float32).reshape(-1)
    generated = np.asarray(generated, dtype=np.float32).reshape(-1)
    n = min(reference.size, generated.size)
    return reference[:n], generated[:n]


def mel_l1(reference: np.ndarray, generated: np.ndarray, h) -> float:
    """The paper's validation metric: mean |log-mel(ref) - log-mel(gen)| with the training
    frontend and `fmax_for_loss` (natural-log mel, `h.num_mels` bands)."""
    reference, generated = trim_pair(reference, generated)
    mels = mel_from_config(torch.from_numpy(np.stack([reference, generated])), h, fmax_for_loss=True)
    return float(torch.mean(torch.abs(mels[0] - mels[1])))


def _stft_magnitude(y: torch.Tensor, n_fft: int, hop: int, win: int) -> torch.Tensor:
    spec = torch.stft(y, n_fft, hop, win, window=torch.hann_window(win, dtype=y.dtype), return_complex=True)
    return torch.sqrt(torch.clamp(spec.real**2 + spec.imag**2, min=MRSTFT_MAG_FLOOR))


def mrstft(reference: np.ndarray, generated: np.ndarray) -> dict:
    """Multi-resolution STFT distance (Parallel WaveGAN's auxiliary loss, as a metric).

    At each resolution: spectral convergence ||S_ref - S_gen||_F / ||S_ref||_F and log-magnitude
    L1 mean |log S_ref - log S_gen|; each averaged over the resolutions. Returns
    {"mrstft": sc + logmag, "mrstft_sc": sc, "mrstft_logmag": logmag}.
    """
    reference, generated = trim_pair(reference, generated)
    y = torch.from_numpy(np.stack([reference, generated])).double()
    sc, logmag = 0.0, 0.0
    for n_fft, hop, win in MRSTFT_RESOLUTIONS:
        mag = _stft_magnitude(y, n_fft, hop, win)  # (2, F, N)
        sc += float(torch.linalg.norm(mag[0] - mag[1]) / torch.linalg.norm(mag[0]))
        logmag += float(torch.mean(torch.abs(torch.log(mag[0]) - torch.log(mag[1]))))
    sc, logmag = sc / len(MRSTFT_RESOLUTIONS), logmag / len(MRSTFT_RESOLUTIONS)
    return {"mrstft": sc + logmag, "mrstft_sc": sc, "mrstft_logmag": logmag}


def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """librosa's default (soxr high quality) resampling; identity when the rates agree."""
    if orig_sr == target_sr:
        return audio
    import librosa

    return librosa.resample(audio, orig_sr=orig_sr, target_sr=target_sr)


def pesq_wb(reference: np.ndarray, generated: np.ndarray, sampling_rate: int) -> float:
    """Wide-band PESQ (MOS-LQO, 1.04 to 4.64) after resampling both signals to 16 kHz; NaN when
    PESQ finds no speech or the clip is too short."""
    from pesq import PesqError, pesq

    reference, generated = trim_pair(reference, generated)
    ref16 = resample(reference, sampling_rate, PESQ_RATE)
    gen16 = resample(generated, sampling_rate, PESQ_RATE)
    score = pesq(PESQ_RATE, ref16, gen16, "wb", on_error=PesqError.RETURN_VALUES)
    return float(score) if score >= 0 else float("nan")  # negative values are error codes


def stoi(reference: np.ndarray, generated: np.ndarray, sampling_rate: int) -> float:
    """STOI (0 to 1, pystoi, resamples to 10 kHz itself); NaN when fewer than 30 speech frames
    remain after pystoi's silence removal (it would return 1e-5)."""
    from pystoi import stoi as pystoi_stoi

    reference, generated = trim_pair(reference, generated)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        score = pystoi_stoi(reference.astype(np.float64), generated.astype(np.float64), sampling_rate)
    if any("Not enough STFT frames" in str(w.message) for w in caught):
        return float("nan")
    return float(score)


def mel_cepstra(audio: np.ndarray, h) -> np.ndarray:
    """(N, 24) mel-cepstra c1..c24 of each frame of the model's natural-log mel (fmax = `h.fmax`).

    c_m = (1 / M) sum_k ln mel_k cos(pi m (k + 1/2) / M) over the M bands: the real cepstrum of
    the log-amplitude mel spectrum (even extension on the mel axis), i.e. the orthonormal DCT-II
    divided by sqrt(2 M), so that the usual MCD constant applies. c0 (energy) is dropped.
    """
    from scipy.fft import dct

    mel = mel_from_config(torch.from_numpy(np.asarray(audio, dtype=np.float32)), h)[0].double().numpy()
    cepstra = dct(mel, type=2, norm="ortho", axis=0)[:MCD_NUM_CEPSTRA] / math.sqrt(2 * mel.shape[0])
    return cepstra[1:].T  # (num_mels, N) -> (N, 24)


def mcd(reference: np.ndarray, generated: np.ndarray, h) -> float:
    """Mel cepstral distortion in dB, frames paired by index (no time warping):
    mean over frames of (10 / ln 10) * sqrt(2 * sum_{d=1..24} (c_d - c'_d)^2)."""
    reference, generated = trim_pair(reference, generated)
    diff = mel_cepstra(reference, h) - mel_cepstra(generated, h)
    return float(np.mean(MCD_CONST * np.sqrt(np.sum(diff**2, axis=1))))


def pitch(audio: np.ndarray, sampling_rate: int, hop_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """librosa.pyin F0 track: (f0 in Hz, NaN where unvoiced; voiced flags; voiced probabilities)."""
    import librosa

    frame_length = 2 ** round(math.log2(F0_FRAME_SECONDS * sampling_rate))
    f0, voiced, prob = librosa.pyin(
        np.asarray(audio, dtype=np.float32),
        fmin=F0_FMIN,
        fmax=F0_FMAX,
        sr=sampling_rate,
        frame_length=frame_length,
        hop_length=hop_size,
    )
    return f0, voiced.astype(bool), prob


def f0_metrics(reference: np.ndarray, generated: np.ndarray, sampling_rate: int, hop_size: int) -> dict:
    """F0 and voicing agreement from pyin, frames paired by index.

    f0_rmse_cents / f0_rmse_hz: RMSE of 1200 log2(f_gen / f_ref) and of f_gen - f_ref over the
    frames voiced in both (NaN if none); periodicity_rmse: RMSE of the voiced probabilities over
    all frames; vuv_f1: F1 of the generated voicing decisions with the reference's as truth (1 if
    neither has a voiced frame).
    """
    reference, generated = trim_pair(reference, generated)
    f_ref, v_ref, p_ref = pitch(reference, sampling_rate, hop_size)
    f_gen, v_gen, p_gen = pitch(generated, sampling_rate, hop_size)
    both = v_ref & v_gen
    if both.any():
        cents = 1200.0 * np.log2(f_gen[both] / f_ref[both])
        rmse_cents = float(np.sqrt(np.mean(cents**2)))
        rmse_hz = float(np.sqrt(np.mean((f_gen[both] - f_ref[both]) ** 2)))
    else:
        rmse_cents = rmse_hz = float("nan")
    tp, fp, fn = int(both.sum()), int((~v_ref & v_gen).sum()), int((v_ref & ~v_gen).sum())
    f1 = 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)
    return {
        "f0_rmse_cents": rmse_cents,
        "f0_rmse_hz": rmse_hz,
        "periodicity_rmse": float(np.sqrt(np.mean((p_gen - p_ref) ** 2))),
        "vuv_f1": float(f1),
    }


def available_metrics(requested=None, notify=print) -> list[str]:
    """The requested metric names (default: all) whose optional package is importable; a
    one-line notice (through `notify`) for each one skipped."""
    names = list(METRICS) if requested is None else list(requested)
    unknown = [m for m in names if m not in METRICS]
    if unknown:
        raise UserError(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(METRICS)}")
    ready = []
    for name in names:
        package = METRICS[name][1]
        if package is not None and importlib.util.find_spec(package) is None:
            notify(
                f"notice: {name} skipped: the {package} package is not installed (pip install -r requirements-extra.txt)"
            )
            continue
        ready.append(name)
    return ready


def compute_metrics(reference: np.ndarray, generated: np.ndarray, h, metrics=None) -> dict:
    """All `metrics` (names of METRICS; default all, optional packages assumed present) of one
    pair at `h.sampling_rate` -> {column: value}."""
    metrics = list(METRICS) if metrics is None else metrics
    reference, generated = trim_pair(reference, generated)
    sr = h.sampling_rate
    row = {}
    if "mel_l1" in metrics:
        row["mel_l1"] = mel_l1(reference, generated, h)
    if "mrstft" in metrics:
        row.update(mrstft(reference, generated))
    if "pesq" in metrics:
        row["pesq_wb"] = pesq_wb(reference, generated, sr)
    if "stoi" in metrics:
        row["stoi"] = stoi(reference, generated, sr)
    if "mcd" in metrics:
        row["mcd_db"] = mcd(reference, generated, h)
    if "f0" in metrics:
        row.update(f0_metrics(reference, generated, sr, h.hop_size))
    return row


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


def load_mono(path: str, sampling_rate: int) -> np.ndarray:
    """A mono wav at the config's rate, or an AudioError naming the fix."""
    audio, sr = load_wav(path)
    if audio.ndim != 1:
        raise AudioError(f"{path}: {audio.shape[1]} channels; evaluate mono files")
    if sr != sampling_rate:
        raise AudioError(
            f"{path}: {sr} Hz but the config's sampling_rate is {sampling_rate} Hz; "
            "resample the file or pass the model's --config"
        )
    return audio


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


def checkpoint_jobs(checkpoint_file: str, config_file, reference_dir: str, device: str, output_dir=None):
    """(name, load) per wav of `reference_dir`; `load()` -> (reference, its mel vocoded by the
    checkpoint with inference.py, h), also written to `<output_dir>/<name>_generated.wav` if given."""
    import inference

    generator, h = inference.load_generator(checkpoint_file, config_file, device=device)
    if not os.path.isdir(reference_dir):
        raise UserError(f"{reference_dir}: folder not found; check --reference_dir")
    names = sorted(n for n in os.listdir(reference_dir) if n.lower().endswith(".wav"))
    if not names:
        raise UserError(f"{reference_dir}: no .wav files; check --reference_dir")
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)

    def load(path):
        reference = load_mono(path, h.sampling_rate)
        with torch.inference_mode():
            generated = inference.vocode(generator, h, inference.wav_to_mel(path, h))
        if output_dir:
            name = os.path.splitext(os.path.basename(path))[0]
            import soundfile as sf

            sf.write(os.path.join(output_dir, f"{name}_generated.wav"), generated, h.sampling_rate, subtype="PCM_16")
        return reference, generated, h

    return [(name, functools.partial(load, os.path.join(reference_dir, name))) for name in names]


def folder_jobs(generated_dir: str, reference_dir: str, h, notify=print):
    """(name, load) per matched pair; `load()` -> (reference, generated, h)."""

    def load(reference, generated):
        return load_mono(reference, h.sampling_rate), load_mono(generated, h.sampling_rate), h

    return [
        (os.path.basename(g), functools.partial(load, r, g))
        for r, g in match_files(generated_dir, reference_dir, notify)
    ]


def evaluate(a, notify=print) -> tuple[list[dict], list[str]]:
    """Score every pair named by the arguments -> (rows, names of files that could not be read)."""
    metrics = available_metrics(a.metrics.split(",") if a.metrics else None, notify)
    if a.checkpoint_file:
        device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
        jobs = checkpoint_jobs(a.checkpoint_file, a.config, a.reference_dir, device, a.output_dir)
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
    parser.add_argument("--output_csv", default=None, help="write per-file metrics and their means to this CSV")
    parser.add_argument("--output_dir", default=None, help="with --checkpoint_file: also save the vocoded wavs here")
    parser.add_argument(
        "--metrics", default=None, help=f"comma-separated subset of {','.join(METRICS)} (default: all available)"
    )
    parser.add_argument(
        "--device", default=None, help="device for --checkpoint_file inference (default: cuda if available, else cpu)"
    )
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
