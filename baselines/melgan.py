"""MelGAN networks and losses (Kumar et al., "MelGAN: Generative Adversarial Networks for
Conditional Waveform Synthesis", NeurIPS 2019), the GAN baseline of HiFi-GAN's Tables 1 and 2.

- `MelGANGenerator` (section 2.1): transposed-conv upsampling x8 x8 x2 x2, each stage followed by
  a stack of dilated residual blocks (`ResnetBlock`, dilations 1, 3, 9), tanh output; 4.26 M
  parameters after weight-norm removal (HiFi-GAN Table 1).
- `MelGANDiscriminator` (section 2.2): three `NLayerDiscriminator`s on raw, x2 and x4 average-
  pooled audio (the multi-scale discriminator that HiFi-GAN's MSD is derived from).
- Losses (section 2.3): hinge GAN losses and MelGAN's weighting of feature matching. The LSGAN
  losses that kan-bayashi/ParallelWaveGAN trains MelGAN with are `models.discriminator_loss` and
  `models.generator_loss`; `ADVERSARIAL_LOSSES` maps the config's `adversarial_loss` to a pair.

Facts were read from the authors' code, descriptinc/melgan-neurips (`mel2wav/modules.py`,
`scripts/train.py`), and from kan-bayashi/ParallelWaveGAN (`parallel_wavegan/models/melgan.py`).
Attribute names and build order follow the authors' `Generator` / `Discriminator`, so the state
dicts have their keys and shapes (tests/data/melgan_keys.json) and their `netG.pt` / `netD.pt`
load. Every system of this project trains on the project's own mel frontend (`meldataset.py`),
not on MelGAN's log10 0-11,025 Hz frontend, so that the tables compare vocoders, not frontends.

Config keys (all optional; absent values reproduce the paper): `num_mels` (80),
`upsample_rates` (the generator's ratios, [8, 8, 2, 2]), `melgan_ngf` (32),
`melgan_n_residual_layers` (3), `melgan_num_D` (3), `melgan_ndf` (16), `melgan_n_layers_D` (4),
`melgan_downsamp_factor` (4); the `melgan_*` names are the authors' train.py flags.

    from baselines.melgan import MelGANGenerator, MelGANDiscriminator
    g, d = MelGANGenerator(h), MelGANDiscriminator(h)
    y_hat = g(mel)                                     # (B, 80, F) -> (B, 1, F * 256)
    y_d_rs, y_d_gs, fmap_rs, fmap_gs = d(y, y_hat)     # like models.MultiScaleDiscriminator
"""

from math import ceil, prod

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn import AvgPool1d, Conv1d, ConvTranspose1d

from models import (
    _CompatModule,
    discriminator_loss,
    generator_loss,
    remove_weight_norm,
    run_discriminators,
    weight_norm,
)
from utils import init_weights

# Generator (authors' Generator(input_size=80, ngf=32, n_residual_layers=3); train.py defaults)
NUM_MELS = 80
RATIOS = (8, 8, 2, 2)  # hop 256; hard-coded in the authors' Generator
NGF = 32  # channels of the last stage; the first conv has ngf * 2**len(ratios) = 512
N_RESIDUAL_LAYERS = 3  # residual blocks per stage, dilation 3**j: 1, 3, 9
PRE_POST_KERNEL = 7  # first and last conv, reflection-padded by 3
RES_KERNEL = 3  # dilated conv of each residual block
DILATION_BASE = 3
LRELU_SLOPE = 0.2  # every LeakyReLU of generator and discriminator
INIT_STD = 0.02  # weights_init in mel2wav/modules.py: N(0, 0.02) on every Conv* module

# Discriminator (authors' Discriminator(num_D=3, ndf=16, n_layers=4, downsampling_factor=4))
NUM_D = 3  # scales: raw, x2 and x4 average-pooled audio
NDF = 16  # channels of each scale's first conv
N_LAYERS_D = 4  # grouped strided convs per scale: 16 -> 64 -> 256 -> 1024 -> 1024
DOWNSAMP_FACTOR = 4  # their stride; kernel stride * 10 + 1 = 41, padding stride * 5
FIRST_KERNEL = 15  # first conv of each scale, reflection-padded by 7
DISC_MAX_CHANNELS = 1024
CHANNELS_PER_GROUP = 4  # groups = in_channels / 4 in the strided convs
PENULT_KERNEL, POST_KERNEL = 5, 3  # Conv(1024, 1024, k5), then the score Conv(1024, 1, k3)
POOL_KERNEL, POOL_STRIDE, POOL_PADDING = 4, 2, 1  # AvgPool1d between scales, count_include_pad=False

# Objective (section 2.3, eq. 6; scripts/train.py)
LAMBDA_FEAT = 10  # lambda of the feature-matching term (--lambda_feat); applied by the train step
FEAT_WEIGHT_NUMERATOR = 4.0  # per-layer weight 4 / (n_layers_D + 1) in their train.py


def _init(module: nn.Module) -> None:
    """The authors' weights_init: N(0, INIT_STD) on every Conv* module's weight.

    NOTE: every conv here has weight norm, so this redraws only the derived `weight` tensor that
    the next forward recomputes from `weight_g` / `weight_v`: the init has no lasting effect, as in
    the authors' code (and ParallelWaveGAN's). It still draws from the RNG, which keeps seeded
    initializations identical to theirs.
    """
    module.apply(lambda m: init_weights(m, 0.0, INIT_STD))


# ---------------------------------------------------------------------------------------------
# Generator
# ---------------------------------------------------------------------------------------------


class ResnetBlock(nn.Module):
    """Residual block: LReLU -> reflect-pad(d) -> conv(k3, dilation d) -> LReLU -> conv(k1), plus
    a learned 1x1 `shortcut`. (B, C, T) -> (B, C, T).

    NOTE: the shortcut is a weight-normed 1x1 conv, not an identity, as in the authors' code.
    """

    def __init__(self, dim: int, dilation: int = 1):
        super().__init__()
        self.block = nn.Sequential(
            nn.LeakyReLU(LRELU_SLOPE),
            nn.ReflectionPad1d(dilation * (RES_KERNEL - 1) // 2),
            weight_norm(Conv1d(dim, dim, kernel_size=RES_KERNEL, dilation=dilation)),
            nn.LeakyReLU(LRELU_SLOPE),
            weight_norm(Conv1d(dim, dim, kernel_size=1)),
        )
        self.shortcut = weight_norm(Conv1d(dim, dim, kernel_size=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, T) -> (B, C, T)."""
        return self.shortcut(x) + self.block(x)


class MelGANGenerator(_CompatModule):
    """Mel-spectrogram (B, num_mels, F) -> waveform (B, 1, F * prod(ratios)) in [-1, 1].

    One `nn.Sequential` named `model`, indexed as the authors' (`model.1` is the first conv,
    `model.3` the first transposed conv, `model.4`..`model.6` its residual blocks, ...).
    """

    def __init__(self, h):
        super().__init__()
        num_mels = h.get("num_mels", NUM_MELS)
        ratios = list(h.get("upsample_rates", RATIOS))
        ngf = h.get("melgan_ngf", NGF)
        n_res = h.get("melgan_n_residual_layers", N_RESIDUAL_LAYERS)
        self.ratios = ratios
        self.hop_length = prod(ratios)
        pad = (PRE_POST_KERNEL - 1) // 2
        self.min_frames = pad + 1  # ReflectionPad1d(3) needs more than 3 input frames
        mult = 2 ** len(ratios)
        layers = [nn.ReflectionPad1d(pad), weight_norm(Conv1d(num_mels, mult * ngf, kernel_size=PRE_POST_KERNEL))]
        for r in ratios:
            # NOTE: padding r // 2 + r % 2 with output_padding r % 2 gives exactly r * T samples for
            # odd r as well (for even r it is HiFi-GAN's (k - r) / 2 with k = 2r).
            up = ConvTranspose1d(
                mult * ngf, mult * ngf // 2, 2 * r, stride=r, padding=r // 2 + r % 2, output_padding=r % 2
            )
            layers += [nn.LeakyReLU(LRELU_SLOPE), weight_norm(up)]
            layers += [ResnetBlock(mult * ngf // 2, dilation=DILATION_BASE**j) for j in range(n_res)]
            mult //= 2
        layers += [
            nn.LeakyReLU(LRELU_SLOPE),
            nn.ReflectionPad1d(pad),
            weight_norm(Conv1d(ngf, 1, kernel_size=PRE_POST_KERNEL)),
            nn.Tanh(),
        ]
        self.model = nn.Sequential(*layers)
        _init(self)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, num_mels, F) -> (B, 1, F * hop_length).

        `lengths` (B,) gives each item's real number of frames in a zero-padded batch: each item's
        first `lengths[b] * hop_length` samples then equal what the item alone gives, and the rest
        is zero. Reflection padding mirrors the signal at its end, so masking the padded tail (as
        `models.Generator` does) cannot make a padded item match its unpadded self; a batch of
        unequal lengths therefore runs item by item on the cropped mels.
        """
        frames = x.shape[-1]
        if lengths is None or bool((lengths == frames).all()):
            self._check_frames(frames)
            return self.model(x)
        out = x.new_zeros(x.shape[0], 1, frames * self.hop_length)
        for b, n in enumerate(lengths.tolist()):
            if n > frames:
                raise ValueError(f"lengths[{b}] = {n} is more than the batch's {frames} frames")
            self._check_frames(n)
            out[b, :, : n * self.hop_length] = self.model(x[b : b + 1, :, :n])[0]
        return out

    def _check_frames(self, frames: int) -> None:
        if frames < self.min_frames:
            raise ValueError(
                f"MelGAN needs at least {self.min_frames} mel frames (its reflection padding), got {frames}"
            )

    def remove_weight_norm(self) -> None:
        """Fold weight norm into plain weights (for inference; same outputs)."""
        remove_weight_norm(self)


def receptive_field_frames(h) -> int:
    """One-sided receptive field of `MelGANGenerator(h)` in mel frames (rounded up): chunks vocoded
    with this much context on each side equal one-shot inference (synthesis's overlap-save).
    Sum over layers of each layer's one-sided reach, converted from its sample rate to frames."""
    ratios = list(h.get("upsample_rates", RATIOS))
    n_res = h.get("melgan_n_residual_layers", N_RESIDUAL_LAYERS)
    pad = (PRE_POST_KERNEL - 1) // 2
    reach, rate = pad, 1  # the first conv, in frames
    for r in ratios:
        reach += 2 / rate  # transposed conv, kernel 2r, stride r: 2 input steps
        rate *= r
        reach += sum((RES_KERNEL - 1) // 2 * DILATION_BASE**j for j in range(n_res)) / rate  # residual stack
    reach += pad / rate  # the last conv
    return ceil(reach)


# ---------------------------------------------------------------------------------------------
# Discriminator
# ---------------------------------------------------------------------------------------------


class NLayerDiscriminator(nn.Module):
    """One scale: reflect-pad + conv k15, `n_layers` grouped strided convs, conv k5, score conv
    k3, each but the last followed by LeakyReLU(0.2). `model` holds `layer_0`..`layer_{n+2}`.
    (B, 1, T) -> (score (B, T / stride**n), n + 3 feature maps (B, C_i, T_i), the score map last).
    """

    def __init__(self, ndf: int = NDF, n_layers: int = N_LAYERS_D, downsampling_factor: int = DOWNSAMP_FACTOR):
        super().__init__()
        stride = downsampling_factor
        model = nn.ModuleDict()
        model["layer_0"] = nn.Sequential(
            nn.ReflectionPad1d((FIRST_KERNEL - 1) // 2),
            weight_norm(Conv1d(1, ndf, kernel_size=FIRST_KERNEL)),
            nn.LeakyReLU(LRELU_SLOPE, True),
        )
        nf = ndf
        for n in range(1, n_layers + 1):
            nf_prev, nf = nf, min(nf * stride, DISC_MAX_CHANNELS)
            conv = Conv1d(
                nf_prev,
                nf,
                kernel_size=stride * 10 + 1,
                stride=stride,
                padding=stride * 5,
                groups=nf_prev // CHANNELS_PER_GROUP,
            )
            model[f"layer_{n}"] = nn.Sequential(weight_norm(conv), nn.LeakyReLU(LRELU_SLOPE, True))
        # NOTE: the authors give this conv `nf_prev` input channels, which equals `nf` only when
        # the last strided conv keeps the channel count (1024 -> 1024 at the default sizes); `nf`
        # is the same there and also works for small test discriminators.
        nf_out = min(nf * 2, DISC_MAX_CHANNELS)
        model[f"layer_{n_layers + 1}"] = nn.Sequential(
            weight_norm(Conv1d(nf, nf_out, kernel_size=PENULT_KERNEL, padding=(PENULT_KERNEL - 1) // 2)),
            nn.LeakyReLU(LRELU_SLOPE, True),
        )
        model[f"layer_{n_layers + 2}"] = weight_norm(
            Conv1d(nf_out, 1, kernel_size=POST_KERNEL, padding=(POST_KERNEL - 1) // 2)
        )
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x: (B, 1, T) -> (score (B, T'), feature maps [(B, C_i, T_i)], the last the (B, 1, T') score)."""
        fmap = []
        for layer in self.model.values():
            x = layer(x)
            fmap.append(x)
        return torch.flatten(x, 1, -1), fmap


class MelGANDiscriminator(_CompatModule):
    """MelGAN's multi-scale discriminator: `melgan_num_D` `NLayerDiscriminator`s (`model.disc_i`),
    the input average-pooled x2 (`downsample`) before each next scale.

    NOTE: unlike HiFi-GAN's MSD, weight norm on every scale (no spectral norm), LeakyReLU 0.2, and
    pooling AvgPool1d(4, 2, padding=1, count_include_pad=False).
    """

    def __init__(self, h):
        super().__init__()
        num_d = h.get("melgan_num_D", NUM_D)
        ndf, n_layers = h.get("melgan_ndf", NDF), h.get("melgan_n_layers_D", N_LAYERS_D)
        factor = h.get("melgan_downsamp_factor", DOWNSAMP_FACTOR)
        self.model = nn.ModuleDict({f"disc_{i}": NLayerDiscriminator(ndf, n_layers, factor) for i in range(num_d)})
        self.downsample = AvgPool1d(POOL_KERNEL, stride=POOL_STRIDE, padding=POOL_PADDING, count_include_pad=False)
        _init(self)

    def forward(self, y: torch.Tensor, y_hat: torch.Tensor):
        """y, y_hat: (B, 1, T) -> (real scores, fake scores, real fmaps, fake fmaps), one per scale.

        Scores are (B, T_k'), fmaps lists of `n_layers_D + 3` maps (B, C, T) ending with the score
        map, the structure `models.MultiScaleDiscriminator` returns.
        """
        discriminators = list(self.model.values())
        return run_discriminators(discriminators, y, y_hat, [self.downsample] * (len(discriminators) - 1))


# ---------------------------------------------------------------------------------------------
# Losses (section 2.3)
# ---------------------------------------------------------------------------------------------


def hinge_discriminator_loss(disc_real_outputs: list[torch.Tensor], disc_generated_outputs: list[torch.Tensor]):
    """Hinge discriminator loss (eq. 1): sum over discriminators of mean relu(1 - D(x)) +
    mean relu(1 + D(G(s))).

    Returns (loss, per-discriminator real losses, per-discriminator fake losses) like
    `models.discriminator_loss`; the per-item losses are detached 0-d tensors.
    """
    loss = 0
    r_losses, g_losses = [], []
    for dr, dg in zip(disc_real_outputs, disc_generated_outputs):
        r_loss = torch.mean(F.relu(1 - dr))
        g_loss = torch.mean(F.relu(1 + dg))
        loss += r_loss + g_loss
        r_losses.append(r_loss.detach())
        g_losses.append(g_loss.detach())
    return loss, r_losses, g_losses


def hinge_generator_loss(disc_outputs: list[torch.Tensor]):
    """Hinge generator loss (eq. 2): sum over discriminators of -mean D(G(s)); returns
    (loss, per-discriminator terms) like `models.generator_loss`."""
    loss = 0
    gen_losses = []
    for dg in disc_outputs:
        term = -torch.mean(dg)
        gen_losses.append(term)
        loss += term
    return loss, gen_losses


def melgan_feature_loss(fmap_r: list[list[torch.Tensor]], fmap_g: list[list[torch.Tensor]]) -> torch.Tensor:
    """MelGAN's feature matching (eq. 4) as its train.py computes it, without lambda_feat.

    For K discriminators with L = n_layers_D + 3 feature maps each (the last is the score map,
    left out): sum over k and the first L - 1 layers of w * mean |D_k^l(x) - D_k^l(G(s))|, with
    w = (1 / K) * 4 / (n_layers_D + 1). Real feature maps are detached, as in the original.
    The train step multiplies it by lambda_fm (`LAMBDA_FEAT` = 10 in the paper).

    NOTE: not a plain mean: the 6 layers of each scale weigh 4 / 5 each at the default sizes, so
    the loss is 4.8 times the mean over the 3 x 6 layer terms, as in the authors' code.
    """
    loss = 0
    d_weight = 1.0 / len(fmap_r)
    for dr, dg in zip(fmap_r, fmap_g):
        feat_weight = FEAT_WEIGHT_NUMERATOR / (len(dr) - 2)  # len(dr) - 2 = n_layers_D + 1
        for rl, gl in zip(dr[:-1], dg[:-1]):
            loss += d_weight * feat_weight * F.l1_loss(gl, rl.detach())
    return loss


# The config's `adversarial_loss` -> (discriminator loss, generator loss), same signatures.
ADVERSARIAL_LOSSES = {
    "lsgan": (discriminator_loss, generator_loss),
    "hinge": (hinge_discriminator_loss, hinge_generator_loss),
}
