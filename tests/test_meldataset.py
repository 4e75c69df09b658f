"""meldataset.py: audio I/O, the mel frontend against the authors' reference, the dataset."""

import os

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import FIXTURES, LJ_WAVS, config, harmonic, needs_fixtures, needs_ljspeech, write_wav

import meldataset
from meldataset import (
    LOG_SILENCE,
    AudioError,
    MelDataset,
    MelError,
    load_wav,
    mel_from_config,
    mel_spectrogram,
    normalize,
    read_filelist,
)
from utils import UserError

MEL_ARGS = (1024, 80, 22050, 256, 1024, 0)


@needs_fixtures
@needs_ljspeech
@pytest.mark.parametrize("clip", ["LJ001-0002", "LJ001-0008"])
@pytest.mark.parametrize("kind", ["plain", "normalized"])
@pytest.mark.parametrize("fmax", [8000, None])
def test_mel_matches_original(clip, kind, fmax):
    ref = np.load(os.path.join(FIXTURES, "mels_reference.npz"))[f"{clip}_{kind}_fmax{fmax}"]
    audio, sr = load_wav(os.path.join(LJ_WAVS, f"{clip}.wav"))
    assert sr == 22050
    if kind == "normalized":
        audio = (normalize(audio.astype(np.float64)) * 0.95).astype(np.float32)
    mel = mel_spectrogram(torch.from_numpy(audio)[None], *MEL_ARGS, fmax).numpy()
    assert mel.shape == ref.shape
    diff = np.abs(mel - ref)
    # Above the float32 FFT noise floor (log-mel > -8, i.e. mel magnitude > 3e-4) the frontend
    # matches to < 1e-4. Below it, single-precision FFT rounding (different between FFT builds)
    # dominates: those few bins agree to 1e-3 (see README, Differences).
    assert diff[ref > -8].max() < 1e-4
    assert diff.max() < 1e-3
    assert (diff > 1e-4).mean() < 0.005


def test_mel_shape_and_silence():
    y = torch.zeros(2, 8192)
    mel = mel_spectrogram(y, *MEL_ARGS, 8000)
    assert mel.shape == (2, 80, 32)
    torch.testing.assert_close(mel, torch.full_like(mel, LOG_SILENCE))


def test_mel_cache_hits_on_repeat_and_is_keyed_on_every_argument():
    """The original's cache key never matches, so it rebuilds the filterbank on every call; ours
    builds it once per (arguments, device). The speed-up is a benchmark figure, not asserted."""
    y = torch.from_numpy(harmonic(8192 / 22050))[None]
    meldataset._mel_basis.cache_clear()
    first = mel_spectrogram(y, *MEL_ARGS, 8000)
    for _ in range(3):
        torch.testing.assert_close(mel_spectrogram(y, *MEL_ARGS, 8000), first, rtol=0, atol=0)
    info = meldataset._mel_basis.cache_info()
    assert (info.misses, info.hits) == (1, 3)
    other_fmax = mel_spectrogram(y, *MEL_ARGS, None)  # another fmax is another filterbank
    assert meldataset._mel_basis.cache_info().misses == 2 and not torch.equal(other_fmax, first)
    bands_64 = mel_spectrogram(y, 1024, 64, 22050, 256, 1024, 0, 8000)  # and another band count
    assert bands_64.shape[1] == 64 and meldataset._mel_basis.cache_info().misses == 3


def test_mel_runs_in_fp32_under_autocast():
    y = torch.from_numpy(harmonic(0.2))[None]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mel = mel_spectrogram(y, *MEL_ARGS, 8000)
    assert mel.dtype == torch.float32


@pytest.mark.parametrize(
    "subtype,fmt,tol",
    [
        ("PCM_16", "WAV", 1 / 32768),
        ("PCM_24", "WAV", 1e-6),
        ("PCM_32", "WAV", 1e-6),
        ("FLOAT", "WAV", 0),
        ("PCM_16", "FLAC", 1 / 32768),
    ],
)
def test_load_wav_formats_on_int16_scale(tmp_path, subtype, fmt, tol):
    audio = harmonic(0.1)
    path = tmp_path / f"a.{fmt.lower()}"
    sf.write(path, audio, 22050, subtype=subtype, format=fmt)
    y, sr = load_wav(str(path))
    assert sr == 22050 and y.dtype == np.float32 and y.shape == audio.shape
    assert np.abs(y - audio).max() <= tol + 1e-7  # within one quantization step
    if subtype == "PCM_16":  # exactly int16 / 32768, as the original's scipy read
        ints = sf.read(path, dtype="int16")[0]
        np.testing.assert_array_equal(y, ints / 32768.0)


def test_load_wav_errors_name_the_file(tmp_path):
    with pytest.raises(AudioError, match="missing.wav: file not found"):
        load_wav(str(tmp_path / "missing.wav"))
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    with pytest.raises(AudioError, match="bad.wav: not readable as audio"):
        load_wav(str(bad))


def test_normalize_equals_librosa_and_keeps_silence():
    import librosa

    x = harmonic(0.1).astype(np.float64) * 0.3
    np.testing.assert_array_equal(normalize(x), librosa.util.normalize(x))
    z = np.zeros(100, dtype=np.float32)
    assert np.array_equal(normalize(z), z)  # the original's division gives NaN


def test_filelist(tmp_path):
    fl = tmp_path / "train.txt"
    fl.write_text("a|text one\n\n b |text|norm\n")
    filelist = read_filelist(str(fl), "wavs")
    assert filelist.wav_paths() == [os.path.join("wavs", "a.wav"), os.path.join("wavs", "b.wav")]
    assert [(e.line, e.uid) for e in filelist.entries] == [(1, "a"), (3, "b")] and filelist.blank_lines == [2]
    assert read_filelist(str(fl), "wavs") == filelist and filelist.unreadable is None


def test_unreadable_filelist_is_kept_and_raised_by_wav_paths(tmp_path):
    missing = read_filelist(str(tmp_path / "nope.txt"), "wavs")
    assert missing.entries == [] and missing.unreadable.missing
    with pytest.raises(UserError, match=r"nope.txt: filelist not found; pass --input_training_file"):
        missing.wav_paths()
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9|text\n".encode("latin-1"))
    bad = read_filelist(str(latin1), "wavs")
    assert not bad.unreadable.missing
    with pytest.raises(UserError, match=r"latin1.txt: not UTF-8 text \(invalid continuation byte at byte 3\)"):
        bad.wav_paths()


def make_dataset(tmp_path, seconds=(1.0, 0.2), sr=22050, **kw):
    files = [write_wav(tmp_path / f"c{i}.wav", harmonic(s, sr=sr, seed=i), sr) for i, s in enumerate(seconds)]
    return files, MelDataset(files, config("v1", **kw))  # segment 8192, hop 256, fmax 8000, fmax_for_loss None


def test_dataset_items(tmp_path):
    files, ds = make_dataset(tmp_path)
    ds.audio_files = files  # fixed order for the test
    mel, audio, name, mel_loss = ds[0]
    assert mel.shape == (80, 32) and audio.shape == (8192,) and mel_loss.shape == (80, 32) and name == files[0]
    # the frontend is the config's: mel with fmax, the loss mel with fmax_for_loss (None: full band)
    torch.testing.assert_close(mel, mel_from_config(audio[None], ds.h)[0], rtol=0, atol=0)
    torch.testing.assert_close(mel_loss, mel_from_config(audio[None], ds.h, fmax_for_loss=True)[0], rtol=0, atol=0)
    assert not torch.equal(mel, mel_loss)
    # peak-normalized to 0.95 before cropping: the crop's peak is at most 0.95
    assert audio.abs().max() <= 0.95 + 1e-6
    # short clip zero-padded to segment_size
    mel, audio, _, _ = ds[1]
    n = int(0.2 * 22050)
    assert audio.shape == (8192,) and torch.all(audio[n:] == 0) and audio[:n].abs().max() > 0.9


def test_dataset_rejects_wrong_rate(tmp_path):
    files, ds = make_dataset(tmp_path, seconds=(0.5,), sr=16000)
    with pytest.raises(AudioError, match="c0.wav: sampling rate 16000 Hz, the config expects 22050 Hz"):
        ds[0]


def test_dataset_silent_clip_gives_finite_items(tmp_path):
    path = write_wav(tmp_path / "silent.wav", np.zeros(9000, dtype=np.float32))
    _, ds = make_dataset(tmp_path, seconds=())
    ds.audio_files = [path]
    mel, audio, _, mel_loss = ds[0]
    assert torch.isfinite(mel).all() and torch.isfinite(audio).all() and torch.isfinite(mel_loss).all()


def fine_tuning_dataset(tmp_path, mel_frames_delta, seconds=1.0):
    audio = harmonic(seconds)
    wav = write_wav(tmp_path / "ft.wav", audio)
    frames = len(audio) // 256
    mel = mel_spectrogram(torch.from_numpy(np.round(audio * 32768) / 32768).float()[None], *MEL_ARGS, 8000)[0].numpy()
    assert mel.shape[1] == frames
    if mel_frames_delta > 0:
        mel = np.concatenate([mel, np.full((80, mel_frames_delta), -5.0, np.float32)], 1)
    elif mel_frames_delta < 0:
        mel = mel[:, :mel_frames_delta]
    np.save(tmp_path / "ft.npy", mel)
    return MelDataset([wav], config("v1"), fine_tuning=True, base_mels_path=str(tmp_path)), frames


@pytest.mark.parametrize("delta", [-2, -1, 0, 1, 2])
def test_fine_tuning_small_mismatch_is_reconciled(tmp_path, delta):
    ds, frames = fine_tuning_dataset(tmp_path, delta)
    ds.split = False
    mel, audio, _, mel_loss = ds[0]
    assert mel.shape == (80, frames) and audio.shape == (frames * 256,) and mel_loss.shape == (80, frames)
    if delta < 0:  # padded with log-silence, never with 0
        assert torch.all(mel[:, delta:] == LOG_SILENCE)
    ds.split = True
    mel, audio, _, _ = ds[0]
    assert mel.shape == (80, 32) and audio.shape == (8192,)


def test_fine_tuning_large_mismatch_is_an_error(tmp_path):
    ds, _ = fine_tuning_dataset(tmp_path, 10)
    with pytest.raises(MelError, match=r"ft.npy: mel has \d+ frames but the audio gives \d+"):
        ds[0]


def test_fine_tuning_exactly_one_segment_of_frames(tmp_path):
    """The original crashes (randint(0, -1)) when a mel has exactly segment_size / hop frames."""
    ds, frames = fine_tuning_dataset(tmp_path, 0, seconds=8192 / 22050 + 0.005)
    assert frames == 32
    mel, audio, _, _ = ds[0]
    assert mel.shape == (80, 32) and audio.shape == (8192,)


def test_fine_tuning_mel_loader_converts_another_format(tmp_path):
    """ESPnet mels read through melformats.mel_loader: the item is the converted mel (one frame
    fewer than ESPnet's, nothing printed), not ESPnet's values transposed."""
    import melformats

    h = config("v1")
    ds, frames = fine_tuning_dataset(tmp_path, 0)
    audio, _ = meldataset.load_wav(ds.audio_files[0])
    espnet = melformats.espnet_mel(audio)
    np.save(tmp_path / "ft.npy", espnet)
    assert espnet.shape == (frames + 1, 80)
    loader = melformats.mel_loader("espnet", h)
    ds = MelDataset(ds.audio_files, h, split=False, fine_tuning=True, base_mels_path=str(tmp_path), mel_loader=loader)
    mel, audio, _, _ = ds[0]
    converted, _ = melformats.convert(espnet, "espnet", h)
    torch.testing.assert_close(mel, torch.from_numpy(converted), rtol=0, atol=0)
    assert audio.shape == (frames * 256,)
    assert melformats.mel_loader("hifigan", h) is None


def test_fine_tuning_mel_shape_error(tmp_path):
    ds, _ = fine_tuning_dataset(tmp_path, 0)
    np.save(tmp_path / "ft.npy", np.zeros((3, 80, 10), np.float32))
    with pytest.raises(
        MelError, match=r"ft.npy: mel of shape \(3, 80, 10\); expected \(80, T\), \(1, 80, T\) or \(T, 80\)$"
    ):
        ds[0]


def test_demo_dataset(tmp_path):
    wavs, train, val = meldataset.make_demo_dataset(str(tmp_path / "demo"), n_train=3, n_val=1)
    ids = [line.split("|")[0] for line in open(train)]
    assert len(ids) == 3 and len(open(val).readlines()) == 1
    y, sr = load_wav(os.path.join(wavs, ids[0] + ".wav"))
    assert sr == 22050 and 2.0 <= len(y) / sr <= 4.0 and 0.3 < np.abs(y).max() <= 0.61
    assert sf.info(os.path.join(wavs, ids[0] + ".wav")).subtype == "PCM_16"


def test_mel_cache_filled_under_inference_mode_serves_training():
    """A filterbank first built under inference_mode must still work in an autograd graph."""
    meldataset._mel_basis.cache_clear()
    meldataset._hann_window.cache_clear()
    y = torch.randn(1, 4096)
    with torch.inference_mode():
        mel_spectrogram(y, 1024, 80, 22050, 256, 1024, 0, 8000)
    y_grad = y.clone().requires_grad_(True)
    mel_spectrogram(y_grad, 1024, 80, 22050, 256, 1024, 0, 8000).sum().backward()
    assert y_grad.grad is not None and torch.isfinite(y_grad.grad).all()
