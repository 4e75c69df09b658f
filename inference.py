"""Inference: wav files (copy-synthesis) -> mel (training frontend) -> generator -> 16-bit wav.

    python inference.py --checkpoint_file cp_hifigan/g_02500000 [--input_wavs_dir test_files]

The Python API used by this script, `inference_e2e.py`, `export.py` and the benchmarks:

- `load_generator(checkpoint_file, config_file=None, device)` -> (generator in eval mode with weight
  norm removed, h); the config is `config.json` beside the checkpoint unless given.
- `vocode(generator, h, mel)` -> float32 audio of exactly `frames * hop_size` samples.
- `generate_stream(generator, h, mel_chunks)` -> audio chunks (streaming TTS); `generate_chunked`
  vocodes a long mel in bounded memory. Both equal one-shot inference (overlap-save with the
  generator's receptive field as context).
- `vocode_files(...)` vocodes a list of wav or `.npy` mel files, batched, one error line per bad
  file, the others still written.
"""

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import torch

from meldataset import LOG_SILENCE, MAX_WAV_VALUE, AudioError, MelError, load_wav, mel_from_config
from models import PRE_POST_KERNEL, Generator
from utils import CheckpointError, ConfigError, UserError, load_checkpoint, load_config

REPO = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CHUNK_FRAMES = 1024  # mel frames per generator call for long inputs (~12 s at hop 256)
MEL_RANGE_SLACK = 0.5  # a mel below log(1e-5) - this is not a natural-log mel of our frontend
MEL_MAX_PLAUSIBLE = 8.0  # natural-log mel magnitudes of [-1, 1] audio stay well below this
DISCRIMINATOR_KEYS = ("mpd", "msd", "optim_g", "optim_d")  # what a do_XXXXXXXX file holds
# --workers auto: below this much audio, starting worker processes (1-3 s each) costs more than
# it saves
AUTO_WORKERS_MIN_SECONDS = 60.0


def notice(msg: str) -> None:
    """One-line notice to stderr (resampling, mixdown, transposed mel...)."""
    print(f"note: {msg}", file=sys.stderr)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


# ---------------------------------------------------------------------------------------------
# Loading the generator
# ---------------------------------------------------------------------------------------------


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


def load_generator(checkpoint_file: str, config_file: str | None = None, device: str | torch.device = "cpu"):
    """Load a `g_XXXXXXXX` checkpoint -> (Generator in eval mode, weight norm removed, on
    `device`; its config `h`). The config is `config.json` beside the checkpoint unless
    `config_file` is given. Raises `CheckpointError` / `ConfigError` with one line naming the fix.
    """
    if not os.path.isfile(checkpoint_file):
        raise CheckpointError(f"{checkpoint_file}: checkpoint not found; check --checkpoint_file")
    if config_file is None:
        config_file = os.path.join(os.path.dirname(os.path.abspath(checkpoint_file)), "config.json")
        if not os.path.isfile(config_file):
            raise ConfigError(
                f"{config_file}: no config.json beside the checkpoint {checkpoint_file}; pass "
                "--config with the config it was trained with (e.g. config_v1.json)"
            )
    h = load_config(config_file)
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda but no CUDA device is available; use --device cpu")
    sd = generator_state_dict(load_checkpoint(checkpoint_file, "cpu"), checkpoint_file)
    generator = Generator(h)
    arch = checkpoint_architecture(sd)
    if arch is not None and _config_mismatch(arch, h):
        diff = _config_mismatch(arch, h)
        have = ", ".join(f"{k} {v}" for k, v in diff.items())
        want = ", ".join(f"{k} {h[k]}" for k in diff)
        match = _matching_repo_configs(arch)
        fix = f"pass --config {match[0]}" if match else "pass --config with the config it was trained with"
        raise CheckpointError(
            f"{checkpoint_file}: trained with another config (checkpoint has {have}; {config_file} has {want}); {fix}"
        )
    try:
        generator.load_state_dict(sd)
    except RuntimeError as e:
        first = str(e).replace("\n", " ").replace("\t", "")[:300]
        raise CheckpointError(
            f"{checkpoint_file}: does not fit the generator of {config_file} ({first}); pass --config "
            "with the config it was trained with"
        ) from None
    generator.remove_weight_norm()
    return generator.eval().to(device), h


# ---------------------------------------------------------------------------------------------
# Input: wav -> mel, mel layouts
# ---------------------------------------------------------------------------------------------


def load_audio(path: str, sampling_rate: int, on_notice: Callable[[str], None] = notice) -> np.ndarray:
    """Read any file soundfile reads -> mono float32 at `sampling_rate` (int16 / 32768 scale);
    multi-channel audio is mixed down and another rate resampled, each with a one-line notice."""
    audio, sr = load_wav(path)
    if audio.ndim == 2:
        on_notice(f"{path}: {audio.shape[1]} channels mixed down to mono")
        audio = audio.mean(axis=1)
    if audio.size == 0:
        raise AudioError(f"{path}: holds no audio samples; remove it or re-export it")
    if not np.isfinite(audio).all():
        raise AudioError(f"{path}: holds NaN or inf samples; re-export it as 16-bit PCM")
    if sr != sampling_rate:
        import librosa

        on_notice(f"{path}: {sr} Hz resampled to {sampling_rate} Hz")
        audio = librosa.resample(audio, orig_sr=sr, target_sr=sampling_rate)
    return np.ascontiguousarray(audio, dtype=np.float32)


def wav_to_mel(path: str, h, on_notice: Callable[[str], None] = notice) -> torch.Tensor:
    """Audio file -> (num_mels, T) log-mel with the training frontend (fmax from the config, no
    normalization, as the original's inference), T = samples // hop_size."""
    audio = load_audio(path, h.sampling_rate, on_notice)
    shortest = max(h.hop_size, (h.n_fft - h.hop_size) // 2 + 1)  # one frame; the reflect padding
    if audio.size < shortest:
        raise AudioError(f"{path}: {audio.size} samples, too short for one mel frame; use at least {shortest}")
    return mel_from_config(torch.from_numpy(audio).unsqueeze(0), h)[0]


def mel_layout(mel, num_mels: int, name: str, on_notice: Callable[[str], None] = notice) -> torch.Tensor:
    """Accept a mel as (num_mels, T), (1, num_mels, T) or (T, num_mels) (numpy or torch) ->
    (1, num_mels, T) float32 tensor. The transposed layout is reported in one line; any other
    shape, a wrong band count or NaN/inf values raise `MelError` naming `name`."""
    mel = torch.as_tensor(np.asarray(mel) if not isinstance(mel, torch.Tensor) else mel)
    shape = tuple(mel.shape)
    expected = f"({num_mels}, T), (1, {num_mels}, T) or (T, {num_mels})"
    if mel.dim() == 3 and mel.shape[0] == 1:
        mel = mel[0]
    if mel.dim() != 2:
        raise MelError(f"{name}: mel of shape {shape}; expected {expected}")
    if mel.shape[0] != num_mels:
        if mel.shape[1] == num_mels:
            on_notice(f"{name}: mel of shape {shape} read as (T, num_mels) and transposed")
            mel = mel.T
        else:
            raise MelError(
                f"{name}: mel of shape {shape} has no axis of {num_mels} bands, the generator's num_mels; "
                f"make mels with the checkpoint's config (num_mels {num_mels}), shaped {expected}"
            )
    if mel.shape[1] == 0:
        raise MelError(f"{name}: mel has 0 frames; regenerate it")
    mel = mel.float()
    if not torch.isfinite(mel).all():
        raise MelError(f"{name}: mel holds NaN or inf values; regenerate it")
    lo, hi = mel.min().item(), mel.max().item()
    if lo < LOG_SILENCE - MEL_RANGE_SLACK or hi > MEL_MAX_PLAUSIBLE:
        on_notice(
            f"{name}: mel values span [{lo:.1f}, {hi:.1f}]; HiFi-GAN expects natural-log mels clamped "
            f"at 1e-5 (>= {LOG_SILENCE:.2f}), the output may be noise"
        )
    return mel.unsqueeze(0).contiguous()


def load_mel_file(path: str, num_mels: int, on_notice: Callable[[str], None] = notice) -> torch.Tensor:
    """`.npy` mel in any accepted layout -> (1, num_mels, T) float32 (`MelError` if unusable)."""
    if not os.path.isfile(path):
        raise MelError(f"{path}: mel file not found")
    try:
        mel = np.load(path, allow_pickle=False)
    except Exception as e:  # numpy raises ValueError, OSError, EOFError... for broken files
        raise MelError(f"{path}: not a readable .npy array ({str(e)[:120]}); save mels with numpy.save") from None
    if not (np.issubdtype(mel.dtype, np.floating) or np.issubdtype(mel.dtype, np.integer)):
        raise MelError(f"{path}: mel of dtype {mel.dtype}; save a float32 array")
    return mel_layout(mel, num_mels, path, on_notice)


# ---------------------------------------------------------------------------------------------
# Generation: one-shot, chunked, streaming, batched
# ---------------------------------------------------------------------------------------------


def receptive_field_frames(h) -> int:
    """One-sided receptive field of the generator in mel frames (rounded up).

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


def _device_of(generator: torch.nn.Module) -> torch.device:
    return next(generator.parameters()).device


def _as_batch(mel: torch.Tensor, num_mels: int, device: torch.device) -> torch.Tensor:
    """(num_mels, T) or (1, num_mels, T) -> (1, num_mels, T) float32 on `device`."""
    mel = torch.as_tensor(mel)
    if mel.dim() == 2:
        mel = mel.unsqueeze(0)
    if mel.dim() != 3 or mel.shape[0] != 1 or mel.shape[1] != num_mels:
        raise MelError(f"mel chunk of shape {tuple(mel.shape)}; expected ({num_mels}, T) or (1, {num_mels}, T)")
    return mel.to(device=device, dtype=torch.float32)


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
    return _overlap_save(generator, h, ((c, False) for c in mel_chunks), chunk_frames, context)


def _overlap_save(generator, h, items: Iterable, chunk_frames: int | None, context: int | None) -> Iterator[np.ndarray]:
    """`generate_stream` on (chunk, is_last) items: knowing the last chunk saves a final call."""
    ctx = receptive_field_frames(h) if context is None else context
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
            with torch.inference_mode():
                y = generator(buf[..., :end])[0, 0, left * hop : (left + n) * hop]
            yield y.float().cpu().numpy()
            start = max(0, left + n - ctx)
            buf, left = buf[..., start:], left + n - start

    for chunk, last in items:
        c = _as_batch(chunk, h.num_mels, device)
        buf = c if buf is None else torch.cat([buf, c], dim=-1)
        yield from emit(final=last)
    yield from emit(final=True)


def generate_chunked(
    generator: torch.nn.Module, h, mel: torch.Tensor, chunk_frames: int = DEFAULT_CHUNK_FRAMES
) -> np.ndarray:
    """A long (num_mels, T) / (1, num_mels, T) mel -> float32 audio, vocoded `chunk_frames`
    frames (plus context on both sides) per generator call, equal to one-shot inference."""
    return np.concatenate(list(_overlap_save(generator, h, [(mel, True)], chunk_frames, None)))


def vocode(generator: torch.nn.Module, h, mel, chunk_frames: int | None = DEFAULT_CHUNK_FRAMES) -> np.ndarray:
    """(num_mels, T) or (1, num_mels, T) mel -> float32 audio of T * hop_size samples in
    [-1, 1]. Mels longer than `chunk_frames` are vocoded in chunks (same result)."""
    device = _device_of(generator)
    x = _as_batch(mel, h.num_mels, device)
    if chunk_frames and x.shape[-1] > chunk_frames:
        return generate_chunked(generator, h, x, chunk_frames)
    with torch.inference_mode():
        return generator(x)[0, 0].float().cpu().numpy()


def vocode_batch(generator: torch.nn.Module, h, mels: list[torch.Tensor]) -> list[np.ndarray]:
    """Several (1, num_mels, T_i) mels in one zero-padded batch -> one float32 array of
    T_i * hop_size samples each; the padding is masked inside the generator, so each output
    equals the unbatched one."""
    if len(mels) == 1:
        return [vocode(generator, h, mels[0], chunk_frames=None)]
    device = _device_of(generator)
    lengths = torch.tensor([m.shape[-1] for m in mels])
    x = torch.zeros(len(mels), h.num_mels, int(lengths.max()), device=device)
    for i, m in enumerate(mels):
        x[i, :, : m.shape[-1]] = m[0].to(device)
    with torch.inference_mode():
        y = generator(x, lengths).float().cpu().numpy()
    return [y[i, 0, : int(n) * h.hop_size] for i, n in enumerate(lengths)]


def to_pcm16(audio: np.ndarray) -> np.ndarray:
    """float audio -> int16 with clipping (the original's cast wraps 1.0 around to -32768)."""
    return np.clip(np.asarray(audio, dtype=np.float64) * MAX_WAV_VALUE, -MAX_WAV_VALUE, MAX_WAV_VALUE - 1).astype(
        np.int16
    )


def write_pcm16(path: str, audio: np.ndarray, sampling_rate: int) -> None:
    import soundfile as sf

    sf.write(path, to_pcm16(audio), sampling_rate, subtype="PCM_16")


# ---------------------------------------------------------------------------------------------
# Files: a folder of wavs or mels -> wavs
# ---------------------------------------------------------------------------------------------


def audio_extensions() -> set[str]:
    """File extensions of the formats soundfile reads (wav, flac, ogg, mp3, aiff...)."""
    import soundfile as sf

    return {"." + f.lower() for f in sf.available_formats()} - {".raw"} | {".aif", ".opus", ".oga"}


def list_inputs(folder: str, kind: str) -> list[str]:
    """Sorted input files of `folder`: audio files (`kind="wav"`) or `.npy` mels (`kind="mel"`)."""
    flag = "--input_wavs_dir" if kind == "wav" else "--input_mels_dir"
    if not os.path.isdir(folder):
        raise UserError(f"{folder}: input folder not found; pass {flag}")
    exts = audio_extensions() if kind == "wav" else {".npy"}
    names = sorted(n for n in os.listdir(folder) if os.path.splitext(n)[1].lower() in exts and not n.startswith("."))
    if not names:
        what = "audio files (.wav, .flac, ...)" if kind == "wav" else ".npy mel files"
        raise UserError(f"{folder}: no {what} found; pass {flag} with the folder that holds them")
    return [os.path.join(folder, n) for n in names]


def estimate_frames(path: str, kind: str, h) -> int:
    """Cheap length of an input in mel frames (header only), for sorting; 0 if unreadable."""
    try:
        if kind == "mel":
            shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
            return int(max(shape)) if shape else 0
        import soundfile as sf

        info = sf.info(path)
        return int(info.frames * h.sampling_rate / info.samplerate) // h.hop_size
    except Exception:  # broken files are reported when they are really read
        return 0


def load_input(path: str, kind: str, h, on_notice: Callable[[str], None] = notice) -> torch.Tensor:
    """An audio file (its mel) or a `.npy` mel -> (1, num_mels, T) float32."""
    if kind == "wav":
        return wav_to_mel(path, h, on_notice).unsqueeze(0)
    return load_mel_file(path, h.num_mels, on_notice)


def output_path(path: str, output_dir: str, suffix: str) -> str:
    return os.path.join(output_dir, os.path.splitext(os.path.basename(path))[0] + suffix + ".wav")


def _error_message(path: str, e: Exception) -> str:
    if isinstance(e, UserError):
        return str(e)
    return f"{path}: {type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"


def vocode_group(
    generator: torch.nn.Module,
    h,
    group: list[str],
    output_dir: str,
    kind: str = "wav",
    suffix: str = "_generated",
    chunk_frames: int | None = DEFAULT_CHUNK_FRAMES,
    debug: bool = False,
    on_notice: Callable[[str], None] = notice,
) -> tuple[int, int, list[tuple[str, str]]]:
    """Vocode the files of `group` in one batch (inputs longer than `chunk_frames` alone, in
    chunks) -> (files written, samples written, [(path, one-line error)] of the failed ones)."""
    done, samples, errors, batch = 0, 0, [], []

    def fail(path: str, e: Exception) -> None:
        if debug:
            raise e
        errors.append((path, _error_message(path, e)))

    def write(path: str, audio: np.ndarray) -> None:
        nonlocal done, samples
        write_pcm16(output_path(path, output_dir, suffix), audio, h.sampling_rate)
        done += 1
        samples += audio.size

    with torch.inference_mode():
        for path in group:
            try:
                mel = load_input(path, kind, h, on_notice)
                if chunk_frames and mel.shape[-1] > chunk_frames:
                    write(path, vocode(generator, h, mel, chunk_frames))
                else:
                    batch.append((path, mel))
            except Exception as e:  # one bad file must not stop the others
                fail(path, e)
        if batch:
            try:
                outs = vocode_batch(generator, h, [m for _, m in batch])
                for (path, _), audio in zip(batch, outs):
                    write(path, audio)
            except Exception as e:
                for path, _ in batch:
                    fail(path, e)
    return done, samples, errors


# NOTE: per-process state of a `--workers` pool process, set once by its initializer (the
# generator is too large to send with every task).
_WORKER_STATE: dict = {}


def _worker_init(state_dict: dict, h, threads: int) -> None:
    torch.set_num_threads(threads)
    generator = Generator(h)
    generator.remove_weight_norm()
    generator.load_state_dict(state_dict)
    _WORKER_STATE.update(generator=generator.eval(), h=h)


def _worker_task(args: tuple):
    """Runs `vocode_group` in a pool process; notices come back as a list."""
    notices = []
    out = vocode_group(_WORKER_STATE["generator"], _WORKER_STATE["h"], *args, on_notice=notices.append)
    return (*out, notices)


def vocode_files(
    generator: torch.nn.Module,
    h,
    paths: list[str],
    output_dir: str,
    kind: str = "wav",
    suffix: str = "_generated",
    batch_size: int = 1,
    chunk_frames: int | None = DEFAULT_CHUNK_FRAMES,
    workers: int = 1,
    progress: bool = False,
    debug: bool = False,
    on_notice: Callable[[str], None] = notice,
    on_error: Callable[[str], None] | None = None,
) -> dict:
    """Vocode `paths` (audio files or `.npy` mels) into `<output_dir>/<name><suffix>.wav`.

    Files are sorted by length (longest first) and vocoded `batch_size` at a time (padding
    masked in the generator); inputs longer than `chunk_frames` are vocoded alone in chunks.
    `workers` > 1 (CPU only; ignored on other devices and with `debug`) spreads the batches over
    that many spawned processes with `torch.get_num_threads() // workers` threads each (call it
    under `if __name__ == "__main__":`). A file that fails is reported through `on_error` in one
    line and the others are still written (with `debug`, the exception propagates).
    Returns {"files", "failed", "seconds", "wall"}.
    """
    if on_error is None:

        def on_error(msg: str) -> None:
            print(f"error: {msg}", file=sys.stderr)

    os.makedirs(output_dir, exist_ok=True)
    start = time.perf_counter()
    order = sorted(paths, key=lambda p: -estimate_frames(p, kind, h))
    groups = [order[i : i + max(1, batch_size)] for i in range(0, len(order), max(1, batch_size))]
    task_args = [(g, output_dir, kind, suffix, chunk_frames) for g in groups]
    done, failed, samples = 0, [], 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(order), unit="file")
    pool = None
    if workers > 1 and not debug and len(groups) > 1 and _device_of(generator).type == "cpu":
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        threads = max(1, torch.get_num_threads() // workers)
        state = {k: v.detach().cpu() for k, v in generator.state_dict().items()}
        pool = ProcessPoolExecutor(
            workers, multiprocessing.get_context("spawn"), initializer=_worker_init, initargs=(state, h, threads)
        )
        results = pool.map(_worker_task, task_args)
    else:
        results = ((*vocode_group(generator, h, *args, debug=debug, on_notice=on_notice), []) for args in task_args)
    try:
        for group, (n, s, errors, notices) in zip(groups, results):
            for msg in notices:
                on_notice(msg)
            for path, msg in errors:
                failed.append(path)
                on_error(msg)
            done, samples = done + n, samples + s
            if bar is not None:
                bar.update(len(group))
    except BrokenProcessPool:
        raise UserError(
            f"the {workers} worker processes died (out of memory, or vocode_files(workers > 1) called from a "
            "script without an `if __name__ == '__main__':` guard); use --workers 1"
        ) from None
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        if bar is not None:
            bar.close()
    return {"files": done, "failed": failed, "seconds": samples / h.sampling_rate, "wall": time.perf_counter() - start}


def auto_workers(paths: list[str], kind: str, h, batch_size: int, device: str) -> int:
    """`--workers 0`: on CPU, one single-threaded process per torch thread (measured faster than
    one process using all threads, see README "Benchmarks") when there are several batches and
    at least `AUTO_WORKERS_MIN_SECONDS` of audio; otherwise 1."""
    if not str(device).startswith("cpu"):
        return 1
    groups = -(-len(paths) // max(1, batch_size))
    seconds = sum(estimate_frames(p, kind, h) for p in paths) * h.hop_size / h.sampling_rate
    if groups < 2 or seconds < AUTO_WORKERS_MIN_SECONDS:
        return 1
    return max(1, min(torch.get_num_threads(), groups))


def summary_line(result: dict) -> str:
    """`12 files, 83.1 s of audio in 4.2 s (19.8x real time)` (+ failures)."""
    wall = max(result["wall"], 1e-9)
    line = (
        f"{result['files']} files, {result['seconds']:.1f} s of audio in {wall:.1f} s "
        f"({result['seconds'] / wall:.1f}x real time)"
    )
    if result["failed"]:
        line += f"; {len(result['failed'])} failed (see the error lines above)"
    return line


# ---------------------------------------------------------------------------------------------
# Command line (shared with inference_e2e.py)
# ---------------------------------------------------------------------------------------------


def build_parser(kind: str) -> argparse.ArgumentParser:
    """Arguments of `inference.py` (`kind="wav"`) or `inference_e2e.py` (`kind="mel"`)."""
    if kind == "wav":
        p = argparse.ArgumentParser(description="Vocode audio files (copy-synthesis) with a HiFi-GAN generator.")
        p.add_argument(
            "--input_wavs_dir", default="test_files", help="folder of audio files (any format soundfile reads)"
        )
        p.add_argument("--output_dir", default="generated_files", help="where <name>_generated.wav are written")
    else:
        p = argparse.ArgumentParser(description="Vocode .npy mel-spectrograms (e.g. from a TTS model) with HiFi-GAN.")
        p.add_argument("--input_mels_dir", default="test_mel_files", help="folder of .npy mels (num_mels, T)")
        p.add_argument(
            "--output_dir", default="generated_files_from_mel", help="where <name>_generated_e2e.wav are written"
        )
    p.add_argument("--checkpoint_file", required=True, help="generator checkpoint g_XXXXXXXX")
    p.add_argument("--config", default=None, help="config JSON (default: config.json beside the checkpoint)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available, else cpu)")
    p.add_argument("--batch_size", type=int, default=1, help="files per generator call (padding is masked)")
    p.add_argument(
        "--chunk_frames",
        type=int,
        default=DEFAULT_CHUNK_FRAMES,
        help="mel frames per generator call for long inputs (bounded memory, same output); 0 = never chunk",
    )
    p.add_argument("--num_threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        help="CPU only: vocode batches in this many processes, each with num_threads / workers threads; "
        "0 (default) = one per thread when there is a minute of audio or more, else 1",
    )
    p.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
    return p


def run(argv: list[str] | None, kind: str) -> int:
    """Parse `argv`, vocode the input folder; exit code 0 (all written), 1 (some files failed)
    or 2 (fatal: bad checkpoint, config, folder or arguments)."""
    a = build_parser(kind).parse_args(argv)
    try:
        if a.batch_size < 1:
            raise UserError(f"--batch_size {a.batch_size}; use 1 or more")
        if a.chunk_frames < 0:
            raise UserError(f"--chunk_frames {a.chunk_frames}; use 0 (no chunking) or a positive number")
        if a.workers < 0:
            raise UserError(f"--workers {a.workers}; use 0 (automatic) or more")
        if a.num_threads:
            torch.set_num_threads(a.num_threads)
        paths = list_inputs(a.input_wavs_dir if kind == "wav" else a.input_mels_dir, kind)
        device = a.device or default_device()
        if a.workers > 1 and not device.startswith("cpu"):
            raise UserError(f"--workers is for CPU inference, the device is {device}; raise --batch_size instead")
        generator, h = load_generator(a.checkpoint_file, a.config, device)
        workers = a.workers or auto_workers(paths, kind, h, a.batch_size, device)
        if workers > 1:
            threads = max(1, torch.get_num_threads() // workers)
            notice(f"{workers} worker processes with {threads} thread{'s' if threads > 1 else ''} each (--workers)")
        result = vocode_files(
            generator,
            h,
            paths,
            a.output_dir,
            kind=kind,
            suffix="_generated" if kind == "wav" else "_generated_e2e",
            batch_size=a.batch_size,
            chunk_frames=a.chunk_frames or None,
            workers=workers,
            progress=sys.stdout.isatty(),
            debug=a.debug,
        )
    except UserError as e:
        if a.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summary_line(result))
    return 1 if result["failed"] else 0


def main(argv: list[str] | None = None) -> None:
    code = run(argv, "wav")
    if code:
        sys.exit(code)


if __name__ == "__main__":
    main()
