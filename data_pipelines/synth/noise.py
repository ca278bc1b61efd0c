"""Procedural textures: value noise, fractal noise and colour helpers (numpy + cv2 only)."""

from __future__ import annotations

import colorsys

import cv2
import numpy as np


def value_noise(rng: np.random.Generator, h: int, w: int, cell_y: float, cell_x: float) -> np.ndarray:
    """Smooth random field `(h,w)` in roughly [0,1]: random lattice values, bicubic upsampling."""
    cell_y, cell_x = max(float(cell_y), 1.0), max(float(cell_x), 1.0)
    gh, gw = int(np.ceil(h / cell_y)) + 3, int(np.ceil(w / cell_x)) + 3
    grid = rng.random((gh, gw)).astype(np.float32)
    big = cv2.resize(grid, (int(np.ceil(gw * cell_x)), int(np.ceil(gh * cell_y))),
                     interpolation=cv2.INTER_CUBIC)
    oy = int(rng.integers(0, max(1, big.shape[0] - h - int(cell_y))))
    ox = int(rng.integers(0, max(1, big.shape[1] - w - int(cell_x))))
    return np.clip(big[oy:oy + h, ox:ox + w], 0.0, 1.0)


def fractal_noise(rng: np.random.Generator, h: int, w: int, scale: float, octaves: int = 4,
                  persistence: float = 0.5, aspect: float = 1.0) -> np.ndarray:
    """Sum of value-noise octaves, `(h,w)` float32 with mean ~0.5, values in [0,1].

    `scale` is the feature size in pixels of the coarsest octave along y; `aspect` stretches
    features along y (>1: vertical streaks such as bark or wood grain turned upright).
    """
    total = np.zeros((h, w), np.float32)
    weight_sum = 0.0
    amp = 1.0
    for o in range(octaves):
        cy = scale / (2 ** o)
        if cy < 2.0:      # finer detail would alias like a sharpened video; natural footage is smoother
            break
        total += amp * value_noise(rng, h, w, cy, cy / aspect)
        weight_sum += amp
        amp *= persistence
    return total / max(weight_sum, 1e-6)


def hsv(h: float, s: float, v: float) -> np.ndarray:
    """HSV in [0,1] (hue wraps) → RGB float32 array (3,)."""
    return np.array(colorsys.hsv_to_rgb(h % 1.0, float(np.clip(s, 0, 1)), float(np.clip(v, 0, 1))),
                    np.float32)


def jitter_colour(rng: np.random.Generator, rgb: np.ndarray, amount: float = 0.08) -> np.ndarray:
    h, s, v = colorsys.rgb_to_hsv(*[float(c) for c in rgb])
    return hsv(h + rng.normal(0, amount * 0.3), s + rng.normal(0, amount), v + rng.normal(0, amount))
