"""The synthesis API: a trained generator -> audio, one-shot, batched, chunked or streaming.

    generator, h = load_generator("cp_hifigan/g_02500000")  # config.json beside the checkpoint
    audio = vocode(generator, h, mel)                        # (num_mels, T) -> T * hop_size samples

- `build_generator(h)`: the generator of the config's family (`model_family`, default "hifigan");
  `load_generator(checkpoint_file, config_file=None, device=None)` -> (generator in eval mode with
  weight norm removed, h), with one-line errors for the usual checkpoint mistakes.
- `vocode(generator, h, mel)` -> float32 audio of exactly `frames * hop_size` samples;
  `vocode_batch(generator, h, mels)` vocodes several mels in one masked, zero-padded batch.
- `generate_stream(generator, h, mel_chunks)` -> audio chunks (streaming TTS); `generate_chunked`
  vocodes a long mel in bounded memory. Both equal one-shot inference (overlap-save with
  `receptive_field_frames` of context).
- `wav_to_mel(path, h)`: the copy-synthesis input, the training frontend's mel of an audio file.

On CPU the generator runs through the inference engine (`engine.prepare`, same outputs to float32
rounding); other devices, export, tracing and torch.compile see the plain module. Folders of files
and the command line of inference.py / inference_e2e.py are in synthesis_files.py.
"""

import json
import os
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

import numpy as np
import torch

import engine
from baselines import melgan, waveglow, wavenet
from meldataset import AudioError, load_audio, mel_from_config, mel_layout, notice
from models import PRE_POST_KERNEL, Generator
from utils import (
    CHECKPOINT_DIGITS,
    EMA_PREFIX,
    CheckpointError,
    ConfigError,
    config_beside,
    load_checkpoint,
    load_config,
    resolve_device,
)

REPO = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CHUNK_FRAMES = 1024  # mel frames per generator call for long inputs (~12 s at hop 256)
DISCRIMINATOR_KEYS = ("mpd", "msd", "optim_g", "optim_d")  # what a do_XXXXXXXX file holds


# ---------------------------------------------------------------------------------------------
# Building and loading the generator
# ---------------------------------------------------------------------------------------------


def hifigan_receptive_field_frames(h) -> int:
    """One-sided receptive field of `models.Generator(h)` in mel frames (rounded up).

    A mel frame further than this from an output sample's frame cannot change it, so chunks
    vocoded with this much context on each side equal one-shot inference. Sum over layers of each
    layer's one-sided reach, converted from its sample rate to frames.
    """
    reach = (PRE_POST_KERNEL - 1) / 2  # conv_pre, in frames
    rate = 1  # samples per frame at the current layer's input
    for u, k in zip(h.upsample_rates, h.upsample_kernel_sizes):
        reach += -(-k // u) / rate  # transposed conv: ceil(k / u) input steps
        rate *= u
        mrf = 0
        for kr, dils in zip(h.resblock_kernel_sizes, h.resblock_dilation_sizes):
            half = (kr - 1) // 2
            if str(h.resblock) == "1":
                blk = sum(half * d + half for d in dils)  # conv(k, d) then conv(k, 1) per dilation
            else:
                blk = sum(half * d for d in dils)
            mrf = max(mrf, blk)
        reach += mrf / rate
    reach += (PRE_POST_KERNEL - 1) / 2 / rate  # conv_post
    return int(np.ceil(reach))


class GeneratorFamily(NamedTuple):
    """What synthesis needs of a vocoder family.

    - build(h) -> the module whose weights a checkpoint holds
    - receptive_field_frames(h) -> its one-sided receptive field in mel frames, or None for an
      autoregressive model (never chunked: its state carries from sample to sample)
    - load_weights(model, state, h, checkpoint_file, config_file): the loaded checkpoint file's
      weights into `model`, `CheckpointError` in one line otherwise
    - vocoder(model, h, **options) -> the module mapping mel (B, M, F) [, lengths (B,)] to audio
      (B, 1, F * hop); None: the model itself does
    - options: the names of the synthesis options `vocoder` takes (`load_generator(**options)`)
    """

    build: Callable
    receptive_field_frames: Callable
    load_weights: Callable
    vocoder: Callable | None = None
    options: tuple = ()


def _load_or_explain(model, sd: dict, what: str) -> None:
    """`model.load_state_dict(sd)`, torch's error turned into one `CheckpointError` line:
    `what` names the file and the fix around the reason."""
    try:
        model.load_state_dict(sd)
    except RuntimeError as e:
        first = str(e).replace("\n", " ").replace("\t", "")[:300]
        raise CheckpointError(what.format(reason=first)) from None


def _load_gan_weights(generator, state: dict, h, checkpoint_file: str, config_file: str) -> None:
    sd = generator_state_dict(state, checkpoint_file)
    _check_architecture(sd, h, checkpoint_file, config_file)
    _load_or_explain(
        generator,
        sd,
        f"{checkpoint_file}: does not fit the generator of {config_file} ({{reason}}); pass --config "
        "with the config it was trained with",
    )


def _load_waveglow_weights(model, state: dict, h, checkpoint_file: str, config_file: str) -> None:
    """Ours (`waveglow_XXXXXXXX`: {"waveglow": state dict}) or NVIDIA's converted checkpoint."""
    waveglow.load_waveglow_state_dict(model, state.get("waveglow", state), checkpoint_file)


def _load_wavenet_weights(model, state: dict, h, checkpoint_file: str, config_file: str) -> None:
    """`wavenet_XXXXXXXX`: the EMA weights ("wavenet_ema", what synthesis uses), else "wavenet"."""
    _load_or_explain(
        model,
        state.get("wavenet_ema", state.get("wavenet", state)),
        f"{checkpoint_file}: not a WaveNet of {config_file} ({{reason}}); pass the wavenet_XXXXXXXX file and "
        "--config with the config it was trained with",
    )


# model_family -> its generator; one line per vocoder family
GENERATORS = {
    "hifigan": GeneratorFamily(Generator, hifigan_receptive_field_frames, _load_gan_weights),
    "melgan": GeneratorFamily(melgan.MelGANGenerator, melgan.receptive_field_frames, _load_gan_weights),
    "waveglow": GeneratorFamily(
        waveglow.WaveGlow,
        waveglow.receptive_field_frames,
        _load_waveglow_weights,
        waveglow.WaveGlowVocoder.from_config,
        ("sigma", "denoiser_strength", "seed"),
    ),
    "wavenet": GeneratorFamily(
        wavenet.WaveNet,
        lambda h: None,
        _load_wavenet_weights,
        wavenet.WaveNetVocoder.from_config,
        ("seed", "max_seconds"),
    ),
}


def _family(h) -> GeneratorFamily:
    family = h.get("model_family", "hifigan")
    if family not in GENERATORS:
        raise ConfigError(
            f"model_family {family!r} has no generator in synthesis.GENERATORS ({', '.join(GENERATORS)}); "
            "fix the config or add the family's generator there"
        )
    return GENERATORS[family]


def build_generator(h) -> torch.nn.Module:
    """The (untrained) generator of `h`'s family: `h.get("model_family", "hifigan")`."""
    return _family(h).build(h)


def _weight(sd: dict, prefix: str) -> torch.Tensor | None:
    """The (direction) weight tensor of layer `prefix` in any weight-norm key layout, or None."""
    for suffix in ("weight_v", "weight", "parametrizations.weight.original1"):
        if prefix + suffix in sd:
            return sd[prefix + suffix]
    return None


def checkpoint_architecture(sd: dict) -> dict | None:
    """Config values that a generator state dict reveals through its tensor shapes (None if
    it is not a HiFi-GAN generator): num_mels, upsample_initial_channel, resblock,
    upsample_kernel_sizes, resblock_kernel_sizes."""
    pre = _weight(sd, "conv_pre.")
    if pre is None or pre.dim() != 3:
        return None
    ups = []
    while (w := _weight(sd, f"ups.{len(ups)}.")) is not None:
        ups.append(int(w.shape[-1]))
    resblock = "1" if any(k.startswith("resblocks.0.convs1.") for k in sd) else "2"
    first = "convs1.0." if resblock == "1" else "convs.0."
    rb = []
    while (w := _weight(sd, f"resblocks.{len(rb)}.{first}")) is not None:
        rb.append(int(w.shape[-1]))
    num_kernels = len(rb) // len(ups) if ups else 0
    return {
        "num_mels": int(pre.shape[1]),
        "upsample_initial_channel": int(pre.shape[0]),
        "resblock": resblock,
        "upsample_kernel_sizes": ups,
        "resblock_kernel_sizes": rb[:num_kernels],
    }


def _config_mismatch(arch: dict, h) -> dict:
    return {k: v for k, v in arch.items() if (str(h[k]) if k == "resblock" else h[k]) != v}


def _matching_repo_configs(arch: dict) -> list[str]:
    """Names of this repository's config_v*.json files whose shapes match `arch`."""
    names = sorted(f for f in os.listdir(REPO) if f.startswith("config_v") and f.endswith(".json"))
    found = []
    for name in names:
        with open(os.path.join(REPO, name), encoding="utf-8") as f:
            if not _config_mismatch(arch, json.load(f)):
                found.append(name)
    return found


def generator_state_dict(state: dict, checkpoint_file: str) -> dict:
    """The generator's state dict out of a loaded checkpoint (`{"generator": sd}` as the
    original's g_ files, or a bare state dict); `CheckpointError` for anything else."""
    if "generator" in state:
        return state["generator"]
    if any(k in state for k in DISCRIMINATOR_KEYS):
        raise CheckpointError(
            f"{checkpoint_file}: this is a discriminator/optimizer checkpoint (do_XXXXXXXX), not a "
            "generator; pass the g_XXXXXXXX file of the same step as --checkpoint_file"
        )
    if checkpoint_architecture(state) is not None:
        return state
    keys = ", ".join(list(state)[:5])
    raise CheckpointError(
        f"{checkpoint_file}: no 'generator' entry (keys: {keys}); pass a HiFi-GAN g_XXXXXXXX checkpoint"
    )


def _check_architecture(sd: dict, h, checkpoint_file: str, config_file: str) -> None:
    """`CheckpointError` naming the right config when the checkpoint's shapes are another config's."""
    arch = checkpoint_architecture(sd)
    diff = _config_mismatch(arch, h) if arch is not None else {}
    if not diff:
        return
    have = ", ".join(f"{k} {v}" for k, v in diff.items())
    want = ", ".join(f"{k} {h[k]}" for k in diff)
    match = _matching_repo_configs(arch)
    fix = f"pass --config {match[0]}" if match else "pass --config with the config it was trained with"
    raise CheckpointError(
        f"{checkpoint_file}: trained with another config (checkpoint has {have}; {config_file} has {want}); {fix}"
    )


def ema_file(checkpoint_file: str) -> str:
    """The EMA weights of a GAN checkpoint: `ema_XXXXXXXX` beside `g_XXXXXXXX` (of a run trained
    with `ema_decay`); an `ema_` file is its own. `CheckpointError` when there are none."""
    folder, name = os.path.split(checkpoint_file)
    digits = name[-CHECKPOINT_DIGITS:]
    if name not in (f"g_{digits}", f"{EMA_PREFIX}{digits}") or not digits.isdigit():
        raise CheckpointError(f"{checkpoint_file}: --ema takes a g_XXXXXXXX file (its {EMA_PREFIX}XXXXXXXX is used)")
    path = os.path.join(folder, EMA_PREFIX + digits)
    if not os.path.isfile(path):
        raise CheckpointError(
            f"{path}: not found, so the run of {checkpoint_file} kept no EMA weights; leave out --ema, or train "
            'with "ema_decay" in the config'
        )
    return path


def load_generator(
    checkpoint_file: str,
    config_file: str | None = None,
    device: str | torch.device | None = None,
    ema: bool = False,
    **options,
):
    """Load a generator checkpoint (`g_XXXXXXXX`; WaveGlow `waveglow_XXXXXXXX`, WaveNet
    `wavenet_XXXXXXXX`) -> (the module mapping mel (B, M, F) [, lengths] to audio (B, 1, T), in
    eval mode, weight norm removed, on `device` (default: `utils.default_device()`); its config
    `h`). The config is `config.json` beside the checkpoint unless `config_file` is given. `ema`:
    a GAN's EMA weights, `ema_XXXXXXXX` beside the `g_` file (`ema_file`; WaveNet's file holds
    its EMA and uses it anyway). `options`: the family's synthesis settings (WaveGlow: sigma,
    denoiser_strength, seed; WaveNet: seed, max_seconds); None values mean the defaults. Raises
    `CheckpointError` / `ConfigError` with one line naming the fix."""
    if not os.path.isfile(checkpoint_file):
        raise CheckpointError(f"{checkpoint_file}: checkpoint not found; check --checkpoint_file")
    if config_file is None:
        config_file = config_beside(checkpoint_file)
    h = load_config(config_file)
    family = _family(h)
    if ema and family.load_weights is not _load_gan_weights:
        raise ConfigError(
            f"{config_file}: --ema is for HiFi-GAN and MelGAN checkpoints; a {h.model_family} checkpoint keeps "
            "no separate EMA file (WaveNet synthesizes from its EMA weights by default); leave out --ema"
        )
    checkpoint_file = ema_file(checkpoint_file) if ema else checkpoint_file
    device = resolve_device(device)
    model = family.build(h)
    family.load_weights(model, load_checkpoint(checkpoint_file, "cpu"), h, checkpoint_file, config_file)
    model.remove_weight_norm()
    return as_vocoder(model, h, checkpoint_file, **options).eval().to(device), h


def as_vocoder(model: torch.nn.Module, h, source: str = "config", **options) -> torch.nn.Module:
    """The module of `build_generator(h)` (trained) as the synthesis API runs it: mel (B, M, F)
    [, lengths (B,)] -> audio (B, 1, F * hop). GAN generators are that already; WaveGlow and WaveNet
    get their sampling wrapper with `options` (None values: defaults; others: `ConfigError`)."""
    family = _family(h)
    options = {k: v for k, v in options.items() if v is not None}
    for name in options:
        if name not in family.options:
            takes = ", ".join(family.options) or "none"
            raise ConfigError(
                f"{source}: --{name} is not a setting of a {h.get('model_family', 'hifigan')} "
                f"checkpoint (its settings: {takes}); leave it out"
            )
    return family.vocoder(model, h, **options) if family.vocoder else model


def samples_noise(h) -> bool:
    """Whether the config's family draws noise and takes synthesis options (WaveGlow, WaveNet):
    its loaded generator is a wrapper around the checkpoint's model, not the model itself."""
    return _family(h).vocoder is not None


def check_workload(generator: torch.nn.Module, h, frames: Iterable[int], on_notice=notice) -> None:
    """Before vocoding mels of `frames` frames: a generator that is slow per sample (WaveNet) says
    how long it will take and refuses more than its limit (`UserError`); the others pass."""
    check = getattr(generator, "check_workload", None)
    if check is not None:
        check(sum(frames) * h.hop_size / h.sampling_rate, h.sampling_rate, on_notice)


# ---------------------------------------------------------------------------------------------
# Input: wav -> mel (copy-synthesis)
# ---------------------------------------------------------------------------------------------


def wav_to_mel(path: str, h, on_notice: Callable[[str], None] = notice) -> torch.Tensor:
    """Audio file -> (num_mels, T) log-mel with the training frontend (fmax from the config, no
    normalization, as the original's inference), T = samples // hop_size. Other rates are
    resampled and several channels mixed down, each with a one-line notice."""
    audio = load_audio(path, h.sampling_rate, resample_to_rate=True, mixdown=True, on_notice=on_notice)
    shortest = max(h.hop_size, (h.n_fft - h.hop_size) // 2 + 1)  # one frame; the reflect padding
    if audio.size < shortest:
        raise AudioError(f"{path}: {audio.size} samples, too short for one mel frame; use at least {shortest}")
    return mel_from_config(torch.from_numpy(audio).unsqueeze(0), h)[0]


# ---------------------------------------------------------------------------------------------
# Generation: one-shot, batched, chunked, streaming
# ---------------------------------------------------------------------------------------------


def receptive_field_frames(h) -> int | None:
    """One-sided receptive field of the config's generator in mel frames (rounded up): a mel frame
    further than this from an output sample's frame cannot change it, so chunks vocoded with this
    much context on each side equal one-shot inference. None: an autoregressive generator, which
    is never chunked."""
    return _family(h).receptive_field_frames(h)


def _device_of(generator: torch.nn.Module) -> torch.device:
    return next(generator.parameters()).device


def _forward_for(generator: torch.nn.Module, x: torch.Tensor) -> Callable:
    """What computes `generator(x, lengths)`: the CPU engine where it applies, else the module."""
    return engine.prepare(generator) if engine.supports(generator, x) else generator


def vocode_batch(
    generator: torch.nn.Module, h, mels: list[torch.Tensor], chunk_frames: int | None = None
) -> list[np.ndarray]:
    """(1, num_mels, T_i) mels -> one float32 array of T_i * hop_size samples each.

    Mels longer than `chunk_frames` are vocoded alone, in chunks with overlap-save (this is the one
    place that decides to chunk); the others in one zero-padded batch whose padding is masked
    inside the generator, so each output equals the unbatched one."""
    outs: list = [None] * len(mels)
    short = []
    if receptive_field_frames(h) is None:  # autoregressive: bounded memory without chunks
        chunk_frames = None
    for i, m in enumerate(mels):
        if chunk_frames and m.shape[-1] > chunk_frames:
            outs[i] = np.concatenate(list(_overlap_save(generator, h, [(m, True)], chunk_frames, None)))
        else:
            short.append(i)
    if not short:
        return outs
    device = _device_of(generator)
    lengths = torch.tensor([mels[i].shape[-1] for i in short])
    if len(short) == 1:
        x = mels[short[0]].to(device=device, dtype=torch.float32)
    else:
        x = torch.zeros(len(short), h.num_mels, int(lengths.max()), device=device)
        for row, i in enumerate(short):
            x[row, :, : mels[i].shape[-1]] = mels[i][0].to(device)
    forward = _forward_for(generator, x)
    with torch.inference_mode():
        y = (forward(x) if len(short) == 1 else forward(x, lengths)).float().cpu().numpy()
    for row, i in enumerate(short):
        outs[i] = y[row, 0, : int(lengths[row]) * h.hop_size]
    return outs


def vocode(
    generator: torch.nn.Module,
    h,
    mel,
    chunk_frames: int | None = DEFAULT_CHUNK_FRAMES,
    on_notice: Callable[[str], None] = notice,
) -> np.ndarray:
    """A mel in any accepted layout ((num_mels, T), (1, num_mels, T) or (T, num_mels), see
    `meldataset.mel_layout`) -> float32 audio of T * hop_size samples in [-1, 1]. Mels longer
    than `chunk_frames` are vocoded in chunks (same result)."""
    return vocode_batch(generator, h, [mel_layout(mel, h.num_mels, "mel", on_notice)], chunk_frames)[0]


def generate_stream(
    generator: torch.nn.Module,
    h,
    mel_chunks: Iterable,
    chunk_frames: int | None = None,
    context: int | None = None,
) -> Iterator[np.ndarray]:
    """Mel chunks in ((num_mels, t) or (1, num_mels, t), any sizes) -> float32 audio chunks out.

    Overlap-save: every frame is vocoded with `context` frames (default: the receptive field) on
    both sides, so the concatenated output equals one-shot inference on the whole mel (to float
    rounding) and has exactly `total_frames * hop_size` samples. Audio for a frame is yielded
    once `context` later frames have arrived (all of it when the input ends). `chunk_frames`
    caps the frames per generator call (bounded memory for long chunks).
    """
    chunks = ((mel_layout(c, h.num_mels, "mel chunk", min_frames=0), False) for c in mel_chunks)
    return _overlap_save(generator, h, chunks, chunk_frames, context)


def _overlap_save(generator, h, items: Iterable, chunk_frames: int | None, context: int | None) -> Iterator[np.ndarray]:
    """`generate_stream` on ((1, num_mels, t) chunk, is_last) items: knowing the last chunk saves a
    final call."""
    ctx = receptive_field_frames(h) if context is None else context
    if ctx is None:
        raise ConfigError(
            f"model_family {h.get('model_family')!r} generates sample by sample and does not stream in mel "
            "chunks; vocode the whole mel with synthesis.vocode"
        )
    hop = h.hop_size
    device = _device_of(generator)
    buf, left = None, 0  # buf: kept frames; its first `left` were already vocoded (left context)

    def emit(final: bool):
        nonlocal buf, left
        while buf is not None:
            pending = buf.shape[-1] - left - (0 if final else ctx)
            if pending <= 0:
                return
            n = pending if chunk_frames is None else min(pending, chunk_frames)
            end = min(buf.shape[-1], left + n + ctx)
            x = buf[..., :end]
            with torch.inference_mode():
                y = _forward_for(generator, x)(x)[0, 0, left * hop : (left + n) * hop]
            yield y.float().cpu().numpy()
            start = max(0, left + n - ctx)
            buf, left = buf[..., start:], left + n - start

    for chunk, last in items:
        c = chunk.to(device)
        buf = c if buf is None else torch.cat([buf, c], dim=-1)
        yield from emit(final=last)
    yield from emit(final=True)


def generate_chunked(
    generator: torch.nn.Module, h, mel: torch.Tensor, chunk_frames: int = DEFAULT_CHUNK_FRAMES
) -> np.ndarray:
    """A long mel (any layout `vocode` accepts) -> float32 audio, vocoded `chunk_frames` frames
    (plus context on both sides) per generator call, equal to one-shot inference."""
    return vocode_batch(generator, h, [mel_layout(mel, h.num_mels, "mel")], chunk_frames)[0]
