"""PSNR and SSIM of rendered frames against real frames (images in [0, 1])."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from gid_jax.models.perceptual import ssim as _ssim_m11


def _pair(x, y, who):
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    if x.shape != y.shape or x.ndim < 3:
        raise ValueError(f"{who}: need two images (..., H, W, C) of equal shape, got {x.shape}, {y.shape}")
    return x, y


def psnr(x, y, max_val: float = 1.0, min_mse: float = 0.0):
    """Peak signal-to-noise ratio in dB per image ``(...)`` of ``(..., H, W, C)`` arrays;
    ``10 log10(max_val² / MSE)`` (``inf`` for identical images unless ``min_mse`` > 0 floors the
    MSE, as training logs do)."""
    x, y = _pair(x, y, "psnr")
    mse = jnp.mean(jnp.square(x - y), axis=(-3, -2, -1))
    if min_mse:
        mse = jnp.maximum(mse, min_mse)
    return 10.0 * jnp.log10(max_val**2 / mse)


def ssim(x, y, max_val: float = 1.0, **kwargs):
    """Mean SSIM per image ``(...)`` (Wang et al. 2004, 11x11 Gaussian window, sigma 1.5);
    the implementation is `gid_jax.models.perceptual.ssim`."""
    x, y = _pair(x, y, "ssim")
    lead = x.shape[:-3]
    flat = lambda a: a.reshape((-1,) + a.shape[-3:])  # noqa: E731
    return _ssim_m11(flat(x), flat(y), max_val=max_val, **kwargs).reshape(lead)


def frame_metrics(pred_frames, ref_frames, max_val: float = 1.0) -> dict:
    """Mean PSNR (finite frames only) and SSIM over frames ``(..., T, H, W, 3)``."""
    p = np.asarray(psnr(pred_frames, ref_frames, max_val))
    s = np.asarray(ssim(pred_frames, ref_frames, max_val))
    finite = p[np.isfinite(p)]
    return {"psnr": float(finite.mean()) if finite.size else float("inf"), "ssim": float(s.mean())}
