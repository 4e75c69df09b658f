"""Audio I/O, the STFT mel frontend and the training dataset (paper section 4: 80-band log-mel,
FFT 1024, window 1024, hop 256 at 22.05 kHz).

`mel_spectrogram` reproduces the authors' frontend number for number (reflect padding of
(n_fft - hop) / 2, `center=False`, magnitude sqrt(re^2 + im^2 + 1e-9), Slaney mel filterbank from
librosa, natural log clamped at 1e-5); its filterbank and window are cached per argument set and
device (the original's cache never hits and rebuilds the filterbank on every call).
"""

import functools
import math
import os
import random
import sys
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import soundfile as sf
import torch
import torch.utils.data

from utils import UserError

MAX_WAV_VALUE = 32768.0  # int16 full scale
NORMALIZE_PEAK = 0.95  # training audio is peak-normalized to 0.95 (authors' MelDataset)
LOG_CLIP = 1e-5  # dynamic range compression floor: log(max(x, 1e-5))
LOG_SILENCE = math.log(LOG_CLIP)  # the value of a silent mel bin
MAG_EPS = 1e-9  # added under the square root of the STFT magnitude
MEL_RANGE_SLACK = 0.5  # a mel below log(1e-5) - this is not a natural-log mel of our frontend
MEL_MAX_PLAUSIBLE = 8.0  # natural-log mel magnitudes of [-1, 1] audio stay well below this
MEL_FRAME_TOLERANCE = 3  # fine-tuning: mel/audio frame mismatch that is trimmed or padded


class AudioError(UserError):
    """An audio file cannot be used as it is (unreadable, wrong rate, wrong channels...)."""


class MelError(UserError):
    """A mel-spectrogram file has the wrong shape, values or length."""


# ---------------------------------------------------------------------------------------------
# Audio I/O
# ---------------------------------------------------------------------------------------------


def load_wav(full_path: str) -> tuple[np.ndarray, int]:
    """Read any file soundfile reads -> (float32 audio on the int16 / 32768 scale, rate).

    Mono files give (T,), multi-channel files (T, C). 16-bit PCM gives exactly int16 / 32768.
    """
    if not os.path.isfile(full_path):
        raise AudioError(f"{full_path}: file not found; check the filelist and --input_wavs_dir")
    try:
        data, sampling_rate = sf.read(full_path, dtype="float32", always_2d=False)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise AudioError(
            f"{full_path}: not readable as audio ({str(e).splitlines()[0]}); re-export it as a 16-bit PCM wav"
        ) from None
    return data, sampling_rate


def normalize(audio: np.ndarray) -> np.ndarray:
    """Peak-normalize to 1 (equal to `librosa.util.normalize`); silence stays silence."""
    peak = np.abs(audio).max() if audio.size else 0.0
    if peak < np.finfo(np.float32).tiny:
        return audio
    return audio / peak


# ---------------------------------------------------------------------------------------------
# Mel frontend
# ---------------------------------------------------------------------------------------------


def dynamic_range_compression_torch(x: torch.Tensor, C: float = 1, clip_val: float = LOG_CLIP) -> torch.Tensor:
    return torch.log(torch.clamp(x, min=clip_val) * C)


def dynamic_range_decompression_torch(x: torch.Tensor, C: float = 1) -> torch.Tensor:
    return torch.exp(x) / C


def spectral_normalize_torch(magnitudes: torch.Tensor) -> torch.Tensor:
    return dynamic_range_compression_torch(magnitudes)


def spectral_de_normalize_torch(magnitudes: torch.Tensor) -> torch.Tensor:
    return dynamic_range_decompression_torch(magnitudes)


@functools.lru_cache(maxsize=64)
def _mel_basis(sampling_rate: int, n_fft: int, num_mels: int, fmin: float, fmax, device: torch.device) -> torch.Tensor:
    """(num_mels, n_fft // 2 + 1) Slaney mel filterbank, cached per arguments and device."""
    from librosa.filters import mel as librosa_mel_fn

    mel = librosa_mel_fn(sr=sampling_rate, n_fft=n_fft, n_mels=num_mels, fmin=fmin, fmax=fmax)
    # The cache outlives the caller's mode: a tensor made under inference_mode could not be used in
    # a later autograd graph (training after vocoding in one process).
    with torch.inference_mode(False):
        return torch.from_numpy(mel).float().to(device)


@functools.lru_cache(maxsize=64)
def _hann_window(win_size: int, device: torch.device) -> torch.Tensor:
    with torch.inference_mode(False):  # see _mel_basis
        return torch.hann_window(win_size).to(device)


def mel_spectrogram(
    y: torch.Tensor,
    n_fft: int,
    num_mels: int,
    sampling_rate: int,
    hop_size: int,
    win_size: int,
    fmin: float,
    fmax,
    center: bool = False,
) -> torch.Tensor:
    """Log-mel spectrogram of audio in [-1, 1]: (B, T) -> (B, num_mels, T // hop_size).

    Always computed in float32 (also under autocast). `fmax=None` means sampling_rate / 2.
    """
    if y.dim() == 1:
        y = y.unsqueeze(0)
    with torch.autocast(device_type=y.device.type, enabled=False):
        y = y.float()
        mel_basis = _mel_basis(sampling_rate, n_fft, num_mels, fmin, fmax, y.device)
        window = _hann_window(win_size, y.device)
        pad = int((n_fft - hop_size) / 2)
        y = torch.nn.functional.pad(y.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
        spec = torch.stft(
            y,
            n_fft,
            hop_length=hop_size,
            win_length=win_size,
            window=window,
            center=center,
            pad_mode="reflect",
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        spec = torch.view_as_real(spec)  # (B, F, N, 2)
        spec = torch.sqrt(spec.pow(2).sum(-1) + MAG_EPS)
        spec = torch.matmul(mel_basis, spec)  # (F, N) -> (num_mels, N)
        return spectral_normalize_torch(spec)


def mel_from_config(y: torch.Tensor, h, fmax_for_loss: bool = False) -> torch.Tensor:
    """`mel_spectrogram` with the config's frontend (fmax, or fmax_for_loss for the L1 loss)."""
    fmax = h.fmax_for_loss if fmax_for_loss else h.fmax
    return mel_spectrogram(y, h.n_fft, h.num_mels, h.sampling_rate, h.hop_size, h.win_size, h.fmin, fmax)


# ---------------------------------------------------------------------------------------------
# Filelists and dataset
# ---------------------------------------------------------------------------------------------


class FilelistEntry(NamedTuple):
    """One non-blank filelist line."""

    line: int  # 1-based line number in its filelist
    uid: str  # the text before the first '|', stripped
    path: str  # <wavs_dir>/<id>.wav, as training reads it
    text: str  # the whole line, as written (the data check quotes it)


class FilelistError(UserError):
    """A filelist cannot be read: not found (`missing`) or not UTF-8 text."""

    def __init__(self, message: str, missing: bool = False):
        super().__init__(message)
        self.missing = missing


class Filelist(NamedTuple):
    """One LJSpeech-style `id|text...` filelist, read once: what the data check and the dataset need."""

    path: str
    wavs_dir: str
    entries: list[FilelistEntry]  # the non-blank lines, in order
    blank_lines: list[int]  # 1-based numbers of the blank lines (not the newline ending the file)
    unreadable: FilelistError | None = None  # why the file could not be read (then no entries)

    def wav_paths(self) -> list[str]:
        """Every entry's `<wavs_dir>/<id>.wav`, in order; raises `unreadable` for an unreadable file."""
        if self.unreadable is not None:
            raise self.unreadable
        return [e.path for e in self.entries]


def read_filelist(path: str, wavs_dir: str) -> Filelist:
    """The one filelist reader: `id|text...` lines -> `Filelist` of `<wavs_dir>/<id>.wav` entries.
    A missing or non-UTF-8 file is not raised here but kept in `unreadable`, so that the data check
    can list it with the other problems."""
    if not os.path.isfile(path):
        message = f"{path}: filelist not found; pass --input_training_file / --input_validation_file"
        return Filelist(path, wavs_dir, [], [], FilelistError(message, missing=True))
    try:
        with open(path, encoding="utf-8") as fi:
            lines = fi.read().split("\n")
    except UnicodeDecodeError as e:
        message = f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); save the filelist as UTF-8"
        return Filelist(path, wavs_dir, [], [], FilelistError(message, missing=False))
    if lines and not lines[-1].strip():
        lines.pop()  # the newline that ends the last line
    entries, blank = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            blank.append(number)
            continue
        uid = line.split("|")[0].strip()
        entries.append(FilelistEntry(number, uid, os.path.join(wavs_dir, uid + ".wav"), line))
    return Filelist(path, wavs_dir, entries, blank)


def notice(msg: str) -> None:
    """One-line notice to stderr (resampling, mixdown, transposed mel...)."""
    print(f"note: {msg}", file=sys.stderr)


def load_mel(path: str, num_mels: int, on_notice: Callable[[str], None] = notice) -> torch.Tensor:
    """The one mel loader: a `.npy` mel in any accepted layout -> (1, num_mels, T) float32
    (`MelError` if unusable)."""
    return mel_layout(read_npy(path), num_mels, path, on_notice)


def load_audio(
    path: str,
    sampling_rate: int,
    resample_to_rate: bool = False,
    mixdown: bool = False,
    on_notice: Callable[[str], None] = notice,
    dataset: bool = False,
) -> np.ndarray:
    """The one audio loader: any file soundfile reads -> mono (T,) float32 at `sampling_rate`
    (int16 / 32768 scale). Multi-channel audio is mixed down (`mixdown`) and another rate
    resampled (`resample_to_rate`), each with a one-line notice; otherwise either is an
    `AudioError`, as are missing, unreadable, empty and non-finite files. `dataset`: a training
    clip (`MelDataset`), whose errors name the dataset as the thing to fix."""
    audio, sr = load_wav(path)
    if sr != sampling_rate and dataset:
        raise AudioError(
            f"{path}: sampling rate {sr} Hz, the config expects {sampling_rate} Hz; "
            "resample the dataset (e.g. sox in.wav -r 22050 out.wav) or change sampling_rate"
        )
    if audio.ndim == 2:
        if not mixdown:
            fix = "convert the dataset to mono" if dataset else "evaluate mono files"
            raise AudioError(f"{path}: {audio.shape[1]} channels; {fix}")
        on_notice(f"{path}: {audio.shape[1]} channels mixed down to mono")
        audio = audio.mean(axis=1)
    if audio.size == 0:
        raise AudioError(f"{path}: holds no audio samples; remove it or re-export it")
    if not np.isfinite(audio).all():
        raise AudioError(f"{path}: holds NaN or inf samples; re-export it as 16-bit PCM")
    if sr != sampling_rate:
        if not resample_to_rate:
            raise AudioError(
                f"{path}: {sr} Hz but the config's sampling_rate is {sampling_rate} Hz; "
                "resample the file or pass the model's --config"
            )
        import librosa

        on_notice(f"{path}: {sr} Hz resampled to {sampling_rate} Hz")
        audio = librosa.resample(audio, orig_sr=sr, target_sr=sampling_rate)
    return np.ascontiguousarray(audio, dtype=np.float32)


def read_npy(path: str) -> np.ndarray:
    """A `.npy` array of numbers, or a one-line `MelError` (missing, unreadable, wrong dtype)."""
    if not os.path.isfile(path):
        raise MelError(f"{path}: mel file not found; fine-tuning needs <input_mels_dir>/<id>.npy for each wav")
    try:
        mel = np.load(path, allow_pickle=False)
    except Exception as e:  # numpy raises ValueError, OSError, EOFError... for broken files
        raise MelError(f"{path}: not a readable .npy array ({str(e)[:120]}); save mels with numpy.save") from None
    if not (np.issubdtype(mel.dtype, np.floating) or np.issubdtype(mel.dtype, np.integer)):
        raise MelError(f"{path}: mel of dtype {mel.dtype}; save a float32 array")
    return mel


def mel_layout(
    mel, num_mels: int, name: str, on_notice: Callable[[str], None] = notice, min_frames: int = 1
) -> torch.Tensor:
    """The one mel layout normaliser: (num_mels, T), (1, num_mels, T) or (T, num_mels) (numpy or
    torch) -> (1, num_mels, T) float32 tensor. The transposed layout is reported in one line; any
    other shape, a wrong band count, fewer than `min_frames` frames (0 for a piece of a stream) or
    NaN/inf values raise `MelError` naming `name`."""
    mel = torch.as_tensor(np.asarray(mel) if not isinstance(mel, torch.Tensor) else mel)
    shape = tuple(mel.shape)
    expected = f"({num_mels}, T), (1, {num_mels}, T) or (T, {num_mels})"
    if mel.dim() == 3 and mel.shape[0] == 1:
        mel = mel[0]
    if mel.dim() != 2:
        raise MelError(f"{name}: mel of shape {shape}; expected {expected}")
    if mel.shape[0] != num_mels:
        if mel.shape[1] != num_mels:
            raise MelError(
                f"{name}: mel of shape {shape} has no axis of {num_mels} bands, the generator's num_mels; "
                f"make mels with the checkpoint's config (num_mels {num_mels}), shaped {expected}"
            )
        on_notice(f"{name}: mel of shape {shape} read as (T, num_mels) and transposed")
        mel = mel.T
    if mel.shape[1] < min_frames:
        raise MelError(f"{name}: mel has {mel.shape[1]} frames; regenerate it")
    mel = mel.float()
    if not torch.isfinite(mel).all():
        raise MelError(f"{name}: mel holds NaN or inf values; regenerate it")
    lo, hi = (mel.min().item(), mel.max().item()) if mel.numel() else (LOG_SILENCE, LOG_SILENCE)
    if lo < LOG_SILENCE - MEL_RANGE_SLACK or hi > MEL_MAX_PLAUSIBLE:
        on_notice(
            f"{name}: mel values span [{lo:.1f}, {hi:.1f}]; HiFi-GAN expects natural-log mels clamped "
            f"at 1e-5 (>= {LOG_SILENCE:.2f}), the output may be noise"
        )
    return mel.unsqueeze(0).contiguous()


def to_pcm16(audio: np.ndarray) -> np.ndarray:
    """float audio -> int16 with clipping (the original's cast wraps 1.0 around to -32768)."""
    return np.clip(np.asarray(audio, dtype=np.float64) * MAX_WAV_VALUE, -MAX_WAV_VALUE, MAX_WAV_VALUE - 1).astype(
        np.int16
    )


def write_pcm16(path: str, audio: np.ndarray, sampling_rate: int) -> None:
    """The one audio writer: float audio in [-1, 1] -> 16-bit PCM wav (clipped, see `to_pcm16`)."""
    sf.write(path, to_pcm16(audio), sampling_rate, subtype="PCM_16")


def reconcile_mel_audio(mel: torch.Tensor, audio: torch.Tensor, hop_size: int, name: str):
    """Make (1, M, F) mel and (1, T) audio agree on F = T // hop_size frames.

    A mismatch of up to `MEL_FRAME_TOLERANCE` frames (teacher-forced mels are often one or two
    frames off) is trimmed, or padded with log-silence (never with 0, which is loud in log-mel).
    Audio is then cut to exactly F * hop_size samples. A larger mismatch is a `MelError`.
    """
    frames = audio.size(1) // hop_size
    diff = mel.size(2) - frames
    if abs(diff) > MEL_FRAME_TOLERANCE:
        raise MelError(
            f"{name}: mel has {mel.size(2)} frames but the audio gives {frames} "
            f"({audio.size(1)} samples / hop {hop_size}); regenerate the mel from this wav"
        )
    if diff > 0:
        mel = mel[:, :, :frames]
    elif diff < 0:
        mel = torch.nn.functional.pad(mel, (0, -diff), value=LOG_SILENCE)
    return mel, audio[:, : frames * hop_size]


class MelDataset(torch.utils.data.Dataset):
    """Training/validation items `(mel, audio, filename, mel_loss)` as the authors' dataset.

    The frontend comes from the config `h` (segment_size, n_fft, num_mels, hop_size, win_size,
    sampling_rate, fmin, fmax, fmax_for_loss). Training (`split=True`): a random `segment_size`
    crop of the peak-normalized (x0.95) audio, its mel (fmax) and its loss mel (fmax_for_loss);
    short clips are zero-padded. Fine-tuning reads the teacher-forced mel
    `<base_mels_path>/<name>.npy` instead (read by `mel_loader`, path -> (1, num_mels, T), when
    given: melformats.mel_loader converts another toolkit's format) and crops mel and audio
    together. `n_cache_reuse`: how
    many further items reuse a loaded clip (the original's cache; training uses 0).

    An item is `dataset[index]` (crops from the global `random`, as the original) or
    `dataset[(epoch, index)]`: crops from a generator seeded with (h.seed, epoch, index), so an item
    is the same in any worker process and after any resume (train.py's `EpochSampler` asks so).
    """

    def __init__(
        self,
        training_files,
        h,
        split: bool = True,
        shuffle: bool = True,
        n_cache_reuse: int = 0,
        fine_tuning: bool = False,
        base_mels_path: str | None = None,
        mel_loader: Callable[[str], torch.Tensor] | None = None,
    ):
        self.audio_files = list(training_files)
        random.seed(1234)
        if shuffle:
            random.shuffle(self.audio_files)
        self.h = h
        self.split = split
        self.cached_wav = None
        self.n_cache_reuse = n_cache_reuse
        self._cache_ref_count = 0
        self.fine_tuning = fine_tuning
        self.base_mels_path = base_mels_path
        self.mel_loader = mel_loader

    def _load(self, filename: str) -> np.ndarray:
        audio = load_audio(filename, self.h.sampling_rate, dataset=True)
        if not self.fine_tuning:
            # float64 as the original (int16 / 32768.0 is float64 in numpy), then float32
            audio = (normalize(audio.astype(np.float64)) * NORMALIZE_PEAK).astype(np.float32)
        return audio

    def _teacher_forced(self, filename: str, audio: torch.Tensor, rng=random) -> tuple[torch.Tensor, torch.Tensor]:
        """Fine-tuning: the clip's `.npy` mel (1, M, F) and its (1, T) audio, reconciled and, with
        `split`, cropped together to ceil(segment_size / hop_size) frames."""
        segment_size, hop_size = self.h.segment_size, self.h.hop_size
        name = os.path.splitext(os.path.basename(filename))[0]
        mel_path = os.path.join(self.base_mels_path, name + ".npy")
        mel = self.mel_loader(mel_path) if self.mel_loader else load_mel(mel_path, self.h.num_mels)
        mel, audio = reconcile_mel_audio(mel, audio, hop_size, mel_path)
        if self.split:
            frames_per_seg = math.ceil(segment_size / hop_size)
            if mel.size(2) >= frames_per_seg:
                # NOTE: the original draws from [0, frames - frames_per_seg - 1] and crashes
                # when a mel has exactly frames_per_seg frames; the last start is valid.
                mel_start = rng.randint(0, mel.size(2) - frames_per_seg)
                mel = mel[:, :, mel_start : mel_start + frames_per_seg]
                audio = audio[:, mel_start * hop_size : (mel_start + frames_per_seg) * hop_size]
            else:
                mel = torch.nn.functional.pad(mel, (0, frames_per_seg - mel.size(2)), value=LOG_SILENCE)
                audio = torch.nn.functional.pad(audio, (0, segment_size - audio.size(1)), "constant")
        return mel, audio

    def __getitem__(self, index: int | tuple[int, int]):
        rng = random
        if isinstance(index, tuple):  # (epoch, index): the item's own crops (see the class docstring)
            rng = random.Random(f"{self.h.get('seed', 1234)}:{index[0]}:{index[1]}")
            index = index[1]
        filename = self.audio_files[index]
        if self._cache_ref_count == 0:
            audio = self._load(filename)
            self.cached_wav = audio
            self._cache_ref_count = self.n_cache_reuse
        else:
            audio = self.cached_wav
            self._cache_ref_count -= 1

        audio = torch.as_tensor(audio, dtype=torch.float32).unsqueeze(0)  # (1, T)

        if not self.fine_tuning:
            segment_size = self.h.segment_size
            if self.split:
                if audio.size(1) >= segment_size:
                    audio_start = rng.randint(0, audio.size(1) - segment_size)
                    audio = audio[:, audio_start : audio_start + segment_size]
                else:
                    audio = torch.nn.functional.pad(audio, (0, segment_size - audio.size(1)), "constant")
            mel = mel_from_config(audio, self.h)
        else:
            mel, audio = self._teacher_forced(filename, audio, rng)

        mel_loss = mel_from_config(audio, self.h, fmax_for_loss=True)
        return mel.squeeze(), audio.squeeze(0), filename, mel_loss.squeeze()

    def __len__(self) -> int:
        return len(self.audio_files)


# ---------------------------------------------------------------------------------------------
# Built-in demo data
# ---------------------------------------------------------------------------------------------


def synth_speechlike(seconds: float, sampling_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A speech-like test signal: voiced harmonics with a pitch contour, shaped by three moving
    formants, with unvoiced noise bursts and pauses; peak about 0.6. (T,) float32."""
    n = int(seconds * sampling_rate)
    t = np.arange(n) / sampling_rate
    f0 = rng.uniform(90, 220) * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.5, 2.5) * t + rng.uniform(0, 6)))
    phase = 2 * np.pi * np.cumsum(f0) / sampling_rate
    formants = [rng.uniform(lo, hi) for lo, hi in ((300, 900), (900, 2300), (2300, 3500))]
    drift = 1 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.3, 1.5) * t)[None]
    harmonics = np.arange(1, 40)  # up to ~4-9 kHz, where the formants are
    freqs = harmonics[:, None] * f0[None]  # (H, T)
    gain = sum(np.exp(-(((freqs - f * drift) / (80 + 0.1 * f)) ** 2)) for f in formants)
    gain = gain * (freqs < sampling_rate / 2)
    voiced = (np.sin(harmonics[:, None] * phase[None]) * gain).sum(0)
    # syllable envelope: voiced stretches separated by short noise bursts and pauses
    syll = np.clip(np.sin(2 * np.pi * rng.uniform(2, 5) * t + rng.uniform(0, 6)), 0, None) ** 0.5
    noise = rng.standard_normal(n) * (syll < 0.05) * 0.15
    y = voiced / (np.abs(voiced).max() + 1e-9) * syll + noise + 0.003 * rng.standard_normal(n)
    return (0.6 * y / np.abs(y).max()).astype(np.float32)


def make_demo_dataset(folder: str, sampling_rate: int = 22050, n_train: int = 24, n_val: int = 4, seed: int = 1234):
    """Write `n_train + n_val` synthetic 16-bit wavs (2-4 s) and LJSpeech-style filelists into
    `folder` (`wavs/`, `training.txt`, `validation.txt`); existing files are reused."""
    wavs = os.path.join(folder, "wavs")
    os.makedirs(wavs, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids = [f"demo_{i:04d}" for i in range(n_train + n_val)]
    for i in ids:
        seconds = rng.uniform(2.0, 4.0)
        path = os.path.join(wavs, i + ".wav")
        audio = synth_speechlike(seconds, sampling_rate, rng)
        if not os.path.isfile(path):
            sf.write(path, audio, sampling_rate, subtype="PCM_16")
    for name, part in (("training.txt", ids[:n_train]), ("validation.txt", ids[n_train:])):
        with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
            f.write("".join(f"{i}|synthetic speech-like signal {i}\n" for i in part))
    return wavs, os.path.join(folder, "training.txt"), os.path.join(folder, "validation.txt")
