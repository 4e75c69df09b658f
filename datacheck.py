"""The data checks behind check_data.py and train.py: every listed wav is opened and classified,
and each problem is one `Problem` whose message names the file and the fix.

A problem is an *error* when training would crash on the file (missing, unreadable, wrong
sampling rate, stereo, too short to validate) or it would poison training (NaN samples), and a
*warning* otherwise: training handles it correctly but the data is probably not what you meant
(clipped, silent, truncated, 8-bit or lossy, duplicated ids, validation clips also in training).
24-bit, 32-bit and float wavs are read correctly here (scaled to [-1, 1]); they are a warning
because the authors' loader (scipy, divided by 32768) misreads them.

Codes (`Problem.code`), per file: missing, empty, not_audio, truncated, sampling_rate, channels,
encoding, nonfinite, silent, clipped, short, missing_mel; per filelist: blank_line, malformed,
duplicate, overlap, too_few, no_validation; for the fine-tuning mels (a sample of them compared
with their wavs): mel_format.

The filelists are read once by `meldataset.read_filelist`; `check_dataset` checks what it read
(train.py then builds its datasets from the same `Filelist`s), `check_filelists` reads and checks.
"""

import math
import os
import struct
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import soundfile as sf

import melformats
from meldataset import MEL_FRAME_TOLERANCE, Filelist, FilelistEntry, load_audio, read_filelist, read_npy
from utils import UserError

CLIPPED_LEVEL = 0.999  # |x| at or above this fraction of full scale counts as clipped
CLIPPED_FRACTION = 1e-3  # clipped when more than 0.1 % of the samples are at full scale...
CLIPPED_MIN_SAMPLES = 10  # ...and at least this many (a normalized peak touches it once or twice)
SILENT_PEAK_DB = -60.0  # a peak below this (dBFS) is (near) silence
BLOCK_FRAMES = 1 << 20  # samples read at a time: memory stays bounded for hour-long files
MAX_WORKERS = 8  # threads reading files (soundfile and numpy release the GIL)
# bytes per sample of the uncompressed encodings (soundfile subtypes); anything else is lossy
SAMPLE_BYTES = dict(PCM_16=2, PCM_24=3, PCM_32=4, FLOAT=4, DOUBLE=8, PCM_U8=1, PCM_S8=1, ULAW=1, ALAW=1)
HIGH_RES = {"PCM_24", "PCM_32", "FLOAT", "DOUBLE"}  # read correctly here, misread by the original
LOW_RES = {"PCM_U8", "PCM_S8", "ULAW", "ALAW"}  # 8-bit: audible quantization noise
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg")
MAX_LISTED_LINES = 10  # blank line numbers quoted in one message
# fine-tuning: mels identified against their wavs before training (about 0.1 s for 10 s of audio
# each); a set made with one frontend shows it in any file
MEL_SAMPLE = 3


class Problem(NamedTuple):
    """One finding: `message` is one line that names the file and the fix."""

    path: str  # the wav (per-file and per-line problems) or the filelist (list-level problems)
    severity: str  # "error" | "warning"
    code: str
    message: str


def format_problem(p: Problem) -> str:
    """The printed line of a problem: `error [code] <path>: <what>; <fix>`."""
    return f"{p.severity} [{p.code}] {p.message}"


# ---------------------------------------------------------------------------------------------
# One file
# ---------------------------------------------------------------------------------------------


def wav_data_shortfall(path: str, size: int, block_align: int) -> tuple[int, int] | None:
    """(frames the RIFF `data` chunk declares, frames present) when the chunk runs past the end of
    the file, else None. soundfile reads such a file without error, silently short."""
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None  # RF64, RIFX, W64 or not a wav: nothing to compare
        offset = 12
        while offset + 8 <= size:
            f.seek(offset)
            chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
            if chunk_id == b"data":
                if chunk_size == 0xFFFFFFFF:  # streaming writers leave the size unknown; libsndfile reads on
                    return None
                present = size - offset - 8
                if chunk_size <= present:
                    return None
                return chunk_size // block_align, present // block_align
            offset += 8 + chunk_size + (chunk_size & 1)  # chunks are padded to even sizes
    return None


def encoding_problem(path: str, subtype: str) -> Problem | None:
    if subtype in HIGH_RES:
        return Problem(
            path,
            "warning",
            "encoding",
            f"{path}: {subtype} samples: read correctly here (scaled to [-1, 1]) but misread by the authors' "
            "loader (divided by 32768); convert to 16-bit PCM only if the data is also used with their code",
        )
    if subtype in LOW_RES:
        return Problem(
            path,
            "warning",
            "encoding",
            f"{path}: 8-bit {subtype} samples: audible quantization noise that the model learns to "
            "reproduce; use 16-bit recordings if you have them",
        )
    if subtype not in SAMPLE_BYTES:
        return Problem(
            path,
            "warning",
            "encoding",
            f"{path}: lossy {subtype} encoding: its coding artifacts end up in the model; use the lossless "
            "original if you have it",
        )
    return None


def sample_stats(f: sf.SoundFile) -> tuple[float, int, int]:
    """(peak of the finite samples, samples at |x| >= CLIPPED_LEVEL, NaN/inf samples) of a mono file."""
    peak, clipped, nonfinite = 0.0, 0, 0
    for block in f.blocks(blocksize=BLOCK_FRAMES, dtype="float32", always_2d=False):
        top = max(float(block.max()), -float(block.min())) if block.size else 0.0
        if not math.isfinite(top):  # only float files can hold NaN/inf
            bad = ~np.isfinite(block)
            nonfinite += int(bad.sum())
            block = block[~bad]
            top = float(np.abs(block).max()) if block.size else 0.0
        peak = max(peak, top)
        if top >= CLIPPED_LEVEL:
            clipped += int(np.count_nonzero(np.abs(block) >= CLIPPED_LEVEL))
    return peak, clipped, nonfinite


def check_wav(path: str, h, validation: bool = False) -> list[Problem]:
    """Problems of one wav for training with config `h` (a validation clip must also be at least
    n_fft samples long: validation would crash on it). Reads the header, then (when the header has
    no error) the samples, block by block."""
    if not os.path.isfile(path):
        return [
            Problem(path, "error", "missing", f"{path}: file not found; add it or remove its line from the filelist")
        ]
    size = os.path.getsize(path)
    if size == 0:
        return [Problem(path, "error", "empty", f"{path}: empty file (0 bytes); copy it again or remove its line")]
    try:
        with sf.SoundFile(path) as f:
            problems = header_problems(path, f, size, h, validation)
            if any(p.severity == "error" for p in problems):
                return problems
            peak, clipped, nonfinite = sample_stats(f)
            frames = f.frames
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OSError) as e:
        reason = getattr(e, "error_string", None) or str(e).splitlines()[0] or type(e).__name__
        return [
            Problem(
                path,
                "error",
                "not_audio",
                f"{path}: not readable as audio ({reason}); re-export it as a 16-bit PCM wav or remove its line",
            )
        ]
    if nonfinite:
        problems.append(
            Problem(
                path,
                "error",
                "nonfinite",
                f"{path}: {nonfinite} NaN/inf samples; they would make the losses NaN: re-export the file or remove it",
            )
        )
    if peak == 0:
        problems.append(
            Problem(
                path,
                "warning",
                "silent",
                f"{path}: silent (every sample is 0; the authors' normalize turns it into NaN, here it stays "
                "silent but teaches nothing); remove it",
            )
        )
    elif 20 * math.log10(peak) < SILENT_PEAK_DB:
        problems.append(
            Problem(
                path,
                "warning",
                "silent",
                f"{path}: near-silent (peak {20 * math.log10(peak):.0f} dBFS): peak normalization amplifies its "
                f"noise {0.95 / peak:.0f}x; remove it or check the recording",
            )
        )
    if clipped >= CLIPPED_MIN_SAMPLES and clipped > CLIPPED_FRACTION * frames:
        problems.append(
            Problem(
                path,
                "warning",
                "clipped",
                f"{path}: {clipped} samples ({100 * clipped / frames:.2f} %) at full scale (|x| >= {CLIPPED_LEVEL}): "
                "clipped audio, whose distortion the model learns; re-record at a lower gain or remove it",
            )
        )
    return problems


def header_problems(path: str, f: sf.SoundFile, size: int, h, validation: bool) -> list[Problem]:
    """Problems visible without reading samples: length, rate, channels, encoding, truncation."""
    problems = []
    if f.frames == 0:
        return [Problem(path, "error", "empty", f"{path}: no audio samples (header only); copy it again or remove it")]
    if f.samplerate != h.sampling_rate:
        problems.append(
            Problem(
                path,
                "error",
                "sampling_rate",
                f"{path}: sampling rate {f.samplerate} Hz, the config expects {h.sampling_rate} Hz; resample it "
                f"(e.g. sox in.wav -r {h.sampling_rate} out.wav) or use a config for {f.samplerate} Hz",
            )
        )
    if f.channels != 1:
        problems.append(
            Problem(
                path,
                "error",
                "channels",
                f"{path}: {f.channels} channels; training needs mono: convert it (e.g. sox in.wav -c 1 out.wav)",
            )
        )
    encoding = encoding_problem(path, f.subtype)
    if encoding is not None:
        problems.append(encoding)
    if f.format == "WAV" and f.subtype in SAMPLE_BYTES:
        shortfall = wav_data_shortfall(path, size, f.channels * SAMPLE_BYTES[f.subtype])
        if shortfall is not None:
            declared, present = shortfall
            problems.append(
                Problem(
                    path,
                    "warning",
                    "truncated",
                    f"{path}: truncated: its header declares {declared} samples ({declared / f.samplerate:.2f} s) "
                    f"but the file holds {present} ({present / f.samplerate:.2f} s), as after an interrupted copy; "
                    "copy or export it again (training uses only the part that is there)",
                )
            )
    if validation:
        if f.frames < h.n_fft:
            problems.append(
                Problem(
                    path,
                    "error",
                    "short",
                    f"{path}: {f.frames} samples, but validation needs at least n_fft = {h.n_fft}; "
                    "list a longer clip in the validation file",
                )
            )
    elif f.frames < h.segment_size:  # validation uses whole clips: segment_size does not matter
        problems.append(
            Problem(
                path,
                "warning",
                "short",
                f"{path}: {f.frames} samples, shorter than segment_size {h.segment_size}: training zero-pads "
                "it (silence in the batch); fine for a few clips, else use longer ones",
            )
        )
    return problems


# ---------------------------------------------------------------------------------------------
# Filelists
# ---------------------------------------------------------------------------------------------


def malformed_reason(entry: FilelistEntry) -> str | None:
    """Why a line is not `<id>|<text>`, guessed only when its wav is not there; None if it is fine."""
    if not entry.uid:
        return "no id before '|'"
    if os.path.isfile(entry.path):
        return None
    if entry.uid.lower().endswith(AUDIO_EXTENSIONS):
        return f"the id '{entry.uid}' ends in a file extension (the wav is <id>.wav)"
    if "|" not in entry.text and any(c in entry.uid for c in ",;\t "):
        return f"no '|' separator in '{entry.text.strip()[:40]}'"
    return None


def filelist_problems(filelist: Filelist) -> list[Problem]:
    """The line-level problems of one filelist: unreadable file, malformed and blank lines."""
    if filelist.unreadable is not None:
        code = "missing" if filelist.unreadable.missing else "malformed"
        return [Problem(filelist.path, "error", code, str(filelist.unreadable))]
    problems = []
    for e in filelist.entries:
        reason = malformed_reason(e)
        if reason:
            problems.append(
                Problem(
                    e.path,
                    "error",
                    "malformed",
                    f"{filelist.path}:{e.line}: {reason}; each line must be <id>|<text> with the audio in "
                    f"{os.path.join(filelist.wavs_dir, '<id>.wav')}",
                )
            )
    blank = filelist.blank_lines
    if blank:
        listed = ", ".join(map(str, blank[:MAX_LISTED_LINES])) + (", ..." if len(blank) > MAX_LISTED_LINES else "")
        problems.append(
            Problem(
                filelist.path,
                "warning",
                "blank_line",
                f"{filelist.path}: {len(blank)} blank line(s) (line {listed}), skipped; remove them",
            )
        )
    return problems


def duplicate_problems(filelist: Filelist) -> list[Problem]:
    first, problems = {}, []
    for e in filelist.entries:
        if e.uid in first:
            problems.append(
                Problem(
                    e.path,
                    "warning",
                    "duplicate",
                    f"{filelist.path}:{e.line}: id {e.uid} repeats line {first[e.uid]}, so it is trained on twice as "
                    "often; remove the duplicate",
                )
            )
        else:
            first[e.uid] = e.line
    return problems


def overlap_problems(training: Filelist, validation: Filelist) -> list[Problem]:
    train_ids = {e.uid for e in training.entries}
    return [
        Problem(
            e.path,
            "warning",
            "overlap",
            f"{validation.path}:{e.line}: id {e.uid} is also in {training.path}, so validation scores training "
            "data; remove it from one of them",
        )
        for e in validation.entries
        if e.uid and e.uid in train_ids
    ]


def run_checks(keys: list[tuple[str, bool]], h, progress: bool) -> dict:
    """check_wav for each (path, validation) key, in threads; a progress bar on a terminal."""
    results = {}
    with ThreadPoolExecutor(max_workers=MAX_WORKERS) as pool:
        done = pool.map(lambda key: check_wav(key[0], h, validation=key[1]), keys)
        if progress and sys.stderr.isatty():
            from tqdm import tqdm

            done = tqdm(done, total=len(keys), desc="checking wavs", unit="file", leave=False)
        for key, problems in zip(keys, done):
            results[key] = problems
    return results


def wav_problems(training: Filelist, validation: Filelist, skip: set, h, progress: bool) -> list[Problem]:
    """`check_wav` of every listed wav not in `skip` (malformed lines), each (path, validation)
    once; a clip in both lists has its problems listed once."""
    keys = {}  # (path, validation) in listing order, each once
    for filelist, is_validation in ((training, False), (validation, True)):
        for e in filelist.entries:
            if e.path not in skip:
                keys.setdefault((e.path, is_validation), None)
    problems, reported = [], set()
    for found in run_checks(list(keys), h, progress).values():
        new = [p for p in found if p not in reported]
        problems += new
        reported.update(new)
    return problems


def mel_problems(paths: list[str], mels_dir: str) -> list[Problem]:
    """Fine-tuning: a missing `<mels_dir>/<id>.npy` for each of `paths` (each once)."""
    problems = []
    for path in dict.fromkeys(paths):
        mel = os.path.join(mels_dir, os.path.splitext(os.path.basename(path))[0] + ".npy")
        if not os.path.isfile(mel):
            problems.append(
                Problem(
                    path,
                    "error",
                    "missing_mel",
                    f"{mel}: mel of {path} not found; fine-tuning needs <input_mels_dir>/<id>.npy for each wav",
                )
            )
    return problems


def mel_format_problems(paths: list[str], mels_dir: str, h, mel_format: str, sample: int = MEL_SAMPLE) -> list[Problem]:
    """Fine-tuning: `sample` of the mels of `paths` (spread over the list; those whose mel and wav
    can be read) identified against their wavs (melformats.declared_mismatch). A mel that is not
    of `mel_format` is an error of the whole set (the path is `mels_dir`, which --skip_bad_files
    cannot leave out), with the diagnosis and the --mel_format that fits, if any."""
    pairs = [
        (p, os.path.join(mels_dir, os.path.splitext(os.path.basename(p))[0] + ".npy")) for p in dict.fromkeys(paths)
    ]
    pairs = [(wav, mel) for wav, mel in pairs if os.path.isfile(wav) and os.path.isfile(mel)]
    if not pairs:
        return []
    picked = sorted({round(i) for i in np.linspace(0, len(pairs) - 1, min(sample, len(pairs)))})
    problems = []
    for wav, mel_path in (pairs[i] for i in picked):
        try:
            mel = read_npy(mel_path)
            audio = load_audio(wav, h.sampling_rate, dataset=True)
            frames = audio.size // h.hop_size
            if mel.ndim < 2 or min(abs(n - frames) for n in mel.shape[-2:]) > MEL_FRAME_TOLERANCE + 1:
                continue  # another clip's mel, or cut: MelDataset names it (and --skip_bad_files can leave it out)
            wrong = melformats.declared_mismatch(mel, audio, h, mel_format)
        except (UserError, ValueError):  # unreadable files are reported by the other checks
            continue
        if wrong:
            problems.append(Problem(mels_dir, "error", "mel_format", f"{mel_path} (against {wav}): {wrong}"))
    return problems


def size_problems(
    training: Filelist, validation: Filelist, bad: set, batch_size: int, world_size: int
) -> list[Problem]:
    """Too few usable training files for one batch per process (`bad`: paths with an error), and
    no usable validation file."""
    problems = []
    usable = sum(e.path not in bad for e in training.entries)
    per_process = batch_size // world_size
    per_process_items = math.ceil(usable / world_size)  # DistributedSampler pads to equal shares
    if training.path not in bad and per_process_items < per_process:
        listed = len(training.entries)
        files = f"{usable} usable training files (of {listed})" if usable < listed else f"{usable} training files"
        batch = f"a batch of {batch_size}" if world_size == 1 else f"a batch of {per_process} per process"
        problems.append(
            Problem(
                training.path,
                "error",
                "too_few",
                f"{training.path}: {files} but {batch} (drop_last would train on nothing); add files or lower "
                "batch_size in the config",
            )
        )
    if validation.path not in bad and not any(e.path not in bad for e in validation.entries):
        problems.append(
            Problem(
                validation.path,
                "warning",
                "no_validation",
                f"{validation.path}: no usable validation files, so validation/mel_spec_error stays 0; list a few "
                "clips that are not in training",
            )
        )
    return problems


def check_dataset(
    training: Filelist,
    validation: Filelist,
    h,
    batch_size: int | None = None,
    world_size: int = 1,
    mels_dir: str | None = None,
    progress: bool = True,
    mel_format: str = "hifigan",
) -> list[Problem]:
    """Every problem of a training set read by `read_filelist`: the filelists' lines, duplicated
    ids, ids in both lists, `check_wav` of every listed file, with `mels_dir` (fine-tuning) a
    missing `<mels_dir>/<id>.npy` and a sample of the mels not of `mel_format` (melformats.MEL_FORMATS),
    and too few usable training files for a batch (global
    `batch_size`, default the config's, split over `world_size` processes)."""
    batch_size = h.batch_size if batch_size is None else batch_size
    problems = filelist_problems(training) + filelist_problems(validation)
    problems += duplicate_problems(training) + duplicate_problems(validation)
    problems += overlap_problems(training, validation)
    malformed = {p.path for p in problems if p.code == "malformed"}
    problems += wav_problems(training, validation, malformed, h, progress)
    if mels_dir is not None:
        listed = [e.path for e in training.entries + validation.entries if e.path not in malformed]
        problems += mel_problems(listed, mels_dir)
        problems += mel_format_problems(listed, mels_dir, h, mel_format)
    elif mel_format != "hifigan":
        message = f"--mel_format {mel_format} is for fine-tuning mels; pass them with --input_mels_dir (train.py: --fine_tuning)"
        problems.append(Problem("--mel_format", "error", "mel_format", message))
    bad = {p.path for p in problems if p.severity == "error"}
    return problems + size_problems(training, validation, bad, batch_size, world_size)


def check_filelists(training_file: str, validation_file: str, wavs_dir: str, h, **options) -> list[Problem]:
    """`check_dataset` of the two filelists, read here (`options`: those of `check_dataset`)."""
    training = read_filelist(training_file, wavs_dir)
    validation = read_filelist(validation_file, wavs_dir)
    return check_dataset(training, validation, h, **options)


def usable_files(paths: list[str], problems: list[Problem]) -> list[str]:
    """`paths` without the files that have an error."""
    bad = {p.path for p in problems if p.severity == "error"}
    return [p for p in paths if p not in bad]


def summary(problems: list[Problem]) -> str:
    """`2 error(s), 1 warning(s) (codes...)`, or `no problems`."""
    if not problems:
        return "no problems"
    errors = sum(p.severity == "error" for p in problems)
    codes = sorted({p.code for p in problems})
    detail = f" ({', '.join(codes)})" if codes else ""
    return f"{errors} error(s), {len(problems) - errors} warning(s){detail}"
