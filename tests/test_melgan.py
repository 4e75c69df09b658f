"""baselines/melgan.py: parameter counts, shapes and state-dict keys of the authors' MelGAN
(descriptinc/melgan-neurips, keys in tests/data/melgan_keys.json), padded batches, losses, and a
few training steps of a small MelGAN."""

import json
import os

import pytest
import torch
from conftest import baseline_config, config, harmonic

from baselines.melgan import (
    ADVERSARIAL_LOSSES,
    LAMBDA_FEAT,
    MelGANDiscriminator,
    MelGANGenerator,
    hinge_discriminator_loss,
    hinge_generator_loss,
    melgan_feature_loss,
)
from env import AttrDict
from meldataset import mel_from_config
from models import discriminator_loss, generator_loss, remove_weight_norm

pytestmark = pytest.mark.usefixtures("one_thread")

KEYS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "melgan_keys.json")
# HiFi-GAN Table 1 / the issue: 4.26 M; measured on the authors' Generator(80, 32, 3) and
# Discriminator(3, 16, 4, 4) (see the manifest's "source").
G_PARAMS, G_PARAMS_WN = 4_260_257, 4_266_050
D_PARAMS, D_PARAMS_WN = 16_913_859, 16_924_086
# small sizes for forward and training tests; the discriminator is 4 -> 16 -> 64 channels
TINY_G = dict(melgan_ngf=8, melgan_n_residual_layers=1)
TINY_D = dict(melgan_ndf=4, melgan_n_layers_D=2)


@pytest.fixture(scope="module")
def manifest():
    with open(KEYS_FILE) as f:
        return json.load(f)


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def shapes(module):
    return {k: list(v.shape) for k, v in module.state_dict().items()}


def tiny_generator(seed=0, **overrides):
    torch.manual_seed(seed)
    return MelGANGenerator(AttrDict(TINY_G, **overrides))


# ---------------------------------------------------------------------------------------------
# Sizes and keys
# ---------------------------------------------------------------------------------------------


def test_generator_param_counts():
    g = MelGANGenerator(AttrDict())
    assert n_params(g) == G_PARAMS_WN
    g.remove_weight_norm()
    assert n_params(g) == G_PARAMS
    assert not any(k.endswith(("weight_g", "weight_v")) for k in g.state_dict())


def test_discriminator_param_counts():
    d = MelGANDiscriminator(AttrDict())
    assert len(d.model) == 3
    assert n_params(d) == D_PARAMS_WN
    remove_weight_norm(d)
    assert n_params(d) == D_PARAMS


def test_counts_agree_with_manifest(manifest):
    assert manifest["generator"]["params_with_weight_norm"] == G_PARAMS_WN
    assert manifest["generator"]["params_after_remove_weight_norm"] == G_PARAMS
    assert manifest["discriminator"]["params_with_weight_norm"] == D_PARAMS_WN
    assert manifest["discriminator"]["params_after_remove_weight_norm"] == D_PARAMS


@pytest.mark.parametrize("part", ["generator", "discriminator"])
def test_state_dict_keys_and_shapes_are_the_authors(manifest, part):
    model = MelGANGenerator(AttrDict()) if part == "generator" else MelGANDiscriminator(AttrDict())
    ref = manifest[part]["state_dict"]
    assert list(model.state_dict()) == list(ref)  # same names in the same order
    assert shapes(model) == ref


def test_generator_defaults_are_the_config_values():
    h = baseline_config("melgan")
    a, b = MelGANGenerator(h), MelGANGenerator(AttrDict())
    assert shapes(a) == shapes(b)
    assert a.hop_length == h.hop_size == 256


# ---------------------------------------------------------------------------------------------
# Generator
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("frames", [4, 5, 11, 32])
def test_output_length_is_hop_times_frames(frames):
    g = MelGANGenerator(AttrDict())
    with torch.no_grad():
        y = g(torch.randn(2, 80, frames))
    assert y.shape == (2, 1, 256 * frames)
    assert y.abs().max() <= 1.0  # tanh output


@pytest.mark.parametrize("ratios", [[3, 5, 2], [5, 4], [7]])
def test_odd_ratios_give_exact_length(ratios):
    # r // 2 + r % 2 padding with r % 2 output padding: exactly r samples per input step
    g = tiny_generator(upsample_rates=ratios)
    hop = 1
    for r in ratios:
        hop *= r
    with torch.no_grad():
        y = g(torch.randn(1, 80, 9))
    assert y.shape == (1, 1, 9 * hop)


def test_too_few_frames_is_one_clear_error():
    g = tiny_generator()
    with pytest.raises(ValueError, match="at least 4 mel frames"):
        g(torch.randn(1, 80, 3))


def test_padded_batch_equals_items_alone():
    g = tiny_generator().eval()
    lengths = torch.tensor([9, 5, 12])
    mel = torch.randn(3, 80, 12)
    for b, n in enumerate(lengths.tolist()):
        mel[b, :, n:] = 0  # a zero-padded batch
    with torch.no_grad():
        y = g(mel, lengths)
        for b, n in enumerate(lengths.tolist()):
            alone = g(mel[b : b + 1, :, :n])
            assert torch.equal(y[b : b + 1, :, : n * 256], alone)
            assert torch.count_nonzero(y[b, :, n * 256 :]) == 0
        assert torch.equal(g(mel, torch.tensor([12, 12, 12])), g(mel))
    with pytest.raises(ValueError, match="more than the batch's 12 frames"):
        g(mel, torch.tensor([13, 5, 12]))


def test_remove_weight_norm_keeps_outputs():
    g = tiny_generator().eval()
    mel = torch.randn(2, 80, 10)
    with torch.no_grad():
        before = g(mel)
        g.remove_weight_norm()
        after = g(mel)
    torch.testing.assert_close(after, before)


def test_weight_norm_removed_state_dict_loads_into_weight_norm_model():
    a, b = tiny_generator(seed=1).eval(), tiny_generator(seed=2).eval()
    a.remove_weight_norm()
    b.load_state_dict(a.state_dict())  # plain `weight` split back into weight_g / weight_v
    mel = torch.randn(1, 80, 6)
    with torch.no_grad():
        torch.testing.assert_close(b(mel), a(mel))


# ---------------------------------------------------------------------------------------------
# Discriminator
# ---------------------------------------------------------------------------------------------


def test_discriminator_three_scales_of_seven_feature_maps():
    d = MelGANDiscriminator(AttrDict())
    t = 4096
    y, y_hat = torch.randn(2, 1, t), torch.randn(2, 1, t)
    with torch.no_grad():
        y_d_rs, y_d_gs, fmap_rs, fmap_gs = d(y, y_hat)
    assert len(y_d_rs) == len(y_d_gs) == len(fmap_rs) == len(fmap_gs) == 3
    channels = [16, 64, 256, 1024, 1024, 1024, 1]
    for k in range(3):
        n = t // 2**k  # AvgPool1d(4, 2, padding 1) halves the length
        steps = [n, n // 4, n // 16, n // 64, n // 256, n // 256, n // 256]
        expected = [(2, c, s) for c, s in zip(channels, steps)]
        assert [tuple(f.shape) for f in fmap_rs[k]] == expected
        assert [tuple(f.shape) for f in fmap_gs[k]] == expected
        assert y_d_rs[k].shape == (2, n // 256)
        torch.testing.assert_close(y_d_rs[k], fmap_rs[k][-1].flatten(1))  # the score is the last map


def test_avg_pool_does_not_count_padding():
    d = MelGANDiscriminator(AttrDict(TINY_D))
    y = torch.ones(1, 1, 16)
    assert torch.equal(d.downsample(y), torch.ones(1, 1, 8))  # count_include_pad=False: no edge dip


# ---------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------


def test_hinge_discriminator_loss_by_hand():
    real = [torch.tensor([[0.5, 2.0]]), torch.tensor([[-1.0, 1.0]])]
    fake = [torch.tensor([[-2.0, 0.5]]), torch.tensor([[0.0, -0.5]])]
    loss, r_losses, g_losses = hinge_discriminator_loss(real, fake)
    # real: mean(relu(1 - x)): (0.5 + 0) / 2, (2 + 0) / 2; fake: mean(relu(1 + x)): (0 + 1.5) / 2, (1 + 0.5) / 2
    torch.testing.assert_close(torch.stack(r_losses), torch.tensor([0.25, 1.0]))
    torch.testing.assert_close(torch.stack(g_losses), torch.tensor([0.75, 0.75]))
    torch.testing.assert_close(loss, torch.tensor(2.75))


def test_hinge_generator_loss_by_hand():
    fake = [torch.tensor([[-2.0, 0.5]]), torch.tensor([[3.0, 1.0]])]
    loss, terms = hinge_generator_loss(fake)
    torch.testing.assert_close(torch.stack(terms), torch.tensor([0.75, -2.0]))
    torch.testing.assert_close(loss, torch.tensor(-1.25))


def test_lsgan_losses_are_models_losses_by_hand():
    assert ADVERSARIAL_LOSSES["lsgan"] == (discriminator_loss, generator_loss)
    assert ADVERSARIAL_LOSSES["hinge"] == (hinge_discriminator_loss, hinge_generator_loss)
    real, fake = [torch.tensor([[0.5, 2.0]])], [torch.tensor([[-2.0, 0.5]])]
    loss_d, _, _ = discriminator_loss(real, fake)
    loss_g, _ = generator_loss(fake)
    # D: mean((1 - x)^2) = (0.25 + 1) / 2, mean(x^2) = (4 + 0.25) / 2; G: mean((1 - x)^2) = (9 + 0.25) / 2
    torch.testing.assert_close(loss_d, torch.tensor(0.625 + 2.125))
    torch.testing.assert_close(loss_g, torch.tensor(4.625))


def test_feature_loss_weights_as_the_authors_train_py():
    # 3 scales of 7 maps (n_layers_D = 4): per layer (1/3) * 4/5; the score maps are left out
    fmap_r = [[torch.zeros(1, 2, 3) for _ in range(7)] for _ in range(3)]
    fmap_g = [[torch.ones(1, 2, 3) for _ in range(6)] + [torch.full((1, 1, 3), 100.0)] for _ in range(3)]
    torch.testing.assert_close(melgan_feature_loss(fmap_r, fmap_g), torch.tensor(3 * 6 * (1 / 3) * 0.8))
    # 2 scales of 4 maps (n_layers_D = 1): per layer (1/2) * 4/2 = 1
    fmap_r = [[torch.zeros(2, 1, 4) for _ in range(4)] for _ in range(2)]
    fmap_g = [[torch.full((2, 1, 4), v) for v in (0.5, 1.5, -2.0, 9.0)], [torch.full((2, 1, 4), 0.25)] * 4]
    torch.testing.assert_close(melgan_feature_loss(fmap_r, fmap_g), torch.tensor(0.5 + 1.5 + 2.0 + 3 * 0.25))


def test_feature_loss_detaches_real_features():
    real = [[torch.zeros(1, 1, 4, requires_grad=True) for _ in range(4)]]
    fake = [[torch.ones(1, 1, 4, requires_grad=True) for _ in range(4)]]
    melgan_feature_loss(real, fake).backward()
    assert all(r.grad is None for r in real[0])
    assert all(f.grad is not None for f in fake[0][:-1]) and fake[0][-1].grad is None


# ---------------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------------


FRONTEND_KEYS = ("sampling_rate", "n_fft", "num_freq", "hop_size", "win_size", "num_mels", "fmin", "fmax")


@pytest.mark.parametrize("name", ["melgan", "melgan_mpd"])
def test_baseline_configs_load_with_the_recipe(name):
    h = baseline_config(name)
    v1 = config("v1")
    assert {k: h[k] for k in FRONTEND_KEYS} == {k: v1[k] for k in FRONTEND_KEYS}
    assert (h.model_family, h.msd_variant, h.adversarial_loss, h.optimizer) == ("melgan", "melgan", "hinge", "adam")
    assert (h.lambda_fm, h.lambda_mel, h.use_msd) == (LAMBDA_FEAT, 0, True)
    assert (h.learning_rate, h.adam_b1, h.adam_b2, h.batch_size, h.segment_size) == (1e-4, 0.5, 0.9, 16, 8192)
    assert h.use_mpd == (name == "melgan_mpd")
    assert h.get("mpd_periods") == ([2, 3, 5, 7, 11] if h.use_mpd else None)


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def _segment(h, samples: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.from_numpy(harmonic(samples / h.sampling_rate + 0.01, h.sampling_rate))[:samples]
    y = y.unsqueeze(0)  # (1, T)
    return y.unsqueeze(1), mel_from_config(y, h)  # (1, 1, T), (1, 80, T / 256)


def _g_objective(d, y, y_hat, lambda_fm: float) -> torch.Tensor:
    _, y_d_gs, fmap_rs, fmap_gs = d(y, y_hat)
    loss_adv, _ = hinge_generator_loss(y_d_gs)
    return loss_adv + lambda_fm * melgan_feature_loss(fmap_rs, fmap_gs)


def test_generator_steps_reduce_objective_against_fixed_discriminator():
    h = baseline_config("melgan", **TINY_G, **TINY_D)
    y, mel = _segment(h)
    g = tiny_generator(seed=0)
    torch.manual_seed(1)
    d = MelGANDiscriminator(h).requires_grad_(False)
    # a larger lr than the recipe's 1e-4, so that a few steps move an 8-channel generator
    opt = torch.optim.Adam(g.parameters(), lr=1e-3, betas=(h.adam_b1, h.adam_b2))
    losses = []
    for _ in range(12):
        loss = _g_objective(d, y, g(mel), h.lambda_fm)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert torch.isfinite(torch.tensor(losses)).all()
    assert losses[-1] < 0.92 * losses[0]  # about 0.87 here


def test_alternating_gan_steps_run_finite():
    h = baseline_config("melgan", **TINY_G, **TINY_D)
    y, mel = _segment(h)
    g = tiny_generator(seed=0)
    d = MelGANDiscriminator(h)
    loss_d_fn, loss_g_fn = ADVERSARIAL_LOSSES[h.adversarial_loss]
    opt_g = torch.optim.Adam(g.parameters(), h.learning_rate, betas=(h.adam_b1, h.adam_b2))
    opt_d = torch.optim.Adam(d.parameters(), h.learning_rate, betas=(h.adam_b1, h.adam_b2))
    d_before = [p.detach().clone() for p in d.parameters()]
    for _ in range(3):
        y_hat = g(mel)
        y_d_rs, y_d_gs, _, _ = d(y, y_hat.detach())
        loss_d, _, _ = loss_d_fn(y_d_rs, y_d_gs)
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        _, y_d_gs, fmap_rs, fmap_gs = d(y, y_hat)
        loss_adv, _ = loss_g_fn(y_d_gs)
        loss_g = loss_adv + h.lambda_fm * melgan_feature_loss(fmap_rs, fmap_gs)
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        assert torch.isfinite(loss_d) and torch.isfinite(loss_g)
    # every weight moves; the score convs' biases get d/db = -1 + 1 = 0 while all scores are inside
    # the hinge margin (-1, 1), so only the weights are checked
    moved = {n: not torch.equal(p, b) for (n, p), b in zip(d.named_parameters(), d_before)}
    assert all(v for n, v in moved.items() if n.endswith("weight_v")) and len(moved) == len(d_before)


# ---------------------------------------------------------------------------------------------
# A trained MelGAN checkpoint through the scripts (train.py -> inference, export, evaluate)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def melgan_checkpoint(tmp_path_factory):
    """A 1-step MelGAN run of train.py at tiny sizes: (g_ path, its folder, the data folder)."""
    from conftest import TINY_DISCRIMINATORS, make_training_data, run_train

    tmp = tmp_path_factory.mktemp("melgan_run")
    h = baseline_config("melgan", **TINY_G, **TINY_D, **TINY_DISCRIMINATORS, batch_size=2, segment_size=2048)
    h["num_workers"] = 0
    path = tmp / "melgan.json"
    path.write_text(json.dumps(dict(h)))
    data = make_training_data(tmp / "data", n=2)
    cp = run_train(tmp, config=str(path), steps=1, data=data)
    return str(cp / "g_00000000"), cp, data


def test_melgan_checkpoint_through_inference_scripts(melgan_checkpoint, tmp_path, capsys):
    import numpy as np
    import soundfile as sf

    import inference
    import inference_e2e
    from meldataset import to_pcm16
    from synthesis import load_generator, vocode

    checkpoint, cp, (wavs, _, _) = melgan_checkpoint
    generator, h = load_generator(checkpoint, device="cpu")
    assert isinstance(generator, MelGANGenerator)
    inference.main(["--checkpoint_file", checkpoint, "--input_wavs_dir", wavs, "--output_dir", str(tmp_path / "a")])
    audio, sr = sf.read(tmp_path / "a" / "clip0_generated.wav", dtype="float32")
    frames = int(0.6 * 22050) // 256
    assert sr == 22050 and audio.shape == (frames * 256,) and np.abs(audio).max() > 0
    mel = mel_from_config(torch.from_numpy(harmonic(0.6))[None], h)[0].numpy()
    (tmp_path / "mels").mkdir()
    np.save(tmp_path / "mels" / "m.npy", mel)
    inference_e2e.main(["--checkpoint_file", checkpoint, "--input_mels_dir", str(tmp_path / "mels"),
                        "--output_dir", str(tmp_path / "b")])  # fmt: skip
    e2e, _ = sf.read(tmp_path / "b" / "m_generated_e2e.wav", dtype="int16")
    one_shot = vocode(generator, h, mel, chunk_frames=None)
    np.testing.assert_array_equal(e2e, to_pcm16(one_shot))  # the one 16-bit writer's quantisation
    chunked = vocode(generator, h, mel, chunk_frames=9)  # overlap-save with MelGAN's receptive field
    np.testing.assert_allclose(chunked, one_shot, rtol=0, atol=1e-6)


def test_melgan_checkpoint_exports_with_parity(melgan_checkpoint, tmp_path, capsys):
    import export

    checkpoint, _, _ = melgan_checkpoint
    formats = ["torchscript"]
    if all(__import__("importlib").util.find_spec(m) for m in ("onnx", "onnxscript", "onnxruntime")):
        formats.append("onnx")
    export.main(["--checkpoint_file", checkpoint, "--output_dir", str(tmp_path), "--check_frames", "40",
                 "--formats", *formats])  # fmt: skip
    out = capsys.readouterr().out
    for fmt in formats:
        diff = float(out.split(f"{fmt}: ")[1].split("max abs diff to eager ")[1].split()[0])
        assert diff < 1e-4, out


def test_melgan_checkpoint_evaluates_and_wrong_config_is_one_line(melgan_checkpoint, tmp_path, capsys):
    import csv

    from conftest import REPO

    import evaluate

    checkpoint, _, (wavs, _, _) = melgan_checkpoint
    evaluate.main(["--reference_dir", wavs, "--checkpoint_file", checkpoint, "--metrics", "mel_l1,mrstft",
                   "--output_csv", str(tmp_path / "m.csv"), "--device", "cpu"])  # fmt: skip
    with open(tmp_path / "m.csv") as f:
        mean = next(r for r in csv.DictReader(f) if r["file"] == "MEAN")
    assert 0 < float(mean["mel_l1"]) < 20 and float(mean["mrstft"]) > 0
    with pytest.raises(SystemExit) as e:  # a MelGAN checkpoint with a HiFi-GAN config
        evaluate.main(["--reference_dir", wavs, "--checkpoint_file", checkpoint, "--config",
                       os.path.join(REPO, "config_v1.json"), "--metrics", "mel_l1"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1
    assert err[0].startswith(f"error: {checkpoint}: ") and "config_v1.json" in err[0], err
