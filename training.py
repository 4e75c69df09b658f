"""The training recipes train.py runs: a `Family` per system (its models, optimizers, schedulers,
one step function and its checkpoint layout), and HiFi-GAN's (`HIFIGAN`, paper section 2.4).

train.py owns the loop (DDP, resume, atomic checkpoints, signals, data checks, TensorBoard); a
system plugs in with a `Family` in its own file, its config and one line in `train.FAMILIES`.
"""

import contextlib
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F

from meldataset import mel_from_config
from models import (
    Generator,
    MultiPeriodDiscriminator,
    MultiScaleDiscriminator,
    discriminator_loss,
    feature_loss,
    generator_loss,
)

MEL_LOSS_WEIGHT = 45  # lambda_mel, eq. 7 (lambda_fm = 2 is inside feature_loss)


class StepContext(NamedTuple):
    """What a step needs besides models and batch: the device, mixed precision and the modules
    that run. `run` holds the modules wrapped for the discriminator step (DDP and/or compiled);
    `run_frozen` those for passes whose weight gradients are never used (no DDP: it would wait
    for gradients that are never made)."""

    device: torch.device
    amp_dtype: torch.dtype | None
    scaler: torch.amp.GradScaler
    run: dict
    run_frozen: dict


class StepResult(NamedTuple):
    """`losses`: detached 0-d tensors by TensorBoard name (`training/<name>`); `skipped`: the
    updates skipped for non-finite gradients; `nonfinite`: a skip that is a numerical problem."""

    losses: dict
    skipped: tuple
    nonfinite: bool


class Family(NamedTuple):
    """A trainable system. `checkpoint_layout`: ((file prefix, (entries...)), ...) where an entry
    names a module of `build_models` or an optimizer of `build_optimizers`; the last file also
    holds `steps` and `epoch`."""

    build_models: Callable  # (h, device) -> {name: nn.Module}
    build_optimizers: Callable  # (models, h) -> {name: Optimizer}
    build_schedulers: Callable  # (optimizers, h, last_epoch) -> [scheduler stepped per epoch]
    train_step: Callable  # (models, optimizers, batch, h, ctx) -> StepResult
    checkpoint_layout: tuple
    synthesize: Callable  # (models, mel (B, M, F)) -> audio (B, 1, T), for validation
    stdout_line: Callable  # (steps, losses, seconds) -> the progress line


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Mixed-precision context for the networks (a no-op for fp32)."""
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


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


def optimizer_step(loss: torch.Tensor, optimizer, scaler) -> tuple[bool, bool]:
    """Backward, then step unless the gradients are non-finite.

    Returns (stepped, counted): `counted` marks a skipped step that is a real numerical problem
    (not an fp16 GradScaler overflow, which the scaler handles by lowering its scale).
    """
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    norm = torch.nn.utils.get_total_norm(grads, foreach=True) if grads else loss.detach().float()
    finite = bool(torch.isfinite(norm))  # the one host sync of this optimizer step
    if finite:
        scaler.step(optimizer)
    scaler.update()
    counted = not finite and (not scaler.is_enabled() or not bool(torch.isfinite(loss.detach())))
    return finite, counted


def exponential_schedulers(optimizers: dict, h, last_epoch: int) -> list:
    """ExponentialLR(lr_decay) per optimizer, stepped once per epoch (the authors' schedule)."""
    return [
        torch.optim.lr_scheduler.ExponentialLR(opt, gamma=h.lr_decay, last_epoch=last_epoch)
        for opt in optimizers.values()
    ]


# ---------------------------------------------------------------------------------------------
# HiFi-GAN
# ---------------------------------------------------------------------------------------------


def hifigan_models(h, device) -> dict:
    return {
        "generator": Generator(h).to(device),
        "mpd": MultiPeriodDiscriminator.from_config(h).to(device),
        "msd": MultiScaleDiscriminator.from_config(h).to(device),
    }


def hifigan_optimizers(models: dict, h) -> dict:
    """AdamW for G, and one AdamW over MSD then MPD for D (the authors' order)."""
    betas = [h.adam_b1, h.adam_b2]
    params_d = list(models["msd"].parameters()) + list(models["mpd"].parameters())
    return {
        "optim_g": torch.optim.AdamW(models["generator"].parameters(), h.learning_rate, betas=betas),
        "optim_d": torch.optim.AdamW(params_d, h.learning_rate, betas=betas),
    }


def hifigan_step(models: dict, optimizers: dict, batch, h, ctx: StepContext) -> StepResult:
    """One batch in the paper's order: D step (MPD, MSD) then G step (mel L1, feature matching,
    adversarial). `batch`: (mel (B, M, F), audio (B, T), names, loss mel (B, M, F))."""
    x, y, _, y_mel = batch
    x = x.to(ctx.device, non_blocking=True)
    y = y.to(ctx.device, non_blocking=True).unsqueeze(1)  # (B, T) -> (B, 1, T)
    y_mel = y_mel.to(ctx.device, non_blocking=True)
    optim_g, optim_d = optimizers["optim_g"], optimizers["optim_d"]
    run, run_frozen = ctx.run, ctx.run_frozen

    with autocast(ctx.device, ctx.amp_dtype):
        y_g_hat = run["generator"](x)
    y_g_hat_mel = mel_from_config(y_g_hat.squeeze(1), h, fmax_for_loss=True)  # fp32 always

    # Discriminator step: MPD and MSD on the detached generator output
    optim_d.zero_grad(set_to_none=True)
    with autocast(ctx.device, ctx.amp_dtype):
        y_df_hat_r, y_df_hat_g, _, _ = run["mpd"](y, y_g_hat.detach())
        loss_disc_f, _, _ = discriminator_loss(y_df_hat_r, y_df_hat_g)
        y_ds_hat_r, y_ds_hat_g, _, _ = run["msd"](y, y_g_hat.detach())
        loss_disc_s, _, _ = discriminator_loss(y_ds_hat_r, y_ds_hat_g)
        loss_disc_all = loss_disc_s + loss_disc_f
    d_ok, d_bad = optimizer_step(loss_disc_all, optim_d, ctx.scaler)

    # Generator step: mel L1, feature matching, adversarial
    optim_g.zero_grad(set_to_none=True)
    mel_error = F.l1_loss(y_mel, y_g_hat_mel)
    loss_mel = mel_error * MEL_LOSS_WEIGHT
    with autocast(ctx.device, ctx.amp_dtype), frozen(models["mpd"], models["msd"]):
        y_df_hat_r, y_df_hat_g, fmap_f_r, fmap_f_g = run_frozen["mpd"](y, y_g_hat)
        y_ds_hat_r, y_ds_hat_g, fmap_s_r, fmap_s_g = run_frozen["msd"](y, y_g_hat)
        loss_fm_f = feature_loss(fmap_f_r, fmap_f_g)
        loss_fm_s = feature_loss(fmap_s_r, fmap_s_g)
        loss_gen_f, _ = generator_loss(y_df_hat_g)
        loss_gen_s, _ = generator_loss(y_ds_hat_g)
    loss_gen_all = loss_gen_s + loss_gen_f + loss_fm_s + loss_fm_f + loss_mel
    g_ok, g_bad = optimizer_step(loss_gen_all, optim_g, ctx.scaler)

    losses = {
        "gen_loss_total": loss_gen_all,
        "mel_spec_error": mel_error,
        "disc_loss_total": loss_disc_all,
        "gen_loss_mpd": loss_gen_f,
        "gen_loss_msd": loss_gen_s,
        "fm_loss_mpd": loss_fm_f,
        "fm_loss_msd": loss_fm_s,
        "mel_loss": loss_mel,
    }
    skipped = tuple(name for name, ok in (("discriminator", d_ok), ("generator", g_ok)) if not ok)
    return StepResult({k: v.detach() for k, v in losses.items()}, skipped, d_bad or g_bad)


def hifigan_stdout_line(steps: int, losses: dict, seconds: float) -> str:
    """The authors' progress line."""
    return (
        f"Steps : {steps:d}, Gen Loss Total : {losses['gen_loss_total'].item():4.3f}, "
        f"Mel-Spec. Error : {losses['mel_spec_error'].item():4.3f}, s/b : {seconds:4.3f}"
    )


HIFIGAN = Family(
    build_models=hifigan_models,
    build_optimizers=hifigan_optimizers,
    build_schedulers=exponential_schedulers,
    train_step=hifigan_step,
    checkpoint_layout=(("g_", ("generator",)), ("do_", ("mpd", "msd", "optim_g", "optim_d"))),
    synthesize=lambda models, mel: models["generator"](mel),
    stdout_line=hifigan_stdout_line,
)
