"""Fault injection: a small torchrun training, killed again and again, must end where an
uninterrupted run ends, bit for bit, without losing a checkpoint or hanging.

    python benchmarks/faults.py --minutes 10            # 2 CPU processes on gloo, tiny model
    python benchmarks/faults.py --minutes 2 --processes 2 --steps 30 --seed 7

One reference run (no faults) trains `--steps` steps. Then, until `--minutes` are up, fault runs
train the same steps from scratch under `torchrun --max-restarts` while a killer SIGKILLs, at random
moments (a third of them while a checkpoint file is being written, which `tests/train_runner.py
--slow_save` stretches to a fraction of a second):
- one rank (torchrun restarts the group: every rank resumes from the newest complete pair), or
- the whole job, torchrun included (the script starts it again, as a Slurm requeue would).

Per fault run and in total it prints: kills survived, checkpoints lost (a resume from an older
step than the newest complete pair before the kill: must be 0), hangs (no progress for
`--hang_seconds`: the workers' stacks are printed with SIGUSR1 first; must be 0) and resume
mismatches (final weights or any logged loss differing from the reference: must be 0).
"""

import argparse
import json
import os
import pathlib
import random
import re
import signal
import subprocess
import sys
import tempfile
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tests"))

from conftest import make_training_data, training_pids, write_tiny_config  # noqa: E402

from utils import list_checkpoints, load_checkpoint  # noqa: E402

RUNNER = os.path.join(REPO, "tests", "train_runner.py")
RESUMED = re.compile(r"Resuming from .* \(step (\d+), epoch")


def newest_complete(cp: str) -> int:
    """Step of the newest complete pair (both g_ and do_ there), -1 if none."""
    steps = {int(p[-8:]) for p in list_checkpoints(cp, "do_")} & {int(p[-8:]) for p in list_checkpoints(cp, "g_")}
    return max(steps, default=-1)


class Job:
    """One torchrun invocation in its own session; its output goes to a log file."""

    def __init__(self, argv: list[str], log: str, processes: int, restarts: int, slow_save: float):
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
                    "--max-restarts", str(restarts), RUNNER, "--slow_save", str(slow_save), "--"]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
        self.log = open(log, "a")
        self.proc = subprocess.Popen([*torchrun, *argv], stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**env, "OMP_NUM_THREADS": "1"}, start_new_session=True)  # fmt: skip

    def kill_all(self, marker: str) -> None:
        """SIGKILL torchrun and every training process of this job (a node lost)."""
        workers = training_pids(marker)
        for pid in [self.proc.pid, *workers.values()]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()


def train_argv(work: str, cp: str, steps: int) -> list[str]:
    wavs, tr, va = (os.path.join(work, "data", p) for p in ("wavs", "train.txt", "val.txt"))
    return [
        "--config", os.path.join(work, "tiny_v1.json"), "--input_wavs_dir", wavs, "--input_training_file", tr,
        "--input_validation_file", va, "--checkpoint_path", cp, "--training_steps", str(steps),
        "--checkpoint_interval", "1", "--stdout_interval", "1", "--summary_interval", "1",
        "--validation_interval", "5", "--keep_checkpoints", "3", "--device", "cpu",
    ]  # fmt: skip


def losses(cp: str) -> dict:
    """{(tag, step): value} of every event file in <cp>/logs."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(os.path.join(cp, "logs"), size_guidance={"scalars": 0})
    acc.Reload()
    return {(t, e.step): e.value for t in acc.Tags()["scalars"] if t.startswith("training/") and
            t != "training/seconds_per_step" for e in acc.Scalars(t)}  # fmt: skip


def same_weights(a: str, b: str) -> bool:
    def flat(obj, prefix=""):
        if torch.is_tensor(obj):
            yield prefix, obj
        elif isinstance(obj, dict):
            for k, v in obj.items():
                if k != "rng":
                    yield from flat(v, f"{prefix}/{k}")

    x, y = dict(flat(load_checkpoint(a))), dict(flat(load_checkpoint(b)))
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def reference_run(work: str, a) -> str:
    cp = os.path.join(work, "reference")
    job = Job(train_argv(work, cp, a.steps), os.path.join(work, "reference.log"), a.processes, 0, 0.0)
    if job.proc.wait() != 0:
        raise SystemExit(f"the reference run failed; see {work}/reference.log")
    return cp


def fault_run(work: str, index: int, a, rng: random.Random) -> dict:
    """Train a.steps steps from scratch under kills; returns this run's counts."""
    cp = os.path.join(work, f"faults{index}")
    log = os.path.join(work, f"faults{index}.log")
    marker = cp + "\0"  # in /proc/PID/cmdline, arguments end with NUL
    argv = train_argv(work, cp, a.steps)
    counts = {"kills": 0, "lost": 0, "hangs": 0, "mismatches": 0}
    job = Job(argv, log, a.processes, a.restarts, a.slow_save)
    last_progress, last_size, seen = time.time(), 0, 0
    while True:
        if job.proc.poll() is not None:
            if job.proc.returncode == 0 and newest_complete(cp) == a.steps - 1:
                break
            job = Job(argv, log, a.processes, a.restarts, a.slow_save)  # the whole job again (a requeue)
        time.sleep(rng.uniform(0.5, a.max_gap))
        size = os.path.getsize(log)
        if size != last_size:
            last_progress, last_size = time.time(), size
        elif time.time() - last_progress > a.hang_seconds:
            counts["hangs"] += 1
            for pid in training_pids(marker).values():
                os.kill(pid, signal.SIGUSR1)  # stacks into the log
            time.sleep(1)
            print(f"  HANG in {log} (stacks printed there)", flush=True)
            job.kill_all(marker)
            continue
        workers = training_pids(marker)
        if len(workers) < a.processes or job.proc.poll() is not None:
            continue
        if rng.random() < 1 / 3:  # wait for a checkpoint write in progress (a temp file)
            end = time.time() + 5
            while time.time() < end and not any(n.endswith(".tmp") for n in os.listdir(cp)):
                time.sleep(0.01)
        before = newest_complete(cp)
        if rng.random() < 0.7:
            rank = rng.choice(sorted(workers))
            try:
                os.kill(workers[rank], signal.SIGKILL)
            except ProcessLookupError:
                continue
        else:
            job.kill_all(marker)
            job = Job(argv, log, a.processes, a.restarts, a.slow_save)  # the whole job again (a requeue)
        counts["kills"] += 1
        if before < 0:
            continue  # killed before the first checkpoint: the run starts over, nothing to check
        resumed = wait_resumed(log, seen, a.hang_seconds)
        if resumed is None:
            continue  # the kill ended the run's last step; nothing resumed
        seen += 1
        if resumed < before:
            counts["lost"] += 1
            print(f"  LOST: resumed from step {resumed}, the newest complete pair was {before}", flush=True)
    final = f"{a.steps - 1:08d}"
    ref = os.path.join(work, "reference")
    ok = all(same_weights(os.path.join(ref, f"{p}{final}"), os.path.join(cp, f"{p}{final}")) for p in ("g_", "do_"))
    reference, got = losses(ref), losses(cp)
    differing = [k for k in got if k in reference and got[k] != reference[k]]
    counts["mismatches"] = int(not ok) + len(differing)
    if not ok or differing:
        print(f"  MISMATCH: weights equal {ok}; {len(differing)} logged values differ, e.g. {differing[:3]}")
    return counts


def wait_resumed(log: str, seen: int, timeout: float) -> int | None:
    """The step of the next `Resuming from` line after the first `seen` ones (None: none came,
    e.g. the kill landed before the first checkpoint)."""
    end = time.time() + timeout
    while time.time() < end:
        with open(log, errors="replace") as f:
            found = RESUMED.findall(f.read())
        if len(found) > seen:
            return int(found[seen])
        time.sleep(0.2)
    return None


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Kill a small torchrun training at random; check nothing is lost.")
    p.add_argument("--minutes", type=float, default=10.0, help="keep starting fault runs for this long")
    p.add_argument("--processes", type=int, default=2, help="training processes (CPU, gloo)")
    p.add_argument("--steps", type=int, default=40, help="steps of each run")
    p.add_argument("--restarts", type=int, default=100, help="torchrun --max-restarts")
    p.add_argument("--max_gap", type=float, default=6.0, help="most seconds between two kills")
    p.add_argument("--slow_save", type=float, default=0.3, help="seconds each checkpoint file but the last takes")
    p.add_argument("--hang_seconds", type=float, default=120.0, help="no output for this long is a hang")
    p.add_argument("--seed", type=int, default=1234, help="seed of the kill schedule")
    p.add_argument("--work", default=None, help="working folder (default: a new temporary one)")
    a = p.parse_args(argv)
    work = a.work or tempfile.mkdtemp(prefix="faults_")
    make_training_data(pathlib.Path(work) / "data", n=4 * a.processes)
    write_tiny_config(pathlib.Path(work), batch_size=2 * a.processes)
    print(f"work folder {work}; config {json.dumps({'processes': a.processes, 'steps': a.steps})}", flush=True)
    start = time.time()
    reference_run(work, a)
    print(f"reference run: {a.steps} steps in {time.time() - start:.0f} s", flush=True)
    rng = random.Random(a.seed)
    totals = {"runs": 0, "kills": 0, "lost": 0, "hangs": 0, "mismatches": 0}
    while time.time() - start < a.minutes * 60:
        counts = fault_run(work, totals["runs"], a, rng)
        totals["runs"] += 1
        for k, v in counts.items():
            totals[k] += v
        print(f"fault run {totals['runs']}: " + ", ".join(f"{k} {v}" for k, v in counts.items()), flush=True)
    minutes = (time.time() - start) / 60
    print(
        f"{minutes:.1f} min, {totals['runs']} fault runs: kills survived {totals['kills']}, checkpoints lost "
        f"{totals['lost']}, hangs {totals['hangs']}, resume mismatches {totals['mismatches']}"
    )
    sys.exit(0 if totals["lost"] == totals["hangs"] == totals["mismatches"] == 0 else 1)


if __name__ == "__main__":
    main()
