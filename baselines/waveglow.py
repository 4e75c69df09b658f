"""WaveGlow: a flow-based generative network for speech synthesis (Prenger, Valle, Catanzaro,
ICASSP 2019), one of the baselines of HiFi-GAN's Table 1 (87.73 M parameters, MOS 3.81).

- The mel is upsampled to the audio rate by a transposed conv and folded, like the audio, into
  groups of `n_group` samples (section 2).
- 12 flows, each an invertible 1x1 conv (section 2.2) followed by an affine coupling layer whose
  scale and shift come from a WaveNet-like network `WN` of the other half and the mel (section 2.1).
  Every `n_early_every` flows, `n_early_size` channels leave the flow early (section 2.3).
- Training maximises the exact likelihood (`waveglow_loss`, eq. 1-4); synthesis draws Gaussian noise
  and runs the flows backwards (`WaveGlow.infer`, `WaveGlow.vocode`), optionally followed by the
  bias-removing `Denoiser`.

Facts (sizes, build order, initialisation, attribute names) were read from NVIDIA/waveglow
(`glow.py`, `config.json`, `denoiser.py`, `convert_model.py`); the code is our own. Attribute names
and build order match theirs, so the state dict of their `WaveGlow` module (the published
`waveglow_256channels_*.pt`, once converted to a plain state dict with the recipe in the README)
loads here unchanged: `load_waveglow_state_dict`. Unlike theirs, everything here runs on any device
and dtype (no `torch.cuda` in `infer` or the denoiser), the inverse 1x1 weights are cached per
weight version, and the log-det and the inverse are computed in fp32 under fp16/bf16.

Usage:
    h = load_config("configs/baselines/config_waveglow.json")
    model = WaveGlow(h)
    z, log_s, log_det = model(mel, dequantize(audio))            # training, audio (B, T)
    loss = waveglow_loss(z, log_s, log_det, sigma=h.get("sigma", TRAIN_SIGMA))
    model.remove_weight_norm()
    audio = model.vocode(mel, lengths, sigma=0.6, denoiser_strength=0.1)  # (B, 1, F * hop)
"""

import torch
import torch.nn.functional as F
from torch import nn

from models import convert_state_dict, remove_weight_norm, weight_norm
from utils import CheckpointError, ConfigError, tensor_version, weights_key

# NVIDIA/waveglow config.json ("waveglow_config"); WaveGlow(h) reads h["waveglow_config"] with these
# defaults, under NVIDIA's own key names so their config block can be pasted unchanged.
WAVEGLOW_DEFAULTS = {
    "n_mel_channels": 80,
    "n_flows": 12,
    "n_group": 8,
    "n_early_every": 4,
    "n_early_size": 2,
    "WN_config": {"n_layers": 8, "n_channels": 256, "kernel_size": 3},
}
UPSAMPLE_KERNEL_HOPS = 4  # glow.py: ConvTranspose1d(80, 80, 1024, stride=256), i.e. 4 hops wide
TRAIN_SIGMA = 1.0  # config.json train_config "sigma": the prior's std in the loss
SYNTHESIS_SIGMA = 0.6  # README: inference.py ... -s 0.6 (a lower temperature than training)
DEQUANTIZE_LSB = 1.0 / 32768  # one 16-bit step of audio in [-1, 1): the dequantisation noise width
DENOISER_N_FFT, DENOISER_HOP, DENOISER_WIN = 1024, 256, 1024  # denoiser.py: filter 1024, n_overlap 4
DENOISER_BIAS_FRAMES = 88  # denoiser.py: the all-zero mel it vocodes is (1, 80, 88)
DENOISER_STRENGTH = 0.1  # denoiser.py: Denoiser.forward default


def waveglow_settings(h) -> dict:
    """NVIDIA's `waveglow_config` block from `h` (defaults: the published model), `WN_config` merged."""
    given = dict(h.get("waveglow_config", {}) or {})
    wn = {**WAVEGLOW_DEFAULTS["WN_config"], **(given.pop("WN_config", {}) or {})}
    return {**WAVEGLOW_DEFAULTS, **given, "WN_config": wn}


def validate_waveglow_config(h, source: str = "config") -> None:
    """Raise `ConfigError` (one line) if `h` cannot describe a WaveGlow on this frontend."""
    s, wn = waveglow_settings(h), waveglow_settings(h)["WN_config"]

    def fail(msg: str) -> None:
        raise ConfigError(f"{source}: {msg}")

    if s["n_mel_channels"] != h["num_mels"]:
        fail(f"waveglow_config.n_mel_channels {s['n_mel_channels']} != num_mels {h['num_mels']}; make them equal")
    g, every, early = s["n_group"], s["n_early_every"], s["n_early_size"]
    if g <= 0 or g % 2 or h["hop_size"] % g:
        fail(f"waveglow_config.n_group {g} must be even and divide hop_size {h['hop_size']} (e.g. 8)")
    if early % 2 or every <= 0 or g - early * ((s["n_flows"] - 1) // every) < 2:
        fail(
            f"waveglow_config: n_early_size {early} every {every} of {s['n_flows']} flows leaves fewer than 2 "
            f"of n_group {g} channels; use an even n_early_size and fewer early outputs"
        )
    if wn["kernel_size"] % 2 == 0 or wn["n_channels"] % 2:
        fail(f"WN_config: kernel_size {wn['kernel_size']} must be odd and n_channels {wn['n_channels']} even")
    if h["segment_size"] % g:
        fail(f"segment_size {h['segment_size']} is not a multiple of waveglow_config.n_group {g}")


def _gate(x: torch.Tensor, cond: torch.Tensor, channels: int) -> torch.Tensor:
    """WaveNet's gated activation tanh(a) * sigmoid(b) of x + cond: (B, 2C, T) -> (B, C, T)."""
    x = x + cond
    return torch.tanh(x[:, :channels]) * torch.sigmoid(x[:, channels:])


def _fp32_region(device: torch.device):
    """Autocast off (fp32 maths) on `device`, for the log-det and the matrix inverse."""
    return torch.autocast(device_type=device.type, enabled=False)


# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------


class Invertible1x1Conv(nn.Module):
    """A c x c channel mixing W (a 1x1 conv, no bias) with its log-determinant (section 2.2).

    Initialised to a random orthonormal matrix with det W = +1, so log|det W| = 0 at the start.
    """

    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv1d(c, c, kernel_size=1, bias=False)
        # The c x c init is drawn on the CPU so that construction works under torch.device("meta").
        w = torch.linalg.qr(torch.randn(c, c, device="cpu"))[0]
        if torch.linalg.det(w) < 0:
            w[:, 0] = -w[:, 0]
        with torch.no_grad():
            self.conv.weight.copy_(w[:, :, None])
        self._inverse_cache: tuple | None = None  # (key, fp32 inverse (c, c, 1)); not in the state dict

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, c, T) -> (W z of shape (B, c, T), log_det = B * T * log|det W|, an fp32 scalar)."""
        b, _, t = z.shape
        w = self.conv.weight[:, :, 0]
        with _fp32_region(w.device):
            # NOTE: NVIDIA takes torch.logdet(W), NaN once det W < 0; log|det W| is equal while
            # det W > 0 (it starts at +1) and stays finite otherwise.
            log_det = b * t * torch.linalg.slogdet(w.float())[1]
        return self.conv(z), log_det

    def inverse_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """W^-1 as a (c, c, 1) conv weight in `dtype` (default: the weight's), computed in fp32
        once per weight version (in-place updates, `load_state_dict`, `.to()` invalidate it)."""
        w = self.conv.weight
        key = (w.data_ptr(), tensor_version(w), w.device, tuple(w.shape))
        if self._inverse_cache is None or self._inverse_cache[0] != key:
            with torch.no_grad(), _fp32_region(w.device):
                inv = torch.linalg.inv(w[:, :, 0].float())[:, :, None]
            self._inverse_cache = (key, inv)
        return self._inverse_cache[1].to(dtype or w.dtype)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """W^-1 z: (B, c, T) -> (B, c, T), not differentiable w.r.t. W (synthesis only)."""
        return F.conv1d(z, self.inverse_weight(z.dtype))


class WN(nn.Module):
    """The coupling network: WaveNet-like, non-causal, dilation doubling every layer with no reset.

    (x_a (B, n_in, T), cond (B, n_cond, T)) -> (B, 2 * n_in, T) = [t (shift), log_s (scale)].
    """

    def __init__(self, n_in_channels: int, n_mel_channels: int, n_layers: int, n_channels: int, kernel_size: int):
        super().__init__()
        self.n_layers = n_layers
        self.n_channels = n_channels
        # Build order as NVIDIA's glow.py (the state dict lists in_layers, res_skip_layers, start, ...).
        self.in_layers = nn.ModuleList()
        self.res_skip_layers = nn.ModuleList()
        self.start = weight_norm(nn.Conv1d(n_in_channels, n_channels, 1))
        # NOTE: zero-initialised end conv: t = log_s = 0, so every coupling starts as the identity.
        self.end = nn.Conv1d(n_channels, 2 * n_in_channels, 1)
        nn.init.zeros_(self.end.weight)
        nn.init.zeros_(self.end.bias)
        # NOTE: one fused conditioning 1x1 for all layers (n_mel -> 2C * n_layers), layer i using
        # channels [2C i, 2C (i + 1)); NVIDIA's current glow.py layout (convert_model.py fuses the
        # older per-layer `cond_layers`), which the published checkpoints use.
        self.cond_layer = weight_norm(nn.Conv1d(n_mel_channels, 2 * n_channels * n_layers, 1))
        for i in range(n_layers):
            dilation = 2**i
            padding = (kernel_size * dilation - dilation) // 2
            self.in_layers.append(
                weight_norm(nn.Conv1d(n_channels, 2 * n_channels, kernel_size, dilation=dilation, padding=padding))
            )
            # NOTE: the last layer has no residual output, only skip channels.
            res_skip = 2 * n_channels if i < n_layers - 1 else n_channels
            self.res_skip_layers.append(weight_norm(nn.Conv1d(n_channels, res_skip, 1)))

    def forward(self, audio: torch.Tensor, spect: torch.Tensor) -> torch.Tensor:
        """audio (B, n_in, T), spect (B, n_mel * n_group, T) -> (B, 2 * n_in, T)."""
        c = self.n_channels
        x = self.start(audio)  # (B, n_in, T) -> (B, C, T)
        cond = self.cond_layer(spect)  # (B, n_cond, T) -> (B, 2C * n_layers, T)
        skip = torch.zeros_like(x)
        for i, (in_layer, res_skip_layer) in enumerate(zip(self.in_layers, self.res_skip_layers)):
            acts = _gate(in_layer(x), cond[:, 2 * c * i : 2 * c * (i + 1)], c)  # (B, C, T)
            res_skip = res_skip_layer(acts)
            if i < self.n_layers - 1:
                x = x + res_skip[:, :c]
                skip = skip + res_skip[:, c:]
            else:
                skip = skip + res_skip
        return self.end(skip)


# ---------------------------------------------------------------------------------------------
# WaveGlow
# ---------------------------------------------------------------------------------------------


class WaveGlow(nn.Module):
    """mel (B, n_mel, F) and audio (B, T) <-> z (B, n_group, T / n_group), T = F * hop at synthesis."""

    def __init__(self, h):
        super().__init__()
        validate_waveglow_config(h)
        s = waveglow_settings(h)
        hop = h["hop_size"]
        n_mel, self.n_flows, self.n_group = s["n_mel_channels"], s["n_flows"], s["n_group"]
        self.n_early_every, self.n_early_size = s["n_early_every"], s["n_early_size"]
        # NOTE: no weight norm on the upsampler; NVIDIA hard-codes kernel 1024, stride 256 (hop 256).
        self.upsample = nn.ConvTranspose1d(n_mel, n_mel, UPSAMPLE_KERNEL_HOPS * hop, stride=hop)
        self.WN = nn.ModuleList()
        self.convinv = nn.ModuleList()
        n_remaining = self.n_group
        for k in range(self.n_flows):
            if k % self.n_early_every == 0 and k > 0:
                n_remaining -= self.n_early_size
            self.convinv.append(Invertible1x1Conv(n_remaining))
            self.WN.append(WN(n_remaining // 2, n_mel * self.n_group, **s["WN_config"]))
        self.n_remaining_channels = n_remaining

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Accepts weight-norm keys as `weight_g`/`weight_v`, torch's parametrizations, or folded."""
        return super().load_state_dict(convert_state_dict(self, state_dict), strict, assign)

    def _condition(self, mel: torch.Tensor, length: int) -> torch.Tensor:
        """Upsampled, cropped and folded mel: (B, n_mel, F) -> (B, n_mel * n_group, length / n_group)."""
        spect = self.upsample(mel)  # (B, n_mel, (F - 1) * hop + 4 * hop)
        if spect.size(2) < length:
            raise ValueError(
                f"WaveGlow: {mel.size(2)} mel frames condition at most {spect.size(2)} samples but the audio "
                f"has {length}; pass at least {length} / hop_size frames"
            )
        spect = spect[:, :, :length]
        b, m, _ = spect.shape
        g = self.n_group
        # channel index = mel bin * n_group + position in the group (NVIDIA's layout)
        spect = spect.unfold(2, g, g).permute(0, 2, 1, 3)  # (B, n_mel, T) -> (B, T/g, n_mel, g)
        return spect.reshape(b, length // g, m * g).transpose(1, 2)  # -> (B, n_mel * g, T/g)

    def forward(self, mel: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, list, list]:
        """mel (B, n_mel, F), audio (B, T) or (B, 1, T), T a multiple of n_group and at most
        (F + 3) * hop -> (z (B, n_group, T / n_group), [log_s (B, n_half_k, T / n_group)] per flow,
        [log|det W_k| * B * T / n_group] per flow). The early outputs come first in z."""
        if audio.dim() == 3 and audio.size(1) == 1:
            audio = audio[:, 0]
        if audio.dim() != 2 or audio.size(1) % self.n_group:
            raise ValueError(
                f"WaveGlow: audio must be (B, T) or (B, 1, T) with T a multiple of n_group {self.n_group}, "
                f"got {tuple(audio.shape)}"
            )
        spect = self._condition(mel, audio.size(1))
        x = audio.unfold(1, self.n_group, self.n_group).transpose(1, 2)  # (B, T) -> (B, g, T/g)
        early, log_s_list, log_det_list = [], [], []
        for k in range(self.n_flows):
            if k % self.n_early_every == 0 and k > 0:
                early.append(x[:, : self.n_early_size])
                x = x[:, self.n_early_size :]
            x, log_det = self.convinv[k](x)
            log_det_list.append(log_det)
            n_half = x.size(1) // 2
            x_a, x_b = x[:, :n_half], x[:, n_half:]
            out = self.WN[k](x_a, spect)  # (B, 2 n_half, T/g) = [t, log_s]
            t, log_s = out[:, :n_half], out[:, n_half:]
            x = torch.cat([x_a, torch.exp(log_s) * x_b + t], 1)  # affine coupling, eq. 6
            log_s_list.append(log_s)
        return torch.cat([*early, x], 1), log_s_list, log_det_list

    @torch.no_grad()
    def infer(
        self,
        mel: torch.Tensor,
        sigma: float = SYNTHESIS_SIGMA,
        z: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """mel (B, n_mel, F) -> audio (B, F * hop), by running the flows backwards from z.

        z: (B, n_group, F * hop / n_group) in `forward`'s layout, used as it is (sigma is then
        ignored); by default z = sigma * N(0, I) drawn with `generator` on mel's device and dtype.
        """
        hop = self.upsample.stride[0]
        length = mel.size(2) * hop
        # NOTE: NVIDIA crops the upsampler's last (kernel - stride) samples: F frames -> F * hop.
        spect = self._condition(mel, length)
        if z is None:
            shape = (mel.size(0), self.n_group, length // self.n_group)
            z = sigma * torch.randn(shape, generator=generator, device=mel.device, dtype=spect.dtype)
        elif z.shape != (mel.size(0), self.n_group, length // self.n_group):
            raise ValueError(
                f"WaveGlow.infer: z must be (B, n_group, F * hop / n_group) = "
                f"{(mel.size(0), self.n_group, length // self.n_group)}, got {tuple(z.shape)}"
            )
        # z = [early outputs of flow n_early_every, of 2 n_early_every, ..., the remaining channels]
        n_early = (self.n_flows - 1) // self.n_early_every
        x = z[:, n_early * self.n_early_size :]
        for k in reversed(range(self.n_flows)):
            n_half = x.size(1) // 2
            x_a, x_b = x[:, :n_half], x[:, n_half:]
            out = self.WN[k](x_a, spect)
            t, log_s = out[:, :n_half], out[:, n_half:]
            x = torch.cat([x_a, (x_b - t) * torch.exp(-log_s)], 1)
            x = self.convinv[k].inverse(x)
            if k % self.n_early_every == 0 and k > 0:
                i = k // self.n_early_every - 1
                x = torch.cat([z[:, i * self.n_early_size : (i + 1) * self.n_early_size], x], 1)
        return x.transpose(1, 2).reshape(x.size(0), -1)  # (B, g, T/g) -> (B, T)

    @torch.no_grad()
    def vocode(
        self,
        mel: torch.Tensor,
        lengths: torch.Tensor | None = None,
        sigma: float = SYNTHESIS_SIGMA,
        denoiser_strength: float = 0.0,
        seed: int | None = None,
    ) -> torch.Tensor:
        """Synthesis API: mel (B, n_mel, F) -> audio (B, 1, F * hop), optionally denoised.

        lengths (B,): valid frames of each item of a zero-padded batch. The flows are non-causal
        (the padding would leak into an item's end), so each item then runs alone on its own frames
        and its tail past lengths[b] * hop is zero. With `seed`, every item draws its noise from its
        own generator seeded with `seed`: an item's audio depends on its mel, sigma and seed only,
        never on the batch it is in. Without it, noise comes from the global RNG.
        """
        hop = self.upsample.stride[0]
        b, _, frames = mel.shape
        if lengths is None:
            items = [(slice(0, b), frames)]
        else:
            items = [(slice(i, i + 1), int(n)) for i, n in enumerate(lengths.tolist())]
        out = mel.new_zeros(b, 1, frames * hop)
        for rows, n in items:
            if seed is None:
                audio = self.infer(mel[rows, :, :n], sigma)
            else:  # one generator per item, so the same item gets the same noise in any batch
                parts = []
                for r in range(rows.start, rows.stop):
                    gen = torch.Generator(device=mel.device).manual_seed(seed)
                    parts.append(self.infer(mel[r : r + 1, :, :n], sigma, generator=gen))
                audio = torch.cat(parts)
            if denoiser_strength > 0:
                audio = self.denoiser()(audio, denoiser_strength)
            out[rows, 0, : n * hop] = audio.to(out.dtype)
        return out

    def denoiser(self) -> "Denoiser":
        """The `Denoiser` of the current weights, built once per weight version (not a submodule)."""
        key = weights_key(self)
        cached = self.__dict__.get("_denoiser")
        if cached is None or cached[0] != key:
            self.__dict__["_denoiser"] = (key, Denoiser(self))
        return self.__dict__["_denoiser"][1]

    def remove_weight_norm(self) -> None:
        """Fold every weight norm into a plain `weight` (inference; 87,731,816 parameters at C=256)."""
        remove_weight_norm(self)


# ---------------------------------------------------------------------------------------------
# Loss and training helpers
# ---------------------------------------------------------------------------------------------


def waveglow_loss_terms(
    z: torch.Tensor, log_s_list: list[torch.Tensor], log_det_list: list[torch.Tensor], sigma: float = TRAIN_SIGMA
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The three fp32 terms of the negative log-likelihood per audio sample (eq. 1-4), summing to
    `waveglow_loss`: (sum z^2 / (2 sigma^2), -sum log_s, -sum log|det W|), each / z.numel()."""
    n = z.numel()  # B * n_group * T / n_group
    prior = (z.float() ** 2).sum() / (2 * sigma * sigma) / n
    log_s = -sum(ls.float().sum() for ls in log_s_list) / n
    log_det = -sum(ld.float() for ld in log_det_list) / n
    return prior, log_s, log_det


def waveglow_loss(
    z: torch.Tensor, log_s_list: list[torch.Tensor], log_det_list: list[torch.Tensor], sigma: float = TRAIN_SIGMA
) -> torch.Tensor:
    """[sum z^2 / (2 sigma^2) - sum log_s - sum log|det W|] / (B * n_group * T / n_group), in fp32.

    The negative log-likelihood per sample less the constant 0.5 * log(2 pi sigma^2) (NVIDIA's
    WaveGlowLoss); sigma = 1.0 in training.
    """
    prior, log_s, log_det = waveglow_loss_terms(z, log_s_list, log_det_list, sigma)
    return prior + log_s + log_det


def dequantize(
    audio: torch.Tensor, lsb: float = DEQUANTIZE_LSB, generator: torch.Generator | None = None
) -> torch.Tensor:
    """audio + U(-lsb/2, lsb/2) noise, same shape: apply to the training audio before `forward`.

    Why: a flow's density on digital silence (or zero padding) is unbounded: z = 0, and the loss
    falls without end by driving log_s to -inf, until it overflows (fp16 first) into inf/NaN.
    With one 16-bit step of uniform noise the data has a density <= 1 / lsb per sample, so the
    loss is bounded below (by about log(lsb) - 0.5 log(2 pi) = -11.3 per sample) and stays finite.
    lsb = 0 returns the audio unchanged.
    """
    if lsb == 0:
        return audio
    noise = torch.rand(audio.shape, generator=generator, device=audio.device, dtype=audio.dtype)
    return audio + (noise - 0.5) * lsb


# ---------------------------------------------------------------------------------------------
# Denoiser
# ---------------------------------------------------------------------------------------------


class Denoiser(nn.Module):
    """Removes WaveGlow's constant bias: subtracts `strength` x the magnitude spectrum of the audio
    it makes from an all-zero mel with sigma 0, keeping the phase (NVIDIA's denoiser.py)."""

    def __init__(
        self, waveglow: WaveGlow, n_fft: int = DENOISER_N_FFT, hop: int = DENOISER_HOP, win: int = DENOISER_WIN
    ):
        super().__init__()
        self.n_fft, self.hop, self.win = n_fft, hop, win
        w = waveglow.upsample.weight
        # NOTE: "zeros" mode: a log-mel of 0 (amplitude 1), not the silent value log(1e-5).
        mel = torch.zeros(1, waveglow.upsample.in_channels, DENOISER_BIAS_FRAMES, device=w.device, dtype=w.dtype)
        bias_audio = waveglow.infer(mel, sigma=0.0).float()
        # NOTE: only the first frame's spectrum is kept as the bias, as NVIDIA's does.
        self.register_buffer("bias_spec", self._stft(bias_audio).abs()[:, :, :1])  # (1, n_fft/2 + 1, 1)

    def _stft(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, T) fp32 -> complex (B, n_fft / 2 + 1, T / hop + 1), centred with reflect padding."""
        window = torch.hann_window(self.win, device=audio.device)
        return torch.stft(audio, self.n_fft, self.hop, self.win, window, center=True, return_complex=True)

    @torch.no_grad()
    def forward(self, audio: torch.Tensor, strength: float = DENOISER_STRENGTH) -> torch.Tensor:
        """audio (B, T) or (B, 1, T) -> denoised audio of the same shape, dtype and device."""
        shape, dtype = audio.shape, audio.dtype
        x = audio.reshape(-1, shape[-1]).float()
        spec = self._stft(x)
        mag = torch.clamp(spec.abs() - self.bias_spec.to(x.device) * strength, min=0.0)
        spec = torch.polar(mag, spec.angle())
        window = torch.hann_window(self.win, device=x.device)
        y = torch.istft(spec, self.n_fft, self.hop, self.win, window, center=True, length=shape[-1])
        return y.reshape(shape).to(dtype)


# ---------------------------------------------------------------------------------------------
# The synthesis API's view
# ---------------------------------------------------------------------------------------------


def receptive_field_frames(h) -> int:
    """One-sided reach of WaveGlow synthesis in mel frames (rounded up; 100 published): each
    flow's WN sees (kernel - 1) / 2 * (2^n_layers - 1) groups of n_group samples on either side,
    the flows compose, and the upsampler spreads a frame over `UPSAMPLE_KERNEL_HOPS` hops. Chunks
    vocoded with this much context equal one-shot synthesis for the same noise (sigma 0: exactly)."""
    s = waveglow_settings(h)
    wn = s["WN_config"]
    groups = s["n_flows"] * (wn["kernel_size"] - 1) // 2 * (2 ** wn["n_layers"] - 1)
    return -(-groups * s["n_group"] // h["hop_size"]) + UPSAMPLE_KERNEL_HOPS


class WaveGlowVocoder(nn.Module):
    """A WaveGlow as the synthesis API uses a generator: mel (B, n_mel, F) [, lengths (B,)] ->
    audio (B, 1, F * hop), with the sampling settings fixed (sigma, denoiser, seed)."""

    def __init__(self, waveglow: WaveGlow, sigma: float = SYNTHESIS_SIGMA, denoiser_strength: float = 0.0, seed=None):
        super().__init__()
        self.waveglow = waveglow
        self.sigma, self.denoiser_strength, self.seed = sigma, denoiser_strength, seed

    @classmethod
    def from_config(cls, waveglow: WaveGlow, h, sigma=None, denoiser_strength=None, seed=None) -> "WaveGlowVocoder":
        """Unset settings come from the config (`infer_sigma`, `denoiser_strength`, `seed`: the same
        audio at every run) or the published defaults (sigma 0.6, no denoiser)."""
        if seed is None:
            seed = h.get("seed")
        if sigma is None:
            sigma = h.get("infer_sigma", SYNTHESIS_SIGMA)
        if denoiser_strength is None:
            denoiser_strength = h.get("denoiser_strength", 0.0)
        if sigma < 0 or denoiser_strength < 0:
            raise ConfigError(f"WaveGlow: sigma {sigma} and denoiser_strength {denoiser_strength} must be >= 0")
        return cls(waveglow, sigma, denoiser_strength, seed)

    def forward(self, mel: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """mel (B, n_mel, F), lengths (B,) valid frames -> audio (B, 1, F * hop) (see `WaveGlow.vocode`)."""
        return self.waveglow.vocode(mel, lengths, self.sigma, self.denoiser_strength, self.seed)

    def remove_weight_norm(self) -> None:
        self.waveglow.remove_weight_norm()


# ---------------------------------------------------------------------------------------------
# Loading NVIDIA's weights
# ---------------------------------------------------------------------------------------------


def _fuse_old_layout(state_dict: dict, n_layers: int) -> dict:
    """Old NVIDIA layout (per-layer `cond_layers.i`, separate `res_layers.i` / `skip_layers.i`) ->
    the fused `cond_layer` / `res_skip_layers` (convert_model.py). Weight norm is per output channel
    (dim 0), so concatenating bias, weight_g and weight_v along dim 0 is exact."""
    out = dict(state_dict)
    prefixes = sorted({k.split(".cond_layers.")[0] for k in out if ".cond_layers." in k})
    prefixes += sorted({k.split(".skip_layers.")[0] for k in out if ".skip_layers." in k})
    for wn in dict.fromkeys(prefixes):
        suffixes = ("bias", "weight_g", "weight_v", "weight")
        if f"{wn}.cond_layers.0.bias" in out:
            for s in suffixes:
                parts = [out.pop(f"{wn}.cond_layers.{i}.{s}", None) for i in range(n_layers)]
                if all(p is not None for p in parts):
                    out[f"{wn}.cond_layer.{s}"] = torch.cat(parts)
        if f"{wn}.skip_layers.0.bias" in out:
            for i in range(n_layers):
                for s in suffixes:
                    skip = out.pop(f"{wn}.skip_layers.{i}.{s}", None)
                    res = out.pop(f"{wn}.res_layers.{i}.{s}", None)
                    if skip is not None:
                        out[f"{wn}.res_skip_layers.{i}.{s}"] = skip if res is None else torch.cat([res, skip])
    return out


def load_waveglow_state_dict(model: WaveGlow, obj, source: str = "checkpoint") -> WaveGlow:
    """Load NVIDIA's (or our) WaveGlow weights into `model`; `CheckpointError` in one line otherwise.

    `obj`: a plain state dict, a {"model": state_dict} dict (their checkpoint layout with the module
    replaced by its state dict), or such a dict / a module object if it was unpickled with their code.
    Weight norm may be present, removed or in torch's parametrization names; the old per-layer
    conditioning layout is fused.
    """
    if isinstance(obj, dict) and "model" in obj:
        obj = obj["model"]
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, dict) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
        raise CheckpointError(
            f"{source}: not a WaveGlow state dict (expected a dict of tensors or {{'model': state_dict}}); "
            "convert NVIDIA's pickled checkpoint with the recipe in the README"
        )
    n_layers = model.WN[0].n_layers
    state = _fuse_old_layout(obj, n_layers)
    state = convert_state_dict(model, state)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise CheckpointError(
            f"{source}: not a WaveGlow of this config ({len(missing)} missing keys, e.g. "
            f"{missing[:1]}, {len(unexpected)} unexpected, e.g. {unexpected[:1]}); check waveglow_config "
            "(n_flows, n_group, n_early_*, WN_config) against the checkpoint's"
        )
    for k, v in own.items():
        if state[k].shape != v.shape:
            raise CheckpointError(
                f"{source}: {k} is {tuple(state[k].shape)} in the checkpoint but {tuple(v.shape)} here; "
                "set waveglow_config.WN_config.n_channels (256 or 512) to the checkpoint's"
            )
    model.load_state_dict(state)
    return model


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (87,731,816 for the published WaveGlow with weight norm removed)."""
    return sum(p.numel() for p in model.parameters())
