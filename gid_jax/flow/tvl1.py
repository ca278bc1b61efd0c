"""Coarse-to-fine TV-L1 optical flow in pure JAX (runs on CPU, GPU and TPU).

The model is the duality-based TV-L1 of Zach, Pock & Bischof (DAGM 2007) with the refinements of
Wedel et al. ("An improved algorithm for TV-L1 optical flow", 2009) as described by Sánchez,
Meinhardt-Llopis & Facciolo ("TV-L1 Optical Flow Estimation", IPOL 2013):

    min_u  sum_x  lambda * |rho(u)(x)|  +  |grad u1(x)| + |grad u2(x)|

with the L1 (robust) data term ``rho(u) = T1(x + u(x)) - T0(x)`` linearised around the current
flow at each warp, solved by alternating a point-wise thresholding step (auxiliary field ``v``)
and Chambolle's dual projection for the TV part. Images are first turned into a "texture" image
(Wedel's structure-texture decomposition, here with a Gaussian structure estimate): subtracting most
of the local mean makes the data term insensitive to slow brightness and exposure changes. After
each warp the flow is median filtered (Wedel et al.), which removes outliers.

Everything is fixed-iteration ``lax.fori_loop`` code on static shapes, so one pair compiles once per
image shape, and ``jax.vmap`` maps it over many pairs (see ``tvl1_flow_batch``).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class TVL1Config:
    """Parameters (defaults follow IPOL 2013 where they exist; intensities are in [0, 255])."""

    lam: float = 0.15            # data-term weight lambda
    theta: float = 0.3           # coupling between u and the auxiliary v
    tau: float = 0.25            # dual step size (<= 1/4 for convergence)
    scale_factor: float = 0.5    # pyramid down-sampling ratio
    min_size: int = 12           # coarsest level keeps min(H, W) >= this
    max_scales: int = 6
    num_warps: int = 5           # re-linearisations per level
    num_iters: int = 40          # thresholding/projection iterations per warp
    median: bool = True          # 3x3 median filter on the flow after every warp (Wedel et al.)
    texture_alpha: float = 0.9   # T = I - alpha * blur(I); 0 = plain intensities
    texture_sigma: float = 3.0   # Gaussian structure estimate, in each level's pixels
    presmooth_sigma: float = 0.6 # light denoising before the pyramid


def _gauss_kernel(sigma: float) -> np.ndarray:
    radius = max(1, int(math.ceil(3.0 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


def _blur(img: jax.Array, sigma: float) -> jax.Array:
    """Separable Gaussian blur of a 2-D image with edge replication (two 1-D convolutions)."""
    if sigma <= 0:
        return img
    k = jnp.asarray(_gauss_kernel(sigma))
    r = (k.shape[0] - 1) // 2
    x = jnp.pad(img, r, mode="edge")[None, None]
    dn = ("NCHW", "OIHW", "NCHW")
    x = jax.lax.conv_general_dilated(x, k.reshape(1, 1, 1, -1), (1, 1), "VALID", dimension_numbers=dn)
    x = jax.lax.conv_general_dilated(x, k.reshape(1, 1, -1, 1), (1, 1), "VALID", dimension_numbers=dn)
    return x[0, 0]


def _centered_grad(img: jax.Array):
    p = jnp.pad(img, 1, mode="edge")
    gx = 0.5 * (p[1:-1, 2:] - p[1:-1, :-2])
    gy = 0.5 * (p[2:, 1:-1] - p[:-2, 1:-1])
    return gx, gy


def _forward_grad(u: jax.Array):
    """Forward differences, zero on the last column/row (Neumann boundary)."""
    gx = jnp.concatenate([u[:, 1:] - u[:, :-1], jnp.zeros_like(u[:, :1])], axis=1)
    gy = jnp.concatenate([u[1:, :] - u[:-1, :], jnp.zeros_like(u[:1, :])], axis=0)
    return gx, gy


def _divergence(px: jax.Array, py: jax.Array) -> jax.Array:
    """Minus the adjoint of ``_forward_grad`` (backward differences)."""
    px = px.at[:, -1].set(0.0)
    py = py.at[-1, :].set(0.0)
    dx = px - jnp.concatenate([jnp.zeros_like(px[:, :1]), px[:, :-1]], axis=1)
    dy = py - jnp.concatenate([jnp.zeros_like(py[:1, :]), py[:-1, :]], axis=0)
    return dx + dy


def _bilinear(img: jax.Array, x: jax.Array, y: jax.Array) -> jax.Array:
    """Sample ``img`` ``(H, W, C)`` at fractional pixel positions (clamped to the border)."""
    h, w = img.shape[:2]
    x = jnp.clip(x, 0.0, w - 1.0)
    y = jnp.clip(y, 0.0, h - 1.0)
    x0 = jnp.clip(jnp.floor(x), 0, w - 2).astype(jnp.int32)
    y0 = jnp.clip(jnp.floor(y), 0, h - 2).astype(jnp.int32)
    fx = (x - x0)[..., None]
    fy = (y - y0)[..., None]
    flat = img.reshape(h * w, -1)
    i00 = y0 * w + x0
    a, b = flat[i00], flat[i00 + 1]
    c, d = flat[i00 + w], flat[i00 + w + 1]
    return (1 - fy) * ((1 - fx) * a + fx * b) + fy * ((1 - fx) * c + fx * d)


# Compare-exchange network whose 5th output is the median of 9 values (Paeth 1990 / Devillard's
# "opt_med9"): 19 min/max pairs, so the filter is element-wise ops only (cheap to compile, unlike a
# sort along a stacked axis).
_MED9_PAIRS = ((1, 2), (4, 5), (7, 8), (0, 1), (3, 4), (6, 7), (1, 2), (4, 5), (7, 8), (0, 3),
               (5, 8), (4, 7), (3, 6), (1, 4), (2, 5), (4, 7), (4, 2), (6, 4), (4, 2))


def median3x3(u: jax.Array) -> jax.Array:
    """3x3 median filter (edge replicated) of a 2-D array."""
    h, w = u.shape
    p = jnp.pad(u, 1, mode="edge")
    v = [p[i:i + h, j:j + w] for i in range(3) for j in range(3)]
    for a, b in _MED9_PAIRS:
        v[a], v[b] = jnp.minimum(v[a], v[b]), jnp.maximum(v[a], v[b])
    return v[4]


def _resize(img: jax.Array, shape) -> jax.Array:
    return jax.image.resize(img, shape, method="linear", antialias=True)


def pyramid_shapes(height: int, width: int, cfg: TVL1Config):
    shapes = [(height, width)]
    while len(shapes) < cfg.max_scales:
        h = int(round(shapes[-1][0] * cfg.scale_factor))
        w = int(round(shapes[-1][1] * cfg.scale_factor))
        if min(h, w) < cfg.min_size:
            break
        shapes.append((h, w))
    return shapes


def _to_gray(rgb: jax.Array, cfg: TVL1Config) -> jax.Array:
    gray = 255.0 * (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2])
    return _blur(gray, cfg.presmooth_sigma)


def _texture(gray: jax.Array, cfg: TVL1Config) -> jax.Array:
    """Structure-texture split at one level (sigma in this level's pixels, so every level keeps
    the same band of detail relative to its own resolution)."""
    if cfg.texture_alpha > 0:
        gray = gray - cfg.texture_alpha * _blur(gray, cfg.texture_sigma)
    return gray


def _solve_level(t0, t1, u1, u2, cfg: TVL1Config):
    """TV-L1 at one pyramid level, starting from flow (u1, u2)."""
    h, w = t0.shape
    ys, xs = jnp.meshgrid(jnp.arange(h, dtype=t0.dtype), jnp.arange(w, dtype=t0.dtype), indexing="ij")
    t1x, t1y = _centered_grad(t1)
    stack = jnp.stack([t1, t1x, t1y], axis=-1)
    lt = cfg.lam * cfg.theta
    tt = cfg.tau / cfg.theta

    def warp_step(_, carry):
        u1, u2, p11, p12, p21, p22 = carry
        x = xs + u1
        y = ys + u2
        inside = ((x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)).astype(t0.dtype)
        warped = _bilinear(stack, x, y)  # one gather for the image and its gradient
        t1w = warped[..., 0]
        gx = warped[..., 1] * inside
        gy = warped[..., 2] * inside
        grad2 = gx * gx + gy * gy
        # Pixels that leave the image get no data term: pure TV fills them in.
        rho_c = (t1w - gx * u1 - gy * u2 - t0) * inside
        safe = jnp.where(grad2 > 1e-6, grad2, 1.0)

        def inner(_, c):
            v1, v2, q11, q12, q21, q22 = c
            rho = rho_c + gx * v1 + gy * v2
            step = jnp.where(rho < -lt * grad2, lt, jnp.where(rho > lt * grad2, -lt, -rho / safe))
            step = jnp.where(grad2 > 1e-6, step, 0.0)
            a1 = v1 + step * gx
            a2 = v2 + step * gy
            v1 = a1 + cfg.theta * _divergence(q11, q12)
            v2 = a2 + cfg.theta * _divergence(q21, q22)
            g11, g12 = _forward_grad(v1)
            g21, g22 = _forward_grad(v2)
            n1 = 1.0 + tt * jnp.sqrt(g11 * g11 + g12 * g12)
            n2 = 1.0 + tt * jnp.sqrt(g21 * g21 + g22 * g22)
            return (v1, v2, (q11 + tt * g11) / n1, (q12 + tt * g12) / n1,
                    (q21 + tt * g21) / n2, (q22 + tt * g22) / n2)

        u1, u2, p11, p12, p21, p22 = jax.lax.fori_loop(
            0, cfg.num_iters, inner, (u1, u2, p11, p12, p21, p22))
        if cfg.median:
            u1 = median3x3(u1)
            u2 = median3x3(u2)
        return u1, u2, p11, p12, p21, p22

    z = jnp.zeros_like(t0)
    u1, u2, *_ = jax.lax.fori_loop(0, cfg.num_warps, warp_step, (u1, u2, z, z, z, z))
    return u1, u2


def tvl1_flow(i0: jax.Array, i1: jax.Array, cfg: TVL1Config = TVL1Config()) -> jax.Array:
    """Flow ``(H, W, 2)`` from ``i0`` to ``i1`` (``(H, W, 3)`` in [0, 1]); pure jnp, vmap-able."""
    h, w = i0.shape[:2]
    t0 = _to_gray(i0.astype(jnp.float32), cfg)
    t1 = _to_gray(i1.astype(jnp.float32), cfg)
    shapes = pyramid_shapes(h, w, cfg)
    hc, wc = shapes[-1]
    u1 = jnp.zeros((hc, wc), jnp.float32)
    u2 = jnp.zeros((hc, wc), jnp.float32)
    prev = shapes[-1]
    for level in range(len(shapes) - 1, -1, -1):
        shape = shapes[level]
        if shape != prev:
            u1 = _resize(u1, shape) * (shape[1] / prev[1])
            u2 = _resize(u2, shape) * (shape[0] / prev[0])
        l0 = _texture(t0 if level == 0 else _resize(t0, shape), cfg)
        l1 = _texture(t1 if level == 0 else _resize(t1, shape), cfg)
        u1, u2 = _solve_level(l0, l1, u1, u2, cfg)
        prev = shape
    return jnp.stack([u1, u2], axis=-1)


@functools.partial(jax.jit, static_argnames=("cfg",))
def tvl1_flow_jit(i0, i1, cfg: TVL1Config = TVL1Config()):
    return tvl1_flow(i0, i1, cfg)


@functools.partial(jax.jit, static_argnames=("cfg",))
def tvl1_flow_batch(i0, frames, cfg: TVL1Config = TVL1Config()):
    """Flow from one ``i0`` ``(H, W, 3)`` to each of ``frames`` ``(N, H, W, 3)`` → ``(N, H, W, 2)``."""
    return jax.vmap(lambda f: tvl1_flow(i0, f, cfg))(frames)
