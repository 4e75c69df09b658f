"""benchmarks/bench_process.py: the whole-process folder comparison (run against this repository
as its own "other checkout": same outputs, both timed) and the one-file thread speed-up."""

import os
import sys

import numpy as np
import pytest
from conftest import REPO

sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import bench_process  # noqa: E402

from synthesis import load_generator, vocode  # noqa: E402


def table_rows(out: str, label: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in out.splitlines() if line.startswith(label)]


def test_workload_is_an_original_format_checkpoint_and_mels(tmp_path):
    checkpoint, mels = bench_process.write_workload(str(tmp_path), "v2", 2, 0.1, seed=3)
    generator, h = load_generator(checkpoint)
    names = sorted(os.listdir(mels))
    assert names == ["utt000.npy", "utt001.npy"]
    mel = np.load(os.path.join(mels, names[0]))
    assert mel.shape == (80, round(0.1 * 22050 / 256)) and h.upsample_initial_channel == 128
    assert vocode(generator, h, mel).shape == (mel.shape[1] * h.hop_size,)


def test_folder_mode_times_both_processes_and_compares_their_wavs(capsys):
    bench_process.main(
        ["folder", "--versions", "v2", "--files", "2", "--seconds", "0.2", "--repeats", "1", "--warmup", "0"]
        + ["--orig", REPO]
    )
    out = capsys.readouterr().out
    (row,) = table_rows(out, "| V2 ")
    _, audio, ours, _, theirs, _, ratio, lsb = row
    assert float(audio) == pytest.approx(0.4)
    assert float(ours.split()[0]) > 0 and float(theirs.split()[0]) > 0 and ratio.endswith("x")
    assert lsb == "0"  # the same code on both sides writes the same wavs


def test_one_file_mode_gives_the_same_audio_at_both_thread_counts(capsys):
    bench_process.main(["one_file", "--versions", "v3", "--seconds", "0.2", "--repeats", "1", "--warmup", "0"])
    (row,) = table_rows(capsys.readouterr().out, "| V3 ")
    assert row[3].endswith("x") and float(row[3][:-1]) > 0
    assert float(row[4]) < 1e-4
