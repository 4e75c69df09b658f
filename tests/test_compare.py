"""benchmarks/compare.py: trains configs on the same data and seed, scores each with evaluate.py
and writes one table; a finished run is scored again without training."""

import csv
import json
import os
import subprocess
import sys

from conftest import REPO, TINY_DISCRIMINATORS, TINY_WAVEGLOW, make_training_data, tiny_config, write_baseline_config

from utils import load_checkpoint

TINY = dict(segment_size=2048, **TINY_DISCRIMINATORS)


def compare(tmp_path, configs, *extra):
    wavs, tr, va = make_training_data(tmp_path / "data", n=2)
    cmd = [sys.executable, os.path.join(REPO, "benchmarks", "compare.py"), "--configs", *configs]
    cmd += ["--input_wavs_dir", wavs, "--input_training_file", tr, "--input_validation_file", va]
    cmd += ["--steps", "1", "--out", str(tmp_path / "out"), "--metrics", "mel_l1,mrstft", "--device", "cpu"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(cmd + list(extra), capture_output=True, text=True, env=env, timeout=600)


def test_three_configs_one_table_sorted_by_mel_l1_and_resumed(tmp_path):
    """HiFi-GAN V3, V3 without MPD and a WaveGlow (another family's checkpoint files)."""
    configs = []
    for name, overrides in (("config_full.json", {}), ("config_no_mpd.json", {"use_mpd": False})):
        path = tmp_path / name
        path.write_text(json.dumps(dict(tiny_config("v3", **TINY, **overrides))))
        configs.append(str(path))
    configs.append(write_baseline_config(tmp_path / "wg", "waveglow", **TINY_WAVEGLOW))
    r = compare(tmp_path, configs)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    with open(tmp_path / "out" / "compare.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(row["config"] for row in rows) == ["full", "no_mpd", "waveglow"]
    assert list(rows[0]) == ["config", "steps", "mel_l1", "mrstft", "train_s"]
    mel_l1 = [float(row["mel_l1"]) for row in rows]
    assert mel_l1 == sorted(mel_l1) and all(0 < v < 20 for v in mel_l1)
    assert all(row["steps"] == "1" and float(row["train_s"]) > 0 for row in rows)
    markdown = (tmp_path / "out" / "compare.md").read_text().splitlines()
    assert markdown[0] == "| config | steps | mel_l1 | mrstft | train_s |" and len(markdown) == 5
    assert os.path.isfile(tmp_path / "out" / "no_mpd" / "g_00000000")
    assert "mpd" not in load_checkpoint(str(tmp_path / "out" / "no_mpd" / "do_00000000"))

    again = compare(tmp_path, configs)  # both runs are complete: scored again, not retrained
    assert again.returncode == 0, again.stderr[-2000:]
    with open(tmp_path / "out" / "compare.csv") as f:
        rerun = list(csv.DictReader(f))
    assert [float(row["train_s"]) for row in rerun] == [0.0, 0.0, 0.0]
    assert [row["mel_l1"] for row in rerun] == [row["mel_l1"] for row in rows]
