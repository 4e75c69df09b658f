"""End-to-end inference: `.npy` mel-spectrograms from a TTS model -> 16-bit wavs.

    python inference_e2e.py --checkpoint_file cp_hifigan/g_02500000 [--input_mels_dir test_mel_files]

Each `<input_mels_dir>/<name>.npy` (natural-log mel, (num_mels, T), (1, num_mels, T) or
(T, num_mels)) becomes `<output_dir>/<name>_generated_e2e.wav`. The command line is
`synthesis_files.run` (shared with inference.py).
"""

from synthesis_files import run


def main(argv: list[str] | None = None) -> None:
    run(argv, "mel")


if __name__ == "__main__":
    main()
