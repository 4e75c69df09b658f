"""Check that `.npy` mel-spectrograms from another system (a TTS model, another vocoder's
preprocessing) match this model's frontend, and convert them into it.

    python check_mel.py ft_dataset/ --config config_v1.json
    python check_mel.py ft_dataset/ --checkpoint_file cp_hifigan/g_02500000 --wavs_dir LJSpeech-1.1/wavs
    python check_mel.py tts_mels/ --convert --from espnet --out tts_mels_hifigan/
    python check_mel.py tts_mels/ --wavs_dir wavs/ --convert --out tts_mels_hifigan/    # --from auto

The frontend (meldataset.mel_spectrogram) gives float arrays of shape (num_mels, T), natural log
of the mel magnitude clamped at 1e-5 (silence = -11.513), T = floor(samples / hop_size) (no
centre padding), from audio in [-1, 1] with the config's fmin/fmax. Without wavs the values are
judged by their statistics (a guess, said so); with `--wavs_dir` (`<id>.wav` for each `<id>.npy`)
each mel is identified against its wav (melformats.identify): band count, framing, fmin and fmax
(a grid of common values), magnitude or power spectrum, log base / dB, normalisation with its
fitted parameters, per-band normalisation and layout.

One line per finding, with the fix. Exit status 0 when every mel is compatible, 1 otherwise.
`--convert` writes each mel converted into this frontend (melformats.convert) to `--out` and
says per file what it did and what it could not do; exit status 1 when some file failed.
"""

import argparse
import math
import os
import sys
from typing import NamedTuple

import numpy as np

import melformats
from meldataset import LOG_CLIP, LOG_SILENCE, AudioError, MelError, load_audio, read_npy
from utils import DEFAULT_CONFIG, UserError, config_beside, exit_with_user_error, load_config

LN_MAX_PLAUSIBLE = 4.0  # a full-scale sine gives about 2.3; larger values mean audio not in [-1, 1]
INT16_OFFSET = math.log(32768.0)  # ln mel of int16-scale audio is 10.4 higher
FLOOR_OVERSHOOT = 3.0  # unclamped values this far below ln(1e-5) are an error, closer only a warning
CLIP_FRACTION = 0.005  # share of values sitting exactly at the minimum that marks a clamp floor
# findings about the value map: when the wav comparison finds one, the statistics' floor is moot
VALUE_CODES = {"log10", "ln_power", "db", "linear", "range01", "standardized", "symmetric4", "normalized", "per_band"}


class Finding(NamedTuple):
    code: str  # orientation, bands, shape, nonfinite, frames_center, frames, log10, ln_power, db, linear,
    # range01, standardized, symmetric4, normalized, per_band, level, floor, fmin, fmax, power_mel,
    # mismatch, rate
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


def check_mel(mel: np.ndarray, h, audio: np.ndarray | None = None) -> list[Finding]:
    """All findings for one mel array (any layout), optionally against the audio it was made from
    (mono, at `h.sampling_rate`, in [-1, 1]): `melformats.identify`. An empty list means
    compatible."""
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
    if audio is None:
        return found + stats
    report = melformats.identify(mel, audio, h)
    found = [Finding(*f) for f in report.findings]
    if not {f.code for f in found} & (VALUE_CODES | {"mismatch", "floor"}):
        found += [f for f in stats if f.code == "floor"]  # unclamped overshoot below the floor (TTS outputs)
    return found


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


def source_audio(path: str, h, wavs_dir: str | None) -> tuple[np.ndarray | None, list[Finding]]:
    """The wav `<wavs_dir>/<id>.wav` of `<id>.npy` (None without --wavs_dir, or with a warning
    when it cannot be read at the config's rate)."""
    if not wavs_dir:
        return None, []
    wav = os.path.join(wavs_dir, os.path.splitext(os.path.basename(path))[0] + ".wav")
    try:
        return load_audio(wav, h.sampling_rate, mixdown=True, on_notice=lambda msg: None), []
    except AudioError as e:  # missing, unreadable, or another rate: not compared
        return None, [Finding("rate", "warning", f"{e}; values judged from statistics only")]


def check_file(path: str, h, wavs_dir=None) -> list[Finding]:
    """Findings for one `.npy` file (and `<wavs_dir>/<id>.wav` when given)."""
    try:
        mel = read_npy(path)
    except MelError as e:  # missing, unreadable or not numbers
        return [Finding("shape", "error", str(e).removeprefix(f"{path}: "))]
    audio, found = source_audio(path, h, wavs_dir)
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
    if bad:
        print("convert them into this frontend: add --convert --out DIR (and --from FORMAT without --wavs_dir)")
    return bad


def parse_settings(items: list[str]) -> dict:
    """`--set KEY=VALUE` items -> {key: float, bool, None or str} (melformats.given_format)."""
    given = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set {item}: expected KEY=VALUE, e.g. --set fmin=55 or --set min_level_db=-100")
        words = {"true": True, "false": False, "none": None}
        if value.lower() in words:
            given[key] = words[value.lower()]
        else:
            try:
                given[key] = float(value)
            except ValueError:
                given[key] = value
        if key in ("num_mels", "power") and isinstance(given[key], float):
            given[key] = int(given[key])
    return given


def convert_file(path: str, h, source: str, given: dict, wavs_dir: str | None, out_dir: str) -> list[str]:
    """Convert one `.npy` file into `<out_dir>/<name>.npy` -> the lines to print (what was done,
    what could not be done, the L1 to the wav's mel when it is there). Raises `MelError`."""
    mel = read_npy(path)
    audio, found = source_audio(path, h, wavs_dir)
    lines = [f"warning [{f.code}] {f.message}" for f in found]
    try:
        if source == "auto":
            report = melformats.identify(mel, audio, h)  # without the wav: a guess from the values
            if any(f.code == "mismatch" for f in report.findings):
                raise MelError(f"{path}: not converted: {report.findings[-1].message}")
            how = "guessed from the values alone (pass --wavs_dir to identify it)" if report.guessed else "identified"
            lines.append(f"{how}: " + ("; ".join(f"[{c}]" for c in report.codes) or "this frontend's"))
            fmt = report.format
        else:
            fmt = melformats.preset_format(source, h)
        if given:
            fmt = melformats.given_format(fmt, given)
        out, notes = melformats.convert(mel, fmt, h, audio=audio)
    except ValueError as e:  # no axis of the format's bands, NaN values
        raise MelError(f"{path}: {e}; check --from and --set num_mels") from None
    target = os.path.join(out_dir, os.path.basename(path))
    np.save(target, out)
    lines += notes
    if audio is not None:
        true = melformats.hifigan_mel(audio, h)
        frames = min(true.shape[1], out.shape[1])
        l1 = float(np.abs(out[:, :frames] - true[:, :frames]).mean())
        lines.append(f"L1 to this frontend's mel of the wav: {l1:.3f} (ln units)")
    lines.append(f"written {target} {tuple(out.shape)}")
    return lines


def convert_files(files: list[str], h, source: str, given: dict, wavs_dir: str | None, out_dir: str) -> int:
    """`convert_file` for each file, its lines printed -> the number of files that failed."""
    if os.path.abspath(out_dir) in {os.path.abspath(os.path.dirname(f)) for f in files}:
        raise UserError(f"--out {out_dir} holds the input mels; write the converted ones to another folder")
    os.makedirs(out_dir, exist_ok=True)
    failed = 0
    for path in files:
        try:
            lines = convert_file(path, h, source, given, wavs_dir, out_dir)
        except MelError as e:
            print(f"error: {e}", file=sys.stderr)
            failed += 1
            continue
        for line in lines:
            print(f"{path}: {line}")
    print(f"{len(files) - failed} of {len(files)} mel file(s) converted into {out_dir}")
    return failed


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description="Check .npy mels from another system against this model's frontend, or convert them into it."
    )
    parser.add_argument("mels", nargs="+", help=".npy mel files, or folders of them")
    parser.add_argument(
        "--wavs_dir", default=None, help="folder of the source wavs (<id>.wav for <id>.npy): identify against them"
    )
    parser.add_argument("--config", default=None, help="the model's config JSON (default: config_v1.json)")
    parser.add_argument("--checkpoint_file", default=None, help="use the config.json next to this checkpoint")
    parser.add_argument("--convert", action="store_true", help="convert the mels into this frontend (to --out)")
    parser.add_argument(
        "--from",
        dest="source",
        default="auto",
        choices=("auto",) + melformats.MEL_FORMATS,
        help="--convert: the mels' format, a toolkit preset, or auto (identified against --wavs_dir, else guessed "
        "from the values)",
    )
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="--convert: a parameter of the source format (fmin, fmax, num_mels, center, layout, min_level_db, "
        "ref_level_db, max_norm, symmetric, mean, std, ...); repeat for several",
    )
    parser.add_argument("--out", default=None, help="--convert: folder for the converted <id>.npy")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks for user errors")
    a = parser.parse_args(argv)
    try:
        h, config_path = config_for(a)
        files = mel_files(a.mels)
        if not a.convert:
            if a.out or a.settings or a.source != "auto":
                raise UserError("--from, --set and --out are for --convert; add --convert")
            bad = report(files, h, config_path, a.wavs_dir)
        else:
            if not a.out:
                raise UserError("--convert needs --out DIR, the folder for the converted mels")
            try:
                given = parse_settings(a.settings)
                melformats.given_format(melformats.preset_format("hifigan", h), given)  # names checked once
            except ValueError as e:
                raise UserError(f"--set: {e}") from None
            bad = convert_files(files, h, a.source, given, a.wavs_dir, a.out)
    except UserError as e:
        exit_with_user_error(e, a.debug)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
