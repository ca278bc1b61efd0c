"""Colour-coded optical flow (the Middlebury colour wheel of Baker et al. 2011).

Hue encodes direction, saturation encodes magnitude relative to ``max_magnitude``: zero flow is
white, flow of ``max_magnitude`` is the fully saturated wheel colour, and anything beyond it is
the wheel colour darkened to 75 %. Flow pointing right (+x) is red, down (+y) is yellow,
left is cyan-blue, up is violet-blue.
"""

from __future__ import annotations

import numpy as np

# Number of hue steps between the six primary/secondary colours (Baker et al. 2011).
_SEGMENTS = (("RY", 15), ("YG", 6), ("GC", 4), ("CB", 11), ("BM", 13), ("MR", 6))


def make_color_wheel() -> np.ndarray:
    """The ``(55, 3)`` float wheel in [0, 255]: red → yellow → green → cyan → blue → magenta."""
    ry, yg, gc, cb, bm, mr = (n for _, n in _SEGMENTS)
    rows = []

    def ramp(n):  # 0 .. 255 * (n-1)/n, integer-valued like the reference code
        return np.floor(255.0 * np.arange(n) / n)

    def seg(r, g, b):
        return np.stack([r, g, b], axis=1)

    rows.append(seg(np.full(ry, 255.0), ramp(ry), np.zeros(ry)))                # red -> yellow
    rows.append(seg(255.0 - ramp(yg), np.full(yg, 255.0), np.zeros(yg)))        # yellow -> green
    rows.append(seg(np.zeros(gc), np.full(gc, 255.0), ramp(gc)))                # green -> cyan
    rows.append(seg(np.zeros(cb), 255.0 - ramp(cb), np.full(cb, 255.0)))        # cyan -> blue
    rows.append(seg(ramp(bm), np.zeros(bm), np.full(bm, 255.0)))                # blue -> magenta
    rows.append(seg(np.full(mr, 255.0), np.zeros(mr), 255.0 - ramp(mr)))        # magenta -> red
    return np.concatenate(rows, axis=0)


_WHEEL = make_color_wheel()


def flow_to_color(flow, max_magnitude=None) -> np.ndarray:
    """Render ``flow`` ``(H, W, 2)`` (x right, y down) as an ``(H, W, 3)`` uint8 RGB image.

    ``max_magnitude`` is the flow length drawn fully saturated; by default the largest finite
    magnitude in ``flow``. Non-finite vectors (and the Middlebury "unknown" value > 1e9) are black.
    """
    flow = np.asarray(flow, dtype=np.float64)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow_to_color: flow must have shape (H, W, 2), got {flow.shape}")
    u, v = flow[..., 0], flow[..., 1]
    unknown = ~np.isfinite(u) | ~np.isfinite(v) | (np.abs(u) > 1e9) | (np.abs(v) > 1e9)
    u = np.where(unknown, 0.0, u)
    v = np.where(unknown, 0.0, v)
    mag = np.hypot(u, v)
    if max_magnitude is None:
        max_magnitude = float(mag.max()) if mag.size else 0.0
    else:
        max_magnitude = float(max_magnitude)
        if not (np.isfinite(max_magnitude) and max_magnitude >= 0):
            raise ValueError(f"flow_to_color: max_magnitude must be finite and >= 0, got {max_magnitude}")
    rad = mag / max(max_magnitude, np.finfo(np.float32).eps)

    ncols = _WHEEL.shape[0]
    angle = np.arctan2(-v, -u) / np.pi                 # in [-1, 1]; +x gives +-1 (red)
    fk = (angle + 1.0) / 2.0 * (ncols - 1)
    k0 = np.floor(fk).astype(np.int64)
    k1 = (k0 + 1) % ncols
    f = (fk - k0)[..., None]
    col = ((1.0 - f) * _WHEEL[k0] + f * _WHEEL[k1]) / 255.0
    inside = (rad <= 1.0)[..., None]
    col = np.where(inside, 1.0 - rad[..., None] * (1.0 - col), col * 0.75)
    col = np.where(unknown[..., None], 0.0, col)
    return np.floor(255.0 * np.clip(col, 0.0, 1.0)).astype(np.uint8)
