"""Check a training set before training: every listed wav is opened and classified, and each
problem is printed as one line naming the file and the fix (the checks are in datacheck.py).

    python check_data.py --config config_v1.json --input_training_file LJSpeech-1.1/training.txt \\
        --input_validation_file LJSpeech-1.1/validation.txt --input_wavs_dir LJSpeech-1.1/wavs

`train.py` runs the same checks before it starts (errors stop it unless --skip_bad_files);
`prepare_filelists.py` uses `datacheck.check_wav`. Exit status: 0 without errors, 1 with errors,
2 when the check itself cannot run (bad config).
"""

import argparse
import sys

from datacheck import check_filelists, format_problem, summary
from melformats import MEL_FORMATS
from utils import UserError, exit_with_user_error, load_config


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Check the wavs and filelists of a training set (one line each).")
    parser.add_argument("--config", required=True, help="the training config (sampling_rate, segment_size, ...)")
    parser.add_argument("--input_wavs_dir", default="LJSpeech-1.1/wavs", help="folder of the training wavs")
    parser.add_argument("--input_training_file", default="LJSpeech-1.1/training.txt", help="id|text filelist")
    parser.add_argument("--input_validation_file", default="LJSpeech-1.1/validation.txt", help="id|text filelist")
    parser.add_argument("--input_mels_dir", default=None, help="with fine-tuning: folder of the <id>.npy mels")
    parser.add_argument(
        "--mel_format",
        default="hifigan",
        choices=MEL_FORMATS,
        help="with --input_mels_dir: the mels' format (as train.py --mel_format); a sample is compared with the wavs",
    )
    parser.add_argument("--num_processes", type=int, default=1, help="training processes (GPUs) sharing the batch")
    parser.add_argument("--errors_only", action="store_true", help="print errors only (the summary counts all)")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks for user errors")
    a = parser.parse_args(argv)
    try:
        h = load_config(a.config)
        problems = check_filelists(
            a.input_training_file,
            a.input_validation_file,
            a.input_wavs_dir,
            h,
            world_size=a.num_processes,
            mels_dir=a.input_mels_dir,
            mel_format=a.mel_format,
        )
    except UserError as e:
        exit_with_user_error(e, a.debug)
    for p in problems:
        if p.severity == "error" or not a.errors_only:
            print(format_problem(p))
    print(f"{a.input_training_file}, {a.input_validation_file}: {summary(problems)}")
    sys.exit(1 if any(p.severity == "error" for p in problems) else 0)


if __name__ == "__main__":
    main()
