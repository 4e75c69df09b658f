"""check_mel.py: mels made each wrong way from a synthetic speech-like signal are recognised, with
and without the source wav; a correct mel passes; the CLI's exit status."""

import math
import os

import numpy as np
import pytest
import torch
from conftest import LJ_WAVS, config, needs_ljspeech, write_wav

import check_mel
import melformats
from meldataset import load_wav, mel_from_config, mel_spectrogram, synth_speechlike

SR = 22050


@pytest.fixture(scope="module")
def h():
    return config("v1")


@pytest.fixture(scope="module")
def audio():
    """2 s of speech-like signal between 0.2 s pauses of digital silence (as recordings have)."""
    y = synth_speechlike(2.0, SR, np.random.default_rng(0))
    pause = np.zeros(SR // 5, np.float32)
    return np.concatenate([pause, y, pause])


def mel_of(y, h, **changes) -> np.ndarray:
    """(num_mels, T) mel of this frontend with some parameters changed."""
    p = dict(n_fft=h.n_fft, num_mels=h.num_mels, sampling_rate=SR, hop_size=h.hop_size, win_size=h.win_size)
    p.update(fmin=h.fmin, fmax=h.fmax)
    p.update(changes)
    return mel_spectrogram(torch.from_numpy(np.asarray(y, np.float32)), **p)[0].numpy()


def centre_padded(y, h) -> np.ndarray:
    """librosa/torchaudio style: center=True, no extra padding -> floor(n / hop) + 1 frames."""
    import librosa

    window = torch.hann_window(h.win_size)
    spec = torch.stft(
        torch.from_numpy(y), h.n_fft, h.hop_size, h.win_size, window=window, center=True, return_complex=True
    )
    basis = librosa.filters.mel(sr=SR, n_fft=h.n_fft, n_mels=h.num_mels, fmin=h.fmin, fmax=h.fmax)
    return np.log(np.maximum(basis @ spec.abs().numpy(), 1e-5))


def tacotron_db(ln_mel):
    return 20 * np.log10(np.maximum(np.exp(ln_mel), 1e-5)) - 20  # ref_level_db 20, floor -100 dB


def wrong_mels(y, h) -> dict:
    """code expected -> a mel made that wrong way."""
    ln = mel_from_config(torch.from_numpy(y), h)[0].numpy()
    return {
        "orientation": ln.T,
        "bands": mel_of(y, h, num_mels=64),
        "log10": ln / math.log(10),
        "db": 20 * np.log10(np.exp(ln)),  # amplitude_to_db / 10 log10(power)
        "linear": np.exp(ln),
        "standardized": (ln - ln.mean()) / ln.std(),
        "range01": np.clip((tacotron_db(ln) + 100) / 100, 0, 1),
        "symmetric4": np.clip(8 * (tacotron_db(ln) + 100) / 100 - 4, -4, 4),
        "level": mel_of(y * 32768, h),  # audio read as int16 and not scaled
        "floor": np.log(np.maximum(np.exp(ln) * np.where(ln <= math.log(1e-5), 1e-4, 1.0), 1e-10)),  # clamp 1e-10
    }


def codes(findings, severity="error"):
    return sorted({f.code for f in findings if f.severity == severity})


def test_correct_mel_passes(audio, h):
    ln = mel_from_config(torch.from_numpy(audio), h)[0].numpy()
    assert check_mel.check_mel(ln, h) == []
    assert check_mel.check_mel(ln, h, audio) == []
    assert check_mel.check_mel(ln[None], h, audio) == []  # (1, 80, T) is accepted too
    assert check_mel.check_mel(ln.astype(np.float64), h) == []


@needs_ljspeech
def test_real_speech_correct_and_wrong_mels(h):
    """Every LJ Speech clip: the right mel passes; wrong ones are recognised from their values alone."""
    names = sorted(n for n in os.listdir(LJ_WAVS) if n.endswith(".wav"))
    assert len(names) >= 10
    for i, name in enumerate(names):
        y, _ = load_wav(os.path.join(LJ_WAVS, name))
        ln = mel_from_config(torch.from_numpy(y), h)[0].numpy()
        assert check_mel.check_mel(ln, h) == [], name
        if i < 3:  # the comparison with the wav is slower: a few clips
            assert check_mel.check_mel(ln, h, y) == [], name
        for expected, mel in (
            ("log10", ln / math.log(10)),
            ("db", 20 * np.log10(np.exp(ln))),
            ("standardized", (ln - ln.mean()) / ln.std()),
            ("symmetric4", np.clip(8 * (tacotron_db(ln) + 100) / 100 - 4, -4, 4)),
            ("range01", np.clip((tacotron_db(ln) + 100) / 100, 0, 1)),
            ("linear", np.exp(ln)),
        ):
            assert codes(check_mel.check_mel(mel, h)) == [expected], (name, expected)


@pytest.mark.parametrize("with_wav", [False, True], ids=["statistics", "against-wav"])
def test_each_wrong_kind_is_recognised(audio, h, with_wav):
    for expected, mel in wrong_mels(audio, h).items():
        found = check_mel.check_mel(mel, h, audio if with_wav else None)
        assert codes(found) == [expected], (expected, found)
        assert all(f.message for f in found)


def test_wav_comparison_names_the_exact_scale(audio, h):
    """With the wav, the affine map gives the log base / dB factor and the conversion."""
    ln = mel_from_config(torch.from_numpy(audio), h)[0].numpy()
    (f,) = check_mel.check_mel(10 * np.log10(np.exp(ln)), h, audio)  # 10 log10 of the magnitude
    assert (
        f.code == "db" and "10*log10 of the magnitude mel (dB)" in f.message and "ln(mel) = values / 4.343" in f.message
    )
    (f,) = check_mel.check_mel(20 * np.log10(np.exp(ln)), h, audio)
    assert "20*log10" in f.message and "ln(mel) = values / 8.686" in f.message
    (f,) = check_mel.check_mel(2 * ln, h, audio)  # natural log of the power: the floor is only a guess without wav
    assert f.code == "ln_power"
    (f,) = check_mel.check_mel(np.exp(2 * ln), h, audio)
    assert f.code == "linear" and "power" in f.message


def test_frames_centre_padding_needs_the_wav(audio, h):
    mel = centre_padded(audio, h)
    assert mel.shape[1] == audio.size // h.hop_size + 1
    assert check_mel.check_mel(mel, h) == []  # the values alone look right
    found = check_mel.check_mel(mel, h, audio)
    assert codes(found) == ["frames_center"] and "center=False" in found[0].message
    short = mel_from_config(torch.from_numpy(audio), h)[0].numpy()[:, :-10]  # e.g. another hop size
    found = check_mel.check_mel(short, h, audio)
    assert codes(found) == ["frames"] and f"the wav gives {audio.size // 256}" in found[0].message


def test_fmax_mismatch_needs_the_wav(audio, h):
    mel = mel_of(audio, h, fmax=None)  # sampling_rate / 2 instead of the config's 8000
    assert check_mel.check_mel(mel, h) == []
    found = check_mel.check_mel(mel, h, audio)
    assert codes(found) == ["fmax"] and "fmax=11025" in found[0].message and "fmax=8000" in found[0].message


def test_per_band_standardization(audio, h):
    ln = mel_from_config(torch.from_numpy(audio), h)[0].numpy()
    mel = (ln - ln.mean(1, keepdims=True)) / ln.std(1, keepdims=True)
    assert codes(check_mel.check_mel(mel, h)) == ["standardized"]
    (f,) = check_mel.check_mel(mel, h, audio)
    assert f.code == "per_band" and "per mel band" in f.message


def test_tts_like_mels_pass_with_warnings_only(audio, h):
    """Predicted mels are smooth and overshoot the floor a little: not an error."""
    from scipy.ndimage import uniform_filter

    ln = mel_from_config(torch.from_numpy(audio), h)[0].numpy()
    noisy = ln + 0.3 * np.random.default_rng(0).standard_normal(ln.shape)
    assert codes(check_mel.check_mel(noisy, h, audio)) == [] and codes(check_mel.check_mel(noisy, h), "warning") == [
        "floor"
    ]
    assert check_mel.check_mel(uniform_filter(ln, (3, 5)), h, audio) == []
    assert codes(check_mel.check_mel(ln[:, :-2], h, audio), "warning") == ["frames"]  # fine-tuning trims 2 frames


def test_nonfinite_and_bad_shapes(h):
    mel = np.zeros((80, 50), np.float32)
    mel[3, 4] = np.nan
    assert codes(check_mel.check_mel(mel, h)) == ["nonfinite"]
    assert codes(check_mel.check_mel(np.zeros((2, 80, 50)), h)) == ["shape"]


def test_cli_exit_status_and_lines(tmp_path, audio, h, capsys):
    good, bad, wavs = tmp_path / "good", tmp_path / "bad", tmp_path / "wavs"
    for d in (good, bad, wavs):
        d.mkdir()
    write_wav(wavs / "a.wav", audio, subtype="FLOAT")
    ln = mel_from_config(torch.from_numpy(audio), h)[0].numpy()
    np.save(good / "a.npy", ln)
    np.save(bad / "a.npy", ln.T / math.log(10))
    with pytest.raises(SystemExit) as e:
        check_mel.main([str(good), "--wavs_dir", str(wavs)])
    assert e.value.code == 0 and "1 of 1 mel file(s) compatible" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        check_mel.main([str(bad / "a.npy"), "--wavs_dir", str(wavs)])
    out = capsys.readouterr().out
    assert e.value.code == 1
    assert "a.npy: error [orientation]" in out and "save mel.T" in out
    assert "a.npy: error [log10]" in out and "0 of 1 mel file(s) compatible (log10 x1, orientation x1)" in out
    with pytest.raises(SystemExit) as e:
        check_mel.main([str(tmp_path / "missing")])
    assert e.value.code == 2 and "missing: no such file or folder" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# The toolkits' recipes through the command line: identified with --wavs_dir, converted with --convert
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """(folder holding a.wav, its audio as read): the synthetic clip of tests/test_melformats.py
    (1.6 s of speech-like signal between 0.2 s pauses), as a 16-bit wav."""
    pause = np.zeros(SR // 5, np.float32)
    wavs = tmp_path_factory.mktemp("wavs")
    write_wav(wavs / "a.wav", np.concatenate([pause, synth_speechlike(1.6, SR, np.random.default_rng(0)), pause]))
    return str(wavs), load_wav(str(wavs / "a.wav"))[0]


def saved(folder, mel) -> str:
    folder.mkdir(exist_ok=True)
    np.save(folder / "a.npy", mel)
    return str(folder)


def run_cli(argv, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as e:
        check_mel.main(argv)
    cap = capsys.readouterr()
    return e.value.code, cap.out + cap.err


@pytest.mark.parametrize("name", melformats.PRESETS)
def test_cli_names_every_difference_of_the_recipes(tmp_path, speech, h, name, capsys):
    from test_melformats import RECIPES

    wavs, y = speech
    code, out = run_cli([saved(tmp_path / name, melformats.recipe_mel(name, y, h)), "--wavs_dir", wavs], capsys)
    found = {line.split("[")[1].split("]")[0] for line in out.splitlines() if ": error [" in line}
    assert found == RECIPES[name][0]
    assert code == (1 if found else 0)
    if name == "hifigan":  # this project's own frontend passes cleanly: not even a warning
        assert "1 of 1 mel file(s) compatible\n" in out and "warning" not in out


# L1 (ln units) to the true mel printed by --convert, about 15 % over the values measured on this
# clip (espnet 0.161; coqui 0.530, most of it the pauses' digital silence held at Coqui's -4 clip)
CLI_L1_LIMIT = {"espnet": 0.185, "coqui": 0.61}


def printed_l1(out: str) -> float:
    (line,) = [x for x in out.splitlines() if "L1 to this frontend's mel of the wav" in x]
    return float(line.split(": ")[-1].split()[0])


def test_cli_convert_preset_and_auto(tmp_path, speech, h, capsys):
    wavs, y = speech
    true = melformats.hifigan_mel(y, h)
    espnet = saved(tmp_path / "espnet", melformats.espnet_mel(y))
    code, out = run_cli([espnet, "--convert", "--from", "espnet", "--out", str(tmp_path / "o1")], capsys)
    assert code == 0 and "1 of 1 mel file(s) converted" in out
    assert "could not: the source holds nothing below 80 Hz or above 7600 Hz" in out
    assert f"T {true.shape[1] + 1} -> {true.shape[1]}" in out
    mel = np.load(tmp_path / "o1" / "a.npy")
    assert mel.shape == true.shape and np.abs(mel - true).mean() < CLI_L1_LIMIT["espnet"]
    coqui = saved(tmp_path / "coqui", melformats.coqui_mel(y))
    code, out = run_cli([coqui, "--wavs_dir", wavs, "--convert", "--out", str(tmp_path / "o2")], capsys)
    assert code == 0 and "identified: [frames_center]; [fmax]; [symmetric4]" in out
    mel = np.load(tmp_path / "o2" / "a.npy")
    assert printed_l1(out) == pytest.approx(np.abs(mel - true).mean(), abs=1e-3)
    assert printed_l1(out) < CLI_L1_LIMIT["coqui"]


def test_cli_convert_with_given_levels(tmp_path, speech, h, capsys):
    """Coqui mels made with min_level_db -120 and ref_level_db 25: the preset's levels (-100, 20)
    put the level off (measured L1 0.825); given with --set they convert (0.233: the lower floor
    clips less of the pauses than the default recipe)."""
    wavs, y = speech
    coqui = saved(tmp_path / "coqui", melformats.coqui_mel(y, min_level_db=-120.0, ref_level_db=25.0))
    argv = [coqui, "--wavs_dir", wavs, "--convert", "--from", "coqui"]
    _, out = run_cli(argv + ["--out", str(tmp_path / "o1")], capsys)
    assert printed_l1(out) > 0.5
    levels = ["--set", "min_level_db=-120", "--set", "ref_level_db=25"]
    code, out = run_cli(argv + levels + ["--out", str(tmp_path / "o2")], capsys)
    assert code == 0 and printed_l1(out) < 0.27


def test_cli_convert_usage_errors(tmp_path, speech, capsys):
    wavs, y = speech
    mels = saved(tmp_path / "m", melformats.espnet_mel(y))
    code, out = run_cli([mels, "--convert"], capsys)
    assert code == 2 and "--convert needs --out DIR" in out
    code, out = run_cli([mels, "--from", "espnet"], capsys)
    assert code == 2 and "--from, --set and --out are for --convert" in out
    code, out = run_cli(
        [mels, "--convert", "--from", "espnet", "--set", "fmni=55", "--out", str(tmp_path / "o")], capsys
    )
    assert code == 2 and "unknown format parameter(s) fmni" in out
    code, out = run_cli([mels, "--convert", "--from", "espnet", "--out", mels], capsys)
    assert code == 2 and "holds the input mels" in out
