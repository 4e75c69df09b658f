"""baselines/wavenet.py: sizes from r9y9/wavenet_vocoder@2092a64, causality and receptive field, the
discretised mixture of logistics, the incremental engine against the teacher-forced forward,
batched against one-at-a-time generation, and trainability of the small config."""

import math
import os

import pytest
import torch
from conftest import PROGRESS_ENTRIES, REPO, harmonic

from baselines.wavenet import (
    WaveNet,
    discretized_mix_logistic_loss,
    draw_uniform,
    prepare_incremental,
    receptive_field_size,
    sample_from_discretized_mix_logistic,
    wavenet_loss,
    wavenet_params,
)
from utils import ConfigError, load_checkpoint, load_config

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIG = os.path.join(REPO, "configs", "baselines", "config_wavenet.json")
CONFIG_SMALL = os.path.join(REPO, "configs", "baselines", "config_wavenet_small.json")
LOG_SCALE_MIN = math.log(1e-14)
HOP = 256


def wavenet_h(path: str = CONFIG_SMALL, **wavenet_overrides):
    """A real WaveNet config with entries of its `wavenet_config` block overridden."""
    h = load_config(path)
    h["wavenet_config"] = dict(h["wavenet_config"], **wavenet_overrides)
    return h


def tiny_h(**overrides):
    """Small and fast: 6 layers (dilations 1..4, twice), 16 channels."""
    sizes = dict(layers=6, stacks=2, residual_channels=16, gate_channels=16, skip_out_channels=16)
    return wavenet_h(**dict(sizes, **overrides))


def num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------------------
# Sizes and configs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, with_wn, without_wn",
    [
        # r9y9's WaveNet at 2092a64 built from presets/ljspeech_mixture.json (scalar input), counted
        # before and after its make_generation_fast_(); the small config's sizes counted the same way.
        (CONFIG, 24_737_396, 24_693_586),
        (CONFIG_SMALL, 270_644, 267_410),
    ],
)
def test_parameter_counts(path, with_wn, without_wn):
    with torch.device("meta"):
        model = WaveNet(load_config(path))
        assert num_params(model) == with_wn
        model.remove_weight_norm()
        assert num_params(model) == without_wn


def test_state_dict_keys_are_r9y9s():
    model = WaveNet(tiny_h())
    keys = list(model.state_dict())
    assert keys[:6] == [
        "first_conv.bias",
        "first_conv.weight_g",
        "first_conv.weight_v",
        "conv_layers.0.conv.bias",
        "conv_layers.0.conv.weight_g",
        "conv_layers.0.conv.weight_v",
    ]
    assert "conv_layers.5.conv1x1c.bias" in keys  # the conditioning 1x1 has a bias at 2092a64
    assert [k for k in keys if k.startswith(("last_conv_layers", "upsample_conv.0"))] == [
        f"{m}.{p}"
        for m in ("last_conv_layers.1", "last_conv_layers.3", "upsample_conv.0")
        for p in ("bias", "weight_g", "weight_v")
    ]
    assert tuple(model.state_dict()["upsample_conv.6.weight_v"].shape) == (1, 1, 3, 4)


def test_receptive_field_size():
    assert receptive_field_size(24, 4, 3) == 505
    assert WaveNet(wavenet_h(CONFIG, residual_channels=4, gate_channels=4, skip_out_channels=4)).receptive_field == 505
    assert WaveNet(load_config(CONFIG_SMALL)).receptive_field == 253


def test_configs_load_and_check():
    h = load_config(CONFIG)
    assert h.model_family == "wavenet"
    assert (h.batch_size, h.segment_size, h.learning_rate, h.ema_decay) == (2, 7936, 1e-3, 0.9999)
    assert h.segment_size % h.hop_size == 0
    p = wavenet_params(h)
    assert (p["layers"], p["stacks"], p["residual_channels"], p["gate_channels"], p["skip_out_channels"]) == (
        24,
        4,
        512,
        512,
        256,
    )
    assert p["log_scale_min"] == pytest.approx(math.log(1e-14)) and p["quantize_channels"] == 2**16
    with pytest.raises(ConfigError, match="upsample_scales .* multiply to 128 but hop_size is 256"):
        wavenet_params(wavenet_h(upsample_scales=[4, 4, 4, 2]))
    with pytest.raises(ConfigError, match="unknown key.*residual_channel\\b"):
        wavenet_params(wavenet_h(residual_channel=8))


# ---------------------------------------------------------------------------------------------
# Causality, receptive field and the mel alignment
# ---------------------------------------------------------------------------------------------


def _outputs(model, audio, mel):
    with torch.no_grad():
        return model(audio, mel)


def test_causality_output_t_sees_samples_up_to_t():
    """params[..., t] predicts sample t + 1 from samples 0..t: perturbing sample t leaves the outputs
    at 0..t-1 bit-identical and changes the output at t."""
    torch.manual_seed(0)
    model = WaveNet(tiny_h()).double().eval()
    mel = torch.randn(1, 80, 2, dtype=torch.float64) - 4
    audio = torch.rand(1, 1, 2 * HOP, dtype=torch.float64) * 2 - 1
    base = _outputs(model, audio, mel)
    for t in (0, 37, 300):
        moved = audio.clone()
        moved[..., t] += 0.5
        out = _outputs(model, moved, mel)
        assert torch.equal(out[..., :t], base[..., :t])
        assert (out[..., t] - base[..., t]).abs().max() > 1e-6


def test_receptive_field_by_perturbation():
    """Full-size dilations (24 layers, 4 stacks), 16 channels: a change at sample s reaches the
    outputs s .. s + 504 and no other. A finite change shows the outside is untouched (bit-exact);
    an infinitesimal one (the gradient) shows that both ends of the window are reached, where a
    finite change vanishes in rounding (the path through all 24 oldest taps is a product of 24
    small gains)."""
    torch.manual_seed(0)
    model = WaveNet(wavenet_h(CONFIG, residual_channels=16, gate_channels=16, skip_out_channels=16)).double().eval()
    mel = torch.randn(1, 80, 5, dtype=torch.float64) - 4
    audio = torch.rand(1, 1, 5 * HOP, dtype=torch.float64) * 2 - 1
    s = 100
    moved = audio.clone()
    moved[..., s] -= 0.7
    diff = (_outputs(model, moved, mel) - _outputs(model, audio, mel)).abs().amax(dim=(0, 1))  # (T,)
    assert torch.all(diff[:s] == 0) and torch.all(diff[s + 505 :] == 0)
    assert diff[s] > 0
    for t in (s + 504, 1000):
        audio.requires_grad_(True)
        model(audio, mel)[..., t].sum().backward()
        seen = torch.nonzero(audio.grad[0, 0]).squeeze(1)
        assert (seen.min().item(), seen.max().item(), seen.numel()) == (t - 504, t, 505)
        audio = audio.detach()


def test_mel_frame_f_conditions_samples_f_hop_to_next_frame():
    """Position t of the upsampled mel goes with sample t (and predicts t + 1): changing frame f
    changes outputs from f * hop on and nothing before."""
    torch.manual_seed(0)
    model = WaveNet(tiny_h()).double().eval()
    mel = torch.randn(1, 80, 3, dtype=torch.float64) - 4
    audio = torch.rand(1, 1, 3 * HOP, dtype=torch.float64) * 2 - 1
    moved = mel.clone()
    moved[:, :, 1] += 2.0
    diff = (_outputs(model, audio, moved) - _outputs(model, audio, mel)).abs().amax(dim=(0, 1))
    assert torch.all(diff[:HOP] == 0)
    assert torch.all(diff[HOP : 2 * HOP] > 0)
    up = model.upsample(mel)
    assert tuple(up.shape) == (1, 80, 3 * HOP)


def test_forward_crops_the_mel_to_the_audio_and_rejects_short_mels():
    model = WaveNet(tiny_h()).eval()
    mel, audio = torch.randn(1, 80, 2) - 4, torch.rand(1, 1, 2 * HOP) * 2 - 1
    assert tuple(model(audio, mel).shape) == (1, 30, 2 * HOP)
    torch.testing.assert_close(model(audio[..., :300], mel), model(audio, mel)[..., :300])
    with pytest.raises(ValueError, match="audio has 513 samples but the mel only covers 512"):
        model(torch.zeros(1, 1, 2 * HOP + 1), mel)


# ---------------------------------------------------------------------------------------------
# Discretised mixture of logistics
# ---------------------------------------------------------------------------------------------


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _mol(logits, means, log_scales) -> torch.Tensor:
    """(B=1, 3M, T=1) parameters from per-mixture lists."""
    return torch.tensor([*logits, *means, *log_scales], dtype=torch.float64).view(1, -1, 1)


@pytest.mark.parametrize(
    "y, mu, log_s, expected",
    [
        # one logistic, 16-bit bins of half-width 1 / 65535
        # a sharp logistic: the bin holds > 1e-5 of the mass -> log(CDF(y + w) - CDF(y - w))
        (0.1, 0.1, math.log(1e-5), math.log(_sigmoid(1 / 65535 / 1e-5) - _sigmoid(-1 / 65535 / 1e-5))),
        # a broad one: bin mass < 1e-5 -> log pdf at the bin centre - log(65535 / 2)
        (0.5, 0.0, math.log(0.1), 5.0 - math.log(0.1) - 2 * math.log1p(math.exp(5.0)) - math.log(65535 / 2)),
        # left edge (y < -0.999): log CDF(y + w)
        (-1.0, -0.9, math.log(0.05), math.log(_sigmoid((-1.0 + 0.9 + 1 / 65535) / 0.05))),
        # right edge (y > 0.999): log(1 - CDF(y - w))
        (1.0, 0.95, math.log(0.02), math.log(1 - _sigmoid((1.0 - 0.95 - 1 / 65535) / 0.02))),
    ],
)
def test_mol_loss_hand_computed_single_logistic(y, mu, log_s, expected):
    y_hat = _mol([0.0], [mu], [log_s])
    nll = discretized_mix_logistic_loss(y_hat, torch.full((1, 1, 1), y, dtype=torch.float64), 65536, LOG_SCALE_MIN)
    assert nll.shape == (1, 1, 1)
    assert nll.item() == pytest.approx(-expected, rel=1e-9)


def test_mol_loss_hand_computed_two_logistics():
    """-log(pi_1 p_1 + pi_2 p_2), pi = softmax(logits), both in the pdf-at-centre branch."""
    y, logits, means, log_scales = 0.2, [1.0, -0.5], [0.0, 0.3], [math.log(0.2), math.log(0.1)]
    z = [math.exp(v) for v in logits]
    pi = [v / sum(z) for v in z]
    dens = []
    for mu, ls in zip(means, log_scales):
        m = (y - mu) / math.exp(ls)
        dens.append(math.exp(m - ls - 2 * math.log1p(math.exp(m)) - math.log(65535 / 2)))
    expected = -math.log(pi[0] * dens[0] + pi[1] * dens[1])
    nll = discretized_mix_logistic_loss(_mol(logits, means, log_scales), torch.full((1, 1, 1), y, dtype=torch.float64))
    assert nll.item() == pytest.approx(expected, rel=1e-9)


def test_mol_loss_finite_at_log_scale_min_with_finite_gradients():
    """Log scales far below ln(1e-14) are clamped there; targets on the edges, on the means and
    far from them all give finite losses and gradients."""
    torch.manual_seed(0)
    y_hat = torch.randn(2, 30, 64)
    y_hat[:, 20:] = -100.0  # every log scale below log_scale_min
    y = torch.rand(2, 1, 64) * 2 - 1
    y[:, :, :4] = -1.0
    y[:, :, 4:8] = 1.0
    y_hat[:, 10:20, 8:16] = y[:, :, 8:16]  # targets exactly on the means
    y_hat.requires_grad_(True)
    nll = discretized_mix_logistic_loss(y_hat, y, 65536, LOG_SCALE_MIN)
    assert torch.isfinite(nll).all()
    assert nll[..., 8:16].max() < nll[..., 16:].min()  # a hit on a needle-sharp logistic is likely
    nll.sum().backward()
    assert torch.isfinite(y_hat.grad).all()
    low = discretized_mix_logistic_loss(y_hat.detach().half(), y.half(), 65536, LOG_SCALE_MIN)  # AMP outputs
    assert low.dtype == torch.float32 and torch.isfinite(low).all()


def test_wavenet_loss_shifts_by_one_and_masks_by_length():
    torch.manual_seed(0)
    y_hat, audio = torch.randn(2, 30, 10), torch.rand(2, 1, 10) * 2 - 1
    nll = discretized_mix_logistic_loss(y_hat[:, :, :-1], audio[:, :, 1:])  # params t vs sample t + 1
    torch.testing.assert_close(wavenet_loss(y_hat, audio), nll.mean())
    lengths = torch.tensor([10, 6])  # item 1: targets 1..5 only
    expected = torch.cat([nll[0, 0], nll[1, 0, :5]]).mean()
    torch.testing.assert_close(wavenet_loss(y_hat, audio, lengths), expected)


def test_sampling_follows_the_chosen_logistic():
    """Mixture 1 has all the weight: samples have its mean mu and std s * pi / sqrt(3); explicit noise
    gives the same samples as the generator that drew it; samples stay in [-1, 1]."""
    b, t = 1, 20000
    y_hat = torch.zeros(b, 9, t)
    y_hat[:, 0], y_hat[:, 1], y_hat[:, 2] = -30.0, 30.0, -30.0  # logits: mixture 1 wins
    y_hat[:, 3:6] = torch.tensor([-0.8, 0.3, 0.6]).view(1, 3, 1)  # means
    y_hat[:, 6:9] = math.log(0.02)  # scales
    x = sample_from_discretized_mix_logistic(y_hat, LOG_SCALE_MIN, generator=torch.Generator().manual_seed(1))
    assert x.shape == (b, 1, t)
    assert x.mean().item() == pytest.approx(0.3, abs=2e-3)
    assert x.std().item() == pytest.approx(0.02 * math.pi / math.sqrt(3), rel=0.03)
    noise = draw_uniform((b, t, 4), torch.Generator().manual_seed(1), torch.device("cpu"), torch.float32)
    assert torch.equal(sample_from_discretized_mix_logistic(y_hat, LOG_SCALE_MIN, noise=noise), x)
    y_hat[:, 3:6] = 5.0
    assert torch.all(sample_from_discretized_mix_logistic(y_hat, LOG_SCALE_MIN) == 1.0)


# ---------------------------------------------------------------------------------------------
# Incremental and batched generation
# ---------------------------------------------------------------------------------------------


def test_incremental_equals_teacher_forced_forward_for_256_steps():
    torch.manual_seed(0)
    model = WaveNet(load_config(CONFIG_SMALL)).eval()
    mel = torch.randn(2, 80, 1) - 4
    audio = torch.rand(2, 1, HOP) * 2 - 1
    engine = prepare_incremental(model)
    torch.testing.assert_close(engine.incremental_forward(audio, mel), _outputs(model, audio, mel), rtol=0, atol=1e-5)


def test_engine_folds_weight_norm_and_does_not_touch_the_model():
    torch.manual_seed(0)
    model = WaveNet(tiny_h()).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    engine = prepare_incremental(model)
    assert list(model.state_dict()) == list(before)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    mel, audio = torch.randn(1, 80, 1) - 4, torch.rand(1, 1, 100) * 2 - 1
    folded = WaveNet(tiny_h()).eval()
    folded.load_state_dict(before)
    folded.remove_weight_norm()
    torch.testing.assert_close(engine.incremental_forward(audio, mel), _outputs(folded, audio, mel), rtol=0, atol=1e-5)


def test_batched_generation_equals_one_at_a_time():
    """Three utterances of 1, 3 and 2 frames at once equal each alone with the same generator;
    each stops at its own length (zeros after)."""
    torch.manual_seed(0)
    model = WaveNet(tiny_h()).double().eval()
    engine = prepare_incremental(model)
    mel = torch.randn(3, 80, 3, dtype=torch.float64) - 4
    lengths, seeds = [1, 3, 2], [11, 12, 13]
    steps = []
    batch = engine.generate(
        mel,
        lengths,
        generator=[torch.Generator().manual_seed(s) for s in seeds],
        progress=lambda d, n: steps.append((d, n)),
    )
    assert batch.shape == (3, 1, 3 * HOP)
    assert steps[-1] == (3 * HOP, 3 * HOP)
    for i, (n, s) in enumerate(zip(lengths, seeds)):
        alone = engine.generate(mel[i : i + 1, :, :n], generator=[torch.Generator().manual_seed(s)])
        assert alone.shape == (1, 1, n * HOP)
        torch.testing.assert_close(batch[i, :, : n * HOP], alone[0], rtol=0, atol=1e-9)
        assert torch.all(batch[i, :, n * HOP :] == 0)
        assert batch[i, 0, : n * HOP].abs().max() > 0
    # `seed` = one generator per item with that seed: batch-invariant too, and reproducible
    a = model.vocode(mel, lengths, seed=5)
    b = model.vocode(mel[1:2], seed=5)
    torch.testing.assert_close(a[1:2], b, rtol=0, atol=1e-9)
    assert torch.equal(model.vocode(mel, lengths, seed=5), a)
    assert not torch.equal(a[1], model.vocode(mel, lengths, seed=6)[1])


def test_generation_checks_its_inputs():
    engine = prepare_incremental(WaveNet(tiny_h()).eval())
    with pytest.raises(ValueError, match="mel has 40 bins but the model expects 80"):
        engine.generate(torch.zeros(1, 40, 2))
    with pytest.raises(ValueError, match="lengths \\[3\\] must give 0..2 frames"):
        engine.generate(torch.zeros(1, 80, 2), lengths=[3])
    with pytest.raises(ValueError, match="2 generators for 1 items"):
        engine.generate(torch.zeros(1, 80, 2), generator=[torch.Generator(), torch.Generator()])
    assert torch.equal(engine.generate(torch.zeros(2, 80, 2), lengths=[0, 0]), torch.zeros(2, 1, 2 * HOP))


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def test_small_config_loss_falls_with_adam():
    from meldataset import mel_spectrogram

    h = load_config(CONFIG_SMALL)
    torch.manual_seed(h.seed)
    model = WaveNet(h).train()
    audio = torch.from_numpy(harmonic(2 * 8 * HOP / h.sampling_rate)).view(2, 1, 8 * HOP)
    mel = mel_spectrogram(
        audio.squeeze(1), h.n_fft, h.num_mels, h.sampling_rate, h.hop_size, h.win_size, h.fmin, h.fmax
    )  # (2, 80, 8)
    opt = torch.optim.Adam(model.parameters(), h.learning_rate, betas=(h.adam_b1, h.adam_b2))
    losses = []
    for _ in range(8):
        loss = wavenet_loss(model(audio, mel), audio, **model.mol_kwargs())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0] - 0.5, losses


# ---------------------------------------------------------------------------------------------
# Trained by train.py (per-step schedule, EMA weights), then through the synthesis API and scripts
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wavenet_run(tmp_path_factory):
    """8 steps of train.py on a tiny WaveNet (constant lr 1e-3, EMA 0.9):
    (checkpoint folder, the data, the config path)."""
    from conftest import TINY_WAVENET, make_training_data, run_train, write_baseline_config

    tmp = tmp_path_factory.mktemp("wavenet_run")
    config = write_baseline_config(tmp, "wavenet_small", ema_decay=0.9, **TINY_WAVENET)
    data = make_training_data(tmp / "data", n=2)
    cp = run_train(tmp, "--checkpoint_interval", "4", "--validation_interval", "4", config=config, steps=8, data=data)
    return cp, data, config


def test_train_py_trains_wavenet_with_ema_weights(wavenet_run):
    from conftest import scalar_tags

    cp, _, _ = wavenet_run
    names = {f"{p}_{s:08d}" for p in ("wavenet", "wavenet_state") for s in (4, 7)}
    assert set(os.listdir(cp)) == {"config.json", "logs"} | names
    weights, state = load_checkpoint(str(cp / "wavenet_00000007")), load_checkpoint(str(cp / "wavenet_state_00000007"))
    assert set(weights) == {"wavenet", "wavenet_ema"} and set(state) == {"optimizer", *PROGRESS_ENTRIES}
    model, ema = weights["wavenet"], weights["wavenet_ema"]
    assert model.keys() == ema.keys() and not torch.equal(model["first_conv.weight_v"], ema["first_conv.weight_v"])
    acc = scalar_tags(cp / "logs")
    loss = [e.value for e in acc.Scalars("training/loss")]
    assert len(loss) == 8 and all(map(math.isfinite, loss)) and max(loss[-3:]) < min(loss[:2]), loss
    assert [e.step for e in acc.Scalars("validation/mel_spec_error")] == [0, 4]
    assert "generated/y_hat_0" in acc.Tags()["audio"]


def test_wavenet_run_resumes_with_its_ema(wavenet_run, tmp_path, capsys):
    import shutil

    from conftest import run_train

    cp, data, config = wavenet_run
    shutil.copytree(cp, tmp_path / "cp")
    run_train(tmp_path, config=config, data=data, steps=10)
    resumed = f"{tmp_path}/cp/wavenet_00000007 and {tmp_path}/cp/wavenet_state_00000007 (step 7, epoch 7)"
    assert f"Resuming from {resumed}" in capsys.readouterr().out
    before, after = (load_checkpoint(str(tmp_path / "cp" / f"wavenet_{s:08d}")) for s in (7, 9))
    state = load_checkpoint(str(tmp_path / "cp" / "wavenet_state_00000009"))
    assert state["optimizer"]["state"][0]["step"] == 10
    # The EMA went on from the saved one: two updates of decay 0.9 give
    # 0.81 ema_7 + 0.09 w_8 + 0.1 w_9, which is 0.81 ema_7 + 0.19 w_9 up to 0.09 (w_8 - w_9), one
    # Adam step of lr 1e-3 (the EMA and the weights of step 7 differ by up to 5e-3, a restart more).
    for key, ema in after["wavenet_ema"].items():
        expected = 0.81 * before["wavenet_ema"][key] + 0.19 * after["wavenet"][key]
        torch.testing.assert_close(ema, expected, rtol=0, atol=5e-4)


def test_ema_update_is_r9y9s_formula():
    from training import ema_update

    torch.manual_seed(0)
    model, average = WaveNet(tiny_h()), WaveNet(tiny_h())
    before = {k: v.clone() for k, v in average.state_dict().items()}
    ema_update(average, model, 0.99)
    for k, v in average.state_dict().items():
        torch.testing.assert_close(v, 0.99 * before[k] + 0.01 * model.state_dict()[k], rtol=0, atol=1e-6)


def test_noam_schedule_per_step_resumes_at_its_step():
    from env import AttrDict
    from training import LR_SCHEDULES, per_step_schedulers

    h = AttrDict(learning_rate=1e-3, lr_schedule="noam_learning_rate_decay", lr_schedule_kwargs={"warmup_steps": 4})
    factor = LR_SCHEDULES[h.lr_schedule]
    # r9y9 lrschedule.py: lr = init * warmup^0.5 * min(step * warmup^-1.5, step^-0.5), step = global step + 1
    assert [round(factor(s, 4), 6) for s in (0, 3, 8)] == [0.25, 1.0, round(2 / 3, 6)]
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    (scheduler,) = per_step_schedulers({"optimizer": opt}, h, -1, 0).per_step
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    resumed = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    per_step_schedulers({"optimizer": resumed}, h, 0, 3)  # a run resumed before its step 3
    assert lrs == pytest.approx([1e-3 * factor(s, 4) for s in range(6)])
    assert resumed.param_groups[0]["lr"] == pytest.approx(lrs[3])


def test_wavenet_checkpoint_synthesizes_from_the_ema_weights(wavenet_run, tmp_path, capsys):
    import numpy as np
    import soundfile as sf

    import inference_e2e
    from baselines.wavenet import WaveNetVocoder
    from synthesis import load_generator, vocode_batch

    cp, _, _ = wavenet_run
    checkpoint = str(cp / "wavenet_00000007")
    generator, h = load_generator(checkpoint, device="cpu", seed=5)
    assert isinstance(generator, WaveNetVocoder)
    ema = load_checkpoint(checkpoint)["wavenet_ema"]
    folded = WaveNet(h)
    folded.load_state_dict(ema)
    folded.remove_weight_norm()
    torch.testing.assert_close(generator.wavenet.state_dict(), folded.state_dict(), rtol=0, atol=0)
    mels = [torch.randn(1, 80, n, generator=torch.Generator().manual_seed(n)) - 5 for n in (3, 1)]
    batch = vocode_batch(generator, h, mels)
    alone = [vocode_batch(generator, h, [m])[0] for m in mels]
    assert [b.size for b in batch] == [3 * HOP, HOP]
    for b, a in zip(batch, alone):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-5)
    (tmp_path / "mels").mkdir()
    np.save(tmp_path / "mels" / "m.npy", mels[0][0].numpy())
    inference_e2e.main(["--checkpoint_file", checkpoint, "--input_mels_dir", str(tmp_path / "mels"),
                        "--output_dir", str(tmp_path / "out"), "--seed", "1"])  # fmt: skip
    out = capsys.readouterr().err
    assert sf.info(tmp_path / "out" / "m_generated_e2e.wav").frames == 3 * HOP
    assert "note: WaveNet generates sample by sample: 0.0348 s of audio at about " in out
    with pytest.raises(SystemExit) as e:
        inference_e2e.main(["--checkpoint_file", checkpoint, "--input_mels_dir", str(tmp_path / "mels"),
                            "--output_dir", str(tmp_path / "out"), "--max_seconds", "0.01"])  # fmt: skip
    note, error = capsys.readouterr().err.strip().splitlines()  # the estimate, then one error line
    assert e.value.code == 2 and note.startswith("note: WaveNet generates sample by sample: 0.0348 s of audio")
    assert error.startswith("error: WaveNet: 0.0348 s of audio is more than --max_seconds 0.01 (about "), error
    assert error.endswith("pass --max_seconds 1 to generate it anyway"), error


def test_wavenet_checkpoint_through_inference_and_evaluate(wavenet_run, tmp_path, capsys):
    """inference.py (wav -> mel -> WaveNet) and evaluate.py on the trained tiny checkpoint."""
    import csv

    import soundfile as sf

    import evaluate
    import inference

    cp, (wavs, _, _), _ = wavenet_run
    checkpoint = str(cp / "wavenet_00000007")
    inference.main(["--checkpoint_file", checkpoint, "--input_wavs_dir", wavs, "--output_dir", str(tmp_path / "a"),
                    "--batch_size", "2"])  # fmt: skip
    assert sf.info(tmp_path / "a" / "clip0_generated.wav").frames == int(0.6 * 22050) // HOP * HOP
    evaluate.main(["--reference_dir", wavs, "--checkpoint_file", checkpoint, "--metrics", "mel_l1",
                   "--output_csv", str(tmp_path / "m.csv"), "--device", "cpu"])  # fmt: skip
    with open(tmp_path / "m.csv") as f:
        assert 0 < float(next(r for r in csv.DictReader(f) if r["file"] == "MEAN")["mel_l1"]) < 20
    capsys.readouterr()
