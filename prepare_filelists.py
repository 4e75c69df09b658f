"""Write `training.txt` / `validation.txt` filelists (LJSpeech format) for a folder of wavs.

    python prepare_filelists.py --wavs_dir my_data/wavs --validation_size 100
    python prepare_filelists.py --wavs_dir LJSpeech-1.1/wavs --metadata LJSpeech-1.1/metadata.csv \\
        --output_dir my_split --validation_fraction 0.02 --seed 1234

Entries are the lines of an LJSpeech-style `metadata.csv` (`id|text|normalized text`) whose
`<id>.wav` exists, or else every `*.wav` of --wavs_dir (text then left empty: training reads only
the id, see meldataset.read_filelist). Each wav is checked with datacheck.check_wav when
datacheck.py is present (files with errors are left out and listed; warnings are listed only).
The validation set is drawn with a seeded random generator: the same input and seed give the
same split; training and validation never share an id.
"""

import argparse
import os
import random

from utils import DEFAULT_CONFIG, UserError, exit_with_user_error, load_config

FILELISTS = ("training.txt", "validation.txt")


def read_metadata(path: str) -> list[tuple[str, str, str]]:
    """`id|text|normalized` lines -> (id, text, normalized); a missing normalized text repeats
    the text. Blank lines are skipped; a repeated id is a UserError (it would leak across the split)."""
    if not os.path.isfile(path):
        raise UserError(f"{path}: metadata file not found; check --metadata")
    entries, seen = [], {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("|")
            uid = fields[0].strip()
            if not uid:
                raise UserError(f"{path}:{number}: empty id; each line must be id|text|normalized text")
            if uid in seen:
                raise UserError(f"{path}:{number}: id {uid} repeats line {seen[uid]}; remove the duplicate")
            seen[uid] = number
            text = fields[1] if len(fields) > 1 else ""
            normalized = fields[2] if len(fields) > 2 else text
            entries.append((uid, text, normalized))
    return entries


def scan_wavs(wavs_dir: str) -> list[tuple[str, str, str]]:
    """(id, "", "") for every `*.wav` directly in `wavs_dir`, sorted by id."""
    if not os.path.isdir(wavs_dir):
        raise UserError(f"{wavs_dir}: folder not found; check --wavs_dir")
    return [(os.path.splitext(n)[0], "", "") for n in sorted(os.listdir(wavs_dir)) if n.lower().endswith(".wav")]


def validation_count(total: int, size=None, fraction=None) -> int:
    """Number of validation entries: `size`, or round(total * fraction) (at least 1); at least one
    entry is always left for training."""
    if size is not None:
        count = size
    else:
        if not 0 < fraction < 1:
            raise UserError(f"--validation_fraction {fraction} must be between 0 and 1")
        count = max(1, round(total * fraction))
    if count < 1 or count >= total:
        raise UserError(
            f"a validation set of {count} leaves {total - count} of {total} files for training; "
            "choose a smaller --validation_size / --validation_fraction or add files"
        )
    return count


def split(entries: list, count: int, seed: int) -> tuple[list, list]:
    """(training, validation): `count` entries drawn with `random.Random(seed)`; both keep the
    input order."""
    chosen = set(random.Random(seed).sample(range(len(entries)), count))
    training = [e for i, e in enumerate(entries) if i not in chosen]
    validation = [e for i, e in enumerate(entries) if i in chosen]
    return training, validation


def check_entries(entries: list, wavs_dir: str, h=None, notify=print) -> list:
    """Entries whose wav exists and (with a config `h`, when datacheck.py is present) has no
    error-level problem from datacheck.check_wav; every problem is reported through `notify`."""
    check_wav = None
    if h is not None:
        try:
            from datacheck import check_wav
        except ImportError:
            notify("notice: datacheck.py not found; wavs are only checked for existence")
    kept = []
    for entry in entries:
        path = os.path.join(wavs_dir, entry[0] + ".wav")
        if not os.path.isfile(path):
            notify(f"excluded: {path}: file not found (listed in the metadata)")
            continue
        problems = check_wav(path, h) if check_wav is not None else []
        for p in problems:
            action = "excluded" if p.severity == "error" else "warning"
            notify(f"{action}: [{p.code}] {p.message}")  # the message names the file
        if not any(p.severity == "error" for p in problems):
            kept.append(entry)
    return kept


def write_filelist(path: str, entries: list) -> None:
    """LJSpeech lines `id|text|normalized text`, written to a temp file and renamed into place."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("".join(f"{uid}|{text}|{normalized}\n" for uid, text, normalized in entries))
    os.replace(tmp, path)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Write training.txt / validation.txt (LJSpeech format) for wavs.")
    parser.add_argument("--wavs_dir", required=True, help="folder of the wavs (<id>.wav)")
    parser.add_argument("--metadata", default=None, help="LJSpeech-style metadata.csv (id|text|normalized text)")
    parser.add_argument(
        "--output_dir",
        default=None,
        help="where to write training.txt and validation.txt (default: --wavs_dir's parent)",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--validation_size", type=int, default=None, help="number of validation files")
    size.add_argument(
        "--validation_fraction", type=float, default=None, help="share of files for validation (default 0.05)"
    )
    parser.add_argument("--seed", type=int, default=1234, help="seed of the random split")
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="config whose sampling rate etc. the wavs must match")
    parser.add_argument(
        "--no_check", action="store_true", help="skip check_data.check_wav (only check that each wav exists)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing training.txt / validation.txt")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks for user errors")
    a = parser.parse_args(argv)
    try:
        output_dir = a.output_dir or os.path.dirname(os.path.abspath(a.wavs_dir))
        targets = [os.path.join(output_dir, name) for name in FILELISTS]
        existing = [t for t in targets if os.path.exists(t)]
        if existing and not a.overwrite:
            raise UserError(f"{existing[0]}: already exists; pass --overwrite or another --output_dir")
        if not os.path.isdir(a.wavs_dir):
            raise UserError(f"{a.wavs_dir}: folder not found; check --wavs_dir")
        entries = read_metadata(a.metadata) if a.metadata else scan_wavs(a.wavs_dir)
        entries = check_entries(entries, a.wavs_dir, None if a.no_check else load_config(a.config))
        if not entries:
            raise UserError(f"{a.metadata or a.wavs_dir}: no usable wav files found")
        fraction = 0.05 if a.validation_size is None and a.validation_fraction is None else a.validation_fraction
        count = validation_count(len(entries), a.validation_size, fraction)
        training, validation = split(entries, count, a.seed)
        os.makedirs(output_dir, exist_ok=True)
        for path, part in zip(targets, (training, validation)):
            write_filelist(path, part)
        print(
            f"wrote {targets[0]} ({len(training)} files) and {targets[1]} ({len(validation)} files), seed {a.seed}; "
            f"train with --input_wavs_dir {a.wavs_dir} --input_training_file {targets[0]} "
            f"--input_validation_file {targets[1]}"
        )
    except UserError as e:
        exit_with_user_error(e, a.debug)


if __name__ == "__main__":
    main()
