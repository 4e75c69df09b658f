"""Train a list of configs on the same data and seed, then score each on the same validation clips.

    python benchmarks/compare.py --configs config_v3.json configs/ablations/*.json \
        --input_wavs_dir LJSpeech-1.1/wavs --input_training_file LJSpeech-1.1/training.txt \
        --input_validation_file LJSpeech-1.1/validation.txt --steps 500000 --out compare_table2

Each config trains with train.py for --steps steps into <out>/<name>/ (the config copied there,
with the --set overrides and the shared seed), then evaluate.py vocodes the validation clips with
the newest generator and scores them. The table (<out>/compare.csv and <out>/compare.md) holds,
per config: validation mel L1 (the paper's, ln units), multi-resolution STFT distance and
wide-band PESQ (when the optional `pesq` package is installed), sorted by mel L1. A run that is
already there (its g_ checkpoint reached --steps) is scored again without training, so an
interrupted comparison resumes.

Both stages run as the user would run them (the scripts, in subprocesses), so every option of
train.py that a config needs works here too.
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from meldataset import read_filelist  # noqa: E402
from training import FAMILIES  # noqa: E402
from utils import load_config, scan_checkpoint  # noqa: E402

METRICS = "mel_l1,mrstft,pesq"
COLUMNS = ("mel_l1", "mrstft", "pesq_wb")  # evaluate.py's CSV columns, in the table's order


def parse_value(text: str):
    """A --set value as JSON (numbers, lists, true/false), else the plain string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def run_name(config_path: str) -> str:
    """Folder name of a config's run: its file name without `config_` and `.json`."""
    name = os.path.splitext(os.path.basename(config_path))[0]
    return name[len("config_") :] if name.startswith("config_") else name


def write_run_config(config_path: str, run_dir: str, overrides: dict, seed: int) -> str:
    """Copy the config into the run folder with the overrides and the shared seed; returns its path."""
    with open(config_path, encoding="utf-8") as f:
        h = json.load(f)
    h.update(overrides)
    h["seed"] = seed
    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(run_dir, "config.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(h, f, indent=2)
    return path


def newest_generator(run_dir: str) -> str | None:
    """The newest generator checkpoint of a run folder (the first file of its family's checkpoint
    layout: g_, waveglow_, wavenet_), or None."""
    config = os.path.join(run_dir, "config.json")
    if not os.path.isfile(config):
        return None
    family = FAMILIES[load_config(config).get("model_family", "hifigan")]
    return scan_checkpoint(run_dir, family.checkpoint_layout[0][0])


def steps_of(checkpoint: str) -> int:
    return int(os.path.basename(checkpoint).rsplit("_", 1)[1])


def reference_folder(a) -> str:
    """<out>/reference: links to the validation filelist's wavs (evaluate.py scores a folder)."""
    folder = os.path.join(a.out, "reference")
    os.makedirs(folder, exist_ok=True)
    wavs = read_filelist(a.input_validation_file, a.input_wavs_dir).wav_paths()
    for wav in wavs[: a.validation_clips or None]:
        link = os.path.join(folder, os.path.basename(wav))
        if not os.path.exists(link):
            os.symlink(os.path.abspath(wav), link)
    return folder


def train(a, config: str, run_dir: str) -> float:
    """Train one config for a.steps steps; returns the wall seconds (0 when already trained)."""
    done = newest_generator(run_dir)
    if done is not None and steps_of(done) + 1 >= a.steps:
        return 0.0
    cmd = [sys.executable, os.path.join(REPO, "train.py"), "--config", config, "--checkpoint_path", run_dir]
    cmd += ["--input_wavs_dir", a.input_wavs_dir, "--input_training_file", a.input_training_file]
    cmd += ["--input_validation_file", a.input_validation_file, "--training_steps", str(a.steps)]
    cmd += ["--checkpoint_interval", str(a.steps), "--validation_interval", str(a.steps + 1)]
    cmd += ["--stdout_interval", str(max(1, a.steps // 10))]
    if a.device:
        cmd += ["--device", a.device]
    start = time.perf_counter()
    with open(os.path.join(run_dir, "train.log"), "w", encoding="utf-8") as log:
        result = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        raise SystemExit(f"error: training {config} failed; see {os.path.join(run_dir, 'train.log')}")
    return time.perf_counter() - start


def score(a, config: str, run_dir: str, reference: str) -> dict:
    """evaluate.py on the newest generator of the run -> the MEAN row's metrics."""
    checkpoint = newest_generator(run_dir)
    out_csv = os.path.join(run_dir, "metrics.csv")
    cmd = [sys.executable, os.path.join(REPO, "evaluate.py"), "--checkpoint_file", checkpoint, "--config", config]
    cmd += ["--reference_dir", reference, "--output_csv", out_csv, "--metrics", a.metrics]
    if a.device:
        cmd += ["--device", a.device]
    with open(os.path.join(run_dir, "evaluate.log"), "w", encoding="utf-8") as log:
        result = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        raise SystemExit(f"error: scoring {checkpoint} failed; see {os.path.join(run_dir, 'evaluate.log')}")
    with open(out_csv, encoding="utf-8") as f:
        mean = next(row for row in csv.DictReader(f) if row["file"] == "MEAN")
    return {"steps": steps_of(checkpoint) + 1, **{c: float(mean[c]) for c in COLUMNS if c in mean}}


def table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Header and formatted rows, sorted by mel L1 (best first)."""
    columns = [c for c in COLUMNS if any(c in r for r in rows)]
    header = ["config", "steps", *columns, "train_s"]
    body = []
    for r in sorted(rows, key=lambda r: r.get("mel_l1", float("inf"))):
        body.append([r["config"], str(r["steps"]), *(f"{r[c]:.4f}" if c in r else "" for c in columns)])
        body[-1].append(f"{r['train_s']:.0f}")
    return header, body


def write_tables(out: str, header: list[str], body: list[list[str]]) -> None:
    with open(os.path.join(out, "compare.csv"), "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header, *body])
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    with open(os.path.join(out, "compare.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Train configs on the same data and compare their validation scores.")
    parser.add_argument("--configs", nargs="+", required=True, help="config JSON files, one run each")
    parser.add_argument("--input_wavs_dir", required=True, help="folder of the wavs (train.py's flag)")
    parser.add_argument("--input_training_file", required=True, help="training filelist (train.py's flag)")
    parser.add_argument("--input_validation_file", required=True, help="validation filelist: scored clips")
    parser.add_argument("--steps", type=int, required=True, help="training steps per config")
    parser.add_argument("--out", default="compare_out", help="folder for the runs and the tables")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides for every run")
    parser.add_argument("--seed", type=int, default=1234, help="seed of every run (the configs' default)")
    parser.add_argument("--metrics", default=METRICS, help=f"evaluate.py --metrics (default {METRICS})")
    parser.add_argument("--validation_clips", type=int, default=0, help="score only the first N clips (0: all)")
    parser.add_argument("--device", default=None, choices=["cpu", "cuda"], help="default: cuda if available")
    a = parser.parse_args(argv)
    overrides = {}
    for item in a.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set takes KEY=VALUE, got {item!r}")
        overrides[key] = parse_value(value)
    names = [run_name(c) for c in a.configs]
    if len(set(names)) != len(names):
        parser.error("two configs give the same run name; rename one of them")
    os.makedirs(a.out, exist_ok=True)
    reference = reference_folder(a)
    rows = []
    for config_path, name in zip(a.configs, names):
        run_dir = os.path.join(a.out, name)
        config = write_run_config(config_path, run_dir, overrides, a.seed)
        seconds = train(a, config, run_dir)
        rows.append({"config": name, "train_s": seconds, **score(a, config, run_dir, reference)})
        print(f"{name}: " + ", ".join(f"{k} {v:.4g}" for k, v in rows[-1].items() if isinstance(v, float)))
    write_tables(a.out, *table(rows))


if __name__ == "__main__":
    main()
