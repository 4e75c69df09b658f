"""synthesis.py, synthesis_files.py and inference.py / inference_e2e.py: output length and
clipping, mel layouts, bad files among good ones, resampling and mixdown, batched == unbatched, chunked and streaming == one-shot, and one-line
errors for the usual mistakes (do_ file, another config, missing config.json, wrong band count)."""

import json
import os
import threading

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import FIXTURES, VERSIONS, config, harmonic, needs_fixtures, save_generator, tiny_config, write_wav

import inference
import inference_e2e
import synthesis_files
from meldataset import LOG_SILENCE, MelError, mel_from_config, mel_layout, to_pcm16
from models import Generator
from synthesis import (
    REPO,
    generate_chunked,
    generate_stream,
    load_generator,
    receptive_field_frames,
    vocode,
    vocode_batch,
    wav_to_mel,
)
from utils import ConfigError

HOP = 256


pytestmark = pytest.mark.usefixtures("one_thread")


def _real_shapes(version: str):
    """The real config's kernels, dilations and rates (what the receptive field depends on)
    with fewer channels, so that the test runs in a fraction of a second."""
    return config(version, upsample_initial_channel=32)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(checkpoint path, generator, h) of a tiny V1-style generator."""
    path = save_generator(tmp_path_factory.mktemp("ckpt"), tiny_config("v1"))
    generator, h = load_generator(path)
    return path, generator, h


def _mel(frames: int, seed: int = 0) -> torch.Tensor:
    """A plausible (80, frames) log-mel (values around -5, within the frontend's range)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(80, frames, generator=g) - 5).clamp(min=LOG_SILENCE)


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


# ---------------------------------------------------------------------------------------------
# Output: length, clipping, layouts
# ---------------------------------------------------------------------------------------------


def test_load_generator_is_eval_without_weight_norm(tiny):
    _, generator, h = tiny
    assert not generator.training
    keys = generator.state_dict().keys()
    assert not any(k.endswith(("weight_g", "weight_v")) for k in keys)
    assert h.upsample_initial_channel == 32


def test_output_length_is_frames_times_hop(tiny):
    _, generator, h = tiny
    for frames in (1, 7, 33):
        audio = vocode(generator, h, _mel(frames))
        assert audio.dtype == np.float32 and audio.shape == (frames * HOP,)


def test_pcm16_clips_instead_of_wrapping():
    x = np.array([1.0, -1.0, 1.5, -1.5, 0.5, 0.999999, -0.5])
    out = to_pcm16(x)
    assert out.dtype == np.int16
    assert out.tolist() == [32767, -32768, 32767, -32768, 16384, 32767, -16384]


def test_three_mel_layouts_give_the_same_audio(tiny, capsys):
    _, generator, h = tiny
    mel = _mel(20)
    ref = vocode(generator, h, mel_layout(mel, 80, "a"))
    capsys.readouterr()
    for layout in (mel.numpy(), mel[None].numpy(), mel.T.numpy()):
        out = vocode(generator, h, mel_layout(layout, 80, "m.npy"))
        np.testing.assert_array_equal(out, ref)
    err = capsys.readouterr().err.splitlines()
    assert err == ["note: m.npy: mel of shape (20, 80) read as (T, num_mels) and transposed"]


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.zeros((2, 80, 10), np.float32), r"shape \(2, 80, 10\); expected \(80, T\)"),
        (np.zeros((80,), np.float32), r"shape \(80,\); expected"),
        (np.zeros((100, 30), np.float32), r"no axis of 80 bands"),
        (np.full((80, 5), np.nan, np.float32), "NaN or inf"),
        (np.full((80, 5), np.inf, np.float32), "NaN or inf"),
        (np.zeros((80, 0), np.float32), "0 frames"),
    ],
)
def test_bad_mels_raise_one_line(array, match):
    with pytest.raises(MelError, match=match) as e:
        mel_layout(array, 80, "bad.npy")
    assert str(e.value).startswith("bad.npy: ") and "\n" not in str(e.value)


def test_mel_in_another_scale_gets_a_notice(capsys):
    mel_layout(np.full((80, 4), -100.0, np.float32), 80, "db.npy")
    assert "natural-log mels" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Command line: files, bad files, wav formats
# ---------------------------------------------------------------------------------------------


def test_e2e_bad_mel_among_good_ones(tiny, tmp_path, capsys):
    path, generator, h = tiny
    mels = tmp_path / "mels"
    mels.mkdir()
    good = {"a": _mel(30, 1), "b": _mel(12, 2).T, "c": _mel(41, 3)[None]}
    for name, m in good.items():
        np.save(mels / f"{name}.npy", m.numpy())
    np.save(mels / "nan.npy", np.full((80, 10), np.nan, np.float32))
    np.save(mels / "bands.npy", np.zeros((64, 10), np.float32))
    (mels / "junk.npy").write_bytes(b"not numpy")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as e:
        inference_e2e.main(["--checkpoint_file", path, "--input_mels_dir", str(mels), "--output_dir", str(out)])
    assert e.value.code == 1
    cap = capsys.readouterr()
    assert sorted(os.listdir(out)) == ["a_generated_e2e.wav", "b_generated_e2e.wav", "c_generated_e2e.wav"]
    errors = _error_lines(cap.err)
    assert len(errors) == 3 and "Traceback" not in cap.err
    assert any("nan.npy: mel holds NaN" in x for x in errors)
    assert any("bands.npy: mel of shape (64, 10)" in x for x in errors)
    assert any("junk.npy: not a readable .npy" in x for x in errors)
    assert cap.out.strip().startswith("3 files,") and "3 failed" in cap.out
    for name, m in good.items():
        audio, sr = sf.read(out / f"{name}_generated_e2e.wav", dtype="int16")
        mel = mel_layout(m, 80, name)
        assert sr == 22050 and audio.shape == ({"a": 30, "b": 12, "c": 41}[name] * HOP,)
        expected = to_pcm16(vocode(generator, h, mel))
        np.testing.assert_array_equal(audio, expected)


def test_e2e_mel_format_converts_on_the_fly(tiny, tmp_path, capsys):
    """ESPnet mels ((T + 1, 80), log10, 80-7600 Hz, centre-padded) of a 1 s clip: with --mel_format
    espnet the wav has (n // hop) * hop samples and equals vocoding melformats.convert's mel;
    read as this model's own format it has a frame (a hop) too many."""
    import melformats

    path, generator, h = tiny
    y = harmonic(1.0)
    mels = tmp_path / "mels"
    mels.mkdir()
    espnet = melformats.espnet_mel(y)
    assert espnet.shape == (y.size // HOP + 1, 80)
    np.save(mels / "a.npy", espnet)
    for mel_format, frames in (("espnet", y.size // HOP), ("hifigan", y.size // HOP + 1)):
        out = tmp_path / mel_format
        argv = ["--checkpoint_file", path, "--input_mels_dir", str(mels), "--output_dir", str(out)]
        inference_e2e.main(argv + ["--mel_format", mel_format])
        audio, _ = sf.read(out / "a_generated_e2e.wav", dtype="int16")
        assert audio.shape == (frames * HOP,)
    err = capsys.readouterr().err
    assert "a.npy: converted from espnet: layout: (T, M) -> (M, T)" in err
    converted, _ = melformats.convert(espnet, "espnet", h)
    audio, _ = sf.read(tmp_path / "espnet" / "a_generated_e2e.wav", dtype="int16")
    np.testing.assert_array_equal(audio, to_pcm16(vocode(generator, h, torch.from_numpy(converted))))


def test_wav_44k_stereo_through_inference_main(tiny, tmp_path, capsys):
    path, generator, h = tiny
    wavs = tmp_path / "wavs"
    wavs.mkdir()
    left, right = harmonic(0.8, 44100, f0=120), harmonic(0.8, 44100, f0=180, seed=1)
    write_wav(wavs / "st.wav", np.stack([left, right], axis=1), 44100)
    write_wav(wavs / "mono.flac", harmonic(0.5, 22050), 22050)
    (wavs / "notes.txt").write_text("not audio, ignored")
    write_wav(wavs / "tiny.wav", harmonic(0.01, 22050), 22050)  # 220 samples: no mel frame
    out = tmp_path / "gen"
    with pytest.raises(SystemExit) as e:
        inference.main(["--checkpoint_file", path, "--input_wavs_dir", str(wavs), "--output_dir", str(out)])
    cap = capsys.readouterr()
    assert e.value.code == 1
    assert _error_lines(cap.err) == [
        f"error: {wavs / 'tiny.wav'}: 220 samples, too short for one mel frame; use at least 385"
    ]
    assert "st.wav: 2 channels mixed down to mono" in cap.err
    assert "st.wav: 44100 Hz resampled to 22050 Hz" in cap.err
    assert sorted(os.listdir(out)) == ["mono_generated.wav", "st_generated.wav"]
    audio, sr = sf.read(out / "st_generated.wav", dtype="int16")
    assert sr == 22050 and audio.shape == ((22050 * 8 // 10) // HOP * HOP,)
    mel = wav_to_mel(str(wavs / "st.wav"), h, on_notice=lambda m: None)
    assert mel.shape == (80, 22050 * 8 // 10 // HOP)
    np.testing.assert_array_equal(audio, to_pcm16(vocode(generator, h, mel)))
    # copy-synthesis mel: the training frontend on the un-normalized mono audio
    mono, _ = sf.read(wavs / "mono.flac", dtype="float32")
    ref = mel_from_config(torch.from_numpy(mono)[None], h)[0]
    torch.testing.assert_close(wav_to_mel(str(wavs / "mono.flac"), h), ref)
    assert cap.out.strip().splitlines()[-1].startswith("2 files, 1.3 s of audio in")
    assert cap.out.strip().endswith("1 failed (see the error lines above)")


def test_batched_cli_equals_unbatched(tiny, tmp_path, capsys):
    path, _, _ = tiny
    mels = tmp_path / "mels"
    mels.mkdir()
    for i, frames in enumerate((9, 25, 17, 40, 3)):
        np.save(mels / f"m{i}.npy", _mel(frames, i).numpy())
    outs = {}
    for b in (1, 3):
        out = tmp_path / f"out{b}"
        inference_e2e.main(
            ["--checkpoint_file", path, "--input_mels_dir", str(mels), "--output_dir", str(out), "--batch_size", str(b)]
        )
        outs[b] = {n: sf.read(out / n, dtype="int16")[0] for n in sorted(os.listdir(out))}
    assert len(outs[1]) == 5 and outs[1].keys() == outs[3].keys()
    for n in outs[1]:
        assert np.abs(outs[1][n].astype(int) - outs[3][n]).max() <= 1  # float diffs < 1e-5 -> at most 1 LSB
    capsys.readouterr()


# ---------------------------------------------------------------------------------------------
# Batched, chunked, streaming == one-shot
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_batched_equals_unbatched(version):
    h = tiny_config(version)
    torch.manual_seed(0)
    generator = Generator(h).eval()
    generator.remove_weight_norm()
    mels = [_mel(n, i)[None] for i, n in enumerate((23, 8, 31, 1))]
    batched = vocode_batch(generator, h, mels)
    for m, out in zip(mels, batched):
        ref = vocode(generator, h, m)
        assert out.shape == ref.shape == (m.shape[-1] * HOP,)
        assert np.abs(out - ref).max() < 1e-5


@pytest.mark.parametrize("version", VERSIONS)
def test_receptive_field_covers_the_real_reach(version):
    """Perturb one mel frame: no output sample further than receptive_field_frames moves."""
    h = _real_shapes(version)
    torch.manual_seed(0)
    generator = Generator(h).eval()
    generator.remove_weight_norm()
    rf = receptive_field_frames(h)
    mel, at = _mel(2 * rf + 12), rf + 6
    moved = mel.clone()
    moved[:, at] += 3.0
    with torch.inference_mode():
        diff = (generator(moved[None]) - generator(mel[None]))[0, 0].abs()
    changed = torch.nonzero(diff > 0).flatten()
    first, last = changed.min().item() // HOP, changed.max().item() // HOP
    assert at - first <= rf and last - at <= rf
    assert at - first >= rf - 3  # the bound is tight: within a few frames of the real reach


@pytest.mark.parametrize("version", VERSIONS)
def test_chunked_equals_one_shot_real_configs(version):
    h = _real_shapes(version)
    torch.manual_seed(0)
    generator = Generator(h).eval()
    generator.remove_weight_norm()
    mel = _mel(200)
    ref = vocode(generator, h, mel, chunk_frames=None)
    out = generate_chunked(generator, h, mel, chunk_frames=32)  # several chunks, each 32 + 2 x context
    assert out.shape == ref.shape == (mel.shape[-1] * HOP,)
    assert np.abs(out - ref).max() < 1e-4


def test_vocode_chunks_long_mels_and_matches_one_shot(tiny):
    _, generator, h = tiny
    mel = _mel(530)
    ref = vocode(generator, h, mel, chunk_frames=None)
    out = vocode(generator, h, mel, chunk_frames=64)
    assert out.shape == (530 * HOP,) and np.abs(out - ref).max() < 1e-4


def test_generate_stream_on_irregular_chunks(tiny):
    _, generator, h = tiny
    mel = _mel(100, 4)
    ref = vocode(generator, h, mel, chunk_frames=None)
    cuts = [0, 1, 2, 5, 5, 40, 41, 80, 100]  # includes an empty and a one-frame chunk
    chunks = [mel[:, a:b] for a, b in zip(cuts, cuts[1:])]
    for cap in (None, 16):
        pieces = list(generate_stream(generator, h, iter(chunks), chunk_frames=cap))
        out = np.concatenate(pieces)
        assert out.shape == ref.shape and np.abs(out - ref).max() < 1e-4
        if cap:
            assert max(p.size for p in pieces) <= cap * HOP  # chunk_frames caps each generator call


def test_stream_yields_audio_before_the_input_ends(tiny):
    """Audio for a frame comes out once `receptive_field_frames` later frames have arrived."""
    _, generator, h = tiny
    rf = receptive_field_frames(h)
    mel = _mel(3 * rf, 5)
    fed = []

    def source():
        for i in range(mel.shape[-1]):
            fed.append(i)
            yield mel[:, i : i + 1]

    stream = generate_stream(generator, h, source())
    first = next(stream)
    assert len(fed) == rf + 1 and first.shape == (HOP,)


@needs_fixtures
def test_original_format_checkpoint_through_load_generator(tmp_path):
    """The authors' g_ format (weight_g/weight_v) -> same output as their code."""
    ckpt = os.path.join(FIXTURES, "g_v2_original_format.pt")
    generator, h = load_generator(ckpt, os.path.join(REPO, "config_v2.json"))
    mel = np.load(os.path.join(FIXTURES, "mel_LJ001-0002.npy"))
    expected = np.load(os.path.join(FIXTURES, "expected_v2_LJ001-0002.npy"))[0, 0]
    out = vocode(generator, h, mel)
    assert out.shape == expected.shape and np.abs(out - expected).max() < 1e-5


# ---------------------------------------------------------------------------------------------
# Robustness: one line, non-zero exit, no traceback (unless --debug)
# ---------------------------------------------------------------------------------------------


def _run_e2e(argv, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as e:
        inference_e2e.main(argv)
    return e.value.code, capsys.readouterr().err


@pytest.fixture
def mel_dir(tmp_path):
    d = tmp_path / "mels"
    d.mkdir()
    np.save(d / "x.npy", _mel(10).numpy())
    return str(d)


def test_do_checkpoint_passed_as_generator(tmp_path, mel_dir, capsys):
    path = tmp_path / "do_00000010"
    torch.save({"mpd": {}, "msd": {}, "optim_g": {}, "optim_d": {}, "steps": 10, "epoch": 0}, path)
    (tmp_path / "config.json").write_text(json.dumps(tiny_config("v1")))
    code, err = _run_e2e(["--checkpoint_file", str(path), "--input_mels_dir", mel_dir], capsys)
    assert code == 2 and "Traceback" not in err
    assert err.strip() == (
        f"error: {path}: this is a discriminator/optimizer checkpoint (do_XXXXXXXX), not a generator; "
        "pass the g_XXXXXXXX file of the same step as --checkpoint_file"
    )


def test_checkpoint_from_another_config_names_the_right_one(tmp_path, mel_dir, capsys):
    path = save_generator(tmp_path / "v2", config("v2"))
    code, err = _run_e2e(
        [
            "--checkpoint_file",
            path,
            "--config",
            os.path.join(REPO, "config_v1.json"),
            "--input_mels_dir",
            mel_dir,
        ],
        capsys,
    )
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "trained with another config (checkpoint has upsample_initial_channel 128" in err
    assert err.strip().endswith("pass --config config_v2.json")


def test_missing_config_json(tmp_path, mel_dir, capsys):
    path = save_generator(tmp_path / "ck", tiny_config("v1"))
    os.remove(tmp_path / "ck" / "config.json")
    code, err = _run_e2e(["--checkpoint_file", path, "--input_mels_dir", mel_dir], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "no config.json beside the checkpoint" in err and "pass --config" in err


def test_truncated_checkpoint(tmp_path, mel_dir, capsys):
    path = save_generator(tmp_path / "ck", tiny_config("v1"))
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    code, err = _run_e2e(["--checkpoint_file", path, "--input_mels_dir", mel_dir], capsys)
    assert code == 2 and "cannot be read as a checkpoint" in err and "Traceback" not in err


def test_wrong_number_of_mel_bands(tiny, tmp_path, capsys):
    path, _, _ = tiny
    d = tmp_path / "mels"
    d.mkdir()
    np.save(d / "m100.npy", np.zeros((100, 20), np.float32) - 5)
    code, err = _run_e2e(["--checkpoint_file", path, "--input_mels_dir", str(d), "--output_dir", str(tmp_path)], capsys)
    assert code == 1 and _error_lines(err) == [
        f"error: {d / 'm100.npy'}: mel of shape (100, 20) has no axis of 80 bands, the generator's num_mels; "
        "make mels with the checkpoint's config (num_mels 80), shaped (80, T), (1, 80, T) or (T, 80)"
    ]


def test_debug_shows_the_traceback(tmp_path, mel_dir):
    path = save_generator(tmp_path / "ck", tiny_config("v1"))
    os.remove(tmp_path / "ck" / "config.json")
    with pytest.raises(ConfigError, match="no config.json"):
        inference_e2e.main(["--checkpoint_file", path, "--input_mels_dir", mel_dir, "--debug"])


def test_missing_input_folder(tiny, tmp_path, capsys):
    path, _, _ = tiny
    with pytest.raises(SystemExit) as e:
        inference.main(["--checkpoint_file", path, "--input_wavs_dir", str(tmp_path / "nope")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "input folder not found; pass --input_wavs_dir" in err


def test_workers_write_the_same_files(tiny, tmp_path, capsys, monkeypatch):
    """--workers 2: batches run in two worker threads with 1 torch thread each (the process's
    thread count restored after); same outputs, errors still reported."""
    path, _, _ = tiny
    seen = []  # (thread name, torch threads) of every vocode_batch call

    def recording_vocode_batch(*args, **kwargs):
        seen.append((threading.current_thread().name, torch.get_num_threads()))
        return vocode_batch(*args, **kwargs)

    monkeypatch.setattr(synthesis_files, "vocode_batch", recording_vocode_batch)
    threads_before = torch.get_num_threads()
    mels = tmp_path / "mels"
    mels.mkdir()
    for i, frames in enumerate((9, 25, 17, 40)):
        np.save(mels / f"m{i}.npy", _mel(frames, i).numpy())
    np.save(mels / "bad.npy", np.zeros((80, 3, 2), np.float32))
    outs = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        argv = ["--checkpoint_file", path, "--input_mels_dir", str(mels), "--output_dir", str(out)]
        code, err = _run_e2e([*argv, "--batch_size", "2", "--workers", str(workers)], capsys)
        assert code == 1 and len(_error_lines(err)) == 1 and "bad.npy: mel of shape (80, 3, 2)" in err
        outs[workers] = {n: sf.read(out / n, dtype="int16")[0] for n in sorted(os.listdir(out))}
        assert torch.get_num_threads() == threads_before
        in_workers = [name.startswith("vocode") for name, _ in seen]
        assert all(in_workers) if workers == 2 else not any(in_workers), seen
        if workers == 2:
            assert {n for _, n in seen} == {max(1, threads_before // 2)}
        seen.clear()
    assert list(outs[2]) == [f"m{i}_generated_e2e.wav" for i in range(4)]
    for n in outs[1]:
        np.testing.assert_array_equal(outs[1][n], outs[2][n])


class _RecordingGenerator(torch.nn.Module):
    """Stands in for a generator: records the frames of every call, returns hop_size zeros each."""

    def __init__(self, hop: int):
        super().__init__()
        self.hop, self.calls = hop, []
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x, lengths=None):
        self.calls.append(x.shape[-1])
        return torch.zeros(x.shape[0], 1, x.shape[-1] * self.hop)


def test_ten_minute_mel_runs_in_bounded_pieces():
    """A 10-minute mel: no generator call sees more than chunk_frames + 2 x receptive field."""
    h = tiny_config("v1")
    frames = 10 * 60 * 22050 // HOP
    stub = _RecordingGenerator(HOP)
    out = vocode(stub, h, torch.zeros(80, frames), chunk_frames=1024)
    rf = receptive_field_frames(h)
    assert out.shape == (frames * HOP,)
    assert max(stub.calls) <= 1024 + 2 * rf and len(stub.calls) == -(-frames // 1024)


def test_auto_workers_only_pays_off_with_enough_audio(tmp_path):
    h = tiny_config("v1")
    short = [str(tmp_path / f"s{i}.npy") for i in range(4)]
    long = [str(tmp_path / f"l{i}.npy") for i in range(4)]
    for p in short:
        np.save(p, np.zeros((80, 100), np.float32))  # 1.2 s each
    for p in long:
        np.save(p, np.zeros((80, 2000), np.float32))  # 23 s each
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert synthesis_files.auto_workers(short, "mel", h, 1, "cpu") == 1  # 5 s of audio in all
        assert synthesis_files.auto_workers(long, "mel", h, 1, "cpu") == 2
        assert synthesis_files.auto_workers(long, "mel", h, 4, "cpu") == 1  # one batch
        assert synthesis_files.auto_workers(long, "mel", h, 1, "cuda") == 1
    finally:
        torch.set_num_threads(before)
