"""datacheck.py and check_data.py: one fixture file per bad case, filelist problems, the CLI, and train.py refusing
bad data (all errors listed) or training on the good files with --skip_bad_files."""

import json
import os
import struct

import numpy as np
import pytest
from conftest import LJ_WAVS, harmonic, needs_ljspeech, tiny_config, write_wav

import check_data
import train
from datacheck import check_dataset, check_filelists, check_wav
from meldataset import make_demo_dataset, read_filelist

H = tiny_config(segment_size=1024)
GOOD = [f"good{i}" for i in range(3)]
# fixture wav -> the (code, severity) pairs the checker must report for it, nothing else
EXPECTED = {
    "missing": {("missing", "error")},
    "empty": {("empty", "error")},
    "header_only": {("empty", "error")},
    "not_audio": {("not_audio", "error")},
    "truncated": {("truncated", "warning")},
    "rate16k": {("sampling_rate", "error")},
    "stereo": {("channels", "error")},
    "pcm_u8": {("encoding", "warning")},
    "pcm_24": {("encoding", "warning")},
    "float": {("encoding", "warning")},
    "nan": {("encoding", "warning"), ("nonfinite", "error")},
    "silent": {("silent", "warning")},
    "near_silent": {("silent", "warning")},
    "short": {("short", "warning")},
    "clipped": {("clipped", "warning")},
    "streamed": set(),  # data size 0xFFFFFFFF (a streaming writer): readable, not truncated
    "loud_peak": set(),  # peak-normalized to full scale: touches it, is not clipped
}
ERRORS = sorted(name for name, found in EXPECTED.items() if any(s == "error" for _, s in found))


def build_fixture(folder) -> str:
    """One wav per case of EXPECTED (plus GOOD ones) in `folder/wavs`; returns that folder."""
    wavs = folder / "wavs"
    wavs.mkdir(parents=True)
    x = harmonic(0.5, seed=1)
    for i, name in enumerate(GOOD):
        write_wav(wavs / f"{name}.wav", harmonic(0.5, f0=110 + 20 * i, seed=i))
    (wavs / "empty.wav").write_bytes(b"")
    write_wav(wavs / "header_only.wav", x[:0])
    (wavs / "not_audio.wav").write_text("id|text, not audio\n" * 20)
    full = (wavs / "good0.wav").read_bytes()
    (wavs / "truncated.wav").write_bytes(full[: len(full) // 2 + 1])  # cut mid-sample, as a broken copy
    streamed = bytearray(full)
    data = streamed.find(b"data")
    streamed[data + 4 : data + 8] = struct.pack("<I", 0xFFFFFFFF)
    (wavs / "streamed.wav").write_bytes(bytes(streamed))
    write_wav(wavs / "rate16k.wav", x, sr=16000)
    write_wav(wavs / "stereo.wav", np.stack([x, x], 1))
    write_wav(wavs / "pcm_u8.wav", x, subtype="PCM_U8")
    write_wav(wavs / "pcm_24.wav", x, subtype="PCM_24")
    write_wav(wavs / "float.wav", x, subtype="FLOAT")
    nan = x.copy()
    nan[1000:1003] = np.nan
    nan[2000] = np.inf
    write_wav(wavs / "nan.wav", nan, subtype="FLOAT")
    write_wav(wavs / "silent.wav", np.zeros_like(x))
    write_wav(wavs / "near_silent.wav", np.round(x * 4) / 32768)  # +-2 LSB: -84 dBFS
    write_wav(wavs / "short.wav", x[:800])  # segment_size is 1024
    write_wav(wavs / "clipped.wav", np.clip(3 * x, -1, 1))
    write_wav(wavs / "loud_peak.wav", x / np.abs(x).max())
    return str(wavs)


@pytest.fixture(scope="module")
def fixture_wavs(tmp_path_factory):
    return build_fixture(tmp_path_factory.mktemp("check_data"))


def found(problems) -> set:
    return {(p.code, p.severity) for p in problems}


@pytest.mark.parametrize("name", sorted(EXPECTED) + GOOD)
def test_each_bad_file_has_exactly_its_problems(fixture_wavs, name):
    path = os.path.join(fixture_wavs, f"{name}.wav")
    problems = check_wav(path, H)
    assert found(problems) == EXPECTED.get(name, set()), problems
    for p in problems:  # one line that names the file and says what to do
        assert p.path == path and p.message.startswith(path) and "\n" not in p.message and "; " in p.message


def test_problem_details(fixture_wavs):
    def message(name, code, **kw):
        (p,) = [p for p in check_wav(os.path.join(fixture_wavs, f"{name}.wav"), H, **kw) if p.code == code]
        return p.message

    assert "header declares 11025 samples (0.50 s) but the file holds 5502 (0.25 s)" in message(
        "truncated", "truncated"
    )
    assert "sampling rate 16000 Hz, the config expects 22050 Hz" in message("rate16k", "sampling_rate")
    assert "4 NaN/inf samples" in message("nan", "nonfinite")
    assert "near-silent (peak -84 dBFS)" in message("near_silent", "silent")
    assert "8-bit PCM_U8" in message("pcm_u8", "encoding") and "PCM_24 samples" in message("pcm_24", "encoding")
    clipped = message("clipped", "clipped")
    assert "at full scale (|x| >= 0.999)" in clipped and "%" in clipped
    assert "800 samples, shorter than segment_size 1024" in message("short", "short")
    # a validation clip shorter than n_fft would crash validation: an error there
    (p,) = check_wav(os.path.join(fixture_wavs, "short.wav"), H, validation=True)
    assert (p.code, p.severity) == ("short", "error") and "validation needs at least n_fft = 1024" in p.message


def write_lists(folder, train_lines, val_lines):
    tr, va = folder / "train.txt", folder / "val.txt"
    tr.write_text("".join(line + "\n" for line in train_lines))
    va.write_text("".join(line + "\n" for line in val_lines))
    return str(tr), str(va)


def test_filelist_problems(fixture_wavs, tmp_path):
    train_lines = ["good0|a", "", "good1|b", "|no id", "good2.wav|c", "good0,text without bar", "good1|again", " "]
    tr, va = write_lists(tmp_path, train_lines, ["good2|v", "good0|in training too"])
    problems = check_filelists(tr, va, fixture_wavs, H)
    by_code = {}
    for p in problems:
        by_code.setdefault(p.code, []).append(p)
    assert set(by_code) == {"blank_line", "malformed", "duplicate", "overlap"}, problems
    assert [p.message.split(": ")[0] for p in by_code["malformed"]] == [f"{tr}:4", f"{tr}:5", f"{tr}:6"]
    assert "the id 'good2.wav' ends in a file extension" in by_code["malformed"][1].message
    assert "no '|' separator" in by_code["malformed"][2].message
    assert all(p.severity == "error" for p in by_code["malformed"])
    assert by_code["blank_line"][0].message == f"{tr}: 2 blank line(s) (line 2, 8), skipped; remove them"
    (dup,) = by_code["duplicate"]
    assert dup.severity == "warning" and f"{tr}:7: id good1 repeats line 3" in dup.message
    (overlap,) = by_code["overlap"]
    assert overlap.severity == "warning" and f"{va}:2: id good0 is also in {tr}" in overlap.message


def test_too_few_usable_training_files(fixture_wavs, tmp_path):
    tr, va = write_lists(tmp_path, ["good0|a", "rate16k|b", "missing|c"], ["good1|v"])
    problems = check_filelists(tr, va, fixture_wavs, H, batch_size=2)
    (few,) = [p for p in problems if p.code == "too_few"]
    assert few.severity == "error" and few.path == tr
    assert "1 usable training files (of 3) but a batch of 2 (drop_last would train on nothing)" in few.message
    # two processes: each gets half the batch; 3 files padded to 2 per process are enough
    tr, va = write_lists(tmp_path, ["good0|a", "good1|b", "good2|c"], ["good1|v"])
    assert not [p for p in check_filelists(tr, va, fixture_wavs, H, batch_size=4, world_size=2) if p.code == "too_few"]
    (few,) = [p for p in check_filelists(tr, va, fixture_wavs, H, batch_size=8, world_size=2) if p.code == "too_few"]
    assert "3 training files but a batch of 4 per process" in few.message
    missing = check_filelists(str(tmp_path / "nope.txt"), va, fixture_wavs, H)
    assert [(p.code, p.severity) for p in missing] == [("missing", "error")]


def test_check_dataset_on_filelists_read_once(fixture_wavs, tmp_path):
    """train.py reads each filelist once: the check of those `Filelist`s is check_filelists', and an
    unreadable filelist is one problem of its own, raised again only by `wav_paths`."""
    tr, va = write_lists(tmp_path, ["good0|a", "", "stereo|b", "good1.wav|c"], ["good0|v"])
    training, validation = read_filelist(tr, fixture_wavs), read_filelist(va, fixture_wavs)
    problems = check_dataset(training, validation, H, batch_size=1)
    assert problems == check_filelists(tr, va, fixture_wavs, H, batch_size=1)
    assert [p.code for p in problems] == ["malformed", "blank_line", "overlap", "channels"]
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("good0|caf\xe9\n".encode("latin-1"))
    problems = check_dataset(read_filelist(str(latin1), fixture_wavs), validation, H)
    assert [(p.path, p.code, p.severity) for p in problems] == [(str(latin1), "malformed", "error")]
    assert problems[0].message.startswith(f"{latin1}: not UTF-8 text (invalid continuation byte at byte 9)")


def test_missing_mels_for_fine_tuning(fixture_wavs, tmp_path):
    mels = tmp_path / "mels"
    mels.mkdir()
    np.save(mels / "good0.npy", np.zeros((80, 10), np.float32))
    tr, va = write_lists(tmp_path, ["good0|a", "good1|b"], ["good0|v"])
    problems = [p for p in check_filelists(tr, va, fixture_wavs, H, mels_dir=str(mels)) if p.code == "missing_mel"]
    assert [(p.path, p.severity) for p in problems] == [(os.path.join(fixture_wavs, "good1.wav"), "error")]


def test_fine_tuning_mels_of_another_format(fixture_wavs, tmp_path):
    """A sample of the fine-tuning mels is identified against the wavs: this model's own mels pass
    by default and are refused as --mel_format espnet (with the fix); ESPnet mels the other way
    round. The problem belongs to the mel folder, which --skip_bad_files cannot leave out."""
    import melformats
    from meldataset import load_wav

    tr, va = write_lists(tmp_path, ["good0|a", "good1|b"], ["good2|v"])
    own, espnet = tmp_path / "own", tmp_path / "espnet"
    for folder in (own, espnet):
        folder.mkdir()
    for name in GOOD:
        audio, _ = load_wav(os.path.join(fixture_wavs, f"{name}.wav"))
        np.save(own / f"{name}.npy", melformats.hifigan_mel(audio, H))
        np.save(espnet / f"{name}.npy", melformats.espnet_mel(audio))

    def mel_format_problems(mels, mel_format):
        problems = check_filelists(tr, va, fixture_wavs, H, batch_size=1, mels_dir=str(mels), mel_format=mel_format)
        return [p for p in problems if p.code == "mel_format"]

    assert mel_format_problems(own, "hifigan") == [] and mel_format_problems(espnet, "espnet") == []
    problems = mel_format_problems(own, "espnet")
    assert len(problems) == 3 and {p.path for p in problems} == {str(own)}
    assert (
        "not --mel_format espnet: nothing differs from this model's frontend; they are this model's own format"
        in problems[0].message
    )
    (first, *_) = mel_format_problems(espnet, "hifigan")
    assert first.severity == "error" and "[log10]" in first.message and "pass --mel_format espnet" in first.message
    (problem,) = [
        p for p in check_filelists(tr, va, fixture_wavs, H, batch_size=1, mel_format="coqui") if p.code == "mel_format"
    ]
    assert "--mel_format coqui is for fine-tuning mels" in problem.message


def test_cli_lists_every_problem_and_exits_1(fixture_wavs, tmp_path, capsys):
    names = sorted(EXPECTED) + GOOD
    tr, va = write_lists(tmp_path, [f"{n}|x" for n in names], ["good0|v"])
    config = tmp_path / "c.json"
    config.write_text(json.dumps(dict(H)))
    argv = ["--config", str(config), "--input_training_file", tr, "--input_validation_file", va]
    with pytest.raises(SystemExit) as e:
        check_data.main([*argv, "--input_wavs_dir", fixture_wavs])
    out = capsys.readouterr().out.splitlines()
    n_problems = sum(len(v) for v in EXPECTED.values()) + 1  # + good0 in both lists
    assert e.value.code == 1 and len(out) == n_problems + 1
    assert sum(line.startswith("error [") for line in out) == 7
    assert out[-1].startswith(f"{tr}, {va}: 7 error(s), {n_problems - 7} warning(s) (channels, clipped, empty")
    tr, va = write_lists(tmp_path, [f"{n}|x" for n in GOOD[:2]], ["good2|v"])
    with pytest.raises(SystemExit) as e:
        check_data.main([*argv, "--input_wavs_dir", fixture_wavs])
    assert e.value.code == 0 and capsys.readouterr().out.strip().endswith("no problems")


def test_demo_data_passes(tmp_path):
    wavs, tr, va = make_demo_dataset(str(tmp_path / "demo"), n_train=4, n_val=1)
    assert check_filelists(tr, va, wavs, tiny_config(batch_size=4)) == []


@needs_ljspeech
def test_real_speech_passes(tmp_path):
    ids = sorted(os.path.splitext(n)[0] for n in os.listdir(LJ_WAVS))
    tr, va = write_lists(tmp_path, [f"{i}|t" for i in ids[3:]], [f"{i}|t" for i in ids[:3]])
    assert check_filelists(tr, va, LJ_WAVS, tiny_config(segment_size=8192)) == []


def train_argv(tmp_path, fixture_wavs, names, *extra):
    tr, va = write_lists(tmp_path, [f"{n}|x" for n in names], ["good2|v", "short|v"])
    config = tmp_path / "c.json"
    config.write_text(json.dumps(dict(H)))
    return [
        "--config", str(config), "--input_wavs_dir", fixture_wavs, "--input_training_file", tr,
        "--input_validation_file", va, "--checkpoint_path", str(tmp_path / "cp"), "--training_steps", "1",
        "--device", "cpu", "--stdout_interval", "1", *extra,
    ]  # fmt: skip


def test_training_refuses_bad_data_listing_all_errors(fixture_wavs, tmp_path, capsys, one_thread):
    names = GOOD[:2] + ERRORS + ["clipped", "silent"]
    with pytest.raises(SystemExit) as e:
        train.main(train_argv(tmp_path, fixture_wavs, names))
    captured = capsys.readouterr()
    assert e.value.code == 2
    error_lines = [line for line in captured.err.splitlines() if line.startswith("error [")]
    listed = {line.split("] ")[1].split(":")[0] for line in error_lines}
    assert listed == {os.path.join(fixture_wavs, f"{n}.wav") for n in ERRORS + ["short"]}  # short: validation
    assert "warning [clipped]" in captured.out and "warning [silent]" in captured.out
    assert captured.err.splitlines()[-1] == (
        "error: 8 data error(s), listed above; fix them, or pass --skip_bad_files to train on the other files"
    )
    assert not os.path.exists(tmp_path / "cp")  # refused before creating anything


def test_skip_bad_files_trains_on_the_good_ones(fixture_wavs, tmp_path, capsys, one_thread):
    names = GOOD[:2] + ERRORS + ["silent"]
    train.main(train_argv(tmp_path, fixture_wavs, names, "--skip_bad_files"))
    out = capsys.readouterr().out
    assert "--skip_bad_files: training on 3 of 10 training files and validating on 1 of 2" in out
    assert "Steps : 0," in out
    assert sorted(os.listdir(tmp_path / "cp")) == ["config.json", "do_00000000", "g_00000000", "logs"]
    # an error that leaving files out cannot fix still stops the run
    with pytest.raises(SystemExit):
        train.main(train_argv(tmp_path, fixture_wavs, ["good0", "missing", "stereo"], "--skip_bad_files"))
    assert "1 usable training files (of 3) but a batch of 2" in capsys.readouterr().err


def test_every_process_gets_the_same_filtered_lists(fixture_wavs, tmp_path, capsys):
    """Under torchrun each rank runs the check itself: same lists everywhere, rank 0 alone prints."""
    argv = train_argv(tmp_path, fixture_wavs, GOOD + ERRORS, "--skip_bad_files")
    rank0, rank1 = train.parse_args(argv), train.parse_args(argv)
    train.check_training_data(rank0, H, world_size=2, is_master=True)
    printed = capsys.readouterr()
    train.check_training_data(rank1, H, world_size=2, is_master=False)
    assert capsys.readouterr().out == "" and printed.out.count("--skip_bad_files: training on 3 of 10") == 1
    assert rank0.training_files == rank1.training_files == [os.path.join(fixture_wavs, f"{n}.wav") for n in GOOD]
    assert rank0.validation_files == rank1.validation_files == [os.path.join(fixture_wavs, "good2.wav")]
