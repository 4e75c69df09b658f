"""Pictures for people who prefer a file to a dashboard.

    python plot.py spec --reference LJ001-0001.wav --generated LJ001-0001_generated.wav --output cmp.png
    python plot.py curves --logdir cp_hifigan/logs --output curves.png

`spec`: the log-mel spectrograms (this model's frontend, --config) of a reference and a generated
file, and their difference (generated - reference), one panel each. `curves`: the mel-spectrogram
L1 error of training (`training/mel_spec_error`) and validation (`validation/mel_spec_error`)
against steps, read from a run's TensorBoard event files; PESQ and MR-STFT
(`--validation_metrics`) get a panel of their own when logged.
"""

import argparse
import os

import numpy as np
import torch

from meldataset import load_audio, mel_from_config
from utils import DEFAULT_CONFIG, UserError, exit_with_user_error, load_config

MEL_ERROR_TAGS = {"training/mel_spec_error": "training", "validation/mel_spec_error": "validation"}
EXTRA_TAGS = {"validation/pesq": "validation PESQ (wide band)", "validation/mrstft": "validation MR-STFT distance"}


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, output: str) -> None:
    folder = os.path.dirname(os.path.abspath(output))
    os.makedirs(folder, exist_ok=True)
    fig.savefig(output, dpi=100, bbox_inches="tight")
    pyplot().close(fig)


def plot_spectrograms(reference: np.ndarray, generated: np.ndarray, h, titles=("reference", "generated")):
    """Figure with the (num_mels, T) log-mels of both signals and their difference, drawn as
    utils.plot_spectrogram draws one (imshow, origin lower, no interpolation, colorbar)."""
    plt = pyplot()
    n = min(reference.size, generated.size)
    audio = torch.from_numpy(np.stack([reference[:n], generated[:n]]).astype(np.float32))
    mels = mel_from_config(audio, h).numpy()
    diff = mels[1] - mels[0]
    limit = max(float(np.abs(diff).max()), 1e-3)
    fig, axes = plt.subplots(3, 1, figsize=(10, 7), sharex=True)
    low, high = float(mels.min()), float(mels.max())
    panels = (
        (mels[0], titles[0], {"vmin": low, "vmax": high}),
        (mels[1], titles[1], {"vmin": low, "vmax": high}),
        (diff, f"difference (generated - reference), mean |diff| {np.abs(diff).mean():.3f}", {"cmap": "coolwarm"}),
    )
    for ax, (spec, title, style) in zip(axes, panels):
        if "cmap" in style:
            style = {**style, "vmin": -limit, "vmax": limit}
        im = ax.imshow(spec, aspect="auto", origin="lower", interpolation="none", **style)
        fig.colorbar(im, ax=ax)
        ax.set_title(title)
        ax.set_ylabel("mel band")
    axes[-1].set_xlabel(f"frame (hop {h.hop_size} samples at {h.sampling_rate} Hz)")
    fig.tight_layout()
    return fig


def read_scalars(logdir: str) -> dict:
    """{tag: (steps, values)} of every scalar in the TensorBoard event files of `logdir`."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if not os.path.isdir(logdir):
        raise UserError(f"{logdir}: folder not found; pass the run's <checkpoint_path>/logs")
    acc = EventAccumulator(logdir, size_guidance={"scalars": 0})
    acc.Reload()
    out = {}
    for tag in acc.Tags().get("scalars", []):
        events = acc.Scalars(tag)
        out[tag] = (np.array([e.step for e in events]), np.array([e.value for e in events]))
    return out


def plot_curves(scalars: dict, title: str = ""):
    """Figure: mel error (training, validation) vs steps; a panel per extra validation metric."""
    plt = pyplot()
    extra = [t for t in EXTRA_TAGS if t in scalars]
    fig, axes = plt.subplots(1 + len(extra), 1, figsize=(9, 4 + 2.5 * len(extra)), sharex=True, squeeze=False)
    ax = axes[0, 0]
    for tag, label in MEL_ERROR_TAGS.items():
        if tag in scalars:
            steps, values = scalars[tag]
            style = {"marker": "o", "linewidth": 1.5}
            if label == "training":  # dense: a thin line; markers only while there are few points
                style = {"linewidth": 0.8, "alpha": 0.8, "marker": "." if len(steps) <= 200 else None}
            ax.plot(steps, values, label=label, **style)
    ax.set_ylabel("mel-spectrogram L1 error")
    ax.set_title(title or "mel-spectrogram error")
    ax.grid(alpha=0.3)
    ax.legend()
    for row, tag in enumerate(extra, 1):
        steps, values = scalars[tag]
        axes[row, 0].plot(steps, values, marker="o", color="C2")
        axes[row, 0].set_ylabel(EXTRA_TAGS[tag])
        axes[row, 0].grid(alpha=0.3)
    axes[-1, 0].set_xlabel("steps")
    fig.tight_layout()
    return fig


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Spectrogram comparisons and training curves as PNG files.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show full tracebacks for user errors")
    sub = parser.add_subparsers(dest="command", required=True)
    spec = sub.add_parser(
        "spec", parents=[common], help="reference vs generated log-mel spectrograms and their difference"
    )
    spec.add_argument("--reference", required=True, help="reference (ground-truth) wav")
    spec.add_argument("--generated", required=True, help="generated wav")
    spec.add_argument("--output", required=True, help="PNG file to write")
    spec.add_argument("--config", default=DEFAULT_CONFIG, help="config whose mel frontend is used (default: V1)")
    curves = sub.add_parser("curves", parents=[common], help="mel error vs steps from TensorBoard logs")
    curves.add_argument("--logdir", required=True, help="the run's TensorBoard folder (<checkpoint_path>/logs)")
    curves.add_argument("--output", required=True, help="PNG file to write")
    a = parser.parse_args(argv)
    try:
        if a.command == "spec":
            h = load_config(a.config)
            reference, generated = load_audio(a.reference, h.sampling_rate), load_audio(a.generated, h.sampling_rate)
            titles = (f"reference: {os.path.basename(a.reference)}", f"generated: {os.path.basename(a.generated)}")
            save(plot_spectrograms(reference, generated, h, titles), a.output)
        else:
            scalars = read_scalars(a.logdir)
            if not any(tag in scalars for tag in MEL_ERROR_TAGS):
                raise UserError(
                    f"{a.logdir}: no training/mel_spec_error or validation/mel_spec_error scalars; "
                    "pass the run's <checkpoint_path>/logs"
                )
            save(plot_curves(scalars, a.logdir), a.output)
        print(f"wrote {a.output}")
    except UserError as e:
        exit_with_user_error(e, a.debug)


if __name__ == "__main__":
    main()
