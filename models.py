"""HiFi-GAN networks and losses (Kong, Kim, Bae, NeurIPS 2020).

- Generator (section 2.1): transposed-conv upsampling, each followed by multi-receptive-field
  fusion (MRF) of `ResBlock1` (V1, V2) or `ResBlock2` (V3) blocks.
- Multi-period discriminator (MPD, section 2.2) and multi-scale discriminator (MSD, section 2.3).
- Losses (section 2.4): least-squares GAN losses and feature matching.

Attribute names and build order follow the authors' code (jik876/hifi-gan), so state dicts and
`g_XXXXXXXX` / `do_XXXXXXXX` checkpoints are interchangeable with it. Weight norm is implemented
here (same math as `torch.nn.utils.weight_norm`, same `weight_g` / `weight_v` keys, no
deprecation warning); `load_state_dict` also accepts torch's parametrization key names.
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn import AvgPool1d, Conv1d, Conv2d, ConvTranspose1d
from torch.nn.utils import spectral_norm

from utils import get_padding, init_weights

LRELU_SLOPE = 0.1  # LeakyReLU slope used throughout (authors' code)
# NOTE: before conv_post the authors' code calls F.leaky_relu with its default slope, 0.01, not
# LRELU_SLOPE; kept for faithful outputs.
POST_SLOPE = 0.01
PRE_POST_KERNEL = 7  # kernel of the generator's conv_pre and conv_post
MPD_PERIODS = (2, 3, 5, 7, 11)  # section 2.2: primes, to avoid overlaps
MPD_CHANNELS = (32, 128, 512, 1024, 1024)  # widths of the 5 (k, 1) convs of each DiscriminatorP
MPD_KERNEL, MPD_STRIDE = 5, 3
MSD_NUM_SCALES = 3  # raw audio, x2 and x4 average-pooled (section 2.3)
MSD_CHANNELS = (128, 128, 256, 512, 1024, 1024, 1024)  # widths of the 7 convs of each DiscriminatorS
# (kernel, stride, groups, padding) of those 7 convs, as in the authors' code
MSD_LAYERS = (
    (15, 1, 1, 7),
    (41, 2, 4, 20),
    (41, 2, 16, 20),
    (41, 4, 16, 20),
    (41, 4, 16, 20),
    (41, 1, 16, 20),
    (5, 1, 1, 2),
)

_PARAM_G, _PARAM_V = "parametrizations.weight.original0", "parametrizations.weight.original1"


# ---------------------------------------------------------------------------------------------
# Weight norm with the original state-dict keys
# ---------------------------------------------------------------------------------------------


class _WeightNormHook:
    """Forward pre-hook that recomputes `module.weight` from `weight_g` and `weight_v`."""

    def __init__(self, dim: int):
        self.dim = dim

    def compute(self, module: nn.Module) -> torch.Tensor:
        return torch._weight_norm(module.weight_v, module.weight_g, self.dim)

    def __call__(self, module: nn.Module, inputs) -> None:
        module.weight = self.compute(module)


def weight_norm(module: nn.Module, dim: int = 0) -> nn.Module:
    """w = g * v / ||v|| (Salimans & Kingma 2016) on `module.weight`, stored as `weight_g`,
    `weight_v` exactly like the legacy `torch.nn.utils.weight_norm` (which now warns)."""
    weight = module.weight
    del module._parameters["weight"]
    module.register_parameter("weight_g", nn.Parameter(torch.norm_except_dim(weight, 2, dim).data))
    module.register_parameter("weight_v", nn.Parameter(weight.data))
    hook = _WeightNormHook(dim)
    module._wn_hook = hook
    module._wn_handle = module.register_forward_pre_hook(hook)
    module.weight = hook.compute(module)
    return module


def remove_weight_norm(module: nn.Module) -> nn.Module:
    """Fold `weight_g` / `weight_v` into a plain `weight` parameter on `module` and every
    submodule that has weight norm (no-op where there is none)."""
    for m in module.modules():
        hook = getattr(m, "_wn_hook", None)
        if hook is None:
            continue
        weight = hook.compute(m).detach()
        m._wn_handle.remove()
        del m._wn_hook, m._wn_handle, m.weight
        del m._parameters["weight_g"], m._parameters["weight_v"]
        m.weight = nn.Parameter(weight)
    return module


def convert_state_dict(model: nn.Module, state_dict: dict) -> dict:
    """Adapt weight-norm keys of `state_dict` to what `model` expects.

    Accepts torch's parametrization names (`parametrizations.weight.original0/1`), folds
    `weight_g`/`weight_v` into `weight` when the model's weight norm was removed, and splits a
    plain `weight` into `weight_g`/`weight_v` when the model has weight norm. Other keys pass.
    """
    own = dict(model.named_modules())
    out = {}
    for key, value in state_dict.items():
        for new, old in (("weight_g", _PARAM_G), ("weight_v", _PARAM_V)):
            if key.endswith(old):
                key = key[: -len(old)] + new
        out[key] = value
    for name, m in own.items():
        p = f"{name}." if name else ""
        wn = hasattr(m, "_wn_hook")
        if not wn and f"{p}weight_g" in out and f"{p}weight_v" in out and f"{p}weight" not in out:
            if not hasattr(m, "weight_orig"):
                g, v = out.pop(f"{p}weight_g"), out.pop(f"{p}weight_v")
                out[f"{p}weight"] = torch._weight_norm(v, g, 0)
        elif wn and f"{p}weight" in out and f"{p}weight_g" not in out:
            w = out.pop(f"{p}weight")
            out[f"{p}weight_g"] = torch.norm_except_dim(w, 2, 0)
            out[f"{p}weight_v"] = w
    return out


class _CompatModule(nn.Module):
    """Base of the top-level networks: `load_state_dict` accepts every weight-norm key layout."""

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return super().load_state_dict(convert_state_dict(self, state_dict), strict, assign)


def _mask(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Zero the padded tail of a batch: `mask` is (B, 1, T) of 0/1, or None for no padding."""
    return x if mask is None else x * mask


# ---------------------------------------------------------------------------------------------
# Generator
# ---------------------------------------------------------------------------------------------


class _ResBlock(nn.Module):
    """What both MRF residual blocks share: folding weight norm for inference."""

    def remove_weight_norm(self) -> None:
        remove_weight_norm(self)


class ResBlock1(_ResBlock):
    """MRF residual block of V1/V2: per dilation d, LReLU -> conv(k, d) -> LReLU -> conv(k, 1),
    plus the skip. (B, C, T) -> (B, C, T)."""

    def __init__(self, h, channels: int, kernel_size: int = 3, dilation=(1, 3, 5)):
        super().__init__()
        self.convs1 = nn.ModuleList(
            weight_norm(Conv1d(channels, channels, kernel_size, 1, dilation=d, padding=get_padding(kernel_size, d)))
            for d in dilation
        )
        self.convs1.apply(init_weights)
        self.convs2 = nn.ModuleList(
            weight_norm(Conv1d(channels, channels, kernel_size, 1, dilation=1, padding=get_padding(kernel_size, 1)))
            for _ in dilation
        )
        self.convs2.apply(init_weights)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, C, T), zero past each item's length when `mask` (B, 1, T) is given."""
        for c1, c2 in zip(self.convs1, self.convs2):
            xt = F.leaky_relu(x, LRELU_SLOPE)
            xt = _mask(c1(xt), mask)
            xt = F.leaky_relu(xt, LRELU_SLOPE)
            xt = _mask(c2(xt), mask)
            x = xt + x
        return x


class ResBlock2(_ResBlock):
    """MRF residual block of V3: per dilation d, LReLU -> conv(k, d), plus the skip.
    (B, C, T) -> (B, C, T)."""

    def __init__(self, h, channels: int, kernel_size: int = 3, dilation=(1, 3)):
        super().__init__()
        self.convs = nn.ModuleList(
            weight_norm(Conv1d(channels, channels, kernel_size, 1, dilation=d, padding=get_padding(kernel_size, d)))
            for d in dilation
        )
        self.convs.apply(init_weights)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, C, T), zero past each item's length when `mask` (B, 1, T) is given."""
        for c in self.convs:
            xt = F.leaky_relu(x, LRELU_SLOPE)
            xt = _mask(c(xt), mask)
            x = xt + x
        return x


class Generator(_CompatModule):
    """Mel-spectrogram (B, num_mels, F) -> waveform (B, 1, F * hop_size) in [-1, 1]."""

    def __init__(self, h):
        super().__init__()
        self.num_kernels = len(h.resblock_kernel_sizes)
        self.upsample_rates = list(h.upsample_rates)
        ch0 = h.upsample_initial_channel
        self.conv_pre = weight_norm(Conv1d(h.num_mels, ch0, PRE_POST_KERNEL, 1, padding=get_padding(PRE_POST_KERNEL)))
        resblock = ResBlock1 if str(h.resblock) == "1" else ResBlock2
        self.ups = nn.ModuleList(
            weight_norm(ConvTranspose1d(ch0 // 2**i, ch0 // 2 ** (i + 1), k, u, padding=(k - u) // 2))
            for i, (u, k) in enumerate(zip(h.upsample_rates, h.upsample_kernel_sizes))
        )
        self.resblocks = nn.ModuleList(
            resblock(h, ch0 // 2 ** (i + 1), k, d)
            for i in range(len(self.ups))
            for k, d in zip(h.resblock_kernel_sizes, h.resblock_dilation_sizes)
        )
        ch = ch0 // 2 ** len(self.ups)
        self.conv_post = weight_norm(Conv1d(ch, 1, PRE_POST_KERNEL, 1, padding=get_padding(PRE_POST_KERNEL)))
        self.ups.apply(init_weights)
        self.conv_post.apply(init_weights)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, num_mels, F) -> (B, 1, F * hop_size).

        `lengths` (B,) gives each item's real number of frames in a zero-padded batch: the padding
        is masked after every convolution, so each item's first `lengths[b] * hop_size` samples
        equal what the item alone would give. (Fast CPU inference: `engine.prepare`.)
        """
        scale = 1
        if lengths is not None:
            lengths = lengths.to(x.device)
        mask = self._mask_at(lengths, scale, x.shape[-1])
        x = _mask(self.conv_pre(x), mask)
        for i, up in enumerate(self.ups):
            x = F.leaky_relu(x, LRELU_SLOPE)
            x = up(x)
            scale *= self.upsample_rates[i]
            mask = self._mask_at(lengths, scale, x.shape[-1])
            x = _mask(x, mask)
            xs = None
            for j in range(self.num_kernels):
                out = self.resblocks[i * self.num_kernels + j](x, mask)
                xs = out if xs is None else xs + out
            x = xs / self.num_kernels
        x = F.leaky_relu(x, POST_SLOPE)
        x = self.conv_post(x)
        return torch.tanh(x)

    @staticmethod
    def _mask_at(lengths: torch.Tensor | None, scale: int, t: int) -> torch.Tensor | None:
        """(B, 1, t) float mask of the first lengths * scale steps, or None without lengths."""
        if lengths is None:
            return None
        steps = torch.arange(t, device=lengths.device)
        return (steps[None, :] < (lengths[:, None] * scale)).unsqueeze(1).float()

    def remove_weight_norm(self) -> None:
        """Fold weight norm into plain weights (for inference; same outputs)."""
        remove_weight_norm(self)


# ---------------------------------------------------------------------------------------------
# Discriminators
# ---------------------------------------------------------------------------------------------


def run_discriminators(discriminators, y: torch.Tensor, y_hat: torch.Tensor, pools=()):
    """Each discriminator on real `y` and generated `y_hat` (B, 1, T); `pools[i - 1]` (when given)
    downsamples both before discriminator i. Returns (real scores, fake scores, real fmaps, fake
    fmaps), one entry per discriminator, the structure the losses take."""
    y_d_rs, y_d_gs, fmap_rs, fmap_gs = [], [], [], []
    for i, d in enumerate(discriminators):
        if i != 0 and pools:
            y, y_hat = pools[i - 1](y), pools[i - 1](y_hat)  # (B, 1, T) -> (B, 1, T / 2)
        y_d_r, fmap_r = d(y)
        y_d_g, fmap_g = d(y_hat)
        y_d_rs.append(y_d_r)
        fmap_rs.append(fmap_r)
        y_d_gs.append(y_d_g)
        fmap_gs.append(fmap_g)
    return y_d_rs, y_d_gs, fmap_rs, fmap_gs


def score_and_features(x: torch.Tensor, convs, conv_post) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The body both sub-discriminators share: `convs` each followed by leaky ReLU, then
    `conv_post`. Returns the flattened score (B, N) and every layer's output (the feature maps)."""
    fmap = []
    for conv in convs:
        x = F.leaky_relu(conv(x), LRELU_SLOPE)
        fmap.append(x)
    x = conv_post(x)
    fmap.append(x)
    return torch.flatten(x, 1, -1), fmap


class DiscriminatorP(nn.Module):
    """One MPD sub-discriminator: (B, 1, T) reshaped to (B, 1, T/p, p), then (k, 1) Conv2ds.
    Returns the flattened score (B, N) and the feature maps. `channels`: the five conv widths."""

    def __init__(
        self,
        period: int,
        kernel_size: int = MPD_KERNEL,
        stride: int = MPD_STRIDE,
        use_spectral_norm: bool = False,
        channels=MPD_CHANNELS,
    ):
        super().__init__()
        self.period = period
        norm_f = spectral_norm if use_spectral_norm else weight_norm
        # NOTE: padding uses get_padding(5, 1) whatever kernel_size is, as in the authors' code.
        pad = (get_padding(MPD_KERNEL, 1), 0)
        ch = (1, *channels)
        self.convs = nn.ModuleList(
            [norm_f(Conv2d(ch[i], ch[i + 1], (kernel_size, 1), (stride, 1), padding=pad)) for i in range(4)]
            + [norm_f(Conv2d(ch[4], ch[5], (kernel_size, 1), 1, padding=(2, 0)))]
        )
        self.conv_post = norm_f(Conv2d(ch[5], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x: (B, 1, T) -> (score (B, N), feature maps)."""
        b, c, t = x.shape
        if t % self.period != 0:  # reflect-pad to a whole number of periods
            n_pad = self.period - (t % self.period)
            x = F.pad(x, (0, n_pad), "reflect")
            t = t + n_pad
        x = x.view(b, c, t // self.period, self.period)  # (B, 1, T) -> (B, 1, T/p, p)
        return score_and_features(x, self.convs, self.conv_post)


class MultiPeriodDiscriminator(_CompatModule):
    """MPD: one `DiscriminatorP` per period (default `MPD_PERIODS`)."""

    def __init__(self, periods=MPD_PERIODS, channels=MPD_CHANNELS):
        super().__init__()
        self.discriminators = nn.ModuleList(DiscriminatorP(p, channels=channels) for p in periods)

    @classmethod
    def from_config(cls, h) -> "MultiPeriodDiscriminator":
        """`mpd_periods` / `mpd_channels` from the config; absent keys give the paper's MPD."""
        return cls(h.get("mpd_periods", MPD_PERIODS), h.get("mpd_channels", MPD_CHANNELS))

    def forward(self, y: torch.Tensor, y_hat: torch.Tensor):
        """y, y_hat: (B, 1, T) -> (real scores, fake scores, real fmaps, fake fmaps), one per period."""
        return run_discriminators(self.discriminators, y, y_hat)


class DiscriminatorS(nn.Module):
    """One MSD sub-discriminator: strided, grouped Conv1ds on (B, 1, T). `channels`: the seven
    conv widths (each a multiple of its layer's groups)."""

    def __init__(self, use_spectral_norm: bool = False, channels=MSD_CHANNELS):
        super().__init__()
        norm_f = spectral_norm if use_spectral_norm else weight_norm
        ch = (1, *channels)
        self.convs = nn.ModuleList(
            norm_f(Conv1d(ch[i], ch[i + 1], k, s, groups=g, padding=p)) for i, (k, s, g, p) in enumerate(MSD_LAYERS)
        )
        self.conv_post = norm_f(Conv1d(ch[-1], 1, 3, 1, padding=1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x: (B, 1, T) -> (score (B, N), feature maps)."""
        return score_and_features(x, self.convs, self.conv_post)


class MultiScaleDiscriminator(_CompatModule):
    """MSD: three `DiscriminatorS` on raw, x2- and x4-pooled audio.

    NOTE: spectral norm on the first (raw-audio) sub-discriminator only, weight norm on the others.
    """

    def __init__(self, channels=MSD_CHANNELS):
        super().__init__()
        self.discriminators = nn.ModuleList(
            DiscriminatorS(use_spectral_norm=(i == 0), channels=channels) for i in range(MSD_NUM_SCALES)
        )
        self.meanpools = nn.ModuleList(AvgPool1d(4, 2, padding=2) for _ in range(MSD_NUM_SCALES - 1))

    @classmethod
    def from_config(cls, h) -> "MultiScaleDiscriminator":
        """`msd_channels` from the config; absent, the paper's MSD."""
        return cls(h.get("msd_channels", MSD_CHANNELS))

    def forward(self, y: torch.Tensor, y_hat: torch.Tensor):
        """y, y_hat: (B, 1, T) -> (real scores, fake scores, real fmaps, fake fmaps), one per scale."""
        return run_discriminators(self.discriminators, y, y_hat, self.meanpools)


# ---------------------------------------------------------------------------------------------
# Losses (section 2.4)
# ---------------------------------------------------------------------------------------------


def feature_loss(fmap_r: list[list[torch.Tensor]], fmap_g: list[list[torch.Tensor]]) -> torch.Tensor:
    """Feature-matching loss: sum over sub-discriminators and layers of mean |real - fake|.

    NOTE: multiplied by 2 here (lambda_fm = 2, eq. 7), as in the authors' code.
    """
    loss = 0
    for dr, dg in zip(fmap_r, fmap_g):
        for rl, gl in zip(dr, dg):
            loss += torch.mean(torch.abs(rl - gl))
    return loss * 2


def discriminator_loss(disc_real_outputs: list[torch.Tensor], disc_generated_outputs: list[torch.Tensor]):
    """LSGAN discriminator loss (eq. 1): sum of mean (1 - D(x))^2 + mean D(G(s))^2.

    Returns (loss, per-discriminator real losses, per-discriminator fake losses); the per-item
    losses are detached 0-d tensors (the original calls `.item()`, a host sync every step).
    """
    loss = 0
    r_losses, g_losses = [], []
    for dr, dg in zip(disc_real_outputs, disc_generated_outputs):
        r_loss = torch.mean((1 - dr) ** 2)
        g_loss = torch.mean(dg**2)
        loss += r_loss + g_loss
        r_losses.append(r_loss.detach())
        g_losses.append(g_loss.detach())
    return loss, r_losses, g_losses


def generator_loss(disc_outputs: list[torch.Tensor]):
    """LSGAN generator loss (eq. 2): sum of mean (1 - D(G(s)))^2; returns (loss, per-item)."""
    loss = 0
    gen_losses = []
    for dg in disc_outputs:
        term = torch.mean((1 - dg) ** 2)
        gen_losses.append(term)
        loss += term
    return loss, gen_losses
