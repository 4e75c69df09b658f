"""train.py end to end on CPU with tiny configs built from the real JSON files."""

import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import (
    FIXTURES,
    PROGRESS_ENTRIES,
    REPO,
    TINY_DISCRIMINATORS,
    TINY_MELGAN,
    harmonic,
    largest_file,
    needs_fixtures,
    run_train,
    scalar_tags,
    tiny_config,
    write_tiny_config,
)
from conftest import make_training_data as make_data

import train
from meldataset import mel_spectrogram
from models import Generator, MultiPeriodDiscriminator, MultiScaleDiscriminator
from utils import load_checkpoint

ORIGINAL_TAGS = ("training/gen_loss_total", "training/mel_spec_error", "validation/mel_spec_error")


def test_fine_tuning_flag_parsing():
    assert train.parse_args([]).fine_tuning is False
    assert train.parse_args(["--fine_tuning"]).fine_tuning is True
    assert train.parse_args(["--fine_tuning", "True"]).fine_tuning is True
    assert train.parse_args(["--fine_tuning", "False"]).fine_tuning is False  # the original made this True
    assert train.parse_args([]).checkpoint_path == "cp_hifigan" and train.parse_args([]).training_epochs == 3100


def test_few_steps_checkpoints_and_tensorboard(tmp_path, capsys):
    cp = run_train(tmp_path, "--validation_interval", "2", steps=3)
    out = capsys.readouterr().out
    assert "Steps : 0, Gen Loss Total : " in out and "Mel-Spec. Error : " in out and "s/b : " in out
    assert sorted(os.listdir(cp)) == ["config.json", "do_00000002", "g_00000002", "logs"]
    g = load_checkpoint(str(cp / "g_00000002"))  # weights_only=True
    do = load_checkpoint(str(cp / "do_00000002"))
    assert set(g) == {"generator"} and set(do) == {"mpd", "msd", "optim_g", "optim_d", *PROGRESS_ENTRIES}
    assert do["steps"] == 2 and do["epoch"] == 2  # 3 clips, batch 2: one step per epoch
    assert "conv_pre.weight_g" in g["generator"] and "discriminators.0.convs.0.weight_orig" in do["msd"]
    assert largest_file(tmp_path) < 5 * 2**20  # about 1.5 MB: narrow discriminators (conftest), not 0.85 GB
    acc = scalar_tags(cp / "logs")
    tags = acc.Tags()
    for tag in ORIGINAL_TAGS + ("training/disc_loss_total", "training/mel_loss", "training/learning_rate"):
        assert tag in tags["scalars"], tag
    assert all(np.isfinite(e.value) for t in tags["scalars"] for e in acc.Scalars(t))
    assert {"gt/y_0", "generated/y_hat_0"} <= set(tags["audio"])
    assert {"gt/y_spec_0", "generated/y_hat_spec_0"} <= set(tags["images"])


def test_resume_continues_with_optimizer_state(tmp_path, capsys):
    data = make_data(tmp_path / "data", n=4)  # two steps per epoch
    config = write_tiny_config(tmp_path)
    cp = run_train(tmp_path, config=config, data=data, steps=2)
    first = load_checkpoint(str(cp / "do_00000001"))
    assert first["optim_g"]["state"][0]["step"] == 2
    capsys.readouterr()
    run_train(tmp_path, config=config, data=data, steps=4)
    out = capsys.readouterr().out
    assert "Resuming from" in out and "(step 1, epoch 0)" in out
    assert "Steps : 2," in out and "Steps : 0," not in out
    second = load_checkpoint(str(cp / "do_00000003"))
    assert second["steps"] == 3 and second["optim_g"]["state"][0]["step"] == 4
    assert second["optim_d"]["state"][0]["step"] == 4


@needs_fixtures
def test_resume_from_original_format_pair(tmp_path, capsys):
    """A g_ written by the authors' code plus a do_ with the original keys resumes here."""
    h = tiny_config("v2", upsample_initial_channel=128, resblock_kernel_sizes=[3, 7, 11],
                    resblock_dilation_sizes=[[1, 3, 5]] * 3, segment_size=2048)  # fmt: skip
    config = tmp_path / "v2.json"
    config.write_text(json.dumps(dict(h)))
    cp = tmp_path / "cp"
    cp.mkdir()
    shutil.copy(os.path.join(FIXTURES, "g_v2_original_format.pt"), cp / "g_00000100")
    g_state = load_checkpoint(str(cp / "g_00000100"))["generator"]
    mpd, msd = MultiPeriodDiscriminator.from_config(h), MultiScaleDiscriminator.from_config(h)
    gen_params = [torch.nn.Parameter(v.clone()) for v in g_state.values()]
    optim_g = torch.optim.AdamW(gen_params, 2e-4, betas=[0.8, 0.99])
    optim_d = torch.optim.AdamW(list(msd.parameters()) + list(mpd.parameters()), 2e-4, betas=[0.8, 0.99])
    for opt in (optim_g, optim_d):  # the original creates its schedulers right after its optimizers
        torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.999)
    torch.save({"mpd": mpd.state_dict(), "msd": msd.state_dict(), "optim_g": optim_g.state_dict(),
                "optim_d": optim_d.state_dict(), "steps": 100, "epoch": 7}, cp / "do_00000100")  # fmt: skip
    run_train(tmp_path, config=str(config), steps=102)
    out = capsys.readouterr().out
    assert "(step 100, epoch 7)" in out and "Steps : 101," in out and "Epoch: 8" in out
    assert load_checkpoint(str(cp / "do_00000101"))["steps"] == 101


def test_learning_mel_error_falls(tmp_path):
    """On one short clip the validation mel error falls clearly within a bounded number of steps."""
    data = make_data(tmp_path / "data", n=1, seconds=0.5)
    config = write_tiny_config(tmp_path, batch_size=1)
    cp = run_train(tmp_path, "--validation_interval", "30", config=config, data=data, steps=31)
    values = [e.value for e in scalar_tags(cp / "logs").Scalars("validation/mel_spec_error")]
    assert len(values) == 2
    assert values[1] < 0.6 * values[0], values


# config -> (its loss tag, its weights file at step 0, the entry holding the weights)
AMP_VARIANTS = {
    None: ("training/gen_loss_total", "g_00000000", "generator"),
    "configs/baselines/config_melgan.json": ("training/gen_loss_total", "g_00000000", "generator"),
    "waveglow": ("training/loss", "waveglow_00000000", "waveglow"),
    "wavenet_small": ("training/loss", "wavenet_00000000", "wavenet"),
}


@pytest.mark.parametrize("variant", list(AMP_VARIANTS), ids=str)
def test_bf16_autocast_step_on_cpu(tmp_path, variant):
    from conftest import TINY_WAVEGLOW, TINY_WAVENET, write_baseline_config

    tiny = {"waveglow": TINY_WAVEGLOW, "wavenet_small": TINY_WAVENET}
    if variant in tiny:
        config = write_baseline_config(tmp_path / "config", variant, **tiny[variant])
    else:
        config = variant_config(tmp_path, variant) if variant else None
    cp = run_train(tmp_path, "--amp", "bf16", config=config, steps=1)
    tag, weights_file, entry = AMP_VARIANTS[variant]
    assert np.isfinite(scalar_tags(cp / "logs").Scalars(tag)[0].value)
    weights = load_checkpoint(str(cp / weights_file))[entry]
    assert all(w.dtype == torch.float32 for w in weights.values())  # AMP keeps the saved weights fp32


def test_fp16_on_cpu_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        run_train(tmp_path, "--amp", "fp16", steps=1)
    assert e.value.code == 2
    assert "--amp fp16 needs CUDA" in capsys.readouterr().err


def test_too_few_files_for_batch_is_a_clear_error(tmp_path, capsys):
    data = make_data(tmp_path / "data", n=1)
    with pytest.raises(SystemExit):
        run_train(tmp_path, data=data, steps=1)
    assert "1 training files but a batch of 2" in capsys.readouterr().err


def test_fine_tuning_with_teacher_forced_mels(tmp_path, capsys):
    wavs, tr, va = make_data(tmp_path / "data", n=2, seconds=0.6)
    mels = tmp_path / "mels"
    mels.mkdir()
    for i, delta in enumerate((1, -2)):  # off by one (longer) and by two (shorter)
        audio = torch.from_numpy(harmonic(0.6, f0=110 + 30 * i, seed=i))
        mel = mel_spectrogram(audio[None], 1024, 80, 22050, 256, 1024, 0, 8000)[0].numpy()
        mel = np.concatenate([mel, mel[:, -1:]], 1) if delta > 0 else mel[:, :delta]
        np.save(mels / f"clip{i}.npy", mel)
    run_train(tmp_path, "--fine_tuning", "True", "--input_mels_dir", str(mels), steps=1, data=(wavs, tr, va))
    assert os.path.isfile(tmp_path / "cp" / "g_00000000")
    np.save(mels / "clip1.npy", np.zeros((80, 5), np.float32))  # far too short: a clear error
    with pytest.raises(SystemExit):
        run_train(tmp_path, "--fine_tuning", "--input_mels_dir", str(mels), steps=3, data=(wavs, tr, va))
    assert "clip1.npy: mel has 5 frames but the audio gives" in capsys.readouterr().err


def test_fine_tuning_refuses_log10_mels_and_trains_with_mel_format(tmp_path, capsys):
    """ESPnet mels (log10, 80-7600 Hz, centre-padded, (T, 80)): the data check identifies a sample
    against the wavs and stops with the diagnosis; with --mel_format espnet they are converted
    and the run trains."""
    import melformats
    from meldataset import load_wav

    wavs, tr, va = make_data(tmp_path / "data", n=2, seconds=0.6)
    mels = tmp_path / "mels"
    mels.mkdir()
    for i in range(2):
        audio, _ = load_wav(os.path.join(wavs, f"clip{i}.wav"))
        np.save(mels / f"clip{i}.npy", melformats.espnet_mel(audio))
    argv = ["--fine_tuning", "--input_mels_dir", str(mels)]
    with pytest.raises(SystemExit):
        run_train(tmp_path, *argv, steps=1, data=(wavs, tr, va))
    err = capsys.readouterr().err
    assert "error [mel_format]" in err and "clip0.npy" in err
    assert "[log10] values are log10 of the mel" in err and "[fmin] the mel fits fmin=80 Hz" in err
    assert "they are espnet mels: pass --mel_format espnet" in err
    assert not os.path.exists(tmp_path / "cp" / "g_00000000")
    run_train(tmp_path, *argv, "--mel_format", "espnet", steps=1, data=(wavs, tr, va))
    assert os.path.isfile(tmp_path / "cp" / "g_00000000")
    with pytest.raises(SystemExit):  # the mels are not Coqui's: refused again
        run_train(tmp_path, *argv, "--mel_format", "coqui", steps=1, data=(wavs, tr, va))
    assert "not --mel_format coqui" in capsys.readouterr().err


def ddp_run(tmp_path, launcher, *extra, **config_overrides):
    """Run train.py for 2 steps in 2 processes on 4 clips (global batch 4) with `launcher` + argv."""
    wavs, tr, va = make_data(tmp_path / "data", n=4)
    config = write_tiny_config(tmp_path, batch_size=4, **config_overrides)
    argv = [
        "--config", config, "--input_wavs_dir", wavs, "--input_training_file", tr,
        "--input_validation_file", va, "--checkpoint_path", str(tmp_path / "cp"),
        "--training_steps", "2", "--stdout_interval", "1", "--validation_interval", "1", *extra,
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(launcher(argv), capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)


def assert_rank0_alone_wrote(r, cp, steps=2):
    """Two processes trained `steps` steps; rank 0 alone printed, logged and wrote the checkpoint."""
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("Steps : 1,") == 1  # printed by rank 0 only
    last = f"{steps - 1:08d}"
    assert sorted(os.listdir(cp)) == ["config.json", f"do_{last}", f"g_{last}", "logs"]
    assert len(os.listdir(cp / "logs")) == 1  # one event file: rank 0's
    do = load_checkpoint(str(cp / f"do_{last}"))
    assert do["steps"] == steps - 1
    for name in {"mpd", "msd"} & set(do):
        assert not any(k.startswith("module.") for k in do[name])  # DDP unwrapped before saving


def test_ddp_torchrun_two_processes_gloo(tmp_path):
    """torchrun, 2 processes, 10 steps. Besides DDP's own gradient all-reduce, each rank makes 2
    all_reduce calls (the stop agreement at steps 0 and 5) and 2 barriers (validation at step 0,
    the checkpoint at step 9); one of each per step before the redesign (10 and 10)."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    runner = [*torchrun, os.path.join(REPO, "tests", "train_runner.py"), "--count_collectives", "--"]
    extra = ("--training_steps", "10", "--validation_interval", "1000")
    r = ddp_run(tmp_path, lambda argv: [*runner, *argv], *extra)
    assert_rank0_alone_wrote(r, tmp_path / "cp", steps=10)
    for rank in (0, 1):
        assert f"collectives rank {rank}: all_reduce 2 barrier 2\n" in r.stdout, r.stdout[-2000:]


SPAWN_SCRIPT = """
import sys
sys.path.insert(0, {repo!r})
import train

if __name__ == "__main__":
    train.processes_per_machine = lambda a: 2  # stands in for a machine with 2 GPUs
    train.main({argv!r})
"""


def test_ddp_mp_spawn_two_processes_gloo(tmp_path):
    # The path `python train.py` takes on a machine with N GPUs (mp.spawn of one process per GPU,
    # rendezvous at dist_config.dist_url, as the original), run here as 2 CPU processes on gloo.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = tmp_path / "spawn_two.py"

    def launcher(argv):
        script.write_text(SPAWN_SCRIPT.format(repo=REPO, argv=argv))
        return [sys.executable, str(script)]

    dist_config = {"dist_backend": "nccl", "dist_url": f"tcp://127.0.0.1:{port}", "world_size": 1}
    # MelGAN's recipe here (HiFi-GAN's runs under torchrun above): DDP over another family too
    melgan = dict(model_family="melgan", use_mpd=False, msd_variant="melgan", adversarial_loss="hinge")
    melgan.update(lambda_mel=0, lambda_fm=10, optimizer="adam", **TINY_MELGAN)
    r = ddp_run(tmp_path, launcher, "--device", "cpu", dist_config=dist_config, **melgan)
    assert "Batch size per GPU : 2" in r.stdout, r.stderr[-3000:]  # the global batch of 4 split in 2
    assert_rank0_alone_wrote(r, tmp_path / "cp")


VARIANTS = {  # config file -> the discriminators its checkpoints hold
    "configs/ablations/config_v3_no_mpd.json": ("msd",),
    "configs/ablations/config_v3_no_msd.json": ("mpd",),
    "configs/ablations/config_v3_no_mrf.json": ("mpd", "msd"),
    "configs/ablations/config_v3_no_mel_loss.json": ("mpd", "msd"),
    "configs/ablations/config_v3_mpd_2_4_8_16_32.json": ("mpd", "msd"),
    "configs/baselines/config_melgan.json": ("msd",),
    "configs/baselines/config_melgan_mpd.json": ("mpd", "msd"),
}


def variant_config(folder, path: str) -> str:
    """The real variant config at tiny sizes (its generator shape and recipe keys kept)."""
    with open(os.path.join(REPO, path)) as f:
        h = json.load(f)
    h.update(batch_size=2, segment_size=2048, num_workers=0, **TINY_DISCRIMINATORS, **TINY_MELGAN)
    if h.get("model_family", "hifigan") == "hifigan":
        h["upsample_initial_channel"] = 32
    out = folder / os.path.basename(path)
    out.write_text(json.dumps(h))
    return str(out)


@pytest.mark.parametrize("path", sorted(VARIANTS))
def test_each_variant_trains_logs_its_terms_and_saves_what_it_has(tmp_path, path, one_thread):
    config = variant_config(tmp_path, path)
    h = json.loads(open(config).read())
    cp = run_train(tmp_path, "--checkpoint_interval", "1", config=config, steps=2)
    do = load_checkpoint(str(cp / "do_00000001"))
    assert set(do) == {*VARIANTS[path], "optim_g", "optim_d", *PROGRESS_ENTRIES}
    tags = set(scalar_tags(cp / "logs").Tags()["scalars"])
    terms = {f"training/{t}_{k}" for t in ("gen_loss", "fm_loss") for k in VARIANTS[path]}
    terms |= {"training/gen_loss_total", "training/mel_spec_error", "training/disc_loss_total"}
    assert terms <= tags and ("training/mel_loss" in tags) == (h.get("lambda_mel", 45) != 0)
    assert (
        not {f"training/{t}_{k}" for t in ("gen_loss", "fm_loss") for k in {"mpd", "msd"} - set(VARIANTS[path])} & tags
    )


def test_resuming_into_another_variant_is_one_clear_error(tmp_path, capsys, one_thread):
    no_mpd = variant_config(tmp_path, "configs/ablations/config_v3_no_mpd.json")
    cp = run_train(tmp_path, config=no_mpd, steps=1)
    full = json.loads(open(no_mpd).read())
    del full["use_mpd"]
    (tmp_path / "full.json").write_text(json.dumps(full))
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        run_train(tmp_path, config=str(tmp_path / "full.json"), steps=2)
    captured = capsys.readouterr()
    assert e.value.code == 2
    assert f"WARNING: skipping checkpoint 00000000: {cp}/do_00000000: no 'mpd' entry" in captured.out
    assert captured.err.strip().splitlines()[-1] == (
        f"error: {cp}: none of its 1 checkpoint pair(s) loads (reasons above); use another --checkpoint_path "
        "to start over, or the config these checkpoints were trained with"
    )
    # and the other way round: the checkpoint has an MSD, this config none
    (tmp_path / "no_msd.json").write_text(json.dumps({**full, "use_msd": False}))
    with pytest.raises(SystemExit):
        run_train(tmp_path, config=str(tmp_path / "no_msd.json"), steps=2)
    assert f"{cp}/do_00000000: holds 'msd', which this config does not train" in capsys.readouterr().out
    run_train(tmp_path, config=no_mpd, steps=2)  # its own config resumes it
    assert f"Resuming from {cp}/g_00000000 and {cp}/do_00000000 (step 0, epoch 0)" in capsys.readouterr().out
    assert set(load_checkpoint(str(cp / "do_00000001"))) == {"msd", "optim_g", "optim_d", *PROGRESS_ENTRIES}


def test_ddp_torchrun_wavenet_keeps_its_ema_unwrapped(tmp_path):
    """WaveNet under torchrun (2 processes): the EMA copy trains through no optimizer, so it is not
    DDP-wrapped (DDP refuses a module without trainable parameters); both entries saved plain."""
    from conftest import TINY_WAVENET, write_baseline_config

    wavs, tr, va = make_data(tmp_path / "data", n=4)
    config = write_baseline_config(tmp_path / "config", "wavenet_small", batch_size=4, **TINY_WAVENET)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    argv = [*torchrun, os.path.join(REPO, "train.py"), "--config", config, "--input_wavs_dir", wavs,
            "--input_training_file", tr, "--input_validation_file", va, "--checkpoint_path", str(tmp_path / "cp"),
            "--training_steps", "2", "--stdout_interval", "1", "--device", "cpu"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    r = subprocess.run(argv, capture_output=True, text=True, env={**env, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("Steps : 1,") == 1
    weights = load_checkpoint(str(tmp_path / "cp" / "wavenet_00000001"))
    assert set(weights) == {"wavenet", "wavenet_ema"}
    assert not any(k.startswith("module.") for entry in weights.values() for k in entry)


# --- issue #19: EMA file, per-step decay, the new TensorBoard scalars ---


def ema_config(tmp_path, name="ema.json", **overrides) -> str:
    path = tmp_path / name
    path.write_text(json.dumps({**tiny_config("v1", segment_size=2048), **overrides}))
    return str(path)


def authors_resume(cp_dir: str, h):
    """What the authors' train.py does at start: scan_checkpoint(cp, 'g_') and (cp, 'do_') with
    their glob of 8 characters, load each with torch.load and its state dicts by their keys."""
    import glob

    g_file, do_file = (sorted(glob.glob(os.path.join(cp_dir, p + "????????")))[-1] for p in ("g_", "do_"))
    generator, mpd, msd = Generator(h), MultiPeriodDiscriminator.from_config(h), MultiScaleDiscriminator.from_config(h)
    generator.load_state_dict(torch.load(g_file, map_location="cpu")["generator"])
    do = torch.load(do_file, map_location="cpu")
    mpd.load_state_dict(do["mpd"])
    msd.load_state_dict(do["msd"])
    return os.path.basename(g_file), os.path.basename(do_file), do["steps"], generator


def test_ema_file_beside_the_pair_resumes_and_never_breaks_loading(tmp_path, capsys, one_thread):
    """A run without EMA turns it on (the average starts at the generator), writes ema_ beside
    g_/do_, resumes it exactly, validates both; the authors' loading and ours without --ema see
    the pair only, and the ema_ file is itself an authors' g_ file."""
    from synthesis import load_generator

    data = make_data(tmp_path / "data", n=4)  # 2 steps per epoch
    cp = run_train(tmp_path, config=ema_config(tmp_path, "plain.json"), data=data, steps=2)
    config = ema_config(tmp_path, ema_decay=0.5)
    capsys.readouterr()
    run_train(tmp_path, "--checkpoint_interval", "1", "--validation_interval", "2", config=config, data=data, steps=4)
    out = capsys.readouterr().out
    assert f"No ema_00000001: generator_ema start(s) from {cp}/g_00000001" in out
    assert f"Saved checkpoints {cp}/g_00000002 and {cp}/ema_00000002 and {cp}/do_00000002" in out
    g = {s: load_checkpoint(str(cp / f"g_0000000{s}"))["generator"] for s in (1, 2, 3)}
    ema = {s: load_checkpoint(str(cp / f"ema_0000000{s}")) for s in (2, 3)}
    assert all(set(e) == {"generator"} for e in ema.values())  # the authors' g_ format
    for key in g[1]:  # ema_2 = 0.5 g_1 + 0.5 g_2; ema_3 = 0.5 ema_2 + 0.5 g_3
        torch.testing.assert_close(ema[2]["generator"][key], 0.5 * g[1][key] + 0.5 * g[2][key], rtol=1e-6, atol=1e-8)
    capsys.readouterr()
    run_train(tmp_path, "--checkpoint_interval", "1", config=config, data=data, steps=5)  # resumed: step 4
    assert "No ema_" not in capsys.readouterr().out
    g[4], ema[4] = load_checkpoint(str(cp / "g_00000004"))["generator"], load_checkpoint(str(cp / "ema_00000004"))
    for key in g[1]:
        expected = 0.5 * ema[3]["generator"][key] + 0.5 * g[4][key]
        torch.testing.assert_close(ema[4]["generator"][key], expected, rtol=1e-6, atol=1e-8)
    tags = set(scalar_tags(cp / "logs").Tags()["scalars"])
    assert {"validation/mel_spec_error", "validation/mel_spec_error_ema"} <= tags
    # The authors' code resumes from the pair (the ema_ file is invisible to its glob) and loads
    # the ema_ file as a generator; ours without --ema loads g_, with --ema the average.
    h = tiny_config("v1", segment_size=2048)
    assert authors_resume(str(cp), h)[:3] == ("g_00000004", "do_00000004", 4)
    Generator(h).load_state_dict(torch.load(cp / "ema_00000004", map_location="cpu")["generator"])
    plain, _ = load_generator(str(cp / "g_00000004"), device="cpu")
    average, _ = load_generator(str(cp / "g_00000004"), device="cpu", ema=True)
    for loaded, source in ((plain, g[4]), (average, ema[4]["generator"])):
        w = (
            source["conv_pre.weight_v"]
            * source["conv_pre.weight_g"]
            / source["conv_pre.weight_v"].norm(dim=(1, 2), keepdim=True)
        )
        torch.testing.assert_close(loaded.conv_pre.weight, w, rtol=1e-5, atol=1e-7)
    assert not torch.equal(plain.conv_pre.weight, average.conv_pre.weight)
    # inference.py --ema writes what the average vocodes
    import soundfile as sf

    import inference
    from meldataset import to_pcm16
    from synthesis import vocode, wav_to_mel

    inference.main(["--checkpoint_file", str(cp / "g_00000004"), "--input_wavs_dir", data[0], "--ema",
                    "--output_dir", str(tmp_path / "ema_out")])  # fmt: skip
    written, _ = sf.read(tmp_path / "ema_out" / "clip0_generated.wav", dtype="int16")
    h_ema = load_generator(str(cp / "g_00000004"), device="cpu", ema=True)[1]
    expected = to_pcm16(vocode(average, h_ema, wav_to_mel(os.path.join(data[0], "clip0.wav"), h_ema)))
    assert np.array_equal(written, expected)
    # A run without ema_decay resumes from the same folder and prunes the ema_ files with the pairs.
    capsys.readouterr()
    run_train(tmp_path, "--keep_checkpoints", "1", config=ema_config(tmp_path, "plain.json"), data=data, steps=6)
    assert f"Resuming from {cp}/g_00000004 and {cp}/do_00000004 (step 4, " in capsys.readouterr().out
    assert sorted(f for f in os.listdir(cp) if f[0] in "egd") == ["do_00000005", "g_00000005"]


def test_per_step_decay_resumes_and_the_new_scalars_are_logged(tmp_path, capsys, one_thread):
    """lr_decay_every "step": the learning rate at step k is lr x lr_decay^k, also across a resume.
    Every summary step logs G's and D's gradient norms and the mean D outputs on real and
    generated audio; the per-epoch decay (the default) warns for these 1-step epochs."""
    data = make_data(tmp_path / "data", n=2)  # 1 step per epoch
    run_train(tmp_path, config=ema_config(tmp_path, "epoch.json"), data=data, steps=1)
    assert "WARNING: an epoch is 1 step and lr_decay 0.999 applies after every epoch" in capsys.readouterr().out
    shutil.rmtree(tmp_path / "cp")
    config = ema_config(tmp_path, lr_decay_every="step", lr_decay=0.5)
    run_train(tmp_path, config=config, data=data, steps=3)
    cp = run_train(tmp_path, config=config, data=data, steps=5)
    out = capsys.readouterr().out
    assert "WARNING: an epoch" not in out and "Resuming from" in out
    acc = scalar_tags(cp / "logs")
    lrs = {e.step: e.value for e in acc.Scalars("training/learning_rate")}
    assert lrs == {k: pytest.approx(2e-4 * 0.5**k, rel=1e-6) for k in range(5)}
    tags = set(acc.Tags()["scalars"])
    new = {f"training/{t}_{k}" for t in ("d_real", "d_fake") for k in ("mpd", "msd")}
    new |= {"training/grad_norm_generator", "training/grad_norm_discriminator"}
    assert new <= tags
    for tag in new:
        values = [e.value for e in acc.Scalars(tag)]
        assert len(values) == 5 and all(np.isfinite(values)), tag
    assert all(e.value > 0 for t in ("generator", "discriminator") for e in acc.Scalars(f"training/grad_norm_{t}"))
