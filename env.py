"""Run environment: attribute access to the JSON config and the run folder's copy of it.

`AttrDict` is the type of `h` everywhere; `build_env` copies the config next to the checkpoints
so that `inference.py` finds it beside `g_XXXXXXXX`.
"""

import os
import shutil


class AttrDict(dict):
    """A dict whose keys are also attributes (`h.hop_size == h["hop_size"]`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.__dict__ = self


def build_env(config: str, config_name: str, path: str) -> None:
    """Copy `config` to `<path>/<config_name>`, creating `path` if needed."""
    os.makedirs(path, exist_ok=True)
    target = os.path.join(path, config_name)
    if os.path.exists(target) and os.path.samefile(config, target):
        return
    tmp = f"{target}.{os.getpid()}.tmp"  # every torchrun rank copies it: one temp file each
    shutil.copyfile(config, tmp)
    os.replace(tmp, target)
