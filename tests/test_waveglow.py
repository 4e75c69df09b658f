"""baselines/waveglow.py: sizes and keys of NVIDIA's WaveGlow, invertibility, the loss, numerical
safety, the inverse-weight cache, batching with lengths, the denoiser and the weight loader."""

import json
import math
import os

import pytest
import torch
from conftest import PROGRESS_ENTRIES, REPO, harmonic

from baselines.waveglow import (
    Denoiser,
    WaveGlow,
    count_parameters,
    dequantize,
    load_waveglow_state_dict,
    validate_waveglow_config,
    waveglow_loss,
    waveglow_loss_terms,
)
from utils import CheckpointError, ConfigError, load_checkpoint, load_config

CONFIG = os.path.join(REPO, "configs", "baselines", "config_waveglow.json")
MANIFEST = os.path.join(REPO, "tests", "data", "waveglow_keys.json")
HOP = 256

pytestmark = pytest.mark.usefixtures("one_thread", "no_onednn")


@pytest.fixture(scope="module")
def no_onednn():
    """oneDNN plans the 80x80x1024 transposed conv afresh for every new input shape (about 2 s each
    on CPU, then 0.1 s); these tests use many small shapes, so they run on torch's native kernels."""
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    yield
    torch.backends.mkldnn.enabled = before


def waveglow_config(**overrides):
    """The real config_waveglow.json with `overrides` applied at the top level."""
    h = load_config(CONFIG)
    h.update(overrides)
    return h


def tiny_config(n_channels: int = 16):
    """5 flows, early outputs at flows 2 and 4 (8 -> 6 -> 4 channels), 2-layer WN."""
    wg = dict(n_mel_channels=80, n_flows=5, n_group=8, n_early_every=2, n_early_size=2)
    wg["WN_config"] = dict(n_layers=2, n_channels=n_channels, kernel_size=3)
    return waveglow_config(waveglow_config=wg, segment_size=1024)


def perturbed(model: WaveGlow, seed: int = 0, scale: float = 0.1) -> WaveGlow:
    """Non-trivial couplings (the end convs start at zero) and non-orthogonal 1x1 convs (det > 0)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for wn in model.WN:
            wn.end.weight.normal_(0, scale, generator=gen)
            wn.end.bias.normal_(0, scale, generator=gen)
        for inv in model.convinv:
            w = inv.conv.weight
            w.add_(0.1 * torch.randn(w.shape, generator=gen))
            assert torch.linalg.det(w[:, :, 0]) > 0
    return model


def mel_audio(batch: int = 2, frames: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    mel = torch.randn(batch, 80, frames, generator=gen) - 5
    audio = 0.3 * torch.randn(batch, frames * HOP, generator=gen)
    return mel, audio


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    return WaveGlow(tiny_config())


# ---------------------------------------------------------------------------------------------
# Sizes and keys (NVIDIA/waveglow glow.py, config.json)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n_channels, with_weight_norm, removed", [(256, 87_879_272, 87_731_816), (512, 268_294_760, 267_999_848)]
)
def test_parameter_count_matches_nvidia(n_channels, with_weight_norm, removed):
    h = load_config(CONFIG)
    h["waveglow_config"] = dict(h["waveglow_config"], WN_config=dict(n_layers=8, n_channels=n_channels, kernel_size=3))
    with torch.device("meta"):
        model = WaveGlow(h)
    assert count_parameters(model) == with_weight_norm
    model.remove_weight_norm()
    assert count_parameters(model) == removed


def test_state_dict_keys_and_shapes_equal_nvidia_manifest():
    with open(MANIFEST, encoding="utf-8") as f:
        manifest = json.load(f)["keys"]
    with torch.device("meta"):
        model = WaveGlow(load_config(CONFIG))
    sd = model.state_dict()
    assert list(sd) == list(manifest)  # same keys in the same order
    assert {k: list(v.shape) for k, v in sd.items()} == manifest


def test_config_settings_are_the_published_ones():
    h = load_config(CONFIG)
    assert h.model_family == "waveglow"
    assert (h.batch_size, h.learning_rate, h.seed, h.sigma) == (12, 1e-4, 1234, 1.0)
    assert h.segment_size % HOP == 0 and h.segment_size % h.waveglow_config["n_group"] == 0
    assert h.waveglow_config["WN_config"] == {"n_layers": 8, "n_channels": 256, "kernel_size": 3}


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(n_mel_channels=40), "n_mel_channels 40 != num_mels 80"),
        (dict(n_group=6), "n_group 6 must be even and divide hop_size 256"),
        (dict(n_early_size=4), "leaves fewer than 2"),
    ],
)
def test_bad_waveglow_config_fails_in_one_line(change, match):
    h = load_config(CONFIG)
    h["waveglow_config"] = dict(h["waveglow_config"], **change)
    with pytest.raises(ConfigError, match=match):
        validate_waveglow_config(h, "cfg.json")


# ---------------------------------------------------------------------------------------------
# Flow properties
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("frames", [1, 7])
def test_output_length_is_hop_times_frames(tiny, frames):
    mel, _ = mel_audio(batch=2, frames=frames)
    assert tiny.infer(mel, sigma=0.6).shape == (2, frames * HOP)
    assert tiny.vocode(mel).shape == (2, 1, frames * HOP)


def test_infer_inverts_forward(tiny):
    model = perturbed(tiny)
    mel, audio = mel_audio(batch=2, frames=4)
    z, log_s, _ = model(mel, audio)
    assert z.shape == (2, 8, 4 * HOP // 8)
    assert max(ls.abs().max().item() for ls in log_s) > 1e-3  # the couplings really act
    assert (z - audio.view(2, -1, 8).transpose(1, 2)).abs().max() > 0.1
    torch.testing.assert_close(model.infer(mel, sigma=0.6, z=z), audio, atol=1e-4, rtol=0)


def test_remove_weight_norm_keeps_the_function(tiny):
    model = perturbed(tiny)
    mel, audio = mel_audio()
    z_before = model(mel, audio)[0]
    model.remove_weight_norm()
    assert not any(k.endswith("weight_g") for k in model.state_dict())
    torch.testing.assert_close(model(mel, audio)[0], z_before, atol=1e-5, rtol=1e-5)


def test_at_init_couplings_are_identity_and_loss_is_closed_form(tiny):
    mel, audio = mel_audio(batch=3, frames=4)
    z, log_s, log_det = tiny(mel, audio)
    for ls in log_s:
        assert torch.equal(ls, torch.zeros_like(ls))
    # det W = +1 and the couplings are identities: z is an orthonormal mix of the audio, so
    # sum z^2 = sum audio^2 and the loss is sum audio^2 / (2 sigma^2 B T).
    for ld in log_det:
        assert abs(ld.item()) < 1e-2  # B T log|det W| with |det W| = 1 to fp32 precision
    closed = (audio.double() ** 2).sum() / (2 * 1.0**2 * audio.numel())
    loss = waveglow_loss(z, log_s, log_det, sigma=1.0)
    assert loss.dtype == torch.float32
    assert math.isclose(loss.item(), closed.item() - sum(ld.item() for ld in log_det) / audio.numel(), rel_tol=1e-5)
    assert math.isclose(loss.item(), closed.item(), rel_tol=1e-3)
    prior, s_term, d_term = waveglow_loss_terms(z, log_s, log_det, sigma=2.0)
    assert s_term.item() == 0.0
    torch.testing.assert_close(prior * 4, (audio**2).sum() / (2 * audio.numel()), rtol=1e-5, atol=0)


def test_loss_normalisation_matches_the_definition():
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(2, 8, 10, generator=gen)
    log_s = [torch.randn(2, 4, 10, generator=gen), torch.randn(2, 3, 10, generator=gen)]
    log_det = [torch.tensor(0.7), torch.tensor(-0.2)]
    sigma = 0.8
    want = ((z**2).sum() / (2 * sigma**2) - log_s[0].sum() - log_s[1].sum() - 0.5) / (2 * 8 * 10)
    torch.testing.assert_close(waveglow_loss(z, log_s, log_det, sigma), want)


def test_1x1_conv_log_det_equals_slogdet(tiny):
    perturbed(tiny)
    conv = tiny.convinv[0]
    x = torch.randn(3, 8, 50)
    y, log_det = conv(x)
    w = conv.conv.weight[:, :, 0]
    sign, logabs = torch.linalg.slogdet(w.double())
    assert sign.item() == 1.0 and abs(logabs.item()) > 1e-3
    torch.testing.assert_close(log_det.double(), 3 * 50 * logabs, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y, torch.einsum("ij,bjt->bit", w, x))


def test_inverse_weight_cache_is_reused_and_invalidated(tiny):
    conv = tiny.convinv[2]
    first = conv.inverse_weight()
    assert conv.inverse_weight() is first  # computed once for this weight version
    tiny.infer(mel_audio(frames=2)[0])
    assert conv.inverse_weight() is first  # synthesis reuses it
    opt = torch.optim.SGD(conv.parameters(), lr=0.1)
    conv.conv.weight.grad = torch.randn_like(conv.conv.weight)
    opt.step()  # an in-place update bumps the weight's version
    second = conv.inverse_weight()
    assert second is not first
    torch.testing.assert_close(second[:, :, 0] @ conv.conv.weight[:, :, 0].detach(), torch.eye(6), atol=1e-5, rtol=0)
    tiny.load_state_dict(perturbed(WaveGlow(tiny_config()), seed=3).state_dict())
    assert conv.inverse_weight() is not second


def test_low_precision_keeps_log_det_and_inverse_in_fp32(tiny):
    perturbed(tiny)
    conv = tiny.convinv[0]
    want = torch.linalg.inv(conv.conv.weight[:, :, 0].double())
    tiny.to(torch.bfloat16)
    mel, audio = mel_audio(frames=2)
    z, log_s, log_det = tiny(mel.bfloat16(), audio.bfloat16())
    assert z.dtype == torch.bfloat16 and all(ld.dtype == torch.float32 for ld in log_det)
    assert torch.isfinite(waveglow_loss(z, log_s, log_det))
    inv = conv.inverse_weight(torch.bfloat16)
    assert inv.dtype == torch.bfloat16
    torch.testing.assert_close(inv[:, :, 0].double(), want.bfloat16().double(), atol=1e-2, rtol=1e-2)
    assert tiny.infer(mel.bfloat16()).dtype == torch.bfloat16


def test_noise_follows_the_input_dtype(tiny):
    mel, _ = mel_audio(frames=2)
    out = tiny.double().infer(mel.double(), sigma=0.6, generator=torch.Generator().manual_seed(0))
    assert out.dtype == torch.float64 and out.std() > 0.1


# ---------------------------------------------------------------------------------------------
# Training: numerical safety and a few Adam steps
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["silent", "zero_padded"])
def test_silent_and_zero_padded_segments_give_finite_loss_and_grads(tiny, kind):
    model = perturbed(tiny, scale=0.5)
    mel, audio = mel_audio(batch=2, frames=4)
    if kind == "silent":
        audio = torch.zeros_like(audio)
        mel = torch.full_like(mel, math.log(1e-5))
    else:
        audio[:, audio.size(1) // 3 :] = 0
    y = dequantize(audio, generator=torch.Generator().manual_seed(0))
    assert 0 < (y - audio).abs().max() <= 0.5 / 32768 and not torch.equal(y, audio)
    loss = waveglow_loss(*model(mel, y))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_dequantize_zero_lsb_is_identity():
    x = torch.randn(2, 64)
    assert dequantize(x, lsb=0) is x


def test_a_few_adam_steps_lower_the_loss(tiny):
    torch.manual_seed(0)
    audio = torch.from_numpy(harmonic(seconds=4 * HOP * 2 / 22050 + 1e-3))[: 2 * 4 * HOP].view(2, -1)
    mel = torch.randn(2, 80, 4) - 5
    opt = torch.optim.Adam(tiny.parameters(), lr=1e-3)
    losses = []
    for step in range(8):
        y = dequantize(audio, generator=torch.Generator().manual_seed(step))
        loss = waveglow_loss(*tiny(mel, y), sigma=1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0] - 0.05, losses


# ---------------------------------------------------------------------------------------------
# Synthesis API, denoiser
# ---------------------------------------------------------------------------------------------


def test_vocode_with_lengths_equals_one_item_at_a_time(tiny):
    model = perturbed(tiny)
    mel, _ = mel_audio(batch=3, frames=5)
    lengths = torch.tensor([5, 3, 1])
    for b, n in enumerate(lengths.tolist()):
        mel[b, :, n:] = 0.0  # zero-padded batch
    out = model.vocode(mel, lengths, sigma=0.6, seed=7)
    assert out.shape == (3, 1, 5 * HOP)
    for b, n in enumerate(lengths.tolist()):
        alone = model.vocode(mel[b : b + 1, :, :n], sigma=0.6, seed=7)
        assert alone.shape == (1, 1, n * HOP)
        torch.testing.assert_close(out[b, :, : n * HOP], alone[0], atol=0, rtol=0)
        assert torch.equal(out[b, :, n * HOP :], torch.zeros_like(out[b, :, n * HOP :]))
    assert out[0].std() > 0.1  # real audio-scale noise went through the flows


def test_denoiser_keeps_length_and_removes_the_bias(tiny):
    model = perturbed(tiny)
    denoiser = Denoiser(model)
    assert denoiser.bias_spec.shape == (1, 513, 1) and denoiser.bias_spec.sum() > 0
    audio = model.infer(mel_audio(frames=6)[0], sigma=0.6, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(denoiser(audio, strength=0.0), audio, atol=1e-4, rtol=0)
    cleaned = denoiser(audio.unsqueeze(1), strength=1.0)
    assert cleaned.shape == (2, 1, 6 * HOP)
    assert cleaned.pow(2).sum() < audio.pow(2).sum()
    out = model.vocode(mel_audio(frames=6)[0], sigma=0.6, denoiser_strength=0.1, seed=1)
    assert out.shape == (2, 1, 6 * HOP) and torch.isfinite(out).all()
    assert model.denoiser() is model.denoiser()  # built once per weight version
    assert not any("denoiser" in k or "bias_spec" in k for k in model.state_dict())


# ---------------------------------------------------------------------------------------------
# Loading NVIDIA's weights
# ---------------------------------------------------------------------------------------------


def test_loader_accepts_plain_and_model_dicts(tiny):
    source = perturbed(WaveGlow(tiny_config()), seed=5)
    mel, audio = mel_audio()
    want = source(mel, audio)[0]
    for obj in (source.state_dict(), {"model": source.state_dict(), "iteration": 10}, {"model": source}):
        target = WaveGlow(tiny_config())
        load_waveglow_state_dict(target, obj)
        torch.testing.assert_close(target(mel, audio)[0], want)
    removed = WaveGlow(tiny_config())
    removed.remove_weight_norm()
    load_waveglow_state_dict(removed, source.state_dict())  # weight norm folded on load
    torch.testing.assert_close(removed(mel, audio)[0], want, atol=1e-5, rtol=1e-5)


def test_converted_checkpoint_file_loads_with_weights_only(tmp_path):
    """The README recipe's output: {"model": state_dict} saved by torch.save, read back by
    utils.load_checkpoint (weights_only=True), then loaded."""
    source = perturbed(WaveGlow(tiny_config()), seed=4)
    path = str(tmp_path / "waveglow_state_dict.pt")
    torch.save({"model": source.state_dict()}, path)
    target = load_waveglow_state_dict(WaveGlow(tiny_config()), load_checkpoint(path), source=path)
    mel, audio = mel_audio()
    torch.testing.assert_close(target(mel, audio)[0], source(mel, audio)[0])


def test_loader_fuses_nvidias_old_per_layer_layout():
    source = perturbed(WaveGlow(tiny_config()), seed=6)
    old = {}
    c = 16
    for key, value in source.state_dict().items():
        if ".cond_layer." in key:  # split into 2 layers of 2C outputs
            pre, suffix = key.split(".cond_layer.")
            for i in range(2):
                old[f"{pre}.cond_layers.{i}.{suffix}"] = value[2 * c * i : 2 * c * (i + 1)]
        elif ".res_skip_layers." in key:
            pre, rest = key.split(".res_skip_layers.")
            i, suffix = rest.split(".", 1)
            if i == "0":  # residual C and skip C outputs
                old[f"{pre}.res_layers.0.{suffix}"] = value[:c]
                old[f"{pre}.skip_layers.0.{suffix}"] = value[c:]
            else:
                old[f"{pre}.skip_layers.{i}.{suffix}"] = value
        else:
            old[key] = value
    target = load_waveglow_state_dict(WaveGlow(tiny_config()), {"model": old})
    mel, audio = mel_audio()
    torch.testing.assert_close(target(mel, audio)[0], source(mel, audio)[0])


@pytest.mark.parametrize(
    "obj, match",
    [
        ([1, 2], "not a WaveGlow state dict"),
        ({"model": {"generator": torch.zeros(1)}}, "not a WaveGlow of this config"),
        ("wide", "set waveglow_config.WN_config.n_channels"),
    ],
)
def test_loader_errors_in_one_line(tiny, obj, match):
    if obj == "wide":
        obj = WaveGlow(tiny_config(n_channels=8)).state_dict()
    with pytest.raises(CheckpointError, match=match) as info:
        load_waveglow_state_dict(tiny, obj, source="wg.pt")
    assert "\n" not in str(info.value) and str(info.value).startswith("wg.pt: ")


# ---------------------------------------------------------------------------------------------
# Trained by train.py, then through the synthesis API and the scripts
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def waveglow_run(tmp_path_factory):
    """8 steps of train.py on a tiny WaveGlow (lr 1e-3 so that 8 steps show the loss falling):
    (checkpoint folder, the data, the config path)."""
    from conftest import TINY_WAVEGLOW, make_training_data, run_train, write_baseline_config

    tmp = tmp_path_factory.mktemp("waveglow_run")
    config = write_baseline_config(tmp, "waveglow", learning_rate=1e-3, **TINY_WAVEGLOW)
    data = make_training_data(tmp / "data", n=2)
    cp = run_train(tmp, "--checkpoint_interval", "4", "--validation_interval", "4", config=config, steps=8, data=data)
    return cp, data, config


def test_train_py_trains_logs_and_saves_waveglow_files(waveglow_run):
    from conftest import largest_file, scalar_tags

    cp, _, _ = waveglow_run
    names = {"waveglow_00000004", "waveglow_state_00000004", "waveglow_00000007", "waveglow_state_00000007"}
    assert set(os.listdir(cp)) == {"config.json", "logs"} | names  # nothing a user could take for a g_
    weights, state = (
        load_checkpoint(str(cp / "waveglow_00000007")),
        load_checkpoint(str(cp / "waveglow_state_00000007")),
    )
    assert set(weights) == {"waveglow"} and set(state) == {"optimizer", *PROGRESS_ENTRIES}
    assert state["steps"] == 7 and state["optimizer"]["state"][0]["step"] == 8
    assert "WN.0.start.weight_g" in weights["waveglow"]  # NVIDIA's key names, weight norm kept
    assert largest_file(cp) < 5 * 2**20
    acc = scalar_tags(cp / "logs")
    tags = acc.Tags()
    for term in ("loss", "prior", "log_s", "log_det", "learning_rate"):
        assert f"training/{term}" in tags["scalars"], term
    loss = [e.value for e in acc.Scalars("training/loss")]
    parts = [acc.Scalars(f"training/{t}")[-1].value for t in ("prior", "log_s", "log_det")]
    assert len(loss) == 8 and all(map(math.isfinite, loss)) and math.isclose(sum(parts), loss[-1], rel_tol=1e-5)
    assert max(loss[-3:]) < min(loss[:2]), loss  # maximum likelihood is learning
    assert [e.step for e in acc.Scalars("validation/mel_spec_error")] == [0, 4]  # comparable with HiFi-GAN's
    assert {"generated/y_hat_0", "gt/y_0"} <= set(tags["audio"])


def test_waveglow_run_resumes_where_it_stopped(waveglow_run, tmp_path, capsys):
    import shutil

    from conftest import run_train

    cp, data, config = waveglow_run
    shutil.copytree(cp, tmp_path / "cp")
    run_train(tmp_path, config=config, data=data, steps=10)
    out = capsys.readouterr().out
    resumed = f"{tmp_path}/cp/waveglow_00000007 and {tmp_path}/cp/waveglow_state_00000007 (step 7, epoch 7)"
    assert f"Resuming from {resumed}" in out and "Steps : 8, Loss : " in out and "Steps : 7," not in out
    assert load_checkpoint(str(tmp_path / "cp" / "waveglow_state_00000009"))["optimizer"]["state"][0]["step"] == 10


def test_waveglow_checkpoint_through_the_synthesis_api(waveglow_run):
    import numpy as np

    from baselines.waveglow import WaveGlowVocoder
    from synthesis import load_generator, vocode, vocode_batch

    cp, _, _ = waveglow_run
    generator, h = load_generator(str(cp / "waveglow_00000007"), device="cpu", sigma=0.0)
    assert isinstance(generator, WaveGlowVocoder) and generator.sigma == 0.0
    mel = torch.randn(20, 300, generator=torch.Generator().manual_seed(0)) - 5
    one_shot = vocode(generator, h, mel, chunk_frames=None)
    assert one_shot.shape == (300 * HOP,) and np.abs(one_shot).max() > 0
    chunked = vocode(generator, h, mel, chunk_frames=64)  # overlap-save with 100 frames of context
    np.testing.assert_allclose(chunked, one_shot, rtol=0, atol=1e-5)
    seeded, _ = load_generator(str(cp / "waveglow_00000007"), device="cpu", seed=7)
    mels = [mel[None, :, :40], mel[None, :, 100:125]]
    batch = vocode_batch(seeded, h, mels)
    alone = [vocode_batch(seeded, h, [m])[0] for m in mels]
    for b, a in zip(batch, alone):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-6)  # an item's noise is its own, in any batch
    assert [b.size for b in batch] == [40 * HOP, 25 * HOP]


def test_waveglow_checkpoint_through_the_scripts(waveglow_run, tmp_path, capsys):
    import csv

    import numpy as np
    import soundfile as sf

    import evaluate
    import export
    import inference
    import inference_e2e

    cp, (wavs, _, _), _ = waveglow_run
    checkpoint = str(cp / "waveglow_00000007")
    for out in ("a", "b"):
        inference.main(["--checkpoint_file", checkpoint, "--input_wavs_dir", wavs, "--output_dir",
                        str(tmp_path / out), "--sigma", "0.5", "--seed", "3", "--denoiser_strength", "0.1"])  # fmt: skip
    a, sr = sf.read(tmp_path / "a" / "clip0_generated.wav", dtype="int16")
    b, _ = sf.read(tmp_path / "b" / "clip0_generated.wav", dtype="int16")
    assert sr == 22050 and a.shape == (int(0.6 * 22050) // HOP * HOP,) and np.array_equal(a, b)  # --seed
    (tmp_path / "mels").mkdir()
    np.save(tmp_path / "mels" / "m.npy", np.full((20, 7), -5.0, dtype=np.float32))
    inference_e2e.main(["--checkpoint_file", checkpoint, "--input_mels_dir", str(tmp_path / "mels"),
                        "--output_dir", str(tmp_path / "e2e")])  # fmt: skip
    assert sf.info(tmp_path / "e2e" / "m_generated_e2e.wav").frames == 7 * HOP
    evaluate.main(["--reference_dir", wavs, "--checkpoint_file", checkpoint, "--metrics", "mel_l1",
                   "--output_csv", str(tmp_path / "m.csv"), "--device", "cpu"])  # fmt: skip
    with open(tmp_path / "m.csv") as f:
        assert 0 < float(next(r for r in csv.DictReader(f) if r["file"] == "MEAN")["mel_l1"]) < 20
    capsys.readouterr()
    for main, extra in ((export.main, []), (inference.main, ["--input_wavs_dir", wavs, "--workers", "2"])):
        with pytest.raises(SystemExit) as e:
            main(["--checkpoint_file", checkpoint, "--output_dir", str(tmp_path / "x"), *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert "WaveGlow" in err[0] or "waveglow" in err[0]


def test_converted_nvidia_file_vocodes_through_load_generator(tmp_path):
    """The README's recipe output ({"model": state dict}, weight norm kept, NVIDIA's keys) is a
    checkpoint the synthesis API and scripts take as it is, given the config."""
    from conftest import TINY_WAVEGLOW, write_baseline_config

    from synthesis import load_generator

    config = write_baseline_config(tmp_path, "waveglow", **TINY_WAVEGLOW)
    h = load_config(config)
    torch.manual_seed(0)
    model = perturbed(WaveGlow(h))
    torch.save({"model": model.state_dict()}, tmp_path / "waveglow_256channels_state_dict.pt")
    generator, _ = load_generator(str(tmp_path / "waveglow_256channels_state_dict.pt"), config, "cpu", sigma=0.0)
    mel = torch.randn(1, 20, 5, generator=torch.Generator().manual_seed(1)) - 5
    model.remove_weight_norm()
    torch.testing.assert_close(generator(mel), model.infer(mel, sigma=0.0)[:, None], rtol=0, atol=1e-6)
