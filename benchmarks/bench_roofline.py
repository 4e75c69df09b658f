"""A roofline table of the CPU inference engine, stage by stage of the HiFi-GAN generator.

    python benchmarks/bench_roofline.py                        # V1, V2, V3, 10 s of audio, 1 thread
    python benchmarks/bench_roofline.py --versions v1 --threads 2 --repeats 9
    python benchmarks/bench_roofline.py --smoke                # tiny shapes, one run (CI)

Each generator is built from its published config with seeded random weights (speed does not
depend on their values), in eval mode, weight norm removed, and prepared by `engine.prepare`. A mel
of `--seconds` of synthetic speech-like audio at batch 1 runs once through the engine; then each
stage of `engine._FastGenerator.__call__` (no lengths, so no masks) is timed on its own, on the
input it got in that call (channels-last (B, C, 1, T)), as the median of `--repeats` calls after
one warm-up, under `torch.inference_mode()` at `--threads` intra-op threads:
- `pre`: the mel to channels-last, conv_pre with its fused LeakyReLU;
- `up<i>`: level i's polyphase upsampling conv, the channels-last copy and the `as_strided`
  reinterpretation of its rate * C channels as rate times as many steps;
- `mrf<i>`: level i's multi-receptive-field fusion (all its residual blocks, over time tiles:
  `_FastGenerator._mrf_tiled`);
- `post`: conv_post, tanh and the reshape to (B, 1, T).

Per stage: C (channels of the stage's activations: pre its output, post its input), T (output
steps), GFLOP (the reference model's multiply-adds x 2: 2 * C_in * C_out * K * T_out per Conv1d,
2 * C_in * C_out * K * T_in per ConvTranspose1d, summed over the stage's convs), executed GFLOP
(what the engine's convs compute; more for the polyphase convs, whose zero taps are multiplied
too), MB moved, time, GFLOP/s (reference FLOPs / time), arithmetic intensity (reference FLOP per
byte moved), the fractions of the conv and matmul peaks (`common.measure_peaks`, measured in the
same run) and the stage's share of the summed stage times. MB moved is a lower bound assuming no
reuse across convs and perfect reuse within one: per conv, its fp32 input read once, its output
written once, its weights and bias read once and its residual read once where it has one. A total
row per model sums the stages; the engine row times the whole call `prepared(mel)` for comparison
with that sum.
"""

import argparse
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from common import cpu_model, markdown_table, measure_peaks, median_seconds, repo_config, set_threads, three_digits
from torch import nn

# the repository's modules: `common` put its root on sys.path
import engine
from meldataset import mel_from_config, synth_speechlike
from models import LRELU_SLOPE, POST_SLOPE, Generator, ResBlock1

FLOAT_BYTES = 4  # fp32
SMOKE_SECONDS = 0.2
HEADER = [
    "model",
    "stage",
    "C",
    "T",
    "GFLOP",
    "executed GFLOP",
    "MB moved",
    "ms",
    "GFLOP/s",
    "FLOP/byte",
    "% conv peak",
    "% matmul peak",
    "share",
]


class Conv(NamedTuple):
    """One convolution of the reference generator, as a stage runs it at batch 1."""

    module: nn.Module  # nn.Conv1d or nn.ConvTranspose1d
    t_in: int
    t_out: int
    residual: bool  # its output is added to a skip (the residual blocks' `xt + x`)


class StageCost(NamedTuple):
    channels: int
    steps: int
    flops: int
    executed_flops: int
    bytes: int


# ---------------------------------------------------------------------------------------------
# Counting: reference FLOPs, executed FLOPs, bytes
# ---------------------------------------------------------------------------------------------


def reference_stages(g: Generator, frames: int) -> dict[str, list[Conv]]:
    """The reference generator's convolutions grouped by stage (pre, up0, mrf0, ..., post) for a
    mel of `frames` frames."""
    stages, t = {"pre": [Conv(g.conv_pre, frames, frames, False)]}, frames
    for i, up in enumerate(g.ups):
        rate = g.upsample_rates[i]
        stages[f"up{i}"] = [Conv(up, t, t * rate, False)]
        t *= rate
        convs = []
        for block in g.resblocks[i * g.num_kernels : (i + 1) * g.num_kernels]:
            if isinstance(block, ResBlock1):  # LReLU -> c1 -> LReLU -> c2, + skip
                for c1, c2 in zip(block.convs1, block.convs2):
                    convs += [Conv(c1, t, t, False), Conv(c2, t, t, True)]
            else:  # ResBlock2: LReLU -> c, + skip
                convs += [Conv(c, t, t, True) for c in block.convs]
        stages[f"mrf{i}"] = convs
    stages["post"] = [Conv(g.conv_post, t, t, False)]
    return stages


def conv_flops(conv: Conv) -> int:
    """The reference's multiply-adds x 2 at batch 1: 2 * C_in * C_out * K * T_out for a Conv1d,
    2 * C_in * C_out * K * T_in for a ConvTranspose1d (torch's FlopCounterMode counts the same)."""
    transposed = isinstance(conv.module, nn.ConvTranspose1d)
    return 2 * conv.module.weight.numel() * (conv.t_in if transposed else conv.t_out)


def conv_bytes(conv: Conv) -> int:
    """Lower bound of the bytes one conv moves: fp32 input read, output written, weights and bias
    read, and the residual read where it has one, each once."""
    m = conv.module
    outputs = m.out_channels * conv.t_out
    bias = 0 if m.bias is None else m.bias.numel()
    values = m.in_channels * conv.t_in + outputs + m.weight.numel() + bias + (outputs if conv.residual else 0)
    return FLOAT_BYTES * values


def fast_convs(fast: "engine._FastGenerator") -> dict[str, list]:
    """The engine's `_FastConv`s grouped by the same stages."""
    stages = {"pre": [fast.conv_pre]}
    for i, up in enumerate(fast.ups):
        stages[f"up{i}"] = [up]
        stages[f"mrf{i}"] = [c for block in fast.blocks[i] for stage in block for c in stage]
    stages["post"] = [fast.conv_post]
    return stages


def stage_costs(g: Generator, fast: "engine._FastGenerator", frames: int) -> dict[str, StageCost]:
    """C, T, reference FLOPs, executed FLOPs and bytes moved of every stage."""
    executed = fast_convs(fast)
    costs = {}
    for name, convs in reference_stages(g, frames).items():
        first = convs[0]
        # the engine's convs are all stride 1: the polyphase conv runs at the input rate
        steps = first.t_in if name.startswith("up") else first.t_out
        channels = first.module.in_channels if name == "post" else first.module.out_channels
        costs[name] = StageCost(
            channels,
            first.t_out,
            sum(conv_flops(c) for c in convs),
            sum(2 * c.weight.numel() * steps for c in executed[name]),
            sum(conv_bytes(c) for c in convs),
        )
    return costs


# ---------------------------------------------------------------------------------------------
# The engine's call, stage by stage
# ---------------------------------------------------------------------------------------------


def upsample(up: "engine._FastConv", rate: int, x: torch.Tensor) -> torch.Tensor:
    """One level's upsampling as `_FastGenerator.__call__` runs it (no mask):
    (B, C_in, 1, T) -> (B, C, 1, T * rate), channels-last."""
    b = x.shape[0]
    y = up(x).contiguous(memory_format=torch.channels_last)  # memory (B, T, r, C) = (B, T * r, C)
    c, t = y.shape[1] // rate, y.shape[-1] * rate
    return y.as_strided((b, c, 1, t), (c * t, 1, c * t, c), y.storage_offset())  # (B, C, 1, T * r)


def pre(fast: "engine._FastGenerator", x: torch.Tensor) -> torch.Tensor:
    """(B, num_mels, F) -> (B, C, 1, F) channels-last: conv_pre with its LeakyReLU."""
    x = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)  # (B, M, F) -> (B, M, 1, F)
    return fast.conv_pre(x, slope=LRELU_SLOPE)


def post(fast: "engine._FastGenerator", x: torch.Tensor) -> torch.Tensor:
    """(B, C, 1, T) -> (B, 1, T): conv_post and tanh."""
    return torch.tanh_(fast.conv_post(x)).reshape(x.shape[0], 1, -1)


def stage_calls(fast: "engine._FastGenerator") -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """Each stage of `_FastGenerator.__call__` as a function of its input, in call order."""
    calls = {"pre": lambda x: pre(fast, x)}
    last = len(fast.ups) - 1
    for i, up in enumerate(fast.ups):
        # NOTE: the default slope before conv_post (see models.POST_SLOPE)
        slope_out = LRELU_SLOPE if i < last else POST_SLOPE
        calls[f"up{i}"] = lambda x, up=up, rate=fast.rates[i]: upsample(up, rate, x)
        calls[f"mrf{i}"] = lambda x, i=i, s=slope_out: fast._mrf_tiled(x, i, None, s)
    calls["post"] = lambda x: post(fast, x)
    return calls


def stage_inputs(calls: dict, mel: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Run the stages in order on `mel`: ({stage: its input}, the audio (B, 1, T))."""
    inputs, x = {}, mel
    with torch.inference_mode():
        for name, fn in calls.items():
            inputs[name] = x
            x = fn(x)
    return inputs, x


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------


def table_row(label: str, stage: str, cost: StageCost, seconds: float, peaks: dict, share: str) -> list[str]:
    gflops = cost.flops / seconds / 1e9
    intensity = cost.flops / cost.bytes if cost.bytes else float("nan")
    return [
        label,
        stage,
        str(cost.channels or ""),
        str(cost.steps or ""),
        three_digits(cost.flops / 1e9),
        three_digits(cost.executed_flops / 1e9),
        three_digits(cost.bytes / 1e6) if cost.bytes else "",
        three_digits(seconds * 1e3),
        three_digits(gflops),
        three_digits(intensity) if cost.bytes else "",
        f"{100 * gflops / peaks['conv']:.1f}",
        f"{100 * gflops / peaks['matmul']:.1f}",
        share,
    ]


def build(version: str, seconds: float, seed: int):
    """(config, reference generator, prepared engine, mel (1, num_mels, F)) of one version."""
    h = repo_config(version)
    torch.manual_seed(seed)
    g = Generator(h).eval()
    g.remove_weight_norm()
    audio = torch.from_numpy(synth_speechlike(seconds, h.sampling_rate, np.random.default_rng(seed))).unsqueeze(0)
    mel = mel_from_config(audio, h)  # (1, num_mels, F)
    return h, g, engine.prepare(g), mel


def bench_model(version: str, a: argparse.Namespace, peaks: dict) -> tuple[list[list[str]], str]:
    """The table rows of one version (its stages, the total, the whole engine call) and a line
    comparing the engine call with the sum of the stages."""
    _, g, prepared, mel = build(version, a.seconds, a.seed)
    audio = prepared(mel)  # builds prepared._fast
    calls = stage_calls(prepared._fast)
    inputs, chained = stage_inputs(calls, mel)
    torch.testing.assert_close(chained, audio, rtol=0, atol=1e-5, msg="the stages do not reproduce the engine's call")
    costs = stage_costs(g, prepared._fast, mel.shape[-1])
    with torch.inference_mode():
        times = {name: median_seconds(lambda fn=fn, x=inputs[name]: fn(x), a.repeats) for name, fn in calls.items()}
        engine_s = median_seconds(lambda: prepared(mel), a.repeats)
    total_s = sum(times.values())
    label = f"HiFi-GAN {version.upper()}"
    rows = [table_row(label, n, costs[n], times[n], peaks, f"{100 * times[n] / total_s:.1f}%") for n in calls]
    total = StageCost(0, 0, *(sum(getattr(c, f) for c in costs.values()) for f in StageCost._fields[2:]))
    rows.append(table_row(label, "total (sum of stages)", total, total_s, peaks, "100.0%"))
    rows.append(table_row(label, "engine call", total._replace(bytes=0), engine_s, peaks, ""))
    note = (
        f"{label}: {mel.shape[-1]} frames, {audio.shape[-1]} samples; engine call {engine_s * 1e3:.2f} ms, "
        f"sum of stages {total_s * 1e3:.2f} ms ({engine_s / total_s:.2f}x)"
    )
    return rows, note


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Roofline table per generator stage of the CPU inference engine.")
    parser.add_argument("--versions", nargs="+", default=["v1", "v2", "v3"], choices=["v1", "v2", "v3"], help="configs")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of audio of the mel (batch 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per stage (median), after 1 warm-up")
    parser.add_argument("--seed", type=int, default=1234, help="seed of weights and audio")
    parser.add_argument(
        "--smoke", action="store_true", help=f"tiny run: {SMOKE_SECONDS} s of audio, 1 repeat, small peaks"
    )
    a = parser.parse_args(argv)
    if a.smoke:
        a.seconds, a.repeats = SMOKE_SECONDS, 1
    return a


def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    threads = set_threads(a.threads)
    peaks = measure_peaks(a.threads, a.repeats, smoke=a.smoke)
    print(f"CPU: {cpu_model()}; torch {torch.__version__}; {threads} thread{'s' * (threads != 1)}; fp32, batch 1")
    shape = (
        "smoke shapes"
        if a.smoke
        else "conv1d 512->512 ch, k 7, T 8192, the faster of F.conv1d and the engine's; mm 2048 x 2048"
    )
    print(f"peaks ({shape}): conv {peaks['conv']:.1f} GFLOP/s, matmul {peaks['matmul']:.1f} GFLOP/s")
    print(f"{a.seconds:g} s of audio; median of {a.repeats} call{'s' * (a.repeats != 1)} per stage after 1 warm-up")
    rows, notes = [], []
    for version in a.versions:
        model_rows, note = bench_model(version, a, peaks)
        rows += model_rows
        notes.append(note)
    print(markdown_table(HEADER, rows, left=2))
    print("\n".join(notes))
    print(
        "(GFLOP: the reference model's; executed: the engine's, with the polyphase convs' zero taps; MB moved: "
        "a lower bound, no reuse across convs; GFLOP/s and FLOP/byte from the reference FLOPs)"
    )


if __name__ == "__main__":
    main()
