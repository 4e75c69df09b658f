"""Training survives being killed and bad numbers: SIGKILL at seeded random points (one during a
checkpoint write) then resume, SIGTERM to the whole process group, fallback from a broken newest
checkpoint, a failed checkpoint write, pruning, and NaN batches skipped and counted."""

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch
from conftest import REPO, harmonic, scalar_tags, tiny_config, write_wav
from train_runner import nan_at

import train
import training
from utils import CheckpointError, list_checkpoints, load_checkpoint, remove_temp_files

SEED = 1234  # kill points
TIMEOUT = 240  # seconds any one phase may take on a busy 2-core machine


def make_data(folder, names=("a", "b", "c", "d")) -> tuple[str, str, str]:
    wavs = folder / "wavs"
    wavs.mkdir(parents=True)
    for i, name in enumerate(names):
        write_wav(wavs / f"{name}.wav", harmonic(0.6, f0=110 + 25 * i, seed=i))
    write_wav(wavs / "val.wav", harmonic(0.3, f0=150, seed=9))
    (folder / "train.txt").write_text("".join(f"{n}|text\n" for n in names))
    (folder / "val.txt").write_text("val|text\n")
    return str(wavs), str(folder / "train.txt"), str(folder / "val.txt")


def base_argv(tmp_path, data, **config) -> list[str]:
    wavs, tr, va = data
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(dict(tiny_config(segment_size=1024, **config))))
    return [
        "--config", str(path), "--input_wavs_dir", wavs, "--input_training_file", tr,
        "--input_validation_file", va, "--checkpoint_path", str(tmp_path / "cp"), "--device", "cpu",
        "--stdout_interval", "1", "--summary_interval", "1", "--validation_interval", "1000",
    ]  # fmt: skip


def complete_steps(cp) -> list[int]:
    """Steps with both g_ and do_ present (renamed into place = completely written)."""
    return [int(p[-8:]) for p in list_checkpoints(str(cp), "do_") if os.path.exists(os.path.join(cp, "g_" + p[-8:]))]


class Run:
    """train.py in a subprocess and its own process group; a thread collects its output lines."""

    def __init__(self, argv, faults=()):
        """`faults`: tests/train_runner.py options (e.g. ("--slow_save", "600"))."""
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(REPO, "tests", "train_runner.py"), *faults, "--", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )
        self.lines, self.changed = [], threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self.changed:
                self.lines.append(line)
                self.changed.notify_all()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, condition, timeout: float = TIMEOUT) -> None:
        """Until `condition()` holds; fails if the process ends first."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not condition():
                assert self.proc.poll() is None, f"training ended early:\n{self.output[-3000:]}"
                assert time.monotonic() < deadline, f"timed out:\n{self.output[-3000:]}"
                self.changed.wait(0.1)

    def printed(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def send(self, sig: int) -> int:
        """Send `sig` to the whole process group (a terminal's Ctrl-C, Slurm) and wait for the exit."""
        os.killpg(self.proc.pid, sig)
        rc = self.proc.wait(TIMEOUT)
        self.reader.join(10)
        return rc

    def first_step(self) -> int:
        return int(next(line for line in self.lines if line.startswith("Steps : ")).split()[2].rstrip(","))


def test_sigkill_anywhere_then_resume_and_sigterm(tmp_path):
    rng = random.Random(SEED)
    argv = base_argv(tmp_path, make_data(tmp_path / "data"), num_workers=1) + ["--keep_checkpoints", "2"]
    argv += ["--training_steps", "1000"]
    cp = tmp_path / "cp"

    # 1. SIGKILL at a random moment after a random step (checkpoints every 2 steps: maybe mid-save)
    target, delay = rng.choice([3, 4, 5]), rng.uniform(0, 1.5)
    run = Run(argv + ["--checkpoint_interval", "2"])
    run.wait_for(lambda: run.printed(f"Steps : {target},"))
    time.sleep(delay)
    assert run.send(signal.SIGKILL) == -signal.SIGKILL
    done = complete_steps(cp)
    assert done and done[-1] >= 2, (done, os.listdir(cp))
    newest = done[-1]
    assert load_checkpoint(str(cp / f"do_{newest:08d}"))["steps"] == newest  # the newest complete pair loads

    # 2. restart: resumes there, step count continuous; SIGKILL during the next write (do_ written, g_ not yet)
    run = Run(argv + ["--checkpoint_interval", "1"], faults=("--slow_save", "600"))
    half = cp / f"do_{newest + 1:08d}"
    run.wait_for(half.exists)
    assert not (cp / f"g_{newest + 1:08d}").exists()
    assert run.send(signal.SIGKILL) == -signal.SIGKILL
    assert f"Resuming from {cp}/g_{newest:08d} and {cp}/do_{newest:08d} (step {newest}," in run.output
    assert run.first_step() == newest + 1
    assert complete_steps(cp)[-1] == newest  # the half-written pair is not a checkpoint

    # 3. restart (a stale temp file of a killed write is cleaned up), then SIGTERM to the process
    # group, DataLoader worker included: a final checkpoint and exit status 0
    stale = cp / f".do_{newest + 7:08d}.x8k2.tmp"
    stale.write_bytes(b"\0" * 1000)
    run = Run(argv + ["--checkpoint_interval", "1000"])
    run.wait_for(lambda: run.printed(f"Steps : {newest + 1},"))
    assert run.send(signal.SIGTERM) == 0, run.output[-3000:]
    assert f"Removed {stale} (an unfinished checkpoint write)" in run.output and not stale.exists()
    assert f"Resuming from {cp}/g_{newest:08d}" in run.output and run.first_step() == newest + 1
    stop = int(run.output.split("Stopped by signal SIGTERM at step ")[1].split(";")[0])
    assert stop in (newest + 1, newest + 2)  # the step the signal arrived in
    assert complete_steps(cp)[-1] == stop
    assert load_checkpoint(str(cp / f"do_{stop:08d}"))["steps"] == stop
    assert "generator" in load_checkpoint(str(cp / f"g_{stop:08d}"))
    assert "Traceback" not in run.output


def tiny_pair(seed: int):
    """Stand-ins for generator, MPD, MSD and their optimizers: save/load logic only."""
    torch.manual_seed(seed)
    models = {name: torch.nn.Linear(3, 2) for name in ("generator", "mpd", "msd")}
    optims = {
        name: torch.optim.AdamW(models[m].parameters()) for name, m in (("optim_g", "generator"), ("optim_d", "mpd"))
    }
    return models, optims


def save_pair(cp, steps: int, seed: int, keep: int = 0) -> dict:
    models, optims = tiny_pair(seed)
    train.save_checkpoints(str(cp), steps, 0, training.GAN, {**models, **optims}, keep)
    return models


def test_broken_newest_checkpoint_falls_back_to_older(tmp_path, capsys):
    cp = tmp_path / "cp"
    cp.mkdir()
    first = save_pair(cp, 1, seed=1)
    save_pair(cp, 2, seed=2)
    save_pair(cp, 3, seed=3)
    torch.save({"generator": torch.nn.Linear(5, 5).state_dict()}, cp / "g_00000002")  # another model
    data = (cp / "do_00000003").read_bytes()
    (cp / "do_00000003").write_bytes(data[: len(data) // 2])  # truncated
    models, optims = tiny_pair(seed=9)
    capsys.readouterr()
    state = train.load_newest(str(cp), training.GAN, {**models, **optims}, "cpu", True)
    out = capsys.readouterr().out
    assert f"WARNING: skipping checkpoint 00000003: {cp}/do_00000003: cannot be read as a checkpoint" in out
    assert "WARNING: skipping checkpoint 00000002: Error(s) in loading state_dict for Linear: size mismatch" in out
    assert f"Resuming from {cp}/g_00000001 and {cp}/do_00000001 (step 1, epoch 0)" in out
    assert state["steps"] == 1
    for loaded, saved in zip(models.values(), first.values()):
        torch.testing.assert_close(loaded.state_dict(), saved.state_dict(), rtol=0, atol=0)
    (cp / "g_00000001").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"cp: none of its 3 checkpoint pair\(s\) loads"):
        train.load_newest(str(cp), training.GAN, {**models, **optims}, "cpu", True)
    assert (
        train.load_newest(str(tmp_path), training.GAN, {**models, **optims}, "cpu", True) is None
    )  # no checkpoints: start


def test_failed_checkpoint_write_keeps_previous_pair(tmp_path, monkeypatch):
    cp = tmp_path / "cp"
    cp.mkdir()
    save_pair(cp, 1, seed=1)
    real_replace = os.replace

    def disk_full(src, dst):
        if os.path.basename(dst) == "g_00000002":  # the second write: do_00000002 is removed again
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(CheckpointError) as e:
        save_pair(cp, 2, seed=2)
    assert str(e.value) == (
        f"{cp}: could not write checkpoint 00000002 (No space left on device); free disk space or fix "
        "permissions, then restart: training resumes from checkpoint 00000001, which is intact"
    )
    assert sorted(os.listdir(cp)) == ["do_00000001", "g_00000001"]  # no half pair, no temp file
    assert load_checkpoint(str(cp / "do_00000001"))["steps"] == 1


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_checkpoint_folder(tmp_path):
    cp = tmp_path / "cp"
    cp.mkdir()
    save_pair(cp, 1, seed=1)
    cp.chmod(0o555)
    try:
        with pytest.raises(CheckpointError, match=r"checkpoint 00000002 \(Permission denied\)"):
            save_pair(cp, 2, seed=2)
    finally:
        cp.chmod(0o755)
    assert sorted(os.listdir(cp)) == ["do_00000001", "g_00000001"]


def test_keep_checkpoints_prunes_only_after_a_complete_pair(tmp_path):
    cp = tmp_path / "cp"
    cp.mkdir()
    for step in (1, 2, 3):
        save_pair(cp, step, seed=step, keep=2)
    assert sorted(os.listdir(cp)) == ["do_00000002", "do_00000003", "g_00000002", "g_00000003"]
    (cp / "do_00000001").write_bytes(b"x")  # an orphan do_: a write killed before its g_
    (cp / ".g_00000004.abc.tmp").write_bytes(b"x")  # and a killed write's temp file
    save_pair(cp, 4, seed=4, keep=2)
    assert sorted(os.listdir(cp)) == [".g_00000004.abc.tmp", "do_00000003", "do_00000004", "g_00000003", "g_00000004"]
    assert remove_temp_files(str(cp)) == [str(cp / ".g_00000004.abc.tmp")]


def test_nan_batches_are_skipped_and_counted_silent_clips_are_not_nan(tmp_path, monkeypatch, capsys, one_thread):
    """Training data: a silent and a near-silent clip only. Batches 1, 3 and 4 get NaN input: each
    is skipped and counted; two in a row (the limit, lowered from 20) stop the run with a clear
    line, the last checkpoint intact."""
    wavs = tmp_path / "data" / "wavs"
    wavs.mkdir(parents=True)
    write_wav(wavs / "silent.wav", np.zeros(13000, np.float32))
    write_wav(wavs / "quiet.wav", np.round(harmonic(0.6) * 4) / 32768)  # +-2 LSB
    write_wav(wavs / "val.wav", harmonic(0.3))
    (tmp_path / "data" / "train.txt").write_text("silent|\nquiet|\n")
    (tmp_path / "data" / "val.txt").write_text("val|\n")
    data = (str(wavs), str(tmp_path / "data" / "train.txt"), str(tmp_path / "data" / "val.txt"))
    monkeypatch.setitem(train.FAMILIES, "hifigan", nan_at(training.GAN, {1, 3, 4}))
    monkeypatch.setattr(train, "MAX_CONSECUTIVE_NONFINITE", 2)
    argv = base_argv(tmp_path, data) + ["--checkpoint_interval", "2", "--training_steps", "10"]
    with pytest.raises(SystemExit) as e:
        train.main(argv)
    captured = capsys.readouterr()
    cp = tmp_path / "cp"
    assert e.value.code == 2
    assert captured.out.count("warning [silent]") == 2  # warned about, trained on
    skipped = "non-finite loss or gradient, discriminator and generator update skipped"
    assert f"WARNING: step 1: {skipped} (1 in a row, 1 in total)" in captured.out
    assert f"WARNING: step 3: {skipped} (1 in a row, 2 in total)" in captured.out
    assert f"WARNING: step 4: {skipped} (2 in a row, 3 in total)" in captured.out
    assert captured.out.count("WARNING: step") == 3  # the silent batches (steps 0, 2) are finite
    assert captured.err.splitlines()[-1].startswith(
        f"error: 2 steps in a row had non-finite losses or gradients (step 4); stopping. The last good "
        f"checkpoint in {cp} is intact"
    )
    assert complete_steps(cp) == [2] and load_checkpoint(str(cp / "do_00000002"))["steps"] == 2
    weights = load_checkpoint(str(cp / "g_00000002"))["generator"]
    assert all(torch.isfinite(w).all() for w in weights.values())
    acc = scalar_tags(cp / "logs")
    counts = {e.step: e.value for e in acc.Scalars("training/nonfinite_steps")}
    assert counts == {0: 0, 1: 1, 2: 1, 3: 2, 4: 3}
    losses = {e.step: e.value for e in acc.Scalars("training/gen_loss_total")}
    assert np.isfinite(losses[0]) and np.isfinite(losses[2]) and np.isnan(losses[1])
    shutil.rmtree(cp)
