"""benchmarks/bench_roofline.py: one row per generator stage, its FLOP and byte counts checked
against torch's FlopCounterMode; benchmarks/bench_speed.py train --split: the six parts."""

import os
import re
import sys

import pytest
import torch
import torch.nn.functional as F
from conftest import REPO, tiny_config
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import bench_roofline  # noqa: E402
import bench_speed  # noqa: E402
import common  # noqa: E402

import engine  # noqa: E402
from models import Generator  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

FRAMES = 5
# a row of bench_speed's split table: part, median s, share, GFLOP, GFLOP/s, % of the two peaks
SPLIT_ROW = (
    r"V3 ours (?P<part>.+?) +(?P<seconds>[\d.]+) +(?P<share>[\d.]+%) +(?P<gflop>[\d.]+) +(?P<rate>[\d.]+|-) +\S+ +\S+$"
)


def counted(fn) -> int:
    """The FLOPs torch's FlopCounterMode counts in `fn()`."""
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        fn()
    return counter.get_total_flops()


def table_rows(out: str, label: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in out.splitlines() if line.startswith(label)]


def tiny_generator(version: str) -> Generator:
    torch.manual_seed(0)
    g = Generator(tiny_config(version)).eval()
    g.remove_weight_norm()
    return g


def test_smoke_table_has_one_row_per_stage_of_v2(capsys):
    bench_roofline.main(["--smoke", "--versions", "v2", "--threads", "1"])
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("CPU: ") and f"torch {torch.__version__}" in out
    assert "peaks (smoke shapes): conv " in out
    header = next(line for line in out.splitlines() if line.startswith("| model "))
    assert [c.strip() for c in header.strip("|").split("|")] == bench_roofline.HEADER
    rows = table_rows(out, "| HiFi-GAN V2 ")
    stages = ["pre"] + [f"{kind}{i}" for i in range(4) for kind in ("up", "mrf")] + ["post"]
    assert [r[1] for r in rows] == stages + ["total (sum of stages)", "engine call"]
    col = {name: i for i, name in enumerate(bench_roofline.HEADER)}
    for r in rows:
        assert float(r[col["GFLOP/s"]]) > 0 and float(r[col["ms"]]) > 0, r
        assert float(r[col["executed GFLOP"]]) >= float(r[col["GFLOP"]]) > 0, r
    # V2: 128 initial channels halved per level, 17 frames (0.2 s) upsampled 8, 8, 2, 2
    assert [(r[col["C"]], r[col["T"]]) for r in rows[:3]] == [("128", "17"), ("64", "136"), ("64", "136")]
    assert rows[-3][col["T"]] == "4352" and rows[-3][col["share"]].endswith("%")
    assert "HiFi-GAN V2: 17 frames, 4352 samples; engine call " in out


@pytest.mark.parametrize("version", ["v1", "v3"])  # ResBlock1 and ResBlock2
def test_stage_flops_match_torchs_flop_counter(version):
    g = tiny_generator(version)
    stages = bench_roofline.reference_stages(g, FRAMES)
    flops = {name: sum(bench_roofline.conv_flops(c) for c in convs) for name, convs in stages.items()}
    mel = torch.randn(1, g.conv_pre.in_channels, FRAMES)  # (B, num_mels, F)
    x = torch.randn(1, g.conv_pre.out_channels, FRAMES)
    t0 = FRAMES * g.upsample_rates[0]
    level0 = torch.randn(1, g.ups[0].out_channels, t0)
    post_in = torch.randn(1, g.conv_post.in_channels, FRAMES * int(torch.tensor(g.upsample_rates).prod()))
    assert flops["pre"] == counted(lambda: g.conv_pre(mel))
    assert flops["up0"] == counted(lambda: g.ups[0](x))  # ConvTranspose1d: 2 * C_in * C_out * K * T_in
    assert flops["mrf0"] == counted(lambda: [g.resblocks[j](level0) for j in range(g.num_kernels)])
    assert flops["post"] == counted(lambda: g.conv_post(post_in))
    # the engine's polyphase conv: what F.conv1d counts with its weights
    prepared = engine.prepare(g)
    prepared(mel)
    costs = bench_roofline.stage_costs(g, prepared._fast, FRAMES)
    up = g.ups[0]
    w, b, pad = engine.polyphase_weight(up.weight.detach(), up.bias.detach(), up.stride[0], up.padding[0])
    assert costs["up0"].executed_flops == counted(lambda: F.conv1d(x, w, b, padding=pad)) > costs["up0"].flops
    assert costs["mrf0"].executed_flops == costs["mrf0"].flops == flops["mrf0"]
    # bytes of conv_pre: fp32 input, output, weights and bias, once each
    m, c = g.conv_pre.in_channels, g.conv_pre.out_channels
    assert costs["pre"].bytes == 4 * (m * FRAMES + c * FRAMES + c * m * 7 + c)


def test_stages_reproduce_the_engines_call():
    g = tiny_generator("v2")
    mel = torch.randn(1, g.conv_pre.in_channels, FRAMES)
    prepared = engine.prepare(g)
    expected = prepared(mel)
    inputs, audio = bench_roofline.stage_inputs(bench_roofline.stage_calls(prepared._fast), mel)
    torch.testing.assert_close(audio, expected, rtol=0, atol=0)
    assert inputs["mrf1"].shape == (1, g.ups[1].out_channels, 1, FRAMES * 8 * 8)
    assert inputs["mrf1"].is_contiguous(memory_format=torch.channels_last)


def test_train_split_prints_the_six_parts(capsys, monkeypatch):
    # the real step on a tiny generator and discriminators, and the peaks at smoke shapes
    monkeypatch.setattr(bench_speed, "repo_config", lambda version: tiny_config(version))
    monkeypatch.setattr(
        bench_speed, "measure_peaks", lambda threads, repeats, device: common.measure_peaks(threads, 1, device, True)
    )
    args = ["train", "--versions", "v3", "--batch", "1", "--segment", "1024", "--steps", "1", "--warmup", "0"]
    bench_speed.main(args + ["--threads", "1", "--split"])
    out = capsys.readouterr().out
    assert "our training step, part by part (ours only;" in out and "peaks: conv " in out
    assert "G losses equal the step's" in out  # the pieces reproduce training.gan_step
    split = out[out.index("part by part") :].splitlines()
    rows = [re.match(SPLIT_ROW, line) for line in split if line.startswith("V3 ours ")]
    assert all(rows), split
    assert [r["part"] for r in rows] == list(bench_speed.SPLIT_PARTS) + ["step (sum of parts)"]
    assert len(bench_speed.SPLIT_PARTS) == 6
    for r in rows:
        assert float(r["seconds"]) >= 0
        assert (float(r["gflop"]) > 0) == (r["part"] != "optimizer steps"), r[0]  # no AdamW FLOPs counted
        assert (r["rate"] == "-") == (r["part"] == "optimizer steps"), r[0]
    assert rows[-1]["share"] == "100.0%"
    bench_speed.main(args + ["--threads", "1"])
    assert "part by part" not in capsys.readouterr().out  # without --split: the table alone


@pytest.mark.parametrize("groups, transposed", [(1, False), (16, False), (1, True), (4, True)])
def test_split_counts_a_convs_backward_as_two_forwards(groups, transposed):
    """Each of the two gradients of a convolution costs its forward, grouped ones too (torch's own
    formula counts a grouped conv's weight gradient as dense: 17x the forward at groups 16)."""
    torch.manual_seed(0)
    b, c_in, c_out, t_in = 2, 64, 32, 50
    if transposed:
        conv = torch.nn.ConvTranspose1d(c_in, c_out, 16, stride=8, padding=4, groups=groups)
    else:
        conv = torch.nn.Conv1d(c_in, c_out, 41, padding=20, groups=groups)
    x = torch.randn(b, c_in, t_in, requires_grad=True)
    mapping = {torch.ops.aten.convolution_backward: bench_speed.conv_backward_flops}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        y = conv(x)
    forward = counter.get_total_flops()
    k = conv.kernel_size[0]
    # multiply-adds x 2: per input step (transposed) or output step (plain), C_in x C_out / groups x K
    steps = t_in if transposed else y.shape[-1]
    assert forward == 2 * b * steps * c_in * c_out // groups * k
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        y.sum().backward()
    assert counter.get_total_flops() == 2 * forward
