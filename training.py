"""Training recipes: what one system contributes to the shared loop of train.py.

A recipe is a `Family` of plain functions: its models, optimizers and schedulers, one
`train_step`, its checkpoint layout, the module that synthesizes for validation and the terms of
its stdout line. train.py owns everything else (DDP, AMP, resume, atomic checkpoints, signals,
data checks, TensorBoard) and picks the recipe by the config key `model_family` (default
"hifigan"). A new system adds its own file, its config and one line in `train.FAMILIES`.

`HIFIGAN` is the paper's recipe (section 2.4): AdamW, ExponentialLR per epoch, a discriminator
step (MPD + MSD) then a generator step (adversarial + 2 x feature matching + 45 x mel L1).
"""

import contextlib
import itertools
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F

from meldataset import mel_from_config
from models import (
    MPD_CHANNELS,
    MPD_PERIODS,
    MSD_CHANNELS,
    Generator,
    MultiPeriodDiscriminator,
    MultiScaleDiscriminator,
    discriminator_loss,
    feature_loss,
    generator_loss,
)

MEL_LOSS_WEIGHT = 45  # lambda_mel, eq. 7 (lambda_fm = 2 is inside feature_loss)


# ---------------------------------------------------------------------------------------------
# Shared pieces of a step
# ---------------------------------------------------------------------------------------------


class StepContext(NamedTuple):
    """What a step needs besides models, optimizers, batch and config.

    `run`: the modules that compute (DDP- and/or torch.compile-wrapped, by name; the plain modules
    are the ones saved); `frozen_run`: the same for modules whose parameters are frozen in the
    step (no DDP: it would wait for weight gradients that are never made).
    """

    device: torch.device
    amp_dtype: torch.dtype | None
    scaler: torch.amp.GradScaler
    run: dict
    frozen_run: dict


class Family(NamedTuple):
    """One trainable system (see the module docstring).

    - build_models(h, device) -> {name: module}
    - build_optimizers(models, h) -> {name: optimizer}
    - build_schedulers(optimizers, h, last_epoch) -> [scheduler], stepped once per epoch
    - train_step(models, optimizers, batch, h, ctx) -> (terms, updates): loss terms by TensorBoard
      name (0-d tensors), and {update name: (stepped, counted)} from `optimizer_step`
    - checkpoint_layout: ((file prefix, (model or optimizer names...)), ...); the last file also
      holds `steps` and `epoch` and marks a complete checkpoint
    - synthesize(models) -> the module that maps a mel (B, M, F) to audio (B, 1, T) (validation)
    - stdout_terms: ((label, term name), ...) of the stdout line
    """

    build_models: Callable
    build_optimizers: Callable
    build_schedulers: Callable
    train_step: Callable
    checkpoint_layout: tuple
    synthesize: Callable
    stdout_terms: tuple


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Mixed-precision context for the networks (a no-op for fp32)."""
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


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


def exponential_schedulers(optimizers: dict, h, last_epoch: int) -> list:
    """ExponentialLR(lr_decay) per optimizer, resumed at `last_epoch` (-1: a fresh run)."""
    for opt in optimizers.values():
        for group in opt.param_groups:  # checkpoints are saved before any scheduler existed
            group.setdefault("initial_lr", h.learning_rate)
    return [
        torch.optim.lr_scheduler.ExponentialLR(o, gamma=h.lr_decay, last_epoch=last_epoch) for o in optimizers.values()
    ]


# ---------------------------------------------------------------------------------------------
# HiFi-GAN
# ---------------------------------------------------------------------------------------------


def build_hifigan(h, device: torch.device) -> dict:
    """Generator, MPD and MSD; the optional keys `mpd_periods`, `mpd_channels`, `msd_channels`
    (absent: the paper's sizes) give smaller discriminators, e.g. for tests."""
    generator = Generator(h).to(device)
    mpd = MultiPeriodDiscriminator(h.get("mpd_periods", MPD_PERIODS), h.get("mpd_channels", MPD_CHANNELS))
    msd = MultiScaleDiscriminator(h.get("msd_channels", MSD_CHANNELS))
    return {"generator": generator, "mpd": mpd.to(device), "msd": msd.to(device)}


def hifigan_optimizers(models: dict, h) -> dict:
    """AdamW for the generator and one for both discriminators (MSD parameters first)."""
    betas = [h.adam_b1, h.adam_b2]
    params_d = itertools.chain(models["msd"].parameters(), models["mpd"].parameters())
    return {
        "optim_g": torch.optim.AdamW(models["generator"].parameters(), h.learning_rate, betas=betas),
        "optim_d": torch.optim.AdamW(params_d, h.learning_rate, betas=betas),
    }


def hifigan_step(models: dict, optimizers: dict, batch, h, ctx: StepContext) -> tuple[dict, dict]:
    """One paper-order step on a batch (mel (B, M, F), audio (B, T), names, loss mel (B, M, F)):
    the discriminator step (MPD, MSD on the detached output), then the generator step (mel L1,
    feature matching, adversarial). Returns (loss terms, updates) as `Family.train_step`."""
    x, y, _, y_mel = batch
    x = x.to(ctx.device, non_blocking=True)
    y = y.to(ctx.device, non_blocking=True).unsqueeze(1)  # (B, T) -> (B, 1, T)
    y_mel = y_mel.to(ctx.device, non_blocking=True)
    generator, mpd, msd = (ctx.run[k] for k in ("generator", "mpd", "msd"))
    optim_g, optim_d = optimizers["optim_g"], optimizers["optim_d"]
    with autocast(ctx.device, ctx.amp_dtype):
        y_g_hat = generator(x)
    y_g_hat_mel = mel_from_config(y_g_hat.squeeze(1), h, fmax_for_loss=True)  # fp32 always

    # Discriminator step: MPD and MSD on the detached generator output
    optim_d.zero_grad(set_to_none=True)
    with autocast(ctx.device, ctx.amp_dtype):
        y_df_hat_r, y_df_hat_g, _, _ = mpd(y, y_g_hat.detach())
        loss_disc_f, _, _ = discriminator_loss(y_df_hat_r, y_df_hat_g)
        y_ds_hat_r, y_ds_hat_g, _, _ = msd(y, y_g_hat.detach())
        loss_disc_s, _, _ = discriminator_loss(y_ds_hat_r, y_ds_hat_g)
        loss_disc_all = loss_disc_s + loss_disc_f
    params_d = [*models["msd"].parameters(), *models["mpd"].parameters()]
    d_update = optimizer_step(loss_disc_all, optim_d, params_d, ctx.scaler)

    # Generator step: mel L1, feature matching, adversarial
    optim_g.zero_grad(set_to_none=True)
    mel_error = F.l1_loss(y_mel, y_g_hat_mel)
    loss_mel = mel_error * MEL_LOSS_WEIGHT
    mpd, msd = ctx.frozen_run["mpd"], ctx.frozen_run["msd"]
    with autocast(ctx.device, ctx.amp_dtype), frozen(models["mpd"], models["msd"]):
        y_df_hat_r, y_df_hat_g, fmap_f_r, fmap_f_g = mpd(y, y_g_hat)
        y_ds_hat_r, y_ds_hat_g, fmap_s_r, fmap_s_g = msd(y, y_g_hat)
        loss_fm_f = feature_loss(fmap_f_r, fmap_f_g)
        loss_fm_s = feature_loss(fmap_s_r, fmap_s_g)
        loss_gen_f, _ = generator_loss(y_df_hat_g)
        loss_gen_s, _ = generator_loss(y_ds_hat_g)
    loss_gen_all = loss_gen_s + loss_gen_f + loss_fm_s + loss_fm_f + loss_mel
    g_update = optimizer_step(loss_gen_all, optim_g, list(models["generator"].parameters()), ctx.scaler)

    terms = {
        "gen_loss_total": loss_gen_all,
        "mel_spec_error": mel_error,
        "disc_loss_total": loss_disc_all,
        "gen_loss_mpd": loss_gen_f,
        "gen_loss_msd": loss_gen_s,
        "fm_loss_mpd": loss_fm_f,
        "fm_loss_msd": loss_fm_s,
        "mel_loss": loss_mel,
    }
    return {k: v.detach() for k, v in terms.items()}, {"discriminator": d_update, "generator": g_update}


HIFIGAN = Family(
    build_models=build_hifigan,
    build_optimizers=hifigan_optimizers,
    build_schedulers=exponential_schedulers,
    train_step=hifigan_step,
    checkpoint_layout=(("g_", ("generator",)), ("do_", ("mpd", "msd", "optim_g", "optim_d"))),
    synthesize=lambda models: models["generator"],
    stdout_terms=(("Gen Loss Total", "gen_loss_total"), ("Mel-Spec. Error", "mel_spec_error")),
)
