"""benchmarks/bench_inference.py: Table 1 of all six vocoders (published configs, tiny clips with
--smoke), the quality columns from evaluate.py, WaveNet batches, and the folder mode."""

import importlib.util
import os
import sys

import numpy as np
import pytest
from conftest import REPO, harmonic, save_generator, tiny_config, write_wav

sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import bench_inference  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

HEADER = bench_inference.HEADER


def cells_of(out: str, label: str) -> list[str]:
    row = next(line for line in out.splitlines() if line.startswith(f"| {label} |"))
    return [c.strip() for c in row.strip("|").split("|")]


def test_params_are_truncated_as_the_paper():
    assert bench_inference.params_m(13_926_017) == "13.92"  # V1: rounding would print 13.93
    assert bench_inference.params_m(24_699_999) == "24.69"
    assert bench_inference.params_m(87_731_816) == "87.73"
    assert bench_inference.params_m(9_999) == "0.00"
    assert bench_inference.params_m(1_000_000) == "1.00"


def test_speeds_print_without_exponents():
    assert bench_inference.realtime(0.07, 22050) == "0.0032x"  # the paper's WaveNet on a V100
    assert bench_inference.realtime(0.0014, 22050) == "0.000063x"
    assert bench_inference.realtime(31.74, 22050) == "1.44x"
    assert bench_inference.paper_khz(16863.0, 22050) == "16,863 (764.76x)"
    assert bench_inference.paper_khz(None, 22050) == "–"


def test_cpu_name_from_cpuinfo():
    text = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz\n"
    assert bench_inference.cpu_name(text + text) == "Intel Xeon Platinum 8375C CPU @ 2.90GHz"
    assert (
        bench_inference.cpu_name("model name : AMD EPYC(TM)  7B13 64-Core Processor\n")
        == "AMD EPYC 7B13 64-Core Processor"
    )
    assert bench_inference.cpu_name("") != ""  # no cpuinfo: platform's name, never empty


def test_smoke_table_has_all_six_rows_and_the_wavenet_batches(capsys):
    bench_inference.main(["--smoke", "--cpu_only", "--threads", "1", "--wavenet_batches", "1", "2"])
    out = capsys.readouterr().out
    assert HEADER in out and HEADER.startswith("| model | params (M) | device | precision | batch | kHz")
    lines = out.splitlines()
    separator = lines[lines.index(HEADER) + 1]
    assert separator.count("---") == HEADER.count("|") - 1 == 13  # a markdown table: one per column
    # published configs, weight norm removed, truncated: the paper's counts, except WaveNet whose
    # 24.73 M counted the weight norm (24,737,396 with it, 24,693,586 without)
    expected = {
        "HiFi-GAN V1": "13.92",
        "HiFi-GAN V2": "0.92",
        "HiFi-GAN V3": "1.46",
        "MelGAN": "4.26",
        "WaveGlow": "87.73",
        "WaveNet (MoL)": "24.69",
    }
    rows = [line.split("|")[1].strip() for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[1:7] == list(expected)  # the header, then the six rows in --versions order
    for label, params in expected.items():
        cells = cells_of(out, label)
        assert cells[1] == params
        assert cells[2] == f"{bench_inference.cpu_name()}, 1 thread" and cells[3:5] == ["fp32", "1"]
        khz, x = float(cells[5].split()[0]), float(cells[6].rstrip("x"))
        assert khz > 0 and abs(x - khz / 22.05) < 0.01 * x + 0.01
        assert cells[7:9] == ["", ""]  # no --checkpoint: quality columns blank
    assert cells_of(out, "WaveNet (MoL)")[5].endswith(", 256 samples, extrapolated")
    assert "timed on 256 samples (1 mel frame) and extrapolated" in out
    # paper columns: its figures with their multiple of real time at 22.05 kHz; the abstract's
    # "167.9 times faster than real-time on a single V100" (V1) and "13.4 times ... on CPU" (V3)
    v1, v3, wavenet = cells_of(out, "HiFi-GAN V1"), cells_of(out, "HiFi-GAN V3"), cells_of(out, "WaveNet (MoL)")
    assert v1[9:] == ["4.36", "13.92", "31.74 (1.44x)", "3,701.29 (167.86x)"]
    assert v3[11] == "296.38 (13.44x)"
    assert wavenet[9:] == ["4.02", "24.73", "–", "0.07 (0.0032x)"]
    assert cells_of(out, "WaveGlow")[11:] == ["4.72 (0.21x)", "501 (22.72x)"]
    assert "ground truth MOS 4.45" in out and "different hardware" in out
    # WaveNet batches: samples/s over the batch = batch * 256 / wall
    for b in (1, 2):
        cells = cells_of(out, str(b))
        assert cells[1] == "1"
        wall, rate = float(cells[2].split()[0]), float(cells[3])
        assert rate > 0 and abs(rate - b * 256 / wall) <= 0.02 * rate + 1


def test_quality_columns_are_the_evaluate_means_of_the_checkpoint(tmp_path, capsys):
    from meldataset import load_audio
    from metrics import compute_metrics
    from synthesis import load_generator, vocode, wav_to_mel

    cp = save_generator(tmp_path / "cp", tiny_config("v2"), name="g_00000001")
    ref = tmp_path / "ref"
    ref.mkdir()
    refs = [write_wav(ref / "a.wav", harmonic(0.6)), write_wav(ref / "b.wav", harmonic(0.4, f0=210.0, seed=1))]
    bench_inference.main(
        ["--versions", "v2", "--smoke", "--cpu_only", "--checkpoint", f"v2={cp}", "--reference_dir", str(ref)]
    )
    out = capsys.readouterr().out
    cells = cells_of(out, "HiFi-GAN V2")
    assert cells[1] == "0.92"  # the speed row is still the published config's
    has_pesq = importlib.util.find_spec("pesq") is not None
    generator, h = load_generator(cp, device="cpu")
    scores = [
        compute_metrics(
            load_audio(p, h.sampling_rate), vocode(generator, h, wav_to_mel(p, h)), h, ["mel_l1"] + ["pesq"] * has_pesq
        )
        for p in refs
    ]
    mel_l1 = np.mean([s["mel_l1"] for s in scores])
    assert mel_l1 > 0.5 and abs(float(cells[7]) - mel_l1) < 1e-4  # an untrained generator is far off
    if has_pesq:
        assert abs(float(cells[8]) - np.nanmean([s["pesq_wb"] for s in scores])) < 1e-3
    else:
        assert cells[8] == ""
    assert f"evaluate.py means over {ref} for v2={cp}" in out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--checkpoint", "v2=CP"], "--checkpoint needs --reference_dir"),
        (["--checkpoint", "v9=CP", "--reference_dir", "R"], "give NAME=PATH with NAME one of v1, v2, v3"),
        (["--versions", "v3", "--checkpoint", "v2=CP", "--reference_dir", "R"], "v2 is not among --versions (v3)"),
        (
            ["--versions", "wavenet", "--checkpoint", "wavenet=CP", "--reference_dir", "R"],
            "its config.json is a hifigan",
        ),
    ],
)
def test_bad_checkpoint_arguments_fail_in_one_line_before_timing(tmp_path, capsys, argv, message):
    cp = save_generator(tmp_path / "cp", tiny_config("v2"), name="g_00000001")
    argv = [str(tmp_path) if x == "R" else x.replace("CP", cp) for x in argv]
    with pytest.raises(SystemExit) as e:
        bench_inference.main(argv)
    captured = capsys.readouterr()
    assert e.value.code == 2 and message in captured.err
    assert "| model |" not in captured.out  # nothing was timed


def test_folder_mode_vocodes_every_clip(capsys):
    bench_inference.main(["--folder", "3", "--clip_seconds", "0.3", "0.6", "--batch_sizes", "2", "--workers", "1"])
    out = capsys.readouterr().out
    assert "3 clips of 0.3-0.6 s" in out
    row = next(line for line in out.splitlines() if line.startswith("| 2 |"))
    assert float(row.split("|")[4]) > 0  # kHz
