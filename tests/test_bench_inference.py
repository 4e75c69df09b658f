"""benchmarks/bench_inference.py runs and prints the Table 1 columns (tiny run: V2, 0.5 s)."""

import os
import sys

import pytest
from conftest import REPO

sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import bench_inference  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def test_table_mode_prints_the_paper_columns(capsys):
    bench_inference.main(["--versions", "v2", "--seconds", "0.5", "--runs", "1", "--warmup", "0", "--cpu_only"])
    out = capsys.readouterr().out
    assert "| model | params (no weight norm) | device | kHz, median (min-max) | x real time |" in out
    row = next(line for line in out.splitlines() if line.startswith("| V2 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "0.93 M" and cells[2] == "CPU, 1 thread"
    khz, realtime = float(cells[3].split()[0]), float(cells[4].rstrip("x"))
    assert khz > 0 and abs(realtime - khz / 22.05) < 0.01 * realtime + 0.01


def test_folder_mode_vocodes_every_clip(capsys):
    bench_inference.main(["--folder", "3", "--clip_seconds", "0.3", "0.6", "--batch_sizes", "2", "--workers", "1"])
    out = capsys.readouterr().out
    assert "3 clips of 0.3-0.6 s" in out
    row = next(line for line in out.splitlines() if line.startswith("| 2 |"))
    assert float(row.split("|")[4]) > 0  # kHz
