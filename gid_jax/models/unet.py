"""Denoising U-Net over (B*K) latent frequency slices, with frequency attention (docs/method.md §4.2, §5).

Backbone: the LDM ``openaimodel`` 2D U-Net (ADM), ``use_scale_shift_norm=False``, convolutional
resampling, ``num_head_channels`` heads in the spatial attention blocks, zero-initialised output
convs of residual blocks / attention blocks / the final layer (ADM ``zero_module``):

    conv_in (4 + 16 -> C) -> per level: num_res_blocks x [ResBlock (+ SpatialAttention at
    ``attention_levels``) (+ FrequencyAttention)], Downsample (not after the last)
    -> mid: ResBlock, SpatialAttention, ResBlock (+ FrequencyAttention)
    -> per level, reversed: (num_res_blocks + 1) x [concat skip, ResBlock (+ SpatialAttention)
    (+ FrequencyAttention)], Upsample (not after level 0) -> GN-SiLU-conv_out (-> 4, zero-init)

Conditioning: ``emb = time_embed(sinusoid(t)) + freq_embed(sinusoid(k))`` (both 4C MLPs, ADDED),
fed to every ResBlock; image features (16 channels, :mod:`gid_jax.models.image_encoder`)
concatenated with the noisy latent.

Call convention (our choice): ``unet(z, t, freq_index, image_features, drop_image=None)`` with
``z: (B*K, h, w, 4)`` ordered image-major (slice ``b*K + k``), ``image_features: (B, h, w, 16)``
given **once per image** and repeated K times inside (K = ``z.shape[0] // B``), ``t`` of shape
(B*K,), (B,) or scalar, ``freq_index`` (B*K,) ints or ``None`` (= ``tile(arange(K), B)``).
Unconditional mode for classifier-free guidance: the null condition is **all-zero image features**;
``drop_image: (B,) bool`` zeroes the features of the marked images (training-time condition
dropout, or the unconditional half of a CFG batch).

Frequency attention (stage 2): ``frequency_attention=True`` inserts a :class:`FrequencyAttention`
after each block at ``freq_attention_levels`` and after the middle block. It reshapes to
``(B, K, h, w, C)`` and attends across K at every position (LayerNorm pre-norm, multi-head, residual)
with a zero-initialised output projection, so a stage-2 model holding stage-1 weights computes
exactly the stage-1 function. All its parameters live under a path element ``freq_attn``; every
other parameter path is identical in both stages, so ``nnx.update(stage2, nnx.state(stage1,
nnx.Param))`` (:func:`load_stage1`) loads a stage-1 model. :func:`trainable_filter` /
:func:`frozen_filter` give the ``nnx`` filters for ``nnx.Optimizer(model, tx, wrt=...)`` and
``nnx.DiffState``.

Memory: ``remat`` (``config.model.remat``: "none" | "full" | "dots_saveable" | "convs_saveable",
:func:`gid_jax.models.layers.remat_policy`) wraps every U-Net block (ResBlock + attentions) in
``nnx.remat``: its activations are recomputed in the backward pass instead of being kept. The
forward function is unchanged.
"""

from __future__ import annotations

from typing import Optional, Sequence

import jax.numpy as jnp
from flax import nnx

from gid_jax.diffusion.schedule import PREDICTIONS
from gid_jax.models.image_encoder import ImageEncoder
from gid_jax.models.layers import (Downsample, EmbeddingMLP, MultiHeadSelfAttention, Norm,
                                   ResBlock, SpatialAttention, Upsample, check_sizes, conv,
                                   remat_policy)
from gid_jax.models.sharding import partitioned
from gid_jax.parallel.rules import constrain

__all__ = [
    "FREQ_ATTN",
    "FrequencyAttention",
    "MotionDenoiser",
    "UNet",
    "frozen_filter",
    "load_stage1",
    "trainable_filter",
]

FREQ_ATTN = "freq_attn"  # path element of every stage-2 (frequency attention) parameter
# How the image features enter: "input" (the paper: concatenated with the noisy latent) or
# "every_block" (also added, through a 1x1 conv, inside every ResBlock like the time embedding).
IMAGE_CONDITIONING = ("input", "every_block")


def _pool(x, factor: int):
    """Average pooling by an integer factor (the UNet's sizes are divisible by it)."""
    if factor == 1:
        return x
    n, h, w, c = x.shape
    return x.reshape(n, h // factor, factor, w // factor, factor, c).mean(axis=(2, 4))


def trainable_filter(stage: int):
    """Parameters trained in ``stage``: 1 -> all ``nnx.Param``; 2 -> only the frequency attention."""
    if stage == 1:
        return nnx.Param
    if stage == 2:
        return nnx.All(nnx.Param, nnx.PathContains(FREQ_ATTN))
    raise ValueError(f"trainable_filter: stage must be 1 or 2, got {stage!r}")


def frozen_filter(stage: int = 2):
    """Parameters frozen in ``stage`` (stage 2: exactly the stage-1 parameters)."""
    if stage == 1:
        return nnx.Nothing
    if stage == 2:
        return nnx.All(nnx.Param, nnx.Not(nnx.PathContains(FREQ_ATTN)))
    raise ValueError(f"frozen_filter: stage must be 1 or 2, got {stage!r}")


def load_stage1(stage2_model: nnx.Module, stage1: "nnx.Module | nnx.State") -> nnx.Module:
    """Copy stage-1 parameters (a model or its ``nnx.State``) into a stage-2 model, in place.

    Frequency-attention parameters keep their (identity-preserving) initialisation.
    """
    state = nnx.state(stage1, nnx.Param) if isinstance(stage1, nnx.Module) else stage1
    nnx.update(stage2_model, state)
    return stage2_model


class FrequencyAttention(nnx.Module):
    """Self-attention across the K frequency slices at every spatial position (LVDM-style).

    ``x: (B*K, h, w, C)`` -> same; ``x + out(attn(LayerNorm(x)))`` over the K axis. The output
    projection is zero-initialised, so the block starts as the exact identity.
    """

    def __init__(self, channels: int, num_heads: int, *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.norm = nnx.LayerNorm(channels, epsilon=1e-5, dtype=jnp.float32,
                                  param_dtype=jnp.float32, use_fast_variance=False,
                                  scale_init=partitioned(nnx.initializers.ones_init(), "norm"),
                                  bias_init=partitioned(nnx.initializers.zeros_init(), "norm"),
                                  rngs=rngs)
        self.attn = MultiHeadSelfAttention(channels, num_heads, zero_init_out=True, dtype=dtype,
                                           rngs=rngs)

    def __call__(self, x, num_freqs: int):
        bk, h, w, c = x.shape
        b = bk // num_freqs
        # All K slices of an example on one device (the 'freq' rule is never sharded).
        y = constrain(x.reshape(b, num_freqs, h, w, c), ("batch", "freq", "height", "width", "channels"))
        y = y.transpose(0, 2, 3, 1, 4).reshape(b * h * w, num_freqs, c)
        y = self.norm(y.astype(jnp.float32)).astype(x.dtype)
        y = self.attn(y)
        y = y.reshape(b, h, w, num_freqs, c).transpose(0, 3, 1, 2, 4).reshape(bk, h, w, c)
        return x + y.astype(x.dtype)


class UNetBlock(nnx.Module):
    """ResBlock [+ SpatialAttention] [+ FrequencyAttention] (one ADM ``TimestepEmbedSequential``)."""

    def __init__(self, in_ch, out_ch, emb_dim, *, attention, freq_attention, head_channels,
                 freq_heads, dropout, dtype, rngs, spatial_dim=None):
        self.res = ResBlock(in_ch, out_ch, emb_dim=emb_dim, spatial_dim=spatial_dim,
                            dropout=dropout, zero_init_out=True, dtype=dtype, rngs=rngs)
        self.attn = (SpatialAttention(out_ch, head_channels=head_channels, zero_init_out=True,
                                      dtype=dtype, rngs=rngs) if attention else None)
        self.freq_attn = (FrequencyAttention(out_ch, freq_heads, dtype=dtype, rngs=rngs)
                          if freq_attention else None)

    def __call__(self, x, emb, num_freqs, spatial=None):
        x = self.res(x, emb, spatial)
        if self.attn is not None:
            x = self.attn(x)
        if self.freq_attn is not None:
            x = self.freq_attn(x, num_freqs)
        return x


class MidBlock(nnx.Module):
    def __init__(self, ch, emb_dim, *, freq_attention, head_channels, freq_heads, dropout, dtype,
                 rngs, spatial_dim=None):
        kw = dict(emb_dim=emb_dim, spatial_dim=spatial_dim, dropout=dropout, zero_init_out=True,
                  dtype=dtype, rngs=rngs)
        self.res1 = ResBlock(ch, ch, **kw)
        self.attn = SpatialAttention(ch, head_channels=head_channels, zero_init_out=True,
                                     dtype=dtype, rngs=rngs)
        self.res2 = ResBlock(ch, ch, **kw)
        self.freq_attn = (FrequencyAttention(ch, freq_heads, dtype=dtype, rngs=rngs)
                          if freq_attention else None)

    def __call__(self, x, emb, num_freqs, spatial=None):
        x = self.res2(self.attn(self.res1(x, emb, spatial)), emb, spatial)
        if self.freq_attn is not None:
            x = self.freq_attn(x, num_freqs)
        return x


class UNet(nnx.Module):
    """LDM 2D U-Net predicting epsilon for latent frequency slices (see module docstring)."""

    def __init__(self, latent_channels: int = 4, image_feature_channels: int = 16,
                 base_channels: int = 128, channel_multipliers: Sequence[int] = (1, 4, 8),
                 num_res_blocks: int = 2, attention_levels: Sequence[int] = (1, 2),
                 head_channels: int = 32, *, frequency_attention: bool = False,
                 freq_attention_levels: Optional[Sequence[int]] = None,
                 freq_attention_heads: int = 8, dropout: float = 0.0,
                 image_conditioning: str = "input", remat: str = "none", dtype=jnp.float32,
                 rngs: nnx.Rngs):
        self.remat, self.remat_policy = remat_policy(remat)
        if image_conditioning not in IMAGE_CONDITIONING:
            raise ValueError(f"UNet: image_conditioning must be one of {IMAGE_CONDITIONING}, got "
                             f"{image_conditioning!r}")
        mults = tuple(channel_multipliers)
        check_sizes("UNet", latent_channels=latent_channels,
                    image_feature_channels=image_feature_channels, base_channels=base_channels,
                    channel_multipliers=mults, num_res_blocks=num_res_blocks,
                    head_channels=head_channels, freq_attention_heads=freq_attention_heads)
        n_levels = len(mults)
        attention_levels = set(attention_levels)
        freq_levels = set(range(n_levels) if freq_attention_levels is None
                          else freq_attention_levels)
        self.latent_channels = latent_channels
        self.image_feature_channels = image_feature_channels
        self.frequency_attention = frequency_attention
        self.image_conditioning = image_conditioning
        self.num_levels = n_levels
        self.num_res_blocks = num_res_blocks
        self.dtype = dtype
        mc = base_channels
        emb_dim = 4 * mc
        self.time_embed = EmbeddingMLP(mc, emb_dim, dtype=dtype, rngs=rngs)
        self.freq_embed = EmbeddingMLP(mc, emb_dim, dtype=dtype, rngs=rngs)
        self.conv_in = conv(latent_channels + image_feature_channels, mc, 3, dtype=dtype, rngs=rngs)

        spatial_dim = image_feature_channels if image_conditioning == "every_block" else None

        def block(cin, cout, level):
            return UNetBlock(cin, cout, emb_dim, attention=level in attention_levels,
                             freq_attention=frequency_attention and level in freq_levels,
                             head_channels=head_channels, freq_heads=freq_attention_heads,
                             dropout=dropout, dtype=dtype, rngs=rngs, spatial_dim=spatial_dim)

        ch, skip_chs = mc, [mc]
        down_blocks, downsamples = [], []
        for level, m in enumerate(mults):
            for _ in range(num_res_blocks):
                down_blocks.append(block(ch, mc * m, level))
                ch = mc * m
                skip_chs.append(ch)
            if level != n_levels - 1:
                downsamples.append(Downsample(ch, dtype=dtype, rngs=rngs))
                skip_chs.append(ch)
        self.down_blocks = nnx.List(down_blocks)
        self.downsamples = nnx.List(downsamples)
        self.mid = MidBlock(ch, emb_dim, freq_attention=frequency_attention,
                            head_channels=head_channels, freq_heads=freq_attention_heads,
                            dropout=dropout, dtype=dtype, rngs=rngs, spatial_dim=spatial_dim)
        up_blocks, upsamples = [], []
        for level in reversed(range(n_levels)):
            for _ in range(num_res_blocks + 1):
                up_blocks.append(block(ch + skip_chs.pop(), mc * mults[level], level))
                ch = mc * mults[level]
            if level != 0:
                upsamples.append(Upsample(ch, dtype=dtype, rngs=rngs))
        self.up_blocks = nnx.List(up_blocks)
        self.upsamples = nnx.List(upsamples)
        self.norm_out = Norm(ch, rngs=rngs)
        self.conv_out = conv(ch, latent_channels, 3, zero_init=True, dtype=dtype, rngs=rngs)

    @classmethod
    def from_config(cls, cfg, *, frequency_attention: bool = False, remat: str = "none",
                    dtype=jnp.float32, rngs: nnx.Rngs) -> "UNet":
        """Build from the ``unet`` block of ``configs/models.py`` (``remat``: ``model.remat``)."""
        return cls(cfg.latent_channels, cfg.image_feature_channels, cfg.base_channels,
                   tuple(cfg.channel_multipliers), cfg.num_res_blocks, tuple(cfg.attention_levels),
                   cfg.head_channels, frequency_attention=frequency_attention,
                   freq_attention_levels=tuple(cfg.get("freq_attention_levels",
                                                       range(len(cfg.channel_multipliers)))),
                   freq_attention_heads=cfg.freq_attention_heads, dropout=cfg.dropout,
                   image_conditioning=cfg.get("image_conditioning", "input"), remat=remat,
                   dtype=dtype, rngs=rngs)

    def _run(self, blk, x, emb, k, spatial):
        """One block, rematerialised when ``remat`` asks for it (``k`` stays a Python int)."""
        if not self.remat:
            return blk(x, emb, k, spatial)
        return nnx.remat(lambda m, x, e, s: m(x, e, k, s), policy=self.remat_policy)(
            blk, x, emb, spatial)

    def __call__(self, z, t, freq_index, image_features, *, drop_image=None):
        if z.ndim != 4 or z.shape[-1] != self.latent_channels:
            raise ValueError(f"UNet: z must be (B*K, h, w, {self.latent_channels}), got "
                             f"{tuple(z.shape)}")
        bk, h, w, _ = z.shape
        if (image_features.ndim != 4 or image_features.shape[1:] !=
                (h, w, self.image_feature_channels)):
            raise ValueError(f"UNet: image_features must be (B, {h}, {w}, "
                             f"{self.image_feature_channels}), got {tuple(image_features.shape)}")
        b = image_features.shape[0]
        if b == 0 or bk % b:
            raise ValueError(f"UNet: {bk} latent slices is not a multiple of {b} images")
        k = bk // b
        div = 2 ** (self.num_levels - 1)
        if h % div or w % div:
            raise ValueError(f"UNet: latent size {(h, w)} must be divisible by {div}")
        if drop_image is not None:
            keep = ~jnp.asarray(drop_image, bool).reshape(b)
            image_features = image_features * keep[:, None, None, None].astype(image_features.dtype)
        feats = jnp.repeat(image_features, k, axis=0)

        t = jnp.asarray(t)
        t = jnp.broadcast_to(t, (bk,)) if t.ndim == 0 else (
            jnp.repeat(t, k) if t.shape[0] == b and b != bk else t)
        if freq_index is None:
            freq_index = jnp.tile(jnp.arange(k), b)
        if t.shape != (bk,) or jnp.shape(freq_index) != (bk,):
            raise ValueError(f"UNet: t and freq_index must have shape ({bk},), got {t.shape} and "
                             f"{jnp.shape(freq_index)}")
        emb = self.time_embed(t) + self.freq_embed(freq_index)

        x = jnp.concatenate([z.astype(jnp.float32), feats.astype(jnp.float32)], axis=-1)
        hcur = self.conv_in(x)
        # "every_block": the features, average-pooled to each level, enter every ResBlock too.
        spatial = ([_pool(feats, 2 ** level) for level in range(self.num_levels)]
                   if self.image_conditioning == "every_block" else [None] * self.num_levels)
        skips = [hcur]
        nrb = self.num_res_blocks
        for i, blk in enumerate(self.down_blocks):
            level = i // nrb
            hcur = self._run(blk, hcur, emb, k, spatial[level])
            skips.append(hcur)
            if (i + 1) % nrb == 0 and level < len(self.downsamples):
                hcur = self.downsamples[level](hcur)
                skips.append(hcur)
        hcur = self._run(self.mid, hcur, emb, k, spatial[-1])
        for i, blk in enumerate(self.up_blocks):
            j = i // (nrb + 1)
            hcur = self._run(blk, jnp.concatenate([hcur, skips.pop().astype(hcur.dtype)], axis=-1),
                             emb, k, spatial[self.num_levels - 1 - j])
            if (i + 1) % (nrb + 1) == 0 and j < len(self.upsamples):
                hcur = self.upsamples[j](hcur)
        return self.conv_out(self.norm_out(hcur)).astype(jnp.float32)


class MotionDenoiser(nnx.Module):
    """The trained pair: ``image_encoder`` (ResNet) + ``unet``; ``denoiser(z, t, k, image)``.

    ``image: (B, H, W, 3)`` in [-1, 1]; the image is encoded once and repeated over its K slices.
    ``drop_image`` as in :class:`UNet` (null condition = zero features). Parameter paths:
    ``image_encoder/...`` and ``unet/...``; the stage filters above apply unchanged (the encoder is
    a stage-1 parameter, frozen in stage 2).
    """

    def __init__(self, image_encoder: ImageEncoder, unet: UNet, prediction: str = "epsilon",
                 alpha_bar=None):
        if prediction not in PREDICTIONS:
            raise ValueError(f"diffusion.prediction must be one of {PREDICTIONS}, got {prediction!r}")
        if prediction == "v" and alpha_bar is None:
            raise ValueError("a v-prediction denoiser needs the schedule's alpha_bar")
        self.image_encoder = image_encoder
        self.unet = unet
        self.prediction = prediction
        # ᾱ per training step, a static tuple (hashable, baked into the compiled function)
        self.alpha_bar = None if alpha_bar is None else tuple(float(a) for a in alpha_bar)

    @classmethod
    def from_config(cls, model_cfg, *, frequency_attention: bool = False, prediction="epsilon",
                    alpha_bar=None, dtype=jnp.float32, rngs: nnx.Rngs) -> "MotionDenoiser":
        return cls(ImageEncoder.from_config(model_cfg, dtype=dtype, rngs=rngs),
                   UNet.from_config(model_cfg.unet, frequency_attention=frequency_attention,
                                    remat=model_cfg.get("remat", "none"), dtype=dtype, rngs=rngs),
                   prediction, alpha_bar)

    def to_eps(self, output, z, t):
        """The network's `output` at `(z, t)` as the ε-prediction every sampler uses. With
        "v" the network predicts v = √ᾱ ε − √(1−ᾱ) x0, so ε = √(1−ᾱ) z + √ᾱ v: at high noise
        its output is (minus) the clean latent itself, which is where the image must decide
        the layout of the motion, while an ε-network's output there is almost z."""
        if self.prediction == "epsilon":
            return output
        abar = jnp.asarray(self.alpha_bar, jnp.float32)[jnp.asarray(t)].reshape(-1)
        if abar.shape[0] not in (1, z.shape[0]):       # one t per image for its K slices
            abar = jnp.repeat(abar, z.shape[0] // abar.shape[0])
        abar = abar.reshape((-1,) + (1,) * (z.ndim - 1))
        return (jnp.sqrt(1.0 - abar) * z + jnp.sqrt(abar) * output).astype(output.dtype)

    def eps(self, z, t, features, freq_index=None, drop_image=None):
        """ε̂(z_t | image features), whatever the network's parametrization."""
        return self.to_eps(self.unet(z, t, freq_index, features, drop_image=drop_image), z, t)

    def encode_image(self, image):
        return self.image_encoder(image)

    def guided_eps(self, z, t, features, weight):
        """Classifier-free guidance (1 + w)·ε(z | I0) − w·ε(z | ∅), the null condition being zero
        features, as one UNet call on a doubled batch: one copy of the UNet to compile instead of
        two, and bigger kernels. A Python `weight` of 0 runs the conditional pass alone."""
        if isinstance(weight, (int, float)) and weight == 0:
            return self.eps(z, t, features)
        both = jnp.concatenate([features, jnp.zeros_like(features)])
        out = self.unet(jnp.concatenate([z, z]), jnp.concatenate([t, t]), None, both)
        cond, uncond = jnp.split(out, 2)
        # the map output → ε is affine with the same (z, t) for both, so guiding either is the same
        return self.to_eps((1.0 + weight) * cond - weight * uncond, z, t)

    def __call__(self, z, t, freq_index, image, *, drop_image=None, image_features=None):
        feats = self.encode_image(image) if image_features is None else image_features
        return self.eps(z, t, feats, freq_index, drop_image)
