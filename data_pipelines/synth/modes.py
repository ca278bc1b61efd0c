"""Image-space mode shapes Phi_m: smooth `(H,W,2)` displacement fields per unit modal coordinate.

All are evaluated on a pixel grid `(X, Y)` (pixel centres, x right, y down) and are smooth with
bounded gradients, so that the deformation p -> p + sum_m q_m Phi_m(p) stays invertible for the
modal amplitudes used (the scene builder bounds |grad D| explicitly).
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

# Clamped-free Euler-Bernoulli beam: roots of cos(b) cosh(b) = -1.
BEAM_BETA = (1.8751040687, 4.6940911330, 7.8547574382)


@functools.lru_cache(maxsize=None)
def _beam_table(n: int, samples: int = 4097):
    """phi_n and phi_n' on s in [0, 1] (closed form, normalised to |phi(1)| = 1), tabulated once."""
    b = BEAM_BETA[n]
    sig = (np.cosh(b) + np.cos(b)) / (np.sinh(b) + np.sin(b))
    x = np.linspace(0.0, 1.0, samples)
    phi = np.cosh(b * x) - np.cos(b * x) - sig * (np.sinh(b * x) - np.sin(b * x))
    dphi = b * (np.sinh(b * x) + np.sin(b * x) - sig * (np.cosh(b * x) - np.cos(b * x)))
    norm = abs(phi[-1])
    return x, (phi / norm).astype(np.float32), (dphi / norm).astype(np.float32)


def beam_shape(s: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Cantilever mode n (0-based): shape and d/ds for s in [0,1], normalised to |phi(1)| = 1.

    Zero (with zero slope) at the clamp s<=0; linear extrapolation past the tip, clamped at 1.3.
    Interpolated from a 4097-sample table (error ~1e-7; the closed form costs 8 transcendental
    functions per canvas pixel).
    """
    x, phi, dphi = _beam_table(n)
    s = np.asarray(s, np.float32)
    k = np.clip(s, 0.0, 1.0) * np.float32(len(x) - 1)
    i = np.minimum(k.astype(np.int32), len(x) - 2)
    f = k - i
    val = phi[i] * (1 - f) + phi[i + 1] * f
    der = dphi[i] * (1 - f) + dphi[i + 1] * f
    over = np.clip(s, 1.0, 1.3) - 1.0
    val += np.float32(dphi[-1]) * over
    out = s <= 0.0
    val[out] = 0.0
    der[out] = 0.0
    return val.astype(np.float32, copy=False), der.astype(np.float32, copy=False)


def cantilever(X, Y, root, tip, n: int, reach: float) -> np.ndarray:
    """In-plane bending mode n of a cantilever clamped at `root` with free end at `tip`.

    Lateral displacement U(s) along the normal plus the rotation of the cross-section
    (-offset * U'(s)/L along the axis), so side branches and leaves attached off the axis
    follow the bending stem. Offsets from the axis saturate smoothly at `reach` pixels.
    """
    root, tip = np.asarray(root, np.float32), np.asarray(tip, np.float32)
    axis = tip - root
    length = float(np.hypot(*axis))
    a = axis / length
    nrm = np.array([-a[1], a[0]], np.float32)
    dx, dy = X - root[0], Y - root[1]
    s = (dx * a[0] + dy * a[1]) / length
    off = dx * nrm[0] + dy * nrm[1]
    off = reach * np.tanh(off / reach)
    u, du = beam_shape(s, n)
    rot = -off * du / length
    return np.stack([u * nrm[0] + rot * a[0], u * nrm[1] + rot * a[1]], -1).astype(np.float32)


def flutter(X, Y, anchors, lengths, signs, assign, num_modes: int) -> list:
    """Leaf flutter: small-angle rotations of leaves about their attachment points, one field per
    modal coordinate (per unit angle, radians); leaf k belongs to mode assign[k] with sign signs[k].

    Each leaf's rotation R90 (p - a_k) is blended with Gaussian weights w_k (width ~ the leaf
    length) normalised by a smooth partition of unity w_k / (1 + W^4)^(1/4), W = sum_j w_j, so
    overlapping leaves in the same layer share one smooth deformation instead of tearing it.
    """
    fields = [np.zeros(X.shape + (2,), np.float32) for _ in range(num_modes)]
    W = np.zeros(X.shape, np.float32)
    parts = []
    for (ax, ay), ln, sg, m in zip(anchors, lengths, signs, assign):
        sigma = 0.75 * ln
        r = int(np.ceil(3.5 * sigma))
        x0, x1 = max(int(ax) - r, 0), min(int(ax) + r + 2, X.shape[1])
        y0, y1 = max(int(ay) - r, 0), min(int(ay) + r + 2, X.shape[0])
        if x0 >= x1 or y0 >= y1:
            continue
        dx, dy = X[y0:y1, x0:x1] - ax, Y[y0:y1, x0:x1] - ay
        w = np.exp(-(dx ** 2 + dy ** 2) / (2 * sigma ** 2))
        W[y0:y1, x0:x1] += w
        parts.append((int(m), (slice(y0, y1), slice(x0, x1)), w * sg, dx, dy))
    norm = 1.0 / (1.0 + W ** 4) ** 0.25
    for m, sl, w, dx, dy in parts:
        wn = w * norm[sl]
        fields[m][sl][..., 0] += -dy * wn
        fields[m][sl][..., 1] += dx * wn
    return fields


def clusters(X, Y, centres, radii, directions, assign, num_modes: int) -> list:
    """Leaf-cluster (twig) jiggle: each cluster k translates along its unit `directions[k]` with
    a Gaussian weight of width `radii[k]`, blended by the same partition of unity as `flutter`
    so that overlapping clusters of one layer share a smooth, invertible deformation."""
    fields = [np.zeros(X.shape + (2,), np.float32) for _ in range(num_modes)]
    W = np.zeros(X.shape, np.float32)
    parts = []
    for (cx, cy), rad, (ux, uy), m in zip(centres, radii, directions, assign):
        sigma = float(rad)
        r = int(np.ceil(3.0 * sigma))
        x0, x1 = max(int(cx) - r, 0), min(int(cx) + r + 2, X.shape[1])
        y0, y1 = max(int(cy) - r, 0), min(int(cy) + r + 2, X.shape[0])
        if x0 >= x1 or y0 >= y1:
            continue
        sl = (slice(y0, y1), slice(x0, x1))
        w = np.exp(-((X[sl] - cx) ** 2 + (Y[sl] - cy) ** 2) / (2 * sigma ** 2))
        W[sl] += w
        parts.append((int(m), sl, w, float(ux), float(uy)))
    norm = 1.0 / (1.0 + W ** 4) ** 0.25
    for m, sl, w, ux, uy in parts:
        wn = w * norm[sl]
        fields[m][sl][..., 0] += ux * wn
        fields[m][sl][..., 1] += uy * wn
    return fields


def branch_windows(X, Y, curves, reach: float, soft: float) -> list:
    """Smooth weights in [0,1] localising each branch's bending to the branch and its foliage:
    1 within `reach` of its centreline, Gaussian fall-off of width `soft` beyond, normalised
    where branches overlap so neighbouring foliage blends instead of tearing."""
    h, w = X.shape
    gs = []
    for c in curves:
        mask = np.full((h, w), 255, np.uint8)
        cv2.polylines(mask, [np.round(np.asarray(c)).astype(np.int32)], False, 0, 1)
        d = np.minimum(cv2.distanceTransform(mask, cv2.DIST_L2, 5), 1e4)
        gs.append(np.exp(-np.maximum(d - reach, 0.0) ** 2 / (2 * soft ** 2)).astype(np.float32))
    total = np.maximum(sum(gs), 1.0) if gs else None
    return [g / total for g in gs]


def flag_wave(X, Y, pole_x: float, y0: float, length: float, height: float, side: float,
              k: float, phase: float) -> np.ndarray:
    """Flag flapping: vertical travelling-wave shape (d/L) cos(k d + phase) of the distance d
    from the pole (0 at the pole, where the flag is fixed), with a slight pull towards the pole
    where it bends; a (cos, sin) pair driven in quadrature makes the wave travel outward."""
    d = np.clip(side * (X - pole_x), 0.0, 1.15 * length)
    s = d / length
    ang = k * d + phase
    v = s * np.cos(ang)
    u = -0.15 * side * s * np.sin(ang)
    vert = np.clip(1.0 + 0.2 * (Y - y0 - height / 2) / height, 0.7, 1.3)   # hem a bit freer
    return np.stack([u * vert, v * vert], -1).astype(np.float32)


def sway_frequency(length: float, width: float, S: float) -> float:
    """First bending frequency (Hz) from visible size: long/thick things sway slowly, short/thin
    ones faster (f ~ L^-0.75 w^-0.25, in px of a 160-px-high frame)."""
    l, w = max(length / S, 2.0), max(width / S, 0.3)
    return float(np.clip(0.9 * (60.0 / l) ** 0.75 * (3.0 / w) ** 0.25, 0.18, 4.5))


def tip_amplitude(length: float, width: float, S: float) -> float:
    """Tip displacement std (px, per unit wind) of a cantilever in the wind: grows with length,
    falls steeply with thickness (a softened L^4/w^3 beam law), at most 6% of the length and
    5 px (at 256x160): whole plants bend, they do not fold."""
    l, w = max(length / S, 2.0), max(width / S, 0.3)
    return float(S * min(3.0 * (l / 60.0) * (w / 3.0) ** -1.2, 0.06 * l, 5.0))


def grass_wave(X, Y, ground_y: float, height: float, k: float, phase: float) -> np.ndarray:
    """Horizontal sway ~ s^1.3 (s = height above ground / blade height) times cos(k x + phase).

    Zero at the roots, largest at the tips; the exponent (a blade bends most near its root, but a
    band of overlapping blades must not fold) keeps the shear ~1.4/height so the tips can sway
    far. k = 0 gives the uniform sway; a (cos, sin) pair driven in quadrature gives travelling
    waves.
    """
    s = np.clip((ground_y - Y) / height, 0.0, 1.25)
    u = s ** 1.3 * np.cos(k * X + phase)
    return np.stack([u, np.zeros_like(u)], -1).astype(np.float32)


def flame(X, Y, wick, height: float, kind: str) -> np.ndarray:
    """Flame modes: 'lateral' (tip ~ h^1.5), 'lateral2' (one node), 'stretch' (vertical)."""
    h = np.clip((wick[1] - Y) / height, 0.0, 1.3)
    side = np.exp(-((X - wick[0]) / (1.5 * height)) ** 2)
    if kind == "lateral":
        f = np.stack([h ** 1.5 * side, np.zeros_like(h)], -1)
    elif kind == "lateral2":
        f = np.stack([np.sin(np.pi * h) * h * side, np.zeros_like(h)], -1)
    else:  # stretch: points move up proportionally to their height above the wick
        f = np.stack([np.zeros_like(h), -h * side], -1)
    return f.astype(np.float32)


def cloth(X, Y, x0: float, y0: float, width: float, height: float, kind: str, n: int = 1,
          phase: float = 0.0) -> np.ndarray:
    """Hanging cloth modes (u: 0 at the rod, 1 at the hem; v: 0..1 across).

    'pendulum': sideways swing growing down the cloth; 'billow': sin(n pi v) folds travelling
    across the cloth with the hem lifting where it bulges.
    """
    u = np.clip((Y - y0) / height, 0.0, 1.25)
    v = (X - x0) / width
    if kind == "pendulum":
        f = np.stack([u ** 1.5, np.zeros_like(u)], -1)
    else:
        ang = n * np.pi * v + phase
        f = np.stack([u * np.sin(ang), 0.3 * u ** 2 * np.cos(ang)], -1)
    return f.astype(np.float32)
