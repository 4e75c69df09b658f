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
import math
import os
import signal
import sys
import time
import warnings

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from env import build_env
from meldataset import MelDataset, make_demo_dataset, mel_from_config, read_filelist
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
    scan_checkpoint,
)

MAX_CONSECUTIVE_NONFINITE = 20  # skipped steps in a row that stop the run
MAX_PRINTED_WARNINGS = 10  # data-check warnings of one kind printed at start (check_data.py lists all)
NUM_LOGGED_VALIDATION_ITEMS = 5  # audio and spectrogram figures for items 0..4, as the original
NUM_METRIC_VALIDATION_ITEMS = 3  # --validation_metrics: PESQ and MR-STFT on the first 3 clips
VALIDATION_METRIC_TAGS = {"pesq_wb": "validation/pesq", "mrstft": "validation/mrstft"}  # metrics column -> tag
STOP_AGREEMENT_STEPS = 5  # several processes agree on a signal every 5 steps (one all_reduce)
DIST_TIMEOUT = datetime.timedelta(hours=2)  # ranks wait at a barrier during rank-0 validation
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


def setup_distributed(local_rank: int, world_size: int, rank: int, a, h) -> torch.device:
    """Join the process group (when world_size > 1) and return this process's device."""
    device_type = a.device
    if device_type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device(device_type)
    if world_size > 1:
        backend = h.dist_config["dist_backend"] if device.type == "cuda" else "gloo"
        if "RANK" in os.environ:  # torchrun: rendezvous from the environment
            dist.init_process_group(backend=backend, timeout=DIST_TIMEOUT)
        else:  # mp.spawn on one machine, as the original
            dist.init_process_group(
                backend=backend,
                init_method=h.dist_config["dist_url"],
                world_size=world_size,
                rank=rank,
                timeout=DIST_TIMEOUT,
            )
    return device


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
    completes = list_checkpoints(cp_dir, family.checkpoint_layout[-1].prefix)
    for complete in reversed(completes):
        paths = checkpoint_files(cp_dir, family, int(complete[-CHECKPOINT_DIGITS:]))
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


def save_checkpoints(cp_dir: str, steps: int, epoch: int, family: Family, objects: dict, keep: int) -> None:
    """Write the files of checkpoint `steps` atomically in layout order (HiFi-GAN: `g_` then
    `do_`, which also holds steps and epoch and so marks a complete pair), then prune all but the
    newest `keep` (0 keeps all). `objects`: the models and optimizers by name. A failed write
    raises `CheckpointError` and keeps every older checkpoint."""
    files = [
        (path, file.keys())
        for path, file in zip(checkpoint_files(cp_dir, family, steps), family.checkpoint_layout)
        if wanted(file, objects)  # a run without EMA writes no ema_
    ]
    paths = [path for path, _ in files]
    states = [{key: objects[name].state_dict() for key, name in keys.items() if name in objects} for _, keys in files]
    states[-1].update(steps=steps, epoch=epoch)
    previous = scan_checkpoint(cp_dir, family.checkpoint_layout[-1].prefix)
    try:
        for path, state in zip(paths, states):
            save_checkpoint(path, state)
    except OSError as e:
        if not os.path.exists(paths[-1]):  # an incomplete checkpoint: free its space
            for path in filter(os.path.exists, paths[:-1]):
                os.remove(path)
        resume = f"from {os.path.basename(previous)}, which is intact" if previous else "from the start"
        raise CheckpointError(
            f"{cp_dir}: could not write checkpoint {steps:08d} ({e.strerror or e}); free disk space or fix "
            f"permissions, then restart: training resumes {resume}"
        ) from None
    print(f"Saved checkpoints {' and '.join(paths)}", flush=True)
    if keep > 0:
        prune_checkpoints(cp_dir, family, keep)


def prune_checkpoints(cp_dir: str, family: Family, keep: int) -> None:
    """Delete checkpoints older than the newest `keep` complete ones, and files whose checkpoint
    never completed (a kill during a save)."""
    prefixes = [file.prefix for file in family.checkpoint_layout]  # also files this run does not write
    oldest = list_checkpoints(cp_dir, prefixes[-1])[-keep:][0][-CHECKPOINT_DIGITS:]
    old = [p for prefix in prefixes for p in list_checkpoints(cp_dir, prefix) if p[-CHECKPOINT_DIGITS:] < oldest]
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
        training_list, validation_list, h, world_size=world_size, mels_dir=mels_dir, progress=is_master
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


def build_loaders(a, h, batch_size: int, world_size: int, rank: int, is_master: bool, pin: bool):
    """(train sampler, train loader, validation loader or None) as the original builds them, over
    the checked file lists of check_training_data."""
    fine_tuning = dict(fine_tuning=a.fine_tuning, base_mels_path=a.input_mels_dir)  # teacher-forced mels
    # NOTE: single-process training shuffles the file list once (seeded) and then iterates it
    # in that order every epoch, as the original (random crops still differ).
    trainset = MelDataset(a.training_files, h, shuffle=world_size == 1, **fine_tuning)
    sampler = DistributedSampler(trainset, num_replicas=world_size, rank=rank) if world_size > 1 else None
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
    )
    validation_loader = None
    if is_master:
        validset = MelDataset(a.validation_files, h, split=False, shuffle=False, **fine_tuning)
        validation_loader = DataLoader(
            validset, num_workers=min(1, workers), batch_size=1, pin_memory=pin, worker_init_fn=ignore_stop_signals
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


def save_and_validate(a, h, family, models, optimizers, steps, epoch, save: bool, sw, metric_names, loader, device):
    """On the master: the checkpoint when `save`, validation every --validation_interval steps."""
    if save:
        try:
            save_checkpoints(a.checkpoint_path, steps, epoch, family, {**models, **optimizers}, a.keep_checkpoints)
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


def train(local_rank: int, a, h, world_size: int, rank_offset: int = 0) -> None:
    """One training process (rank `rank_offset + local_rank` of `world_size`): the family's
    models, resume, then its step per batch; checkpoints, validation and logs on rank 0."""
    rank = int(os.environ.get("RANK", rank_offset + local_rank))
    is_master = rank == 0
    device = setup_distributed(local_rank, world_size, rank, a, h)
    batch_size = h.batch_size // world_size  # the config's batch is global, split across processes
    seed_and_backends(h, device)
    family = family_of(h)
    models = family.build_models(h, device)
    if is_master:
        print(next(iter(models.values())))
        os.makedirs(a.checkpoint_path, exist_ok=True)
        print("checkpoints directory : ", a.checkpoint_path)
    optimizers = family.build_optimizers(models, h)
    state = load_newest(a.checkpoint_path, family, {**models, **optimizers}, device, is_master)
    steps, last_epoch = (0, -1) if state is None else (state["steps"] + 1, state["epoch"])
    schedules = family.build_schedulers(optimizers, h, last_epoch, steps)
    ctx = step_context(models, family, device, world_size, a)
    sampler, train_loader, validation_loader = build_loaders(
        a, h, batch_size, world_size, rank, is_master, pin=device.type == "cuda"
    )
    sw, metric_names = open_logs(a, is_master)
    if is_master and (warning := short_epoch_warning(schedules, len(train_loader))):
        print(warning, flush=True)
    stop, nonfinite = StopRequest(), NonFiniteSteps()
    previous_handlers = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    for model in models.values():
        model.train()
    done = a.training_steps is not None and steps >= a.training_steps
    for epoch in range(max(0, last_epoch), a.training_epochs):
        if done:
            break
        start = time.time()
        if is_master:
            print(f"Epoch: {epoch + 1}")
        if sampler is not None:
            sampler.set_epoch(epoch)
        for batch in progress(train_loader, epoch, is_master):
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
                save_and_validate(
                    a, h, family, models, optimizers, steps, epoch, save, sw, metric_names, validation_loader, device
                )
            if world_size > 1 and (save or steps % a.validation_interval == 0):
                dist.barrier()  # the other ranks wait for rank 0's checkpoint write and validation
            steps += 1
            if done:
                break
        if done:
            break
        for scheduler in schedules.per_epoch:
            scheduler.step()
        if is_master:
            print(f"Time taken for epoch {epoch + 1} is {int(time.time() - start)} sec\n")
    for sig, handler in previous_handlers.items():
        signal.signal(sig, handler)
    if is_master:
        if stop.signum is not None:
            print(f"Stopped by signal {signal.Signals(stop.signum).name} at step {steps - 1}; checkpoint written.")
        sw.close()
    if world_size > 1:
        dist.destroy_process_group()


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
            train(int(os.environ.get("LOCAL_RANK", 0)), a, h, world_size)
            return
        if world_size > 1:
            print(f"Batch size per GPU : {h.batch_size // world_size}")
            mp.spawn(run_process, nprocs=world_size, args=(a, h, world_size, 0))
        else:
            train(0, a, h, 1)
    except UserError as e:
        exit_with_user_error(e, a.debug)


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
