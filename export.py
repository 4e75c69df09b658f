"""Export a trained generator to ONNX and TorchScript (weight norm folded, eval mode).

    python export.py --checkpoint_file cp_hifigan/g_02500000 [--output_dir exported]

Writes `<output_dir>/<checkpoint name>.onnx` (one self-contained file; input `mel`
(batch, num_mels, frames), output `audio` (batch, 1, frames * hop_size), batch and frames
dynamic) and `<checkpoint name>.ts` (TorchScript by tracing; any batch and length). Each export is
checked against eager PyTorch on a random mel (`--check_frames`, default 10 s of audio): the max
abs difference is printed and an error is raised above `--tolerance`. ONNX needs the optional
packages of `requirements-extra.txt` (onnx, onnxscript; onnxruntime for the check).
"""

import argparse
import logging
import os
import warnings

import numpy as np
import torch

from synthesis import load_generator, samples_noise
from utils import UserError, exit_with_user_error

ONNX_OPSET = 18
DEFAULT_TOLERANCE = 1e-4  # max abs difference to eager accepted by the check


# Families whose synthesis is not one mel -> audio graph, and why (README "Export").
NOT_EXPORTED = {
    "waveglow": "WaveGlow draws Gaussian noise inside every synthesis call, which a mel -> audio graph "
    "would either freeze into a constant or need as a second input",
    "wavenet": "WaveNet generates sample by sample in a loop whose state carries over (no single graph)",
}


def example_mel(h, frames: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
    """A random log-mel (batch, num_mels, frames) in the frontend's value range."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, h.num_mels, frames, generator=g) - 5.0


def export_onnx(generator: torch.nn.Module, h, path: str, opset: int = ONNX_OPSET) -> str:
    """Write `generator` as one ONNX file with dynamic batch and time axes."""
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise UserError(f"ONNX export needs {e.name}; pip install -r requirements-extra.txt") from None
    from torch.export import Dim

    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter chatter (deprecations inside torch)
        torch.onnx.export(
            generator,
            (example_mel(h, 64),),
            path,
            dynamo=True,
            external_data=False,
            opset_version=opset,
            input_names=["mel"],
            output_names=["audio"],
            dynamic_shapes={"x": {0: Dim("batch"), 2: Dim("frames")}},
            verbose=False,
        )
    return path


def export_torchscript(generator: torch.nn.Module, h, path: str) -> str:
    """Write `generator` as TorchScript (traced; the time axis stays dynamic)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.trace is deprecated but still the portable format
        with torch.no_grad():
            traced = torch.jit.trace(generator, example_mel(h, 64))
        traced.save(path)
    return path


def run_onnx(path: str, mel: torch.Tensor) -> np.ndarray:
    """Run an exported ONNX generator with onnxruntime on CPU."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise UserError("checking the ONNX file needs onnxruntime; pip install -r requirements-extra.txt") from None
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {"mel": mel.numpy()})[0]


def run_torchscript(path: str, mel: torch.Tensor) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.load is deprecated too
        module = torch.jit.load(path, map_location="cpu")
    with torch.inference_mode():
        return module(mel).numpy()


def max_abs_diff(generator: torch.nn.Module, h, path: str, fmt: str, frames: int) -> float:
    """Max abs difference between the exported file and eager `generator` on a random mel."""
    mel = example_mel(h, frames, seed=1)
    with torch.inference_mode():
        ref = generator(mel.to(next(generator.parameters()).device)).cpu().numpy()
    out = run_onnx(path, mel) if fmt == "onnx" else run_torchscript(path, mel)
    if out.shape != ref.shape:
        raise UserError(f"{path}: output shape {out.shape}, eager gives {ref.shape}; re-export it")
    return float(np.abs(out - ref).max())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Export a HiFi-GAN generator to ONNX and TorchScript.")
    p.add_argument("--checkpoint_file", required=True, help="generator checkpoint g_XXXXXXXX")
    p.add_argument("--config", default=None, help="config JSON (default: config.json beside the checkpoint)")
    p.add_argument("--output_dir", default="exported", help="folder for <name>.onnx and <name>.ts")
    p.add_argument(
        "--formats", nargs="+", choices=("onnx", "torchscript"), default=["onnx", "torchscript"], help="what to write"
    )
    p.add_argument("--opset", type=int, default=ONNX_OPSET, help="ONNX opset version")
    p.add_argument("--check_frames", type=int, default=862, help="mel frames of the parity check (862 = 10 s)")
    p.add_argument("--no_check", action="store_true", help="skip the comparison with eager PyTorch")
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, help="max abs difference accepted")
    p.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
    a = p.parse_args(argv)
    try:
        generator, h = load_generator(a.checkpoint_file, a.config, "cpu")
        if samples_noise(h):
            why = NOT_EXPORTED[h.model_family]
            raise UserError(f"{a.checkpoint_file}: not exported: {why}; vocode it with synthesis.load_generator")
        os.makedirs(a.output_dir, exist_ok=True)
        name = os.path.basename(a.checkpoint_file)
        for fmt in a.formats:
            ext = "onnx" if fmt == "onnx" else "ts"
            path = os.path.join(a.output_dir, f"{name}.{ext}")
            (export_onnx(generator, h, path, a.opset) if fmt == "onnx" else export_torchscript(generator, h, path))
            line = f"{fmt}: {path} ({os.path.getsize(path) / 1e6:.1f} MB)"
            if not a.no_check:
                diff = max_abs_diff(generator, h, path, fmt, a.check_frames)
                line += f", max abs diff to eager {diff:.2e} on {a.check_frames} frames"
                if diff > a.tolerance:
                    raise UserError(f"{path}: differs from eager by {diff:.2e} > {a.tolerance:g}; report this export")
            print(line)
    except UserError as e:
        exit_with_user_error(e, a.debug)


if __name__ == "__main__":
    main()
