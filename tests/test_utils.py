"""utils.py and env.py: config validation (one clear line each), checkpoints, build_env."""

import json
import os

import pytest
import torch
from conftest import REPO

from env import AttrDict, build_env
from utils import (
    CheckpointError,
    ConfigError,
    list_checkpoints,
    load_checkpoint,
    load_config,
    save_checkpoint,
    scan_checkpoint,
)


def write_config(tmp_path, **changes):
    with open(os.path.join(REPO, "config_v1.json")) as f:
        data = json.load(f)
    for k, v in changes.items():
        if v is KeyError:
            del data[k]
        else:
            data[k] = v
    path = tmp_path / "c.json"
    path.write_text(json.dumps(data))
    return str(path)


@pytest.mark.parametrize("version", ["v1", "v2", "v3"])
def test_real_configs_load(version):
    h = load_config(os.path.join(REPO, f"config_{version}.json"))
    assert isinstance(h, AttrDict) and h.hop_size == 256 and h.fmax_for_loss is None


@pytest.mark.parametrize(
    "changes,match",
    [
        ({"hop_size": KeyError}, r"c\.json: missing key\(s\) hop_size"),
        ({"upsample_rates": [8, 8, 2, 4]}, r"upsample_rates \[8, 8, 2, 4\] multiply to 512 but hop_size is 256"),
        ({"segment_size": 8000}, "segment_size 8000 is not a multiple of hop_size 256"),
        ({"upsample_kernel_sizes": [16, 16, 4]}, "upsample_rates has 4 entries but upsample_kernel_sizes has 3"),
        ({"resblock_kernel_sizes": [3, 7]}, "resblock_kernel_sizes has 2 entries but resblock_dilation_sizes has 3"),
        ({"upsample_kernel_sizes": [16, 15, 4, 4]}, "upsample kernel 15 with rate 8: kernel - rate must be even"),
        ({"resblock": "3"}, "resblock is '3'; it must be \"1\""),
        ({"fmax": 12000}, r"fmax 12000 is above sampling_rate / 2 = 11025"),
        ({"fmax_for_loss": 20000}, "fmax_for_loss 20000 is above sampling_rate / 2"),
        ({"win_size": 2048}, "win_size 2048 is larger than n_fft 1024"),
        ({"resblock_dilation_sizes": [[1, 3], [1, 3], [1, 3]]}, 'resblock "1" needs 3 per kernel'),
    ],
)
def test_config_errors(tmp_path, changes, match):
    with pytest.raises(ConfigError, match=match):
        load_config(write_config(tmp_path, **changes))


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="nope.json: config file not found"):
        load_config(str(tmp_path / "nope.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{ 'resblock': 1")
    with pytest.raises(ConfigError, match="bad.json: not valid JSON"):
        load_config(str(bad))


def test_save_is_atomic_and_loads_weights_only(tmp_path):
    path = str(tmp_path / "g_00000001")
    save_checkpoint(path, {"generator": {"w": torch.ones(3)}, "steps": 1})
    assert os.listdir(tmp_path) == ["g_00000001"]  # no temp file left behind
    assert load_checkpoint(path)["steps"] == 1

    class Boom:
        def __reduce__(self):
            raise OSError("disk full")

    with pytest.raises(OSError):
        save_checkpoint(path, {"x": Boom()})
    assert load_checkpoint(path)["steps"] == 1  # the previous file is intact
    assert os.listdir(tmp_path) == ["g_00000001"]


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="g_x: checkpoint not found"):
        load_checkpoint(str(tmp_path / "g_x"))
    path = tmp_path / "g_00000002"
    save_checkpoint(str(path), {"generator": {"w": torch.ones(1000)}})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="g_00000002: cannot be read as a checkpoint"):
        load_checkpoint(str(path))


def test_scan_checkpoint(tmp_path):
    assert scan_checkpoint(str(tmp_path), "g_") is None
    for name in ("g_00000010", "g_00000200", "g_00000200.tmp", "g_abc", "do_00000300"):
        (tmp_path / name).write_bytes(b"")
    assert scan_checkpoint(str(tmp_path), "g_").endswith("g_00000200")
    assert [os.path.basename(p) for p in list_checkpoints(str(tmp_path), "g_")] == ["g_00000010", "g_00000200"]


def test_build_env(tmp_path):
    src = os.path.join(REPO, "config_v1.json")
    build_env(src, "config.json", str(tmp_path / "run"))
    copied = tmp_path / "run" / "config.json"
    assert json.loads(copied.read_text()) == json.load(open(src))
    build_env(str(copied), "config.json", str(tmp_path / "run"))  # same file: no error
    h = AttrDict({"a": 1})
    assert h.a == 1 and h["a"] == 1
