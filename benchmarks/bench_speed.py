"""Speed of this implementation, optionally side by side with the authors' code in one process.

    python benchmarks/bench_speed.py infer --threads 2 --seconds 10 --orig /path/to/hifi-gan
    python benchmarks/bench_speed.py train --versions v1 v3 --batch 16 --steps 3 --orig /path/to/hifi-gan
    python benchmarks/bench_speed.py train --versions v3 --batch 16 --steps 3 --split
    python benchmarks/bench_speed.py loader --workers 0 1 2 --step_seconds 20

`infer`: generator synthesis (batch 1 by default, eval mode, weight norm removed, inference mode)
of a mel computed from `--seconds` of synthetic speech-like audio; ours (the default path, which is
the fast path on CPU), ours with the fast path switched off (`--no_reference` skips it), and the
authors' (`--orig`). `train`: one full training step (generator forward, mel, discriminator step,
generator step; fp32) on a fixed batch; with `--split`, also our step's parts timed one by one
(`SPLIT_PARTS`: G forward, mel, D forward, D backward, the generator step's D forward and
backward, the optimizer steps) with the FLOPs torch's `FlopCounterMode` counts in each and their
fractions of the machine's conv and matmul peaks (`common.measure_peaks`, same run; ours only).
`loader`: `MelDataset` + DataLoader items/s against what a training step consumes.
Implementations alternate call by call, after `--warmup` untimed calls each, so machine load hits
all of them alike; medians are printed with min-max and IQR.

`--orig` takes a jik876/hifi-gan checkout (never part of this repository) with two numerically
neutral edits for current librosa/torch: keyword arguments to `librosa.filters.mel`, and
`torch.stft(..., return_complex=True)` followed by `torch.view_as_real`.
"""

import argparse
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from common import (
    cuda_peak_mb,
    load_authors_code,
    measure_peaks,
    peak_memory_mb,
    repo_config,
    reset_peak_memory,
    seeded_state_dict,
    set_threads,
    stats,
    three_digits,
    timed,
    timed_cpu,
)
from torch.utils.flop_counter import FlopCounterMode

# the repository's modules: `common` put its root on sys.path
import engine
from meldataset import MelDataset, make_demo_dataset, mel_from_config, read_filelist, synth_speechlike
from models import Generator

# train --split: the parts of our training step (training.gan_step), in the order it runs them.
SPLIT_PARTS = {
    "G forward": "the generator on the mel",
    "mel of G output": "mel_from_config of the generated audio (fmax_for_loss, fp32)",
    "D step: D forward": "MPD and MSD on real and detached generated audio, the D loss",
    "D step: D backward": "the D loss's backward (MPD and MSD weight gradients)",
    "G step: D forward + G backward": (
        "MPD and MSD on real and generated audio, weights frozen, the G losses (adversarial, feature "
        "matching, mel L1); their backward through the discriminators, the mel and the generator"
    ),
    "optimizer steps": "D and G: the gradient-norm check of training.optimizer_step, AdamW, zero_grad",
}
# the pieces split_pieces times, each counted in one part
SPLIT_PIECES = {
    "G forward": "G forward",
    "mel": "mel of G output",
    "D forward": "D step: D forward",
    "D backward": "D step: D backward",
    "D update": "optimizer steps",
    "G step D forward": "G step: D forward + G backward",
    "G backward": "G step: D forward + G backward",
    "G update": "optimizer steps",
}


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def speech_audio(seconds: float, sampling_rate: int, seed: int) -> torch.Tensor:
    """(1, T) synthetic speech-like audio (see meldataset.synth_speechlike)."""
    return torch.from_numpy(synth_speechlike(seconds, sampling_rate, np.random.default_rng(seed))).unsqueeze(0)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def fmt_row(cells, widths) -> str:
    return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))


def print_table(header, rows) -> None:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    print(fmt_row(header, widths))
    print(fmt_row(["-" * w for w in widths], widths))
    for r in rows:
        print(fmt_row(r, widths))


def alternate(fns: dict, repeats: int, warmup: int, device: torch.device, before=None, after=None):
    """Time each named callable `repeats` times, interleaved, after `warmup` untimed calls each.
    Returns ({name: wall seconds}, {name: process CPU seconds})."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
            sync(device)
    times, cpu = {name: [] for name in fns}, {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            if before:
                before(name)
            wall, used = timed_cpu(lambda fn=fn: (fn(), sync(device)))
            times[name].append(wall)
            cpu[name].append(used)
            if after:
                after(name)
    return times, cpu


# ---------------------------------------------------------------------------------------------
# Inference
# ---------------------------------------------------------------------------------------------


def bench_infer(a, theirs, device: torch.device) -> None:
    print(f"inference: {a.seconds:g} s of audio, batch {a.batch}, {device}, threads {torch.get_num_threads()}, fp32")
    rows = []
    for version in a.versions:
        h = repo_config(version)
        sd = seeded_state_dict(h, a.seed)
        audio = speech_audio(a.seconds, h.sampling_rate, a.seed)
        mel = mel_from_config(audio, h).repeat(a.batch, 1, 1).to(device)  # (B, num_mels, F)
        samples = a.batch * mel.shape[-1] * h.hop_size

        ref = Generator(h).to(device).eval()
        ref.load_state_dict(sd)
        ref.remove_weight_norm()
        ours = engine.prepare(ref) if engine.supports(ref, mel) else ref  # what synthesis.py runs
        impls = {"ours": ours}
        if not a.no_reference:
            impls["ours, fast path off"] = ref
        if theirs is not None:
            orig = theirs.models.Generator(h).to(device).eval()
            orig.load_state_dict(sd)
            orig.remove_weight_norm()
            impls["authors'"] = orig

        with torch.inference_mode():
            outs = {name: g(mel) for name, g in impls.items()}
            fns = {name: (lambda g=g, mel=mel: g(mel)) for name, g in impls.items()}
            times, cpu = alternate(fns, a.repeats, a.warmup, device)
        base = outs.get("authors'", outs.get("ours, fast path off"))
        base_t, base_c = (stats(d["authors'"])["median"] if "authors'" in d else None for d in (times, cpu))
        params = sum(p.numel() for p in ref.parameters())
        for name, ts in times.items():
            s, c = stats(ts), stats(cpu[name])["median"]
            khz = samples / s["median"] / 1000
            rows.append(
                [
                    f"{version.upper()} {name}",
                    f"{params / 1e6:.2f}M",
                    f"{s['median']:.3f}",
                    f"{s['min']:.3f}-{s['max']:.3f}",
                    f"{khz:.1f}",
                    f"{samples / h.sampling_rate / s['median']:.2f}",
                    f"{base_t / s['median']:.2f}x" if base_t else "-",
                    f"{c:.3f}",
                    f"{base_c / c:.2f}x" if base_c else "-",
                    "-" if base is None else f"{(outs[name] - base).abs().max().item():.1e}",
                ]
            )
    header = ["generator", "params", "median s", "min-max s", "kHz", "x real time", "vs authors'", "CPU s", "vs (CPU)"]
    print_table(header + ["max |diff|"], rows)
    print(
        f"({a.repeats} timed calls each after {a.warmup} warm-up; CPU s: process CPU time of a call over all "
        "threads; max |diff| against the authors' output)"
    )


# ---------------------------------------------------------------------------------------------
# Training step
# ---------------------------------------------------------------------------------------------


def training_batch(h, batch: int, segment: int, seed: int):
    """(mel, audio (B, 1, T), loss mel) of `batch` random crops of synthetic speech."""
    rng = np.random.default_rng(seed)
    clips = [synth_speechlike(segment / h.sampling_rate + 1.0, h.sampling_rate, rng) for _ in range(batch)]
    y = np.stack([c[(s := rng.integers(0, len(c) - segment)) : s + segment] for c in clips])
    y = torch.from_numpy(y * 0.95 / np.abs(y).max(axis=1, keepdims=True))
    return mel_from_config(y, h), y.unsqueeze(1), mel_from_config(y, h, fmax_for_loss=True)


def our_models(h, sd, device) -> tuple[dict, dict]:
    """Our models (generator loaded from `sd`, training mode) and optimizers, as train.py builds them."""
    import training

    torch.manual_seed(0)
    models = training.GAN.build_models(h, device)
    models["generator"].load_state_dict(sd)
    for m in models.values():
        m.train()
    return models, training.GAN.build_optimizers(models, h)


def our_trainer(h, sd, device):
    """Our models and train.py's step (training.GAN, imported: fp32, no AMP, no DDP)."""
    import training

    models, optimizers = our_models(h, sd, device)
    scaler = torch.amp.GradScaler(device.type, enabled=False)
    ctx = training.StepContext(device, None, scaler, models, models)

    def step(x, y, y_mel):
        terms, _ = training.GAN.train_step(models, optimizers, (x, y.squeeze(1), None, y_mel), h, ctx)
        return terms["gen_loss_total"]

    return step, tuple(models.values())


def authors_trainer(theirs, h, sd, device):
    """The authors' models and the body of their training loop (train.py), on `device`."""
    m, mel_spectrogram = theirs.models, theirs.meldataset.mel_spectrogram
    torch.manual_seed(0)
    g = m.Generator(h).to(device).train()
    g.load_state_dict(sd)
    mpd, msd = m.MultiPeriodDiscriminator().to(device).train(), m.MultiScaleDiscriminator().to(device).train()
    opt_g = torch.optim.AdamW(g.parameters(), h.learning_rate, betas=[h.adam_b1, h.adam_b2])
    opt_d = torch.optim.AdamW(
        list(msd.parameters()) + list(mpd.parameters()), h.learning_rate, betas=[h.adam_b1, h.adam_b2]
    )
    F = torch.nn.functional

    def step(x, y, y_mel):
        y_g_hat = g(x)
        y_g_hat_mel = mel_spectrogram(
            y_g_hat.squeeze(1), h.n_fft, h.num_mels, h.sampling_rate, h.hop_size, h.win_size, h.fmin, h.fmax_for_loss
        )
        opt_d.zero_grad()
        y_df_hat_r, y_df_hat_g, _, _ = mpd(y, y_g_hat.detach())
        loss_disc_f, _, _ = m.discriminator_loss(y_df_hat_r, y_df_hat_g)
        y_ds_hat_r, y_ds_hat_g, _, _ = msd(y, y_g_hat.detach())
        loss_disc_s, _, _ = m.discriminator_loss(y_ds_hat_r, y_ds_hat_g)
        (loss_disc_s + loss_disc_f).backward()
        opt_d.step()
        opt_g.zero_grad()
        loss_mel = F.l1_loss(y_mel, y_g_hat_mel) * 45
        y_df_hat_r, y_df_hat_g, fmap_f_r, fmap_f_g = mpd(y, y_g_hat)
        y_ds_hat_r, y_ds_hat_g, fmap_s_r, fmap_s_g = msd(y, y_g_hat)
        loss_gen_f, _ = m.generator_loss(y_df_hat_g)
        loss_gen_s, _ = m.generator_loss(y_ds_hat_g)
        loss = (
            loss_gen_s + loss_gen_f + m.feature_loss(fmap_s_r, fmap_s_g) + m.feature_loss(fmap_f_r, fmap_f_g) + loss_mel
        )
        loss.backward()
        opt_g.step()
        return loss.detach()

    return step, (g, mpd, msd)


def split_pieces(models: dict, optimizers: dict, h, x, y, y_mel) -> tuple[dict[str, Callable[[], None]], dict]:
    """Our training step (training.gan_step: fp32, no AMP, no DDP) cut into the `SPLIT_PIECES`, in
    its order; run one after the other they are one step on (x, y (B, 1, T), y_mel). Returns
    (pieces, their state: "loss_g" holds the last step's generator loss)."""
    import training

    r = training.recipe(h)
    d_loss, g_loss = training.ADVERSARIAL_LOSSES[r["adversarial_loss"]]
    fm_loss = {"mpd": training.hifigan_feature_loss, "msd": training.MSD_VARIANTS[r["msd_variant"]][1]}
    present = [k for k in training.DISCRIMINATORS if k in models]
    state = {}

    def g_forward():
        state["y_g_hat"] = models["generator"](x)

    def mel():
        state["y_g_hat_mel"] = mel_from_config(state["y_g_hat"].squeeze(1), h, fmax_for_loss=True)

    def d_forward():
        losses = [d_loss(*models[k](y, state["y_g_hat"].detach())[:2])[0] for k in present]
        state["loss_d"] = sum(reversed(losses))  # MSD + MPD, the authors' sum

    def g_step_d_forward():
        mel_error = F.l1_loss(y_mel, state["y_g_hat_mel"])
        with training.frozen(*(models[k] for k in present)):
            out = {k: models[k](y, state["y_g_hat"]) for k in present}  # (_, fake scores, fmaps r, g)
            gen = [g_loss(out[k][1])[0] for k in reversed(present)]
            fm = [fm_loss[k](out[k][2], out[k][3]) * r["lambda_fm"] for k in reversed(present)]
        state["loss_g"] = sum(gen + fm) + (mel_error * r["lambda_mel"] if r["lambda_mel"] else 0)

    def update(optimizer, names: list[str], which: str) -> Callable[[], None]:
        def step():
            params = [p for k in names for p in models[k].parameters() if p.grad is not None]
            norm = torch.nn.utils.get_total_norm([p.grad for p in params], foreach=True)
            if bool(torch.isfinite(norm)):
                if training.grad_clip(h, which) is not None:
                    torch.nn.utils.clip_grads_with_norm_(params, training.grad_clip(h, which), norm, foreach=True)
                optimizer.step()
                if which == "generator" and "generator_ema" in models:
                    training.ema_update(models["generator_ema"], models["generator"], h.ema_decay)
            optimizer.zero_grad(set_to_none=True)  # where gan_step zeroes it, before the next backward

        return step

    pieces = {
        "G forward": g_forward,
        "mel": mel,
        "D forward": d_forward,
        "D backward": lambda: state["loss_d"].backward(),
        "D update": update(optimizers["optim_d"], list(reversed(present)), "discriminator"),
        "G step D forward": g_step_d_forward,
        "G backward": lambda: state["loss_g"].backward(),
        "G update": update(optimizers["optim_g"], ["generator"], "generator"),
    }
    return pieces, state


def conv_backward_flops(
    grad_out_shape,
    x_shape,
    w_shape,
    bias,
    stride,
    padding,
    dilation,
    transposed,
    output_padding,
    groups,
    output_mask,
    **kwargs,
) -> int:
    """FLOPs of aten.convolution_backward: each gradient asked for (input, weight) costs what the
    forward convolution does, 2 * (output elements) * (C_in / groups) * prod(kernel), for plain and
    grouped convolutions alike.

    NOTE: torch 2.13's own formula counts a grouped convolution's weight gradient as if it were
    dense (groups times too many: a groups-16 conv's backward counted 17x its forward), which
    would inflate the discriminators' backward (MSD: groups 4 and 16)."""
    out_shape = x_shape if transposed else grad_out_shape  # the larger side of a transposed conv
    forward = 2 * math.prod(out_shape) * math.prod(w_shape[1:])
    return forward * (int(output_mask[0]) + int(output_mask[1]))


def run_pieces(pieces: dict, device: torch.device, count: bool = False) -> dict[str, float]:
    """One step, piece by piece: {piece: wall seconds}, or with `count` {piece: FLOPs counted by
    FlopCounterMode (matmuls and convolutions, forward and backward)}."""
    out = {}
    for name, fn in pieces.items():
        if count:
            with FlopCounterMode(
                display=False, custom_mapping={torch.ops.aten.convolution_backward: conv_backward_flops}
            ) as counter:
                fn()
            out[name] = float(counter.get_total_flops())
        else:
            start = time.perf_counter()
            fn()
            sync(device)
            out[name] = time.perf_counter() - start
    return out


def bench_split(
    a, label: str, h, sd, batch: tuple, device: torch.device, peaks: dict, step_losses: list[float]
) -> tuple[list, float, float]:
    """Our step's parts on `batch` (x, y, y_mel): one untimed step counting FLOPs, `--warmup`
    untimed steps, then `--steps` timed ones. `step_losses`: the G losses of the real step
    (training.gan_step) from the same start, which the pieces must reproduce step by step (the
    pieces copy gan_step's sequence; this catches the two drifting apart). Returns (table rows,
    median seconds of the generator step's D forward alone, sum of the parts' medians)."""
    models, optimizers = our_models(h, sd, device)
    pieces, state = split_pieces(models, optimizers, h, *batch)
    losses = []

    def step(count: bool = False) -> dict[str, float]:
        out = run_pieces(pieces, device, count)
        losses.append(float(state["loss_g"]))
        return out

    flops = step(count=True)
    for _ in range(a.warmup):
        step()
    steps = [step() for _ in range(a.steps)]
    n = min(len(losses), len(step_losses))
    if not np.allclose(losses[:n], step_losses[:n], rtol=1e-5, atol=0):
        raise SystemExit(
            f"error: {label}: the --split pieces give G losses {losses[:n]}, training.gan_step {step_losses[:n]}; "
            "split_pieces no longer follows gan_step, update it"
        )
    per_part = [{p: sum(t[k] for k, q in SPLIT_PIECES.items() if q == p) for p in SPLIT_PARTS} for t in steps]
    medians = {p: statistics.median(t[p] for t in per_part) for p in SPLIT_PARTS}
    counted = {p: sum(flops[k] for k, q in SPLIT_PIECES.items() if q == p) for p in SPLIT_PARTS}
    total = sum(medians.values())
    rows = []
    for part, name in [(p, p) for p in SPLIT_PARTS] + [(None, "step (sum of parts)")]:
        seconds, n = (medians[part], counted[part]) if part else (total, sum(counted.values()))
        rate = n / seconds / 1e9
        rows.append(
            [
                f"{label} {name}",
                f"{seconds:.3f}",
                f"{100 * seconds / total:.1f}%",
                three_digits(n / 1e9),
                three_digits(rate) if n else "-",
                f"{100 * rate / peaks['conv']:.1f}%" if n else "-",
                f"{100 * rate / peaks['matmul']:.1f}%" if n else "-",
            ]
        )
    return rows, statistics.median(t["G step D forward"] for t in steps), total


def bench_train(a, theirs, device: torch.device) -> None:
    print(
        f"training step: batch {a.batch}, segment {a.segment}, {device}, threads {torch.get_num_threads()}, fp32; "
        f"{a.warmup} warm-up + {a.steps} timed steps each, alternating"
    )
    rows, split_rows, split_notes = [], [], []
    roof = measure_peaks(a.threads, a.repeats, device) if a.split else None  # the --split peaks
    for version in a.versions:
        h = repo_config(version)
        sd = seeded_state_dict(h, a.seed)
        x, y, y_mel = (t.to(device) for t in training_batch(h, a.batch, a.segment, a.seed))
        trainers = {"ours": our_trainer(h, sd, device)}
        if theirs is not None:
            trainers["authors'"] = authors_trainer(theirs, h, sd, device)
        losses = {name: [] for name in trainers}
        peaks = {name: 0.0 for name in trainers}

        def run(name, trainers=trainers, losses=losses, x=x, y=y, y_mel=y_mel):
            losses[name].append(float(trainers[name][0](x, y, y_mel)))

        def track(name, peaks=peaks):
            peaks[name] = max(peaks[name], cuda_peak_mb() or peak_memory_mb())

        fns = {name: (lambda name=name: run(name)) for name in trainers}
        times, cpu = alternate(fns, a.steps, a.warmup, device, before=lambda _: reset_peak_memory(), after=track)
        base_t, base_c = (stats(d["authors'"])["median"] if "authors'" in d else None for d in (times, cpu))
        for name, ts in times.items():
            s, c = stats(ts), stats(cpu[name])["median"]
            rows.append(
                [
                    f"{version.upper()} {name}",
                    f"{s['median']:.2f}",
                    f"{s['min']:.2f}-{s['max']:.2f}",
                    f"{a.batch / s['median']:.2f}",
                    f"{peaks[name]:.0f}",
                    f"{base_t / s['median']:.2f}x" if base_t else "-",
                    f"{c:.2f}",
                    f"{base_c / c:.2f}x" if base_c else "-",
                    " ".join(f"{v:.4f}" for v in losses[name]),
                ]
            )
        if a.split:
            label = f"{version.upper()} ours"
            part_rows, d_forward, total = bench_split(a, label, h, sd, (x, y, y_mel), device, roof, losses["ours"])
            split_rows += part_rows
            split_notes.append(
                f"{version.upper()} ours: sum of parts {total:.3f} s vs s/step {stats(times['ours'])['median']:.3f}; "
                f"of the G step part, D forward {d_forward:.3f} s; G losses equal the step's"
            )
    mem = "peak GPU MB" if device.type == "cuda" else "peak RSS MB"
    header = ["model", "s/step", "min-max", "samples/s", mem, "vs authors'", "CPU s", "vs (CPU)", "G loss per step"]
    print_table(header, rows)
    print("(same initial weights and batch: the G losses of the two implementations should agree step by step)")
    if a.split:
        print_split(split_rows, split_notes, roof, a)


def print_split(rows: list, notes: list[str], peaks: dict, a) -> None:
    """The --split table of our step's parts, with the peaks and what each part holds."""
    print(
        f"\nour training step, part by part (ours only; {a.warmup} warm-up + {a.steps} timed steps after one step "
        f"counting FLOPs); peaks: conv {peaks['conv']:.1f} GFLOP/s, matmul {peaks['matmul']:.1f} GFLOP/s"
    )
    header = ["part", "median s", "share", "GFLOP", "GFLOP/s", "of conv peak", "of matmul peak"]
    print_table(header, rows)
    print("\n".join(notes))
    for part, what in SPLIT_PARTS.items():
        print(f"  {part}: {what}")
    print(
        "(GFLOP: FlopCounterMode's count, matmuls and convolutions only, grouped convolutions' backward "
        "corrected (conv_backward_flops); optimizer steps count none)"
    )


# ---------------------------------------------------------------------------------------------
# Data loader
# ---------------------------------------------------------------------------------------------


def bench_loader(a, theirs) -> None:
    h = repo_config(a.versions[0])
    with tempfile.TemporaryDirectory() as tmp:
        wavs, train_list, _ = make_demo_dataset(tmp, h.sampling_rate, n_train=a.clips, n_val=1)
        files = read_filelist(train_list, wavs).wav_paths()
        mel_args = (h.segment_size, h.n_fft, h.num_mels, h.hop_size, h.win_size, h.sampling_rate, h.fmin, h.fmax)
        datasets = {"ours": MelDataset(files, h)}
        if theirs is not None:
            datasets["authors'"] = theirs.meldataset.MelDataset(
                files, *mel_args, n_cache_reuse=0, fmax_loss=h.fmax_for_loss
            )
        print(
            f"loader: {len(files)} clips of 2-4 s, batch {a.batch}, segment {h.segment_size}, "
            f"{a.batches} batches per measurement, torch threads {torch.get_num_threads()}"
        )
        rows = []
        for workers in a.workers:
            for name, ds in datasets.items():
                loader = torch.utils.data.DataLoader(
                    ds,
                    batch_size=a.batch,
                    num_workers=workers,
                    shuffle=True,
                    drop_last=True,
                    persistent_workers=workers > 0,
                )
                times = []
                for _ in range(a.repeats):
                    it = iter(loader)
                    next(it)  # warm-up: worker start-up, first-call costs
                    times.append(timed(lambda it=it: [next(it) for _ in range(a.batches)]) / (a.batches * a.batch))
                    del it
                s = stats(times)
                per_s = 1 / s["median"]
                rows.append(
                    [
                        f"{name}, {workers} workers",
                        f"{per_s:.0f}",
                        f"{1 / s['max']:.0f}-{1 / s['min']:.0f}",
                        f"{per_s * a.step_seconds / a.batch:.0f}x" if a.step_seconds else "-",
                    ]
                )
    print_table(["dataset", "items/s", "range", "vs step need"], rows)
    if a.step_seconds:
        need = a.batch / a.step_seconds
        print(f"a training step of {a.step_seconds:g} s at batch {a.batch} consumes {need:.2f} items/s")


# ---------------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Speed benchmarks (inference, training step, data loader).")
    parser.add_argument("mode", choices=["infer", "train", "loader"], help="what to measure")
    parser.add_argument("--versions", nargs="+", default=None, choices=["v1", "v2", "v3"], help="configs to run")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="device for infer/train")
    parser.add_argument("--orig", default=None, help="folder of a jik876/hifi-gan checkout to compare against")
    parser.add_argument("--seed", type=int, default=1234, help="seed of weights and audio")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls per implementation first")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per implementation (infer, loader)")
    parser.add_argument("--seconds", type=float, default=10.0, help="infer: seconds of audio per call")
    parser.add_argument("--batch", type=int, default=None, help="batch size (infer: 1, train and loader: 16)")
    parser.add_argument("--no_reference", action="store_true", help="infer: skip our path with the fast path off")
    parser.add_argument("--steps", type=int, default=3, help="train: timed steps per implementation")
    parser.add_argument("--segment", type=int, default=8192, help="train: audio samples per item")
    parser.add_argument(
        "--split", action="store_true", help="train: also time our step's parts (SPLIT_PARTS) with their FLOPs"
    )
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="loader: num_workers values to try")
    parser.add_argument("--clips", type=int, default=32, help="loader: synthetic clips in the dataset")
    parser.add_argument("--batches", type=int, default=8, help="loader: batches per measurement")
    parser.add_argument(
        "--step_seconds", type=float, default=None, help="loader: a training step's time, to compare supply with need"
    )
    a = parser.parse_args(argv)
    a.versions = a.versions or (["v1", "v3"] if a.mode == "train" else ["v1", "v2", "v3"])
    a.batch = a.batch or (1 if a.mode == "infer" else 16)
    return a


def main(argv=None) -> None:
    a = parse_args(argv)
    if a.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but CUDA is not available; use --device cpu", file=sys.stderr)
        sys.exit(2)
    device = torch.device(a.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    set_threads(a.threads)
    theirs = load_authors_code(a.orig) if a.orig else None
    {"infer": lambda: bench_infer(a, theirs, device), "train": lambda: bench_train(a, theirs, device)}.get(
        a.mode, lambda: bench_loader(a, theirs)
    )()


if __name__ == "__main__":
    main()
