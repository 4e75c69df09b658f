"""Shared test helpers: repo on sys.path, configs from the real JSON files, synthetic audio."""

import os
import sys

import numpy as np
import pytest
import soundfile as sf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
SHARED = os.path.join(os.path.dirname(REPO), "shared")
FIXTURES = os.path.join(SHARED, "fixtures")
LJ_WAVS = os.path.join(SHARED, "data", "ljspeech_mini", "wavs")

from utils import load_config  # noqa: E402

needs_fixtures = pytest.mark.skipif(
    not os.path.isdir(FIXTURES), reason="../shared/fixtures is absent (reference outputs of the authors' code)"
)
needs_ljspeech = pytest.mark.skipif(not os.path.isdir(LJ_WAVS), reason="../shared/data/ljspeech_mini is absent")

VERSIONS = ("v1", "v2", "v3")


def config(version: str = "v1", **overrides):
    """The real config_<version>.json with `overrides` applied (validated again)."""
    from utils import validate_config

    h = load_config(os.path.join(REPO, f"config_{version}.json"))
    h.update(overrides)
    validate_config(h, f"config_{version}.json + overrides")
    return h


# Narrow MPD/MSD (the paper's periods, layers and state-dict keys): training tests write checkpoints
# of about 1 MB instead of 0.85 GB.
TINY_DISCRIMINATORS = dict(mpd_channels=[4, 8, 16, 16, 16], msd_channels=[16, 16, 16, 32, 32, 32, 32])
# A small MelGAN generator and discriminator (the authors' layer types and keys) for training tests.
TINY_MELGAN = dict(melgan_ngf=4, melgan_ndf=4, melgan_n_layers_D=2, melgan_downsamp_factor=2)


# WaveGlow and WaveNet for training tests: the real layer types and keys at a few thousand weights.
# WaveGlow's upsampler is num_mels^2 x 1024 weights: 20 bands keep the checkpoint at about 2 MB.
TINY_WAVEGLOW = dict(
    num_mels=20,
    waveglow_config=dict(
        n_mel_channels=20, n_flows=4, n_group=8, n_early_every=2, n_early_size=2,
        WN_config=dict(n_layers=2, n_channels=16, kernel_size=3),
    ),
)  # fmt: skip
TINY_WAVENET = dict(
    wavenet_config=dict(layers=4, stacks=2, residual_channels=16, gate_channels=16, skip_out_channels=16),
    lr_schedule=None,  # the published noam warm-up would keep the lr near 0 for a few test steps
    validation_frames=2,
    validation_items=1,
)


def write_baseline_config(folder, name: str, **overrides) -> str:
    """configs/baselines/config_<name>.json at the training tests' sizes (batch 2, 2048-sample
    segments, no loader workers) with `overrides` (e.g. TINY_WAVEGLOW) -> the written path."""
    import json

    h = baseline_config(name, batch_size=2, segment_size=2048, num_workers=0)
    for key, value in overrides.items():  # the model blocks are merged, not replaced
        h[key] = {**h[key], **value} if isinstance(value, dict) and isinstance(h.get(key), dict) else value
    path = folder / f"{name}.json"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(h)))
    return str(path)


def tiny_config(version: str = "v1", **overrides):
    """A small, fast generator with the real frontend (hop 256): for training/inference tests."""
    small = dict(upsample_initial_channel=32, resblock_kernel_sizes=[3, 7] if version != "v3" else [3, 5])
    small["resblock_dilation_sizes"] = [[1, 3, 5], [1, 3, 5]] if version != "v3" else [[1, 2], [2, 6]]
    small.update(batch_size=2, segment_size=4096, num_workers=0, **TINY_DISCRIMINATORS)
    small.update(overrides)
    return config(version, **small)


def harmonic(seconds: float = 1.0, sr: int = 22050, f0: float = 140.0, seed: int = 0) -> np.ndarray:
    """A voiced, speech-like test signal: harmonics of a gliding f0 plus a little noise, peak 0.5."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f = f0 * (1 + 0.2 * np.sin(2 * np.pi * 1.5 * t))
    phase = 2 * np.pi * np.cumsum(f) / sr
    y = sum(np.sin(k * phase) / k for k in range(1, 12)) + 0.02 * rng.standard_normal(t.size)
    return (0.5 * y / np.abs(y).max()).astype(np.float32)


def write_wav(path, audio: np.ndarray, sr: int = 22050, subtype: str = "PCM_16") -> str:
    sf.write(path, audio, sr, subtype=subtype)
    return str(path)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of small-tensor tests: on a busy 2-core machine two threads
    spin against each other and run several times slower. Restores the previous count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


BASELINE_CONFIGS = os.path.join(REPO, "configs", "baselines")


def baseline_config(name: str, **overrides):
    """The real configs/baselines/config_<name>.json with `overrides` applied (validated again)."""
    from utils import validate_config

    h = load_config(os.path.join(BASELINE_CONFIGS, f"config_{name}.json"))
    h.update(overrides)
    validate_config(h, f"config_{name}.json + overrides")
    return h


# --- training helpers ---

# what the last file of every checkpoint holds besides its models and optimizers (train.py)
PROGRESS_ENTRIES = ("steps", "epoch", "epoch_batches", "rng")


def scalar_tags(logdir):
    """The TensorBoard event files of `logdir`, loaded (scalars, images and audio in full)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "images": 0, "audio": 0})
    acc.Reload()
    return acc


def largest_file(folder) -> int:
    """Bytes of the largest file anywhere under `folder`."""
    return max((os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(folder) for f in files), default=0)


def make_training_data(folder, n=3, seconds=0.6):
    """`n` harmonic clips clip0.. in <folder>/wavs, all in train.txt, clip0 in val.txt."""
    wavs = folder / "wavs"
    wavs.mkdir(parents=True, exist_ok=True)
    ids = [f"clip{i}" for i in range(n)]
    for i, name in enumerate(ids):
        write_wav(wavs / f"{name}.wav", harmonic(seconds, f0=110 + 30 * i, seed=i))
    (folder / "train.txt").write_text("".join(f"{i}|text\n" for i in ids))
    (folder / "val.txt").write_text(f"{ids[0]}|text\n")
    return str(wavs), str(folder / "train.txt"), str(folder / "val.txt")


def write_tiny_config(folder, version="v1", **overrides):
    import json

    h = tiny_config(version, segment_size=2048, **overrides)
    path = folder / f"tiny_{version}.json"
    path.write_text(json.dumps(dict(h)))
    return str(path)


def training_pids(marker: str) -> dict[int, int]:
    """{RANK: pid} of the running processes whose command line holds `marker` and whose
    environment has a RANK (torchrun's training processes), the launcher left out."""
    found = {}
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
            env = open(f"/proc/{pid}/environ", "rb").read().decode(errors="replace").split("\0")
        except OSError:
            continue
        ranks = [e[5:] for e in env if e.startswith("RANK=")]
        if marker in cmd and ranks and "torch.distributed.run" not in cmd:
            found[int(ranks[0])] = pid
    return found


def run_train(tmp_path, *extra, config=None, steps=2, data=None):
    """train.main in this process on tiny data and a tiny config; returns the checkpoint folder."""
    import train

    wavs, tr, va = data or make_training_data(tmp_path / "data")
    argv = [
        "--config", config or write_tiny_config(tmp_path),
        "--input_wavs_dir", wavs, "--input_training_file", tr, "--input_validation_file", va,
        "--checkpoint_path", str(tmp_path / "cp"), "--training_steps", str(steps),
        "--stdout_interval", "1", "--summary_interval", "1", "--validation_interval", "1000",
        "--checkpoint_interval", "1000", "--device", "cpu",
    ]  # fmt: skip
    train.main(argv + list(extra))
    return tmp_path / "cp"


# --- synthesis helpers ---


def save_generator(folder, h, seed: int = 0, name: str = "g_00000010") -> str:
    """A g_ checkpoint of a seeded random Generator(h) and its config.json in `folder` (created if
    needed) -> the checkpoint's path."""
    import json

    import torch

    from models import Generator

    os.makedirs(folder, exist_ok=True)
    torch.manual_seed(seed)
    path = os.path.join(folder, name)
    torch.save({"generator": Generator(h).state_dict()}, path)
    with open(os.path.join(folder, "config.json"), "w", encoding="utf-8") as f:
        json.dump(h, f)
    return path
