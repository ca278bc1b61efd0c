"""Anti-aliased shape painting into premultiplied-alpha float canvases (cv2 coverage masks)."""

from __future__ import annotations

import cv2
import numpy as np

_SHIFT = 4                      # cv2 fixed-point sub-pixel bits for vertex coordinates
_ONE = float(1 << _SHIFT)


class Painter:
    """A premultiplied RGBA canvas. Each shape is rasterised as an anti-aliased 8-bit coverage
    mask over its bounding box and composited "over" with its fill colour (a constant or a
    per-pixel fill image the size of the canvas, e.g. colour times texture)."""

    def __init__(self, height: int, width: int, rgb: np.ndarray | None = None):
        self.h, self.w = height, width
        if rgb is None:
            self.rgb = np.zeros((height, width, 3), np.float32)
            self.alpha = np.zeros((height, width), np.float32)
        else:
            self.rgb = rgb.astype(np.float32).copy()
            self.alpha = np.ones((height, width), np.float32)

    def _box(self, pts: np.ndarray, pad: float):
        x0 = max(int(np.floor(pts[:, 0].min() - pad)) - 1, 0)
        y0 = max(int(np.floor(pts[:, 1].min() - pad)) - 1, 0)
        x1 = min(int(np.ceil(pts[:, 0].max() + pad)) + 2, self.w)
        y1 = min(int(np.ceil(pts[:, 1].max() + pad)) + 2, self.h)
        return x0, y0, x1, y1

    def _composite(self, mask: np.ndarray, box, fill, opacity: float = 1.0):
        x0, y0, x1, y1 = box
        c = mask.astype(np.float32) * (opacity / 255.0)
        if isinstance(fill, np.ndarray) and fill.ndim == 3:
            col = fill[y0:y1, x0:x1]
        else:
            col = np.asarray(fill, np.float32)[None, None, :]
        self.rgb[y0:y1, x0:x1] = self.rgb[y0:y1, x0:x1] * (1 - c[..., None]) + col * c[..., None]
        self.alpha[y0:y1, x0:x1] = self.alpha[y0:y1, x0:x1] * (1 - c) + c

    def polygon(self, pts, fill, opacity: float = 1.0):
        pts = np.asarray(pts, np.float64)
        box = self._box(pts, 1.0)
        x0, y0, x1, y1 = box
        if x1 <= x0 or y1 <= y0:
            return
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        p = np.round((pts - [x0, y0]) * _ONE).astype(np.int32)
        cv2.fillPoly(mask, [p], 255, cv2.LINE_AA, _SHIFT)
        self._composite(mask, box, fill, opacity)

    def polygons(self, polys, fill, opacity: float = 1.0):
        """Several polygons `(n,k,2)` with one fill, rasterised in one pass (many small leaves)."""
        polys = np.asarray(polys, np.float64)
        if len(polys) == 0:
            return
        box = self._box(polys.reshape(-1, 2), 1.0)
        x0, y0, x1, y1 = box
        if x1 <= x0 or y1 <= y0:
            return
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        p = np.round((polys - [x0, y0]) * _ONE).astype(np.int32)
        cv2.fillPoly(mask, list(p), 255, cv2.LINE_AA, _SHIFT)
        self._composite(mask, box, fill, opacity)

    def polyline(self, pts, thickness: float, fill, opacity: float = 1.0):
        pts = np.asarray(pts, np.float64)
        box = self._box(pts, thickness)
        x0, y0, x1, y1 = box
        if x1 <= x0 or y1 <= y0:
            return
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        p = np.round((pts - [x0, y0]) * _ONE).astype(np.int32)
        cv2.polylines(mask, [p], False, 255, max(1, int(round(thickness))), cv2.LINE_AA, _SHIFT)
        self._composite(mask, box, fill, opacity)

    def ellipse(self, centre, axes, angle_deg: float, fill, opacity: float = 1.0):
        cx, cy = centre
        r = max(axes)
        box = self._box(np.array([[cx - r, cy - r], [cx + r, cy + r]]), 1.0)
        x0, y0, x1, y1 = box
        if x1 <= x0 or y1 <= y0:
            return
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        c = (int(round((cx - x0) * _ONE)), int(round((cy - y0) * _ONE)))
        ax = (max(1, int(round(axes[0] * _ONE))), max(1, int(round(axes[1] * _ONE))))
        cv2.ellipse(mask, c, ax, float(angle_deg), 0, 360, 255, -1, cv2.LINE_AA, _SHIFT)
        self._composite(mask, box, fill, opacity)

    def rgba(self) -> np.ndarray:
        """Premultiplied `(H,W,4)` float32."""
        return np.concatenate([np.clip(self.rgb, 0, 1), self.alpha[..., None]], -1).astype(np.float32)


def bezier(p0, p1, p2, n: int) -> np.ndarray:
    """Quadratic Bezier curve through p0 (t=0) and p2 (t=1), `(n,2)`."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    p0, p1, p2 = (np.asarray(p, np.float64) for p in (p0, p1, p2))
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2


def tapered_outline(centre: np.ndarray, w0: float, w1: float) -> np.ndarray:
    """Closed polygon around a centreline whose width tapers linearly from w0 to w1."""
    d = np.gradient(centre, axis=0)
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)
    nrm = np.stack([-d[:, 1], d[:, 0]], 1)
    half = np.linspace(w0, w1, len(centre))[:, None] / 2
    return np.concatenate([centre + nrm * half, (centre - nrm * half)[::-1]], 0)


def leaf_outline(base, direction_rad: float, length: float, width: float, shape: str,
                 n: int = 14) -> np.ndarray:
    """Leaf polygon from its attachment point: 'ovate', 'lanceolate' or 'round'."""
    t = np.linspace(0.0, 1.0, n)
    if shape == "lanceolate":
        half = width / 2 * np.sin(np.pi * t) ** 0.9 * (1 - 0.3 * t)
    elif shape == "round":
        half = width / 2 * np.sqrt(np.clip(np.sin(np.pi * t), 0, 1))
    else:  # ovate: widest below the middle, pointed tip
        half = width / 2 * np.sin(np.pi * t ** 0.8) ** 0.8
    xs = np.concatenate([length * t, length * t[::-1]])
    ys = np.concatenate([half, -half[::-1]])
    c, s = np.cos(direction_rad), np.sin(direction_rad)
    return np.stack([base[0] + c * xs - s * ys, base[1] + s * xs + c * ys], 1)


def leaf_outlines(bases, directions, lengths, widths, shape: str, n: int = 10) -> np.ndarray:
    """`leaf_outline` for many leaves at once: `(len(bases), 2n, 2)`."""
    t = np.linspace(0.0, 1.0, n)
    if shape == "lanceolate":
        prof = np.sin(np.pi * t) ** 0.9 * (1 - 0.3 * t)
    elif shape == "round":
        prof = np.sqrt(np.clip(np.sin(np.pi * t), 0, 1))
    else:
        prof = np.sin(np.pi * t ** 0.8) ** 0.8
    L = np.asarray(lengths, np.float64)[:, None]
    half = np.asarray(widths, np.float64)[:, None] / 2 * prof[None]
    xs = np.concatenate([L * t, L * t[::-1]], 1)
    ys = np.concatenate([half, -half[:, ::-1]], 1)
    a = np.asarray(directions, np.float64)[:, None]
    c, s = np.cos(a), np.sin(a)
    b = np.asarray(bases, np.float64)
    return np.stack([b[:, :1] + c * xs - s * ys, b[:, 1:2] + s * xs + c * ys], -1)


def tapered_outlines(centres: np.ndarray, w0, w1: float) -> np.ndarray:
    """`tapered_outline` for many centrelines `(n,k,2)` at once (widths `w0` `(n,)`)."""
    d = np.gradient(centres, axis=1)
    d /= np.maximum(np.linalg.norm(d, axis=2, keepdims=True), 1e-9)
    nrm = np.stack([-d[..., 1], d[..., 0]], -1)
    t = np.linspace(0.0, 1.0, centres.shape[1])[None, :, None]
    half = (np.asarray(w0, np.float64)[:, None, None] * (1 - t) + w1 * t) / 2
    return np.concatenate([centres + nrm * half, (centres - nrm * half)[:, ::-1]], 1)
