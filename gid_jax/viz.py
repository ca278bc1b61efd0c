"""Pictures of motion: per-frequency amplitude maps of a spectral volume and X-t slices."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from gid_jax.atomic import atomic_path  # noqa: E402
from gid_jax.motion import amplitude  # noqa: E402


def xt_slice(frames: np.ndarray, row: int) -> np.ndarray:
    """`(T,H,W,C)` → `(T,W,C)`: one image row over time; oscillation shows as wavy streaks."""
    return np.asarray(frames)[:, row]


def busiest_row(sv: np.ndarray) -> int:
    """The image row with the most motion energy (excluding DC), a good place for an X-t slice."""
    return int(np.argmax(np.asarray(amplitude(sv))[1:].sum(axis=(0, 2))))


def spectral_volume_figure(path: str | os.PathLike, image: np.ndarray, sv: np.ndarray,
                           frames: np.ndarray | None = None, fps: float = 30.0,
                           period: int | None = None, bins=(1, 2, 4, 8, 15), title: str = "") -> Path:
    """Saves a PNG: the image, amplitude maps |S_k| at a few frequencies, and an X-t slice.

    Amplitudes share one logarithmic colour scale so that the decay with frequency is visible.
    """
    sv = np.asarray(sv)
    num_freqs = sv.shape[0]
    period = period or (len(frames) if frames is not None else 150)
    bins = [k for k in bins if k < num_freqs]
    amps = np.asarray(amplitude(sv))
    vmax = max(float(amps[1:].max()), 1e-3)
    row = busiest_row(sv)
    cols = max(len(bins), 2)
    fig = plt.figure(figsize=(2.9 * cols, 5.4))
    grid = fig.add_gridspec(2, cols)
    top = cols // 2
    ax_image = fig.add_subplot(grid[0, :top])
    ax_image.imshow(np.clip(image, 0, 1))
    ax_image.axhline(row, color="w", lw=0.8, ls="--")
    ax_image.set_title("frame 0 (dashed: X-t row)", fontsize=8)
    ax_image.set_xticks([]), ax_image.set_yticks([])
    if frames is not None:
        ax_xt = fig.add_subplot(grid[0, top:])
        ax_xt.imshow(np.clip(xt_slice(frames, row), 0, 1), aspect="auto")
        ax_xt.set_title(f"X-t slice of row {row}: time runs down", fontsize=8)
        ax_xt.set_ylabel("frame", fontsize=8), ax_xt.set_xticks([])
    norm = matplotlib.colors.LogNorm(vmin=vmax * 1e-3, vmax=vmax)
    maps = []
    for i, k in enumerate(bins):
        ax = fig.add_subplot(grid[1, i])
        maps.append(ax)
        im = ax.imshow(np.maximum(amps[k], vmax * 1e-3), cmap="inferno", norm=norm)
        ax.set_title(f"|S| at {k * fps / period:.1f} Hz (bin {k})", fontsize=8)
        ax.set_xticks([]), ax.set_yticks([])
    fig.colorbar(im, ax=maps, fraction=0.01, pad=0.01, label="px")
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def motion_comparison_figure(path: str | os.PathLike, scenes, title: str = "") -> Path:
    """Saves a PNG with one row per scene: frame 0, the true amplitude map A = Σ_{k≥1}|S_k| and
    the predicted ones, on one colour scale per row so over- and under-shooting are visible.

    `scenes`: `(name, image, true_sv, {label: predicted_sv})` tuples."""
    scenes = list(scenes)
    cols = 2 + max(len(s[3]) for s in scenes)
    fig, axes = plt.subplots(len(scenes), cols, figsize=(2.6 * cols, 1.9 * len(scenes)),
                             squeeze=False)
    for row, (name, image, true_sv, predicted) in zip(axes, scenes):
        maps = {"truth": np.asarray(amplitude(true_sv))[1:].sum(0),
                **{k: np.asarray(amplitude(v))[1:].sum(0) for k, v in predicted.items()}}
        vmax = max(float(np.percentile(maps["truth"], 99.5)), 1e-3)
        row[0].imshow(np.clip(image, 0, 1))
        row[0].set_title(name, fontsize=8)
        for ax, (label, amp) in zip(row[1:], maps.items()):
            im = ax.imshow(amp, cmap="inferno", vmin=0, vmax=vmax)
            ax.set_title(f"{label}: A (px), mean {amp.mean():.2f}", fontsize=8)
        for ax in row:
            ax.set_xticks([]), ax.set_yticks([])
        fig.colorbar(im, ax=list(row), fraction=0.015, pad=0.01)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def loss_curves_figure(path: str | os.PathLike, curves) -> Path:
    """Saves a PNG with one panel per training stage: `curves` maps a stage name to
    `(steps, losses)`; the y axis is logarithmic when the loss is positive throughout."""
    curves = dict(curves)
    fig, axes = plt.subplots(1, len(curves), figsize=(3.2 * len(curves), 2.6), squeeze=False)
    for ax, (name, (steps, losses)) in zip(axes[0], curves.items()):
        ax.plot(steps, losses, lw=1)
        if len(losses) and np.min(losses) > 0:
            ax.set_yscale("log")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel("training loss", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path) -> Path:
    """Writes the figure atomically (temp name, then rename) and closes it."""
    path = Path(path)
    try:
        with atomic_path(path, ".png") as tmp:
            fig.savefig(tmp, dpi=110)
    finally:
        plt.close(fig)
    return path
