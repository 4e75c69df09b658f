"""Training recipes: what one system contributes to the shared loop of train.py.

A recipe is a `Family` of plain functions: its models, optimizers and schedulers, one
`train_step`, its checkpoint layout, the module that synthesizes for validation and the terms of
its stdout line. train.py owns everything else (DDP, AMP, resume, atomic checkpoints, signals,
data checks, TensorBoard) and picks the recipe by the config key `model_family` (default
"hifigan"). A new system adds its own file, its config and one line in `train.FAMILIES`.

`GAN` is the paper's recipe (section 2.4): AdamW, ExponentialLR per epoch, a discriminator step
(MPD + MSD) then a generator step (adversarial + 2 x feature matching + 45 x mel L1). Optional
config keys turn it into each row of the paper's Table 2 and into MelGAN's recipe (see `recipe`).
"""

import contextlib
import itertools
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F

from baselines.melgan import ADVERSARIAL_LOSSES, MelGANDiscriminator, melgan_feature_loss
from meldataset import mel_from_config
from models import (
    MultiPeriodDiscriminator,
    MultiScaleDiscriminator,
    feature_loss,
)
from synthesis import build_generator
from utils import ConfigError

MEL_LOSS_WEIGHT = 45  # lambda_mel, eq. 7
FEATURE_LOSS_WEIGHT = 2  # lambda_fm, eq. 7 (the authors' feature_loss multiplies by it inside)


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
    - check_config(h, source): `ConfigError` for a config key the recipe cannot train
    """

    build_models: Callable
    build_optimizers: Callable
    build_schedulers: Callable
    train_step: Callable
    checkpoint_layout: tuple
    synthesize: Callable
    stdout_terms: tuple
    check_config: Callable


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
# The GAN recipe: HiFi-GAN, its Table 2 ablations, MelGAN and MelGAN with MPD
# ---------------------------------------------------------------------------------------------


def hifigan_feature_loss(fmap_r, fmap_g) -> torch.Tensor:
    """HiFi-GAN's feature matching over one discriminator's maps, without its weight (the
    authors' `feature_loss` holds lambda_fm = 2; dividing by 2 is exact in floating point)."""
    return feature_loss(fmap_r, fmap_g) / 2


# msd_variant -> (the multi-scale discriminator, its feature-matching loss without lambda_fm)
MSD_VARIANTS = {
    "hifigan": (MultiScaleDiscriminator.from_config, hifigan_feature_loss),
    "melgan": (MelGANDiscriminator, melgan_feature_loss),
}
OPTIMIZERS = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}  # the config's `optimizer`
DISCRIMINATORS = ("mpd", "msd")  # model names, in the order the step runs them


# The GAN recipe's optional config keys; absent, they give HiFi-GAN as the paper trains it.
RECIPE_DEFAULTS = {
    "use_mpd": True,
    "use_msd": True,
    "msd_variant": "hifigan",
    "adversarial_loss": "lsgan",
    "lambda_mel": MEL_LOSS_WEIGHT,
    "lambda_fm": FEATURE_LOSS_WEIGHT,
    "optimizer": "adamw",
}
RECIPE_CHOICES = {"msd_variant": MSD_VARIANTS, "adversarial_loss": ADVERSARIAL_LOSSES, "optimizer": OPTIMIZERS}


def recipe(h) -> dict:
    """The GAN recipe's keys of `h`, defaults filled in (`RECIPE_DEFAULTS`)."""
    return {key: h.get(key, default) for key, default in RECIPE_DEFAULTS.items()}


def check_recipe(h, source: str) -> None:
    """`ConfigError` (one line: file, key, fix) for a recipe key the GAN recipe cannot train."""
    r = recipe(h)
    for key in ("use_mpd", "use_msd"):
        if not isinstance(r[key], bool):
            raise ConfigError(f"{source}: {key} must be true or false, got {r[key]!r}")
    if not (r["use_mpd"] or r["use_msd"]):
        raise ConfigError(f"{source}: use_mpd and use_msd are both false; a GAN needs at least one discriminator")
    for key, allowed in RECIPE_CHOICES.items():
        if not isinstance(r[key], str) or r[key] not in allowed:
            raise ConfigError(f"{source}: {key} is {r[key]!r}; use one of {', '.join(allowed)}")
    for key in ("lambda_mel", "lambda_fm"):
        value = r[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ConfigError(f"{source}: {key} must be a number >= 0 (0 removes the term), got {value!r}")


def build_gan(h, device: torch.device) -> dict:
    """The generator of `model_family` and the discriminators the config asks for: the MPD
    (`use_mpd`; `mpd_periods`, `mpd_channels`) and the multi-scale one (`use_msd`, `msd_variant`;
    `msd_channels`). Absent keys: HiFi-GAN's generator, MPD and MSD at the paper's sizes."""
    r = recipe(h)
    models = {"generator": build_generator(h)}
    if r["use_mpd"]:
        models["mpd"] = MultiPeriodDiscriminator.from_config(h)
    if r["use_msd"]:
        models["msd"] = MSD_VARIANTS[r["msd_variant"]][0](h)
    return {name: m.to(device) for name, m in models.items()}


def gan_optimizers(models: dict, h) -> dict:
    """One optimizer (`optimizer`: AdamW as the paper, or Adam as MelGAN) for the generator and one
    for all discriminators (MSD parameters first, the authors' order)."""
    make = OPTIMIZERS[recipe(h)["optimizer"]]
    betas = [h.adam_b1, h.adam_b2]
    params_d = itertools.chain(*(models[k].parameters() for k in ("msd", "mpd") if k in models))
    return {
        "optim_g": make(models["generator"].parameters(), h.learning_rate, betas=betas),
        "optim_d": make(params_d, h.learning_rate, betas=betas),
    }


def gan_step(models: dict, optimizers: dict, batch, h, ctx: StepContext) -> tuple[dict, dict]:
    """One paper-order step on a batch (mel (B, M, F), audio (B, T), names, loss mel (B, M, F)):
    the discriminator step (MPD, MSD on the detached output), then the generator step (mel L1,
    feature matching, adversarial). Returns (loss terms, updates) as `Family.train_step`; a
    discriminator the config leaves out has no terms, lambda_mel 0 no `mel_loss`."""
    r = recipe(h)
    d_loss, g_loss = ADVERSARIAL_LOSSES[r["adversarial_loss"]]
    fm_loss = {"mpd": hifigan_feature_loss, "msd": MSD_VARIANTS[r["msd_variant"]][1]}
    present = [k for k in DISCRIMINATORS if k in models]
    x, y, _, y_mel = batch
    x = x.to(ctx.device, non_blocking=True)
    y = y.to(ctx.device, non_blocking=True).unsqueeze(1)  # (B, T) -> (B, 1, T)
    y_mel = y_mel.to(ctx.device, non_blocking=True)
    with autocast(ctx.device, ctx.amp_dtype):
        y_g_hat = ctx.run["generator"](x)
    y_g_hat_mel = mel_from_config(y_g_hat.squeeze(1), h, fmax_for_loss=True)  # fp32 always

    # Discriminator step: MPD and MSD on the detached generator output
    optimizers["optim_d"].zero_grad(set_to_none=True)
    disc = {}
    with autocast(ctx.device, ctx.amp_dtype):
        for k in present:
            y_d_r, y_d_g, _, _ = ctx.run[k](y, y_g_hat.detach())
            disc[k], _, _ = d_loss(y_d_r, y_d_g)
        loss_disc_all = sum(disc[k] for k in reversed(present))  # MSD + MPD, the authors' sum
    params_d = [p for k in reversed(present) for p in models[k].parameters()]
    d_update = optimizer_step(loss_disc_all, optimizers["optim_d"], params_d, ctx.scaler)

    # Generator step: mel L1, feature matching, adversarial
    optimizers["optim_g"].zero_grad(set_to_none=True)
    mel_error = F.l1_loss(y_mel, y_g_hat_mel)
    terms = {}
    with autocast(ctx.device, ctx.amp_dtype), frozen(*(models[k] for k in present)):
        outputs = {k: ctx.frozen_run[k](y, y_g_hat) for k in present}  # (_, fake scores, fmaps r, g)
        for k in present:  # the authors' order of the terms: feature matching first
            terms[f"fm_loss_{k}"] = fm_loss[k](outputs[k][2], outputs[k][3]) * r["lambda_fm"]
        for k in present:
            terms[f"gen_loss_{k}"] = g_loss(outputs[k][1])[0]
    order = [f"{term}_{k}" for term in ("gen_loss", "fm_loss") for k in reversed(present)]
    loss_gen_all = sum(terms[name] for name in order)  # the authors' order: gen s, f, fm s, f, mel
    if r["lambda_mel"]:
        terms["mel_loss"] = mel_error * r["lambda_mel"]
        loss_gen_all = loss_gen_all + terms["mel_loss"]
    g_update = optimizer_step(loss_gen_all, optimizers["optim_g"], list(models["generator"].parameters()), ctx.scaler)

    terms = {"gen_loss_total": loss_gen_all, "mel_spec_error": mel_error, "disc_loss_total": loss_disc_all, **terms}
    return {k: v.detach() for k, v in terms.items()}, {"discriminator": d_update, "generator": g_update}


# HiFi-GAN's Table 2 rows and MelGAN (with or without MPD) are this recipe with other config keys.
GAN = Family(
    build_models=build_gan,
    build_optimizers=gan_optimizers,
    build_schedulers=exponential_schedulers,
    train_step=gan_step,
    checkpoint_layout=(("g_", ("generator",)), ("do_", ("mpd", "msd", "optim_g", "optim_d"))),
    synthesize=lambda models: models["generator"],
    stdout_terms=(("Gen Loss Total", "gen_loss_total"), ("Mel-Spec. Error", "mel_spec_error")),
    check_config=check_recipe,
)
