"""models.py against the authors' reference outputs (../shared/fixtures) and basic properties."""

import json
import os
import warnings

import numpy as np
import pytest
import torch
from conftest import FIXTURES, VERSIONS, config, needs_fixtures, tiny_config

from models import (
    Generator,
    MultiPeriodDiscriminator,
    MultiScaleDiscriminator,
    discriminator_loss,
    feature_loss,
    generator_loss,
    remove_weight_norm,
)


@pytest.fixture(scope="module")
def manifest():
    with open(os.path.join(FIXTURES, "manifest.json")) as f:
        return json.load(f)


def shapes(module):
    return {k: list(v.shape) for k, v in module.state_dict().items()}


def n_params(module):
    return sum(p.numel() for p in module.parameters())


@needs_fixtures
@pytest.mark.parametrize("version", VERSIONS)
def test_generator_keys_shapes_and_counts(manifest, version):
    ref = manifest["generator"][version]
    g = Generator(config(version))
    assert shapes(g) == ref["state_dict"]
    assert list(g.state_dict()) == list(ref["state_dict"])  # same order as the original
    assert n_params(g) == ref["params_with_weight_norm"]
    g.remove_weight_norm()
    assert shapes(g) == ref["state_dict_after_remove_weight_norm"]
    assert n_params(g) == ref["params_after_remove_weight_norm"]


def test_generator_param_counts_match_paper():
    # Table 1 of the paper: 13.92M, 0.92M, 1.46M (after weight-norm removal)
    expected = {"v1": 13_926_017, "v2": 925_985, "v3": 1_462_273}
    for version, count in expected.items():
        g = Generator(config(version))
        g.remove_weight_norm()
        assert n_params(g) == count


@needs_fixtures
@pytest.mark.parametrize(
    "name,cls,count", [("mpd", MultiPeriodDiscriminator, 41_105_770), ("msd", MultiScaleDiscriminator, 29_618_821)]
)
def test_discriminator_keys_shapes_and_counts(manifest, name, cls, count):
    d = cls()
    assert shapes(d) == manifest[name]["state_dict"]
    assert n_params(d) == manifest[name]["params"] == count


@needs_fixtures
@pytest.mark.parametrize("version", ["v2", "v3"])
@pytest.mark.parametrize("remove", [False, True])
def test_generator_reproduces_original_output(version, remove):
    g = Generator(config(version)).eval()
    ckpt = torch.load(os.path.join(FIXTURES, f"g_{version}_original_format.pt"), map_location="cpu", weights_only=True)
    g.load_state_dict(ckpt["generator"])
    if remove:
        g.remove_weight_norm()
    mel = torch.from_numpy(np.load(os.path.join(FIXTURES, "mel_LJ001-0002.npy")))
    expected = np.load(os.path.join(FIXTURES, f"expected_{version}_LJ001-0002.npy"))
    with torch.inference_mode():
        y = g(mel).numpy()
    assert y.shape == expected.shape == (1, 1, 163 * 256)
    assert np.abs(y - expected).max() < 1e-5


@needs_fixtures
def test_losses_match_original(manifest):
    d = np.load(os.path.join(FIXTURES, "loss_inputs.npz"))
    t = lambda k: torch.from_numpy(d[k])  # noqa: E731
    dr = [t(f"dr_{i}") for i in range(3)]
    dg = [t(f"dg_{i}") for i in range(3)]
    fr = [[t(f"fr_{i}_{j}") for j in range(2)] for i in range(3)]
    fg = [[t(f"fg_{i}_{j}") for j in range(2)] for i in range(3)]
    ref = manifest["losses"]
    loss, r, g = discriminator_loss(dr, dg)
    assert loss.item() == pytest.approx(ref["discriminator_loss"][0], abs=1e-6)
    assert [float(x) for x in r] == pytest.approx(ref["discriminator_loss"][1], abs=1e-6)
    assert [float(x) for x in g] == pytest.approx(ref["discriminator_loss"][2], abs=1e-6)
    loss, terms = generator_loss(dg)
    assert loss.item() == pytest.approx(ref["generator_loss"][0], abs=1e-6)
    assert [float(x) for x in terms] == pytest.approx(ref["generator_loss"][1], abs=1e-6)
    assert feature_loss(fr, fg).item() == pytest.approx(ref["feature_loss"], abs=1e-5)


@pytest.mark.parametrize("version", VERSIONS)
def test_state_dict_roundtrip_between_weight_norm_layouts(version):
    """Legacy keys, torch parametrization keys and folded weights all load, with equal outputs."""
    torch.manual_seed(0)
    h = tiny_config(version)
    g = Generator(h).eval()
    mel = torch.randn(1, h.num_mels, 12)
    with torch.no_grad():
        ref = g(mel)
    sd = g.state_dict()
    assert any(k.endswith("weight_g") for k in sd) and not any("parametrizations" in k for k in sd)

    renamed = {
        k.replace("weight_g", "parametrizations.weight.original0").replace(
            "weight_v", "parametrizations.weight.original1"
        ): v
        for k, v in sd.items()
    }
    folded = Generator(h).eval()
    folded.remove_weight_norm()
    for source in (sd, renamed):
        g2 = Generator(h).eval()
        g2.load_state_dict(source)
        with torch.no_grad():
            torch.testing.assert_close(g2(mel), ref, rtol=0, atol=1e-6)
        folded.load_state_dict(source)  # weight_g/weight_v folded into weight
        with torch.no_grad():
            torch.testing.assert_close(folded(mel), ref, rtol=0, atol=1e-5)
    # and a folded state dict loads back into a weight-normed model
    g3 = Generator(h).eval()
    g3.load_state_dict(folded.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(g3(mel), ref, rtol=0, atol=1e-5)


def test_torch_parametrized_module_loads_with_original_keys():
    """A module built with torch's own parametrization weight norm accepts our saved keys."""
    conv = torch.nn.utils.parametrizations.weight_norm(torch.nn.Conv1d(4, 4, 3))
    from models import weight_norm

    ours = weight_norm(torch.nn.Conv1d(4, 4, 3))
    conv.load_state_dict(ours.state_dict())
    x = torch.randn(1, 4, 9)
    torch.testing.assert_close(conv(x), ours(x))


def test_no_deprecation_warnings_in_normal_use():
    h = tiny_config("v1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g = Generator(h)
        MultiPeriodDiscriminator()
        MultiScaleDiscriminator()
        g(torch.randn(1, h.num_mels, 4))
        g.remove_weight_norm()


@pytest.mark.parametrize("version", VERSIONS)
def test_output_length_is_frames_times_hop(version):
    h = tiny_config(version)
    g = Generator(h)
    for frames in (1, 7, 32):
        assert g(torch.randn(2, h.num_mels, frames)).shape == (2, 1, frames * h.hop_size)


def test_generator_reads_num_mels_from_config():
    h = tiny_config("v3", num_mels=100)
    g = Generator(h)
    assert g.conv_pre.weight_v.shape[1] == 100
    assert g(torch.randn(1, 100, 3)).shape == (1, 1, 3 * 256)


def test_masked_batch_equals_unbatched():
    torch.manual_seed(1)
    h = tiny_config("v1")
    g = Generator(h).eval()
    a, b = torch.randn(1, h.num_mels, 20), torch.randn(1, h.num_mels, 9)
    batch = torch.cat([a, torch.nn.functional.pad(b, (0, 11))])
    with torch.no_grad():
        out = g(batch, lengths=torch.tensor([20, 9]))
        torch.testing.assert_close(out[0:1], g(a), rtol=0, atol=1e-5)
        torch.testing.assert_close(out[1:2, :, : 9 * 256], g(b), rtol=0, atol=1e-5)


def test_discriminator_outputs():
    torch.manual_seed(0)
    y, y_hat = torch.randn(2, 1, 4000), torch.randn(2, 1, 4000)
    rs, gs, fr, fg = MultiPeriodDiscriminator()(y, y_hat)
    assert len(rs) == len(gs) == len(fr) == 5 and all(len(f) == 6 for f in fr)
    # period p: (B, 1, T) -> (B, 1, ceil(T/p), p); the score keeps the period axis
    assert fr[0][0].shape[-1] == 2 and fr[4][0].shape[-1] == 11
    rs, gs, fr, fg = MultiScaleDiscriminator()(y, y_hat)
    assert len(rs) == 3 and all(len(f) == 8 for f in fr)
    assert fr[1][0].shape[-1] == 2001 and fr[2][0].shape[-1] == 1001  # AvgPool1d(4, 2, padding=2)


def test_msd_spectral_norm_only_on_first():
    msd = MultiScaleDiscriminator()
    keys = msd.state_dict().keys()
    assert "discriminators.0.convs.0.weight_orig" in keys and "discriminators.0.convs.0.weight_u" in keys
    assert "discriminators.1.convs.0.weight_g" in keys and "discriminators.1.convs.0.weight_orig" not in keys


def test_remove_weight_norm_function_is_idempotent():
    h = tiny_config("v2")
    g = Generator(h)
    remove_weight_norm(g)
    remove_weight_norm(g)
    assert not any(k.endswith(("weight_g", "weight_v")) for k in g.state_dict())
