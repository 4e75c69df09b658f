"""Mel formats of other systems: their published frontends, identification against the wav, and
conversion into this model's frontend (meldataset.mel_spectrogram).

A foreign mel differs from this frontend in some of: the spectrum the filterbank is applied to
(magnitude |X| or power |X|^2), the filterbank (fmin, fmax, number of bands), the value map (ln,
log10, dB, then a global or per-band normalisation, and a clip), the framing (centre padding gives
one frame more, each half a hop earlier) and the layout ((M, T) or (T, M)). A `MelFormat` holds
these parameters, for a toolkit preset (`preset_format`) or as fitted by `identify`; `convert`
undoes them.

Used by check_mel.py (`identify` with --wavs_dir, `convert` with --convert; `given_format` for
--set), inference_e2e.py --mel_format (`load_mel_as`), train.py --fine_tuning --mel_format
(`mel_loader` for MelDataset) and the data check before fine-tuning (`declared_mismatch` on a
sample of the mels, `matching_format` names the preset that fits).

Toolkit recipes (read for facts in their public code; written here from those facts):
    hifigan      this project: ln(max(1e-5, mel(|X|))), fmin 0, fmax 8000, no centre padding, (M, T)
    tacotron2    NVIDIA/tacotron2 TacotronSTFT: same as hifigan but the STFT reflect-pads n_fft / 2
                 (centre padding: T = samples // hop + 1), magnitude without the 1e-9 under the root
    espnet       kan-bayashi/ParallelWaveGAN logmelfilterbank (used by ESPnet's LJSpeech recipes):
                 log10(max(1e-10, mel(|X|))), fmin 80, fmax 7600, librosa.stft centre (reflect), (T, M)
    coqui        coqui-ai/TTS AudioProcessor defaults: 20 log10(max(1e-8, mel(|X|))) - ref_level_db 20,
                 (S - min_level_db -100) / 100 scaled to [-4, 4] and clipped, fmin 0, fmax sr / 2,
                 librosa.stft centre (reflect), (M, T)
    fastspeech2  ming024/FastSpeech2: audio peak-normalised to 1, then TacotronSTFT (ln, fmin 0,
                 fmax 8000, centre), saved as (T, M)
    librosa      librosa.feature.melspectrogram defaults + power_to_db: power mel (|X|^2), 128 bands,
                 fmin 0, fmax sr / 2, centre with zero padding (librosa >= 0.10), 10 log10(max(1e-10, S))
                 clipped at its maximum - 80 dB (top_db), (M, T); n_fft/hop/win from the caller

All arrays are numpy; audio is mono float in [-1, 1] at the config's rate, (N,).
"""

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch

from meldataset import LOG_CLIP, LOG_SILENCE, MelError, mel_layout, mel_spectrogram, notice, read_npy

LN10 = math.log(10.0)

# --- toolkit constants (values from each toolkit's LJSpeech recipe / defaults) ---------------
TACOTRON2_FMAX = 8000.0  # NVIDIA/tacotron2 hparams.py mel_fmax
TACOTRON2_CLIP = 1e-5  # NVIDIA/tacotron2 audio_processing.dynamic_range_compression clip_val
ESPNET_FMIN, ESPNET_FMAX = 80.0, 7600.0  # ParallelWaveGAN egs/ljspeech/voc1/conf/*.yaml fmin / fmax
ESPNET_EPS = 1e-10  # ParallelWaveGAN bin/preprocess.py logmelfilterbank eps
COQUI_REF_LEVEL_DB = 20.0  # coqui-ai/TTS BaseAudioConfig.ref_level_db
COQUI_MIN_LEVEL_DB = -100.0  # BaseAudioConfig.min_level_db
COQUI_MAX_NORM = 4.0  # BaseAudioConfig.max_norm (symmetric_norm=True, clip_norm=True)
COQUI_SPEC_GAIN = 20.0  # BaseAudioConfig.spec_gain (log_func np.log10)
COQUI_AMP_FLOOR = 1e-8  # TTS/utils/audio/numpy_transforms.amp_to_db (older releases: 1e-5)
FASTSPEECH2_FMAX = 8000.0  # ming024/FastSpeech2 config/LJSpeech/preprocess.yaml mel_fmax
LIBROSA_N_MELS = 128  # librosa.feature.melspectrogram default n_mels
LIBROSA_AMIN = 1e-10  # librosa.power_to_db default amin
LIBROSA_TOP_DB = 80.0  # librosa.power_to_db default top_db

PRESETS = ("hifigan", "tacotron2", "espnet", "coqui", "fastspeech2", "librosa")

# --- identification -------------------------------------------------------------------------
FMIN_GRID = (0.0, 20.0, 50.0, 55.0, 70.0, 80.0, 95.0, 125.0)  # common fmin values (Hz)
FMAX_GRID = (7600.0, 8000.0, 9500.0, 11025.0, 12000.0)  # common fmax values (Hz); > sr / 2 skipped
# Slope of a mel's values against ln of the mel MAGNITUDE, for the common value maps (a mel of
# the power spectrum has about twice the ln of a magnitude mel, so its slope is halved)
LOG_SCALES = {
    "ln": 1.0,
    "log10": 1 / LN10,
    "ln_power": 2.0,  # ln(mel^2) or ln(mel of |X|^2)
    "db10": 10 / LN10,  # 10 log10(magnitude mel)
    "db20": 20 / LN10,  # 20 log10(magnitude mel) = 10 log10(power mel)
}
SLOPE_TOLERANCE = 0.2  # relative: a fitted slope this close to a known scale is that scale
LEVEL_TOLERANCE = 0.5  # ln offset (about +-4 dB) accepted as the same level
FIT_FLOOR_MARGIN = 2.0  # fit only on bins this far (ln) above the floor ln(1e-5): clamps are not affine
FIT_EDGE_FRAMES = 2  # frames left out at each end: padding modes (reflect, zeros) differ there
FIT_MIN_CORRELATION = 0.9  # below this the mel is not an affine function of any candidate
PER_BAND_MIN_RMSE = 0.1  # a global fit this poor (ln units) ...
PER_BAND_IMPROVEMENT = 0.5  # ... that band-wise fits halve means a per-band normalisation
CLIP_FRACTION = 0.005  # share of values sitting exactly at the extreme that marks a clip
# another filterbank, spectrum power or framing must fit this much better (residual ratio) than this
# frontend's: a smoothed (TTS-like) ln mel fits a power mel slightly better (0.595 against 0.62 on
# 2 s of speech smoothed over 3 bands x 5 frames), while an exact recipe fits its own to float
# precision (residual < 1e-3, others > 0.05)
OWN_PREFERENCE = 0.7
LEVEL_IMPLAUSIBLE = 4.0  # ln: a log10 / dB mel this far off the wav's level is a normalisation
INT16_LEVEL = math.log(32768.0)  # ln mel of audio read as int16 without / 32768 is this much higher
SNAP = 1e-3  # relative: a fitted slope (or an offset) this close to a known scale (to 0) is snapped to it
FRAME_SLACK = 3  # frames of difference still read as the same time axis


class Finding(NamedTuple):
    """One difference from this frontend (fields as check_mel.Finding).

    code: the codes of check_mel.Finding (orientation, bands, frames_center, frames, log10,
    ln_power, db, linear, range01, standardized, symmetric4, normalized, level, floor, fmax,
    mismatch, shape, nonfinite) plus fmin, power_mel (the filterbank was applied to |X|^2) and
    per_band (normalised band by band).
    """

    code: str
    severity: str  # "error" (incompatible as it is) or "warning"
    message: str


@dataclasses.dataclass
class MelFormat:
    """The parameters of a mel frontend, as far as conversion needs them.

    Values: v = slope * ln(mel) + offset, then clipped to [clip_low, clip_high], where mel is the
    (num_mels, T) filterbank (fmin, fmax) applied to |X|^power; `linear` means v = mel (no log).
    `band_slope` / `band_offset` ((num_mels,)) replace slope / offset for a per-band
    normalisation. `center`: frames centred on k * hop (T = samples // hop + 1); else this
    frontend's framing (centred on (k + 1/2) * hop, T = samples // hop). `layout`: "MT" or "TM".
    """

    name: str
    num_mels: int
    fmin: float
    fmax: float | None  # None: sampling_rate / 2
    power: int = 1
    slope: float = 1.0
    offset: float = 0.0
    linear: bool = False
    clip_low: float | None = None
    clip_high: float | None = None
    center: bool = False
    layout: str = "MT"
    band_slope: np.ndarray | None = None
    band_offset: np.ndarray | None = None
    level_known: bool = True  # False where the recipe rescales the audio (FastSpeech 2's peak norm)


@dataclasses.dataclass
class Report:
    """What `identify` found: the findings, the source format it fitted (or guessed) and the fit.

    fit: slope, offset (value = slope * ln(mel) + offset), residual (ln units), correlation,
    fmin, fmax, power, center, and the normalisation parameters it derived (min_level_db,
    ref_level_db for dB normalisations; mean, std in ln units for a standardisation).
    """

    findings: list[Finding]
    format: MelFormat
    guessed: bool  # True: judged from statistics alone (no wav)
    fit: dict

    @property
    def codes(self) -> list[str]:
        return [f.code for f in self.findings]


# ---------------------------------------------------------------------------------------------
# Spectra and filterbanks
# ---------------------------------------------------------------------------------------------


def _numpy_audio(audio) -> np.ndarray:
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu().numpy()
    audio = np.asarray(audio, dtype=np.float64)
    if audio.ndim != 1:
        raise ValueError(f"audio of shape {audio.shape}; expected mono (N,)")
    return audio


@functools.lru_cache(maxsize=256)
def filterbank(sampling_rate: int, n_fft: int, num_mels: int, fmin: float, fmax: float | None) -> np.ndarray:
    """(num_mels, n_fft // 2 + 1) Slaney mel filterbank (librosa's default, as every recipe here
    uses), float64, read-only. fmax None: sampling_rate / 2."""
    import librosa

    fb = librosa.filters.mel(sr=sampling_rate, n_fft=n_fft, n_mels=num_mels, fmin=fmin, fmax=fmax, dtype=np.float64)
    fb.flags.writeable = False
    return fb


@functools.lru_cache(maxsize=256)
def _sparse_filterbank(sampling_rate: int, n_fft: int, num_mels: int, fmin: float, fmax: float | None):
    """`filterbank` as a scipy CSR matrix: each band covers a few bins, so identification's many
    products (one per candidate) cost about 1/70 of the dense ones (measured: 0.02 s against 1.3 s
    for 128 products with 170 frames)."""
    from scipy.sparse import csr_matrix

    return csr_matrix(filterbank(sampling_rate, n_fft, num_mels, fmin, fmax))


def power_spectrum(audio, n_fft: int, hop_size: int, win_size: int, center: bool) -> np.ndarray:
    """|STFT|^2 of (N,) audio -> (n_fft // 2 + 1, T), float64, periodic Hann window.

    center=False is this frontend's framing (reflect pad (n_fft - hop) / 2, T = N // hop);
    center=True reflect-pads n_fft / 2 (T = N // hop + 1), as librosa/torch center=True."""
    y = _numpy_audio(audio)
    pad = n_fft // 2 if center else (n_fft - hop_size) // 2
    y = np.pad(y, (pad, pad), mode="reflect")
    frames = 1 + (y.size - n_fft) // hop_size
    idx = np.arange(n_fft)[None, :] + hop_size * np.arange(frames)[:, None]
    window = np.zeros(n_fft)
    start = (n_fft - win_size) // 2
    window[start : start + win_size] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win_size) / win_size)
    spec = np.fft.rfft(y[idx] * window, axis=1)  # (T, n_fft) -> (T, F)
    return (spec.real**2 + spec.imag**2).T


# ---------------------------------------------------------------------------------------------
# The toolkits' frontends (audio -> the mel as that toolkit saves it)
# ---------------------------------------------------------------------------------------------


def hifigan_mel(audio, h) -> np.ndarray:
    """This project's frontend (meldataset.mel_spectrogram with the config) -> (num_mels, N // hop)."""
    y = torch.as_tensor(_numpy_audio(audio), dtype=torch.float32)
    mel = mel_spectrogram(y, h.n_fft, h.num_mels, h.sampling_rate, h.hop_size, h.win_size, h.fmin, h.fmax)
    return mel[0].numpy()


class Stft(NamedTuple):
    """The framing and filterbank of a recipe: the toolkits' LJSpeech values unless given."""

    sampling_rate: int = 22050
    n_fft: int = 1024
    hop_size: int = 256
    win_size: int = 1024
    num_mels: int = 80
    fmin: float = 0.0
    fmax: float | None = None  # None: sampling_rate / 2


def _magnitude_mel(audio, s: Stft) -> np.ndarray:
    """mel(|X|) of librosa.stft with centre (reflect) padding -> (num_mels, N // hop + 1), float64."""
    import librosa

    y = _numpy_audio(audio)
    spc = np.abs(librosa.stft(y, n_fft=s.n_fft, hop_length=s.hop_size, win_length=s.win_size, pad_mode="reflect"))
    return filterbank(s.sampling_rate, s.n_fft, s.num_mels, s.fmin, s.fmax) @ spc


def tacotron2_mel(audio, **stft) -> np.ndarray:
    """NVIDIA Tacotron 2 / WaveGlow (TacotronSTFT.mel_spectrogram): ln(max(1e-5, mel(|X|))) with a
    reflect padding of n_fft / 2 -> (num_mels, N // hop + 1). `stft`: `Stft` fields."""
    s = Stft(fmax=TACOTRON2_FMAX)._replace(**stft)
    y = torch.as_tensor(_numpy_audio(audio), dtype=torch.float32)
    window = torch.hann_window(s.win_size)
    spec = torch.stft(y, s.n_fft, s.hop_size, s.win_size, window, center=True, pad_mode="reflect", return_complex=True)
    fb = torch.from_numpy(filterbank(s.sampling_rate, s.n_fft, s.num_mels, s.fmin, s.fmax).astype(np.float32))
    return torch.log(torch.clamp(fb @ spec.abs(), min=TACOTRON2_CLIP)).numpy()


def espnet_mel(audio, **stft) -> np.ndarray:
    """ParallelWaveGAN / ESPnet logmelfilterbank: log10(max(1e-10, mel(|X|))), librosa.stft centre
    (reflect) -> (N // hop + 1, num_mels), saved time-major. `stft`: `Stft` fields."""
    mel = _magnitude_mel(audio, Stft(fmin=ESPNET_FMIN, fmax=ESPNET_FMAX)._replace(**stft))
    return np.log10(np.maximum(ESPNET_EPS, mel)).T.astype(np.float32)


def coqui_mel(
    audio,
    ref_level_db: float = COQUI_REF_LEVEL_DB,
    min_level_db: float = COQUI_MIN_LEVEL_DB,
    max_norm: float = COQUI_MAX_NORM,
    symmetric: bool = True,
    **stft,
) -> np.ndarray:
    """Coqui TTS AudioProcessor.melspectrogram (defaults): dB of the magnitude mel minus
    ref_level_db, normalised by min_level_db to [-max_norm, max_norm] (symmetric) or
    [0, max_norm], clipped -> (num_mels, N // hop + 1). `stft`: `Stft` fields."""
    mel = _magnitude_mel(audio, Stft()._replace(**stft))
    db = COQUI_SPEC_GAIN * np.log10(np.maximum(COQUI_AMP_FLOOR, mel)) - ref_level_db
    norm = (db - min_level_db) / -min_level_db
    if symmetric:
        return np.clip(2 * max_norm * norm - max_norm, -max_norm, max_norm).astype(np.float32)
    return np.clip(max_norm * norm, 0, max_norm).astype(np.float32)


def fastspeech2_mel(audio, **stft) -> np.ndarray:
    """ming024 FastSpeech 2: the audio peak-normalised to 1 (prepare_align), then TacotronSTFT ->
    (N // hop + 1, num_mels), saved time-major. `stft`: `Stft` fields."""
    y = _numpy_audio(audio)
    y = y / max(np.abs(y).max(), 1e-12)
    return tacotron2_mel(y, **{"fmax": FASTSPEECH2_FMAX, **stft}).T


def librosa_mel(audio, **stft) -> np.ndarray:
    """librosa.feature.melspectrogram (power 2, centre with zeros) + librosa.power_to_db (ref 1,
    amin 1e-10, top_db 80) -> (num_mels, N // hop + 1). `stft`: `Stft` fields."""
    import librosa

    s = Stft(num_mels=LIBROSA_N_MELS)._replace(**stft)
    power = librosa.feature.melspectrogram(
        y=_numpy_audio(audio),
        sr=s.sampling_rate,
        n_fft=s.n_fft,
        hop_length=s.hop_size,
        win_length=s.win_size,
        n_mels=s.num_mels,
        fmin=s.fmin,
        fmax=s.fmax,
    )
    return librosa.power_to_db(power, ref=1.0, amin=LIBROSA_AMIN, top_db=LIBROSA_TOP_DB).astype(np.float32)


def recipe_mel(name: str, audio, h) -> np.ndarray:
    """The mel of preset `name` (see PRESETS) from (N,) audio, with the config's sampling rate,
    n_fft, hop and window, as that toolkit saves it (its layout)."""
    if name == "hifigan":
        return hifigan_mel(audio, h)
    recipes = {
        "tacotron2": tacotron2_mel,
        "espnet": espnet_mel,
        "coqui": coqui_mel,
        "fastspeech2": fastspeech2_mel,
        "librosa": librosa_mel,
    }
    if name not in recipes:
        raise ValueError(f"unknown mel format {name!r}; choose one of {', '.join(PRESETS)}")
    return recipes[name](audio, sampling_rate=h.sampling_rate, n_fft=h.n_fft, hop_size=h.hop_size, win_size=h.win_size)


def preset_format(name: str, h) -> MelFormat:
    """The `MelFormat` of preset `name`, with the parameters its recipe uses."""
    ln = dict(slope=1.0, offset=0.0)
    if name == "hifigan":
        return MelFormat(name, h.num_mels, h.fmin, h.fmax, clip_low=LOG_SILENCE, **ln)
    if name == "tacotron2":
        return MelFormat(name, 80, 0.0, TACOTRON2_FMAX, clip_low=math.log(TACOTRON2_CLIP), center=True, **ln)
    if name == "espnet":
        return MelFormat(
            name,
            80,
            ESPNET_FMIN,
            ESPNET_FMAX,
            slope=1 / LN10,
            clip_low=math.log10(ESPNET_EPS),
            center=True,
            layout="TM",
        )
    if name == "coqui":
        slope, offset = coqui_affine(COQUI_MIN_LEVEL_DB, COQUI_REF_LEVEL_DB, COQUI_MAX_NORM)
        return MelFormat(
            name,
            80,
            0.0,
            None,
            slope=slope,
            offset=offset,
            clip_low=-COQUI_MAX_NORM,
            clip_high=COQUI_MAX_NORM,
            center=True,
        )
    if name == "fastspeech2":
        return MelFormat(
            name,
            80,
            0.0,
            FASTSPEECH2_FMAX,
            clip_low=math.log(TACOTRON2_CLIP),
            center=True,
            layout="TM",
            level_known=False,
            **ln,
        )
    if name == "librosa":
        # the top_db clip depends on each clip's maximum: clip_low is read from the values
        return MelFormat(name, LIBROSA_N_MELS, 0.0, None, power=2, slope=10 / LN10, center=True)
    raise ValueError(f"unknown mel format {name!r}; choose one of {', '.join(PRESETS)}")


def coqui_affine(
    min_level_db: float, ref_level_db: float, max_norm: float, symmetric: bool = True
) -> tuple[float, float]:
    """(slope, offset) of Coqui's normalised dB against ln of the magnitude mel."""
    span = 2 * max_norm if symmetric else max_norm
    slope = span / -min_level_db * COQUI_SPEC_GAIN / LN10
    offset = span * (-ref_level_db - min_level_db) / -min_level_db - (max_norm if symmetric else 0.0)
    return slope, offset


def coqui_levels(slope: float, offset: float, max_norm: float, symmetric: bool = True) -> tuple[float, float]:
    """Inverse of `coqui_affine`: (min_level_db, ref_level_db) from a fitted slope and offset."""
    span = 2 * max_norm if symmetric else max_norm
    min_level_db = -span * COQUI_SPEC_GAIN / (LN10 * slope)
    ref_level_db = -min_level_db - (offset + (max_norm if symmetric else 0.0)) * -min_level_db / span
    return min_level_db, ref_level_db


# ---------------------------------------------------------------------------------------------
# Identification against the wav
# ---------------------------------------------------------------------------------------------


def _fit_stats(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> dict:
    """Least squares y = a * x + b over the entries where w (all (M, T)), globally and band by
    band -> a, b, r, rmse (residual in units of x) and band_a, band_b, band_rmse (pooled)."""
    n_b = w.sum(1)
    sx, sy = (w * x).sum(1), (w * y).sum(1)
    sxx, syy, sxy = (w * x * x).sum(1), (w * y * y).sum(1), (w * x * y).sum(1)
    out = {"a": float("nan"), "b": float("nan"), "r": 0.0, "rmse": float("inf"), "band_rmse": float("inf")}
    n = n_b.sum()
    if n < 10:
        return out
    vx, vy, cxy = (
        sxx.sum() / n - (sx.sum() / n) ** 2,
        syy.sum() / n - (sy.sum() / n) ** 2,
        sxy.sum() / n - sx.sum() * sy.sum() / n**2,
    )
    if vx <= 0 or vy <= 0:
        return out
    a = cxy / vx
    b = (sy.sum() - a * sx.sum()) / n
    out.update(
        a=float(a), b=float(b), r=float(cxy / math.sqrt(vx * vy)), mx=float(sx.sum() / n), my=float(sy.sum() / n)
    )
    out["rmse"] = float(math.sqrt(max(vy - cxy**2 / vx, 0.0)) / max(abs(a), 1e-12))
    # band by band (bands with fewer than 10 usable entries are left out)
    ok = n_b >= 10
    nb = np.where(ok, n_b, 1)
    bvx = sxx / nb - (sx / nb) ** 2
    bvy = syy / nb - (sy / nb) ** 2
    bcxy = sxy / nb - sx * sy / nb**2
    ok &= (bvx > 1e-12) & (bvy > 1e-12)
    if ok.any():
        ba = np.where(ok, bcxy / np.where(ok, bvx, 1), np.nan)
        bb = np.where(ok, (sy - ba * sx) / nb, np.nan)
        res = np.maximum(bvy - bcxy**2 / np.where(ok, bvx, 1), 0.0) / np.where(ok, ba, 1) ** 2
        out["band_a"], out["band_b"] = ba, bb
        out["band_rmse"] = float(math.sqrt(np.sum(res[ok] * n_b[ok]) / n_b[ok].sum()))
        out["band_r"] = float(np.median(bcxy[ok] / np.sqrt(bvx[ok] * bvy[ok])))
    return out


def _clip_values(v: np.ndarray) -> tuple[float | None, float | None]:
    """The low and high clip levels of `v`: an extreme held by at least CLIP_FRACTION of the values."""

    def held(x: float) -> bool:
        return bool(np.mean(np.abs(v - x) <= 1e-5 * max(1.0, abs(x))) >= CLIP_FRACTION)

    lo, hi = float(v.min()), float(v.max())
    return (lo if held(lo) else None), (hi if held(hi) else None)


def _orient(mel: np.ndarray, h, frames: int | None) -> tuple[np.ndarray, str, list[Finding]]:
    """(M, T) view of a 2-D mel and its layout; `frames` (N // hop of the wav) settles which axis is
    time, else the axis of h.num_mels (or of a common band count) is the band axis."""
    rows, cols = mel.shape

    def is_time(n: int) -> bool:
        return frames is not None and -FRAME_SLACK <= n - frames <= FRAME_SLACK + 1

    if frames is not None and (is_time(cols) or is_time(rows)):
        transposed = is_time(rows) and not (is_time(cols) and rows == h.num_mels)
    elif rows == h.num_mels or cols == h.num_mels:
        transposed = rows != h.num_mels
    else:
        transposed = cols in (80, 128) and rows not in (80, 128) or (rows not in (80, 128) and cols < rows)
    if not transposed:
        return mel, "MT", []
    shape = f"({rows}, {cols})"
    return (
        mel.T,
        "TM",
        [Finding("orientation", "error", f"shape {shape} is (T, bands); this model takes (bands, T): save mel.T")],
    )


def _named_scale(slope_mag: float) -> str | None:
    return next((k for k, s in LOG_SCALES.items() if abs(slope_mag / s - 1) < SLOPE_TOLERANCE), None)


def _hz(fmax: float | None, sampling_rate: int) -> float:
    return float(sampling_rate) / 2 if fmax is None else float(fmax)


def identify(mel, audio, h) -> Report:
    """Identify the format of `mel` (any 2-D layout, or (1, M, T)) made from `audio` ((N,) at
    h.sampling_rate, in [-1, 1]): every difference from this frontend as a `Finding`, the fitted
    `MelFormat` (for `convert`) and the fit parameters. Without audio (None) the format is guessed
    from the values' statistics (`Report.guessed`).

    Every candidate of FMIN_GRID x FMAX_GRID (plus the config's), magnitude or power spectrum, with
    or without centre padding, gives a reference ln-mel of the wav with the mel's band count; the
    mel's values are fitted as slope * reference + offset (or, when all >= 0, their log) and the
    candidate with the smallest residual is the format. Findings then name what differs.
    """
    mel = np.asarray(mel)
    while mel.ndim > 2 and mel.shape[0] == 1:
        mel = mel[0]
    if mel.ndim != 2 or not np.issubdtype(mel.dtype, np.number):
        raise ValueError(f"mel of shape {mel.shape} and dtype {mel.dtype}; expected a 2-D float array")
    if not np.isfinite(mel).all():
        raise ValueError("mel holds NaN or inf values")
    if audio is None:
        return guess(mel, h)
    audio = _numpy_audio(audio)
    frames = audio.size // h.hop_size
    v, layout, found = _orient(mel.astype(np.float64), h, frames)
    bands, t = v.shape
    clip_low, clip_high = _clip_values(v)
    usable = np.ones_like(v, dtype=bool)
    if clip_low is not None:
        usable &= v > clip_low + 1e-5 * max(1.0, abs(clip_low))
    if clip_high is not None:
        usable &= v < clip_high - 1e-5 * max(1.0, abs(clip_high))
    tries_linear = v.min() >= 0
    ln_v = np.log(np.maximum(v, 1e-30)) if tries_linear else None
    nyquist = h.sampling_rate / 2
    fmins = sorted({*FMIN_GRID, float(h.fmin)})
    fmaxs = sorted({f for f in (*FMAX_GRID, _hz(h.fmax, h.sampling_rate)) if f <= nyquist})
    centers = (False, True)  # a teacher-forced mel one frame long is not centre-padded: the fit tells
    best, best_band, own = None, None, None
    own_filterbank = (float(h.fmin), _hz(h.fmax, h.sampling_rate), 1, centers[0])
    for center in centers:
        power = power_spectrum(audio, h.n_fft, h.hop_size, h.win_size, center)
        n = min(t, power.shape[1])
        keep = slice(FIT_EDGE_FRAMES, max(n - FIT_EDGE_FRAMES, FIT_EDGE_FRAMES + 1))
        spectra = {1: np.sqrt(power[:, keep]), 2: power[:, keep]}
        y, w0 = v[:, keep], usable[:, keep]
        for fmin in fmins:
            for fmax in fmaxs:
                if fmin >= fmax:
                    continue
                fb = _sparse_filterbank(h.sampling_rate, h.n_fft, bands, fmin, None if fmax == nyquist else fmax)
                for p, spec in spectra.items():
                    ref = np.log(np.maximum(fb @ spec, 1e-30))
                    w = (w0 & (ref / p > LOG_SILENCE + FIT_FLOOR_MARGIN)).astype(np.float64)
                    for linear in (False, True) if tries_linear else (False,):
                        fit = _fit_stats(ref, ln_v[:, keep] if linear else y, w)
                        fit.update(center=center, fmin=fmin, fmax=fmax, power=p, linear=linear)
                        fit["score"] = fit["rmse"] / p
                        fit["band_score"] = fit["band_rmse"] / p
                        if best is None or fit["score"] < best["score"]:
                            best = fit
                        if (fmin, fmax, p, center) == own_filterbank and (own is None or fit["score"] < own["score"]):
                            own = fit
                        if best_band is None or fit["band_score"] < best_band["band_score"]:
                            best_band = fit
    if own is not None and best["score"] > OWN_PREFERENCE * own["score"]:
        best = own  # not clearly better than this frontend's filterbank and framing (e.g. a smoothed TTS mel)
    return _report(v, layout, found, best, best_band, clip_low, clip_high, frames, h)


def _fitted_format(fit: dict, per_band: bool, bands: int, layout: str, clips: tuple, h) -> MelFormat:
    """The `MelFormat` of the chosen fit; a slope within SNAP of a known scale (an offset within
    SNAP of 0) is that scale (0) exactly: the fit carries float32 noise."""
    p, a, b = fit["power"], fit["a"], fit["b"]
    scale = _named_scale(a * p)
    if not per_band and scale is not None and abs(a * p / LOG_SCALES[scale] - 1) < SNAP:
        a = LOG_SCALES[scale] / p
    if not per_band and abs(b) < SNAP * max(1.0, abs(a)):
        b = 0.0
    fmax = None if fit["fmax"] == h.sampling_rate / 2 else fit["fmax"]
    return MelFormat(
        "fitted",
        bands,
        fit["fmin"],
        fmax,
        power=p,
        slope=a,
        offset=b,
        linear=fit["linear"],
        clip_low=clips[0],
        clip_high=clips[1],
        center=fit["center"],
        layout=layout,
    )


def _frontend_findings(fit: dict, bands: int, t: int, frames: int, h) -> list[Finding]:
    """The differences in band count, framing, fmin, fmax and spectrum power of the chosen fit."""
    found = []
    if bands != h.num_mels:
        found.append(
            Finding(
                "bands",
                "error",
                f"{bands} mel bands but this model takes {h.num_mels}; recompute "
                f"with num_mels={h.num_mels} (or convert through the filterbanks, approximately)",
            )
        )
    if fit["center"]:
        found.append(
            Finding(
                "frames_center",
                "error",
                f"{t} frames for {frames} frames of the wav: a centre-padded "
                "STFT (frames centred on k * hop, half a hop before this frontend's); recompute with "
                "center=False after reflect-padding (n_fft - hop) / 2 samples",
            )
        )
    elif t != frames:
        found.append(
            Finding(
                "frames",
                "error" if abs(t - frames) > FRAME_SLACK else "warning",
                f"{t} frames but the wav gives {frames}; check hop_size and the sampling rate of the mel's frontend",
            )
        )
    for key, config in (("fmin", float(h.fmin)), ("fmax", _hz(h.fmax, h.sampling_rate))):
        if fit[key] != config:
            found.append(
                Finding(
                    key,
                    "error",
                    f"the mel fits {key}={fit[key]:g} Hz, the config has {key}={h[key]}; recompute with {key}={h[key]}",
                )
            )
    if fit["power"] == 2:
        found.append(
            Finding(
                "power_mel",
                "error",
                "the filterbank was applied to the power spectrum |X|^2 "
                "(librosa's power=2.0); this model takes the mel of the magnitude |X| (power=1.0)",
            )
        )
    return found


def _report(v, layout, found, best, best_band, clip_low, clip_high, frames, h) -> Report:
    """Findings and the fitted format from the best global and best per-band candidates."""
    bands, t = v.shape
    per_band = (
        best_band is not None
        and best["score"] > PER_BAND_MIN_RMSE
        and best_band["band_score"] < PER_BAND_IMPROVEMENT * best["score"]
        and best_band.get("band_r", 0.0) >= FIT_MIN_CORRELATION
    )
    fit = best_band if per_band else best
    fmt = _fitted_format(fit, per_band, bands, layout, (clip_low, clip_high), h)
    params = {k: fit[k] for k in ("fmin", "fmax", "power", "center", "linear")}
    params.update(slope=fmt.slope, offset=fmt.offset, residual=fit["score"], correlation=fit["r"], bands=bands)
    params.update(mean_reference=fit.get("mx"), mean_values=fit.get("my"))
    params.update(layout=layout, clip_low=clip_low, clip_high=clip_high)
    found += _frontend_findings(fit, bands, t, frames, h)
    if per_band:
        params.update(band_slope=fit["band_a"], band_offset=fit["band_b"], band_residual=fit["band_score"])
        fmt.band_slope, fmt.band_offset = fit["band_a"], fit["band_b"]
        found.append(
            Finding(
                "per_band",
                "error",
                "values are normalised per mel band (each band follows the wav's mel with its own scale and offset, "
                "e.g. per-band mean/variance normalisation); undo it with your system's per-band statistics",
            )
        )
        return Report(found, fmt, False, params)
    if fit["r"] < FIT_MIN_CORRELATION:
        found.append(
            Finding(
                "mismatch",
                "error",
                f"the mel does not follow any candidate frontend's mel of the wav (correlation {fit['r']:.2f}); "
                "check n_fft, win_size, hop_size, the mel scale (Slaney) and filter normalisation",
            )
        )
        return Report(found, fmt, False, params)
    found += _value_findings(v, fmt, params)
    return Report(found, fmt, False, params)


def _value_findings(v: np.ndarray, fmt: MelFormat, params: dict) -> list[Finding]:
    """Name the value map of a fitted global affine (slope, offset against ln of the mel of
    |X|^power); adds the derived normalisation parameters to `params`."""
    a_mag = fmt.slope * fmt.power  # slope against ln of a magnitude mel
    mapping = f"values ~ {fmt.slope:.4g} * ln(mel) {fmt.offset:+.4g}"
    if fmt.linear:
        kind = "power" if abs(a_mag / 2 - 1) < SLOPE_TOLERANCE else "magnitude"
        return [
            Finding("linear", "error", f"values are a linear {kind} mel without log; use np.log(np.maximum(mel, 1e-5))")
        ]
    lo, hi = float(v.min()), float(v.max())
    c = fmt.clip_high if fmt.clip_high is not None else -fmt.clip_low if fmt.clip_low is not None else None
    clipped = fmt.clip_low is not None and c is not None and abs(fmt.clip_low + c) < 1e-4
    symmetric = c is not None and c > 0 and lo >= -c - 1e-4 and hi <= c + 1e-4 and clipped
    # values held at -4 (or at both ends of a symmetric range) are a dB normalisation whatever
    # their statistics (a quiet recording's Coqui mel has mean ~0 and std ~1)
    signal_norm = symmetric and (fmt.clip_high is not None or abs(c - COQUI_MAX_NORM) < 1e-3)
    standard = (
        abs(v.mean()) < 0.5 and 0.5 < v.std() < 1.6 and abs(fmt.offset / a_mag) > LEVEL_TOLERANCE and not signal_norm
    )
    # a standardised ln mel can have a log10-like slope (1 / std of ln mels ~ 0.4): its offset and
    # statistics tell it apart, so it is judged before the named scales
    scale = None if standard else _named_scale(a_mag)
    if scale not in (None, "ln") and abs(_level(fmt, params, scale)) > LEVEL_IMPLAUSIBLE:
        scale = None  # a log base with a gain of e^4 or more is a normalisation with a slope near it
    if not signal_norm and not standard and lo < 0 and max(-lo, hi) <= COQUI_MAX_NORM + 1e-4:
        c, signal_norm = COQUI_MAX_NORM, True  # within [-4, 4] without reaching a clip: max_norm 4 assumed
    if scale is None and signal_norm:
        min_db, ref_db = coqui_levels(a_mag, fmt.offset, c)
        params.update(max_norm=c, min_level_db=min_db, ref_level_db=ref_db)
        return [
            Finding(
                "symmetric4" if abs(c - COQUI_MAX_NORM) < 1e-3 else "normalized",
                "error",
                f"values are dB normalised to [-{c:g}, {c:g}] (Coqui/Tacotron signal_norm): min_level_db {min_db:.1f}, "
                f"ref_level_db {ref_db:.1f} ({mapping})",
            )
        ]
    if scale is None and lo >= 0 and hi <= 1 + 1e-4:
        min_db, ref_db = coqui_levels(a_mag, fmt.offset, 1.0, symmetric=False)
        params.update(max_norm=1.0, min_level_db=min_db, ref_level_db=ref_db)
        return [
            Finding(
                "range01",
                "error",
                f"values are dB normalised to [0, 1]: min_level_db {min_db:.1f}, ref_level_db {ref_db:.1f} ({mapping})",
            )
        ]
    if scale is None:
        mean, std = -fmt.offset / a_mag, 1 / a_mag  # of ln(magnitude mel)
        params.update(mean=mean, std=std)
        return [
            Finding(
                "standardized" if standard else "normalized",
                "error",
                f"values are {'standardised' if standard else 'scaled and shifted'}: ({mapping}), i.e. (ln mel - {mean:.4g}) / "
                f"{std:.4g}; undo it with ln mel = values * {std:.4g} + {mean:.4g}",
            )
        ]
    return _named_scale_findings(fmt, params, scale, mapping)


def _level(fmt: MelFormat, params: dict, scale: str) -> float:
    """The level at the named `scale` (a smoothed TTS mel has a slope below it, and so an offset
    that is no level difference): mean values against the mean reference, in ln magnitude units."""
    named = LOG_SCALES[scale]
    return (params["mean_values"] - named / fmt.power * params["mean_reference"]) / named


def _named_scale_findings(fmt: MelFormat, params: dict, scale: str, mapping: str) -> list[Finding]:
    """`_value_findings` for values on a named log scale: the scale when it is not this
    frontend's ln magnitude, a level offset, a floor below ln(1e-5); adds `level` to `params`."""
    level = _level(fmt, params, scale)
    params["level"] = level
    found = []
    if scale != "ln" or fmt.power != 1:
        code = {"log10": "log10", "ln_power": "ln_power", "db10": "db", "db20": "db", "ln": "ln_power"}[scale]
        names = {
            "ln": "natural log of the power mel divided by 2",
            "log10": "log10 of the mel",
            "ln_power": "natural log of the mel power",
            "db10": "10*log10 of the magnitude mel (dB)",
            "db20": "dB (20*log10 magnitude = 10*log10 power)",
        }
        if scale == "ln" and fmt.power == 2:
            code = "ln_power"
        if fmt.power == 1:
            shifted = f"(values {-fmt.offset:+.4g})" if fmt.offset else "values"
            undo = f"; ln(mel) = {shifted} / {fmt.slope:.4g}"
        else:  # the mel of |X|^2 is not the square of the mel of |X|: only the filterbanks map it
            undo = "; the power mel converts only approximately, through the filterbanks (check_mel.py --convert)"
        found.append(Finding(code, "error", f"values are {names[scale]}: {mapping}{undo}"))
    if abs(level - INT16_LEVEL) < LEVEL_TOLERANCE and scale == "ln" and fmt.power == 1:
        found.append(
            Finding(
                "level",
                "error",
                f"level {level:+.2f} in ln units above the wav's: the audio was on the int16 scale; divide it by 32768 "
                "before computing the mel",
            )
        )
    elif abs(level) > LEVEL_TOLERANCE:
        found.append(
            Finding(
                "level",
                "warning",
                f"level offset by {level:+.2f} in ln units (gain x{math.exp(level):.3g} against the wav; a dB reference, "
                "peak normalisation or int16 scale)",
            )
        )
    if scale == "ln" and fmt.power == 1 and fmt.clip_low is not None and fmt.clip_low < LOG_SILENCE - 0.01:
        found.append(
            Finding(
                "floor",
                "error",
                f"clamped at {fmt.clip_low:.4g}, below this frontend's floor ln(1e-5) = {LOG_SILENCE:.4f}, which the model "
                "never saw: use np.log(np.maximum(mel, 1e-5))",
            )
        )
    return found


# ---------------------------------------------------------------------------------------------
# Identification without the wav: a guess from the values
# ---------------------------------------------------------------------------------------------


def guess(mel: np.ndarray, h) -> Report:
    """Guess the format of a 2-D mel from its values alone (no wav): the preset whose values look
    like these, stated as a guess (`Report.guessed`). Frame alignment and fmin/fmax cannot be
    seen from values: the guessed preset's are assumed."""
    v, layout, found = _orient(np.asarray(mel, dtype=np.float64), h, None)
    lo, hi, mean, std = float(v.min()), float(v.max()), float(v.mean()), float(v.std())
    clip_low, clip_high = _clip_values(v)
    desc = f"min {lo:.3g}, max {hi:.3g}, mean {mean:.3g}, std {std:.3g}"
    said = " (a guess from the values alone; pass the wav to identify it)"
    name, code = "hifigan", None
    if (
        lo >= -COQUI_MAX_NORM - 1e-4
        and hi <= COQUI_MAX_NORM + 1e-4
        and (clip_low == -COQUI_MAX_NORM or clip_high == COQUI_MAX_NORM)
    ):
        name, code = "coqui", "symmetric4"
    elif lo >= 0 and np.median(v) < 0.2 * hi:
        name, code = "linear", "linear"
    elif lo >= 0 and hi <= 1 + 1e-4:
        name, code = "range01", "range01"
    elif lo < -30 or hi > 20 or hi - lo > 28:
        name, code = "librosa", "db"
    elif abs(mean) < 0.5 and 0.5 < std < 1.6:
        name, code = "standardized", "standardized"
    elif (
        hi < 1.5
        and mean > -5
        and (hi - lo < 6.5 or clip_low is not None and abs(clip_low - math.log10(ESPNET_EPS)) < 1e-3)
    ):
        name, code = "espnet", "log10"
    if name in PRESETS:
        fmt = preset_format(name, h)
    elif name == "range01":
        slope, offset = coqui_affine(COQUI_MIN_LEVEL_DB, COQUI_REF_LEVEL_DB, 1.0, symmetric=False)
        fmt = MelFormat(
            name, v.shape[0], 0.0, None, slope=slope, offset=offset, clip_low=0.0, clip_high=1.0, center=True
        )
    else:  # linear magnitude, or standardised with unknown statistics: this frontend's filterbank assumed
        fmt = MelFormat(name, v.shape[0], h.fmin, h.fmax, linear=name == "linear")
    fmt.layout, fmt.num_mels = layout, v.shape[0]
    if fmt.clip_low is None:
        fmt.clip_low = clip_low
    messages = {
        "symmetric4": "values clipped to [-4, 4]: Coqui's normalised dB (min_level_db -100, ref_level_db 20 assumed)",
        "linear": "values all >= 0 and skewed: a linear magnitude mel without log",
        "range01": "values in [0, 1]: dB normalised to [0, 1] (min_level_db -100, ref_level_db 20 assumed)",
        "db": "values look like decibels: librosa's power_to_db of a power mel assumed",
        "standardized": "values have mean ~0 and std ~1: standardised; the statistics are needed to undo it",
        "log10": "values span little: log10 of the mel; ESPnet/ParallelWaveGAN's fmin 80, fmax 7600, centre assumed",
    }
    if code:
        found.append(Finding(code, "error", f"{messages[code]} ({desc}){said}"))
    fit = {"preset": name, "min": lo, "max": hi, "mean": mean, "std": std}
    return Report(found, fmt, True, fit)


# ---------------------------------------------------------------------------------------------
# Conversion into this frontend
# ---------------------------------------------------------------------------------------------

MAPPING = "pinv"  # mel -> linear spectrum estimate; see the measurement in `_spectrum_estimate`
CENTER = "cubic_log"  # centre-padded frames -> this framing; see the measurement in `_uncenter`


@functools.lru_cache(maxsize=32)
def _pinv(sampling_rate: int, n_fft: int, num_mels: int, fmin: float, fmax: float | None) -> np.ndarray:
    return np.linalg.pinv(filterbank(sampling_rate, n_fft, num_mels, fmin, fmax))


def _spectrum_estimate(mel: np.ndarray, fb: np.ndarray, method: str, pinv: np.ndarray | None = None) -> np.ndarray:
    """A non-negative linear spectrum S ((F, T)) with fb @ S ~ mel ((M, T)); bins outside the
    filterbank's support (below fmin, above fmax) hold the nearest covered bin's value.

    Measured on 6 ljspeech_mini clips cropped to 4 s (conversion L1 in ln units against this
    frontend's mel, mean over clips; time per clip, one thread): espnet pinv 0.184 (< 0.01 s),
    nnls 0.333 (2.2 s); coqui pinv 0.155, nnls 0.234 (2.4 s); librosa pinv 0.217, nnls 0.391
    (4.6 s). NNLS's sparse, spiky spectra land badly in the target's bands; the clamped
    minimum-norm pseudo-inverse spreads energy smoothly. Out-of-band bins held at the nearest
    covered bin beat zeros (espnet 0.233) and a decay of 0.5 ln per bin (0.197).
    """
    if method == "nnls":
        from scipy.optimize import nnls

        s = np.stack([nnls(fb, m)[0] for m in mel.T], axis=1)
    else:
        s = np.maximum((np.linalg.pinv(fb) if pinv is None else pinv) @ mel, 0.0)
    support = np.flatnonzero(fb.sum(0) > 0)
    lo, hi = support[0], support[-1]
    s[:lo] = s[lo]
    s[hi + 1 :] = s[hi]
    return s


def _uncenter(mel: np.ndarray, method: str) -> np.ndarray:
    """(M, T + 1) linear mel with frames centred on k * hop -> (M, T) centred on (k + 1/2) * hop.

    Measured on the 43 ljspeech_mini clips (Tacotron 2's mel, whose only difference is the
    framing; L1 in ln units against this frontend's mel, mean / max over clips): drop_last
    0.256 / 0.277, drop_first 0.255 / 0.280, mean 0.110 / 0.122, geomean 0.103 / 0.114, cubic
    on linear values 0.105 / 0.123, cubic_log (4-point midpoint cubic on ln values) 0.081 / 0.089.
    Dropping a frame leaves every frame half a hop off; interpolating is 3x closer.
    """
    if method == "drop_last":
        return mel[:, :-1]
    if method == "drop_first":
        return mel[:, 1:]
    if method == "mean":
        return 0.5 * (mel[:, :-1] + mel[:, 1:])
    if method == "geomean":
        return np.sqrt(mel[:, :-1] * mel[:, 1:])
    if method != "cubic_log":
        raise ValueError(f"unknown centre method {method!r}")
    # midpoint of a cubic through frames k-1..k+2: (-x[k-1] + 9 x[k] + 9 x[k+1] - x[k+2]) / 16
    ln = np.log(np.maximum(np.pad(mel, ((0, 0), (1, 1)), mode="edge"), 1e-30))
    return np.exp((9 * (ln[:, 1:-2] + ln[:, 2:-1]) - ln[:, :-3] - ln[:, 3:]) / 16)


def _resolve(source, h, params, mel, audio) -> tuple[MelFormat, list[str]]:
    if isinstance(source, Report):
        return source.format, []
    if isinstance(source, MelFormat):
        fmt, notes = source, []
    elif source == "auto":
        report = identify(mel, audio, h)
        how = "guessed from the values alone (no wav)" if report.guessed else "identified against the wav"
        notes = [
            f"format {how}: " + ("; ".join(f"[{f.code}] {f.message}" for f in report.findings) or "this frontend's")
        ]
        fmt = report.format
    else:
        fmt, notes = preset_format(source, h), []
    if params:
        fmt = dataclasses.replace(fmt, **params)
    return fmt, notes


def _ln_values(v: np.ndarray, fmt: MelFormat, notes: list[str]) -> np.ndarray:
    """(M, T) values of `fmt` -> ln of the mel of |X|^power, with notes on what was undone and what
    the source's clips keep out of reach."""
    if fmt.linear:
        ln = np.log(np.maximum(v, 1e-30))
        notes.append("values: linear -> ln")
    elif fmt.band_slope is not None:
        ln = (v - fmt.band_offset[:, None]) / fmt.band_slope[:, None]
        notes.append("values: per-band normalisation undone with the fitted per-band slope and offset")
    else:
        ln = (v - fmt.offset) / fmt.slope
        if (fmt.slope, fmt.offset) != (1.0, 0.0):
            shifted = f"(values {-fmt.offset:+.4g})" if fmt.offset else "values"
            notes.append(f"values: ln(mel) = {shifted} / {fmt.slope:.4g}")
    if fmt.clip_low is not None and not fmt.linear and fmt.band_slope is None:
        floor = (fmt.clip_low - fmt.offset) / fmt.slope / fmt.power
        if floor > LOG_SILENCE + 0.01 and np.any(v <= fmt.clip_low + 1e-5 * max(1.0, abs(fmt.clip_low))):
            notes.append(
                f"could not: the source clipped its values at {fmt.clip_low:.4g} (ln mel {floor:.2f}); quieter bins stay "
                f"there, above this frontend's floor {LOG_SILENCE:.2f}"
            )
    if fmt.clip_high is not None and np.any(v >= fmt.clip_high - 1e-5 * max(1.0, abs(fmt.clip_high))):
        notes.append(f"could not: values clipped at the top ({fmt.clip_high:g}) stay at that level")
    return ln


@functools.lru_cache(maxsize=32)
def _edge_interpolation(sampling_rate: int, n_fft: int, src: tuple, dst: tuple) -> tuple[np.ndarray, np.ndarray]:
    """For the (num_mels, fmin, fmax) filterbanks `src` -> `dst`: the (dst bands,) mask of the
    target bands reaching outside the source's support, and the (dst bands, src bands) matrix
    interpolating ln values linearly between band centres on the mel scale (held at the ends)."""
    import librosa

    fb_src = filterbank(sampling_rate, n_fft, src[0], src[1], src[2])
    fb_dst = filterbank(sampling_rate, n_fft, dst[0], dst[1], dst[2])
    support = np.flatnonzero(fb_src.sum(0) > 0)
    outside = (fb_dst[:, : support[0]].sum(1) > 0) | (fb_dst[:, support[-1] + 1 :].sum(1) > 0)

    def centres(n, fmin, fmax):
        hz = librosa.mel_frequencies(n + 2, fmin=fmin, fmax=sampling_rate / 2 if fmax is None else fmax)
        return librosa.hz_to_mel(hz[1:-1])

    c_src, c_dst = centres(*src), centres(*dst)
    weights = np.zeros((dst[0], src[0]))
    for i, c in enumerate(c_dst):
        j = int(np.searchsorted(c_src, c))
        if j == 0 or j == src[0]:
            weights[i, min(j, src[0] - 1)] = 1.0
        else:
            t = (c - c_src[j - 1]) / (c_src[j] - c_src[j - 1])
            weights[i, j - 1], weights[i, j] = 1.0 - t, t
    return outside, weights


def _map_filterbank(lin: np.ndarray, fmt: MelFormat, h, mapping: str, notes: list[str]) -> np.ndarray:
    """(fmt.num_mels, T) mel of |X|^power in the source's filterbank -> (h.num_mels, T) mel of |X|
    in this frontend's, through a non-negative spectrum estimate (unchanged when both agree).

    Target bands reaching outside the source's support (below its fmin, above its fmax) take the
    ln values of the source bands interpolated on the mel scale instead. Measured on 5 clips of
    4 s (80-7600 Hz -> 0-8000 Hz, L1 in ln units): the spectrum estimate alone 0.129 (2.2 and
    2.5 in the two lowest bands, 1.7 in the top one), with the edge bands interpolated 0.109;
    interpolating every band 0.120 (worse inside the support)."""
    src = (fmt.num_mels, float(fmt.fmin), _hz(fmt.fmax, h.sampling_rate))
    dst = (h.num_mels, float(h.fmin), _hz(h.fmax, h.sampling_rate))
    if src == dst and fmt.power == 1:
        return lin
    fb_src = filterbank(h.sampling_rate, h.n_fft, fmt.num_mels, float(fmt.fmin), fmt.fmax)
    pinv = _pinv(h.sampling_rate, h.n_fft, fmt.num_mels, float(fmt.fmin), fmt.fmax) if mapping == "pinv" else None
    spec = _spectrum_estimate(lin, fb_src, mapping, pinv) ** (1.0 / fmt.power)
    power = f" of |X|^{fmt.power}" if fmt.power != 1 else ""
    notes.append(
        f"filterbank: {src[0]} bands {src[1]:g}-{src[2]:g} Hz{power} -> {dst[0]} bands {dst[1]:g}-{dst[2]:g} Hz "
        f"of |X| through a non-negative spectrum estimate ({mapping}; approximate)"
    )
    out = filterbank(h.sampling_rate, h.n_fft, h.num_mels, float(h.fmin), h.fmax) @ spec
    outside, weights = _edge_interpolation(
        h.sampling_rate, h.n_fft, (fmt.num_mels, float(fmt.fmin), fmt.fmax), (h.num_mels, float(h.fmin), h.fmax)
    )
    if outside.any():
        ln_src = np.log(np.maximum(lin, 1e-30)) / fmt.power
        out[outside] = np.exp(weights[outside] @ ln_src)
        notes.append(
            f"could not: the source holds nothing below {src[1]:g} Hz or above {src[2]:g} Hz; the {int(outside.sum())} "
            "bands reaching there were extrapolated from the nearest source bands"
        )
    return out


def convert(
    mel, source, h, params: dict | None = None, audio=None, mapping: str = MAPPING, center: str = CENTER
) -> tuple[np.ndarray, list[str]]:
    """A foreign mel -> ((h.num_mels, T') float32 mel of this frontend, notes on what was done and
    what could not be done).

    source: a preset name (PRESETS), "auto" (`identify` with `audio`, else a guess from the
    values), a `MelFormat` or a `Report`. params: `MelFormat` fields that override the source's
    (e.g. {"fmin": 55.0} or {"slope": ..., "offset": ...}). T' = T, or T - 1 for a centre-padded
    source. `mapping` ("pinv" or "nnls") and `center` ("cubic_log", "mean", "geomean",
    "drop_first", "drop_last") choose the methods; the defaults are the measured best.
    """
    mel = np.asarray(mel, dtype=np.float64)
    while mel.ndim > 2 and mel.shape[0] == 1:
        mel = mel[0]
    if mel.ndim != 2:
        raise ValueError(f"mel of shape {mel.shape}; expected 2-D")
    fmt, notes = _resolve(source, h, params, mel, audio)
    if fmt.name in ("standardized",) and fmt.band_slope is None and fmt.slope == 1.0 and fmt.offset == 0.0:
        notes.append("standardised values: their mean and std are unknown, so nothing was undone (pass params)")
    v = mel.T if fmt.layout == "TM" else mel
    if v.shape[0] != fmt.num_mels and v.shape[1] == fmt.num_mels:
        v = v.T
        notes.append(
            f"layout: the array was {'(M, T)' if fmt.layout == 'TM' else '(T, M)'}, not {fmt.layout}; transposed"
        )
    elif fmt.layout == "TM":
        notes.append("layout: (T, M) -> (M, T)")
    if v.shape[0] != fmt.num_mels:
        raise ValueError(f"mel of shape {mel.shape} has no axis of {fmt.num_mels} bands ({fmt.name})")
    if fmt.clip_low is None and not fmt.linear:  # e.g. librosa's top_db: a floor that depends on each clip
        fmt = dataclasses.replace(fmt, clip_low=_clip_values(v)[0])
    lin = np.exp(_ln_values(v, fmt, notes))  # (M, T), mel of |X|^power
    lin = _map_filterbank(lin, fmt, h, mapping, notes)
    if fmt.center:
        lin = _uncenter(lin, center)
        notes.append(
            f"frames: centre-padded, re-aligned by half a hop ({center} of neighbouring frames): T {v.shape[1]} -> {lin.shape[1]}"
        )
    if not fmt.level_known:
        notes.append(f"could not: {fmt.name} rescales the audio (peak normalisation); the level follows that audio")
    out = np.log(np.maximum(lin, LOG_CLIP)).astype(np.float32)
    return out, notes


# ---------------------------------------------------------------------------------------------
# Formats as users name them, and files
# ---------------------------------------------------------------------------------------------

MEL_FORMATS = PRESETS  # the names --mel_format takes ("hifigan": this model's own, nothing converted)
# Parameters a user may give for a format (`given_format`): MelFormat fields, and a
# normalisation's own parameters (Coqui's dB levels, a standardisation's mean and std of ln mel)
FORMAT_FIELDS = ("num_mels", "fmin", "fmax", "power", "slope", "offset", "clip_low", "clip_high", "center", "layout")
NORMALISATION_FIELDS = ("min_level_db", "ref_level_db", "max_norm", "symmetric", "mean", "std")


def given_format(fmt: MelFormat, given: dict) -> MelFormat:
    """`fmt` with the parameters the user gives: `FORMAT_FIELDS`, or Coqui's `min_level_db`,
    `ref_level_db`, `max_norm`, `symmetric` (dB of the magnitude mel normalised; the ones not
    given keep Coqui's defaults), or `mean` and `std` (values = (ln mel - mean) / std)."""
    unknown = set(given) - set(FORMAT_FIELDS) - set(NORMALISATION_FIELDS)
    if unknown:
        raise ValueError(
            f"unknown format parameter(s) {', '.join(sorted(unknown))}; "
            f"give {', '.join(FORMAT_FIELDS + NORMALISATION_FIELDS)}"
        )
    fields = {k: v for k, v in given.items() if k in FORMAT_FIELDS}
    coqui = {k: given[k] for k in ("min_level_db", "ref_level_db", "max_norm", "symmetric") if k in given}
    if coqui:
        min_db = float(coqui.get("min_level_db", COQUI_MIN_LEVEL_DB))
        ref_db = float(coqui.get("ref_level_db", COQUI_REF_LEVEL_DB))
        max_norm = float(coqui.get("max_norm", COQUI_MAX_NORM))
        symmetric = bool(coqui.get("symmetric", True))
        slope, offset = coqui_affine(min_db, ref_db, max_norm, symmetric)
        low = -max_norm if symmetric else 0.0
        fields = dict(slope=slope, offset=offset, clip_low=low, clip_high=max_norm, power=1, linear=False) | fields
    if "mean" in given or "std" in given:
        if not {"mean", "std"} <= set(given):
            raise ValueError("a standardisation needs both mean and std (of the ln mel)")
        std = float(given["std"])
        fields = dict(slope=1 / std, offset=-float(given["mean"]) / std, power=1, linear=False) | fields
        fields.setdefault("clip_low", None)
    return dataclasses.replace(fmt, **fields)


def same_format(fitted: MelFormat, declared: MelFormat, h) -> bool:
    """Whether a fitted format is the declared one: the same filterbank, spectrum, framing and
    value map (slope within SLOPE_TOLERANCE, level within LEVEL_TOLERANCE ln units, except where
    the declared recipe rescales its audio); the layout only where the declared format has one
    (this model's loader reads both)."""
    if fitted.band_slope is not None or fitted.linear != declared.linear:
        return False
    frontend = (fitted.num_mels, float(fitted.fmin), _hz(fitted.fmax, h.sampling_rate), fitted.power, fitted.center)
    if frontend != (
        declared.num_mels,
        float(declared.fmin),
        _hz(declared.fmax, h.sampling_rate),
        declared.power,
        declared.center,
    ):
        return False
    if declared.name != "hifigan" and fitted.layout != declared.layout:
        return False
    if abs(fitted.slope / declared.slope - 1) >= SLOPE_TOLERANCE:
        return False
    level = (fitted.offset - declared.offset) / (declared.slope * declared.power)
    return not declared.level_known or abs(level) < LEVEL_TOLERANCE


def matching_format(report: Report, h) -> str | None:
    """The name in MEL_FORMATS of the format `report` identified, or None (another format)."""
    if report.guessed or any(f.code == "mismatch" for f in report.findings):
        return None
    return next((name for name in MEL_FORMATS if same_format(report.format, preset_format(name, h), h)), None)


def declared_mismatch(mel, audio, h, mel_format: str = "hifigan") -> str | None:
    """None when `mel` (made from `audio`) is of the declared `mel_format`; else the diagnosis in
    one line: what `identify` found and which format it is, if a known one. This model's own
    format is declared by having no error but the layout (which the loader transposes): its level
    against the wav, a few frames more or less (both trimmed or padded) are warnings only."""
    report = identify(mel, audio, h)
    errors = [f for f in report.findings if f.severity == "error" and f.code != "orientation"]
    if mel_format == "hifigan" and not errors:
        return None
    found = matching_format(report, h)
    if found == mel_format:
        return None
    shown = [f for f in report.findings if f.severity == "error"] or report.findings
    diagnosis = "; ".join(f"[{f.code}] {f.message}" for f in shown) or "nothing differs from this model's frontend"
    said = "this model's own format" if mel_format == "hifigan" else f"--mel_format {mel_format}"
    if found is None:
        hint = "a format without a preset: convert them with check_mel.py --convert (see the README, Mels from other systems)"
    elif found == "hifigan":
        hint = "they are this model's own format: leave out --mel_format"
    else:
        hint = f"they are {found} mels: pass --mel_format {found}"
    return f"not {said}: {diagnosis}; {hint}"


def load_mel_as(
    path: str, h, mel_format: str = "hifigan", on_notice: Callable[[str], None] | None = None
) -> torch.Tensor:
    """A `.npy` mel of `mel_format` (MEL_FORMATS) -> (1, num_mels, T') float32 of this frontend
    (`convert` for any other format than "hifigan"; `on_notice` gets one line of what it did).
    Raises `MelError` for a file that is unusable or has no axis of the format's bands."""
    on_notice = notice if on_notice is None else on_notice
    mel = read_npy(path)
    if mel_format != "hifigan":
        try:
            mel, notes = convert(mel, mel_format, h)
        except ValueError as e:
            raise MelError(f"{path}: {e}; check --mel_format {mel_format}") from None
        on_notice(f"{path}: converted from {mel_format}: " + "; ".join(notes))
    return mel_layout(mel, h.num_mels, path, on_notice)


def _quiet(msg: str) -> None:
    """A notice nobody needs: training reads each mel many times; the data check said it once."""


def mel_loader(mel_format: str, h) -> Callable[[str], torch.Tensor] | None:
    """For `MelDataset(mel_loader=...)`: a picklable `path -> (1, num_mels, T)` loader of
    `mel_format` mels converted into this frontend without notices (`load_mel_as`); None for
    this model's own format."""
    if mel_format == "hifigan":
        return None
    return functools.partial(load_mel_as, h=h, mel_format=mel_format, on_notice=_quiet)
