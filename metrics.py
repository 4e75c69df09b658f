"""Objective metrics of generated speech against its reference recordings (the library under
evaluate.py and train.py's `--validation_metrics`; definitions in the README, "Evaluation").

The paper's validation mel L1, multi-resolution STFT distance, wide-band PESQ, STOI, mel cepstral
distortion, F0 RMSE, periodicity error and voiced/unvoiced F1. Every metric takes 1-D float arrays
in [-1, 1] at the config's rate; both signals are trimmed to the shorter one. PESQ and STOI need
the optional `pesq` / `pystoi` packages (requirements-extra.txt); `available_metrics` skips them
with a notice without them.
"""

import importlib.util
import math
import warnings

import numpy as np
import torch

from meldataset import mel_from_config
from utils import UserError

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
