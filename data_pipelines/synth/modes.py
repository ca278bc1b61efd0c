"""Image-space mode shapes Phi_m: smooth `(H,W,2)` displacement fields per unit modal coordinate.

All are evaluated on a pixel grid `(X, Y)` (pixel centres, x right, y down) and are smooth with
bounded gradients, so that the deformation p -> p + sum_m q_m Phi_m(p) stays invertible for the
modal amplitudes used (the scene builder bounds |grad D| explicitly).
"""

from __future__ import annotations

import numpy as np

# Clamped-free Euler-Bernoulli beam: roots of cos(b) cosh(b) = -1.
BEAM_BETA = (1.8751040687, 4.6940911330, 7.8547574382)


def beam_shape(s: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Cantilever mode n (0-based): shape and d/ds for s in [0,1], normalised to |phi(1)| = 1.

    Zero (with zero slope) at the clamp s<=0; linear extrapolation past the tip, clamped at 1.3.
    """
    b = BEAM_BETA[n]
    sig = (np.cosh(b) + np.cos(b)) / (np.sinh(b) + np.sin(b))

    def phi(x):
        return np.cosh(b * x) - np.cos(b * x) - sig * (np.sinh(b * x) - np.sin(b * x))

    def dphi(x):
        return b * (np.sinh(b * x) + np.sin(b * x) - sig * (np.cosh(b * x) - np.cos(b * x)))

    norm = abs(phi(1.0))
    sc = np.clip(s, 0.0, 1.0)
    val, der = phi(sc), dphi(sc)
    over = np.clip(s, 1.0, 1.3) - 1.0
    val = val + dphi(1.0) * over
    der = np.where((s > 1.0) & (s < 1.3), dphi(1.0), der)
    der = np.where(s <= 0.0, 0.0, der)
    val = np.where(s <= 0.0, 0.0, val)
    return (val / norm).astype(np.float32), (der / norm).astype(np.float32)


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


def grass_wave(X, Y, ground_y: float, height: float, k: float, phase: float) -> np.ndarray:
    """Horizontal sway ~ s^2 (s = height above ground / blade height) times cos(k x + phase).

    k = 0 gives the uniform sway; a (cos, sin) pair driven in quadrature gives travelling waves.
    """
    s = np.clip((ground_y - Y) / height, 0.0, 1.25)
    u = s ** 2 * np.cos(k * X + phase)
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


def max_gradient_norm(fields, amps) -> np.ndarray:
    """Pointwise bound sum_m |amp_m| * ||grad Phi_m(p)||_2 (spectral norm) → `(H,W)`.

    By the triangle inequality it bounds the Lipschitz constant of D = sum_m q_m Phi_m for any
    |q_m| <= amp_m.
    """
    total = None
    for f, a in zip(fields, amps):
        a_y, a_x = np.gradient(f[..., 0])      # J = [[a_x, a_y], [b_x, b_y]]
        b_y, b_x = np.gradient(f[..., 1])
        fro2 = a_x ** 2 + a_y ** 2 + b_x ** 2 + b_y ** 2
        det = a_x * b_y - a_y * b_x
        sigma = np.sqrt(0.5 * (fro2 + np.sqrt(np.maximum(fro2 ** 2 - 4 * det ** 2, 0.0))))
        g = sigma * abs(float(a))
        total = g if total is None else total + g
    if total is None:
        return np.zeros((1, 1), np.float32)
    return total
