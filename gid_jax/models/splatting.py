"""Forward warping ("splatting") of feature maps by a flow field, in pure JAX.

The image-based rendering module (docs/method.md §6) moves every source pixel ``p`` of a feature
map to ``p + F(p)`` and needs the result on the regular target grid. Forward warping scatters each
source pixel onto the 4 target pixels around ``p + F(p)`` with bilinear kernel weights
(Niklaus & Liu, "Softmax Splatting for Video Frame Interpolation", CVPR 2020):

    sum_splat:      out(q) = sum_p  b(p, q) * feat(p)
    average_splat:  out(q) = sum_p  b(p, q) * feat(p)          / sum_p b(p, q)
    softmax_splat:  out(q) = sum_p  b(p, q) * e^Z(p) * feat(p) / sum_p b(p, q) * e^Z(p)

where ``b(p, q) = max(0, 1 - |x_p + u_p - x_q|) * max(0, 1 - |y_p + v_p - y_q|)`` is the bilinear
kernel. ``Z`` is a per-pixel importance (GID uses the mean motion magnitude as a depth proxy: the
larger ``Z``, the more a source pixel occludes others landing on the same target). A normalised
output is 0 where nothing lands.

Conventions: NHWC; flow channel 0 is x (to the right, along W), channel 1 is y (down, along H), in
pixels. Corners that fall outside the image are dropped (weight 0, never clamped), so content moved
out of the frame simply vanishes. Everything is jit-, vmap- and grad-friendly; gradients flow to
``feat``, ``flow`` and ``z`` (the integer corner positions come from ``floor`` and carry none, as
in the bilinear kernel itself).

Numerical stability (no additive epsilon anywhere):

* The normalised variants are computed in log space. ``Z`` is first shifted by its per-image
  maximum (keeps ``Z + log b`` well resolved in float32 for large ``Z``), then by a *per-target*
  maximum: for each target ``q``, ``m(q) = max_p [Z(p) + log b(p, q)]`` over the contributions
  that reach it (found with a scatter-max, outside the gradient: the normalised result does not
  depend on the shift). Each
  contribution then gets the weight ``exp(Z(p) + log b(p, q) - m(q)) <= 1``, which equals 1 for the
  largest contribution. So nothing overflows whatever the range of ``Z`` (``Z = 1000`` is fine), the
  result is invariant (up to float rounding) to adding a per-image constant to ``Z``, and the
  denominator of every covered target is ``>= 1``. This is a
  refinement of the usual "subtract the per-image max of Z": with only a per-image shift, regions
  whose ``Z`` lies far (> ~87 in float32) below the image's maximum would underflow to 0 and their
  gradients through ``num / den**2`` would overflow.
* The division is guarded by ``den > 0`` (``den`` is exactly 0 where no contribution with a positive
  weight lands, and ``>= 1`` elsewhere): ``out = where(den > 0, num / where(den > 0, den, 1), 0)``,
  which has finite gradients on both branches. Contributions with bilinear weight exactly 0 (e.g.
  the far corners at integer flows) or a user weight of 0 are masked out before ``log``, so no
  ``log(0)`` reaches the gradient.
* Accumulation is in float32 at least (float64 if any input is float64); the output is cast back
  to ``feat.dtype`` (so bfloat16 features with float32 flow give bfloat16 output).
* Non-finite flow components move the pixel outside the image (it vanishes); Z and feat are not
  checked inside the jitted code, callers validate their inputs.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp

__all__ = ["splat", "sum_splat", "average_splat", "softmax_splat"]


def _check_inputs(feat, flow, weights, name):
    if feat.ndim != 4:
        raise ValueError(f"splatting: feat must be (B,H,W,C), got shape {tuple(feat.shape)}")
    b, h, w, _ = feat.shape
    if tuple(flow.shape) != (b, h, w, 2):
        raise ValueError(
            f"splatting: flow must be (B,H,W,2)={(b, h, w, 2)} to match feat {tuple(feat.shape)}, "
            f"got {tuple(flow.shape)}"
        )
    if weights is None:
        return None
    if tuple(weights.shape) == (b, h, w):
        weights = weights[..., None]
    if tuple(weights.shape) != (b, h, w, 1):
        raise ValueError(
            f"splatting: {name} must be (B,H,W,1)={(b, h, w, 1)} (or (B,H,W)) to match feat "
            f"{tuple(feat.shape)}, got {tuple(weights.shape)}"
        )
    return weights


def _corners(flow, dtype):
    """Flattened target indices, bilinear weights and validity for the 4 corners.

    Returns lists (one entry per corner) of ``idx`` (B,H,W) int32 flat indices into a
    ``(B*H*W + 1)`` buffer whose last row is a trash row for dropped corners, ``w`` (B,H,W,1)
    bilinear weights of ``dtype`` (0 where dropped), and ``valid`` (B,H,W,1) bool (inside the image
    and weight > 0).
    """
    b, h, w_, _ = flow.shape
    flow = flow.astype(dtype)
    gy, gx = jnp.meshgrid(jnp.arange(h, dtype=dtype), jnp.arange(w_, dtype=dtype), indexing="ij")
    # Clipping keeps every in-image corner exact (targets lie in [-1, W] / [-1, H] for any corner
    # that could be inside) while preventing integer overflow for huge or infinite flows; the
    # corners of clipped positions are all outside, so the zero gradient of clip() is right.
    x = jnp.clip(gx[None] + flow[..., 0], -2.0, w_ + 1.0)
    y = jnp.clip(gy[None] + flow[..., 1], -2.0, h + 1.0)
    finite = jnp.isfinite(x) & jnp.isfinite(y)
    x = jnp.where(finite, x, -2.0)
    y = jnp.where(finite, y, -2.0)
    x0f = jax.lax.stop_gradient(jnp.floor(x))
    y0f = jax.lax.stop_gradient(jnp.floor(y))
    fx = x - x0f  # in [0, 1), carries the gradient w.r.t. flow
    fy = y - y0f
    x0 = x0f.astype(jnp.int32)
    y0 = y0f.astype(jnp.int32)
    base = (jnp.arange(b, dtype=jnp.int32) * (h * w_))[:, None, None]
    trash = b * h * w_
    out = []
    for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
        xi, yi = x0 + dx, y0 + dy
        wx = fx if dx else 1.0 - fx
        wy = fy if dy else 1.0 - fy
        wgt = (wx * wy)[..., None]
        inside = (xi >= 0) & (xi < w_) & (yi >= 0) & (yi < h)
        valid = inside[..., None] & (wgt > 0)
        idx = jnp.where(inside, base + yi * w_ + xi, trash)
        out.append((idx, jnp.where(valid, wgt, 0.0), valid))
    return out


def _acc_dtype(*arrays):
    return jnp.result_type(jnp.float32, *[a.dtype for a in arrays if a is not None])


def splat(
    feat: jax.Array,
    flow: jax.Array,
    weights: Optional[jax.Array] = None,
    normalize: bool = False,
    *,
    log_weights: Optional[jax.Array] = None,
) -> jax.Array:
    """Forward-warp ``feat`` by ``flow`` with bilinear splatting; all variants go through here.

    Args:
      feat: ``(B,H,W,C)`` features (any float dtype; the output has this dtype).
      flow: ``(B,H,W,2)`` displacement in pixels, channel 0 = x (right), 1 = y (down).
      weights: optional ``(B,H,W,1)`` (or ``(B,H,W)``) non-negative per-source-pixel weights
        multiplying the bilinear kernel. Default: 1.
      normalize: if True divide by the accumulated weights (0 where nothing lands); if False
        return the weighted sum.
      log_weights: alternatively, the weights given as logarithms ``Z`` (weights = ``exp(Z)``); the
        normalised path then never forms ``exp(Z)`` (see the module docstring). Mutually exclusive
        with ``weights``.

    Returns:
      ``(B,H,W,C)`` array of ``feat.dtype``.
    """
    if weights is not None and log_weights is not None:
        raise ValueError("splat: give either weights or log_weights, not both")
    weights = _check_inputs(feat, flow, weights, "weights")
    log_weights = _check_inputs(feat, flow, log_weights, "log_weights (z)")
    b, h, w_, c = feat.shape
    dtype = _acc_dtype(feat, flow, weights, log_weights)
    corners = _corners(flow, dtype)
    f = feat.astype(dtype)
    n = b * h * w_ + 1  # + trash row for dropped corners

    if not normalize:
        if log_weights is not None:
            weights = jnp.exp(log_weights.astype(dtype))
        acc = jnp.zeros((n, c), dtype)
        for idx, wgt, _ in corners:
            t = wgt if weights is None else wgt * weights.astype(dtype)
            acc = acc.at[idx.reshape(-1)].add((t * f).reshape(-1, c))
        return acc[:-1].reshape(b, h, w_, c).astype(feat.dtype)

    # Normalised: work with log-weights l = Z + log(b) and a per-target max shift.
    if log_weights is not None:
        z = log_weights.astype(dtype)
        active_src = jnp.ones(z.shape, bool)
    elif weights is not None:
        wts = weights.astype(dtype)
        active_src = wts > 0
        z = jnp.log(jnp.where(active_src, wts, 1.0))
    else:
        z = jnp.zeros((b, h, w_, 1), dtype)
        active_src = jnp.ones(z.shape, bool)

    # Per-image max shift first: exact for the result, and keeps z + log(b) well resolved when Z
    # is large (at |Z| ~ 1000 float32 would otherwise round log(b) to ~6e-5).
    zmax = jnp.max(jnp.where(active_src, z, -jnp.inf), axis=(1, 2, 3), keepdims=True)
    z = z - jax.lax.stop_gradient(jnp.where(jnp.isfinite(zmax), zmax, 0.0))

    logs = []
    for idx, wgt, valid in corners:
        active = valid & active_src
        lg = z + jnp.log(jnp.where(active, wgt, 1.0))
        logs.append((idx, lg, active))

    neg_inf = jnp.array(-jnp.inf, dtype)
    m = jnp.full((n,), neg_inf, dtype)
    for idx, lg, active in logs:
        m = m.at[idx.reshape(-1)].max(jnp.where(active, jax.lax.stop_gradient(lg), neg_inf).reshape(-1))
    m = jax.lax.stop_gradient(jnp.where(jnp.isfinite(m), m, 0.0))

    acc = jnp.zeros((n, c + 1), dtype)
    for idx, lg, active in logs:
        shift = m[idx][..., None]
        t = jnp.where(active, jnp.exp(jnp.where(active, lg - shift, 0.0)), 0.0)
        acc = acc.at[idx.reshape(-1)].add(jnp.concatenate([t * f, t], axis=-1).reshape(-1, c + 1))
    acc = acc[:-1]
    num, den = acc[:, :c], acc[:, c:]
    covered = den > 0
    out = jnp.where(covered, num / jnp.where(covered, den, 1.0), 0.0)
    return out.reshape(b, h, w_, c).astype(feat.dtype)


def sum_splat(feat: jax.Array, flow: jax.Array) -> jax.Array:
    """``out(q) = sum_p b(p,q) feat(p)`` (bilinear forward warp, no normalisation)."""
    return splat(feat, flow, None, normalize=False)


def average_splat(feat: jax.Array, flow: jax.Array) -> jax.Array:
    """``out(q) = sum_p b(p,q) feat(p) / sum_p b(p,q)``; 0 where nothing lands."""
    return splat(feat, flow, None, normalize=True)


def softmax_splat(feat: jax.Array, flow: jax.Array, z: jax.Array) -> jax.Array:
    """Softmax splatting: ``sum_p b e^Z feat / sum_p b e^Z`` (Niklaus & Liu 2020); 0 where empty.

    ``feat`` ``(B,H,W,C)``, ``flow`` ``(B,H,W,2)`` (x right, y down, pixels), ``z`` ``(B,H,W,1)``
    importance (larger wins where sources collide). Stable for any range of ``z`` and exactly
    invariant to adding a constant to it.
    """
    return splat(feat, flow, normalize=True, log_weights=z)
