"""The optimized code paths give the reference paths' numbers (README "Performance").

- CPU inference engine (engine.prepare) == the reference Generator.forward, for the real
  V1/V2/V3 configs and after loading an original-format checkpoint; which inputs it supports;
  the synthesis API uses it on CPU where it applies.
- engine.keep_freed_memory: the engine's large blocks are reused (fewer page faults), unless the
  environment sets malloc's thresholds.
- The engine's time tiles of an MRF level == one piece (V1/V2/V3, masks, under synthesis chunking).
- Polyphase rewrite of ConvTranspose1d == ConvTranspose1d for every (kernel, rate) of the configs.
- training.frozen: the generator step's gradients are those computed with unfrozen discriminators.
"""

import copy
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import FIXTURES, VERSIONS, config, needs_fixtures, tiny_config

import engine
import synthesis
from engine import polyphase_weight
from models import (
    Generator,
    MultiScaleDiscriminator,
    discriminator_loss,
    feature_loss,
    generator_loss,
)
from training import frozen

FAST_TOL = 1e-4  # acceptance bound of the issue; measured differences are about 1e-7


def seeded_generator(h, seed: int = 0) -> Generator:
    """Eval-mode generator, weight norm removed, every weight_g x 1.5 (non-trivial activations)."""
    torch.manual_seed(seed)
    g = Generator(h).eval()
    with torch.no_grad():
        for m in g.modules():
            if hasattr(m, "weight_g"):
                m.weight_g.mul_(1.5)
    g.remove_weight_norm()
    return g


def both_paths(g: Generator, x: torch.Tensor, lengths=None):
    """(engine output, reference output) of `g` on `x`, in inference mode."""
    assert engine.supports(g, x)
    with torch.inference_mode():
        fast = engine.prepare(g)(x, lengths)
        ref = g(x, lengths)
    return fast, ref


@pytest.mark.parametrize("version", VERSIONS)
def test_fast_path_equals_reference_real_configs(version):
    h = config(version)
    g = seeded_generator(h)
    x = torch.randn(2, h.num_mels, 9, generator=torch.Generator().manual_seed(1))
    fast, ref = both_paths(g, x)
    assert fast.shape == ref.shape == (2, 1, 9 * h.hop_size)
    assert ref.abs().max() > 0.05  # activations are not trivially small
    assert (fast - ref).abs().max() < FAST_TOL
    # zero-padded batch with lengths: masked like the reference path
    fast, ref = both_paths(g, x, torch.tensor([9, 5]))
    assert (fast - ref).abs().max() < FAST_TOL


@needs_fixtures
@pytest.mark.parametrize("version", ["v2", "v3"])
def test_fast_path_on_original_format_checkpoint(version):
    g = Generator(config(version)).eval()
    ckpt = torch.load(os.path.join(FIXTURES, f"g_{version}_original_format.pt"), map_location="cpu", weights_only=True)
    g.load_state_dict(ckpt["generator"])
    g.remove_weight_norm()
    mel = torch.from_numpy(np.load(os.path.join(FIXTURES, "mel_LJ001-0002.npy")))
    expected = torch.from_numpy(np.load(os.path.join(FIXTURES, f"expected_{version}_LJ001-0002.npy")))
    fast, ref = both_paths(g, mel)
    assert (fast - ref).abs().max() < FAST_TOL
    assert (fast - expected).abs().max() < FAST_TOL  # the authors' output for this checkpoint


@pytest.mark.parametrize("version", VERSIONS)
def test_mrf_time_tiles_equal_one_piece_with_and_without_mask(version, monkeypatch):
    """Tiles of about 40 steps at 32 channels (2 at 512): every level of V1/V2/V3 is tiled, with
    and without a mask, and equals the reference and the untiled engine."""
    monkeypatch.setattr(engine, "TILE_BYTES", 4 * 32 * 40)
    h = config(version)
    g = seeded_generator(h)
    x = torch.randn(1, h.num_mels, 11, generator=torch.Generator().manual_seed(2))
    fast = engine.prepare(g)
    fast(x)  # builds fast._fast with the patched tile size
    tiles = []  # lengths of the pieces the MRF levels ran on
    one_piece = fast._fast._mrf
    monkeypatch.setattr(fast._fast, "_mrf", lambda x, *rest: tiles.append(x.shape[-1]) or one_piece(x, *rest))
    for lengths in (None, torch.tensor([8])):
        tiles.clear()
        with torch.inference_mode():
            tiled = fast(x, lengths)
            ref = g(x, lengths)
        assert len(tiles) > 3 * len(h.upsample_rates), tiles  # several tiles per level
        torch.testing.assert_close(tiled, ref, rtol=0, atol=FAST_TOL)
        fast._fast.tile_bytes = 1 << 40  # one piece per level
        with torch.inference_mode():
            whole = fast(x, lengths)
        fast._fast.tile_bytes = engine.TILE_BYTES
        torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-6)


def test_chunked_synthesis_through_tiled_levels_equals_one_shot(monkeypatch):
    """synthesis chunking (overlap-save) on top of the engine's tiles: the same audio."""
    monkeypatch.setattr(engine, "TILE_BYTES", 4 * 32 * 64)
    h = config("v3")
    g = seeded_generator(h)
    mel = torch.randn(h.num_mels, 60, generator=torch.Generator().manual_seed(3))
    chunked = synthesis.vocode(g, h, mel, chunk_frames=25)
    with torch.inference_mode():
        ref = g(mel.unsqueeze(0))[0, 0].numpy()
    np.testing.assert_allclose(chunked, ref, rtol=0, atol=FAST_TOL)


@pytest.mark.parametrize(
    "kernel,rate",
    sorted({(k, u) for v in VERSIONS for u, k in zip(config(v).upsample_rates, config(v).upsample_kernel_sizes)})
    + [(3, 1), (5, 3), (7, 3), (6, 2)],
)
def test_polyphase_equals_conv_transpose(kernel, rate):
    torch.manual_seed(kernel * 10 + rate)
    c_in, c_out, t = 6, 5, 13
    w, b = torch.randn(c_in, c_out, kernel), torch.randn(c_out)
    x = torch.randn(2, c_in, t)
    padding = (kernel - rate) // 2
    ref = F.conv_transpose1d(x, w, b, stride=rate, padding=padding)
    wp, bp, pad = polyphase_weight(w, b, rate, padding)
    y = F.conv1d(x, wp, bp, padding=pad)  # (B, rate * C_out, T): block phi = samples m * rate + phi
    out = y.view(2, rate, c_out, t).permute(0, 2, 3, 1).reshape(2, c_out, t * rate)
    assert ref.shape == out.shape == (2, c_out, t * rate)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)


def test_polyphase_rejects_other_lengths():
    with pytest.raises(ValueError, match="kernel - rate == 2"):
        polyphase_weight(torch.randn(2, 2, 5), torch.randn(2), 2, 1)


def test_engine_supports_only_what_it_computes():
    h = tiny_config("v1")
    g = Generator(h).eval()
    x = torch.randn(1, h.num_mels, 4)
    assert not engine.supports(g, x)  # weight norm still on
    g.remove_weight_norm()
    assert engine.supports(g, x)
    assert not engine.supports(g, x.to(torch.bfloat16))
    assert not engine.supports(torch.nn.Identity(), x)
    g.train()
    assert not engine.supports(g, x)


def test_tracing_sees_the_reference_graph():
    h = tiny_config("v3")
    g = seeded_generator(h)
    x = torch.randn(1, h.num_mels, 5)
    with torch.no_grad():
        traced = torch.jit.trace(g, x, check_trace=False)
        graph = str(traced.graph)
        assert "_convolution_pointwise" not in graph  # the fast path's oneDNN ops are not traced
        torch.testing.assert_close(traced(x), g(x), rtol=0, atol=FAST_TOL)


def test_fast_weights_follow_parameter_changes_and_state_dict_is_unchanged():
    h = tiny_config("v2")
    g = seeded_generator(h)
    keys = list(g.state_dict())
    x = torch.randn(1, h.num_mels, 6)
    before, _ = both_paths(g, x)
    with torch.no_grad():
        g.ups[1].weight.mul_(1.7)  # in place: same storage, new version
    after, ref = both_paths(g, x)
    assert (after - before).abs().max() > 1e-3
    assert (after - ref).abs().max() < FAST_TOL
    g2 = seeded_generator(h, seed=5)
    g.load_state_dict(g2.state_dict())  # copied into the same parameters
    loaded, ref = both_paths(g, x)
    assert (loaded - ref).abs().max() < FAST_TOL and (loaded - after).abs().max() > 1e-3
    assert list(g.state_dict()) == keys  # the prepared weights are not part of the state dict


def test_model_with_prepared_weights_pickles_and_copies(tmp_path):
    h = tiny_config("v3")
    g = seeded_generator(h)
    x = torch.randn(1, h.num_mels, 5)
    fast, _ = both_paths(g, x)
    assert engine.prepare(g)._fast is not None
    torch.save(g, tmp_path / "g.pt")  # the engine's oneDNN tensors live outside the module
    g2 = torch.load(tmp_path / "g.pt", weights_only=False)
    g3 = copy.deepcopy(g)
    assert engine.prepare(g2)._fast is None and engine.prepare(g3)._fast is None
    for other in (g2, g3):
        again, _ = both_paths(other, x)
        torch.testing.assert_close(again, fast, rtol=0, atol=0)


def test_fallback_without_onednn_fusion(monkeypatch):
    """Builds without oneDNN's fused convolution run the same plan on F.conv2d."""
    monkeypatch.setattr(engine, "_onednn_weight", lambda *args: None)
    for version in VERSIONS:
        h = tiny_config(version)
        g = seeded_generator(h)
        fast, ref = both_paths(g, torch.randn(2, h.num_mels, 7), torch.tensor([7, 3]))
        assert engine.prepare(g)._fast.conv_pre.packed is None
        assert (fast - ref).abs().max() < FAST_TOL


def test_synthesis_asks_for_the_engine_on_cpu_only_where_it_applies(monkeypatch):
    """synthesis.vocode / vocode_batch / generate_stream run the engine for a prepared CPU
    generator (same numbers as the module) and the plain module otherwise (weight norm on)."""
    import synthesis

    prepared = []
    real_prepare = engine.prepare
    monkeypatch.setattr(engine, "prepare", lambda g: prepared.append(g) or real_prepare(g))
    h = tiny_config("v1")
    g = seeded_generator(h)
    mel = torch.randn(h.num_mels, 11, generator=torch.Generator().manual_seed(2)) - 5
    with torch.inference_mode():
        ref = g(mel[None])[0, 0].numpy()
    assert np.abs(synthesis.vocode(g, h, mel) - ref).max() < FAST_TOL and prepared == [g]
    batched = synthesis.vocode_batch(g, h, [mel[None], mel[None, :, :4]])
    assert np.abs(batched[0] - ref).max() < FAST_TOL and len(prepared) == 2
    streamed = np.concatenate(list(synthesis.generate_stream(g, h, [mel[:, :5], mel[:, 5:]])))
    assert np.abs(streamed - ref).max() < FAST_TOL and len(prepared) > 2
    prepared.clear()
    torch.manual_seed(0)
    with_weight_norm = Generator(h).eval()
    synthesis.vocode(with_weight_norm, h, mel)
    assert prepared == []


# ---------------------------------------------------------------------------------------------
# Training step
# ---------------------------------------------------------------------------------------------


def msd_losses(msd, y, y_hat):
    """(discriminator loss, generator adversarial + feature-matching loss) of the MSD."""
    real, fake, fmap_real, fmap_fake = msd(y, y_hat)
    return discriminator_loss(real, fake)[0], generator_loss(fake)[0] + feature_loss(fmap_real, fmap_fake)


# A child process: the second engine call of V2 on 5 s of mel (tensors of 2-14 MB, each a fresh
# mmap under glibc's defaults) -> "<keep_freed_memory applied> <page faults of that call>"
_FAULTS_OF_SECOND_CALL = """
import resource, sys, torch
sys.path.insert(0, {repo!r})
import engine
from models import Generator
from utils import load_config
if not {keep}:
    engine.keep_freed_memory = lambda: False
g = Generator(load_config({config!r})).eval()
g.remove_weight_norm()
x = torch.randn(1, 80, 430)
fast = engine.prepare(g)
fast(x)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
fast(x)
print(engine.keep_freed_memory(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults_of_second_call(keep: bool, env: dict) -> tuple[bool, int]:
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = _FAULTS_OF_SECOND_CALL.format(repo=repo, keep=keep, config=os.path.join(repo, "config_v2.json"))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    applied, faults = out.stdout.split()
    return applied == "True", int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc (Linux) only")
def test_keep_freed_memory_saves_page_faults_and_respects_the_users_settings():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    _, default = _faults_of_second_call(False, env)
    applied, kept = _faults_of_second_call(True, env)
    assert applied and kept < default / 2, (kept, default)  # measured 5k vs 25k
    applied, _ = _faults_of_second_call(True, dict(env, MALLOC_TRIM_THRESHOLD_="131072"))
    assert not applied


def test_frozen_discriminator_gives_the_same_generator_gradients():
    torch.manual_seed(0)
    h = tiny_config("v3")
    g = Generator(h)
    msd = MultiScaleDiscriminator()
    x, y = torch.randn(1, h.num_mels, 4), torch.randn(1, 1, 4 * h.hop_size)
    state = {k: v.clone() for k, v in msd.state_dict().items()}

    def generator_grads():
        _, g_loss = msd_losses(msd, y, g(x))
        g_loss.backward()
        grads = [p.grad.clone() for p in g.parameters()]
        g.zero_grad(set_to_none=True)
        return g_loss.detach(), grads

    loss_ref, grads_ref = generator_grads()
    assert all(p.grad is not None for p in msd.parameters())  # the work `frozen` avoids
    msd.zero_grad(set_to_none=True)
    msd.load_state_dict(state)
    with frozen(msd):
        loss, grads = generator_grads()
    assert all(p.grad is None for p in msd.parameters())
    assert all(p.requires_grad for p in msd.parameters())  # restored
    torch.testing.assert_close(loss, loss_ref, rtol=1e-6, atol=0)
    for got, want in zip(grads, grads_ref):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6 * want.abs().max().item() + 1e-12)
