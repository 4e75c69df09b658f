"""End-to-end inference: `.npy` mel-spectrograms from a TTS model -> 16-bit wavs.

    python inference_e2e.py --checkpoint_file cp_hifigan/g_02500000 [--input_mels_dir test_mel_files]
    python inference_e2e.py --checkpoint_file cp_hifigan/g_02500000 --input_mels_dir espnet_mels --mel_format espnet

Each `<input_mels_dir>/<name>.npy` (natural-log mel, (num_mels, T), (1, num_mels, T) or
(T, num_mels)) becomes `<output_dir>/<name>_generated_e2e.wav`. `--mel_format` names another
toolkit's format (melformats.MEL_FORMATS), converted into this frontend on the fly. The work after parsing is
`synthesis_files.run` (shared with inference.py).
"""

import argparse

from melformats import MEL_FORMATS
from synthesis_files import SHARED_OPTIONS, run


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Vocode .npy mel-spectrograms (e.g. from a TTS model) with HiFi-GAN.")
    p.add_argument("--input_mels_dir", default="test_mel_files", help="folder of .npy mels (num_mels, T)")
    p.add_argument(
        "--output_dir", default="generated_files_from_mel", help="where <name>_generated_e2e.wav are written"
    )
    p.add_argument(
        "--mel_format",
        default="hifigan",
        choices=MEL_FORMATS,
        help="the toolkit whose frontend made the mels, converted on the fly (default hifigan: this model's own)",
    )
    for flag, options in SHARED_OPTIONS:
        p.add_argument(flag, **options)
    run(p.parse_args(argv), "mel")


if __name__ == "__main__":
    main()
