"""training.py: the GAN recipe. Its defaults are the authors' HiFi-GAN step exactly; each Table 2
switch and MelGAN's keys change exactly the modules and loss terms they name."""

import json
import os
import re

import pytest
import torch
import torch.nn.functional as F
from conftest import REPO, TINY_DISCRIMINATORS, TINY_MELGAN, baseline_config, tiny_config

import training
from baselines.melgan import (
    MelGANDiscriminator,
    MelGANGenerator,
    hinge_discriminator_loss,
    hinge_generator_loss,
    melgan_feature_loss,
)
from env import AttrDict
from meldataset import mel_from_config
from models import Generator, MultiPeriodDiscriminator, discriminator_loss, feature_loss, generator_loss

ABLATIONS = os.path.join(REPO, "configs", "ablations")
SEGMENT = 4096


def batch(h, seed: int = 0):
    """(mel, audio (B, T), names, loss mel) of B random-noise-and-tone crops."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(SEGMENT) / h.sampling_rate
    y = 0.3 * torch.sin(2 * torch.pi * 220 * t) + 0.05 * torch.randn(h.batch_size, SEGMENT, generator=g)
    return mel_from_config(y, h), y, None, mel_from_config(y, h, fmax_for_loss=True)


def context(models) -> training.StepContext:
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    return training.StepContext(torch.device("cpu"), None, scaler, models, models)


def build(h, seed: int = 0):
    torch.manual_seed(seed)
    models = training.GAN.build_models(h, torch.device("cpu"))
    return models, training.GAN.build_optimizers(models, h)


def authors_step(generator, mpd, msd, optim_g, optim_d, batch) -> tuple[float, float]:
    """The body of the authors' training loop (their train.py), written out as the oracle."""
    x, y, _, y_mel = batch
    y = y.unsqueeze(1)
    y_g_hat = generator(x)
    y_g_hat_mel = mel_from_config(y_g_hat.squeeze(1), generator.h, fmax_for_loss=True)
    optim_d.zero_grad()
    y_df_hat_r, y_df_hat_g, _, _ = mpd(y, y_g_hat.detach())
    loss_disc_f, _, _ = discriminator_loss(y_df_hat_r, y_df_hat_g)
    y_ds_hat_r, y_ds_hat_g, _, _ = msd(y, y_g_hat.detach())
    loss_disc_s, _, _ = discriminator_loss(y_ds_hat_r, y_ds_hat_g)
    loss_disc_all = loss_disc_s + loss_disc_f
    loss_disc_all.backward()
    optim_d.step()
    optim_g.zero_grad()
    loss_mel = F.l1_loss(y_mel, y_g_hat_mel) * 45
    y_df_hat_r, y_df_hat_g, fmap_f_r, fmap_f_g = mpd(y, y_g_hat)
    y_ds_hat_r, y_ds_hat_g, fmap_s_r, fmap_s_g = msd(y, y_g_hat)
    loss_fm_f = feature_loss(fmap_f_r, fmap_f_g)
    loss_fm_s = feature_loss(fmap_s_r, fmap_s_g)
    loss_gen_f, _ = generator_loss(y_df_hat_g)
    loss_gen_s, _ = generator_loss(y_ds_hat_g)
    loss_gen_all = loss_gen_s + loss_gen_f + loss_fm_s + loss_fm_f + loss_mel
    loss_gen_all.backward()
    optim_g.step()
    return loss_gen_all.item(), loss_disc_all.item()


@pytest.mark.parametrize("version", ["v1", "v3"])
def test_default_recipe_is_the_authors_step_for_step(version, one_thread):
    h = tiny_config(version)
    ours, our_opts = build(h)
    theirs, their_opts = build(h)
    theirs["generator"].h = h
    for step in range(3):
        b = batch(h, seed=step)
        terms, updates = training.GAN.train_step(ours, our_opts, b, h, context(ours))
        gen, disc = authors_step(*theirs.values(), *their_opts.values(), b)
        assert (terms["gen_loss_total"].item(), terms["disc_loss_total"].item()) == (gen, disc)
        assert {k: (u.stepped, u.counted) for k, u in updates.items()} == {
            "discriminator": (True, False),
            "generator": (True, False),
        }
    for name in ours:
        torch.testing.assert_close(ours[name].state_dict(), theirs[name].state_dict(), rtol=0, atol=0)
    expected = {"gen_loss_total", "mel_spec_error", "disc_loss_total", "mel_loss"}
    expected |= {f"{t}_{k}" for t in ("gen_loss", "fm_loss", "d_real", "d_fake") for k in ("mpd", "msd")}
    assert set(terms) == expected


def ablation(name: str, **overrides) -> AttrDict:
    """configs/ablations/config_v3_<name>.json with the tiny test sizes."""
    with open(os.path.join(ABLATIONS, f"config_v3_{name}.json")) as f:
        h = json.load(f)
    small = tiny_config("v3", **overrides)
    keep = {k: h[k] for k in h if k not in small or k in ("resblock_kernel_sizes", "resblock_dilation_sizes")}
    return AttrDict({**small, **keep, **overrides})


def parameters(module) -> set:
    return {id(p) for p in module.parameters()}


@pytest.mark.parametrize("name,absent", [("no_mpd", "mpd"), ("no_msd", "msd")])
def test_without_a_discriminator_it_has_no_parameters_and_no_terms(name, absent, one_thread):
    h = ablation(name)
    models, opts = build(h)
    present = ({"mpd", "msd"} - {absent}).pop()
    assert set(models) == {"generator", present}
    d_params = {id(p) for g in opts["optim_d"].param_groups for p in g["params"]}
    assert d_params == parameters(models[present])
    terms, _ = training.GAN.train_step(models, opts, batch(h), h, context(models))
    assert set(terms) == {"gen_loss_total", "mel_spec_error", "disc_loss_total", "mel_loss"} | {
        f"{t}_{present}" for t in ("gen_loss", "fm_loss", "d_real", "d_fake")
    }
    total = terms[f"gen_loss_{present}"] + terms[f"fm_loss_{present}"] + terms["mel_loss"]
    assert terms["gen_loss_total"].item() == total.item()


def test_without_mel_loss_the_objective_has_no_mel_term(one_thread):
    h = ablation("no_mel_loss")
    assert h.lambda_mel == 0
    models, opts = build(h)
    terms, _ = training.GAN.train_step(models, opts, batch(h), h, context(models))
    assert "mel_loss" not in terms and terms["mel_spec_error"].item() > 0  # still measured
    parts = ("gen_loss_msd", "gen_loss_mpd", "fm_loss_msd", "fm_loss_mpd")
    assert terms["gen_loss_total"].item() == sum(terms[k] for k in parts).item()


def test_other_mpd_periods_and_no_mrf_change_only_their_modules():
    periods = ablation("mpd_2_4_8_16_32")
    models, _ = build(periods)
    assert [d.period for d in models["mpd"].discriminators] == [2, 4, 8, 16, 32]
    default, _ = build(tiny_config("v3"))
    assert [d.period for d in default["mpd"].discriminators] == [2, 3, 5, 7, 11]
    no_mrf = ablation("no_mrf")
    g = Generator(no_mrf)
    assert (no_mrf.resblock_kernel_sizes, no_mrf.resblock_dilation_sizes) == ([3], [[1, 2]])
    assert len(g.resblocks) == len(no_mrf.upsample_rates)  # one residual block per stage
    with_mrf = Generator(tiny_config("v3"))
    assert len(with_mrf.resblocks) == 2 * len(no_mrf.upsample_rates)


def test_lambda_fm_scales_only_the_feature_matching_terms(one_thread):
    h = tiny_config("v1")
    twice = AttrDict({**h, "lambda_fm": 4})
    terms = {}
    for name, config in (("default", h), ("twice", twice)):
        models, opts = build(config)
        terms[name], _ = training.GAN.train_step(models, opts, batch(h), config, context(models))
    for k in ("mpd", "msd"):
        assert terms["twice"][f"fm_loss_{k}"].item() == 2 * terms["default"][f"fm_loss_{k}"].item()
        assert terms["twice"][f"gen_loss_{k}"].item() == terms["default"][f"gen_loss_{k}"].item()
    assert terms["twice"]["disc_loss_total"].item() == terms["default"]["disc_loss_total"].item()


@pytest.mark.parametrize("name", ["melgan", "melgan_mpd"])
def test_melgan_recipe_modules_losses_and_optimizer(name, one_thread):
    h = baseline_config(name, **TINY_MELGAN, **TINY_DISCRIMINATORS, batch_size=2)
    models, opts = build(h)
    assert isinstance(models["generator"], MelGANGenerator) and isinstance(models["msd"], MelGANDiscriminator)
    assert ("mpd" in models) == (name == "melgan_mpd")
    if name == "melgan_mpd":
        assert isinstance(models["mpd"], MultiPeriodDiscriminator)
    for opt in opts.values():
        assert type(opt) is torch.optim.Adam
        assert opt.defaults["lr"] == 1e-4 and opt.defaults["betas"] == (0.5, 0.9)
    x, y, _, y_mel = b = batch(h)
    with torch.no_grad():  # the discriminator loss, from the loss itself on the models before the step
        y_hat = models["generator"](x)
        d_expected = hinge_discriminator_loss(*models["msd"](y.unsqueeze(1), y_hat)[:2])[0].item()
    terms, _ = training.GAN.train_step(models, opts, b, h, context(models))
    with torch.no_grad():  # the generator terms: the updated discriminator on the same output
        _, fake, fmap_r, fmap_g = models["msd"](y.unsqueeze(1), y_hat)
        g_expected = hinge_generator_loss(fake)[0].item()
        fm_expected = 10 * melgan_feature_loss(fmap_r, fmap_g).item()
    assert "mel_loss" not in terms and y_hat.shape == (2, 1, SEGMENT)
    if name == "melgan":
        torch.testing.assert_close(terms["disc_loss_total"].item(), d_expected, rtol=1e-6, atol=0)
    torch.testing.assert_close(terms["gen_loss_msd"].item(), g_expected, rtol=1e-5, atol=0)
    torch.testing.assert_close(terms["fm_loss_msd"].item(), fm_expected, rtol=1e-5, atol=0)


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("use_mpd", "yes", "use_mpd must be true or false, got 'yes'"),
        ("msd_variant", "parallel", "msd_variant is 'parallel'; use one of hifigan, melgan"),
        ("adversarial_loss", "wgan", "adversarial_loss is 'wgan'; use one of lsgan, hinge"),
        ("optimizer", "sgd", "optimizer is 'sgd'; use one of adamw, adam"),
        ("lambda_mel", -1, "lambda_mel must be a number >= 0 (0 removes the term), got -1"),
    ],
)
def test_recipe_keys_are_validated(key, value, message):
    from utils import ConfigError

    with pytest.raises(ConfigError, match=f"^c.json: {re.escape(message)}$"):
        training.GAN.check_config(AttrDict({**tiny_config(), key: value}), "c.json")
    with pytest.raises(ConfigError, match="use_mpd and use_msd are both false; a GAN needs at least one"):
        training.GAN.check_config(AttrDict({**tiny_config(), "use_mpd": False, "use_msd": False}), "c.json")


def test_train_py_rejects_a_bad_recipe_key_before_any_work(tmp_path, capsys):
    import train

    config = tmp_path / "c.json"
    config.write_text(json.dumps({**tiny_config(), "msd_variant": ["melgan"]}))
    with pytest.raises(SystemExit) as e:
        train.main(["--config", str(config), "--checkpoint_path", str(tmp_path / "cp")])
    assert e.value.code == 2 and not (tmp_path / "cp").exists()
    assert capsys.readouterr().err.strip() == (
        f"error: {config}: msd_variant is ['melgan']; use one of hifigan, melgan"
    )


# --- the opt-in options of issue #19: clipping, EMA, per-step decay (defaults: the paper) ---


def grads_norm(module) -> float:
    return torch.nn.utils.get_total_norm([p.grad for p in module.parameters() if p.grad is not None]).item()


def d_grads_norm(models) -> float:
    return (grads_norm(models["mpd"]) ** 2 + grads_norm(models["msd"]) ** 2) ** 0.5


def test_grad_clip_bounds_each_updates_total_norm(one_thread):
    """grad_clip scales G's and D's gradients to that total norm (measured on the gradients the
    optimizers applied) and reports the norm before clipping; a dict clips only the updates named."""
    h = tiny_config("v1")
    b = batch(h)
    models, opts = build(h)
    _, free = training.GAN.train_step(models, opts, b, h, context(models))
    torch.testing.assert_close(free["generator"].grad_norm.item(), grads_norm(models["generator"]), rtol=1e-6, atol=0)
    torch.testing.assert_close(free["discriminator"].grad_norm.item(), d_grads_norm(models), rtol=1e-6, atol=0)
    clip = 0.01
    assert min(u.grad_norm.item() for u in free.values()) > 10 * clip  # so that clipping acts on both
    clipped_h = AttrDict({**h, "grad_clip": clip})
    models, opts = build(clipped_h)
    _, clipped = training.GAN.train_step(models, opts, b, clipped_h, context(models))
    assert clipped["discriminator"].grad_norm.item() == free["discriminator"].grad_norm.item()  # before clipping
    torch.testing.assert_close(grads_norm(models["generator"]), clip, rtol=1e-4, atol=0)
    torch.testing.assert_close(d_grads_norm(models), clip, rtol=1e-4, atol=0)
    only_g = AttrDict({**h, "grad_clip": {"generator": clip}})
    models, opts = build(only_g)
    _, updates = training.GAN.train_step(models, opts, b, only_g, context(models))
    assert updates["generator"].grad_norm.item() == free["generator"].grad_norm.item()  # the same D step before
    torch.testing.assert_close(grads_norm(models["generator"]), clip, rtol=1e-4, atol=0)
    torch.testing.assert_close(d_grads_norm(models), free["discriminator"].grad_norm.item(), rtol=1e-6, atol=0)


def test_ema_equals_the_hand_computed_average_after_3_steps(one_thread):
    decay = 0.5
    h = AttrDict({**tiny_config("v1"), "ema_decay": decay})
    models, opts = build(h)
    plain, _ = build(tiny_config("v1"))
    for name in plain:  # the EMA copy is built last: every other module has the paper's seeded init
        torch.testing.assert_close(models[name].state_dict(), plain[name].state_dict(), rtol=0, atol=0)
    assert not any(p.requires_grad for p in models["generator_ema"].parameters())
    weights = [[p.detach().clone() for p in models["generator"].parameters()]]
    for step in range(3):
        training.GAN.train_step(models, opts, batch(h, seed=step), h, context(models))
        weights.append([p.detach().clone() for p in models["generator"].parameters()])
    # EMA_3 = d^3 w0 + d^2 (1-d) w1 + d (1-d) w2 + (1-d) w3
    coefficients = [decay**3, decay**2 * (1 - decay), decay * (1 - decay), 1 - decay]
    for i, average in enumerate(models["generator_ema"].parameters()):
        expected = sum(c * w[i] for c, w in zip(coefficients, weights))
        torch.testing.assert_close(average, expected, rtol=1e-6, atol=1e-8)
    assert not torch.equal(next(models["generator_ema"].parameters()), weights[-1][0])


def test_per_step_decay_gives_lr_times_decay_to_the_steps():
    h = AttrDict({**tiny_config("v1"), "lr_decay_every": "step", "lr_decay": 0.9})
    _, opts = build(h)
    schedules = training.GAN.build_schedulers(opts, h, -1, 0)
    assert schedules.per_epoch == [] and len(schedules.per_step) == 2
    for _ in range(5):
        for opt in opts.values():
            opt.step()  # no gradients: no update (and torch's order of calls)
        for scheduler in schedules.per_step:
            scheduler.step()
    for opt in opts.values():
        assert opt.param_groups[0]["lr"] == pytest.approx(2e-4 * 0.9**5, rel=1e-12)
    default = training.GAN.build_schedulers(build(tiny_config("v1"))[1], tiny_config("v1"), -1, 0)
    assert default.per_step == [] and [s.gamma for s in default.per_epoch] == [0.999, 0.999]


def test_per_epoch_decay_warns_for_a_10_step_epoch_and_not_a_1000_step_one():
    h = tiny_config("v1")
    schedules = training.GAN.build_schedulers(build(h)[1], h, -1, 0)
    warning = training.short_epoch_warning(schedules, 10)
    reached = 2e-4 * 0.999 ** (100_000 / 10)  # 10000 epochs of 10 steps
    assert warning.startswith("WARNING: an epoch is 10 steps and lr_decay 0.999 applies after every epoch: ")
    assert f"after 100k steps the learning rate will be {reached:.3g} (from 0.0002)" in warning
    assert f"{reached:.3g}" == "9.03e-09"
    assert training.short_epoch_warning(schedules, 1000) is None
    per_step = AttrDict({**h, "lr_decay_every": "step"})
    assert training.short_epoch_warning(training.GAN.build_schedulers(build(h)[1], per_step, -1, 0), 10) is None
    constant = AttrDict({**h, "lr_decay": 1.0})
    assert training.short_epoch_warning(training.GAN.build_schedulers(build(h)[1], constant, -1, 0), 10) is None


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("lr_decay_every", "batch", "lr_decay_every is 'batch'; use one of epoch, step"),
        (
            "grad_clip",
            0,
            "grad_clip 0 must be a number > 0 (the largest total gradient norm of each update), a dict such as "
            '{"generator": 1000, "discriminator": 1000}, or null (no clipping)',
        ),
        (
            "grad_clip",
            {"mpd": 1},
            "grad_clip {'mpd': 1} must be a number > 0 (the largest total gradient norm of each update), a dict such "
            'as {"generator": 1000, "discriminator": 1000}, or null (no clipping)',
        ),
        ("ema_decay", 1, "ema_decay 1 must be in [0, 1) (e.g. 0.999) or null (no EMA)"),
    ],
)
def test_option_keys_are_validated(key, value, message):
    from utils import ConfigError

    with pytest.raises(ConfigError, match=f"^c.json: {re.escape(message)}$"):
        training.GAN.check_config(AttrDict({**tiny_config(), key: value}), "c.json")
