"""Motion VAE: LDM-style KL autoencoder over one normalised 4-channel frequency slice (docs/method.md §4.1).

Architecture (LDM ``Encoder``/``Decoder`` of the KL autoencoders, no attention at the levels, one
single-head attention in each middle block):

    encoder: conv_in -> [num_res_blocks x ResBlock, Downsample (not after the last level)] per
             level -> mid (ResBlock, Attention, ResBlock) -> GN-SiLU-conv_out (2*latent)
             -> quant_conv 1x1 -> (mean, logvar)
    decoder: post_quant_conv 1x1 -> conv_in -> mid -> [(num_res_blocks+1) x ResBlock, Upsample
             (not after the first level)] per level, reversed -> GN-SiLU-conv_out

Memory: ``remat`` (``config.model.vae.remat``, the choices of
:func:`gid_jax.models.layers.remat_policy`; default "none") recomputes every encoder and decoder
block (ResBlocks, middle attention, resampling) in the backward pass instead of keeping its
activations. The forward function is unchanged.

Downsampling factor ``f = 2**(len(channel_multipliers)-1)``: paper (1,2,4) -> f=4, a 160x256 slice
gives a 40x64x4 latent. The input height and width must be divisible by ``f``.

Losses are pure functions (:func:`vae_loss`): L1 + 0.2 x multi-scale gradient loss + 1e-6 x KL
(weights from the config). Latent whitening (:class:`LatentStats`): per-channel mean/std of training
latents, applied on :meth:`MotionVAE.encode_latent` and undone on :meth:`MotionVAE.decode_latent`.
"""

from __future__ import annotations

import json
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from gid_jax.atomic import write_json_atomic
from gid_jax.models.layers import (Downsample, Norm, ResBlock, SpatialAttention, Upsample,
                                   check_sizes, conv, remat_call, remat_policy)

__all__ = [
    "LatentStats",
    "MotionVAE",
    "gradient_loss",
    "kl_loss",
    "l1_loss",
    "sample_latent",
    "vae_loss",
]

LOGVAR_RANGE = (-30.0, 20.0)  # LDM DiagonalGaussianDistribution clamp


def _middle(mod, h):
    """The middle block (ResBlock, attention, ResBlock) of an encoder or decoder ``mod``."""
    for m in (mod.mid_res1, mod.mid_attn, mod.mid_res2):
        h = remat_call(mod.remat, m, h)
    return h


class _Encoder(nnx.Module):
    def __init__(self, in_ch, latent_ch, base, mults, num_res_blocks, dropout, dtype, rngs,
                 remat="none"):
        self.remat = remat
        self.conv_in = conv(in_ch, base, 3, dtype=dtype, rngs=rngs)
        blocks, downs = [], []
        ch = base
        for level, m in enumerate(mults):
            out = base * m
            for _ in range(num_res_blocks):
                blocks.append(ResBlock(ch, out, dropout=dropout, dtype=dtype, rngs=rngs))
                ch = out
            if level != len(mults) - 1:
                downs.append(Downsample(ch, dtype=dtype, rngs=rngs))
        self.blocks = nnx.List(blocks)
        self.downs = nnx.List(downs)
        self.num_res_blocks = num_res_blocks
        self.mid_res1 = ResBlock(ch, ch, dropout=dropout, dtype=dtype, rngs=rngs)
        self.mid_attn = SpatialAttention(ch, dtype=dtype, rngs=rngs)
        self.mid_res2 = ResBlock(ch, ch, dropout=dropout, dtype=dtype, rngs=rngs)
        self.norm_out = Norm(ch, rngs=rngs)
        self.conv_out = conv(ch, 2 * latent_ch, 3, dtype=dtype, rngs=rngs)

    def __call__(self, x):
        h = self.conv_in(x)
        for i, block in enumerate(self.blocks):
            h = remat_call(self.remat, block, h)
            if (i + 1) % self.num_res_blocks == 0 and i // self.num_res_blocks < len(self.downs):
                h = remat_call(self.remat, self.downs[i // self.num_res_blocks], h)
        h = _middle(self, h)
        return self.conv_out(self.norm_out(h))


class _Decoder(nnx.Module):
    def __init__(self, out_ch, latent_ch, base, mults, num_res_blocks, dropout, dtype, rngs,
                 remat="none"):
        self.remat = remat
        ch = base * mults[-1]
        self.conv_in = conv(latent_ch, ch, 3, dtype=dtype, rngs=rngs)
        self.mid_res1 = ResBlock(ch, ch, dropout=dropout, dtype=dtype, rngs=rngs)
        self.mid_attn = SpatialAttention(ch, dtype=dtype, rngs=rngs)
        self.mid_res2 = ResBlock(ch, ch, dropout=dropout, dtype=dtype, rngs=rngs)
        blocks, ups = [], []
        for level in reversed(range(len(mults))):
            out = base * mults[level]
            for _ in range(num_res_blocks + 1):
                blocks.append(ResBlock(ch, out, dropout=dropout, dtype=dtype, rngs=rngs))
                ch = out
            if level != 0:
                ups.append(Upsample(ch, dtype=dtype, rngs=rngs))
        self.blocks = nnx.List(blocks)
        self.ups = nnx.List(ups)
        self.per_level = num_res_blocks + 1
        self.norm_out = Norm(ch, rngs=rngs)
        self.conv_out = conv(ch, out_ch, 3, dtype=dtype, rngs=rngs)

    def __call__(self, z):
        h = self.conv_in(z)
        h = _middle(self, h)
        for i, block in enumerate(self.blocks):
            h = remat_call(self.remat, block, h)
            if (i + 1) % self.per_level == 0 and i // self.per_level < len(self.ups):
                h = remat_call(self.remat, self.ups[i // self.per_level], h)
        return self.conv_out(self.norm_out(h))


class MotionVAE(nnx.Module):
    """KL autoencoder ``(N, H, W, 4)`` slice <-> ``(N, H/f, W/f, latent_channels)`` latent.

    Methods: :meth:`encode` -> ``(mean, logvar)``; :meth:`decode`; ``__call__(x, key=None)`` ->
    ``(reconstruction, mean, logvar)`` (reparameterised sample with ``key``, the mean without);
    :meth:`encode_latent` / :meth:`decode_latent` with latent whitening. Outputs are float32.
    """

    def __init__(self, in_channels: int = 4, latent_channels: int = 4, base_channels: int = 128,
                 channel_multipliers: Sequence[int] = (1, 2, 4), num_res_blocks: int = 2,
                 dropout: float = 0.0, *, remat: str = "none", dtype=jnp.float32,
                 rngs: nnx.Rngs):
        remat_policy(remat, "model.vae.remat")   # an unknown name fails here, naming the field
        mults = tuple(channel_multipliers)
        check_sizes("MotionVAE", in_channels=in_channels, latent_channels=latent_channels,
                    base_channels=base_channels, channel_multipliers=mults,
                    num_res_blocks=num_res_blocks)
        self.in_channels = in_channels
        self.latent_channels = latent_channels
        self.downsample_factor = 2 ** (len(mults) - 1)
        self.encoder = _Encoder(in_channels, latent_channels, base_channels, mults, num_res_blocks,
                                dropout, dtype, rngs, remat)
        self.quant_conv = conv(2 * latent_channels, 2 * latent_channels, 1, dtype=dtype, rngs=rngs)
        self.post_quant_conv = conv(latent_channels, latent_channels, 1, dtype=dtype, rngs=rngs)
        self.decoder = _Decoder(in_channels, latent_channels, base_channels, mults, num_res_blocks,
                                dropout, dtype, rngs, remat)

    @classmethod
    def from_config(cls, cfg, *, dtype=jnp.float32, rngs: nnx.Rngs) -> "MotionVAE":
        """Build from the ``vae`` block of ``configs/models.py`` (``remat``: absent = "none")."""
        return cls(cfg.in_channels, cfg.latent_channels, cfg.base_channels,
                   tuple(cfg.channel_multipliers), cfg.num_res_blocks, cfg.dropout,
                   remat=cfg.get("remat", "none"), dtype=dtype, rngs=rngs)

    def _check(self, x, channels, what):
        if x.ndim != 4 or x.shape[-1] != channels:
            raise ValueError(f"MotionVAE.{what}: expected (N, H, W, {channels}), got {tuple(x.shape)}")

    def encode(self, x):
        """``x: (N, H, W, 4)`` normalised slices -> ``(mean, logvar)``, each ``(N, H/f, W/f, 4)``."""
        self._check(x, self.in_channels, "encode")
        f = self.downsample_factor
        if x.shape[1] % f or x.shape[2] % f:
            raise ValueError(f"MotionVAE.encode: height and width {x.shape[1:3]} must be divisible "
                             f"by the downsampling factor {f}")
        moments = self.quant_conv(self.encoder(x)).astype(jnp.float32)
        mean, logvar = jnp.split(moments, 2, axis=-1)
        return mean, jnp.clip(logvar, *LOGVAR_RANGE)

    def decode(self, z):
        """``z: (N, h, w, 4)`` (un-whitened) latent -> ``(N, h*f, w*f, 4)`` float32."""
        self._check(z, self.latent_channels, "decode")
        return self.decoder(self.post_quant_conv(z)).astype(jnp.float32)

    def __call__(self, x, key: Optional[jax.Array] = None):
        mean, logvar = self.encode(x)
        z = mean if key is None else sample_latent(mean, logvar, key)
        return self.decode(z), mean, logvar

    def encode_latent(self, x, stats: Optional["LatentStats"] = None, key=None):
        """Whitened latent for the diffusion model: ``(z - stats.mean) / stats.std``."""
        mean, logvar = self.encode(x)
        z = mean if key is None else sample_latent(mean, logvar, key)
        return z if stats is None else stats.whiten(z)

    def decode_latent(self, z, stats: Optional["LatentStats"] = None):
        """Inverse of :meth:`encode_latent`: un-whiten, then decode."""
        return self.decode(z if stats is None else stats.unwhiten(z))


def sample_latent(mean, logvar, key):
    """Reparameterised sample ``mean + exp(logvar/2) * eps``."""
    eps = jax.random.normal(key, mean.shape, mean.dtype)
    return mean + jnp.exp(0.5 * logvar) * eps


# ---------------------------------------------------------------------------------------- losses

def l1_loss(pred, target):
    """Mean absolute error over all elements."""
    return jnp.mean(jnp.abs(pred - target))


def _avg_pool2(x):
    """2x2 average pooling of (N, H, W, C); odd trailing rows/columns are dropped."""
    n, h, w, c = x.shape
    x = x[:, : h // 2 * 2, : w // 2 * 2]
    return x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def gradient_loss(pred, target, num_scales: int = 4):
    """Multi-scale gradient-matching loss (MegaDepth-style).

    ``R = pred - target``; for s = 0..num_scales-1, ``R_s`` = R average-pooled by ``2**s``;
    loss = sum_s [mean(|R_s[:, :, 1:] - R_s[:, :, :-1]|) + mean(|R_s[:, 1:] - R_s[:, :-1]|)]
    (forward differences along x = W and y = H; each mean over its own elements).
    """
    r = (pred - target).astype(jnp.float32)
    total = jnp.zeros((), jnp.float32)
    for s in range(num_scales):
        if s:
            r = _avg_pool2(r)
        if r.shape[1] < 2 or r.shape[2] < 2:
            raise ValueError(f"gradient_loss: input too small for {num_scales} scales")
        total = total + jnp.mean(jnp.abs(r[:, :, 1:] - r[:, :, :-1]))
        total = total + jnp.mean(jnp.abs(r[:, 1:] - r[:, :-1]))
    return total


def kl_loss(mean, logvar):
    """KL(N(mean, exp(logvar)) || N(0, 1)), **summed over latent elements, averaged over the batch**
    (the LDM convention): ``0.5 * sum(mean^2 + exp(logvar) - 1 - logvar)`` / N."""
    kl = 0.5 * (jnp.square(mean) + jnp.exp(logvar) - 1.0 - logvar)
    return jnp.sum(kl) / mean.shape[0]


def vae_loss(pred, target, mean, logvar, *, l1_weight=1.0, gradient_weight=0.2, kl_weight=1e-6,
             gradient_scales=4):
    """Total VAE loss and its terms, **per reconstructed element**:
    ``l1_weight*L1 + gradient_weight*grad + kl_weight*KL/E``.

    The paper's KL weight 1e-6 comes from the LDM autoencoders, whose reconstruction term and KL
    are both *sums* over an example's elements. We keep the reconstruction terms as means (so the
    0.2 gradient weight keeps its meaning), and therefore divide the per-example KL sum by E, the
    number of reconstructed elements per example (H·W·4): this is exactly the LDM objective
    divided by E. (Adding a summed KL to mean L1 makes the KL E ≈ 1.6e5 times heavier at
    256×160 and collapses the posterior.) ``terms["kl"]`` is the per-example KL sum.

    Returns ``(total, {"l1", "gradient", "kl"})``. Pass the config's ``vae`` weights as keywords.
    """
    terms = {"l1": l1_loss(pred, target),
             "gradient": gradient_loss(pred, target, gradient_scales),
             "kl": kl_loss(mean, logvar)}
    elements = float(np.prod(pred.shape[1:]))
    total = (l1_weight * terms["l1"] + gradient_weight * terms["gradient"]
             + kl_weight * terms["kl"] / elements)
    return total, terms


# ------------------------------------------------------------------------------ latent whitening

class LatentStats:
    """Per-channel mean/std of VAE latents ("whitening", docs/method.md §4.1).

    Streaming: :meth:`update` accepts batches ``(..., C)`` and merges them exactly (Chan et al.'s
    parallel mean/variance, float64). ``whiten(z) = (z - mean) / std``; ``unwhiten`` inverts it.
    ``save``/``load`` use JSON. A fresh object (no data) is the identity transform.
    """

    def __init__(self, channels: int = 4):
        self.channels = channels
        self.count = 0
        self._mean = np.zeros(channels, np.float64)
        self._m2 = np.zeros(channels, np.float64)

    def update(self, latents) -> "LatentStats":
        x = np.asarray(latents, np.float64)
        if x.shape[-1] != self.channels or not np.all(np.isfinite(x)):
            raise ValueError(f"LatentStats.update: expected finite (..., {self.channels}) latents, "
                             f"got shape {x.shape}")
        x = x.reshape(-1, self.channels)
        n = x.shape[0]
        if n == 0:
            return self
        m = x.mean(0)
        m2 = ((x - m) ** 2).sum(0)
        tot = self.count + n
        delta = m - self._mean
        self._mean = self._mean + delta * n / tot
        self._m2 = self._m2 + m2 + delta ** 2 * self.count * n / tot
        self.count = tot
        return self

    @property
    def mean(self) -> np.ndarray:
        return self._mean.astype(np.float32)

    @property
    def std(self) -> np.ndarray:
        if self.count == 0:
            return np.ones(self.channels, np.float32)
        return np.maximum(np.sqrt(self._m2 / self.count), 1e-6).astype(np.float32)

    def whiten(self, z):
        return (z - jnp.asarray(self.mean, z.dtype)) / jnp.asarray(self.std, z.dtype)

    def unwhiten(self, z):
        return z * jnp.asarray(self.std, z.dtype) + jnp.asarray(self.mean, z.dtype)

    def to_dict(self) -> dict:
        return {"channels": self.channels, "count": int(self.count),
                "mean": self._mean.tolist(), "m2": self._m2.tolist(),
                "std": self.std.tolist()}

    def save(self, path: str) -> None:
        write_json_atomic(path, self.to_dict(), indent=1)

    @classmethod
    def load(cls, path: str) -> "LatentStats":
        try:
            with open(path) as f:
                d = json.load(f)
            out = cls(int(d["channels"]))
            out.count = int(d["count"])
            out._mean = np.asarray(d["mean"], np.float64)
            out._m2 = np.asarray(d["m2"], np.float64)
        except FileNotFoundError:
            raise FileNotFoundError(f"LatentStats.load: no latent statistics file at {path}") from None
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"LatentStats.load: {path} is not a latent statistics file ({e})") from None
        if out._mean.shape != (out.channels,) or out._m2.shape != (out.channels,):
            raise ValueError(f"LatentStats.load: {path}: mean/m2 must have {out.channels} entries")
        return out
