"""Shared helpers: user-facing errors, config loading and validation, weight init, padding,
checkpoint I/O (atomic save, `weights_only` load, scanning) and spectrogram plots.

Every script loads its config through `load_config`, so a bad config fails in one place with one
line naming the key and the fix, before any work starts.
"""

import glob
import json
import os
import re
import sys
import tempfile
from math import prod
from typing import NoReturn

import torch

from env import AttrDict

# Keys of the original configs (jik876/hifi-gan); all of them are required.
REQUIRED_KEYS = (
    "resblock",
    "num_gpus",
    "batch_size",
    "learning_rate",
    "adam_b1",
    "adam_b2",
    "lr_decay",
    "seed",
    "upsample_rates",
    "upsample_kernel_sizes",
    "upsample_initial_channel",
    "resblock_kernel_sizes",
    "resblock_dilation_sizes",
    "segment_size",
    "num_mels",
    "num_freq",
    "n_fft",
    "hop_size",
    "win_size",
    "sampling_rate",
    "fmin",
    "fmax",
    "fmax_for_loss",
    "num_workers",
    "dist_config",
)
DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "config_v1.json")  # scripts' default frontend
CONFIG_BESIDE_CHECKPOINT = "config.json"  # train.py copies the config here, next to g_XXXXXXXX
CHECKPOINT_DIGITS = 8  # g_00005000: 8-digit zero-padded step, as the original
EMA_PREFIX = "ema_"  # ema_00005000: the EMA generator weights beside g_/do_ (config key ema_decay)
TEMP_SUFFIX = ".tmp"  # save_checkpoint writes `.<name>.<random>.tmp`, then renames it


class UserError(Exception):
    """A problem the user can fix (bad file, config, shape); scripts print it as one line."""


def exit_with_user_error(error: UserError, debug: bool, code: int = 2) -> NoReturn:
    """End a script on a user error: its one line on stderr and exit `code`; with --debug, the traceback."""
    if debug:
        raise error
    print(f"error: {error}", file=sys.stderr)
    sys.exit(code)


class ConfigError(UserError):
    """The JSON config is missing a key or its values are inconsistent."""


class CheckpointError(UserError):
    """A checkpoint file is missing, unreadable or of the wrong kind."""


# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------


def validate_config(h: dict, source: str = "config") -> None:
    """Raise `ConfigError` (one line: file, key, fix) if `h` cannot describe a HiFi-GAN."""

    def fail(msg: str) -> None:
        raise ConfigError(f"{source}: {msg}")

    missing = [k for k in REQUIRED_KEYS if k not in h]
    if missing:
        fail(f"missing key(s) {', '.join(missing)}; copy them from config_v1.json")
    if str(h["resblock"]) not in ("1", "2"):
        fail(f'resblock is {h["resblock"]!r}; it must be "1" (V1, V2) or "2" (V3)')
    rates, kernels = list(h["upsample_rates"]), list(h["upsample_kernel_sizes"])
    if len(rates) != len(kernels):
        fail(
            f"upsample_rates has {len(rates)} entries but upsample_kernel_sizes has "
            f"{len(kernels)}; give one kernel size per upsampling layer"
        )
    if len(h["resblock_kernel_sizes"]) != len(h["resblock_dilation_sizes"]):
        fail(
            f"resblock_kernel_sizes has {len(h['resblock_kernel_sizes'])} entries but "
            f"resblock_dilation_sizes has {len(h['resblock_dilation_sizes'])}; give one dilation "
            "list per resblock kernel"
        )
    n_dil = 3 if str(h["resblock"]) == "1" else 2
    for d in h["resblock_dilation_sizes"]:
        if len(d) != n_dil:
            fail(
                f"resblock_dilation_sizes entry {d} has {len(d)} dilations; resblock "
                f'"{h["resblock"]}" needs {n_dil} per kernel'
            )
    if prod(rates) != h["hop_size"]:
        fail(
            f"upsample_rates {rates} multiply to {prod(rates)} but hop_size is {h['hop_size']}; "
            "make their product equal hop_size"
        )
    for u, k in zip(rates, kernels):
        if (k - u) % 2 != 0 or k < u:
            fail(
                f"upsample kernel {k} with rate {u}: kernel - rate must be even and >= 0, "
                "otherwise the output is not frames x hop_size samples; use e.g. kernel = 2 x rate"
            )
    if h["upsample_initial_channel"] % (2 ** len(rates)) != 0:
        fail(
            f"upsample_initial_channel {h['upsample_initial_channel']} must be divisible by "
            f"2**{len(rates)} (the channels halve at each upsampling layer)"
        )
    if h["segment_size"] % h["hop_size"] != 0:
        fail(
            f"segment_size {h['segment_size']} is not a multiple of hop_size {h['hop_size']}; "
            f"use e.g. {h['hop_size'] * max(1, round(h['segment_size'] / h['hop_size']))}"
        )
    if h["win_size"] > h["n_fft"]:
        fail(f"win_size {h['win_size']} is larger than n_fft {h['n_fft']}; use win_size <= n_fft")
    nyquist = h["sampling_rate"] / 2
    for key in ("fmax", "fmax_for_loss"):
        if h[key] is not None and h[key] > nyquist:
            fail(
                f"{key} {h[key]} is above sampling_rate / 2 = {nyquist:g}; use at most {nyquist:g} "
                "(or null for sampling_rate / 2)"
            )
    if h["fmin"] < 0 or (h["fmax"] is not None and h["fmin"] >= h["fmax"]):
        fail(f"fmin {h['fmin']} must be >= 0 and below fmax {h['fmax']}")
    for key in ("batch_size", "num_mels", "hop_size", "n_fft", "sampling_rate", "segment_size"):
        if not isinstance(h[key], int) or h[key] <= 0:
            fail(f"{key} must be a positive integer, got {h[key]!r}")
    validate_discriminator_keys(h, fail)


MSD_MAX_GROUPS = 16  # the MSD's grouped convs use up to 16 groups (models.MSD_LAYERS)


def validate_discriminator_keys(h: dict, fail) -> None:
    """The optional discriminator-size keys (absent: the paper's sizes), one `fail` line each."""

    def positive_ints(key: str, n: int | None, example: str) -> list | None:
        value = h.get(key)
        if value is None:
            return None
        ok = isinstance(value, (list, tuple)) and len(value) > 0 and (n is None or len(value) == n)
        if not ok or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
            count = f"a list of {n}" if n else "a non-empty list of"
            fail(f"{key} must be {count} positive integers, got {value!r}; the paper's is {example}")
        return list(value)

    positive_ints("mpd_periods", None, "[2, 3, 5, 7, 11]")
    positive_ints("mpd_channels", 5, "[32, 128, 512, 1024, 1024]")
    msd = positive_ints("msd_channels", 7, "[128, 128, 256, 512, 1024, 1024, 1024]")
    if msd and any(c % MSD_MAX_GROUPS for c in msd):
        fail(f"msd_channels {msd}: each width must be a multiple of {MSD_MAX_GROUPS} (the grouped convolutions)")


def config_beside(checkpoint_file: str) -> str:
    """The `config.json` that train.py wrote next to `checkpoint_file`; `ConfigError` if absent."""
    path = os.path.join(os.path.dirname(os.path.abspath(checkpoint_file)), CONFIG_BESIDE_CHECKPOINT)
    if not os.path.isfile(path):
        raise ConfigError(
            f"{path}: no config.json beside the checkpoint {checkpoint_file}; pass --config with the "
            "config it was trained with (e.g. config_v1.json)"
        )
    return path


def default_device() -> str:
    """The default --device of every script: "cuda" when a CUDA device is available, else "cpu"."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(device: str | torch.device | None) -> str | torch.device:
    """A script's --device: `default_device()` when None; `UserError` for CUDA on a machine without it."""
    device = device or default_device()
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda but no CUDA device is available; use --device cpu")
    return device


def load_config(path: str) -> AttrDict:
    """Read a JSON config into an `AttrDict` and validate it (`ConfigError` on problems)."""
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: config file not found; pass --config config_v1.json (or v2/v3)")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON ({e}); fix the syntax at that position") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a JSON object of hyperparameters")
    h = AttrDict(data)
    validate_config(h, path)
    return h


# ---------------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------------


def init_weights(m: torch.nn.Module, mean: float = 0.0, std: float = 0.01) -> None:
    """N(mean, std) init of a conv's `weight`, as the original.

    NOTE: on a weight-normed conv `m.weight` is recomputed from `weight_g`/`weight_v` at every
    forward, so this changes nothing that persists, exactly as in the original (it still draws
    from the RNG, which keeps seeded initializations identical to the authors' code).
    """
    if "Conv" in m.__class__.__name__:
        m.weight.data.normal_(mean, std)


def get_padding(kernel_size: int, dilation: int = 1) -> int:
    """'Same' padding of a stride-1 conv: (kernel_size - 1) * dilation / 2."""
    return int((kernel_size * dilation - dilation) / 2)


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------


def save_checkpoint(filepath: str, obj: dict) -> None:
    """`torch.save` to a temp file in the same folder, fsync, then rename over `filepath`.

    A crash or a full disk leaves either the old file or the complete new one, never a torn one.
    """
    folder = os.path.dirname(os.path.abspath(filepath))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(filepath)}.", suffix=TEMP_SUFFIX, dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, filepath)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    try:  # make the rename itself durable
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def remove_temp_files(folder: str) -> list[str]:
    """Delete the temp files that `save_checkpoint` left in `folder` when it was killed mid-write
    (`.<prefix>_XXXXXXXX.<random>.tmp`, any family's prefix); returns their paths. Call it only while nothing is saving there."""
    pattern = os.path.join(glob.escape(folder), f".*{TEMP_SUFFIX}")
    stale = [p for p in glob.glob(pattern) if re.match(rf"\.[a-z_]+_\d{{{CHECKPOINT_DIGITS}}}\.", os.path.basename(p))]
    for path in stale:
        os.remove(path)
    return stale


def load_checkpoint(filepath: str, device: torch.device | str = "cpu") -> dict:
    """Load a checkpoint with `weights_only=True` (plain data only); `CheckpointError` if bad."""
    if not os.path.isfile(filepath):
        raise CheckpointError(f"{filepath}: checkpoint not found; check --checkpoint_file / path")
    try:
        obj = torch.load(filepath, map_location=device, weights_only=True)
    except Exception as e:  # torch raises many kinds here (pickle, zip, EOF, unpickling policy)
        raise CheckpointError(
            f"{filepath}: cannot be read as a checkpoint ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:200]}); the file is truncated or not a HiFi-GAN checkpoint"
        ) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{filepath}: holds a {type(obj).__name__}, not a checkpoint dict")
    return obj


def tensor_version(t: torch.Tensor) -> int | None:
    """The in-place version counter of `t` (None for an inference tensor, which has none)."""
    try:
        return t._version
    except RuntimeError:
        return None


def weights_key(module: torch.nn.Module) -> tuple:
    """Changes whenever any parameter of `module` is updated in place, replaced (`load_state_dict`)
    or moved (`.to()`): the key of a cache derived from the weights."""
    return tuple((p.data_ptr(), tensor_version(p), p.device, p.dtype) for p in module.parameters())


def list_checkpoints(cp_dir: str, prefix: str) -> list[str]:
    """`<cp_dir>/<prefix>XXXXXXXX` files (exactly 8 digits), oldest to newest."""
    pattern = os.path.join(glob.escape(cp_dir), prefix + "?" * CHECKPOINT_DIGITS)
    digits = re.compile(rf"\d{{{CHECKPOINT_DIGITS}}}$")
    return sorted(p for p in glob.glob(pattern) if digits.search(p))


def scan_checkpoint(cp_dir: str, prefix: str) -> str | None:
    """Newest `<prefix>XXXXXXXX` in `cp_dir`, or None."""
    found = list_checkpoints(cp_dir, prefix)
    return found[-1] if found else None


# ---------------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------------


def plot_spectrogram(spectrogram):
    """A (F, T) array as a matplotlib figure (for TensorBoard's `add_figure`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 2))
    im = ax.imshow(spectrogram, aspect="auto", origin="lower", interpolation="none")
    plt.colorbar(im, ax=ax)
    fig.canvas.draw()
    plt.close(fig)
    return fig
