"""Train HiFi-GAN (paper section 2.4 and 4): AdamW, ExponentialLR per epoch, a discriminator step
(MPD + MSD) then a generator step (adversarial + 2 x feature matching + 45 x mel L1) per batch.

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
import contextlib
import datetime
import itertools
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
from meldataset import MelDataset, get_dataset_filelist, make_demo_dataset, mel_from_config
from models import (
    Generator,
    MultiPeriodDiscriminator,
    MultiScaleDiscriminator,
    discriminator_loss,
    feature_loss,
    generator_loss,
)
from utils import (
    CheckpointError,
    UserError,
    exit_with_user_error,
    list_checkpoints,
    load_checkpoint,
    load_config,
    plot_spectrogram,
    remove_temp_files,
    save_checkpoint,
    scan_checkpoint,
)

MEL_LOSS_WEIGHT = 45  # lambda_mel, eq. 7 (lambda_fm = 2 is inside feature_loss)
MAX_CONSECUTIVE_NONFINITE = 20  # skipped steps in a row that stop the run
MAX_PRINTED_WARNINGS = 10  # data-check warnings of one kind printed at start (check_data.py lists all)
NUM_LOGGED_VALIDATION_ITEMS = 5  # audio and spectrogram figures for items 0..4, as the original
NUM_METRIC_VALIDATION_ITEMS = 3  # --validation_metrics: PESQ and MR-STFT on the first 3 clips
VALIDATION_METRIC_TAGS = {"pesq_wb": "validation/pesq", "mrstft": "validation/mrstft"}  # evaluate.py column -> tag
DIST_TIMEOUT = datetime.timedelta(hours=2)  # ranks wait at a barrier during rank-0 validation
DEMO_DIR = "demo_data"
# Test hooks (environment): seconds to sleep inside each checkpoint write, and steps whose input
# is replaced with NaN. Used by tests/test_reliability.py; unset in normal use.
HOOK_SLOW_SAVE = "HIFIGAN_TEST_SLOW_SAVE"
HOOK_NAN_STEPS = "HIFIGAN_TEST_NAN_STEPS"


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


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module under DDP and/or torch.compile wrappers (for state dicts)."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def load_newest_pair(cp_dir: str, generator, mpd, msd, device, is_master: bool):
    """Load the newest complete (g_, do_) pair from `cp_dir` into the models.

    A pair that fails to load (truncated file, another model) is reported by name and the next
    older one is tried. Returns the `do_` dict (optimizer states, steps, epoch), or None when the
    folder holds no pair; `CheckpointError` when it holds pairs but none loads (starting over
    would silently throw a run away). Unfinished temp files of killed writes are removed first.
    """
    if is_master:
        for path in remove_temp_files(cp_dir):
            print(f"Removed {path} (an unfinished checkpoint write)", flush=True)
    pairs = list_checkpoints(cp_dir, "do_")
    for cp_do in reversed(pairs):
        cp_g = os.path.join(cp_dir, "g_" + cp_do[-8:])
        try:
            if not os.path.isfile(cp_g):
                raise CheckpointError(f"{cp_g}: missing (the pair of {cp_do})")
            state_g = load_checkpoint(cp_g, device)
            state_do = load_checkpoint(cp_do, device)
            for key, where in (("generator", state_g), ("mpd", state_do), ("msd", state_do)):
                if key not in where:
                    raise CheckpointError(f"{cp_g if where is state_g else cp_do}: no '{key}' entry")
            generator.load_state_dict(state_g["generator"])
            mpd.load_state_dict(state_do["mpd"])
            msd.load_state_dict(state_do["msd"])
        except (CheckpointError, RuntimeError, KeyError) as e:
            if is_master:
                reason = " ".join(line.strip() for line in str(e).splitlines()[:2])  # torch: header + first error
                print(f"WARNING: skipping checkpoint {cp_do[-8:]}: {reason}", flush=True)
            continue
        if is_master:
            print(f"Resuming from {cp_g} and {cp_do} (step {state_do['steps']}, epoch {state_do['epoch']})")
        return state_do
    if pairs:
        raise CheckpointError(
            f"{cp_dir}: none of its {len(pairs)} checkpoint pair(s) loads (reasons above); use another "
            "--checkpoint_path to start over, or the config these checkpoints were trained with"
        )
    return None


def save_checkpoints(cp_dir: str, steps: int, epoch: int, generator, mpd, msd, optim_g, optim_d, keep: int) -> None:
    """Write `g_{steps}` then `do_{steps}` atomically; then prune pairs beyond the newest `keep`
    (0 keeps all). A failed write raises `CheckpointError` and keeps every older checkpoint."""
    slow = float(os.environ.get(HOOK_SLOW_SAVE, "0") or 0)
    g_path, do_path = (os.path.join(cp_dir, f"{p}{steps:08d}") for p in ("g_", "do_"))
    state_do = {
        "mpd": mpd.state_dict(),
        "msd": msd.state_dict(),
        "optim_g": optim_g.state_dict(),
        "optim_d": optim_d.state_dict(),
        "steps": steps,
        "epoch": epoch,
    }
    previous = scan_checkpoint(cp_dir, "do_")
    try:
        save_checkpoint(g_path, {"generator": generator.state_dict()})
        if slow:
            time.sleep(slow)
        save_checkpoint(do_path, state_do)
    except OSError as e:
        if os.path.exists(g_path) and not os.path.exists(do_path):  # half a pair: free its space
            os.remove(g_path)
        resume = f"from {os.path.basename(previous)}, which is intact" if previous else "from the start"
        raise CheckpointError(
            f"{cp_dir}: could not write checkpoint {steps:08d} ({e.strerror or e}); free disk space or fix "
            f"permissions, then restart: training resumes {resume}"
        ) from None
    print(f"Saved checkpoints {g_path} and {do_path}", flush=True)
    if keep > 0:
        kept = list_checkpoints(cp_dir, "do_")[-keep:]
        oldest = os.path.basename(kept[0])[len("do_") :]
        # older pairs, and generators whose do_ never got written (a kill during a save)
        old = [p for prefix in ("g_", "do_") for p in list_checkpoints(cp_dir, prefix) if p[-8:] < oldest]
        for path in old:
            try:
                os.remove(path)
            except OSError as e:
                print(f"WARNING: could not delete old checkpoint {path} ({e.strerror}); delete it by hand")


def optimizer_step(loss: torch.Tensor, optimizer, params, scaler) -> tuple[bool, bool]:
    """Backward, then step unless the gradients are non-finite.

    Returns (stepped, counted): `counted` marks a skipped step that is a real numerical problem
    (not an fp16 GradScaler overflow, which the scaler handles by lowering its scale).
    """
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    grads = [p.grad for p in params if p.grad is not None]
    norm = torch.nn.utils.get_total_norm(grads, foreach=True) if grads else loss.detach().float()
    finite = bool(torch.isfinite(norm))  # the one host sync of this optimizer step
    if finite:
        scaler.step(optimizer)
    scaler.update()
    counted = not finite and (not scaler.is_enabled() or not bool(torch.isfinite(loss.detach())))
    return finite, counted


@contextlib.contextmanager
def frozen(*modules: torch.nn.Module):
    """Parameters of `modules` require no gradient inside the block.

    The generator step back-propagates through the discriminators but never uses their weight
    gradients (the next discriminator step zeroes them), so it does not compute them: the same
    generator update for about a third less backward work through the discriminators.
    """
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


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


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Mixed-precision context for the networks (a no-op for fp32)."""
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def check_training_data(a, h, world_size: int, is_master: bool) -> None:
    """Check every listed wav (check_data.py) before any work, the checkpoint folder untouched.

    Errors stop the run, all of them listed, unless --skip_bad_files (then training uses the other
    files); warnings are printed (the first few of each kind) and training goes on. Sets
    `a.training_files` / `a.validation_files`. Under torchrun every rank runs the same check on
    the same files, so all ranks get the same lists.
    """
    from check_data import check_filelists, format_problem, summary, usable_files

    start = time.time()
    mels_dir = a.input_mels_dir if a.fine_tuning else None
    problems = check_filelists(
        a.input_training_file,
        a.input_validation_file,
        a.input_wavs_dir,
        h,
        world_size=world_size,
        mels_dir=mels_dir,
        progress=is_master,
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
    training, validation = get_dataset_filelist(a)
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


def build_loaders(a, h, batch_size: int, world_size: int, rank: int, is_master: bool, pin: bool):
    """(train sampler, train loader, validation loader or None) as the original builds them, over
    the checked file lists of check_training_data."""
    training_filelist, validation_filelist = a.training_files, a.validation_files
    mel_args = (h.segment_size, h.n_fft, h.num_mels, h.hop_size, h.win_size, h.sampling_rate, h.fmin, h.fmax)
    # NOTE: single-process training shuffles the file list once (seeded) and then iterates it
    # in that order every epoch, as the original (random crops still differ).
    trainset = MelDataset(
        training_filelist,
        *mel_args,
        n_cache_reuse=0,
        shuffle=world_size == 1,
        fmax_loss=h.fmax_for_loss,
        fine_tuning=a.fine_tuning,
        base_mels_path=a.input_mels_dir,
    )
    sampler = DistributedSampler(trainset, num_replicas=world_size, rank=rank) if world_size > 1 else None
    workers = h.num_workers
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
        validset = MelDataset(
            validation_filelist,
            *mel_args,
            split=False,
            shuffle=False,
            n_cache_reuse=0,
            fmax_loss=h.fmax_for_loss,
            fine_tuning=a.fine_tuning,
            base_mels_path=a.input_mels_dir,
        )
        validation_loader = DataLoader(
            validset, num_workers=min(1, workers), batch_size=1, pin_memory=pin, worker_init_fn=ignore_stop_signals
        )
    return sampler, train_loader, validation_loader


# ---------------------------------------------------------------------------------------------
# Logging and validation
# ---------------------------------------------------------------------------------------------


def log_step(sw, steps: int, terms: dict, lr: float, seconds: float, nonfinite_total: int) -> None:
    """TensorBoard scalars: the original tags plus each loss term, lr and seconds per step."""
    sw.add_scalar("training/gen_loss_total", terms["gen_loss_total"], steps)
    sw.add_scalar("training/mel_spec_error", terms["mel_spec_error"], steps)
    for name in ("disc_loss_total", "gen_loss_mpd", "gen_loss_msd", "fm_loss_mpd", "fm_loss_msd", "mel_loss"):
        sw.add_scalar(f"training/{name}", terms[name], steps)
    sw.add_scalar("training/learning_rate", lr, steps)
    sw.add_scalar("training/seconds_per_step", seconds, steps)
    sw.add_scalar("training/nonfinite_steps", nonfinite_total, steps)


def validate(generator, validation_loader, h, device, sw, steps: int, metrics=None) -> float:
    """Mel L1 over the validation set (rank 0), with audio and spectrograms for the first items;
    `metrics` (evaluate.py names, from --validation_metrics) are logged for the first few clips."""
    generator.eval()
    scores = []
    if device.type == "cuda":
        torch.cuda.empty_cache()
    val_err_tot, n = 0.0, 0
    with torch.no_grad():
        for j, (x, y, _, y_mel) in enumerate(validation_loader):
            y_g_hat = generator(x.to(device))
            y_mel = y_mel.to(device, non_blocking=True)
            y_g_hat_mel = mel_from_config(y_g_hat.squeeze(1), h, fmax_for_loss=True)
            frames = min(y_mel.size(-1), y_g_hat_mel.size(-1))
            val_err_tot += F.l1_loss(y_mel[..., :frames], y_g_hat_mel[..., :frames]).item()
            n += 1
            if metrics and j < NUM_METRIC_VALIDATION_ITEMS:
                from evaluate import compute_metrics

                scores.append(compute_metrics(y[0].numpy(), y_g_hat[0, 0].float().cpu().numpy(), h, metrics))
            if j < NUM_LOGGED_VALIDATION_ITEMS:
                if steps == 0:
                    sw.add_audio(f"gt/y_{j}", y[0], steps, h.sampling_rate)
                    sw.add_figure(f"gt/y_spec_{j}", plot_spectrogram(x[0].numpy()), steps)
                sw.add_audio(f"generated/y_hat_{j}", y_g_hat[0].float().cpu(), steps, h.sampling_rate)
                y_hat_spec = mel_from_config(y_g_hat.squeeze(1), h)
                sw.add_figure(f"generated/y_hat_spec_{j}", plot_spectrogram(y_hat_spec.squeeze(0).cpu().numpy()), steps)
    val_err = val_err_tot / max(n, 1)
    sw.add_scalar("validation/mel_spec_error", val_err, steps)
    for column, tag in VALIDATION_METRIC_TAGS.items():
        values = [s[column] for s in scores if column in s and math.isfinite(s[column])]
        if values:
            sw.add_scalar(tag, sum(values) / len(values), steps)
    generator.train()
    return val_err


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def train(local_rank: int, a, h, world_size: int, rank_offset: int = 0) -> None:
    """One training process (rank `rank_offset + local_rank` of `world_size`)."""
    rank = int(os.environ.get("RANK", rank_offset + local_rank))
    is_master = rank == 0
    device = setup_distributed(local_rank, world_size, rank, a, h)
    batch_size = h.batch_size // world_size  # the config's batch is global, split across processes
    torch.manual_seed(h.seed)
    if device.type == "cuda":
        torch.cuda.manual_seed(h.seed)
        torch.backends.cudnn.benchmark = True
        # Convolutions may use TF32 (torch's default, as in the authors' runs). TF32 matmuls stay
        # off: the networks have none, and the one matmul, the mel filterbank, is kept fp32.
        torch.backends.cudnn.allow_tf32 = True

    generator = Generator(h).to(device)
    mpd = MultiPeriodDiscriminator().to(device)
    msd = MultiScaleDiscriminator().to(device)
    if is_master:
        print(generator)
        os.makedirs(a.checkpoint_path, exist_ok=True)
        print("checkpoints directory : ", a.checkpoint_path)

    state_do = load_newest_pair(a.checkpoint_path, generator, mpd, msd, device, is_master)
    steps, last_epoch = (0, -1) if state_do is None else (state_do["steps"] + 1, state_do["epoch"])

    optim_g = torch.optim.AdamW(generator.parameters(), h.learning_rate, betas=[h.adam_b1, h.adam_b2])
    optim_d = torch.optim.AdamW(
        itertools.chain(msd.parameters(), mpd.parameters()), h.learning_rate, betas=[h.adam_b1, h.adam_b2]
    )
    if state_do is not None:
        optim_g.load_state_dict(state_do["optim_g"])
        optim_d.load_state_dict(state_do["optim_d"])
        for group in optim_g.param_groups + optim_d.param_groups:  # saved before any scheduler existed
            group.setdefault("initial_lr", h.learning_rate)
    scheduler_g = torch.optim.lr_scheduler.ExponentialLR(optim_g, gamma=h.lr_decay, last_epoch=last_epoch)
    scheduler_d = torch.optim.lr_scheduler.ExponentialLR(optim_d, gamma=h.lr_decay, last_epoch=last_epoch)
    params_g, params_d = list(generator.parameters()), list(msd.parameters()) + list(mpd.parameters())

    # Wrapped modules run the steps; the plain ones (generator, mpd, msd) are saved.
    g_run, mpd_run, msd_run = generator, mpd, msd
    if world_size > 1:
        ids = [device.index] if device.type == "cuda" else None
        g_run, mpd_run, msd_run = (DistributedDataParallel(m, device_ids=ids) for m in (generator, mpd, msd))
    if a.compile:
        g_run, mpd_run, msd_run = (torch.compile(m) for m in (g_run, mpd_run, msd_run))
    mpd_g, msd_g = mpd_run, msd_run  # the generator step's discriminators (parameters frozen)
    if world_size > 1:  # without DDP: it would wait for the weight gradients that are never made
        mpd_g, msd_g = (torch.compile(m) if a.compile else m for m in (mpd, msd))

    sampler, train_loader, validation_loader = build_loaders(
        a, h, batch_size, world_size, rank, is_master, pin=device.type == "cuda"
    )
    sw, val_metrics = None, None
    if is_master:
        from torch.utils.tensorboard import SummaryWriter

        if a.validation_metrics:
            from evaluate import available_metrics

            val_metrics = available_metrics(["pesq", "mrstft"])

        sw = SummaryWriter(os.path.join(a.checkpoint_path, "logs"))

    amp_dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[a.amp]
    scaler = torch.amp.GradScaler(device.type, enabled=a.amp == "fp16")
    nan_steps = {int(s) for s in os.environ.get(HOOK_NAN_STEPS, "").split(",") if s.strip()}

    stop = StopRequest()
    previous_handlers = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}

    nonfinite_run, nonfinite_total = 0, 0
    generator.train()
    mpd.train()
    msd.train()
    done = a.training_steps is not None and steps >= a.training_steps
    epoch = max(0, last_epoch)
    for epoch in range(max(0, last_epoch), a.training_epochs):
        if done:
            break
        if is_master:
            start = time.time()
            print(f"Epoch: {epoch + 1}")
        if sampler is not None:
            sampler.set_epoch(epoch)
        batches = train_loader
        if is_master and sys.stdout.isatty():
            from tqdm import tqdm

            batches = tqdm(train_loader, desc=f"epoch {epoch + 1}", leave=False)
        for batch in batches:
            start_b = time.time()
            x, y, _, y_mel = batch
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True).unsqueeze(1)  # (B, T) -> (B, 1, T)
            y_mel = y_mel.to(device, non_blocking=True)
            if steps in nan_steps:
                x = torch.full_like(x, float("nan"))

            with autocast(device, amp_dtype):
                y_g_hat = g_run(x)
            y_g_hat_mel = mel_from_config(y_g_hat.squeeze(1), h, fmax_for_loss=True)  # fp32 always

            # Discriminator step: MPD and MSD on the detached generator output
            optim_d.zero_grad(set_to_none=True)
            with autocast(device, amp_dtype):
                y_df_hat_r, y_df_hat_g, _, _ = mpd_run(y, y_g_hat.detach())
                loss_disc_f, _, _ = discriminator_loss(y_df_hat_r, y_df_hat_g)
                y_ds_hat_r, y_ds_hat_g, _, _ = msd_run(y, y_g_hat.detach())
                loss_disc_s, _, _ = discriminator_loss(y_ds_hat_r, y_ds_hat_g)
                loss_disc_all = loss_disc_s + loss_disc_f
            d_ok, d_bad = optimizer_step(loss_disc_all, optim_d, params_d, scaler)

            # Generator step: mel L1, feature matching, adversarial
            optim_g.zero_grad(set_to_none=True)
            loss_mel = F.l1_loss(y_mel, y_g_hat_mel) * MEL_LOSS_WEIGHT
            with autocast(device, amp_dtype), frozen(mpd, msd):
                y_df_hat_r, y_df_hat_g, fmap_f_r, fmap_f_g = mpd_g(y, y_g_hat)
                y_ds_hat_r, y_ds_hat_g, fmap_s_r, fmap_s_g = msd_g(y, y_g_hat)
                loss_fm_f = feature_loss(fmap_f_r, fmap_f_g)
                loss_fm_s = feature_loss(fmap_s_r, fmap_s_g)
                loss_gen_f, _ = generator_loss(y_df_hat_g)
                loss_gen_s, _ = generator_loss(y_ds_hat_g)
            loss_gen_all = loss_gen_s + loss_gen_f + loss_fm_s + loss_fm_f + loss_mel
            g_ok, g_bad = optimizer_step(loss_gen_all, optim_g, params_g, scaler)

            if not (d_bad or g_bad):
                nonfinite_run = 0
            else:
                nonfinite_run += 1
                nonfinite_total += 1
                if is_master:
                    print(
                        f"WARNING: step {steps}: non-finite loss or gradient, "
                        f"{'discriminator' if not d_ok else ''}{' and ' if not (d_ok or g_ok) else ''}"
                        f"{'generator' if not g_ok else ''} update skipped "
                        f"({nonfinite_run} in a row, {nonfinite_total} in total)",
                        flush=True,
                    )
                if nonfinite_run >= MAX_CONSECUTIVE_NONFINITE:
                    if is_master:  # the counter's last value reaches the event file
                        sw.add_scalar("training/nonfinite_steps", nonfinite_total, steps)
                        sw.close()
                    raise UserError(
                        f"{MAX_CONSECUTIVE_NONFINITE} steps in a row had non-finite losses or gradients (step "
                        f"{steps}); stopping. The last good checkpoint in {a.checkpoint_path} is intact: check "
                        "the data (python check_data.py ...), lower learning_rate, or use --amp none"
                    )

            if is_master:
                seconds = time.time() - start_b
                if steps % a.stdout_interval == 0 or steps % a.summary_interval == 0:
                    with torch.no_grad():
                        mel_error = F.l1_loss(y_mel, y_g_hat_mel).item()
                if steps % a.stdout_interval == 0:
                    print(
                        f"Steps : {steps:d}, Gen Loss Total : {loss_gen_all.item():4.3f}, "
                        f"Mel-Spec. Error : {mel_error:4.3f}, s/b : {seconds:4.3f}",
                        flush=True,
                    )
                if steps % a.summary_interval == 0:
                    terms = {
                        "gen_loss_total": loss_gen_all.item(),
                        "mel_spec_error": mel_error,
                        "disc_loss_total": loss_disc_all.item(),
                        "gen_loss_mpd": loss_gen_f.item(),
                        "gen_loss_msd": loss_gen_s.item(),
                        "fm_loss_mpd": loss_fm_f.item(),
                        "fm_loss_msd": loss_fm_s.item(),
                        "mel_loss": loss_mel.item(),
                    }
                    log_step(sw, steps, terms, optim_g.param_groups[0]["lr"], seconds, nonfinite_total)

            last_step = a.training_steps is not None and steps + 1 >= a.training_steps
            stop_now = stop.signum is not None
            if world_size > 1:  # every rank must agree to stop at the same step
                flag = torch.tensor([float(stop_now)], device=device)
                dist.all_reduce(flag)
                stop_now = bool(flag.item())
            periodic = steps % a.checkpoint_interval == 0 and steps != 0
            if is_master:
                if periodic or last_step or stop_now:
                    try:
                        save_checkpoints(
                            a.checkpoint_path,
                            steps,
                            epoch,
                            generator,
                            mpd,
                            msd,
                            optim_g,
                            optim_d,
                            a.keep_checkpoints,
                        )
                    except CheckpointError:
                        sw.close()  # keep the logged scalars
                        raise
                if steps % a.validation_interval == 0:
                    validate(generator, validation_loader, h, device, sw, steps, val_metrics)
            if world_size > 1:
                dist.barrier()
            steps += 1
            if last_step or stop_now:
                done = True
                break

        if done:
            break
        scheduler_g.step()
        scheduler_d.step()
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


def run_process(local_rank: int, a, h, world_size: int, rank_offset: int) -> None:
    """Entry point of a spawned process: user errors as one line, as in main()."""
    try:
        train(local_rank, a, h, world_size, rank_offset)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


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
        if a.device is None:
            a.device = "cuda" if torch.cuda.is_available() else "cpu"
        if a.device == "cuda" and not torch.cuda.is_available():
            raise UserError("--device cuda but no CUDA device is available; use --device cpu")
        if a.amp == "fp16" and a.device != "cuda":
            raise UserError("--amp fp16 needs CUDA; on CPU use --amp bf16 or --amp none")
        if a.demo:
            wavs, train_list, val_list = make_demo_dataset(DEMO_DIR, h.sampling_rate)
            a.input_wavs_dir, a.input_training_file, a.input_validation_file = wavs, train_list, val_list
            print(f"Demo data: {len(open(train_list).readlines())} training clips in {wavs}")
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
