"""CPU inference engine for the HiFi-GAN generator: the same function as `Generator.forward`,
reorganized for speed (measured in benchmarks/bench_speed.py; README "Performance").

    fast = engine.prepare(generator)  # eval mode, weight norm removed
    if engine.supports(generator, mel):
        audio = fast(mel, lengths)     # (B, num_mels, F) -> (B, 1, F * hop_size)

`models.Generator` stays the reference and never dispatches here; the synthesis API
(`synthesis.py`) asks for the engine on CPU, while export, tracing and torch.compile see the plain
module. How it differs from the reference path (same outputs to float32 rounding):
- activations stay channels-last (B, C, 1, T), the layout oneDNN's direct convolution reads
  and writes natively, and weights are reordered once, not at every call;
- each transposed convolution is an equivalent stride-1 polyphase convolution whose
  rate * C_out output channels, in channels-last memory, already are the interleaved output;
- each multi-receptive-field level runs over time tiles of about `TILE_BYTES` per tensor, with
  the level's reach as overlap, so that its intermediate tensors stay in cache;
- LeakyReLU and residual adds run inside the convolutions (oneDNN post-ops); the first
  activation of the MRF blocks of one level is computed once; the MRF average's 1/num_kernels
  moves into the next layer's weights (LeakyReLU is positively homogeneous).
Without oneDNN (other builds) the same plan runs on F.conv2d with separate elementwise ops.
"""

import ctypes
import functools
import os
import sys
import weakref

import torch
import torch.nn.functional as F
from torch import nn

from models import LRELU_SLOPE, POST_SLOPE, Generator, ResBlock1, _mask


def supports(generator: nn.Module, x: torch.Tensor) -> bool:
    """Whether the engine computes `generator(x)`: a HiFi-GAN `Generator` in eval mode with weight
    norm removed, and `x` a plain float32 CPU tensor."""
    return (
        isinstance(generator, Generator)
        and not generator.training
        and type(x) is torch.Tensor
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and not any(hasattr(m, "_wn_hook") for m in generator.modules())
    )


# NOTE: one prepared engine per live generator (weak keys: it goes with the generator), so that
# repeated `prepare` calls reuse the reordered weights instead of rebuilding them.
_PREPARED: "weakref.WeakKeyDictionary[nn.Module, PreparedGenerator]" = weakref.WeakKeyDictionary()


def prepare(generator: Generator) -> "PreparedGenerator":
    """The engine for `generator`: a callable `(mel (B, num_mels, F), lengths (B,) or None) ->
    (B, 1, F * hop_size)`, for inference only (no autograd) on inputs that `supports` accepts.
    Its prepared weights are rebuilt whenever a parameter of `generator` changes. The first call
    in a process also applies `keep_freed_memory`."""
    keep_freed_memory()
    prepared = _PREPARED.get(generator)
    if prepared is None:
        prepared = _PREPARED[generator] = PreparedGenerator(generator)
    return prepared


# NOTE: an MRF level runs over time tiles of about this many bytes per activation tensor (with
# the level's receptive field as overlap), so that its intermediate tensors stay in cache; 2 MB
# measured best of 0.5, 1, 2 and 4 MB on V2 and V3 (V3: 1.1x the whole call at 1 and 2 threads)
TILE_BYTES = 2 << 20

# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_KEEP_BYTES = 1 << 30  # blocks up to 1 GiB come from the heap and freed memory stays there


@functools.cache
def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed blocks up to 1 GiB for reuse (once per process; True if
    applied). The engine allocates tens of MB per layer: by default each such block is a fresh
    mmap, whose pages fault in at first touch (V1: 147k page faults and 0.5 s of kernel time per
    10 s of audio, about 1 in 10 of the time) and go back to the system when freed. Kept, the next
    layer reuses them: the process's peak memory is the same, but it is not given back until
    exit. Skipped when the environment already sets malloc's thresholds (MALLOC_MMAP_THRESHOLD_,
    MALLOC_TRIM_THRESHOLD_ or GLIBC_TUNABLES: the user's choice) and where malloc is not glibc's."""
    if not sys.platform.startswith("linux") or any(
        k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")
    ):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # musl and others
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_MMAP_THRESHOLD, _KEEP_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES))


class PreparedGenerator:
    """`Generator.forward` through `_FastGenerator`, rebuilt when the generator's parameters change."""

    def __init__(self, generator: Generator):
        self._generator = weakref.ref(generator)
        self._fast = None

    def __call__(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        g = self._generator()
        key = params_key(g)
        if self._fast is None or self._fast.key != key:
            self._fast = _FastGenerator(g, key, x.shape[-1])
        with torch.inference_mode():
            return self._fast(x, lengths)


def params_key(module: nn.Module) -> tuple:
    """Identity of every parameter's current values: storage address and in-place version."""
    key = []
    for p in module.parameters():
        try:
            version = p._version
        except RuntimeError:  # an inference tensor (created under inference_mode) has no version
            version = None
        key.append((p.data_ptr(), version, p.shape))
    return tuple(key)


def polyphase_weight(weight: torch.Tensor, bias: torch.Tensor, rate: int, padding: int):
    """Rewrite ConvTranspose1d(weight (C_in, C_out, K), stride=rate, padding) as a stride-1 conv.

    Output sample m * rate + phi of the transposed conv only sees kernel taps k = phi + padding
    (mod rate), so each phase phi is an ordinary convolution of the input. Returns `(w, b, pad)`,
    w (rate * C_out, C_in, 2 * pad + 1) and b (rate * C_out,), such that
    `conv1d(x, w, b, padding=pad)` is (B, rate * C_out, T) with channel block phi holding output
    samples m * rate + phi. Needs K - rate == 2 * padding (output length T * rate), as the
    configs are validated to have.
    """
    c_in, c_out, k = weight.shape
    if k - rate != 2 * padding:
        raise ValueError(f"polyphase_weight needs kernel - rate == 2 * padding, got {k}, {rate}, {padding}")
    taps = []  # (phase, input offset from m, kernel tap)
    for phi in range(rate):
        q, s = divmod(phi + padding, rate)
        taps += [(phi, q - j, j * rate + s) for j in range((k - s + rate - 1) // rate)]
    pad = max(max(-off, off) for _, off, _ in taps)
    w = weight.new_zeros(rate, c_out, c_in, 2 * pad + 1)
    for phi, off, tap in taps:
        w[phi, :, :, off + pad] = weight[:, :, tap].t()
    return w.reshape(rate * c_out, c_in, 2 * pad + 1), bias.repeat(rate), pad


def _onednn_weight(weight: torch.Tensor, args: tuple, length: int) -> torch.Tensor | None:
    """`weight` (C_out, C_in, 1, K) reordered once into oneDNN's blocked format for inputs of about
    `length` steps, or None where oneDNN's fused convolution is not available (other builds)."""
    try:
        return torch.ops.mkldnn._reorder_convolution_weight(weight, *args, [1, weight.shape[1], 1, length])
    except (AttributeError, RuntimeError, NotImplementedError):
        return None


class _FastConv:
    """A stride-1 Conv1d on channels-last (B, C_in, 1, T) activations, with an optional residual
    `other` added and then a LeakyReLU of slope `slope` applied to the result."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, padding: int, dilation: int, length: int):
        self.weight = weight.detach().unsqueeze(2).contiguous()  # (C_out, C_in, K) -> (C_out, C_in, 1, K)
        self.bias = bias.detach().contiguous()
        self.args = ([0, padding], [1, 1], [1, dilation], 1)  # padding, stride, dilation, groups
        self.packed = _onednn_weight(self.weight, self.args, length)

    def __call__(self, x: torch.Tensor, other: torch.Tensor | None = None, slope: float | None = None) -> torch.Tensor:
        if self.packed is not None:
            if other is None:
                act, scalars = ("leaky_relu", [slope]) if slope is not None else ("none", [])
                return torch.ops.mkldnn._convolution_pointwise(
                    x, self.packed, self.bias, *self.args, act, scalars, None
                )
            # oneDNN fuses an add; torch's binding only allows ReLU after it, so LeakyReLU runs apart
            y = torch.ops.mkldnn._convolution_pointwise.binary(
                x, other, self.packed, self.bias, *self.args, "add", None, None, [], None
            )
        else:
            padding, stride, dilation, groups = self.args
            y = F.conv2d(x, self.weight, self.bias, stride, padding, dilation, groups)
            if other is not None:
                y += other
        return y if slope is None else F.leaky_relu_(y, slope)


class _FastGenerator:
    """`Generator.forward` for CPU inference, built from the generator's current weights."""

    def __init__(self, g: Generator, key: tuple, frames: int):
        self.key = key
        self.rates = list(g.upsample_rates)
        self.num_kernels = g.num_kernels
        inv_k = 1.0 / g.num_kernels  # the MRF average, moved into the layer after it
        length = frames

        def conv(m: nn.Module, scale: float = 1.0) -> _FastConv:
            return _FastConv(m.weight * scale, m.bias, m.padding[0], m.dilation[0], length)

        self.conv_pre = conv(g.conv_pre)
        self.ups, self.blocks = [], []
        for i, up in enumerate(g.ups):
            w, b, pad = polyphase_weight(
                up.weight.detach() * (inv_k if i else 1.0), up.bias.detach(), up.stride[0], up.padding[0]
            )
            self.ups.append(_FastConv(w, b, pad, 1, length))
            length *= up.stride[0]
            level = []
            for block in g.resblocks[i * g.num_kernels : (i + 1) * g.num_kernels]:
                if isinstance(block, ResBlock1):
                    stages = [[conv(c1), conv(c2)] for c1, c2 in zip(block.convs1, block.convs2)]
                else:
                    stages = [[conv(c)] for c in block.convs]
                level.append(stages)
            self.blocks.append(level)
        self.conv_post = conv(g.conv_post, inv_k)
        # one-sided reach of each level in steps: the longest chain of paddings of one block
        self.reach = [max(sum(c.args[0][1] for stage in block for c in stage) for block in lv) for lv in self.blocks]
        self.tile_bytes = TILE_BYTES

    def __call__(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """x: (B, num_mels, F) -> (B, 1, F * hop_size), as `Generator.forward`."""
        b, scale = x.shape[0], 1
        lengths = None if lengths is None else lengths.to(x.device)
        mask = self._mask_4d(lengths, scale, x.shape[-1])
        x = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)  # (B, M, F) -> (B, M, 1, F)
        x = _mask(self.conv_pre(x, slope=LRELU_SLOPE), mask)  # only LReLU(conv_pre(x)) is used
        last_level = len(self.ups) - 1
        for i, up in enumerate(self.ups):
            r = self.rates[i]
            y = up(x).contiguous(memory_format=torch.channels_last)  # memory (B, T, r, C) = (B, T * r, C)
            c, t = y.shape[1] // r, y.shape[-1] * r
            x = y.as_strided((b, c, 1, t), (c * t, 1, c * t, c), y.storage_offset())  # (B, C, 1, T * r)
            scale *= r
            mask = self._mask_4d(lengths, scale, t)
            x = _mask(x, mask)
            # NOTE: the default slope before conv_post (see models.POST_SLOPE)
            slope_out = LRELU_SLOPE if i < last_level else POST_SLOPE
            x = self._mrf_tiled(x, i, mask, slope_out)
        x = self.conv_post(x)
        return torch.tanh_(x).reshape(b, 1, -1)

    def _mrf_tiled(self, x: torch.Tensor, i: int, mask: torch.Tensor | None, slope_out: float) -> torch.Tensor:
        """`_mrf` of level i, (1, C, 1, T) channels-last, over time tiles of about `tile_bytes` per
        tensor, each with the level's reach of context on both sides: every kept sample sees the
        same inputs as in one piece (the same output). Batches and short inputs run in one piece
        (a batch's channels-last tiles would not be contiguous)."""
        b, c, _, t = x.shape
        tile = max(1, self.tile_bytes // (x.element_size() * c))
        level, reach = self.blocks[i], self.reach[i]
        if b != 1 or t <= 2 * tile:
            return self._mrf(x, level, mask, slope_out)
        out = torch.empty_like(x)  # channels-last, as x
        for start in range(0, t, tile):
            end = min(t, start + tile)
            lo, hi = max(0, start - reach), min(t, end + reach)
            y = self._mrf(x[..., lo:hi], level, None if mask is None else mask[..., lo:hi], slope_out)
            out[..., start:end] = y[..., start - lo : end - lo]
        return out

    def _mrf(self, x: torch.Tensor, level: list, mask: torch.Tensor | None, slope_out: float) -> torch.Tensor:
        """LeakyReLU(num_kernels * MRF(x)) for one level: the sum of its residual blocks."""
        first = F.leaky_relu(x, LRELU_SLOPE)  # the first activation of every block of the level
        acc = None
        for j, stages in enumerate(level):
            h = x
            for n, stage in enumerate(stages):
                t = first if n == 0 else F.leaky_relu(h, LRELU_SLOPE)
                for c in stage[:-1]:
                    t = _mask(c(t, slope=LRELU_SLOPE), mask)
                if n < len(stages) - 1:
                    h = _mask(stage[-1](t, other=h), mask)
                    continue
                # last conv of block j: adds the running sum of the blocks (and the block's own
                # skip); the last block also applies the LeakyReLU that follows the level
                other = h if acc is None else acc.add_(h)
                acc = _mask(stage[-1](t, other=other, slope=slope_out if j == len(level) - 1 else None), mask)
        return acc

    @staticmethod
    def _mask_4d(lengths: torch.Tensor | None, scale: int, t: int) -> torch.Tensor | None:
        mask = Generator._mask_at(lengths, scale, t)
        return None if mask is None else mask.unsqueeze(2)  # (B, 1, T) -> (B, 1, 1, T)
