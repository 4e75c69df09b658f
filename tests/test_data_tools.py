"""prepare_filelists.py (seeded, disjoint LJSpeech-format splits) and plot.py (PNG files)."""

import importlib.util
import struct

import numpy as np
import pytest
from conftest import harmonic, write_wav

import plot
import prepare_filelists
from meldataset import read_filelist

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HAS_CHECK_DATA = importlib.util.find_spec("datacheck") is not None


@pytest.fixture
def wavs(tmp_path):
    folder = tmp_path / "data" / "wavs"
    folder.mkdir(parents=True)
    for i in range(20):
        write_wav(folder / f"clip{i:02d}.wav", harmonic(0.5, f0=100 + 5 * i, seed=i))
    return folder


def run(*argv):
    prepare_filelists.main([str(a) for a in argv])


def ids(path):
    return [line.split("|")[0] for line in path.read_text(encoding="utf-8").splitlines()]


def test_folder_split_is_seeded_disjoint_and_complete(wavs, tmp_path, capsys):
    out1, out2, out3 = tmp_path / "s1", tmp_path / "s2", tmp_path / "s3"
    run("--wavs_dir", wavs, "--output_dir", out1, "--validation_size", 4, "--seed", 7)
    run("--wavs_dir", wavs, "--output_dir", out2, "--validation_size", 4, "--seed", 7)
    run("--wavs_dir", wavs, "--output_dir", out3, "--validation_size", 4, "--seed", 8)
    assert "(16 files)" in capsys.readouterr().out
    for name in ("training.txt", "validation.txt"):
        assert (out1 / name).read_bytes() == (out2 / name).read_bytes()  # same seed, same split
    train, val = ids(out1 / "training.txt"), ids(out1 / "validation.txt")
    assert len(val) == 4 and len(train) == 16 and not set(train) & set(val)
    assert sorted(train + val) == [f"clip{i:02d}" for i in range(20)]
    assert ids(out3 / "validation.txt") != val  # another seed, another draw
    assert (out1 / "training.txt").read_text().splitlines()[0].count("|") == 2  # id|text|normalized
    # the trainer reads them back as existing wav paths
    paths = read_filelist(str(out1 / "training.txt"), str(wavs)).wav_paths()
    assert len(paths) == 16 and all(p.endswith(".wav") for p in paths)


def test_validation_fraction_and_default_output_dir(wavs):
    run("--wavs_dir", wavs, "--validation_fraction", 0.25)
    parent = wavs.parent
    assert len(ids(parent / "validation.txt")) == 5 and len(ids(parent / "training.txt")) == 15
    with pytest.raises(SystemExit) as e:  # existing filelists are not replaced silently
        run("--wavs_dir", wavs, "--validation_fraction", 0.25)
    assert e.value.code == 2
    run("--wavs_dir", wavs, "--validation_size", 1, "--overwrite")
    assert len(ids(parent / "validation.txt")) == 1


def test_metadata_keeps_text_and_reports_missing_wavs(wavs, tmp_path, capsys):
    meta = tmp_path / "metadata.csv"
    lines = [f"clip{i:02d}|Text {i}.|text {i}" for i in range(10)] + ["gone|Missing.|missing", "clip10|Only text."]
    meta.write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    out = tmp_path / "out"
    run("--wavs_dir", wavs, "--metadata", meta, "--output_dir", out, "--validation_size", 2, "--seed", 1)
    printed = capsys.readouterr().out
    assert "excluded:" in printed and "gone.wav: file not found" in printed
    rows = (out / "training.txt").read_text().splitlines() + (out / "validation.txt").read_text().splitlines()
    assert len(rows) == 11 and "clip03|Text 3.|text 3" in rows and "clip10|Only text.|Only text." in rows


def test_bad_inputs_are_one_line_errors(wavs, tmp_path, capsys):
    for argv, message in (
        (("--wavs_dir", wavs, "--validation_size", 20), "leaves 0 of 20 files for training"),
        (("--wavs_dir", tmp_path / "none"), "none: folder not found; check --wavs_dir"),
        (("--wavs_dir", wavs, "--metadata", tmp_path / "no.csv"), "no.csv: metadata file not found"),
    ):
        with pytest.raises(SystemExit) as e:
            run(*argv, "--output_dir", tmp_path / "o")
        err = capsys.readouterr().err
        assert e.value.code == 2 and message in err and err.count("\n") == 1
    dup = tmp_path / "dup.csv"
    dup.write_text("clip00|a|a\nclip00|b|b\n")
    with pytest.raises(SystemExit):
        run("--wavs_dir", wavs, "--metadata", dup, "--output_dir", tmp_path / "o")
    assert "dup.csv:2: id clip00 repeats line 1" in capsys.readouterr().err


@pytest.mark.skipif(not HAS_CHECK_DATA, reason="check_data.py (reliability issue) is not merged yet")
def test_files_with_errors_are_excluded(wavs, tmp_path, capsys):
    (wavs / "broken.wav").write_bytes(b"RIFF....not a wav")
    run("--wavs_dir", wavs, "--output_dir", tmp_path / "o", "--validation_size", 2)
    printed = capsys.readouterr().out
    assert "excluded:" in printed and "broken.wav" in printed
    listed = ids(tmp_path / "o" / "training.txt") + ids(tmp_path / "o" / "validation.txt")
    assert "broken" not in listed and len(listed) == 20


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    return struct.unpack(">II", data[16:24])  # IHDR width, height


def test_spec_png(tmp_path, capsys):
    ref = write_wav(tmp_path / "ref.wav", harmonic(1.0, seed=0))
    gen = write_wav(
        tmp_path / "gen.wav", harmonic(1.0, seed=0) + 0.01 * np.random.default_rng(0).standard_normal(22050)
    )
    out = tmp_path / "figs" / "cmp.png"
    plot.main(["spec", "--reference", ref, "--generated", gen, "--output", str(out)])
    assert f"wrote {out}" in capsys.readouterr().out
    width, height = png_size(out)
    assert width > 600 and height > 500 and out.stat().st_size > 20_000


def test_curves_png(tmp_path, capsys):
    from torch.utils.tensorboard import SummaryWriter

    logdir = tmp_path / "cp" / "logs"
    with SummaryWriter(str(logdir)) as sw:
        for step in range(0, 50, 5):
            sw.add_scalar("training/mel_spec_error", 1.5 - step / 50, step)
        for step in (0, 25, 50):
            sw.add_scalar("validation/mel_spec_error", 1.6 - step / 60, step)
            sw.add_scalar("validation/pesq", 1.1 + step / 50, step)
    scalars = plot.read_scalars(str(logdir))
    assert list(scalars["validation/mel_spec_error"][0]) == [0, 25, 50]
    out = tmp_path / "curves.png"
    plot.main(["curves", "--logdir", str(logdir), "--output", str(out)])
    width, height = png_size(out)
    assert width > 500 and height > 500 and out.stat().st_size > 10_000
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit) as e:
        plot.main(["curves", "--logdir", str(empty), "--output", str(tmp_path / "x.png")])
    assert e.value.code == 2 and "no training/mel_spec_error" in capsys.readouterr().err
