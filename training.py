"""Training recipes: what one system contributes to the shared loop of train.py.

A recipe is a `Family` of plain functions: its models, optimizers and schedulers, one
`train_step`, its checkpoint layout, the module that synthesizes for validation and the terms of
its stdout line. train.py owns everything else (DDP, AMP, resume, atomic checkpoints, signals,
data checks, TensorBoard) and picks the recipe by the config key `model_family` (default
"hifigan"). A new system adds its own file, its config and one line in `FAMILIES` (the end of this
file).

`GAN` is the paper's recipe (section 2.4): AdamW, ExponentialLR per epoch, a discriminator step
(MPD + MSD) then a generator step (adversarial + 2 x feature matching + 45 x mel L1). Optional
config keys turn it into each row of the paper's Table 2 and into MelGAN's recipe, and add what
later trainers have (gradient clipping, EMA weights, a per-step decay); see `recipe`.
`WAVEGLOW` (maximum likelihood of dequantised audio, NVIDIA/waveglow's recipe) and `WAVENET`
(teacher-forced mixture-of-logistics likelihood, a per-step schedule and EMA weights, as
r9y9/wavenet_vocoder) are the likelihood baselines of Table 1.
"""

import contextlib
import itertools
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F

from baselines.melgan import ADVERSARIAL_LOSSES, MelGANDiscriminator, melgan_feature_loss
from baselines.waveglow import (
    DEQUANTIZE_LSB,
    TRAIN_SIGMA,
    WaveGlow,
    WaveGlowVocoder,
    dequantize,
    validate_waveglow_config,
    waveglow_loss_terms,
)
from baselines.wavenet import WaveNet, WaveNetVocoder, wavenet_loss, wavenet_params
from meldataset import mel_from_config
from models import (
    MultiPeriodDiscriminator,
    MultiScaleDiscriminator,
    feature_loss,
)
from synthesis import build_generator
from utils import EMA_PREFIX, ConfigError

MEL_LOSS_WEIGHT = 45  # lambda_mel, eq. 7
FEATURE_LOSS_WEIGHT = 2  # lambda_fm, eq. 7 (the authors' feature_loss multiplies by it inside)
WAVENET_VALIDATION_FRAMES = 16  # WaveNet validates on each clip's first 16 frames (0.19 s at hop 256)


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
    - build_schedulers(optimizers, h, last_epoch, steps) -> `Schedules`: learning-rate schedulers
      stepped after every epoch and after every step, resumed at `last_epoch` (-1: a fresh run) and
      `steps` (the next step to run)
    - train_step(models, optimizers, batch, h, ctx) -> (terms, updates): loss terms and other
      scalars by TensorBoard name (0-d tensors), and {update name: `Update`} from `optimizer_step`
    - checkpoint_layout: (`CheckpointFile`, ...), one per file; the first file holds the weights
      synthesis loads, the last also `steps`, `epoch` and the resume state; files are written last
      to first, and a checkpoint is complete when all its files are there
    - synthesize(models, h) -> the module that maps a mel (B, M, F) to audio (B, 1, T) (validation)
    - stdout_terms: ((label, term name), ...) of the stdout line
    - check_config(h, source): `ConfigError` for a config key the recipe cannot train
    - unused_parameters: some trained parameters get no gradient in a step (DDP must look for them)
    - synthesize_ema(models, h) -> the same from the EMA weights, or None when the run keeps none
      (validation then also reports `validation/mel_spec_error_ema`)
    """

    build_models: Callable
    build_optimizers: Callable
    build_schedulers: Callable
    train_step: Callable
    checkpoint_layout: tuple
    synthesize: Callable
    stdout_terms: tuple
    check_config: Callable
    unused_parameters: bool = False
    synthesize_ema: Callable = lambda models, h: None


class CheckpointFile(NamedTuple):
    """One file `<prefix>XXXXXXXX` of a checkpoint.

    `entries`: the model and optimizer names it holds, each saved under its own name, or {key in
    the file: name} (HiFi-GAN's EMA generator is saved as "generator", so that its file is a g_
    file). A file holding none of a run's objects is neither written nor read by it (a run without
    `ema_decay` has no `ema_` files), but it is pruned with the others. `start_from`: the prefix
    of the file whose same keys stand in when this one is absent (turning EMA on in a run, or for
    the authors' pretrained pair, starts the average at the generator).
    """

    prefix: str
    entries: tuple | dict
    start_from: str | None = None

    def keys(self) -> dict:
        """{key in the file: model or optimizer name}."""
        return dict(self.entries) if isinstance(self.entries, dict) else {name: name for name in self.entries}


class Update(NamedTuple):
    """What `optimizer_step` did: `stepped`, the update was applied; `counted`, it was skipped for
    a real numerical problem (not an fp16 GradScaler overflow); `grad_norm`, the total gradient
    norm before clipping (a 0-d tensor on the device: reading it is the logger's one host sync)."""

    stepped: bool
    counted: bool
    grad_norm: torch.Tensor


class Schedules(NamedTuple):
    """Learning-rate schedulers of a recipe: stepped after every epoch, and after every step."""

    per_epoch: list
    per_step: list


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Mixed-precision context for the networks (a no-op for fp32)."""
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def optimizer_step(loss: torch.Tensor, optimizer, params, scaler, clip: float | None = None) -> Update:
    """Backward, then step unless the gradients are non-finite; with `clip`, the gradients are
    first scaled down to a total norm of at most `clip` (as `clip_grad_norm_`, from the norm the
    guard computed: no second norm, no extra host sync)."""
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    params = [p for p in params if p.grad is not None]
    grads = [p.grad for p in params]
    norm = torch.nn.utils.get_total_norm(grads, foreach=True) if grads else loss.detach().float()
    finite = bool(torch.isfinite(norm))  # the one host sync of this optimizer step
    if finite:
        if clip is not None:
            torch.nn.utils.clip_grads_with_norm_(params, clip, norm, foreach=True)
        scaler.step(optimizer)
    scaler.update()
    counted = not finite and (not scaler.is_enabled() or not bool(torch.isfinite(loss.detach())))
    return Update(finite, counted, norm.detach())


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


def _with_initial_lr(optimizers: dict, h) -> list:
    """The optimizers, each group's `initial_lr` set (checkpoints are saved before any scheduler
    existed, so a resumed optimizer lacks it)."""
    for opt in optimizers.values():
        for group in opt.param_groups:
            group.setdefault("initial_lr", h.learning_rate)
    return list(optimizers.values())


def exponential_schedulers(optimizers: dict, h, last_epoch: int, steps: int) -> Schedules:
    """The paper's ExponentialLR(lr_decay) per optimizer after every epoch, resumed at
    `last_epoch` (-1: a fresh run)."""
    per_epoch = [
        torch.optim.lr_scheduler.ExponentialLR(o, gamma=h.lr_decay, last_epoch=last_epoch)
        for o in _with_initial_lr(optimizers, h)
    ]
    return Schedules(per_epoch, [])


SHORT_EPOCH_STEPS = 100  # a per-epoch decay over epochs shorter than this warns (Coqui #1003: 7e-111)
WARNING_HORIZON_STEPS = 100_000  # ... with the learning rate it reaches after this many steps
PAPER_STEP_DECAY = 0.999 ** (1 / 809)  # the paper's 0.999 per LJSpeech epoch (12950 clips / 16) per step


def short_epoch_warning(schedules: Schedules, steps_per_epoch: int) -> str | None:
    """The one-line warning for an exponential decay after every epoch when an epoch has fewer
    than SHORT_EPOCH_STEPS steps (a small data set decays the learning rate to nothing), with the
    learning rate it reaches after WARNING_HORIZON_STEPS steps; None otherwise."""
    decaying = [s for s in schedules.per_epoch if getattr(s, "gamma", 1.0) < 1.0]
    if not decaying or steps_per_epoch >= SHORT_EPOCH_STEPS:
        return None
    gamma, lr = decaying[0].gamma, decaying[0].base_lrs[0]
    reached = lr * gamma ** (WARNING_HORIZON_STEPS / max(1, steps_per_epoch))
    return (
        f"WARNING: an epoch is {steps_per_epoch} step{'s' * (steps_per_epoch != 1)} and lr_decay {gamma:g} applies after every epoch: after "
        f"{WARNING_HORIZON_STEPS // 1000}k steps the learning rate will be {reached:.3g} (from {lr:g}); to decay per "
        f'step instead set "lr_decay_every": "step" with e.g. "lr_decay": {PAPER_STEP_DECAY:.7f} (the paper\'s '
        "0.999 per epoch of LJSpeech)"
    )


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


LR_DECAY_EVERY = ("epoch", "step")  # the config's `lr_decay_every`: when ExponentialLR(lr_decay) steps
UPDATES = ("generator", "discriminator")  # the GAN's optimizer updates (`grad_clip` may name them)


# The GAN recipe's optional config keys; absent, they give HiFi-GAN as the paper trains it.
RECIPE_DEFAULTS = {
    "use_mpd": True,
    "use_msd": True,
    "msd_variant": "hifigan",
    "adversarial_loss": "lsgan",
    "lambda_mel": MEL_LOSS_WEIGHT,
    "lambda_fm": FEATURE_LOSS_WEIGHT,
    "optimizer": "adamw",
    "lr_decay_every": "epoch",
    "grad_clip": None,  # max total gradient norm: a number for both updates, or {update: number}
    "ema_decay": None,  # keep an exponential moving average of the generator weights
}
RECIPE_CHOICES = {
    "msd_variant": MSD_VARIANTS,
    "adversarial_loss": ADVERSARIAL_LOSSES,
    "optimizer": OPTIMIZERS,
    "lr_decay_every": LR_DECAY_EVERY,
}


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
        if not is_number(value) or not value >= 0:
            raise ConfigError(f"{source}: {key} must be a number >= 0 (0 removes the term), got {value!r}")
    clip = r["grad_clip"]
    limits = clip.values() if isinstance(clip, dict) else [] if clip is None else [clip]
    if (isinstance(clip, dict) and not set(clip) <= set(UPDATES)) or not all(is_number(v) and v > 0 for v in limits):
        raise ConfigError(
            f"{source}: grad_clip {clip!r} must be a number > 0 (the largest total gradient norm of each update), "
            'a dict such as {"generator": 1000, "discriminator": 1000}, or null (no clipping)'
        )
    check_ema_decay(h, source)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_ema_decay(h, source: str) -> None:
    decay = h.get("ema_decay")
    if decay is not None and not (is_number(decay) and 0 <= decay < 1):
        raise ConfigError(f"{source}: ema_decay {decay!r} must be in [0, 1) (e.g. 0.999) or null (no EMA)")


def grad_clip(h, update: str) -> float | None:
    """The config's `grad_clip` for one update ("generator" or "discriminator"); None: no clipping."""
    clip = recipe(h)["grad_clip"]
    return clip.get(update) if isinstance(clip, dict) else clip


def ema_copy(model: torch.nn.Module, build: Callable) -> torch.nn.Module:
    """A frozen copy of `model` (built by `build()`, then loaded: weight norm forbids deepcopy) to
    hold its exponential moving average; its own init leaves the training RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        average = build()
    average.load_state_dict(model.state_dict())
    return average.to(next(model.parameters()).device).requires_grad_(False)


@torch.no_grad()
def ema_update(average: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """average = decay * average + (1 - decay) * model, parameter by parameter (r9y9's EMA)."""
    torch._foreach_lerp_(list(average.parameters()), list(model.parameters()), 1 - decay)


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
    models = {name: m.to(device) for name, m in models.items()}
    if r["ema_decay"] is not None:  # built last: the other modules' seeded init is the paper's
        models["generator_ema"] = ema_copy(models["generator"], lambda: build_generator(h))
    return models


def gan_schedulers(optimizers: dict, h, last_epoch: int, steps: int) -> Schedules:
    """ExponentialLR(lr_decay) after every epoch (the paper) or, with `lr_decay_every` "step",
    after every step (lr x lr_decay^steps), resumed where the checkpoint left off."""
    if recipe(h)["lr_decay_every"] == "epoch":
        return exponential_schedulers(optimizers, h, last_epoch, steps)
    per_step = [
        torch.optim.lr_scheduler.ExponentialLR(o, gamma=h.lr_decay, last_epoch=steps - 1)
        for o in _with_initial_lr(optimizers, h)
    ]
    return Schedules([], per_step)


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
    disc, scores = {}, {}
    with autocast(ctx.device, ctx.amp_dtype):
        for k in present:
            y_d_r, y_d_g, _, _ = ctx.run[k](y, y_g_hat.detach())
            disc[k], _, _ = d_loss(y_d_r, y_d_g)
            scores[f"d_real_{k}"], scores[f"d_fake_{k}"] = mean_score(y_d_r), mean_score(y_d_g)
        loss_disc_all = sum(disc[k] for k in reversed(present))  # MSD + MPD, the authors' sum
    params_d = [p for k in reversed(present) for p in models[k].parameters()]
    d_update = optimizer_step(loss_disc_all, optimizers["optim_d"], params_d, ctx.scaler, grad_clip(h, "discriminator"))

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
    params_g = list(models["generator"].parameters())
    g_update = optimizer_step(loss_gen_all, optimizers["optim_g"], params_g, ctx.scaler, grad_clip(h, "generator"))
    if g_update.stepped and "generator_ema" in models:
        ema_update(models["generator_ema"], models["generator"], h.ema_decay)

    terms = {"gen_loss_total": loss_gen_all, "mel_spec_error": mel_error, "disc_loss_total": loss_disc_all, **terms}
    terms = {k: v.detach() for k, v in {**terms, **scores}.items()}
    return terms, {"discriminator": d_update, "generator": g_update}


def mean_score(outputs: list) -> torch.Tensor:
    """The mean of one discriminator's outputs over its sub-discriminators (fp32, detached): near 1
    on real and 0 on generated audio when D wins (LSGAN targets)."""
    return torch.stack([o.detach().float().mean() for o in outputs]).mean()


# HiFi-GAN's Table 2 rows and MelGAN (with or without MPD) are this recipe with other config keys.
GAN = Family(
    build_models=build_gan,
    build_optimizers=gan_optimizers,
    build_schedulers=gan_schedulers,
    train_step=gan_step,
    checkpoint_layout=(
        CheckpointFile("g_", ("generator",)),
        CheckpointFile(EMA_PREFIX, {"generator": "generator_ema"}, start_from="g_"),  # an authors' g_ file too
        CheckpointFile("do_", ("mpd", "msd", "optim_g", "optim_d")),
    ),
    synthesize=lambda models, h: models["generator"],
    synthesize_ema=lambda models, h: models.get("generator_ema"),
    stdout_terms=(("Gen Loss Total", "gen_loss_total"), ("Mel-Spec. Error", "mel_spec_error")),
    check_config=check_recipe,
)


# ---------------------------------------------------------------------------------------------
# Likelihood recipes: WaveGlow (a flow) and WaveNet (autoregressive), one optimizer each
# ---------------------------------------------------------------------------------------------


def adam(models: dict, h) -> dict:
    """Adam (their optimizer: NVIDIA/waveglow and r9y9/wavenet_vocoder) over the first model."""
    params = next(iter(models.values())).parameters()
    betas = (h.get("adam_b1", 0.9), h.get("adam_b2", 0.999))
    return {"optimizer": torch.optim.Adam(params, h.learning_rate, betas=betas, eps=h.get("adam_eps", 1e-8))}


def waveglow_step(models: dict, optimizers: dict, batch, h, ctx: StepContext) -> tuple[dict, dict]:
    """One maximum-likelihood step on (mel (B, M, F), audio (B, T), names, _): the audio is
    dequantised (one 16-bit step of uniform noise, so silence has a finite likelihood), run through
    the flows, and the negative log-likelihood per sample (fp32) minimised."""
    x, y, _, _ = batch
    mel = x.to(ctx.device, non_blocking=True)
    audio = dequantize(y.to(ctx.device, non_blocking=True), h.get("dequantize_lsb", DEQUANTIZE_LSB))
    optimizers["optimizer"].zero_grad(set_to_none=True)
    with autocast(ctx.device, ctx.amp_dtype):
        z, log_s, log_det = ctx.run["waveglow"](mel, audio)
    prior, log_s_term, log_det_term = waveglow_loss_terms(z, log_s, log_det, h.get("sigma", TRAIN_SIGMA))
    loss = prior + log_s_term + log_det_term
    update = optimizer_step(loss, optimizers["optimizer"], list(models["waveglow"].parameters()), ctx.scaler)
    terms = {"loss": loss, "prior": prior, "log_s": log_s_term, "log_det": log_det_term}
    return {k: v.detach() for k, v in terms.items()}, {"waveglow": update}


def waveglow_synthesizer(models: dict, h) -> torch.nn.Module:
    """Validation audio at the synthesis sigma (`infer_sigma`), each clip's noise seeded with the
    config's seed (the training RNG is not touched)."""
    return WaveGlowVocoder.from_config(models["waveglow"], h, seed=h.seed)


# NVIDIA/waveglow's recipe: Adam, constant learning rate (lr_decay 1.0 in its config).
WAVEGLOW = Family(
    build_models=lambda h, device: {"waveglow": WaveGlow(h).to(device)},
    build_optimizers=adam,
    build_schedulers=exponential_schedulers,
    train_step=waveglow_step,
    checkpoint_layout=(CheckpointFile("waveglow_", ("waveglow",)), CheckpointFile("waveglow_state_", ("optimizer",))),
    synthesize=waveglow_synthesizer,
    stdout_terms=(("Loss", "loss"),),
    check_config=validate_waveglow_config,
)


LR_SCHEDULES = {  # r9y9/wavenet_vocoder lrschedule.py: the config's lr_schedule -> lr factor at a step
    "noam_learning_rate_decay": lambda step, warmup_steps=4000: (
        warmup_steps**0.5 * min((step + 1) * warmup_steps**-1.5, (step + 1) ** -0.5)
    ),
    "step_learning_rate_decay": lambda step, anneal_rate=0.5, anneal_interval=200000: (
        anneal_rate ** (step // anneal_interval)
    ),
    None: lambda step, **unused: 1.0,  # constant (lr_schedule_kwargs ignored)
}


def per_step_schedulers(optimizers: dict, h, last_epoch: int, steps: int) -> Schedules:
    """The config's `lr_schedule` (with `lr_schedule_kwargs`) after every step, resumed at `steps`."""
    factor, kwargs = LR_SCHEDULES[h.get("lr_schedule")], h.get("lr_schedule_kwargs") or {}
    per_step = [
        torch.optim.lr_scheduler.LambdaLR(o, lambda step: factor(step, **kwargs), last_epoch=steps - 1)
        for o in _with_initial_lr(optimizers, h)
    ]
    return Schedules([], per_step)


def build_wavenet(h, device: torch.device) -> dict:
    """The WaveNet and, with `ema_decay`, its exponential moving average (never trained itself)."""
    models = {"wavenet": WaveNet(h).to(device)}
    if h.get("ema_decay") is not None:
        models["wavenet_ema"] = ema_copy(models["wavenet"], lambda: WaveNet(h))
    return models


def wavenet_check(h, source: str) -> None:
    try:
        wavenet_params(h)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    if h.get("lr_schedule") not in LR_SCHEDULES:
        names = ", ".join(k for k in LR_SCHEDULES if k)
        raise ConfigError(f"{source}: lr_schedule {h.get('lr_schedule')!r}; use one of {names} or null")
    check_ema_decay(h, source)


def wavenet_step(models: dict, optimizers: dict, batch, h, ctx: StepContext) -> tuple[dict, dict]:
    """One teacher-forced step on (mel (B, M, F), audio (B, T), names, _): the mixture parameters
    at every sample, the discretised-MoL negative log-likelihood of the next sample (fp32), then
    the EMA of the weights."""
    x, y, _, _ = batch
    mel = x.to(ctx.device, non_blocking=True)
    audio = y.to(ctx.device, non_blocking=True).unsqueeze(1)  # (B, T) -> (B, 1, T)
    optimizers["optimizer"].zero_grad(set_to_none=True)
    with autocast(ctx.device, ctx.amp_dtype):
        params = ctx.run["wavenet"](audio, mel)
    loss = wavenet_loss(params.float(), audio, None, **models["wavenet"].mol_kwargs())
    update = optimizer_step(loss, optimizers["optimizer"], list(models["wavenet"].parameters()), ctx.scaler)
    if update[0] and "wavenet_ema" in models:
        ema_update(models["wavenet_ema"], models["wavenet"], h.ema_decay)
    return {"loss": loss.detach()}, {"wavenet": update}


def wavenet_synthesizer(models: dict, h) -> torch.nn.Module:
    """Validation audio from the EMA weights (when kept), seeded; only `validation_frames` frames
    of each clip (default 16), since generation is sample by sample."""
    model = models.get("wavenet_ema", models["wavenet"])
    return WaveNetVocoder(model, seed=h.seed, max_frames=h.get("validation_frames", WAVENET_VALIDATION_FRAMES))


# r9y9/wavenet_vocoder's recipe: Adam with a per-step schedule, EMA weights for synthesis.
WAVENET = Family(
    build_models=build_wavenet,
    build_optimizers=adam,
    build_schedulers=per_step_schedulers,
    train_step=wavenet_step,
    checkpoint_layout=(
        CheckpointFile("wavenet_", ("wavenet", "wavenet_ema")),
        CheckpointFile("wavenet_state_", ("optimizer",)),
    ),
    synthesize=wavenet_synthesizer,
    stdout_terms=(("Loss", "loss"),),
    check_config=wavenet_check,
    # NOTE: the last layer's residual 1x1 feeds nothing (r9y9's structure, kept for its keys)
    unused_parameters=True,
)


# model_family -> its training recipe; one line per system. MelGAN and HiFi-GAN share the GAN
# recipe: their config keys choose the generator, discriminators, losses and optimizer.
FAMILIES = {"hifigan": GAN, "melgan": GAN, "waveglow": WAVEGLOW, "wavenet": WAVENET}
