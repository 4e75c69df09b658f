"""configs/sample_rates/: the 16, 24, 44.1 and 48 kHz presets in the V1 and V3 shapes (issue #19).

Each preset differs from config_v1.json / config_v3.json only in its frontend (sampling_rate,
n_fft, win, hop, num_mels, fmax), its upsampling (rates multiplying to the hop, kernels with
kernel - rate even), its segment (32 frames, as the paper's 8192 at hop 256) and, at 44.1 and
48 kHz, more MPD periods. Each trains a step on real speech resampled to its rate, and its
checkpoint vocodes a clip to that rate with frames x hop samples.
"""

import json
import os
import re
from math import prod

import pytest
import soundfile as sf
from conftest import LJ_WAVS, REPO, TINY_DISCRIMINATORS, needs_ljspeech, run_train

from meldataset import load_audio
from utils import ConfigError, load_config, validate_config

PRESETS = os.path.join(REPO, "configs", "sample_rates")
RATES = {"16k": 16000, "24k": 24000, "44k": 44100, "48k": 48000}
NAMES = [f"config_{v}_{r}.json" for r in RATES for v in ("v1", "v3")]
FRONTEND = ("sampling_rate", "n_fft", "hop_size", "win_size", "num_mels", "num_freq", "fmax", "segment_size")
UPSAMPLING = ("upsample_rates", "upsample_kernel_sizes", "mpd_periods")
PAPER_PERIODS = [2, 3, 5, 7, 11]


def preset(name: str):
    return load_config(os.path.join(PRESETS, name))


def test_the_folder_holds_exactly_the_presets():
    assert sorted(os.listdir(PRESETS)) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_preset_rules_and_the_rest_is_the_papers_shape(name):
    h = preset(name)
    version, rate = name[len("config_") : -len(".json")].split("_")
    with open(os.path.join(REPO, f"config_{version}.json")) as f:
        paper = json.load(f)
    assert h.sampling_rate == RATES[rate] and h.fmax == h.sampling_rate / 2 and h.fmax_for_loss is None
    assert prod(h.upsample_rates) == h.hop_size and len(h.upsample_rates) == len(paper["upsample_rates"])
    assert all((k - u) % 2 == 0 and k >= u for u, k in zip(h.upsample_rates, h.upsample_kernel_sizes))
    assert h.win_size <= h.n_fft and h.num_freq == h.n_fft // 2 + 1 and h.segment_size == 32 * h.hop_size
    assert h.get("mpd_periods", PAPER_PERIODS) == (
        PAPER_PERIODS + [17, 23] if h.sampling_rate > 40000 else PAPER_PERIODS
    )
    assert {k: v for k, v in h.items() if k not in FRONTEND + UPSAMPLING} == {
        k: v for k, v in paper.items() if k not in FRONTEND + UPSAMPLING
    }


# (what breaks, the change, the one-line message)
BROKEN = [
    ("product", lambda h: {"hop_size": h["hop_size"] * 2, "segment_size": h["segment_size"] * 2},
     lambda h: f"upsample_rates {h['upsample_rates']} multiply to {h['hop_size']} but hop_size is "
     f"{h['hop_size'] * 2}; make their product equal hop_size"),
    ("kernel", lambda h: {"upsample_kernel_sizes": [h["upsample_kernel_sizes"][0] + 1, *h["upsample_kernel_sizes"][1:]]},
     lambda h: f"upsample kernel {h['upsample_kernel_sizes'][0] + 1} with rate {h['upsample_rates'][0]}: kernel - "
     "rate must be even and >= 0, otherwise the output is not frames x hop_size samples; use e.g. kernel = 2 x rate"),
    ("segment", lambda h: {"segment_size": h["segment_size"] + 1},
     lambda h: f"segment_size {h['segment_size'] + 1} is not a multiple of hop_size {h['hop_size']}; use e.g. "
     f"{h['segment_size']}"),
    ("fmax", lambda h: {"fmax": h["sampling_rate"]},
     lambda h: f"fmax {h['sampling_rate']} is above sampling_rate / 2 = {h['sampling_rate'] / 2:g}; use at most "
     f"{h['sampling_rate'] / 2:g} (or null for sampling_rate / 2)"),
    ("window", lambda h: {"win_size": h["n_fft"] * 2},
     lambda h: f"win_size {h['n_fft'] * 2} is larger than n_fft {h['n_fft']}; use win_size <= n_fft"),
]  # fmt: skip


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("what,change,message", BROKEN, ids=[b[0] for b in BROKEN])
def test_a_broken_variant_is_rejected_in_one_line(name, what, change, message):
    h = dict(preset(name))
    with pytest.raises(ConfigError, match=f"^{re.escape(name)}: {re.escape(message(h))}$"):
        validate_config({**h, **change(h)}, name)


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """Two LJSpeech clips (first 0.5 s) resampled to each preset rate: {rate: (wavs, train, val)}."""
    root = tmp_path_factory.mktemp("resampled")
    names = sorted(n for n in os.listdir(LJ_WAVS) if n.endswith(".wav"))[:2]
    out = {}
    for rate in RATES.values():
        wavs = root / str(rate) / "wavs"
        wavs.mkdir(parents=True)
        for name in names:
            audio = load_audio(os.path.join(LJ_WAVS, name), rate, resample_to_rate=True, on_notice=lambda m: None)
            sf.write(wavs / name, audio[: rate // 2], rate, subtype="PCM_16")
        (wavs.parent / "train.txt").write_text("".join(f"{n[:-4]}|text\n" for n in names))
        (wavs.parent / "val.txt").write_text(f"{names[0][:-4]}|text\n")
        out[rate] = (str(wavs), str(wavs.parent / "train.txt"), str(wavs.parent / "val.txt"))
    return out


@needs_ljspeech
@pytest.mark.parametrize("name", NAMES)
def test_preset_trains_a_step_on_real_speech_and_vocodes_at_its_rate(name, speech, tmp_path, capsys, one_thread):
    """The preset's frontend, upsampling and MPD periods with a narrow generator and
    discriminators (the tests' sizes): one step, then inference.py on a clip at the preset's rate."""
    import inference

    h = dict(preset(name))
    small = dict(
        upsample_initial_channel=32,
        resblock_kernel_sizes=[3],
        resblock_dilation_sizes=[h["resblock_dilation_sizes"][0]],
    )
    h.update(batch_size=2, segment_size=8 * h["hop_size"], num_workers=0, **small, **TINY_DISCRIMINATORS)
    (tmp_path / "c.json").write_text(json.dumps(h))
    cp = run_train(tmp_path, config=str(tmp_path / "c.json"), data=speech[h["sampling_rate"]], steps=1)
    wavs = speech[h["sampling_rate"]][0]
    clip = sorted(os.listdir(wavs))[0]
    inputs = tmp_path / "in"
    inputs.mkdir()
    os.symlink(os.path.join(wavs, clip), inputs / clip)
    inference.main(["--checkpoint_file", str(cp / "g_00000000"), "--input_wavs_dir", str(inputs),
                    "--output_dir", str(tmp_path / "out"), "--device", "cpu"])  # fmt: skip
    out = sf.info(str(tmp_path / "out" / clip.replace(".wav", "_generated.wav")))
    frames = sf.info(os.path.join(wavs, clip)).frames // h["hop_size"]
    assert (out.samplerate, out.frames) == (h["sampling_rate"], frames * h["hop_size"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:  # this run kept no EMA weights: --ema says so in one line
        inference.main(["--checkpoint_file", str(cp / "g_00000000"), "--input_wavs_dir", str(inputs), "--ema",
                        "--output_dir", str(tmp_path / "out"), "--device", "cpu"])  # fmt: skip
    assert e.value.code == 2 and capsys.readouterr().err.strip() == (
        f"error: {cp}/ema_00000000: not found, so the run of {cp}/g_00000000 kept no EMA weights; leave out "
        '--ema, or train with "ema_decay" in the config'
    )
