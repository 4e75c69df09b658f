"""evaluate.py: ideal values on identical audio, monotonic degradation with noise, file matching,
the CSV/summary CLI, the checkpoint mode (synthesis.py) and train.py --validation_metrics."""

import csv
import importlib.util
import sys

import numpy as np
import pytest
import torch
from conftest import save_generator, tiny_config, write_wav

import evaluate
import metrics
from meldataset import synth_speechlike

HAS_PESQ = importlib.util.find_spec("pesq") is not None
HAS_PYSTOI = importlib.util.find_spec("pystoi") is not None
needs_pesq = pytest.mark.skipif(not HAS_PESQ, reason="pesq not installed (pip install -r requirements-extra.txt)")
needs_pystoi = pytest.mark.skipif(not HAS_PYSTOI, reason="pystoi not installed (pip install -r requirements-extra.txt)")

SR = 22050
NOISE_LEVELS = (0.003, 0.01, 0.03)  # white noise std added to a signal of peak 0.6


@pytest.fixture(scope="module")
def h():
    return tiny_config("v1")


@pytest.fixture(scope="module")
def clip():
    # 1 s of the synthetic speech-like signal; PESQ's voice activity detector accepts this seed
    return synth_speechlike(1.0, SR, np.random.default_rng(0))


@pytest.fixture(scope="module")
def noisy_scores(clip, h):
    """Metrics of the clean clip against itself and against 3 increasingly noisy copies."""
    noise = np.random.default_rng(1).standard_normal(clip.size).astype(np.float32)
    names = metrics.available_metrics(notify=lambda msg: None)
    return [metrics.compute_metrics(clip, clip + level * noise, h, names) for level in (0.0, *NOISE_LEVELS)]


def test_identical_audio_gives_ideal_values(noisy_scores):
    ideal = noisy_scores[0]
    for key in ("mel_l1", "mrstft", "mrstft_sc", "mrstft_logmag", "mcd_db", "f0_rmse_cents", "f0_rmse_hz"):
        assert ideal[key] == 0.0, key
    assert ideal["periodicity_rmse"] == 0.0 and ideal["vuv_f1"] == 1.0


@needs_pesq
def test_pesq_identical_and_noisy(noisy_scores):
    pesq = [s["pesq_wb"] for s in noisy_scores]
    assert 4.5 < pesq[0] <= 4.65  # the wide-band maximum is 4.64
    assert all(a > b for a, b in zip(pesq, pesq[1:])), pesq
    assert pesq[-1] < 2.0


@needs_pystoi
def test_stoi_identical_and_noisy(noisy_scores):
    stoi = [s["stoi"] for s in noisy_scores]
    assert stoi[0] == pytest.approx(1.0, abs=1e-6)
    assert all(a > b for a, b in zip(stoi, stoi[1:])), stoi


def test_metrics_degrade_monotonically_with_noise(noisy_scores):
    for key in ("mel_l1", "mrstft", "mrstft_sc", "mrstft_logmag", "mcd_db", "periodicity_rmse"):
        values = [s[key] for s in noisy_scores]
        assert all(a < b for a, b in zip(values, values[1:])), (key, values)
    f0 = [s["f0_rmse_cents"] for s in noisy_scores]
    assert all(a <= b for a, b in zip(f0, f0[1:])), f0  # pyin keeps the pitch exactly at low noise
    vuv = [s["vuv_f1"] for s in noisy_scores]
    assert all(a >= b for a, b in zip(vuv, vuv[1:])) and vuv[-1] < 1.0, vuv
    # the scale of MCD: a fraction of a dB at 50 dB SNR, a few dB at 26 dB SNR
    assert 0.2 < noisy_scores[1]["mcd_db"] < 1.0 and 1.5 < noisy_scores[3]["mcd_db"] < 4.0


def test_lengths_are_trimmed_to_the_shorter(clip, h):
    longer = np.concatenate([clip, np.full(300, 0.5, np.float32)])
    assert metrics.mel_l1(clip, longer, h) == 0.0
    assert metrics.mrstft(longer, clip)["mrstft"] == 0.0
    assert metrics.mcd(clip, longer, h) == 0.0


def test_mcd_definition_on_a_known_cepstral_shift(clip, h):
    """A gain change shifts only c0, which MCD excludes; a tilt shows up as c1."""
    assert metrics.mcd(clip, clip * 0.5, h) < 0.05
    cep = metrics.mel_cepstra(clip, h)
    assert cep.shape == (clip.size // h.hop_size, metrics.MCD_NUM_CEPSTRA - 1)


def test_f0_metrics_of_a_pitch_shift(h):
    t = np.arange(SR) / SR
    tone = lambda f: sum(np.sin(2 * np.pi * k * f * t) / k for k in range(1, 6)).astype(np.float32) * 0.2  # noqa: E731
    m = metrics.f0_metrics(tone(150.0), tone(150.0 * 2 ** (100 / 1200)), SR, h.hop_size)  # +100 cents
    assert m["f0_rmse_cents"] == pytest.approx(100, abs=15)
    assert m["f0_rmse_hz"] == pytest.approx(150 * (2 ** (100 / 1200) - 1), abs=2.5)
    assert m["vuv_f1"] == 1.0


def test_reference_name_matching():
    assert evaluate.reference_name("dir/LJ001-0001_generated.wav") == "LJ001-0001.wav"
    assert evaluate.reference_name("LJ001-0001_generated_e2e.wav") == "LJ001-0001.wav"
    assert evaluate.reference_name("LJ001-0001.wav") == "LJ001-0001.wav"


def test_missing_package_is_skipped_with_a_notice(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pesq" else real(name, *a))
    notices = []
    assert metrics.available_metrics(["mel_l1", "pesq"], notices.append) == ["mel_l1"]
    assert len(notices) == 1 and "pesq skipped" in notices[0] and "requirements-extra.txt" in notices[0]


def test_cli_folder_mode_writes_csv_and_summary(tmp_path, clip, capsys):
    ref, gen = tmp_path / "ref", tmp_path / "gen"
    ref.mkdir()
    gen.mkdir()
    other = synth_speechlike(1.0, SR, np.random.default_rng(5))
    write_wav(ref / "a.wav", clip)
    write_wav(ref / "b.wav", other)
    write_wav(gen / "a_generated.wav", clip)  # identical (16-bit both)
    write_wav(gen / "b_generated_e2e.wav", other + 0.01 * np.random.default_rng(2).standard_normal(other.size))
    write_wav(gen / "c_generated.wav", clip)  # no reference
    out = tmp_path / "m.csv"
    argv = ["--generated_dir", str(gen), "--reference_dir", str(ref), "--output_csv", str(out)]
    evaluate.main([*argv, "--metrics", "mel_l1,mrstft,mcd", "--config", str(write_tiny(tmp_path))])
    text = capsys.readouterr().out
    assert "c_generated.wav: no reference c.wav" in text
    assert "2 file(s)" in text and "mel_l1" in text and "mcd_db" in text
    rows = list(csv.DictReader(out.open()))
    assert [r["file"] for r in rows] == ["a_generated.wav", "b_generated_e2e.wav", "MEAN"]
    assert float(rows[0]["mel_l1"]) == 0.0 and float(rows[0]["mcd_db"]) == 0.0
    assert float(rows[1]["mel_l1"]) > 0.1
    assert float(rows[2]["mrstft"]) == pytest.approx((float(rows[0]["mrstft"]) + float(rows[1]["mrstft"])) / 2, 1e-4)


def write_tiny(folder):
    import json

    path = folder / "tiny.json"
    path.write_text(json.dumps(dict(tiny_config("v1"))))
    return path


def test_cli_user_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        evaluate.main(["--generated_dir", str(tmp_path / "nope"), "--reference_dir", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nope: folder not found; check --generated_dir" in err
    (tmp_path / "g").mkdir()
    write_wav(tmp_path / "g" / "x.wav", np.zeros(SR, np.float32), sr=16000)
    write_wav(tmp_path / "x.wav", np.zeros(SR, np.float32), sr=16000)
    argv = ["--generated_dir", str(tmp_path / "g"), "--reference_dir", str(tmp_path), "--metrics", "mel_l1"]
    with pytest.raises(SystemExit) as e:
        evaluate.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and "16000 Hz but the config's sampling_rate is 22050 Hz" in err
    # one unreadable file among good ones: reported and skipped, the others scored, exit status 1
    good = synth_speechlike(0.5, SR, np.random.default_rng(4))
    write_wav(tmp_path / "y.wav", good)
    write_wav(tmp_path / "g" / "y_generated.wav", good)
    with pytest.raises(SystemExit) as e:
        evaluate.main([*argv, "--output_csv", str(tmp_path / "m.csv")])
    assert e.value.code == 1 and "x.wav: 16000 Hz" in capsys.readouterr().err
    assert [r["file"] for r in csv.DictReader((tmp_path / "m.csv").open())] == ["y_generated.wav", "MEAN"]


def test_checkpoint_mode_vocodes_references(tmp_path, clip, one_thread):
    import soundfile as sf

    from meldataset import to_pcm16
    from synthesis import load_generator, vocode, wav_to_mel

    cp = tmp_path / "cp"
    save_generator(cp, tiny_config("v1"), name="g_00000001")
    ref = tmp_path / "ref"
    ref.mkdir()
    write_wav(ref / "a.wav", clip)
    write_wav(ref / "b.wav", clip[: SR // 2])
    out_csv, out_dir = tmp_path / "m.csv", tmp_path / "gen"
    argv = ["--checkpoint_file", str(cp / "g_00000001"), "--reference_dir", str(ref), "--metrics", "mel_l1,mrstft"]
    evaluate.main([*argv, "--output_csv", str(out_csv), "--output_dir", str(out_dir)])
    rows = list(csv.DictReader(out_csv.open()))
    assert [r["file"] for r in rows] == ["a.wav", "b.wav", "MEAN"]
    assert all(float(r["mel_l1"]) > 0.5 for r in rows)  # an untrained generator is far from the reference
    assert sorted(p.name for p in out_dir.iterdir()) == ["a_generated.wav", "b_generated.wav"]
    # the vocoded wavs are written by the one 16-bit writer: clipped, int16 = round-down of x * 32768
    generator, h = load_generator(str(cp / "g_00000001"), device="cpu")
    written, sr = sf.read(out_dir / "a_generated.wav", dtype="int16")
    assert sr == h.sampling_rate
    np.testing.assert_array_equal(written, to_pcm16(vocode(generator, h, wav_to_mel(str(ref / "a.wav"), h))))


@needs_pesq
def test_train_validation_metrics_logs_pesq_and_mrstft(tmp_path, one_thread):
    from conftest import run_train, scalar_tags

    cp = run_train(tmp_path, "--validation_interval", "1", "--validation_metrics", steps=1)
    acc = scalar_tags(cp / "logs")
    tags = acc.Tags()["scalars"]
    assert "validation/pesq" in tags and "validation/mrstft" in tags
    pesq = acc.Scalars("validation/pesq")[0].value
    mrstft = acc.Scalars("validation/mrstft")[0].value
    assert 1.0 <= pesq <= 4.65 and mrstft > 0.5  # an untrained generator


def test_validation_without_metrics_never_imports_them(tmp_path, monkeypatch, one_thread):
    """Off by default: validate() runs with the metric modules unimportable and logs no metric tags."""
    from conftest import scalar_tags
    from torch.utils.data import DataLoader
    from torch.utils.tensorboard import SummaryWriter

    import train
    from meldataset import MelDataset
    from models import Generator

    assert train.parse_args([]).validation_metrics is False
    for module in ("evaluate", "metrics", "pesq", "pystoi"):
        monkeypatch.setitem(sys.modules, module, None)  # any import of them now raises ImportError
    h = tiny_config("v1", segment_size=2048)
    wav = write_wav(tmp_path / "v.wav", synth_speechlike(0.5, SR, np.random.default_rng(3)))
    validset = MelDataset([wav], h, split=False, shuffle=False)
    with SummaryWriter(str(tmp_path / "logs")) as sw:
        train.validate(Generator(h), DataLoader(validset, batch_size=1), h, torch.device("cpu"), sw, 1)
    tags = scalar_tags(tmp_path / "logs").Tags()["scalars"]
    assert tags == ["validation/mel_spec_error"]
