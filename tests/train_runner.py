"""Run train.py with test-only faults and counters patched in (production code has no hooks).

    python tests/train_runner.py [--slow_save S] [--nan_at 1,3] [--count_collectives] -- <train.py args>

--slow_save S        sleep S seconds after each checkpoint file but the last (a kill then lands
                     between the do_ and g_ writes)
--nan_at STEPS       replace the input mel of these steps (0-based, counted from the first step of
                     this run) with NaN
--count_collectives  at exit, print `collectives rank R: all_reduce N barrier M` (torch.distributed
                     calls made by train.py) for each process

Also importable: the tests that run train.main in their own process use `nan_at` directly.
"""

import argparse
import atexit
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import train  # noqa: E402


def nan_at(family: "train.Family", steps: set[int]) -> "train.Family":
    """`family` whose step gets an all-NaN input mel on the given calls (0-based)."""
    calls = iter(range(1 << 62))

    def train_step(models, optimizers, batch, h, ctx):
        x, *rest = batch
        if next(calls) in steps:
            x = torch.full_like(x, float("nan"))
        return family.train_step(models, optimizers, (x, *rest), h, ctx)

    return family._replace(train_step=train_step)


def slow_save(seconds: float) -> None:
    """Make each checkpoint file but a step's last one (the layout's first: g_) take `seconds`
    longer to write."""
    write = train.save_checkpoint
    last_written = {layout[0][0] for layout in (f.checkpoint_layout for f in train.FAMILIES.values())}

    def save_checkpoint(path, obj):
        write(path, obj)
        if not any(os.path.basename(path).startswith(p) for p in last_written):
            time.sleep(seconds)

    train.save_checkpoint = save_checkpoint


def count_collectives() -> None:
    """Count torch.distributed.all_reduce and barrier calls; print the counts at exit."""
    dist = torch.distributed
    counts = {"all_reduce": 0, "barrier": 0}
    for name in counts:
        real = getattr(dist, name)

        def counted(*args, _name=name, _real=real, **kwargs):
            counts[_name] += 1
            return _real(*args, **kwargs)

        setattr(dist, name, counted)
    rank = os.environ.get("RANK", "0")
    # one write per line: with PYTHONUNBUFFERED print() writes text and newline apart, and the
    # ranks' lines would interleave
    atexit.register(
        lambda: os.write(
            1, f"collectives rank {rank}: all_reduce {counts['all_reduce']} barrier {counts['barrier']}\n".encode()
        )
    )


def main() -> None:
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slow_save", type=float, default=0.0, help="seconds")
    parser.add_argument("--nan_at", default="", help="comma-separated steps")
    parser.add_argument("--count_collectives", action="store_true")
    a = parser.parse_args(argv[:split])
    if a.slow_save:
        slow_save(a.slow_save)
    if a.nan_at:
        steps = {int(s) for s in a.nan_at.split(",")}
        train.FAMILIES = {k: nan_at(f, steps) for k, f in train.FAMILIES.items()}
    if a.count_collectives:
        count_collectives()
    train.main(argv[split + 1 :])


if __name__ == "__main__":
    main()
