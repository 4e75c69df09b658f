"""Check that `.npy` mel-spectrograms from another system (a TTS model, another vocoder's
preprocessing) match this model's frontend before vocoding or fine-tuning with them.

    python check_mel.py ft_dataset/ --config config_v1.json
    python check_mel.py ft_dataset/ --checkpoint_file cp_hifigan/g_02500000 --wavs_dir LJSpeech-1.1/wavs

The frontend (meldataset.mel_spectrogram) gives float arrays of shape (num_mels, T), natural log
of the mel magnitude clamped at 1e-5 (silence = -11.513), T = floor(samples / hop_size) (no
centre padding), from audio in [-1, 1] with the config's fmin/fmax. Without wavs the values are
judged by their statistics (a guess, said so); with `--wavs_dir` (`<id>.wav` for each `<id>.npy`)
each mel is also compared with this frontend's mel of its wav: the frame count, the affine map
between the two (which tells the log base, dB scaling, normalization and level) and the fmax.

One line per finding, with the fix. Exit status 0 when every mel is compatible, 1 otherwise.
"""

import argparse
import math
import os
import sys
from typing import NamedTuple

import numpy as np
import torch

from meldataset import (
    LOG_CLIP,
    LOG_SILENCE,
    AudioError,
    MelError,
    load_audio,
    mel_from_config,
    mel_spectrogram,
    read_npy,
)
from utils import DEFAULT_CONFIG, UserError, config_beside, exit_with_user_error, load_config

LN10 = math.log(10.0)
# Slope of a mel's values against the natural-log mel of this frontend, for common log scales
LOG_SCALES = {
    "ln": 1.0,
    "log10": 1 / LN10,  # log10(magnitude)
    "ln_power": 2.0,  # ln(magnitude^2)
    "db10": 10 / LN10,  # 10 log10(magnitude) (power_to_db applied to a magnitude mel)
    "db20": 20 / LN10,  # 20 log10(magnitude) = 10 log10(power) (amplitude_to_db, power_to_db of power)
}
SLOPE_TOLERANCE = 0.2  # relative: a fitted slope within 20 % of a known scale is that scale (smooth
# TTS outputs give slopes a little below 1 against the true mel)
LEVEL_TOLERANCE = 0.5  # natural-log offset (gain of about +-4 dB) still accepted
LN_MAX_PLAUSIBLE = 4.0  # a full-scale sine gives about 2.3; larger values mean audio not in [-1, 1]
INT16_OFFSET = math.log(32768.0)  # ln mel of int16-scale audio is 10.4 higher
FIT_MIN_CORRELATION = 0.9  # below this the mel is not an affine function of this frontend's mel
FIT_FLOOR_MARGIN = 2.0  # fit only on bins this far above the log floor (clamping is not affine)
FMAX_CANDIDATES = (None, 4000.0, 7600.0, 8000.0, 12000.0)  # common fmax values (None: sr / 2)
FMAX_IMPROVEMENT = 0.5  # another fmax must halve the fit residual to be reported
FLOOR_OVERSHOOT = 3.0  # unclamped values this far below ln(1e-5) are an error, closer only a warning
PER_BAND_MIN_RMSE = 0.1  # a global fit this poor (ln units) ...
PER_BAND_IMPROVEMENT = 0.5  # ... that band-wise fits halve means a per-band normalization
CLIP_FRACTION = 0.005  # share of values sitting exactly at the minimum that marks a clamp floor


class Finding(NamedTuple):
    code: str  # orientation, bands, shape, nonfinite, frames_center, frames, log10, ln_power, db, linear,
    # range01, standardized, symmetric4, normalized, level, floor, fmax, mismatch, rate
    severity: str  # "error" (incompatible) or "warning" (works, but check)
    message: str  # what differs and how to fix it


# ---------------------------------------------------------------------------------------------
# Shape
# ---------------------------------------------------------------------------------------------


def orient(mel: np.ndarray, num_mels: int, frames=None) -> tuple[np.ndarray | None, list[Finding]]:
    """Bring `mel` to (num_mels, T); `frames` (expected T from the wav) settles ambiguous layouts.

    Returns the oriented array (None when the band count is wrong or the shape unusable) and the
    findings about its layout.
    """
    shape = tuple(mel.shape)
    while mel.ndim > 2 and mel.shape[0] == 1:
        mel = mel[0]
    if mel.ndim != 2:
        return None, [Finding("shape", "error", f"shape {shape}; save a 2-D ({num_mels}, T) array (np.save)")]
    rows, cols = mel.shape

    def near(n):  # a time axis of about the wav's frame count
        return frames is not None and abs(n - frames) <= 3

    if rows == num_mels and (frames is None or near(cols) or not near(rows)):
        return mel, []
    if cols == num_mels:
        return mel.T, [
            Finding(
                "orientation",
                "error",
                f"shape {shape} is (T, num_mels); this model takes ({num_mels}, T): save mel.T",
            )
        ]
    # wrong number of bands: the time axis is the one matching the wav, else the longer one
    band_axis = 1 if near(rows) else 0 if near(cols) else int(np.argmin(mel.shape))
    bands = mel.shape[band_axis]
    return None, [
        Finding(
            "bands",
            "error",
            f"shape {shape}: {bands} mel bands (axis {band_axis}) but this model takes {num_mels}; "
            f"recompute with num_mels={num_mels} (or use a model trained on {bands} bands)",
        )
    ]


def frame_findings(frames: int, samples: int, hop_size: int) -> list[Finding]:
    """T against floor(samples / hop): centre padding gives one frame more."""
    expected = samples // hop_size
    if frames == expected:
        return []
    if frames == expected + 1:
        return [
            Finding(
                "frames_center",
                "error",
                f"{frames} frames for {samples} samples = floor(n / {hop_size}) + 1: a centre-padded STFT "
                "(librosa/torchaudio center=True), shifted by half a hop; recompute with center=False after "
                f"reflect-padding (n_fft - hop) / 2 samples on each side (meldataset.mel_spectrogram)",
            )
        ]
    return [
        Finding(
            "frames",
            "error" if abs(frames - expected) > 3 else "warning",
            f"{frames} frames but the wav gives floor({samples} / {hop_size}) = {expected}; check hop_size and "
            "the sampling rate of the mel's frontend",
        )
    ]


# ---------------------------------------------------------------------------------------------
# Values: statistics alone
# ---------------------------------------------------------------------------------------------


def clamp_floor(values: np.ndarray) -> float | None:
    """The minimum, if enough values sit exactly on it to be a clamp (silence) floor."""
    lowest = values.min()
    share = np.mean(np.abs(values - lowest) <= 1e-4 * max(1.0, abs(lowest)))
    return float(lowest) if share >= CLIP_FRACTION else None


def value_findings(mel: np.ndarray) -> list[Finding]:
    """Judge the value scale from statistics: what natural-log mels of speech look like (floor
    ln(1e-5) = -11.51, maximum below about 2.3, spread of several units) against the usual
    alternatives. A guess; the comparison with the wav (`fit_findings`) is the reliable test."""
    v = mel.astype(np.float64).ravel()
    lo, hi, mean, std = v.min(), v.max(), v.mean(), v.std()
    floor = clamp_floor(v)
    desc = f"min {lo:.3g}, max {hi:.3g}, mean {mean:.3g}, std {std:.3g}"
    guess = " (judged from the values; pass --wavs_dir to confirm)"
    if lo >= 0:
        return nonnegative_findings(v, hi, desc, guess)
    if lo < -30 or hi > 20 or hi - lo > 28:
        ref_max = " with ref=max (each clip's peak is 0 dB, the absolute level is lost)" if abs(hi) < 1e-3 else ""
        return [
            Finding(
                "db",
                "error",
                f"values look like decibels{ref_max} ({desc}){guess}; natural log = dB / 8.686 for "
                "20*log10(magnitude) = 10*log10(power), dB / 4.343 for 10*log10(magnitude)",
            )
        ]
    clipped4 = (floor is not None and abs(floor + 4) < 1e-3) or np.mean(np.abs(np.abs(v) - 4) < 1e-4) >= CLIP_FRACTION
    if lo >= -4 - 1e-4 and hi <= 4 + 1e-4 and clipped4:
        return [
            Finding(
                "symmetric4",
                "error",
                f"values are clipped to [-4, 4] ({desc}): symmetric normalization (Tacotron's max_abs_value=4)"
                f"{guess}; undo it to dB (e.g. dB = (mel + 4) / 8 * -min_level_db + min_level_db), then / 8.686",
            )
        ]
    if abs(mean) < 0.5 and 0.5 < std < 1.6:
        return [
            Finding(
                "standardized",
                "error",
                f"values have mean ~0 and std ~1 ({desc}): standardized (mean/variance normalized) or "
                f"scaled to a symmetric range{guess}; undo it with your system's statistics (mel * std + mean)",
            )
        ]
    # log10 of audio in [-1, 1] stays within [-5, about 1]; natural-log speech mels span more than 6.5
    if lo >= -5 - 1e-4 and hi < 1.5 and hi - lo < 6.5:
        return [
            Finding(
                "log10",
                "error",
                f"values span only {hi - lo:.2g} units ({desc}): log10 rather than natural log{guess}; "
                "multiply by ln(10) = 2.3026",
            )
        ]
    return ln_findings(lo, hi, floor)


def nonnegative_findings(v: np.ndarray, hi: float, desc: str, guess: str) -> list[Finding]:
    """`value_findings` for values that are all >= 0 (maximum `hi`): a linear mel, a [0, 1]
    normalization, or something too high to be a natural-log mel."""
    if np.median(v) < 0.2 * hi:
        return [
            Finding(
                "linear",
                "error",
                f"values are all >= 0 and skewed ({desc}): a linear magnitude (or power) mel without log"
                f"{guess}; use np.log(np.maximum(mel, 1e-5)) (for power: 0.5 * np.log(np.maximum(mel, 1e-10)))",
            )
        ]
    if hi <= 1.0 + 1e-4:
        return [
            Finding(
                "range01",
                "error",
                f"values lie in [0, 1] ({desc}): normalized (e.g. Tacotron's (dB - min_level_db) / "
                f"-min_level_db){guess}; undo your system's normalization to dB, then natural log = dB / 8.686",
            )
        ]
    if hi > LN_MAX_PLAUSIBLE:
        return [level_finding(hi)]
    return [Finding("mismatch", "error", f"values are all positive ({desc}); natural-log mels are mostly negative")]


def ln_findings(lo: float, hi: float, floor: float | None) -> list[Finding]:
    """`value_findings` for values that look like natural-log mels: a floor below ln(1e-5) or a
    level too high."""
    found = []
    if lo < LOG_SILENCE - 0.01:
        # a clamp at another floor, or far below it, is a different frontend; a predicted (TTS) mel
        # overshooting the floor a little is only worth a warning
        clamped = floor is not None
        severe = clamped or lo < LOG_SILENCE - FLOOR_OVERSHOOT
        at = f"clamped at {floor:.4g}" if clamped else f"down to {lo:.4g}"
        found.append(
            Finding(
                "floor",
                "error" if severe else "warning",
                f"values {at}, below this frontend's floor ln(1e-5) = {LOG_SILENCE:.4f}, which the model never saw: "
                "use np.log(np.maximum(mel, 1e-5))" + (" (a log of power is also twice too large)" if severe else ""),
            )
        )
    if hi > LN_MAX_PLAUSIBLE:
        found.append(level_finding(hi))
    return found


def level_finding(hi: float) -> Finding:
    return Finding(
        "level",
        "error",
        f"values up to {hi:.3g}: too loud for audio in [-1, 1] (at most about 2.3); if the audio was read as "
        f"int16, divide it by 32768 (the mel is then {INT16_OFFSET:.2f} lower)",
    )


# ---------------------------------------------------------------------------------------------
# Values: against this frontend's mel of the wav
# ---------------------------------------------------------------------------------------------


def reference_mel(audio: np.ndarray, h, fmax="config") -> np.ndarray:
    """This frontend's (num_mels, T) natural-log mel of `audio` (fmax of the config by default)."""
    y = torch.from_numpy(np.asarray(audio, dtype=np.float32))
    if fmax == "config":
        return mel_from_config(y, h)[0].numpy()
    return mel_spectrogram(y, h.n_fft, h.num_mels, h.sampling_rate, h.hop_size, h.win_size, h.fmin, fmax)[0].numpy()


def affine_fit(mel: np.ndarray, ref: np.ndarray) -> tuple[float, float, float, float, float]:
    """Least squares mel = a * ref + b over the bins of `ref` above its floor -> (a, b, r, rmse,
    offset): r the correlation, rmse the residual in units of `ref` (divided by |a|), offset the
    mean of mel - ref (the level difference when both are natural-log mels)."""
    frames = min(mel.shape[1], ref.shape[1])
    x, y = ref[:, :frames].ravel().astype(np.float64), mel[:, :frames].ravel().astype(np.float64)
    keep = x > LOG_SILENCE + FIT_FLOOR_MARGIN
    x, y = x[keep], y[keep]
    if x.size < 10 or x.std() == 0 or y.std() == 0:
        return float("nan"), float("nan"), 0.0, float("inf"), float("nan")
    a, b = np.polyfit(x, y, 1)
    r = float(np.corrcoef(x, y)[0, 1])
    rmse = float(np.sqrt(np.mean((y - a * x - b) ** 2)) / max(abs(a), 1e-12))
    return float(a), float(b), r, rmse, float(np.mean(y - x))


def band_fit(mel: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """`affine_fit` band by band -> (median correlation, pooled residual in units of `ref`)."""
    rs, squares = [], []
    for m, x in zip(mel, ref):
        a, _, r, rmse, _ = affine_fit(m[None], x[None])
        if math.isfinite(a):
            rs.append(r)
            squares.append(rmse**2)
    return (float(np.median(rs)), float(np.sqrt(np.mean(squares)))) if rs else (0.0, float("inf"))


def best_fit(mel: np.ndarray, audio: np.ndarray, h, ref: np.ndarray):
    """The affine fit of `mel` to this frontend's mel `ref` of the wav, also trying the log of a
    linear mel and the other common fmax values. Returns ((a, b, r, rmse, offset), linear,
    findings): an fmax finding when another fmax fits far better."""
    a, b, r, rmse, offset = affine_fit(mel, ref)
    linear = False
    if r < FIT_MIN_CORRELATION and mel.min() >= 0:  # maybe no log at all
        fit = affine_fit(np.log(np.maximum(mel, 1e-12)), ref)
        if fit[2] > r:
            (a, b, r, rmse, offset), linear = fit, True
    found = []
    # fmax: the mel may fit another fmax's reference much better
    best = (rmse, h.fmax)
    for fmax in FMAX_CANDIDATES:
        cand = None if fmax is None or fmax >= h.sampling_rate / 2 else fmax
        if cand == h.fmax or (cand is None and h.fmax is None):
            continue
        fit = affine_fit(np.log(np.maximum(mel, 1e-12)) if linear else mel, reference_mel(audio, h, cand))
        if fit[3] < best[0] * FMAX_IMPROVEMENT:
            best = (fit[3], cand)
            a, b, r, _, offset = fit
    if best[1] != h.fmax:
        found.append(
            Finding(
                "fmax",
                "error",
                f"the mel fits this frontend with fmax={best[1] or h.sampling_rate / 2:g} far better than with the "
                f"config's fmax={h.fmax}; recompute the mels with fmax={h.fmax} (or use a model trained with that fmax)",
            )
        )
    return (a, b, r, rmse, offset), linear, found


def ln_level_findings(offset: float) -> list[Finding]:
    """A natural-log mel's level against the wav's: int16-scale audio, or another gain."""
    if abs(offset - INT16_OFFSET) < LEVEL_TOLERANCE:
        return [
            Finding(
                "level",
                "error",
                f"natural-log mel {offset:.2f} too high: the audio was on the int16 scale; divide it by 32768 first",
            )
        ]
    if abs(offset) > LEVEL_TOLERANCE:
        return [
            Finding(
                "level",
                "warning",
                f"natural-log mel offset by {offset:+.2f} (audio gain x{math.exp(offset):.3g} against the wav); fine if "
                "intended (e.g. peak normalization), otherwise check the audio scaling",
            )
        ]
    return []


def fit_findings(mel: np.ndarray, audio: np.ndarray, h, stats: list[Finding]) -> list[Finding]:
    """Compare with this frontend's mel of the wav: the affine map between them names the log
    base / dB scale / normalization and level; a much better fit with another common fmax is
    reported as an fmax mismatch."""
    ref = reference_mel(audio, h)
    (a, b, r, rmse, offset), linear, found = best_fit(mel, audio, h, ref)
    stats_kind = {f.code for f in stats} & {"standardized", "symmetric4", "range01"}
    band_r, band_rmse = band_fit(mel, ref)
    global_poor = r < FIT_MIN_CORRELATION or (rmse > PER_BAND_MIN_RMSE and band_rmse < PER_BAND_IMPROVEMENT * rmse)
    if global_poor and band_r >= FIT_MIN_CORRELATION:
        code = stats_kind.pop() if stats_kind else "normalized"
        return found + [
            Finding(
                code,
                "error",
                "values are normalized per mel band (each band follows this frontend's mel with its own scale and "
                "offset, e.g. per-band mean/std standardization); undo it with your system's per-band statistics",
            )
        ]
    if r < FIT_MIN_CORRELATION:
        return found + [
            Finding(
                "mismatch",
                "error",
                f"the mel does not follow this frontend's mel of the wav (correlation {r:.2f}); check n_fft, win_size, "
                "hop_size, fmin/fmax, mel scale (Slaney, not HTK) and filter normalization against the config",
            )
        ]
    mapping = f"mel ~ {a:.4g} * ln_mel {b:+.4g}; convert with ln_mel = (mel {-b:+.4g}) / {a:.4g}"
    scale = next((k for k, s in LOG_SCALES.items() if abs(a / s - 1) < SLOPE_TOLERANCE), None)
    if linear:
        kind = "power" if abs(a / 2 - 1) < SLOPE_TOLERANCE else "magnitude"
        return found + [
            Finding(
                "linear",
                "error",
                f"values are a linear {kind} mel without log (ln of the values ~ {a:.3g} * ln_mel + {b:.3g}); "
                f"use np.log(np.maximum(mel, 1e-5))" + (" after a square root" if kind == "power" else ""),
            )
        ]
    if stats_kind or scale is None:
        code = stats_kind.pop() if stats_kind else "normalized"
        named = {
            "standardized": "standardized (mean/variance normalized)",
            "symmetric4": "normalized to [-4, 4]",
            "range01": "normalized to [0, 1]",
            "normalized": "scaled and shifted (normalized)",
        }[code]
        return found + [Finding(code, "error", f"values are {named}: {mapping} (exact only above the clip floor)")]
    if scale == "ln":
        return found + ln_level_findings(offset) + [f for f in stats if f.code == "floor"]
    names = {
        "log10": "log10 of the mel magnitude",
        "ln_power": "natural log of the mel power",
        "db10": "10*log10 of the mel magnitude (dB)",
        "db20": "20*log10 of the mel magnitude = 10*log10 of the power (dB)",
    }
    code = "db" if scale.startswith("db") else scale
    return found + [Finding(code, "error", f"values are {names[scale]}: {mapping}")]


def check_mel(mel: np.ndarray, h, audio: np.ndarray | None = None) -> list[Finding]:
    """All findings for one mel array (any layout), optionally against the audio it was made from
    (mono, at `h.sampling_rate`, in [-1, 1]). An empty list means compatible."""
    mel = np.asarray(mel)
    if not np.issubdtype(mel.dtype, np.floating) and not np.issubdtype(mel.dtype, np.integer):
        return [Finding("shape", "error", f"dtype {mel.dtype}; save a float32 array")]
    if not np.isfinite(mel).all():
        return [Finding("nonfinite", "error", "holds NaN or inf values; regenerate the mel")]
    frames = None if audio is None else audio.size // h.hop_size
    oriented, found = orient(mel, h.num_mels, frames)
    if found and found[0].code == "shape":
        return found
    values = oriented if oriented is not None else mel.reshape(-1, mel.shape[-1])
    stats = value_findings(values)
    if oriented is None or audio is None:
        return found + stats
    found += frame_findings(oriented.shape[1], audio.size, h.hop_size)
    return found + fit_findings(oriented, audio, h, stats)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def mel_files(paths: list[str]) -> list[str]:
    """`.npy` files named directly or found (not recursively) in the given folders, sorted."""
    files = []
    for p in paths:
        if os.path.isdir(p):
            files += sorted(os.path.join(p, n) for n in os.listdir(p) if n.endswith(".npy"))
        elif os.path.isfile(p):
            files.append(p)
        else:
            raise UserError(f"{p}: no such file or folder; pass .npy mel files or folders holding them")
    if not files:
        raise UserError(f"{', '.join(paths)}: no .npy files found")
    return files


def config_for(a):
    """The config: --config, else config.json next to --checkpoint_file, else config_v1.json."""
    if a.config:
        return load_config(a.config), a.config
    if a.checkpoint_file:
        path = config_beside(a.checkpoint_file)
        return load_config(path), path
    return load_config(DEFAULT_CONFIG), DEFAULT_CONFIG


def check_file(path: str, h, wavs_dir=None) -> list[Finding]:
    """Findings for one `.npy` file (and `<wavs_dir>/<id>.wav` when given)."""
    try:
        mel = read_npy(path)
    except MelError as e:  # missing, unreadable or not numbers
        return [Finding("shape", "error", str(e).removeprefix(f"{path}: "))]
    audio, found = None, []
    if wavs_dir:
        wav = os.path.join(wavs_dir, os.path.splitext(os.path.basename(path))[0] + ".wav")
        try:
            audio = load_audio(wav, h.sampling_rate, mixdown=True, on_notice=lambda msg: None)
        except AudioError as e:  # missing, unreadable, or another rate: not compared
            found.append(Finding("rate", "warning", f"{e}; values judged from statistics only"))
    return found + check_mel(mel, h, audio)


def report(files: list[str], h, config_path: str, wavs_dir=None) -> int:
    """Print the frontend, one line per finding of each file and a summary -> the number of
    incompatible files."""
    print(
        f"frontend of {config_path}: ({h.num_mels}, T) natural-log mel (floor ln({LOG_CLIP:g})), "
        f"T = samples // {h.hop_size}, n_fft {h.n_fft}, fmin {h.fmin}, fmax {h.fmax}, {h.sampling_rate} Hz"
    )
    bad, codes = 0, {}
    for path in files:
        findings = check_file(path, h, wavs_dir)
        for f in findings:
            print(f"{path}: {f.severity} [{f.code}] {f.message}")
            codes[f.code] = codes.get(f.code, 0) + 1
        if any(f.severity == "error" for f in findings):
            bad += 1
    summary = ", ".join(f"{c} x{n}" for c, n in sorted(codes.items()))
    print(f"{len(files) - bad} of {len(files)} mel file(s) compatible" + (f" ({summary})" if summary else ""))
    return bad


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Check .npy mels from another system against this model's frontend.")
    parser.add_argument("mels", nargs="+", help=".npy mel files, or folders of them")
    parser.add_argument(
        "--wavs_dir", default=None, help="folder of the source wavs (<id>.wav for <id>.npy): compare with their mels"
    )
    parser.add_argument("--config", default=None, help="the model's config JSON (default: config_v1.json)")
    parser.add_argument("--checkpoint_file", default=None, help="use the config.json next to this checkpoint")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks for user errors")
    a = parser.parse_args(argv)
    try:
        h, config_path = config_for(a)
        bad = report(mel_files(a.mels), h, config_path, a.wavs_dir)
    except UserError as e:
        exit_with_user_error(e, a.debug)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
