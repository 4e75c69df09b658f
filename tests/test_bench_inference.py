"""benchmarks/bench_inference.py runs and prints the Table 1 columns (tiny run: V2, 0.5 s)."""

import os
import sys

import pytest
from conftest import REPO

sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import bench_inference  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(
    "version,params,paper", [("v2", "0.93 M", "214.97 (9.75x)"), ("melgan", "4.26 M", "145.52 (6.60x)")]
)
def test_table_mode_prints_the_paper_columns(capsys, version, params, paper):
    bench_inference.main(["--versions", version, "--seconds", "0.5", "--runs", "1", "--warmup", "0", "--cpu_only"])
    out = capsys.readouterr().out
    assert "| model | params (no weight norm) | device | kHz, median (min-max) | x real time |" in out
    row = next(line for line in out.splitlines() if line.startswith(f"| {version.upper()} |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == params and cells[2] == "CPU, 1 thread" and cells[5] == paper
    khz, realtime = float(cells[3].split()[0]), float(cells[4].rstrip("x"))
    assert khz > 0 and abs(realtime - khz / 22.05) < 0.01 * realtime + 0.01


def test_folder_mode_vocodes_every_clip(capsys):
    bench_inference.main(["--folder", "3", "--clip_seconds", "0.3", "0.6", "--batch_sizes", "2", "--workers", "1"])
    out = capsys.readouterr().out
    assert "3 clips of 0.3-0.6 s" in out
    row = next(line for line in out.splitlines() if line.startswith("| 2 |"))
    assert float(row.split("|")[4]) > 0  # kHz
