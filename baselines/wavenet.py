"""WaveNet vocoder with a discretised mixture of logistics (van den Oord et al. 2016; as a mel
vocoder in Shen et al. 2018, Tacotron 2), the autoregressive baseline of HiFi-GAN's Table 1
(24.73 M parameters, MOS 4.02).

- A stack of causal dilated convolutions (24 layers in 4 stacks, dilations 1, 2, ..., 32) with
  gated activation units tanh(a) * sigmoid(b), residual and skip connections, locally conditioned
  on the mel, upsampled x256 by four transposed 2-D convolutions (`WaveNet`).
- The output at time t is the parameters of a mixture of 10 logistics for the NEXT sample t + 1,
  discretised to 16 bits: `discretized_mix_logistic_loss`, `wavenet_loss` (training) and
  `sample_from_discretized_mix_logistic` (generation).
- Generation is sample by sample. `prepare_incremental(model)` folds the weights once into
  matrices and returns a `WaveNetEngine` that keeps, per layer, a queue of its last
  (kernel_size - 1) * dilation + 1 inputs, so that one step is a few matrix products per layer and
  no convolution over the past. It generates a batch of utterances of different lengths at once
  (matrix-matrix products), each ending at its own length.

Facts (sizes, build order, attribute names, initialisation, loss and sampling formulas) were read
from r9y9/wavenet_vocoder at commit 2092a64, the commit its LJSpeech mixture-of-logistics
checkpoint was trained with (`wavenet_vocoder/wavenet.py`, `modules.py`, `conv.py`,
`mixture.py`, `train.py`, `synthesis.py`, `presets/ljspeech_mixture.json`); the code is our own.
Attribute names and build order match theirs, so the state-dict keys of their `WaveNet` (built
with `scalar_input=True`, no speaker embedding) are ours, and the same seed gives the same
initial weights. Parameters: 24,737,396 with weight norm (theirs counted the same way),
24,693,586 with it removed; receptive field 505 samples.

Alignment (theirs, kept): audio (B, 1, T) and mel (B, n_mel, F) with T <= F * hop. The mel is
upsampled to F * hop positions and cropped to T; position t of the upsampled mel belongs to sample
t. `forward` returns params (B, 30, T) where params[..., t] sees samples 0..t and the mel at t, and
predicts sample t + 1 (`wavenet_loss` compares params[..., :-1] with audio[..., 1:]).

Usage:
    h = load_config("configs/baselines/config_wavenet.json")
    model = WaveNet(h)
    params = model(audio, mel)                                  # (B, 30, T), teacher forced
    loss = wavenet_loss(params, audio, lengths, **model.mol_kwargs())
    engine = prepare_incremental(model.eval())                  # weights folded once
    audio = engine.vocode(mel, lengths, seed=1234)              # (B, 1, F * hop)
"""

import math
import sys
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from meldataset import LOG_CLIP
from models import remove_weight_norm, weight_norm
from utils import ConfigError, UserError, weights_key

# r9y9/wavenet_vocoder@2092a64 presets/ljspeech_mixture.json, under its own key names so that block
# can be pasted into "wavenet_config" unchanged. `WaveNet(h)` reads h["wavenet_config"] over these.
WAVENET_DEFAULTS = {
    "out_channels": 30,  # 10 logistics x (pi, mu, log s)
    "layers": 24,
    "stacks": 4,  # dilations 1, 2, ..., 32, four times
    "residual_channels": 512,
    "gate_channels": 512,  # split into two halves of 256: tanh(a) * sigmoid(b)
    "skip_out_channels": 256,
    "kernel_size": 3,
    "dropout": 1 - 0.95,  # 0.05, written this way in their hparams
    "weight_normalization": True,
    "upsample_scales": [4, 4, 4, 4],  # product = hop_size 256
    "freq_axis_kernel_size": 3,
    "quantize_channels": 65536,  # 16-bit: the MoL is discretised into 2**16 bins on [-1, 1]
    "log_scale_min": math.log(1e-14),  # -32.236...: their value for the 16-bit model
    # Ours, not theirs: see `WaveNet.normalize_mel`. null gives their upsampler the raw mel.
    "mel_floor": math.log(LOG_CLIP),
}
SKIP_SCALE = math.sqrt(0.5)  # residual (and running skip) sums are scaled by sqrt(0.5)
UNIFORM_EPS = 1e-5  # mixture.py: uniform draws in (1e-5, 1 - 1e-5) for Gumbel-max and logistic
EDGE = 0.999  # mixture.py: |y| > 0.999 takes the open-ended edge bin (-inf, ..] or [.., +inf)
CDF_DELTA_MIN = 1e-5  # mixture.py: below this bin mass, use the density at the bin centre
CDF_DELTA_FLOOR = 1e-12  # mixture.py: clamp before log
CHUNK = 64  # engine: samples per block of precomputed conditioning and pre-drawn noise
DEFAULT_MAX_SECONDS = 10.0  # synthesis: the most audio generated in one run unless --max_seconds says more


def wavenet_params(h) -> dict:
    """`WAVENET_DEFAULTS` updated with h["wavenet_config"], checked (`ConfigError`, one line)."""
    p = dict(WAVENET_DEFAULTS)
    p.update(h.get("wavenet_config", {}) or {})
    unknown = sorted(set(p) - set(WAVENET_DEFAULTS))
    if unknown:
        raise ConfigError(f"wavenet_config: unknown key(s) {', '.join(unknown)}; known: {', '.join(WAVENET_DEFAULTS)}")
    if p["layers"] % p["stacks"] != 0:
        raise ConfigError(f"wavenet_config: layers {p['layers']} must be a multiple of stacks {p['stacks']}")
    if p["out_channels"] % 3 != 0:
        raise ConfigError(f"wavenet_config: out_channels {p['out_channels']} must be 3 x the number of logistics")
    if p["gate_channels"] % 2 != 0:
        raise ConfigError(f"wavenet_config: gate_channels {p['gate_channels']} must be even (split into a, b)")
    if math.prod(p["upsample_scales"]) != h.get("hop_size", 256):
        raise ConfigError(
            f"wavenet_config: upsample_scales {p['upsample_scales']} multiply to "
            f"{math.prod(p['upsample_scales'])} but hop_size is {h.get('hop_size', 256)}; make them equal"
        )
    return p


def receptive_field_size(layers: int, stacks: int, kernel_size: int) -> int:
    """Samples that one output sees: (kernel_size - 1) * sum of dilations + 1 (505 published)."""
    per_stack = layers // stacks
    return (kernel_size - 1) * sum(2 ** (i % per_stack) for i in range(layers)) + 1


# ---------------------------------------------------------------------------------------------
# Discretised mixture of logistics
# ---------------------------------------------------------------------------------------------


def discretized_mix_logistic_loss(
    y_hat: torch.Tensor, y: torch.Tensor, num_classes: int = 65536, log_scale_min: float = math.log(1e-14)
) -> torch.Tensor:
    """-log P(y) under the discretised mixture: y_hat (B, 3M, T) = (logits, means, log scales),
    y (B, 1, T) in [-1, 1] -> (B, 1, T).

    Bins have width 2 / (num_classes - 1). Samples below -0.999 (above 0.999) take the whole left
    (right) tail. Where a bin holds less than 1e-5 of the mass, the density at the bin centre
    times the bin width is used instead, as theirs (and PixelCNN++). Finite for every log scale
    (they are clamped at `log_scale_min`) and every y. Computed in float32 (or float64) for any input dtype.
    """
    # At least fp32 (also under autocast): 1 / exp(log_scale_min) = 1e14 overflows fp16.
    dtype = torch.promote_types(y_hat.dtype, torch.float32)
    y_hat, y = y_hat.to(dtype), y.to(dtype)
    m = y_hat.size(1) // 3
    logit_probs, means = y_hat[:, :m], y_hat[:, m : 2 * m]
    log_scales = torch.clamp(y_hat[:, 2 * m : 3 * m], min=log_scale_min)
    centered = y - means  # (B, 1, T) - (B, M, T) -> (B, M, T)
    inv_stdv = torch.exp(-log_scales)
    half_bin = 1.0 / (num_classes - 1)
    plus_in = inv_stdv * (centered + half_bin)
    min_in = inv_stdv * (centered - half_bin)
    cdf_delta = torch.sigmoid(plus_in) - torch.sigmoid(min_in)
    log_cdf_plus = plus_in - F.softplus(plus_in)  # log sigmoid(plus_in): left edge bin
    log_one_minus_cdf_min = -F.softplus(min_in)  # log (1 - sigmoid(min_in)): right edge bin
    mid_in = inv_stdv * centered
    log_pdf_mid = mid_in - log_scales - 2.0 * F.softplus(mid_in)
    # NOTE: theirs blends the branches by multiplying with 0/1 masks; torch.where gives the same
    # values and keeps the gradient of the unselected branches out (no 0 * inf).
    inner = torch.where(
        cdf_delta > CDF_DELTA_MIN,
        torch.log(torch.clamp(cdf_delta, min=CDF_DELTA_FLOOR)),
        log_pdf_mid - math.log((num_classes - 1) / 2),
    )
    log_probs = torch.where(y < -EDGE, log_cdf_plus, torch.where(y > EDGE, log_one_minus_cdf_min, inner))
    log_probs = log_probs + F.log_softmax(logit_probs, dim=1)
    return -torch.logsumexp(log_probs, dim=1, keepdim=True)


def wavenet_loss(
    y_hat: torch.Tensor,
    audio: torch.Tensor,
    lengths: torch.Tensor | None = None,
    num_classes: int = 65536,
    log_scale_min: float = math.log(1e-14),
) -> torch.Tensor:
    """Teacher-forced training loss: mean -log P(audio[t + 1] | params[t]) over valid targets.

    y_hat (B, 3M, T) from `WaveNet.forward(audio, mel)`, audio (B, 1, T); lengths (B,) valid
    samples per item (targets at index >= lengths[b] are masked, as their train.py). -> scalar.
    """
    nll = discretized_mix_logistic_loss(y_hat[:, :, :-1], audio[:, :, 1:], num_classes, log_scale_min)
    if lengths is None:
        return nll.mean()
    idx = torch.arange(1, audio.size(-1), device=audio.device)
    mask = (idx[None, :] < lengths.to(audio.device)[:, None]).to(nll.dtype).unsqueeze(1)  # (B, 1, T-1)
    return (nll * mask).sum() / mask.sum()


def draw_uniform(
    shape: Sequence[int], generator: torch.Generator | None, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """Uniform noise in (1e-5, 1 - 1e-5) of `shape`, drawn on the generator's device (or with the
    global RNG of `device`), returned on `device`."""
    gen_device = generator.device if generator is not None else device
    u = torch.rand(tuple(shape), generator=generator, device=gen_device, dtype=torch.float32)
    return (UNIFORM_EPS + (1 - 2 * UNIFORM_EPS) * u).to(device=device, dtype=dtype)


def _sample_mol(params: torch.Tensor, u: torch.Tensor, log_scale_min: float) -> torch.Tensor:
    """params (N, 3M), uniform noise u (N, M + 1) -> samples (N,) in [-1, 1]: pick a logistic by
    Gumbel-max on the logits with u[:, :M], then invert its CDF at u[:, M]."""
    m = params.size(1) // 3
    pick = torch.argmax(params[:, :m] - torch.log(-torch.log(u[:, :m])), dim=1, keepdim=True)  # (N, 1)
    mean = params[:, m : 2 * m].gather(1, pick).squeeze(1)
    log_scale = torch.clamp(params[:, 2 * m : 3 * m].gather(1, pick).squeeze(1), min=log_scale_min)
    v = u[:, m]
    # NOTE: like theirs, the sample is not rounded to the 16-bit grid, only clipped to [-1, 1].
    return torch.clamp(mean + torch.exp(log_scale) * (torch.log(v) - torch.log(1 - v)), -1.0, 1.0)


def sample_from_discretized_mix_logistic(
    y_hat: torch.Tensor,
    log_scale_min: float = math.log(1e-14),
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Draw one sample per position: y_hat (B, 3M, T) -> (B, 1, T) in [-1, 1].

    `noise` (B, T, M + 1) uniform in (0, 1) makes the draw explicit; else it is drawn with
    `generator` (or the global RNG), on any device.
    """
    b, c, t = y_hat.shape
    m = c // 3
    if noise is None:
        noise = draw_uniform((b, t, m + 1), generator, y_hat.device, y_hat.dtype)
    flat = y_hat.transpose(1, 2).reshape(b * t, c)  # (B, 3M, T) -> (B*T, 3M)
    return _sample_mol(flat, noise.reshape(b * t, m + 1), log_scale_min).view(b, 1, t)


# ---------------------------------------------------------------------------------------------
# Building blocks (their `modules.py`)
# ---------------------------------------------------------------------------------------------


def _conv1d(in_ch: int, out_ch: int, kernel_size: int, dilation: int, wn: bool) -> nn.Conv1d:
    """Their weight-normed Conv1d: N(0, sqrt(1 / (kernel_size * in_ch))) weight, zero bias.
    Without weight norm, PyTorch's default init (theirs too)."""
    conv = nn.Conv1d(in_ch, out_ch, kernel_size, dilation=dilation)
    if not wn:
        return conv
    # NOTE: their std is sqrt(std_mul * (1 - dropout) / (k * in)) with std_mul = 1 for every conv
    # here and the dropout argument left at 0 (the layer's 0.05 is not passed down).
    conv.weight.data.normal_(0.0, math.sqrt(1.0 / (kernel_size * in_ch)))
    conv.bias.data.zero_()
    return weight_norm(conv)


def _conv1x1(in_ch: int, out_ch: int, wn: bool) -> nn.Conv1d:
    return _conv1d(in_ch, out_ch, 1, 1, wn)


class ResidualConv1dGLU(nn.Module):
    """One WaveNet layer: x (B, R, T), c (B, n_mel, T) -> (residual out (B, R, T), skip (B, S, T)).

    dropout -> causal dilated conv (R -> G) -> a, b halves; 1x1 conv of c (n_mel -> G), split the
    same way, added; tanh(a) * sigmoid(b) -> 1x1 to skip (S) and 1x1 to residual (R);
    out = (x + residual) * sqrt(0.5).
    """

    def __init__(
        self, residual: int, gate: int, skip: int, kernel_size: int, dilation: int, cin: int, dropout: float, wn: bool
    ):
        super().__init__()
        self.dropout = dropout
        self.kernel_size, self.dilation = kernel_size, dilation
        self.conv = _conv1d(residual, gate, kernel_size, dilation, wn)
        # NOTE: at 2092a64 the conditioning 1x1 has a bias (later commits dropped it: 24,681,298).
        self.conv1x1c = _conv1x1(cin, gate, wn)
        self.conv1x1_out = _conv1x1(gate // 2, residual, wn)
        self.conv1x1_skip = _conv1x1(gate // 2, skip, wn)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, R, T), c (B, n_mel, T) upsampled mel -> ((B, R, T), (B, S, T))."""
        residual = x
        # NOTE: dropout acts on the conv's input only; the residual path keeps the clean x.
        x = F.dropout(x, p=self.dropout, training=self.training)
        # Causal: pad (k - 1) * d zeros on the left. Theirs pads both sides and drops the last
        # (k - 1) * d outputs, which is the same.
        x = self.conv(F.pad(x, ((self.kernel_size - 1) * self.dilation, 0)))
        a, b = x.chunk(2, dim=1)  # (B, G, T) -> 2 x (B, G/2, T)
        ca, cb = self.conv1x1c(c).chunk(2, dim=1)
        x = torch.tanh(a + ca) * torch.sigmoid(b + cb)
        s = self.conv1x1_skip(x)
        x = (self.conv1x1_out(x) + residual) * SKIP_SCALE
        return x, s


class WaveNet(nn.Module):
    """Teacher-forced WaveNet: audio (B, 1, T) in [-1, 1], mel (B, n_mel, F) -> MoL params (B, 3M, T).

    params[..., t] depends on audio[..., :t + 1] and the upsampled mel at t, and predicts sample
    t + 1 (see the module docstring for the alignment).
    """

    def __init__(self, h):
        super().__init__()
        p = wavenet_params(h)
        self.p = p
        self.num_mels = h.get("num_mels", 80)
        wn = p["weight_normalization"]
        per_stack = p["layers"] // p["stacks"]
        # NOTE: their first 1x1 is always weight-normed (`Conv1d1x1`'s default), even without
        # weight_normalization.
        self.first_conv = _conv1x1(1, p["residual_channels"], True)
        self.conv_layers = nn.ModuleList(
            ResidualConv1dGLU(
                p["residual_channels"],
                p["gate_channels"],
                p["skip_out_channels"],
                p["kernel_size"],
                2 ** (i % per_stack),
                self.num_mels,
                p["dropout"],
                wn,
            )
            for i in range(p["layers"])
        )
        # Indices 0..3 as theirs (ReLU, 1x1, ReLU, 1x1), so the keys are last_conv_layers.1/3.*
        self.last_conv_layers = nn.ModuleList(
            [
                nn.ReLU(),
                _conv1x1(p["skip_out_channels"], p["skip_out_channels"], wn),
                nn.ReLU(),
                _conv1x1(p["skip_out_channels"], p["out_channels"], wn),
            ]
        )
        k = p["freq_axis_kernel_size"]
        ups = []
        for s in p["upsample_scales"]:
            convt = nn.ConvTranspose2d(1, 1, (k, s), stride=(1, s), padding=((k - 1) // 2, 0))
            # NOTE: their upsampler starts as a plain average over k mel bins (weight 1/k, zero bias)
            # and each stage ends in a ReLU, which assumes non-negative ([0, 1]) features.
            convt.weight.data.fill_(1.0 / k)
            convt.bias.data.zero_()
            ups += [weight_norm(convt) if wn else convt, nn.ReLU()]
        self.upsample_conv = nn.ModuleList(ups)
        self.receptive_field = receptive_field_size(p["layers"], p["stacks"], p["kernel_size"])
        self.hop_size = math.prod(p["upsample_scales"])

    def mol_kwargs(self) -> dict:
        """num_classes and log_scale_min of this model, for `wavenet_loss` and sampling."""
        return {"num_classes": self.p["quantize_channels"], "log_scale_min": self.p["log_scale_min"]}

    def normalize_mel(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, n_mel, F) log mel -> (mel - floor) / -floor, so silence is 0 and speech about 1.

        NOTE: not in theirs. Their frontend gives dB scaled to [0, 1] and their upsampler's ReLUs
        (with positive initial weights) rely on it; this project's log mel, ln(max(x, 1e-5)), is
        mostly negative and would be zeroed by the first ReLU. This affine map (no parameters)
        gives the upsampler the range it was designed for. mel_floor null turns it off.
        """
        floor = self.p["mel_floor"]
        return mel if floor is None else (mel - floor) / (-floor)

    def upsample(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, n_mel, F) -> (B, n_mel, F * hop). No mixing across frames (kernel = stride in time)."""
        c = self.normalize_mel(mel).unsqueeze(1)  # (B, 1, n_mel, F)
        for f in self.upsample_conv:
            c = f(c)
        return c.squeeze(1)

    def forward(self, audio: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        """audio (B, 1, T) in [-1, 1], mel (B, n_mel, F) with T <= F * hop -> params (B, 3M, T)."""
        c = self.upsample(mel)
        t = audio.size(-1)
        if c.size(-1) < t:
            raise ValueError(f"WaveNet: audio has {t} samples but the mel only covers {c.size(-1)}; crop the audio")
        c = c[:, :, :t]  # their collate makes T = F * hop exactly; a shorter audio crops the tail
        x = self.first_conv(audio)
        skips = None
        for f in self.conv_layers:
            x, s = f(x, c)
            # NOTE: at 2092a64 the skips are a running sum scaled by sqrt(0.5) at every layer,
            # not a plain sum (later commits scale the plain sum by sqrt(1 / layers)).
            skips = s if skips is None else (skips + s) * SKIP_SCALE
        x = skips
        for f in self.last_conv_layers:
            x = f(x)
        return x

    def remove_weight_norm(self) -> None:
        """Fold weight norm into plain weights (same outputs): 24,693,586 parameters published."""
        remove_weight_norm(self)

    def vocode(
        self,
        mel: torch.Tensor,
        lengths: torch.Tensor | None = None,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
        progress: Callable[[int, int], None] | None = None,
        seed: int | None = None,
    ) -> torch.Tensor:
        """Synthesis API: mel (B, n_mel, F) -> audio (B, 1, F * hop); see `WaveNetEngine.vocode`."""
        return prepare_incremental(self).vocode(mel, lengths, generator=generator, progress=progress, seed=seed)


# ---------------------------------------------------------------------------------------------
# Incremental generation
# ---------------------------------------------------------------------------------------------


def _folded(m: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of a conv with weight norm folded in, detached (the module is untouched)."""
    hook = getattr(m, "_wn_hook", None)
    w = hook.compute(m) if hook is not None else m.weight
    return w.detach().clone(), m.bias.detach().clone()


class WaveNetEngine:
    """Sample-by-sample WaveNet with weights prepared once (weight norm folded, each dilated conv as
    one (G, k * R) matrix over its k taps) and per-layer queues of the last (k - 1) * d + 1 inputs.

    A batch runs as matrix-matrix products; items are sorted by length and drop out of the batch
    when they end. Build it with `prepare_incremental(model)`; later changes to the model's
    weights are not seen. Runs on the model's device and dtype.

    State is channel-major, (C, N) for N items, so each product is weight (C_out, C_in) @ state
    (C_in, N): on a one-thread CPU this was about 1.4-1.5x faster than (N, C_in) @ (C_in, C_out)
    at N = 4 and 16 (the same at N = 1: one step streams all ~99 MB of weights either way).
    """

    def __init__(self, model: WaveNet):
        p = model.p
        self.hop_size, self.num_mels = model.hop_size, model.num_mels
        self.mixtures = p["out_channels"] // 3
        self.log_scale_min = p["log_scale_min"]
        self.mel_floor = p["mel_floor"]
        self.kernel_size = p["kernel_size"]
        self.residual, self.gate, self.skip = p["residual_channels"], p["gate_channels"], p["skip_out_channels"]
        w, b = _folded(model.first_conv)
        self.w_first, self.b_first = w.view(-1, 1), b.view(-1, 1)  # (R, 1)
        self.dilations, self.w_conv, self.w_skip_out, self.b_skip_out = [], [], [], []
        w_cond, b_cond = [], []
        for layer in model.conv_layers:
            w, b = _folded(layer.conv)  # (G, R, k)
            # Columns tap-major, oldest tap first: [x[t - (k-1)d]; ...; x[t]] -> (G, k * R)
            self.w_conv.append(w.permute(0, 2, 1).reshape(w.size(0), -1).contiguous())
            wc, bc = _folded(layer.conv1x1c)
            w_cond.append(wc.squeeze(-1))
            b_cond.append(b + bc)  # the dilated conv's bias rides with the conditioning
            ws, bs = _folded(layer.conv1x1_skip)
            wo, bo = _folded(layer.conv1x1_out)
            # skip and residual 1x1s as one (S + R, G/2) matrix; the last layer's residual output
            # is never used, so it gets the skip rows only
            last = len(self.w_conv) == len(model.conv_layers)
            self.w_skip_out.append(ws.squeeze(-1) if last else torch.cat([ws.squeeze(-1), wo.squeeze(-1)], 0))
            self.b_skip_out.append((bs if last else torch.cat([bs, bo])).view(-1, 1))
            self.dilations.append(layer.dilation)
        self.w_cond = torch.cat(w_cond, 0)  # (L * G, n_mel)
        self.b_cond = torch.cat(b_cond).view(-1, 1)  # (L * G, 1)
        w1, b1 = _folded(model.last_conv_layers[1])
        w2, b2 = _folded(model.last_conv_layers[3])
        self.w_head1, self.b_head1 = w1.squeeze(-1), b1.view(-1, 1)
        self.w_head2, self.b_head2 = w2.squeeze(-1), b2.view(-1, 1)
        self.upsample = [
            (*_folded(m), m.stride, m.padding) for m in model.upsample_conv if isinstance(m, nn.ConvTranspose2d)
        ]
        self.device, self.dtype = self.w_first.device, self.w_first.dtype

    def _cond(self, mel: torch.Tensor, t0: int, t1: int) -> torch.Tensor:
        """Per-layer conditioning (plus biases) for samples t0..t1-1: mel (N, n_mel, F) ->
        (L, t1 - t0, G, N). Upsamples only the frames needed (frames do not mix)."""
        f0, f1 = t0 // self.hop_size, -(-t1 // self.hop_size)
        c = mel[:, :, f0:f1]
        if self.mel_floor is not None:
            c = (c - self.mel_floor) / (-self.mel_floor)
        c = c.unsqueeze(1)
        for w, b, stride, padding in self.upsample:
            c = F.relu(F.conv_transpose2d(c, w, b, stride=stride, padding=padding))
        c = c.squeeze(1)[:, :, t0 - f0 * self.hop_size : t1 - f0 * self.hop_size]  # (N, n_mel, t1 - t0)
        z = torch.matmul(self.w_cond, c) + self.b_cond  # (N, L * G, t1 - t0)
        n, _, t = z.shape
        return z.view(n, len(self.dilations), self.gate, t).permute(1, 3, 2, 0).contiguous()

    def _run(
        self,
        mel: torch.Tensor,
        steps: list[int],
        audio: torch.Tensor | None,
        noise_for: Callable[[int, int, int], torch.Tensor] | None,
        progress: Callable[[int, int], None] | None,
    ) -> torch.Tensor:
        """The step loop over items sorted by length (descending; `steps` per item).

        Teacher forced (`audio` (N, T)): returns params (N, T, 3M). Generating: returns samples
        (N, T, 1); noise_for(item, t0, n) gives the item's uniforms (n, M + 1) for steps t0..t0+n-1.
        """
        n_items, total = mel.size(0), max(steps)
        k, r, skip = self.kernel_size, self.residual, self.skip
        queues = [
            torch.zeros((k - 1) * d + 1, r, n_items, device=self.device, dtype=self.dtype) for d in self.dilations
        ]
        out_dim = 3 * self.mixtures if audio is not None else 1
        out = torch.zeros(n_items, total, out_dim, device=self.device, dtype=self.dtype)
        x_in = torch.zeros(1, n_items, device=self.device, dtype=self.dtype)  # their initial input: 0.0
        n = n_items
        for t0 in range(0, total, CHUNK):
            t1 = min(t0 + CHUNK, total)
            n_chunk = sum(s > t0 for s in steps)
            cond = self._cond(mel[:n_chunk], t0, t1)
            if noise_for is not None:
                noise = torch.zeros(n_chunk, t1 - t0, self.mixtures + 1, device=self.device, dtype=self.dtype)
                for i in range(n_chunk):
                    span = min(t1, steps[i]) - t0
                    noise[i, :span] = noise_for(i, t0, span)
            for t in range(t0, t1):
                n_now = sum(s > t for s in steps)  # items still running: a prefix, since sorted
                if n_now < n:  # drop the finished items from the state, keep it contiguous
                    n = n_now
                    queues = [q[:, :, :n].contiguous() for q in queues]
                if audio is not None:
                    x_in = audio[:n, t].view(1, n)
                x = torch.addmm(self.b_first, self.w_first, x_in[:, :n])  # (1, n) -> (R, n)
                skips = None
                for i, (q, d) in enumerate(zip(queues, self.dilations)):
                    size = q.size(0)
                    q[t % size] = x
                    taps = torch.cat([q[(t - (k - 1 - j) * d) % size] for j in range(k)], dim=0)  # (k*R, n)
                    z = torch.addmm(cond[i, t - t0, :, :n], self.w_conv[i], taps)  # (G, n)
                    a, b = z.chunk(2, dim=0)
                    g = torch.tanh(a) * torch.sigmoid(b)
                    so = torch.addmm(self.b_skip_out[i], self.w_skip_out[i], g)  # (S [+ R], n)
                    s = so[:skip]
                    if so.size(0) > skip:
                        x = (x + so[skip:]) * SKIP_SCALE
                    skips = s if skips is None else (skips + s) * SKIP_SCALE
                h = torch.addmm(self.b_head1, self.w_head1, torch.relu(skips))
                params = torch.addmm(self.b_head2, self.w_head2, torch.relu(h))  # (3M, n)
                if audio is not None:
                    out[:n, t] = params.t()
                else:
                    x_in = _sample_mol(params.t(), noise[:n, t - t0], self.log_scale_min).view(1, n)
                    out[:n, t, 0] = x_in[0]
            if progress is not None:
                progress(t1, total)
        return out

    @torch.no_grad()
    def incremental_forward(self, audio: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        """Step by step, fed the given samples: audio (B, 1, T), mel (B, n_mel, F) -> params
        (B, 3M, T), equal to `WaveNet.forward(audio, mel)` in eval mode (a check of the engine)."""
        b, _, t = audio.shape
        out = self._run(mel.to(self.device, self.dtype), [t] * b, audio[:, 0].to(self.device, self.dtype), None, None)
        return out.transpose(1, 2)

    @torch.no_grad()
    def generate(
        self,
        mel: torch.Tensor,
        lengths: torch.Tensor | Sequence[int] | None = None,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
        progress: Callable[[int, int], None] | None = None,
        seed: int | None = None,
    ) -> torch.Tensor:
        """Sample audio: mel (B, n_mel, F) -> (B, 1, F * hop), zero past lengths[b] * hop.

        lengths (B,): valid frames per item (default all F). Random draws, per item b and step t,
        are uniforms (M + 1 per step) drawn in blocks of 64 steps:
        - `generator` a sequence (one per item) or `seed` (each item its own generator seeded with
          it): an item's audio depends only on its mel, length and generator, never on the batch
          it is in, so a batch equals its items generated one at a time;
        - one `generator`: shared by all items, block by block (reproducible for the same batch);
        - neither: the global RNG of the model's device.
        progress(steps_done, steps_total) is called after every block.
        """
        b, n_mel, frames = mel.shape
        if n_mel != self.num_mels:
            raise ValueError(f"WaveNet: mel has {n_mel} bins but the model expects {self.num_mels}")
        lengths = [frames] * b if lengths is None else [int(n) for n in torch.as_tensor(lengths).tolist()]
        if len(lengths) != b or any(n < 0 or n > frames for n in lengths):
            raise ValueError(f"WaveNet: lengths {lengths} must give 0..{frames} frames for each of {b} items")
        if seed is not None:
            generator = [torch.Generator(device=self.device).manual_seed(seed) for _ in range(b)]
        if isinstance(generator, Sequence) and len(generator) != b:
            raise ValueError(f"WaveNet: {len(generator)} generators for {b} items; give one per item")
        order = sorted(range(b), key=lambda i: -lengths[i])  # stable: equal lengths keep their order
        steps = [lengths[i] * self.hop_size for i in order]
        gens = [generator[i] for i in order] if isinstance(generator, Sequence) else [generator] * b
        out = torch.zeros(b, 1, frames * self.hop_size, device=self.device, dtype=self.dtype)
        if max(steps, default=0) == 0:
            return out

        def noise_for(item: int, t0: int, n: int) -> torch.Tensor:
            return draw_uniform((n, self.mixtures + 1), gens[item], self.device, self.dtype)

        samples = self._run(mel[order].to(self.device, self.dtype), steps, None, noise_for, progress)  # (B, T, 1)
        for j, i in enumerate(order):
            out[i, 0, : steps[j]] = samples[j, : steps[j], 0]
        return out

    vocode = generate  # the synthesis API's name, as the other vocoders


def prepare_incremental(model: WaveNet) -> WaveNetEngine:
    """The generation engine of `model` (its current weights, folded once; eval semantics)."""
    return WaveNetEngine(model)


# ---------------------------------------------------------------------------------------------
# The synthesis API's view
# ---------------------------------------------------------------------------------------------


class WaveNetVocoder(nn.Module):
    """A WaveNet as the synthesis API uses a generator: mel (B, n_mel, F) [, lengths (B,)] ->
    audio (B, 1, F * hop), generated by the incremental engine (prepared once per weight version).

    seed: each item draws from its own generator seeded with it (an item's audio does not depend
    on its batch); None: the global RNG. max_seconds: `check_workload` refuses more audio than
    this. max_frames: generate only each mel's first frames (quick validation while training).
    A progress bar over samples is shown when stderr is a terminal.
    """

    def __init__(self, wavenet: WaveNet, seed=None, max_seconds=DEFAULT_MAX_SECONDS, max_frames=None):
        super().__init__()
        self.wavenet = wavenet
        self.seed, self.max_seconds, self.max_frames = seed, max_seconds, max_frames
        self._engine: tuple | None = None  # (weight key, WaveNetEngine)

    @classmethod
    def from_config(cls, wavenet: WaveNet, h, seed=None, max_seconds=None) -> "WaveNetVocoder":
        """Unset settings: the config's `seed` (the same audio at every run), 10 s of audio at most."""
        seed = h.get("seed") if seed is None else seed
        return cls(wavenet, seed, DEFAULT_MAX_SECONDS if max_seconds is None else max_seconds)

    def engine(self) -> "WaveNetEngine":
        """The engine of the current weights (rebuilt after any in-place update or `.to()`)."""
        key = weights_key(self.wavenet)
        if self._engine is None or self._engine[0] != key:
            self._engine = (key, prepare_incremental(self.wavenet))
        return self._engine[1]

    def forward(self, mel: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """mel (B, n_mel, F), lengths (B,) valid frames -> audio (B, 1, F' * hop), F' = F or max_frames."""
        if self.max_frames is not None:
            mel = mel[:, :, : self.max_frames]
            lengths = None if lengths is None else lengths.clamp(max=self.max_frames)
        bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            bar = tqdm(total=mel.size(-1) * self.wavenet.hop_size, unit="sample", desc="WaveNet", leave=False)

        def progress(done: int, total: int) -> None:
            bar.update(done - bar.n)

        try:
            return self.engine().vocode(mel, lengths, seed=self.seed, progress=progress if bar else None)
        finally:
            if bar is not None:
                bar.close()

    def samples_per_second(self) -> float:
        """This machine's generation speed at batch 1, measured on one frame (hop_size samples)."""
        mel = torch.full((1, self.wavenet.num_mels, 1), math.log(LOG_CLIP))
        engine = self.engine()
        start = time.perf_counter()
        engine.generate(mel.to(engine.device), seed=0)
        return self.wavenet.hop_size / max(time.perf_counter() - start, 1e-9)

    def check_workload(self, seconds: float, sampling_rate: int, notify: Callable[[str], None]) -> None:
        """Before a long generation: say how long `seconds` of audio will take here, and raise
        `UserError` when it is more than `max_seconds` of audio."""
        rate = self.samples_per_second()
        eta = seconds * sampling_rate / rate
        notify(
            f"WaveNet generates sample by sample: {seconds:.3g} s of audio at about {rate:.0f} samples/s "
            f"(measured now, batch 1) takes about {_duration(eta)}; batching files (--batch_size) is faster"
        )
        if seconds > self.max_seconds:
            raise UserError(
                f"WaveNet: {seconds:.3g} s of audio is more than --max_seconds {self.max_seconds:g} (about "
                f"{_duration(eta)} here); pass --max_seconds {math.ceil(seconds)} to generate it anyway"
            )

    def remove_weight_norm(self) -> None:
        self.wavenet.remove_weight_norm()


def _duration(seconds: float) -> str:
    """12 s, 3.5 min, 2.1 h."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"
