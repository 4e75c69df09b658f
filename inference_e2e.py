"""End-to-end inference: `.npy` mel-spectrograms from a TTS model -> 16-bit wavs.

    python inference_e2e.py --checkpoint_file cp_hifigan/g_02500000 [--input_mels_dir test_mel_files]

Each `<input_mels_dir>/<name>.npy` (natural-log mel, (num_mels, T), (1, num_mels, T) or
(T, num_mels)) becomes `<output_dir>/<name>_generated_e2e.wav`. All the work is in `inference.py`.
"""

import sys

from inference import run


def main(argv: list[str] | None = None) -> None:
    code = run(argv, "mel")
    if code:
        sys.exit(code)


if __name__ == "__main__":
    main()
