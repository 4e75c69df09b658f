"""Train HiFi-GAN (paper section 2.4 and 4), or the system the config's `model_family` names.

The loop is shared by every system: DDP, resume, atomic checkpoints, signals, data checks and
TensorBoard are here; the recipe (models, optimizers, the step per batch, the checkpoint layout)
comes from training.py (`FAMILIES`). HiFi-GAN's step: a discriminator step (MPD + MSD), then a
generator step (adversarial + 2 x feature matching + 45 x mel L1).

    python train.py --config config_v1.json                      # CPU or one GPU
    python train.py --config config_v1.json --demo --training_steps 10   # built-in synthetic data
    python train.py --config config_v1.json                      # N GPUs: one process per GPU
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST:29500 \\
        train.py --config config_v1.json                         # multi-node

Checkpoints `g_XXXXXXXX` / `do_XXXXXXXX` (the authors' format) go to --checkpoint_path with
`config.json`; training resumes from the newest complete pair found there. TensorBoard logs go to
`<checkpoint_path>/logs`.
"""

import argparse
import collections
import datetime
import faulthandler
import math
import os
import random
import shutil
import signal
import sys
import time
import warnings
from typing import NamedTuple

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from env import build_env
from meldataset import MelDataset, make_demo_dataset, mel_from_config, read_filelist
from melformats import MEL_FORMATS, mel_loader
from training import FAMILIES, Family, StepContext, short_epoch_warning
from utils import (
    CHECKPOINT_DIGITS,
    CheckpointError,
    ConfigError,
    UserError,
    exit_with_user_error,
    list_checkpoints,
    load_checkpoint,
    load_config,
    plot_spectrogram,
    remove_temp_files,
    resolve_device,
    save_checkpoint,
)

MAX_CONSECUTIVE_NONFINITE = 20  # skipped steps in a row that stop the run
MAX_PRINTED_WARNINGS = 10  # data-check warnings of one kind printed at start (check_data.py lists all)
NUM_LOGGED_VALIDATION_ITEMS = 5  # audio and spectrogram figures for items 0..4, as the original
NUM_METRIC_VALIDATION_ITEMS = 3  # --validation_metrics: PESQ and MR-STFT on the first 3 clips
VALIDATION_METRIC_TAGS = {"pesq_wb": "validation/pesq", "mrstft": "validation/mrstft"}  # metrics column -> tag
STOP_AGREEMENT_STEPS = 5  # several processes agree on a signal every 5 steps (one all_reduce)
DIST_TIMEOUT = datetime.timedelta(hours=2)  # ranks wait at a barrier during rank-0 validation and saving
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=10)  # every other collective: a dead rank fails the others
LAUNCHER_POLL_SECONDS = 1.0  # how often a torchrun worker checks that torchrun is alive
DISK_MARGIN = 1.05  # a checkpoint needs its tensors' bytes plus a little for the pickle
DEMO_DIR = "demo_data"
DEMO_CLIPS = 24  # --demo: synthetic training clips (and 4 validation clips)


# ---------------------------------------------------------------------------------------------
# Set-up helpers
# ---------------------------------------------------------------------------------------------


def str2bool(value: str) -> bool:
    """`--fine_tuning True/False` as the original accepted (its type=bool made 'False' true)."""
    if isinstance(value, bool):
        return value
    if value.lower() in ("true", "1", "yes", "y"):
        return True
    if value.lower() in ("false", "0", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {value!r}")


def setup_distributed(local_rank: int, world_size: int, rank: int, a, h):
    """Join the process group (when world_size > 1) -> (this process's device, the group whose
    barrier waits for rank 0's validation and checkpoint writes, or None for one process).

    Collectives time out after COLLECTIVE_TIMEOUT, so a rank that dies (or hangs) stops the others
    instead of leaving them waiting; only the barrier group waits DIST_TIMEOUT."""
    device_type = a.device
    if device_type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device(device_type)
    if world_size > 1:
        backend = h.dist_config["dist_backend"] if device.type == "cuda" else "gloo"
        if "RANK" in os.environ:  # torchrun: rendezvous from the environment
            store = elastic_store(world_size)
            own_store = dict(store=store, rank=rank, world_size=world_size) if store is not None else {}
            dist.init_process_group(backend=backend, timeout=COLLECTIVE_TIMEOUT, **own_store)
        else:  # mp.spawn on one machine, as the original
            dist.init_process_group(
                backend=backend,
                init_method=h.dist_config["dist_url"],
                world_size=world_size,
                rank=rank,
                timeout=COLLECTIVE_TIMEOUT,
            )
        return device, dist.new_group(backend="gloo", timeout=DIST_TIMEOUT)  # host-side barrier only
    return device, None


def elastic_store(world_size: int):
    """Under `torchrun --max-restarts` on one node: the agent's store, its keys prefixed with the
    restart count (None elsewhere: the default env:// rendezvous).

    Why: torchrun (torch 2.x, c10d rendezvous) hands every restarted group the same TCPStore, with
    the keys the previous group wrote still in it. A restarted rank may then read a dead rank's
    address before the new rank has written its own, and the group fails to form or hangs; this
    prefix gives each attempt keys of its own. On several nodes the restart counts of the agents
    can differ, so there set TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 instead (a fresh store per
    attempt; README "Several GPUs, several nodes")."""
    env = os.environ
    shared = env.get("TORCHELASTIC_USE_AGENT_STORE") == "True" and int(env.get("TORCHELASTIC_MAX_RESTARTS", "0")) > 0
    if not shared or int(env.get("GROUP_WORLD_SIZE", "1")) != 1:
        return None
    store = dist.TCPStore(env["MASTER_ADDR"], int(env["MASTER_PORT"]), world_size, is_master=False,
                          timeout=COLLECTIVE_TIMEOUT)  # fmt: skip
    return dist.PrefixStore(f"hifigan/attempt_{env['TORCHELASTIC_RESTART_COUNT']}", store)


def family_of(h, source: str = "config") -> Family:
    """The recipe that trains the config's `model_family` (default "hifigan"), its keys checked
    (`ConfigError` naming `source`)."""
    name = h.get("model_family", "hifigan")
    if name not in FAMILIES:
        raise ConfigError(
            f"{source}: model_family {name!r} is not trained by train.py; use one of {', '.join(sorted(FAMILIES))}"
        )
    FAMILIES[name].check_config(h, source)
    return FAMILIES[name]


def seed_and_backends(h, device: torch.device) -> None:
    torch.manual_seed(h.seed)
    if device.type == "cuda":
        torch.cuda.manual_seed(h.seed)
        torch.backends.cudnn.benchmark = True
        # Convolutions may use TF32 (torch's default, as in the authors' runs). TF32 matmuls stay
        # off: the networks have none, and the one matmul, the mel filterbank, is kept fp32.
        torch.backends.cudnn.allow_tf32 = True


def step_context(models: dict, family: Family, device: torch.device, world_size: int, a) -> StepContext:
    """The modules that run the step: DDP-wrapped for several processes (the plain modules are
    saved: DDP is unwrapped here and nowhere else), compiled with --compile; AMP and its scaler."""
    run = frozen_run = models
    if world_size > 1:  # a module trained by no optimizer (an EMA copy) stays unwrapped
        ids = [device.index] if device.type == "cuda" else None
        trained = {k for k, m in models.items() if any(p.requires_grad for p in m.parameters())}
        unused = family.unused_parameters
        run = {
            k: DistributedDataParallel(m, device_ids=ids, find_unused_parameters=unused) if k in trained else m
            for k, m in models.items()
        }
    if a.compile:
        run = {k: torch.compile(m) for k, m in run.items()}
        frozen_run = {k: torch.compile(m) for k, m in models.items()} if world_size > 1 else run
    amp_dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[a.amp]
    scaler = torch.amp.GradScaler(device.type, enabled=a.amp == "fp16")
    return StepContext(device, amp_dtype, scaler, run, frozen_run)


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------


def checkpoint_files(cp_dir: str, family: Family, steps: int) -> list[str]:
    """The files of checkpoint `steps`, in the family's layout order (HiFi-GAN: g_, do_)."""
    return [os.path.join(cp_dir, f"{file.prefix}{steps:0{CHECKPOINT_DIGITS}d}") for file in family.checkpoint_layout]


def complete_checkpoints(cp_dir: str, family: Family) -> list[int]:
    """Steps whose every required file is in `cp_dir` (HiFi-GAN: both g_ and do_; an `ema_` can
    stand in from its g_), oldest first."""
    required = [file.prefix for file in family.checkpoint_layout if file.start_from is None]
    found = [{int(p[-CHECKPOINT_DIGITS:]) for p in list_checkpoints(cp_dir, prefix)} for prefix in required]
    return sorted(set.intersection(*found))


def load_newest(cp_dir: str, family: Family, objects: dict, device, is_master: bool) -> dict | None:
    """Load the newest complete checkpoint (HiFi-GAN: the g_/do_ pair) from `cp_dir` into
    `objects` (the models and optimizers by name).

    A checkpoint that fails to load (truncated file, another model or variant) is reported by
    name and the next older one is tried. Returns its entries merged (steps, epoch...), or None
    when the folder holds none; `CheckpointError` when it holds some but none loads (starting over
    would silently throw a run away). Unfinished temp files of killed writes are removed first.
    """
    if is_master:
        for path in remove_temp_files(cp_dir):
            print(f"Removed {path} (an unfinished checkpoint write)", flush=True)
    completes = complete_checkpoints(cp_dir, family)
    for step in reversed(completes):
        paths = checkpoint_files(cp_dir, family, step)
        complete = paths[-1]
        try:
            state = {}
            for path, file in zip(paths, family.checkpoint_layout):
                state.update(read_entries(path, file, objects, complete, device, is_master))
            for name, obj in objects.items():
                obj.load_state_dict(state[name])
        except (CheckpointError, RuntimeError, KeyError, ValueError) as e:
            if is_master:
                reason = " ".join(line.strip() for line in str(e).splitlines()[:2])  # torch: header + first error
                print(f"WARNING: skipping checkpoint {complete[-CHECKPOINT_DIGITS:]}: {reason}", flush=True)
            continue
        if is_master:
            read = [
                p for p, file in zip(paths, family.checkpoint_layout) if os.path.isfile(p) and wanted(file, objects)
            ]
            print(f"Resuming from {' and '.join(read)} (step {state['steps']}, epoch {state['epoch']})")
        return state
    if completes:
        raise CheckpointError(
            f"{cp_dir}: none of its {len(completes)} checkpoint pair(s) loads (reasons above); use another "
            "--checkpoint_path to start over, or the config these checkpoints were trained with"
        )
    return None


def init_from_lone_weights(cp_dir: str, family: Family, models: dict, device, is_master: bool) -> None:
    """A folder without a complete checkpoint but with a weights file (a pretrained `g_02500000`
    copied in without its `do_`): start its models (the generator) from the newest such file, the
    others and the optimizers fresh, and say so in one line. Fine-tuning from a pretrained
    generator is this; without it the file would be silently ignored. (Checkpoints written here
    never leave a lone weights file: it is written last, `save_checkpoints`.)"""
    first = family.checkpoint_layout[0]
    lone = list_checkpoints(cp_dir, first.prefix)
    if not lone or len(family.checkpoint_layout) == 1:
        return
    path = lone[-1]
    loaded = load_checkpoint(path, device)
    started = [name for key, name in first.keys().items() if name in models and key in loaded]
    if not started:
        raise CheckpointError(f"{path}: no {' or '.join(repr(k) for k in first.keys())} entry; remove it from {cp_dir}")
    for key, name in first.keys().items():
        if name in started:
            models[name].load_state_dict(loaded[key])
    if is_master:
        twin = family.checkpoint_layout[-1].prefix + path[-CHECKPOINT_DIGITS:]
        print(
            f"Starting the {' and '.join(started)} from {path} (no {twin} beside it: everything else starts "
            "fresh, at step 0)",
            flush=True,
        )


def wanted(file, objects: dict) -> bool:
    """Whether a run with `objects` writes and reads this `training.CheckpointFile`."""
    return any(name in objects for name in file.keys().values())


def read_entries(path: str, file, objects: dict, complete: str, device, is_master: bool = False) -> dict:
    """One checkpoint file (a `training.CheckpointFile`), checked against the objects of this
    run -> {object name: state, other entries (steps, epoch)}: each of its entries that the run has
    must be in the file, and the file may hold no entry the run lacks (a variant without MPD or MSD
    saves what it has). A file of none of the run's objects is not read; an absent file with
    `start_from` is read from that file of the same step (EMA turned on: it starts at the generator)."""
    keys = file.keys()
    if not wanted(file, objects):
        return {}
    if not os.path.isfile(path) and file.start_from is not None:
        stand_in = os.path.join(os.path.dirname(path), file.start_from + path[-CHECKPOINT_DIGITS:])
        if is_master and os.path.isfile(stand_in):
            print(f"No {os.path.basename(path)}: {', '.join(keys.values())} start(s) from {stand_in}", flush=True)
        path = stand_in
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: missing (the pair of {complete})")
    loaded = load_checkpoint(path, device)
    for key in (k for k, name in keys.items() if k in loaded and name not in objects):
        raise CheckpointError(f"{path}: holds '{key}', which this config does not train")
    for key in (k for k, name in keys.items() if name in objects and k not in loaded):
        raise CheckpointError(f"{path}: no '{key}' entry")
    return {keys.get(k, k): v for k, v in loaded.items() if k not in keys or keys[k] in objects}


def save_checkpoints(
    cp_dir: str, steps: int, epoch: int, family: Family, objects: dict, keep: int, extra: dict | None = None
) -> None:
    """Write the files of checkpoint `steps` atomically, in reverse layout order: HiFi-GAN's `do_`
    (the discriminators, optimizers, steps, epoch and `extra`: the position in the epoch and the
    random state, `progress_state`), the `ema_` of a run with EMA, then `g_`. A checkpoint is
    complete when its files are there (`complete_checkpoints`); a kill between the writes leaves a
    lone `do_`, never a lone `g_` (a lone generator is one the user put there:
    `init_from_lone_weights`). Then prune all but the newest `keep` (0 keeps all). `objects`: the
    models and optimizers by name. A checkpoint that cannot fit on the disk, or a failed write,
    raises `CheckpointError` and keeps every older checkpoint."""
    files = [
        (path, file.keys())
        for path, file in zip(checkpoint_files(cp_dir, family, steps), family.checkpoint_layout)
        if wanted(file, objects)  # a run without EMA writes no ema_
    ]
    paths = [path for path, _ in files]
    states = [{key: objects[name].state_dict() for key, name in keys.items() if name in objects} for _, keys in files]
    states[-1].update(steps=steps, epoch=epoch, **(extra or {}))
    previous = complete_checkpoints(cp_dir, family)
    resume = f"from checkpoint {previous[-1]:08d}, which is intact" if previous else "from the start"
    need, free = int(tensor_bytes(states) * DISK_MARGIN), free_bytes(cp_dir)
    if free < need:
        raise CheckpointError(
            f"{cp_dir}: {free / 1e9:.2f} GB free, checkpoint {steps:08d} needs {need / 1e9:.2f} GB; free disk space "
            f"or use another --checkpoint_path, then restart: training resumes {resume}"
        )
    try:
        for path, state in reversed(list(zip(paths, states))):
            save_checkpoint(path, state)
    except OSError as e:
        if not os.path.exists(paths[0]):  # an incomplete checkpoint: free its space
            for path in filter(os.path.exists, paths[1:]):
                os.remove(path)
        raise CheckpointError(
            f"{cp_dir}: could not write checkpoint {steps:08d} ({e.strerror or e}); free disk space or fix "
            f"permissions, then restart: training resumes {resume}"
        ) from None
    print(f"Saved checkpoints {' and '.join(paths)}", flush=True)
    if keep > 0:
        prune_checkpoints(cp_dir, family, keep)


def tensor_bytes(obj) -> int:
    """Bytes of the tensors in a (nested) state dict, list or tuple."""
    if torch.is_tensor(obj):
        return obj.nbytes
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def free_bytes(path: str) -> int:
    """Free bytes on the filesystem of `path`."""
    return shutil.disk_usage(path).free


def check_disk_at_start(cp_dir: str, family: Family, objects: dict, keep: int) -> None:
    """A warning when the disk cannot hold the `keep` newest checkpoints plus the one being
    written before the oldest is pruned (the checkpoints already there count as space)."""
    if keep <= 0:
        return
    need = int(tensor_bytes({k: o.state_dict() for k, o in objects.items()}) * DISK_MARGIN)
    held, free = len(complete_checkpoints(cp_dir, family)), free_bytes(cp_dir)
    if free + held * need < (keep + 1) * need:
        print(
            f"WARNING: {cp_dir}: {free / 1e9:.2f} GB free; keeping {keep} checkpoints of "
            f"{need / 1e9:.2f} GB needs {(keep + 1 - held) * need / 1e9:.2f} GB more; lower --keep_checkpoints "
            "or free disk space",
            flush=True,
        )


def progress_state(batches_done: int, scaler) -> dict:
    """What an exact resume needs beyond the weights: the batches of the epoch done, the random
    state of this process (torch, CUDA, numpy, python) and the fp16 loss scaler."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    rng = {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
        "python": random.getstate(),
    }
    extra = {"epoch_batches": batches_done, "rng": rng}
    if scaler.is_enabled():
        extra["amp_scaler"] = scaler.state_dict()
    return extra


def restore_progress(state: dict, scaler) -> None:
    """Put back what `progress_state` saved (the authors' checkpoints have none of it)."""
    rng = state.get("rng")
    if rng is not None:
        torch.set_rng_state(rng["torch"].cpu())
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
        kind, keys, pos, has_gauss, gauss = rng["numpy"]
        np.random.set_state((kind, keys.cpu().numpy().astype(np.uint32), pos, has_gauss, gauss))
        random.setstate(rng["python"])
    if "amp_scaler" in state and scaler.is_enabled():
        scaler.load_state_dict(state["amp_scaler"])


def prune_checkpoints(cp_dir: str, family: Family, keep: int) -> None:
    """Delete checkpoints older than the newest `keep` complete ones, and files whose checkpoint
    never completed (a kill during a save)."""
    prefixes = [file.prefix for file in family.checkpoint_layout]  # also files this run does not write
    oldest = complete_checkpoints(cp_dir, family)[-keep:][0]
    old = [p for prefix in prefixes for p in list_checkpoints(cp_dir, prefix) if int(p[-CHECKPOINT_DIGITS:]) < oldest]
    for path in old:
        try:
            os.remove(path)
        except OSError as e:
            print(f"WARNING: could not delete old checkpoint {path} ({e.strerror}); delete it by hand")


# ---------------------------------------------------------------------------------------------
# Signals, non-finite steps, stopping
# ---------------------------------------------------------------------------------------------


class StopRequest:
    """SIGINT/SIGTERM handler: remember the signal; the loop saves and exits after the step."""

    def __init__(self):
        self.signum = None

    def __call__(self, signum, frame) -> None:
        self.signum = signum


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader worker start: leave SIGINT/SIGTERM to the training process, which saves and
    stops. Ctrl-C in a terminal and SIGTERM from Slurm or systemd reach every process of the group;
    a worker killed by them would crash the training process before its final checkpoint."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class NonFiniteSteps:
    """Counts steps whose update was skipped for a non-finite loss or gradient (see
    `training.optimizer_step`); MAX_CONSECUTIVE_NONFINITE in a row stop the run."""

    def __init__(self):
        self.in_a_row, self.total = 0, 0

    def check(self, steps: int, updates: dict, sw, checkpoint_path: str) -> None:
        """`updates`: {name: `training.Update`} of this step; `sw`: the master's SummaryWriter."""
        if not any(update.counted for update in updates.values()):
            self.in_a_row = 0
            return
        self.in_a_row += 1
        self.total += 1
        if sw is not None:
            skipped = " and ".join(name for name, update in updates.items() if not update.stepped)
            print(
                f"WARNING: step {steps}: non-finite loss or gradient, {skipped} update skipped "
                f"({self.in_a_row} in a row, {self.total} in total)",
                flush=True,
            )
        if self.in_a_row >= MAX_CONSECUTIVE_NONFINITE:
            if sw is not None:  # the counter's last value reaches the event file
                sw.add_scalar("training/nonfinite_steps", self.total, steps)
                sw.close()
            raise UserError(
                f"{MAX_CONSECUTIVE_NONFINITE} steps in a row had non-finite losses or gradients (step "
                f"{steps}); stopping. The last good checkpoint in {checkpoint_path} is intact: check "
                "the data (python check_data.py ...), lower learning_rate, or use --amp none"
            )


def agree_to_stop(stop: StopRequest, steps: int, world_size: int, device: torch.device) -> bool:
    """Whether a signal stops the run after this step. Several processes must stop at the same
    step: they agree (one all_reduce) every STOP_AGREEMENT_STEPS steps only; in between, DDP's
    gradient all-reduce keeps them in step without any extra synchronisation."""
    requested = stop.signum is not None
    if world_size == 1:
        return requested
    if steps % STOP_AGREEMENT_STEPS != 0:
        return False
    flag = torch.tensor([float(requested)], device=device)
    dist.all_reduce(flag)
    return bool(flag.item())


def check_training_data(a, h, world_size: int, is_master: bool) -> None:
    """Check every listed wav (check_data.py) before any work, the checkpoint folder untouched.

    Errors stop the run, all of them listed, unless --skip_bad_files (then training uses the other
    files); warnings are printed (the first few of each kind) and training goes on. Sets
    `a.training_files` / `a.validation_files`. Under torchrun every rank runs the same check on
    the same files, so all ranks get the same lists.
    """
    from datacheck import check_dataset, format_problem, summary, usable_files

    start = time.time()
    training_list = read_filelist(a.input_training_file, a.input_wavs_dir)  # each filelist is read once
    validation_list = read_filelist(a.input_validation_file, a.input_wavs_dir)
    mels_dir = a.input_mels_dir if a.fine_tuning else None
    problems = check_dataset(
        training_list,
        validation_list,
        h,
        world_size=world_size,
        mels_dir=mels_dir,
        progress=is_master,
        mel_format=a.mel_format,
    )
    errors = [p for p in problems if p.severity == "error"]
    if is_master:
        shown = collections.Counter()
        for p in problems:
            shown[p.code] += 1
            if p.severity == "error" or shown[p.code] <= MAX_PRINTED_WARNINGS:
                print(format_problem(p), file=sys.stderr if p.severity == "error" else sys.stdout, flush=True)
        for code, n in shown.items():
            if n > MAX_PRINTED_WARNINGS and not any(p.code == code for p in errors):
                print(f"... and {n - MAX_PRINTED_WARNINGS} more [{code}] warnings (check_data.py lists them all)")
        print(f"Data check: {summary(problems)} ({time.time() - start:.1f} s)", flush=True)
    if errors and not a.skip_bad_files:
        raise UserError(
            f"{len(errors)} data error(s), listed above; fix them, or pass --skip_bad_files to train on the other files"
        )
    training, validation = training_list.wav_paths(), validation_list.wav_paths()  # raises for an unreadable list
    fixed = [p for p in errors if p.path not in set(training) | set(validation)]
    if fixed:
        raise UserError(f"{fixed[0].message} (--skip_bad_files cannot leave this out)")
    a.training_files, a.validation_files = usable_files(training, errors), usable_files(validation, errors)
    if errors and is_master:
        print(
            f"--skip_bad_files: training on {len(a.training_files)} of {len(training)} training files and "
            f"validating on {len(a.validation_files)} of {len(validation)}",
            flush=True,
        )


def loader_workers(requested: int, is_master: bool) -> int:
    """The config's num_workers, capped at the CPU cores this process may use (more only make
    the workers compete; torch warns about it), with one line when capped."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if requested > cores and is_master:
        print(f"num_workers {requested} capped at {cores}: the CPU cores available to this process", flush=True)
    return min(requested, cores)


class EpochSampler(torch.utils.data.Sampler):
    """The training items of one epoch as (epoch, index) keys, from item `start` on.

    Each item's random crop is then a function of the seed, the epoch and its index alone
    (`MelDataset`), in any loader worker, so a run resumed inside an epoch (`set_epoch(epoch,
    start)`) sees the very items the uninterrupted run saw. One process: the (once shuffled) file
    order, as the original; several: DistributedSampler's share of the epoch, as the original.
    """

    def __init__(self, dataset, world_size: int, rank: int):
        self.n = len(dataset)
        self.shard = DistributedSampler(dataset, num_replicas=world_size, rank=rank) if world_size > 1 else None
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start
        if self.shard is not None:
            self.shard.set_epoch(epoch)

    def _indices(self) -> list[int]:
        return list(self.shard) if self.shard is not None else list(range(self.n))

    def __iter__(self):
        return iter([(self.epoch, i) for i in self._indices()[self.start :]])

    def __len__(self) -> int:
        return max(0, (len(self.shard) if self.shard is not None else self.n) - self.start)


def build_loaders(a, h, batch_size: int, world_size: int, rank: int, is_master: bool, pin: bool):
    """(train sampler, train loader, validation loader or None) as the original builds them, over
    the checked file lists of check_training_data. The loaders draw from generators of their own,
    so iterating them leaves the training's random state as it was (exact resume)."""
    fine_tuning = dict(  # teacher-forced mels, converted from --mel_format
        fine_tuning=a.fine_tuning, base_mels_path=a.input_mels_dir, mel_loader=mel_loader(a.mel_format, h)
    )
    # NOTE: single-process training shuffles the file list once (seeded) and then iterates it
    # in that order every epoch, as the original (random crops still differ).
    trainset = MelDataset(a.training_files, h, shuffle=world_size == 1, **fine_tuning)
    sampler = EpochSampler(trainset, world_size, rank)
    workers = loader_workers(h.num_workers, is_master)
    train_loader = DataLoader(
        trainset,
        num_workers=workers,
        shuffle=False,
        sampler=sampler,
        batch_size=batch_size,
        pin_memory=pin,
        drop_last=True,
        persistent_workers=workers > 0,
        worker_init_fn=ignore_stop_signals,
        generator=torch.Generator().manual_seed(h.seed),
    )
    validation_loader = None
    if is_master:
        validset = MelDataset(a.validation_files, h, split=False, shuffle=False, **fine_tuning)
        validation_loader = DataLoader(
            validset,
            num_workers=min(1, workers),
            batch_size=1,
            pin_memory=pin,
            worker_init_fn=ignore_stop_signals,
            generator=torch.Generator().manual_seed(h.seed),
        )
    return sampler, train_loader, validation_loader


# ---------------------------------------------------------------------------------------------
# Logging and validation
# ---------------------------------------------------------------------------------------------


def log_step(sw, steps: int, family: Family, terms: dict, updates: dict, lr: float, seconds: float, nonfinite: int, a):
    """The authors' stdout line every --stdout_interval steps; every --summary_interval steps the
    TensorBoard scalars: each term of the step (`training/<name>`: the original tags, the other
    loss terms, the mean D outputs), each update's total gradient norm before clipping
    (`training/grad_norm_<update>`), the learning rate, seconds per step and the count of skipped
    non-finite steps. The scalars of a step reach the host in one transfer."""
    if steps % a.stdout_interval == 0:
        values = "".join(f"{label} : {terms[name].item():4.3f}, " for label, name in family.stdout_terms)
        print(f"Steps : {steps:d}, {values}s/b : {seconds:4.3f}", flush=True)
    if steps % a.summary_interval == 0:
        scalars = {**terms, **{f"grad_norm_{name}": update.grad_norm for name, update in updates.items()}}
        values = torch.stack([v.float() for v in scalars.values()]).tolist()  # one host sync
        for name, value in zip(scalars, values):
            sw.add_scalar(f"training/{name}", value, steps)
        sw.add_scalar("training/learning_rate", lr, steps)
        sw.add_scalar("training/seconds_per_step", seconds, steps)
        sw.add_scalar("training/nonfinite_steps", nonfinite, steps)


def validate(generator, validation_loader, h, device, sw, steps: int, metrics=None, suffix: str = "") -> float:
    """Mel L1 over the validation set (rank 0), with audio and spectrograms for the first items;
    `metrics` (metrics.py names, from --validation_metrics) are logged for the first few clips.
    `generator`: the module that maps a mel (1, M, F) to audio (1, 1, T); `suffix` ("_ema") is
    added to its tags (the ground truth is logged once, without one)."""
    generator.eval()
    scores = []
    if device.type == "cuda":
        torch.cuda.empty_cache()
    val_err_tot, n = 0.0, 0
    max_items = h.get("validation_items")  # default: the whole validation set, as the original
    with torch.no_grad():
        for j, (x, y, _, y_mel) in enumerate(validation_loader):
            if max_items is not None and j >= max_items:
                break
            y_g_hat = generator(x.to(device))
            y_mel = y_mel.to(device, non_blocking=True)
            y_g_hat_mel = mel_from_config(y_g_hat.squeeze(1), h, fmax_for_loss=True)
            frames = min(y_mel.size(-1), y_g_hat_mel.size(-1))
            val_err_tot += F.l1_loss(y_mel[..., :frames], y_g_hat_mel[..., :frames]).item()
            n += 1
            if metrics and j < NUM_METRIC_VALIDATION_ITEMS:
                from metrics import compute_metrics

                scores.append(compute_metrics(y[0].numpy(), y_g_hat[0, 0].float().cpu().numpy(), h, metrics))
            if j < NUM_LOGGED_VALIDATION_ITEMS:
                if steps == 0 and not suffix:
                    sw.add_audio(f"gt/y_{j}", y[0], steps, h.sampling_rate)
                    sw.add_figure(f"gt/y_spec_{j}", plot_spectrogram(x[0].numpy()), steps)
                sw.add_audio(f"generated/y_hat_{j}{suffix}", y_g_hat[0].float().cpu(), steps, h.sampling_rate)
                y_hat_spec = plot_spectrogram(mel_from_config(y_g_hat.squeeze(1), h).squeeze(0).cpu().numpy())
                sw.add_figure(f"generated/y_hat_spec_{j}{suffix}", y_hat_spec, steps)
    val_err = val_err_tot / max(n, 1)
    sw.add_scalar(f"validation/mel_spec_error{suffix}", val_err, steps)
    for column, tag in VALIDATION_METRIC_TAGS.items():
        values = [s[column] for s in scores if column in s and math.isfinite(s[column])]
        if values:
            sw.add_scalar(tag + suffix, sum(values) / len(values), steps)
    generator.train()
    return val_err


def open_logs(a, is_master: bool):
    """(SummaryWriter, validation metric names) on the master process, (None, None) elsewhere."""
    if not is_master:
        return None, None
    from torch.utils.tensorboard import SummaryWriter

    metric_names = None
    if a.validation_metrics:
        from metrics import available_metrics

        metric_names = available_metrics(["pesq", "mrstft"])
    return SummaryWriter(os.path.join(a.checkpoint_path, "logs")), metric_names


def save_and_validate(a, h, family, models, optimizers, position, save: bool, sw, metric_names, loader, device):
    """On the master: the checkpoint when `save`, validation every --validation_interval steps.
    `position`: (steps, epoch, the exact-resume entries of `progress_state`)."""
    steps, epoch, extra = position
    if save:
        try:
            objects = {**models, **optimizers}
            save_checkpoints(a.checkpoint_path, steps, epoch, family, objects, a.keep_checkpoints, extra)
        except CheckpointError:
            sw.close()  # keep the logged scalars
            raise
    if steps % a.validation_interval == 0:
        validate(family.synthesize(models, h), loader, h, device, sw, steps, metric_names)
        average = family.synthesize_ema(models, h)
        if average is not None:  # the EMA weights too: validation/mel_spec_error_ema
            validate(average, loader, h, device, sw, steps, metric_names, suffix="_ema")


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


class ResumePoint(NamedTuple):
    """Where a run starts: the next step, the epoch and the batches of it already done, and the
    epoch the per-epoch schedulers resume at (-1: keep the optimizers' learning rate)."""

    steps: int
    epoch: int
    epoch_batches: int
    schedule_epoch: int


def resume_point(state: dict | None) -> ResumePoint:
    """A fresh run; an exact resume (checkpoints with the position inside the epoch: the next
    batch of the same epoch, the saved learning rate); or the authors' resume (their checkpoints:
    the saved epoch from its first batch, its learning rate decayed once more, as their train.py)."""
    if state is None:
        return ResumePoint(0, 0, 0, -1)
    if "epoch_batches" in state:
        return ResumePoint(state["steps"] + 1, state["epoch"], state["epoch_batches"], -1)
    return ResumePoint(state["steps"] + 1, state["epoch"], 0, state["epoch"])


def resume(a, h, family: Family, models: dict, optimizers: dict, device, is_master: bool):
    """(the newest checkpoint's entries or None, its `ResumePoint`, the schedulers resumed there);
    without a checkpoint, a lone generator in the folder is the starting point."""
    state = load_newest(a.checkpoint_path, family, {**models, **optimizers}, device, is_master)
    if state is None:
        init_from_lone_weights(a.checkpoint_path, family, models, device, is_master)
    start = resume_point(state)
    return state, start, family.build_schedulers(optimizers, h, start.schedule_epoch, start.steps)


def warn_at_start(a, family: Family, objects: dict, schedules, epoch_steps: int) -> None:
    """The master's start-up warnings: a disk too small for the kept checkpoints, epochs too
    short for a per-epoch decay."""
    check_disk_at_start(a.checkpoint_path, family, objects, a.keep_checkpoints)
    if warning := short_epoch_warning(schedules, epoch_steps):
        print(warning, flush=True)


def train(local_rank: int, a, h, world_size: int, rank_offset: int = 0) -> None:
    """One training process (rank `rank_offset + local_rank` of `world_size`): the family's
    models, resume, then its step per batch; checkpoints, validation and logs on rank 0."""
    rank = int(os.environ.get("RANK", rank_offset + local_rank))
    is_master = rank == 0
    device, barrier_group = setup_distributed(local_rank, world_size, rank, a, h)
    batch_size = h.batch_size // world_size  # the config's batch is global, split across processes
    seed_and_backends(h, device)
    family = family_of(h)
    models = family.build_models(h, device)
    if is_master:
        print(next(iter(models.values())))
        os.makedirs(a.checkpoint_path, exist_ok=True)
        print("checkpoints directory : ", a.checkpoint_path)
    optimizers = family.build_optimizers(models, h)
    state, start, schedules = resume(a, h, family, models, optimizers, device, is_master)
    steps = start.steps
    ctx = step_context(models, family, device, world_size, a)
    sampler, train_loader, validation_loader = build_loaders(
        a, h, batch_size, world_size, rank, is_master, pin=device.type == "cuda"
    )
    sw, metric_names = open_logs(a, is_master)
    if is_master:
        warn_at_start(a, family, {**models, **optimizers}, schedules, len(train_loader))
    stop, nonfinite = StopRequest(), NonFiniteSteps()
    previous_handlers = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    for model in models.values():
        model.train()
    if state is not None:
        restore_progress(state, ctx.scaler)  # the random state as it was after the saved step
    done = a.training_steps is not None and steps >= a.training_steps
    first = start.epoch_batches
    for epoch in range(start.epoch, a.training_epochs):
        if done:
            break
        start_time = time.time()
        if is_master:
            print(f"Epoch: {epoch + 1}")
        sampler.set_epoch(epoch, first * batch_size)
        for batch_index, batch in enumerate(progress(train_loader, epoch, is_master), start=first):
            start_b = time.time()
            terms, updates = family.train_step(models, optimizers, batch, h, ctx)
            nonfinite.check(steps, updates, sw, a.checkpoint_path)
            if is_master:
                lr = next(iter(optimizers.values())).param_groups[0]["lr"]
                log_step(sw, steps, family, terms, updates, lr, time.time() - start_b, nonfinite.total, a)
            for scheduler in schedules.per_step:
                scheduler.step()
            last_step = a.training_steps is not None and steps + 1 >= a.training_steps
            done = agree_to_stop(stop, steps, world_size, device) or last_step
            save = done or (steps % a.checkpoint_interval == 0 and steps != 0)
            if is_master:
                extra = progress_state(batch_index + 1, ctx.scaler) if save else None
                save_and_validate(a, h, family, models, optimizers, (steps, epoch, extra), save, sw, metric_names,
                                  validation_loader, device)  # fmt: skip
            if world_size > 1 and (save or steps % a.validation_interval == 0):
                dist.barrier(group=barrier_group)  # the other ranks wait for rank 0's checkpoint and validation
            steps += 1
            if done:
                break
        first = 0
        if done:
            break
        step_epoch_schedulers(schedules)
        if is_master:
            print(f"Time taken for epoch {epoch + 1} is {int(time.time() - start_time)} sec\n")
    for sig, handler in previous_handlers.items():
        signal.signal(sig, handler)
    if is_master:
        if stop.signum is not None:
            print(f"Stopped by signal {signal.Signals(stop.signum).name} at step {steps - 1}; checkpoint written.")
        sw.close()
    if world_size > 1:
        dist.destroy_process_group()


def step_epoch_schedulers(schedules) -> None:
    """The per-epoch decay at an epoch's end. A run resumed exactly at the end of an epoch gets here
    before its first optimizer step, and torch would warn that the schedule skips a value; the
    decay is due (the saved step ended the epoch), so that one warning is left out."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)` before")
        for scheduler in schedules.per_epoch:
            scheduler.step()


def progress(loader, epoch: int, is_master: bool):
    """The batches of `loader`, with a progress bar on the master when attached to a terminal."""
    if not (is_master and sys.stdout.isatty()):
        return loader
    from tqdm import tqdm

    return tqdm(loader, desc=f"epoch {epoch + 1}", leave=False)


def run_process(local_rank: int, a, h, world_size: int, rank_offset: int) -> None:
    """Entry point of a spawned process: user errors as one line, as in main()."""
    try:
        train(local_rank, a, h, world_size, rank_offset)
    except UserError as e:
        exit_with_user_error(e, a.debug)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train HiFi-GAN.")
    parser.add_argument("--group_name", default=None, help="unused; kept for compatibility with the original")
    parser.add_argument("--input_wavs_dir", default="LJSpeech-1.1/wavs", help="folder of the training wavs")
    parser.add_argument("--input_mels_dir", default="ft_dataset", help="folder of <id>.npy mels for --fine_tuning")
    parser.add_argument("--input_training_file", default="LJSpeech-1.1/training.txt", help="id|text filelist")
    parser.add_argument("--input_validation_file", default="LJSpeech-1.1/validation.txt", help="id|text filelist")
    parser.add_argument("--checkpoint_path", default="cp_hifigan", help="folder for checkpoints and logs")
    parser.add_argument("--config", default="", help="config JSON (config_v1.json, config_v2.json, config_v3.json)")
    parser.add_argument("--training_epochs", default=3100, type=int, help="number of epochs to train")
    parser.add_argument("--stdout_interval", default=5, type=int, help="steps between stdout lines")
    parser.add_argument("--checkpoint_interval", default=5000, type=int, help="steps between checkpoints")
    parser.add_argument("--summary_interval", default=100, type=int, help="steps between TensorBoard scalars")
    parser.add_argument("--validation_interval", default=1000, type=int, help="steps between validations")
    parser.add_argument(
        "--fine_tuning",
        nargs="?",
        const=True,
        default=False,
        type=str2bool,
        help="train on teacher-forced mels from --input_mels_dir (`--fine_tuning` or `--fine_tuning True`)",
    )
    parser.add_argument(
        "--mel_format",
        default="hifigan",
        choices=MEL_FORMATS,
        help="--fine_tuning: the toolkit whose frontend made the mels, converted as they are read (default hifigan: "
        "this model's own); the data check compares a sample of them with their wavs",
    )
    parser.add_argument("--training_steps", type=int, default=None, help="stop after this many steps in total")
    parser.add_argument("--device", default=None, choices=["cpu", "cuda"], help="default: cuda if available")
    parser.add_argument(
        "--amp", default="none", choices=["none", "bf16", "fp16"], help="mixed precision (default: fp32, the paper)"
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the generator and discriminators")
    parser.add_argument(
        "--keep_checkpoints",
        type=int,
        default=5,
        help="keep the newest N checkpoint pairs, deleting older ones after a new pair is written (0: keep all)",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help=f"create a small synthetic dataset in {DEMO_DIR}/ and train on it (no download needed)",
    )
    parser.add_argument(
        "--validation_metrics",
        action="store_true",
        help="also log PESQ (needs the pesq package) and MR-STFT of the first validation clips to TensorBoard "
        "(validation/pesq, validation/mrstft; rank 0, slower validation)",
    )
    parser.add_argument(
        "--skip_bad_files",
        action="store_true",
        help="leave out the listed files that the data check finds errors in and train on the others "
        "(default: list the errors and stop)",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks for user errors")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    print("Initializing Training Process..")
    a = parse_args(argv)
    dump_stacks_on_sigusr1()
    try:
        if not a.config:
            raise UserError("no config given; pass --config config_v1.json (or config_v2.json, config_v3.json)")
        h = load_config(a.config)
        family_of(h, a.config)  # before any work: the recipe can train this config
        a.device = resolve_device(a.device)
        if a.amp == "fp16" and a.device != "cuda":
            raise UserError("--amp fp16 needs CUDA; on CPU use --amp bf16 or --amp none")
        if a.demo:
            wavs, train_list, val_list = make_demo_dataset(DEMO_DIR, h.sampling_rate, n_train=DEMO_CLIPS)
            a.input_wavs_dir, a.input_training_file, a.input_validation_file = wavs, train_list, val_list
            print(f"Demo data: {DEMO_CLIPS} training clips in {wavs}")
        torchrun = "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1
        if torchrun:
            world_size = int(os.environ["WORLD_SIZE"])
        else:  # one machine, N GPUs: one process per GPU (as the original); several machines: torchrun
            world_size = processes_per_machine(a)
        check_batch(h, world_size)
        check_training_data(a, h, world_size, is_master=int(os.environ.get("RANK", 0)) == 0)
        build_env(a.config, "config.json", a.checkpoint_path)

        if torchrun:
            exit_with_launcher()
            train(int(os.environ.get("LOCAL_RANK", 0)), a, h, world_size)
            return
        if world_size > 1:
            print(f"Batch size per GPU : {h.batch_size // world_size}")
            spawn(a, h, world_size)
        else:
            train(0, a, h, 1)
    except UserError as e:
        exit_with_user_error(e, a.debug)


def exit_with_launcher() -> None:
    """Under torchrun: end this process when torchrun (its parent) dies. torchrun starts each
    worker in a session of its own, so a SIGKILLed torchrun would otherwise leave its workers
    running as orphans, holding the GPUs and writing checkpoints beside the next job's."""
    import threading

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(LAUNCHER_POLL_SECONDS)
        print(
            f"rank {os.environ.get('RANK', '?')}: torchrun (pid {parent}) is gone; exiting", file=sys.stderr, flush=True
        )
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-launcher").start()


def dump_stacks_on_sigusr1() -> None:
    """`kill -USR1 PID` prints where every thread of a training process is (to find a hang)."""
    try:
        faulthandler.register(signal.SIGUSR1, file=sys.__stderr__, all_threads=True)
    except (AttributeError, ValueError, OSError):  # no SIGUSR1 (Windows) or no real stderr
        pass


def spawn(a, h, world_size: int) -> None:
    """One training process per GPU (mp.spawn, as the original). When one dies, the others are
    stopped (SIGTERM, then SIGKILL after 30 s) and the run ends with one line naming it."""
    try:
        mp.spawn(run_process, nprocs=world_size, args=(a, h, world_size, 0))
    except mp.ProcessExitedException as e:
        how = f"was killed by {e.signal_name}" if e.signal_name else f"exited with code {e.exit_code}"
        raise UserError(
            f"training process {e.error_index} (rank {e.error_index}) {how}, so the others were stopped; run the "
            f"same command again to resume from the newest checkpoint in {a.checkpoint_path}"
        ) from None
    except mp.ProcessRaisedException as e:
        first = str(e).strip().splitlines()[-1]
        raise UserError(
            f"training process {e.error_index} (rank {e.error_index}) failed ({first}), so the others were stopped; "
            f"run the same command again to resume from the newest checkpoint in {a.checkpoint_path}"
        ) from None


def processes_per_machine(a) -> int:
    """Processes `python train.py` starts without torchrun: one per visible GPU, else one."""
    return torch.cuda.device_count() if a.device == "cuda" else 1


def check_batch(h, world_size: int) -> None:
    if h.batch_size % world_size != 0:
        warnings.warn(
            f"batch_size {h.batch_size} is not divisible by {world_size} processes; "
            f"each uses {h.batch_size // world_size}",
            stacklevel=2,
        )
    if h.batch_size < world_size:
        raise UserError(f"batch_size {h.batch_size} is smaller than the {world_size} processes; raise batch_size")


if __name__ == "__main__":
    main()
