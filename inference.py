"""Inference: wav files (copy-synthesis) -> mel (training frontend) -> generator -> 16-bit wav.

    python inference.py --checkpoint_file cp_hifigan/g_02500000 [--input_wavs_dir test_files]

Each audio file of `--input_wavs_dir` (any format soundfile reads; other rates are resampled and
several channels mixed down, each with a notice) becomes `<output_dir>/<name>_generated.wav`.
The command line is `synthesis_files.run` (shared with inference_e2e.py); the Python API is in
synthesis.py (load_generator, vocode, vocode_batch, generate_stream).
"""

from synthesis_files import run


def main(argv: list[str] | None = None) -> None:
    run(argv, "wav")


if __name__ == "__main__":
    main()
