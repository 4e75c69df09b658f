"""export.py: ONNX and TorchScript files equal eager PyTorch (max abs diff < 1e-4) on a real-sized
input (10 s of audio, the real V2 architecture), with dynamic batch and time axes."""

import os

import numpy as np
import pytest
import torch
from conftest import config, save_generator

import export
from models import Generator

pytestmark = pytest.mark.usefixtures("one_thread")
TEN_SECONDS = 862  # mel frames of 10 s at 22.05 kHz, hop 256


@pytest.fixture(scope="module")
def v2():
    """The real V2 generator (random weights, weight norm removed, eval mode) and its config."""
    h = config("v2")
    torch.manual_seed(0)
    generator = Generator(h).eval()
    generator.remove_weight_norm()
    return generator, h


def _eager(generator, mel):
    with torch.inference_mode():
        return generator(mel).numpy()


def test_torchscript_equals_eager(v2, tmp_path):
    generator, h = v2
    path = export.export_torchscript(generator, h, str(tmp_path / "g.ts"))
    for mel in (export.example_mel(h, TEN_SECONDS, seed=3), export.example_mel(h, 37, batch=2, seed=4)):
        out = export.run_torchscript(path, mel)
        assert out.shape == (mel.shape[0], 1, mel.shape[-1] * h.hop_size)
        assert np.abs(out - _eager(generator, mel)).max() < 1e-4


def test_onnx_equals_eager(v2, tmp_path):
    pytest.importorskip("onnx", reason="onnx is optional (requirements-extra.txt)")
    pytest.importorskip("onnxscript", reason="onnxscript is optional (requirements-extra.txt)")
    pytest.importorskip("onnxruntime", reason="onnxruntime is optional (requirements-extra.txt)")
    generator, h = v2
    path = export.export_onnx(generator, h, str(tmp_path / "g.onnx"))
    assert os.listdir(tmp_path) == ["g.onnx"]  # weights inside the file, no .onnx.data
    import onnx

    model = onnx.load(path)
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 80, "frames"]
    assert not any("weight_g" in init.name or "weight_v" in init.name for init in model.graph.initializer)
    for mel in (export.example_mel(h, TEN_SECONDS, seed=3), export.example_mel(h, 37, batch=2, seed=4)):
        out = export.run_onnx(path, mel)
        assert out.shape == (mel.shape[0], 1, mel.shape[-1] * h.hop_size)
        assert np.abs(out - _eager(generator, mel)).max() < 1e-4


def test_export_cli_writes_and_checks(tmp_path, capsys):
    ckpt = save_generator(tmp_path, config("v2"), seed=1, name="g_00000007")
    out = tmp_path / "exported"
    export.main(["--checkpoint_file", ckpt, "--output_dir", str(out), "--formats", "torchscript"])
    line = capsys.readouterr().out.strip()
    assert os.listdir(out) == ["g_00000007.ts"]
    assert line.startswith(f"torchscript: {out / 'g_00000007.ts'}") and "max abs diff to eager" in line
    assert float(line.split("eager ")[1].split()[0]) < 1e-4


def test_export_cli_bad_checkpoint_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        export.main(["--checkpoint_file", str(tmp_path / "g_missing"), "--output_dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert (
        e.value.code == 2
        and err.strip() == f"error: {tmp_path / 'g_missing'}: checkpoint not found; check --checkpoint_file"
    )
