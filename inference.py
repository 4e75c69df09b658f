"""Inference: wav files (copy-synthesis) -> mel (training frontend) -> generator -> 16-bit wav.

    python inference.py --checkpoint_file cp_hifigan/g_02500000 [--input_wavs_dir test_files]

Each audio file of `--input_wavs_dir` (any format soundfile reads; other rates are resampled and
several channels mixed down, each with a notice) becomes `<output_dir>/<name>_generated.wav`.
The work after parsing is `synthesis_files.run` (shared with inference_e2e.py); the Python API is
in synthesis.py (load_generator, vocode, vocode_batch, generate_stream).
"""

import argparse

from synthesis_files import SHARED_OPTIONS, run


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Vocode audio files (copy-synthesis) with a HiFi-GAN generator.")
    p.add_argument("--input_wavs_dir", default="test_files", help="folder of audio files (any format soundfile reads)")
    p.add_argument("--output_dir", default="generated_files", help="where <name>_generated.wav are written")
    for flag, options in SHARED_OPTIONS:
        p.add_argument(flag, **options)
    run(p.parse_args(argv), "wav")


if __name__ == "__main__":
    main()
