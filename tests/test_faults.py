"""Faults survived (issue #17): an exact resume equals the uninterrupted run, a full disk is found
before a write, a lone pretrained generator is used (not ignored), a dead process ends an
mp.spawn run with one line, and torchrun --max-restarts carries a run past a killed rank."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import REPO, make_training_data, run_train, scalar_tags, training_pids, write_tiny_config

import train
from utils import load_checkpoint

TIMEOUT = 300  # seconds a subprocess run may take on a busy 2-core machine
TERMS = ("training/gen_loss_total", "training/mel_spec_error", "training/disc_loss_total")


def losses_by_step(logdir) -> dict:
    """{(tag, step): value} over every event file of a run (a resumed run has several)."""
    acc = scalar_tags(logdir)
    return {(tag, e.step): e.value for tag in TERMS for e in acc.Scalars(tag)}


def assert_same_state(a: dict, b: dict) -> None:
    for key in a:
        if torch.is_tensor(a[key]):
            assert torch.equal(a[key], b[key]), key
        elif isinstance(a[key], dict):
            assert_same_state(a[key], b[key])


@pytest.mark.parametrize("workers", [0, 2])
def test_resumed_run_equals_the_uninterrupted_one_bit_for_bit(tmp_path, workers):
    """Stopped after step 2 (inside epoch 1: 4 clips, batch 2) and resumed to step 5: the same
    losses at every step and the same final weights and optimizer state as one run of 6 steps."""
    data = make_training_data(tmp_path / "data", n=4)
    config = write_tiny_config(tmp_path, num_workers=workers, lr_decay=0.9)  # a visible per-epoch decay
    whole = run_train(tmp_path / "whole", config=config, data=data, steps=6)
    part = run_train(tmp_path / "part", config=config, data=data, steps=3)
    stopped = load_checkpoint(str(part / "do_00000002"))
    assert (stopped["epoch"], stopped["epoch_batches"]) == (1, 1)  # the position inside the epoch
    run_train(tmp_path / "part", config=config, data=data, steps=6)
    reference, resumed = losses_by_step(whole / "logs"), losses_by_step(part / "logs")
    assert len(reference) == 3 * 6 and resumed == reference
    for name in ("g_00000005", "do_00000005"):
        a, b = load_checkpoint(str(whole / name)), load_checkpoint(str(part / name))
        assert_same_state(a, b)
    do = load_checkpoint(str(part / "do_00000005"))
    assert do["optim_g"]["param_groups"][0]["lr"] == pytest.approx(2e-4 * 0.9**2)  # epochs 0, 1 decayed


def test_authors_checkpoint_without_position_resumes_from_its_epoch_start(tmp_path, capsys):
    data = make_training_data(tmp_path / "data", n=4)
    config = write_tiny_config(tmp_path)
    cp = run_train(tmp_path, config=config, data=data, steps=3)
    do = load_checkpoint(str(cp / "do_00000002"))
    torch.save({k: v for k, v in do.items() if k not in ("epoch_batches", "rng")}, cp / "do_00000002")
    capsys.readouterr()
    run_train(tmp_path, config=config, data=data, steps=5)
    out = capsys.readouterr().out
    assert "(step 2, epoch 1)" in out and "Epoch: 2\nSteps : 3," in out  # epoch 1 again from its first batch
    assert load_checkpoint(str(cp / "do_00000004"))["epoch"] == 1  # steps 3, 4: epoch 1 again


def test_full_disk_stops_before_the_write_and_keeps_the_previous_pair(tmp_path, monkeypatch, capsys):
    data = make_training_data(tmp_path / "data", n=4)
    config = write_tiny_config(tmp_path)
    cp = run_train(tmp_path, config=config, data=data, steps=2)
    before = {n: (cp / n).read_bytes() for n in ("g_00000001", "do_00000001")}
    need = train.tensor_bytes(
        [load_checkpoint(str(cp / n)) for n in ("g_00000001", "do_00000001")]
    )  # the pair about to be written has these tensors
    monkeypatch.setattr(train, "free_bytes", lambda path: int(need * 3.5))  # 3 pairs of room: keep 5 does not fit
    capsys.readouterr()
    run_train(tmp_path, "--keep_checkpoints", "5", config=config, data=data, steps=3)
    out = capsys.readouterr().out
    assert f"WARNING: {cp}: " in out and "lower --keep_checkpoints or free disk space" in out
    monkeypatch.setattr(train, "free_bytes", lambda path: need // 2)
    with pytest.raises(SystemExit) as e:
        run_train(tmp_path, config=config, data=data, steps=5)
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert e.value.code == 2 and err.startswith(f"error: {cp}: ") and "GB free, checkpoint 00000004 needs" in err
    assert "training resumes from checkpoint 00000002, which is intact" in err
    assert not (cp / "g_00000004").exists() and (cp / "do_00000002").exists()
    assert {n: (cp / n).read_bytes() for n in before} == before  # older pairs untouched


def test_lone_pretrained_generator_starts_the_generator(tmp_path, capsys):
    data = make_training_data(tmp_path / "data", n=4)
    config = write_tiny_config(tmp_path)
    pre = run_train(tmp_path / "pre", config=config, data=data, steps=3)
    pretrained = load_checkpoint(str(pre / "g_00000002"))["generator"]
    cp = tmp_path / "ft" / "cp"
    cp.mkdir(parents=True)
    torch.save({"generator": pretrained}, cp / "g_02500000")  # a generator without its do_
    capsys.readouterr()
    run_train(tmp_path / "ft", config=config, data=data, steps=1)
    out = capsys.readouterr().out
    assert f"Starting the generator from {cp}/g_02500000 (no do_02500000 beside it: " in out
    first = scalar_tags(cp / "logs").Scalars("training/mel_spec_error")[0].value
    fresh = scalar_tags(pre / "logs").Scalars("training/mel_spec_error")[0].value
    trained = scalar_tags(pre / "logs").Scalars("training/mel_spec_error")[-1].value
    assert abs(first - trained) < abs(first - fresh)  # the pretrained weights, not random ones
    assert (cp / "g_02500000").exists() and (cp / "do_00000000").exists()


SPAWN_SCRIPT = """
import sys
sys.path.insert(0, {repo!r})
import train

if __name__ == "__main__":
    train.processes_per_machine = lambda a: 2  # stands in for a machine with 2 GPUs
    train.main({argv!r})
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_argv(tmp_path, steps: int, **config) -> list[str]:
    wavs, tr, va = make_training_data(tmp_path / "data", n=4)
    return [
        "--config", write_tiny_config(tmp_path, batch_size=4, **config), "--input_wavs_dir", wavs,
        "--input_training_file", tr, "--input_validation_file", va, "--checkpoint_path", str(tmp_path / "cp"),
        "--training_steps", str(steps), "--stdout_interval", "1", "--summary_interval", "1", "--checkpoint_interval", "1",
        "--validation_interval", "1000", "--device", "cpu",
    ]  # fmt: skip


def clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return {**env, "OMP_NUM_THREADS": "1"}


def wait_for(predicate, timeout: float = TIMEOUT):
    end = time.time() + timeout
    while time.time() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_mp_spawn_process_death_ends_the_run_with_one_line(tmp_path):
    dist_config = {"dist_backend": "nccl", "dist_url": f"tcp://127.0.0.1:{free_port()}", "world_size": 1}
    argv = tiny_argv(tmp_path, steps=10_000, dist_config=dist_config)
    script = tmp_path / "spawn_two.py"
    script.write_text(SPAWN_SCRIPT.format(repo=REPO, argv=argv))
    run = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, env=clean_env(), start_new_session=True)  # fmt: skip
    try:
        wait_for(lambda: os.path.exists(tmp_path / "cp" / "do_00000002"))
        children = subprocess.run(["pgrep", "-P", str(run.pid)], capture_output=True, text=True).stdout.split()
        workers = sorted(int(p) for p in children if "spawn_main" in open(f"/proc/{p}/cmdline").read())
        assert len(workers) == 2, children
        os.kill(workers[1], signal.SIGKILL)  # the process of rank 1
        killed = time.time()
        out, err = run.communicate(timeout=90)
        assert time.time() - killed < 60
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert run.returncode == 2, err[-2000:]
    assert err.strip().splitlines()[-1] == (
        "error: training process 1 (rank 1) was killed by SIGKILL, so the others were stopped; run the same "
        f"command again to resume from the newest checkpoint in {tmp_path / 'cp'}"
    )


def test_torchrun_max_restarts_carries_the_run_past_a_killed_rank(tmp_path):
    """Rank 1 SIGKILLed after the 3rd checkpoint: torchrun restarts the group, both ranks resume
    from the newest complete pair, and the run reaches its step count with every step once in
    the checkpoints' sequence."""
    argv = tiny_argv(tmp_path, steps=12)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                "--max-restarts", "1", os.path.join(REPO, "train.py")]  # fmt: skip
    run = subprocess.Popen([*torchrun, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=clean_env(), start_new_session=True)  # fmt: skip
    try:
        wait_for(lambda: os.path.exists(tmp_path / "cp" / "do_00000003"))
        os.kill(wait_for(lambda: training_pids(str(tmp_path / "cp")).get(1)), signal.SIGKILL)
        out, err = run.communicate(timeout=TIMEOUT)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert run.returncode == 0, err[-3000:]
    assert out.count("Resuming from ") == 1  # the restarted group's rank 0
    last = load_checkpoint(str(tmp_path / "cp" / "do_00000011"))
    assert last["steps"] == 11
    steps = sorted({int(line.split()[2].rstrip(",")) for line in out.splitlines() if line.startswith("Steps : ")})
    assert steps == list(range(12))  # continuous: nothing skipped
    logged = {e.step for e in scalar_tags(tmp_path / "cp" / "logs").Scalars("training/gen_loss_total")}
    assert logged == set(range(12))  # and in TensorBoard (both attempts' event files)
    assert json.loads((tmp_path / "cp" / "config.json").read_text())["batch_size"] == 4
