"""Folders of files through the synthesis API, and the work of inference.py (wav files,
copy-synthesis) and inference_e2e.py (`.npy` mels from a TTS model) once they parsed their options.

- `vocode_files(generator, h, paths, output_dir)` vocodes a list of audio or `.npy` mel files into
  `<output_dir>/<name><suffix>.wav`: sorted by length, batched, long inputs in chunks, optionally
  in several CPU worker threads; one error line per bad file, the others still written.
- `SHARED_OPTIONS`: the options both scripts add to their parser; `run(a, kind)`: what they do with
  the parsed options (`kind` "wav" or "mel").

The path of one file: run -> vocode_files -> synthesis.vocode_batch -> generator. Each input's
header is read once (its length, for sorting and --workers), its mel layout normalised once (when
it is loaded) and chunking decided once (in vocode_batch).
"""

import os
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

from meldataset import load_mel, notice, write_pcm16
from melformats import load_mel_as
from synthesis import (
    DEFAULT_CHUNK_FRAMES,
    check_workload,
    load_generator,
    samples_noise,
    vocode_batch,
    wav_to_mel,
)
from utils import UserError, default_device, exit_with_user_error

# --workers auto: below this much audio, worker threads measured no faster than one worker using
# all threads (4 files of 2 s, V1 and V2: equal within noise)
AUTO_WORKERS_MIN_SECONDS = 60.0


# ---------------------------------------------------------------------------------------------
# Input files
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
    """Cheap length of an input in mel frames (header only), for sorting and the workload
    estimate; 0 if unreadable."""
    try:
        if kind == "mel":
            shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
            if len(shape) >= 2 and h.num_mels in shape[-2:]:  # (..., num_mels, T) or (T, num_mels)
                return int(shape[-1] if shape[-2] == h.num_mels else shape[-2])
            return int(max(shape)) if shape else 0
        import soundfile as sf

        info = sf.info(path)
        return int(info.frames * h.sampling_rate / info.samplerate) // h.hop_size
    except Exception:  # broken files are reported when they are really read
        return 0


def load_input(
    path: str, kind: str, h, on_notice: Callable[[str], None] = notice, mel_format: str = "hifigan"
) -> torch.Tensor:
    """An audio file (its mel) or a `.npy` mel in any accepted layout -> (1, num_mels, T) float32;
    a mel of another `mel_format` (melformats.MEL_FORMATS) is converted into this frontend."""
    if kind == "wav":
        return wav_to_mel(path, h, on_notice).unsqueeze(0)
    if mel_format != "hifigan":
        return load_mel_as(path, h, mel_format, on_notice)
    return load_mel(path, h.num_mels, on_notice)


def output_path(path: str, output_dir: str, suffix: str) -> str:
    return os.path.join(output_dir, os.path.splitext(os.path.basename(path))[0] + suffix + ".wav")


def _error_message(path: str, e: Exception) -> str:
    if isinstance(e, UserError):
        return str(e)
    return f"{path}: {type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"


def _print_error(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)


def _progress_bar(total: int):
    from tqdm import tqdm

    return tqdm(total=total, unit="file")


# ---------------------------------------------------------------------------------------------
# Files -> wavs
# ---------------------------------------------------------------------------------------------


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
    on_error: Callable[[str], None] = _print_error,
    lengths: dict[str, int] | None = None,
    mel_format: str = "hifigan",
) -> dict:
    """Vocode `paths` (audio files or `.npy` mels) into `<output_dir>/<name><suffix>.wav`.

    Files are sorted by length (longest first; `lengths` {path: frames} when the caller already
    has them, else `estimate_frames`) and vocoded `batch_size` at a time (padding masked in the
    generator); inputs longer than `chunk_frames` are vocoded alone in chunks. `workers` > 1 (CPU
    only; ignored on other devices and with `debug`) spreads the batches over that many worker
    threads with `torch.get_num_threads() // workers` intra-op threads each. A file that fails is
    reported through `on_error` in one line and the others are still written (with `debug`, the
    exception propagates). `mel_format`: the format of `.npy` mels (see `load_input`).
    Returns {"files", "failed", "seconds", "wall"}.
    """
    os.makedirs(output_dir, exist_ok=True)
    start = time.perf_counter()
    lengths = lengths or {p: estimate_frames(p, kind, h) for p in paths}
    order = sorted(paths, key=lambda p: -lengths.get(p, 0))
    step = max(1, batch_size)
    groups = [order[i : i + step] for i in range(0, len(order), step)]
    totals = {"files": 0, "failed": [], "samples": 0}
    bar = _progress_bar(len(order)) if progress else None

    def fail(path: str, e: Exception) -> None:
        if debug:
            raise e
        totals["failed"].append(path)
        on_error(_error_message(path, e))

    try:
        if workers > 1 and not debug and len(groups) > 1 and next(generator.parameters()).device.type == "cpu":
            jobs = [
                (g, output_dir, kind, suffix, chunk_frames, {p: lengths.get(p, 0) for p in g}, mel_format)
                for g in groups
            ]
            _in_workers(generator, h, jobs, workers, totals, on_notice, on_error, bar)
        else:
            for group in groups:
                loaded = []
                for path in group:
                    try:
                        loaded.append((path, load_input(path, kind, h, on_notice, mel_format)))
                    except Exception as e:  # one bad file must not stop the others
                        fail(path, e)
                try:
                    audios = vocode_batch(generator, h, [m for _, m in loaded], chunk_frames)
                    for (path, _), audio in zip(loaded, audios):
                        write_pcm16(output_path(path, output_dir, suffix), audio, h.sampling_rate)
                        totals["files"] += 1
                        totals["samples"] += audio.size
                except Exception as e:
                    for path, _ in loaded:
                        fail(path, e)
                if bar is not None:
                    bar.update(len(group))
    finally:
        if bar is not None:
            bar.close()
    seconds = totals["samples"] / h.sampling_rate
    return {
        "files": totals["files"],
        "failed": totals["failed"],
        "seconds": seconds,
        "wall": time.perf_counter() - start,
    }


def _worker_task(generator, h, job: tuple, threads: int) -> tuple[dict, list[str], list[str]]:
    """One batch of `vocode_files` in a worker thread -> (its result, notices, error lines)."""
    group, output_dir, kind, suffix, chunk_frames, lengths, mel_format = job
    torch.set_num_threads(threads)
    notices, errors = [], []
    result = vocode_files(
        generator,
        h,
        group,
        output_dir,
        kind,
        suffix,
        batch_size=len(group),
        chunk_frames=chunk_frames,
        on_notice=notices.append,
        on_error=errors.append,
        lengths=lengths,
        mel_format=mel_format,
    )
    return result, notices, errors


def _in_workers(generator, h, jobs: list[tuple], workers: int, totals: dict, on_notice, on_error, bar) -> None:
    """`vocode_files`' batches (`jobs`) in `workers` threads sharing the generator, with
    `torch.get_num_threads() // workers` intra-op threads each (torch's count is per process:
    it is set for the run and restored after); their notices and error lines are passed on and
    their counts added to `totals`, batch by batch in order.

    NOTE: threads, not processes: torch's kernels release the GIL, so two single-threaded
    workers use two cores (measured as fast as two processes) without each process's start,
    imports and copy of the weights (1-3 s per worker); while one thread reads or writes a file,
    the other computes."""
    from concurrent.futures import ThreadPoolExecutor

    previous = torch.get_num_threads()
    threads = max(1, previous // workers)
    torch.set_num_threads(threads)
    try:
        with ThreadPoolExecutor(workers, thread_name_prefix="vocode") as pool:
            results = pool.map(lambda job: _worker_task(generator, h, job, threads), jobs)
            for job, (result, notices, errors) in zip(jobs, results):
                for msg in notices:
                    on_notice(msg)
                for msg in errors:
                    on_error(msg)
                totals["files"] += result["files"]
                totals["failed"] += result["failed"]
                totals["samples"] += round(result["seconds"] * h.sampling_rate)
                if bar is not None:
                    bar.update(len(job[0]))
    finally:
        torch.set_num_threads(previous)


def auto_workers(paths: list[str], kind: str, h, batch_size: int, device: str, lengths: dict | None = None) -> int:
    """`--workers 0`: on CPU, one worker thread with one torch thread per torch thread (measured
    faster than one worker using all threads, see README "Benchmarks") when there are several batches and
    at least `AUTO_WORKERS_MIN_SECONDS` of audio; otherwise 1. `lengths` as in `vocode_files`."""
    if not str(device).startswith("cpu"):
        return 1
    groups = -(-len(paths) // max(1, batch_size))
    frames = lengths.values() if lengths is not None else (estimate_frames(p, kind, h) for p in paths)
    seconds = sum(frames) * h.hop_size / h.sampling_rate
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
# The commands inference.py (kind "wav") and inference_e2e.py (kind "mel"), after parsing
# ---------------------------------------------------------------------------------------------


# Options of both commands: (flag, argparse keywords); each script adds its input folder first.
# WaveGlow's and WaveNet's sampling settings (inference.py, inference_e2e.py, evaluate.py)
SAMPLING_OPTIONS = (
    (
        "--sigma",
        dict(type=float, default=None, help="WaveGlow: std of the noise (default: the config's infer_sigma, 0.6)"),
    ),
    (
        "--denoiser_strength",
        dict(
            type=float,
            default=None,
            help="WaveGlow: subtract this x its bias spectrum (default: the config's, 0 = off)",
        ),
    ),
    (
        "--seed",
        dict(type=int, default=None, help="WaveGlow, WaveNet: seed of each file's noise (default: the config's seed)"),
    ),
    (
        "--max_seconds",
        dict(
            type=float,
            default=None,
            help="WaveNet: generate at most this many seconds of audio in one run (default 10; it says how long first)",
        ),
    ),
)
SHARED_OPTIONS = (
    (
        "--checkpoint_file",
        dict(
            required=True, help="generator checkpoint g_XXXXXXXX (WaveGlow waveglow_XXXXXXXX, WaveNet wavenet_XXXXXXXX)"
        ),
    ),
    ("--config", dict(default=None, help="config JSON (default: config.json beside the checkpoint)")),
    (
        "--ema",
        dict(
            action="store_true",
            help="use the EMA weights ema_XXXXXXXX beside the g_XXXXXXXX file (a run trained with ema_decay)",
        ),
    ),
    ("--device", dict(default=None, help="cpu, cuda or cuda:N (default: cuda when available, else cpu)")),
    ("--batch_size", dict(type=int, default=1, help="files per generator call (padding is masked)")),
    (
        "--chunk_frames",
        dict(
            type=int,
            default=DEFAULT_CHUNK_FRAMES,
            help="mel frames per generator call for long inputs (bounded memory, same output); 0 = never chunk",
        ),
    ),
    ("--num_threads", dict(type=int, default=None, help="CPU threads for torch (default: torch's choice)")),
    (
        "--workers",
        dict(
            type=int,
            default=0,
            help="CPU only: vocode batches in this many worker threads, each with num_threads / workers torch threads; "
            "0 (default) = one per thread when there is a minute of audio or more, else 1",
        ),
    ),
    *SAMPLING_OPTIONS,
    ("--debug", dict(action="store_true", help="show full tracebacks instead of one-line errors")),
)
SYNTHESIS_SETTINGS = tuple(flag[2:] for flag, _ in SAMPLING_OPTIONS)  # passed to load_generator


def _check_arguments(a) -> None:
    if a.batch_size < 1:
        raise UserError(f"--batch_size {a.batch_size}; use 1 or more")
    if a.chunk_frames < 0:
        raise UserError(f"--chunk_frames {a.chunk_frames}; use 0 (no chunking) or a positive number")
    if a.workers < 0:
        raise UserError(f"--workers {a.workers}; use 0 (automatic) or more")


def run(a, kind: str) -> None:
    """The work of inference.py (`kind="wav"`) and inference_e2e.py (`kind="mel"`) once they have
    parsed their options `a` (`SHARED_OPTIONS` plus the input folder and --output_dir): vocode the
    input folder. Returns when every file was written; exits with status 1 when some files failed
    (one error line each) and 2 on a fatal user error (bad checkpoint, config, folder or arguments:
    its one line, or the traceback with --debug)."""
    try:
        _check_arguments(a)
        if a.num_threads:
            torch.set_num_threads(a.num_threads)
        paths = list_inputs(a.input_wavs_dir if kind == "wav" else a.input_mels_dir, kind)
        device = a.device or default_device()
        if a.workers > 1 and not device.startswith("cpu"):
            raise UserError(f"--workers is for CPU inference, the device is {device}; raise --batch_size instead")
        settings = {name: getattr(a, name) for name in SYNTHESIS_SETTINGS}
        generator, h = load_generator(a.checkpoint_file, a.config, device, ema=a.ema, **settings)
        lengths = {p: estimate_frames(p, kind, h) for p in paths}  # each header read once
        check_workload(generator, h, lengths.values())
        if a.workers > 1 and samples_noise(h):
            raise UserError(f"--workers is for GAN generators; {h.model_family} runs in one process, use --batch_size")
        workers = 1 if samples_noise(h) else a.workers or auto_workers(paths, kind, h, a.batch_size, device, lengths)
        if workers > 1:
            threads = max(1, torch.get_num_threads() // workers)
            notice(f"{workers} worker threads with {threads} torch thread{'s' if threads > 1 else ''} each (--workers)")
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
            lengths=lengths,
            mel_format=getattr(a, "mel_format", "hifigan"),
        )
    except UserError as e:
        exit_with_user_error(e, a.debug)
    print(summary_line(result))
    if result["failed"]:
        sys.exit(1)
