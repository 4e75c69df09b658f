"""melformats: the toolkits' frontends identified against the wav (exact finding codes and fitted
parameters) and converted back into this frontend (L1 to the true mel, measured thresholds), on
real LJSpeech clips cropped to 2 s (skipped without ../shared) and on a 2 s speech-like signal
with pauses of digital silence (always, so CI checks every recipe too)."""

import math
import os

import numpy as np
import pytest
from conftest import LJ_WAVS, config, needs_ljspeech

import melformats as mf
from meldataset import load_wav, synth_speechlike

pytestmark = pytest.mark.usefixtures("one_thread")

REAL_CLIPS = ("LJ001-0001", "LJ001-0004")  # two sentences of 9.7 s and 5.1 s
CLIPS = (*REAL_CLIPS, "synthetic")
CROP = (11025, 11025 + 2 * 22050)  # 2 s from 0.5 s


@pytest.fixture(scope="module")
def h():
    return config("v1")


@pytest.fixture(scope="module", params=CLIPS)
def clip(request) -> np.ndarray:
    if request.param == "synthetic":  # 1.6 s of speech-like signal between 0.2 s pauses, as recordings have
        pause = np.zeros(22050 // 5, np.float32)
        return np.concatenate([pause, synth_speechlike(1.6, 22050, np.random.default_rng(0)), pause])
    if not os.path.isdir(LJ_WAVS):
        pytest.skip("../shared/data/ljspeech_mini is absent")
    audio, _ = load_wav(os.path.join(LJ_WAVS, f"{request.param}.wav"))
    return audio[slice(*CROP)]


def clip_name(request) -> str:
    return request.node.callspec.params["clip"]


def codes(report) -> set[str]:
    return set(report.codes)


# ---------------------------------------------------------------------------------------------
# Identification of the toolkits' recipes
# ---------------------------------------------------------------------------------------------

# (finding codes, fitted parameters) of each preset's recipe; "level" is checked separately
RECIPES = {
    "hifigan": (set(), dict(fmin=0.0, fmax=8000.0, power=1, center=False, slope=1.0, offset=0.0, layout="MT")),
    "tacotron2": ({"frames_center"}, dict(fmin=0.0, fmax=8000.0, power=1, center=True, slope=1.0, offset=0.0)),
    "espnet": (
        {"orientation", "frames_center", "fmin", "fmax", "log10"},
        dict(fmin=80.0, fmax=7600.0, power=1, center=True, slope=1 / math.log(10), offset=0.0, layout="TM"),
    ),
    "coqui": (
        {"frames_center", "fmax", "symmetric4"},
        dict(fmin=0.0, fmax=11025.0, center=True, min_level_db=-100.0, ref_level_db=20.0, max_norm=4.0, clip_low=-4.0),
    ),
    "fastspeech2": ({"orientation", "frames_center"}, dict(fmin=0.0, fmax=8000.0, power=1, center=True, slope=1.0)),
    "librosa": (
        {"bands", "frames_center", "fmax", "power_mel", "db"},
        dict(fmin=0.0, fmax=11025.0, power=2, center=True, slope=10 / math.log(10), offset=0.0, bands=128),
    ),
}


def assert_params(fit: dict, expected: dict) -> None:
    for key, want in expected.items():
        if isinstance(want, float):
            assert fit[key] == pytest.approx(want, rel=1e-3, abs=1e-3), key
        else:
            assert fit[key] == want, key


@pytest.mark.parametrize("name", mf.PRESETS)
def test_recipes_are_identified(h, clip, name):
    want_codes, want_params = RECIPES[name]
    report = mf.identify(mf.recipe_mel(name, clip, h), clip, h)
    assert not report.guessed
    assert codes(report) - {"level"} == want_codes
    assert_params(report.fit, want_params)
    assert report.fit["residual"] < 1e-3  # exact recipes fit to float precision


def test_fastspeech2_level_is_the_peak_normalisation(h, clip):
    report = mf.identify(mf.fastspeech2_mel(clip), clip, h)
    level = -math.log(np.abs(clip).max())
    assert report.fit["level"] == pytest.approx(level, abs=1e-3)
    assert ("level" in report.codes) == (level > mf.LEVEL_TOLERANCE)


def affine_of(mel: np.ndarray, slope: float, offset: float) -> np.ndarray:
    return (slope * mel + offset).astype(np.float32)


# combinations that the identifier separates: (make the mel, codes, fitted parameters)
COMBINATIONS = {
    # the case issue 16 names: another fmin with another log base is not a per-band normalisation
    "log10_fmin55": (
        lambda y, h: affine_of(mf.hifigan_mel(y, config("v1", fmin=55)), 1 / math.log(10), 0.0),
        {"fmin", "log10"},
        dict(fmin=55.0, fmax=8000.0, center=False, slope=1 / math.log(10)),
    ),
    # centred frames with this frontend's frame count (the extra frame cut off): told by the fit
    "centre_trimmed_fmin50": (
        lambda y, h: mf.tacotron2_mel(y, fmin=50.0)[:, :-1],
        {"fmin", "frames_center"},
        dict(fmin=50.0, fmax=8000.0, center=True, slope=1.0),
    ),
    "ln_fmin80": (
        lambda y, h: mf.hifigan_mel(y, config("v1", fmin=80)),
        {"fmin"},
        dict(fmin=80.0, fmax=8000.0, slope=1.0),
    ),
    "db_fmin125_fmax9500": (
        lambda y, h: affine_of(mf.hifigan_mel(y, config("v1", fmin=125, fmax=9500)), 20 / math.log(10), 0.0),
        {"fmin", "fmax", "db"},
        dict(fmin=125.0, fmax=9500.0, power=1, slope=20 / math.log(10)),
    ),
    "ln_power_of_magnitude": (
        lambda y, h: affine_of(mf.hifigan_mel(y, h), 2.0, 0.0),
        {"ln_power"},
        dict(power=1, slope=2.0),
    ),
    "range01_fmin95": (
        lambda y, h: mf.coqui_mel(y, fmin=95.0, fmax=8000.0, max_norm=1.0, symmetric=False),
        {"frames_center", "fmin", "range01"},
        dict(fmin=95.0, fmax=8000.0, min_level_db=-100.0, ref_level_db=20.0),
    ),
    "symmetric4_own_levels": (
        lambda y, h: mf.coqui_mel(y, fmax=8000.0, min_level_db=-120.0, ref_level_db=25.0),
        {"frames_center", "symmetric4"},
        dict(fmax=8000.0, min_level_db=-120.0, ref_level_db=25.0),
    ),
    "log10_centre": (
        lambda y, h: mf.espnet_mel(y, fmin=0.0, fmax=8000.0),
        {"orientation", "frames_center", "log10"},
        dict(fmin=0.0, fmax=8000.0, center=True, layout="TM"),
    ),
    "standardized": (
        lambda y, h: affine_of(mf.hifigan_mel(y, h), 1 / 2.5, 6.0 / 2.5),  # slope 0.4 is near log10's 0.434
        {"standardized"},
        dict(mean=-6.0, std=2.5),
    ),
    "normalized": (
        lambda y, h: affine_of(mf.hifigan_mel(y, h), 3.0, 5.0),
        {"normalized"},
        dict(mean=-5.0 / 3, std=1 / 3),
    ),
    "per_band": (
        lambda y, h: (lambda m: (m - m.mean(1, keepdims=True)) / m.std(1, keepdims=True))(mf.hifigan_mel(y, h)),
        {"per_band"},
        dict(fmin=0.0, fmax=8000.0),
    ),
    "linear": (
        lambda y, h: np.exp(mf.hifigan_mel(y, h)),
        {"linear"},
        dict(linear=True, slope=1.0),
    ),
}


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_combinations_are_separated(h, clip, combination):
    make, want_codes, want_params = COMBINATIONS[combination]
    report = mf.identify(make(clip, h), clip, h)
    assert codes(report) - {"level"} == want_codes
    assert_params(report.fit, want_params)


def test_per_band_statistics_are_fitted(h, clip):
    mel = mf.hifigan_mel(clip, h)
    mean, std = mel.mean(1), mel.std(1)
    report = mf.identify((mel - mean[:, None]) / std[:, None], clip, h)
    # in bands well above the floor the per-band slope is 1 / std and the offset -mean / std
    loud = mean > -7
    np.testing.assert_allclose(report.fit["band_slope"][loud], 1 / std[loud], rtol=0.05)


@pytest.mark.parametrize(
    "name, want",
    [("hifigan", set()), ("espnet", {"orientation", "log10"}), ("coqui", {"symmetric4"}), ("librosa", {"db"})],
)
def test_without_the_wav_it_is_a_guess(h, clip, name, want):
    report = mf.identify(mf.recipe_mel(name, clip, h), None, h)
    assert report.guessed
    assert codes(report) == want
    assert all("a guess" in f.message for f in report.findings if f.code != "orientation")  # the shape is no guess


# ---------------------------------------------------------------------------------------------
# Conversion into this frontend
# ---------------------------------------------------------------------------------------------

# L1 (ln units) between the converted and the true mel, on REAL_CLIPS cropped as CROP: about 15 %
# above the measured values (LJ001-0001 / LJ001-0004; preset and auto give the same except for
# fastspeech2, whose peak normalisation only the wav tells)
L1_LIMIT = {
    ("hifigan", "preset"): 1e-6,  # 0 / 0: nothing to convert
    ("tacotron2", "preset"): 0.10,  # 0.078 / 0.088: the half-hop re-alignment alone
    ("espnet", "preset"): 0.16,  # 0.139 / 0.140: re-alignment, log10, 80-7600 Hz -> 0-8000 Hz
    ("coqui", "preset"): 0.175,  # 0.151 / 0.146: re-alignment, normalised dB, 0-11025 Hz, the -4 clip
    ("fastspeech2", "preset"): 0.55,  # 0.485 / 0.477: the level of the peak-normalised audio is unknown
    ("fastspeech2", "auto"): 0.10,  # 0.078 / 0.088: the level is fitted against the wav
    ("librosa", "preset"): 0.27,  # 0.233 / 0.193: re-alignment, power mel of 128 bands, 0-11025 Hz, top_db
}
# the same on the synthetic clip, where they differ (measured): its 20 % of digital silence is at
# ln(1e-5) in the true mel, which Coqui's -4 clip (ln -9.21) and librosa's top_db hold higher
SYNTHETIC_L1_LIMIT = {
    ("espnet", "preset"): 0.185,  # 0.161
    ("coqui", "preset"): 0.61,  # 0.530
    ("fastspeech2", "preset"): 0.50,  # 0.432
    ("librosa", "preset"): 0.57,  # 0.492
}


@pytest.mark.parametrize("source", ["preset", "auto"])
@pytest.mark.parametrize("name", mf.PRESETS)
def test_convert_round_trip(h, clip, name, source, request):
    true = mf.hifigan_mel(clip, h)
    mel, notes = mf.convert(mf.recipe_mel(name, clip, h), name if source == "preset" else "auto", h, audio=clip)
    assert mel.shape == true.shape and mel.dtype == np.float32
    assert mel.min() >= np.float32(math.log(1e-5))
    limits = {**L1_LIMIT, **SYNTHETIC_L1_LIMIT} if clip_name(request) == "synthetic" else L1_LIMIT
    assert np.abs(mel - true).mean() < limits.get((name, source), limits[name, "preset"])
    if name == "hifigan":
        np.testing.assert_array_equal(mel, true)


def test_convert_says_what_it_could_not_do(h, clip):
    _, notes = mf.convert(mf.espnet_mel(clip), "espnet", h)
    assert any(n.startswith("could not: the source holds nothing below 80 Hz or above 7600 Hz") for n in notes)
    assert any("layout: (T, M)" in n for n in notes)
    _, notes = mf.convert(mf.coqui_mel(clip), "auto", h)
    assert notes[0].startswith("format guessed from the values alone (no wav)")
    assert any(n.startswith("could not: the source clipped its values at -4") for n in notes)
    _, notes = mf.convert(mf.librosa_mel(clip), "librosa", h)  # top_db: 80 dB below each clip's maximum
    assert any(n.startswith("could not: the source clipped its values at") for n in notes)


def test_centre_interpolation_beats_dropping_a_frame(h, clip):
    true = mf.hifigan_mel(clip, h)
    centred = mf.tacotron2_mel(clip)
    l1 = {c: np.abs(mf.convert(centred, "tacotron2", h, center=c)[0] - true).mean() for c in ("cubic_log", "drop_last")}
    assert l1["cubic_log"] < 0.5 * l1["drop_last"]


def test_convert_refuses_a_band_count_it_was_not_told(h, clip):
    with pytest.raises(ValueError, match="no axis of 80 bands"):
        mf.convert(mf.librosa_mel(clip), "tacotron2", h)


@needs_ljspeech
def test_the_fmin_fmax_grid_with_another_log_base(h):
    """Each fmin of the grid, paired with each fmax of the grid in turn (fmax up to sr / 2), as
    log10 mels of one clip: the exact fmin and fmax and the log base are found, and no per-band
    normalisation is claimed."""
    audio, _ = load_wav(os.path.join(LJ_WAVS, f"{CLIPS[0]}.wav"))
    clip = audio[slice(*CROP)]
    fmaxs = [f for f in mf.FMAX_GRID if f <= h.sampling_rate / 2]
    for i, fmin in enumerate(mf.FMIN_GRID):
        fmax = fmaxs[i % len(fmaxs)]
        mel = affine_of(mf.hifigan_mel(clip, config("v1", fmin=fmin, fmax=fmax)), 1 / math.log(10), 0.0)
        report = mf.identify(mel, clip, h)
        want = {"log10"} | ({"fmin"} if fmin != 0 else set()) | ({"fmax"} if fmax != 8000 else set())
        assert codes(report) - {"level"} == want, (fmin, fmax)
        assert (report.fit["fmin"], report.fit["fmax"]) == (fmin, fmax)


# auto conversion (identified against the wav) of combinations without a preset: L1 limits over
# the measured LJ001-0001 / LJ001-0004 / synthetic values (per-band, standardised and linear mels
# are fitted exactly: 0 / 0 / 0; fmin 55 with log10: 0.094 / 0.082 / 0.081)
AUTO_L1_LIMIT = {"per_band": 1e-3, "standardized": 1e-3, "linear": 1e-3, "log10_fmin55": 0.11}


@pytest.mark.parametrize("combination", AUTO_L1_LIMIT)
def test_convert_auto_undoes_what_identify_fitted(h, clip, combination):
    make, _, _ = COMBINATIONS[combination]
    true = mf.hifigan_mel(clip, h)
    mel, _ = mf.convert(make(clip, h), "auto", h, audio=clip)
    assert np.abs(mel - true).mean() < AUTO_L1_LIMIT[combination]
