"""Pictures of motion: per-frequency amplitude maps of a spectral volume and X-t slices."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

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
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path
