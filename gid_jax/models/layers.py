"""Shared building blocks of the VAE, the denoising U-Net and the image encoder (one place each).

All blocks are Flax NNX, NHWC, parameters float32 (``param_dtype``) with a compute ``dtype``
(e.g. ``jnp.bfloat16``). Normalisations and softmax run in float32 and cast back. Every parameter
carries logical axis names (:mod:`gid_jax.models.sharding`).

Blocks (LDM / ADM architecture):

* :func:`conv`, :func:`linear` — annotated ``nnx.Conv`` / ``nnx.Linear`` (optionally zero-init).
* :class:`Norm` — GroupNorm (32 groups, or fewer for narrow layers) [+ SiLU].
* :class:`ResBlock` — GN-SiLU-conv3x3 [+ embedding] - GN-SiLU-dropout-conv3x3, 1x1 skip if needed.
* :class:`Downsample` (3x3 conv, stride 2), :class:`Upsample` (nearest x2 + 3x3 conv).
* :class:`MultiHeadSelfAttention` over a sequence ``(N, L, C)``; :class:`SpatialAttention`
  (GroupNorm pre-norm, attention over the h*w positions, residual).
* :func:`sinusoidal_embedding`, :class:`EmbeddingMLP` — timestep / frequency-index embeddings.
* :func:`remat_policy`, :func:`remat_call` — the rematerialisation choices of ``model.remat``
  (U-Net), ``model.vae.remat`` and ``model.renderer.remat``, and one way to apply them.

Both attentions (spatial, and the U-Net's frequency attention, built on
:class:`MultiHeadSelfAttention`) call ``jax.nn.dot_product_attention``, which picks the fused
cuDNN kernel where it applies. ResBlock outputs are pinned to the ``('batch', 'height', 'width',
'channels')`` rules while a trainer traces its step (:func:`gid_jax.parallel.rules.constrain`; a
no-op elsewhere), so tensor-parallel partial results are gathered at block boundaries.
"""

from __future__ import annotations

import math
import numbers
from typing import Optional

import jax
import jax.numpy as jnp
from flax import nnx

from gid_jax.models.sharding import partitioned
from gid_jax.parallel.rules import constrain

__all__ = [
    "Downsample",
    "EmbeddingMLP",
    "MultiHeadSelfAttention",
    "Norm",
    "ResBlock",
    "SpatialAttention",
    "Upsample",
    "check_sizes",
    "conv",
    "linear",
    "remat_call",
    "remat_policy",
    "sinusoidal_embedding",
]

IMAGE_AXES = ("batch", "height", "width", "channels")   # logical names of an NHWC activation


def _save_dots_and_convs(prim, *_, **__) -> bool:
    return prim in (jax.lax.dot_general_p, jax.lax.conv_general_dilated_p)


# config.model.remat -> (remat on?, jax.checkpoint policy). "full": keep only block inputs and
# recompute everything in the backward pass (least memory); "dots_saveable": JAX's policy, which
# (JAX 0.10) keeps matmul *and* conv outputs; "convs_saveable": keep matmul and conv outputs,
# recompute only the cheap elementwise work (norms, SiLU) - the usual choice for a conv net.
REMAT_POLICIES = {
    "none": (False, None),
    "full": (True, None),
    "dots_saveable": (True, jax.checkpoint_policies.dots_saveable),
    "convs_saveable": (True, _save_dots_and_convs),
}


def remat_policy(name: str, field: str = "model.remat"):
    """``(enabled, policy)`` for a remat name; ``field`` is the config field named in the
    ValueError for an unknown name (each model has its own field)."""
    try:
        return REMAT_POLICIES[str(name)]
    except KeyError:
        raise ValueError(f"{field} must be one of {sorted(REMAT_POLICIES)}, got {name!r}") from None


def remat_call(name: str, module, *args):
    """``module(*args)``, rematerialised under remat choice ``name`` (validated at construction
    with :func:`remat_policy`), so every model wraps its blocks the same way."""
    enabled, policy = remat_policy(name)
    if not enabled:
        return module(*args)
    return nnx.remat(lambda m, *a: m(*a), policy=policy)(module, *args)


_default_kernel_init = nnx.initializers.lecun_normal()
_zeros = nnx.initializers.zeros_init()
_ones = nnx.initializers.ones_init()


def conv(in_ch: int, out_ch: int, kernel_size: int = 3, *, strides: int = 1, padding="SAME",
         zero_init: bool = False, dtype=jnp.float32, rngs: nnx.Rngs) -> nnx.Conv:
    """Annotated 2D conv: kernel ``(k, k, 'conv_in', 'conv_out')``, bias ``('conv_out',)``."""
    return nnx.Conv(
        in_ch, out_ch, (kernel_size, kernel_size), strides=strides, padding=padding,
        kernel_init=partitioned(_zeros if zero_init else _default_kernel_init,
                                None, None, "conv_in", "conv_out"),
        bias_init=partitioned(_zeros, "conv_out"),
        dtype=dtype, param_dtype=jnp.float32, rngs=rngs)


def linear(in_dim: int, out_dim: int, *, axes=("embed", "mlp"), zero_init: bool = False,
           dtype=jnp.float32, rngs: nnx.Rngs) -> nnx.Linear:
    """Annotated dense layer: kernel ``axes``, bias ``(axes[1],)``."""
    return nnx.Linear(
        in_dim, out_dim,
        kernel_init=partitioned(_zeros if zero_init else _default_kernel_init, *axes),
        bias_init=partitioned(_zeros, axes[1]),
        dtype=dtype, param_dtype=jnp.float32, rngs=rngs)


def check_sizes(where: str, **sizes) -> None:
    """Raises ValueError naming the first size (an int, or a tuple of them) that is not an
    integer >= 1: a zero width would otherwise surface as a ZeroDivisionError deep inside an
    initialiser, naming nothing the user set."""
    for name, value in sizes.items():
        values = tuple(value) if isinstance(value, (tuple, list)) else (value,)
        if not values or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                                 and v >= 1 for v in values):
            kind = "non-empty integers" if isinstance(value, (tuple, list)) else "an integer"
            raise ValueError(f"{where}: {name} must be {kind} >= 1, got {value!r}")


def _num_groups(channels: int, groups: int = 32) -> int:
    return math.gcd(groups, channels)


class Norm(nnx.Module):
    """GroupNorm (``gcd(32, C)`` groups, eps 1e-6, computed in float32) optionally followed by SiLU.

    The output has the input's dtype.
    """

    def __init__(self, channels: int, *, act: bool = True, rngs: nnx.Rngs):
        self.act = act
        self.norm = nnx.GroupNorm(
            channels, num_groups=_num_groups(channels), epsilon=1e-6, dtype=jnp.float32,
            param_dtype=jnp.float32, use_fast_variance=False,
            scale_init=partitioned(_ones, "norm"), bias_init=partitioned(_zeros, "norm"),
            rngs=rngs)

    def __call__(self, x):
        y = self.norm(x.astype(jnp.float32))
        if self.act:
            y = jax.nn.silu(y)
        return y.astype(x.dtype)


class ResBlock(nnx.Module):
    """LDM/ADM residual block, optionally conditioned on an embedding vector and on a spatial map
    ``spatial`` (N, h, w, spatial_dim) through a 1x1 conv, both added after conv1.

    ``zero_init_out`` zero-initialises the second conv (ADM's ``zero_module``): the block then starts
    as its skip path.
    """

    def __init__(self, in_ch: int, out_ch: int, *, emb_dim: Optional[int] = None,
                 spatial_dim: Optional[int] = None, dropout: float = 0.0,
                 zero_init_out: bool = False, dtype=jnp.float32, rngs: nnx.Rngs):
        self.norm1 = Norm(in_ch, rngs=rngs)
        self.conv1 = conv(in_ch, out_ch, 3, dtype=dtype, rngs=rngs)
        self.emb_proj = (linear(emb_dim, out_ch, axes=("embed", "conv_out"), dtype=dtype, rngs=rngs)
                         if emb_dim else None)
        self.spatial_proj = (conv(spatial_dim, out_ch, 1, dtype=dtype, rngs=rngs)
                             if spatial_dim else None)
        self.norm2 = Norm(out_ch, rngs=rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs) if dropout > 0 else None
        self.conv2 = conv(out_ch, out_ch, 3, zero_init=zero_init_out, dtype=dtype, rngs=rngs)
        self.skip = conv(in_ch, out_ch, 1, dtype=dtype, rngs=rngs) if in_ch != out_ch else None

    def __call__(self, x, emb=None, spatial=None):
        h = self.conv1(self.norm1(x))
        if self.emb_proj is not None:
            if emb is None:
                raise ValueError("ResBlock: this block needs an embedding, got None")
            h = h + self.emb_proj(jax.nn.silu(emb))[:, None, None, :].astype(h.dtype)
        if self.spatial_proj is not None:
            if spatial is None:
                raise ValueError("ResBlock: this block needs a spatial condition, got None")
            h = h + self.spatial_proj(spatial.astype(h.dtype))
        h = self.norm2(h)
        if self.dropout is not None:
            h = self.dropout(h)
        h = self.conv2(h)
        skip = self.skip(x) if self.skip is not None else x.astype(h.dtype)
        return constrain(skip + h, IMAGE_AXES)


class Downsample(nnx.Module):
    """3x3 conv with stride 2 (padding 1): (h, w) -> (ceil(h/2), ceil(w/2))."""

    def __init__(self, channels: int, *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.conv = conv(channels, channels, 3, strides=2, padding=((1, 1), (1, 1)), dtype=dtype,
                         rngs=rngs)

    def __call__(self, x):
        return self.conv(x)


class Upsample(nnx.Module):
    """Nearest-neighbour x2 followed by a 3x3 conv."""

    def __init__(self, channels: int, *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.conv = conv(channels, channels, 3, dtype=dtype, rngs=rngs)

    def __call__(self, x):
        x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
        return self.conv(x)


class MultiHeadSelfAttention(nnx.Module):
    """Multi-head self-attention over a sequence ``x: (N, L, C) -> (N, L, C)`` (no norm, no residual).

    Fused q/k/v projection (kernel ``('embed', 'heads')``), ``jax.nn.dot_product_attention`` (softmax
    in float32), output projection (kernel ``('heads', 'embed')``; ``zero_init_out`` zero-initialises
    it so the whole layer outputs exactly 0 at initialisation).
    """

    def __init__(self, channels: int, num_heads: int, *, zero_init_out: bool = False,
                 dtype=jnp.float32, rngs: nnx.Rngs):
        if channels % num_heads:
            raise ValueError(f"attention: {channels} channels not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.qkv = linear(channels, 3 * channels, axes=("embed", "heads"), dtype=dtype, rngs=rngs)
        self.out = linear(channels, channels, axes=("heads", "embed"), zero_init=zero_init_out,
                          dtype=dtype, rngs=rngs)

    def __call__(self, x):
        n, l, c = x.shape
        q, k, v = jnp.split(self.qkv(x), 3, axis=-1)
        shape = (n, l, self.num_heads, c // self.num_heads)
        o = jax.nn.dot_product_attention(q.reshape(shape), k.reshape(shape), v.reshape(shape))
        return self.out(o.reshape(n, l, c))


class SpatialAttention(nnx.Module):
    """LDM ``AttentionBlock``: GroupNorm -> self-attention over the h*w positions -> residual.

    ``head_channels`` sets heads = C // head_channels (LDM ``num_head_channels``); ``None`` = 1 head
    (the LDM autoencoder's ``AttnBlock``).
    """

    def __init__(self, channels: int, *, head_channels: Optional[int] = None,
                 zero_init_out: bool = False, dtype=jnp.float32, rngs: nnx.Rngs):
        heads = 1 if head_channels is None else max(1, channels // head_channels)
        self.norm = Norm(channels, act=False, rngs=rngs)
        self.attn = MultiHeadSelfAttention(channels, heads, zero_init_out=zero_init_out,
                                           dtype=dtype, rngs=rngs)

    def __call__(self, x):
        b, h, w, c = x.shape
        y = self.attn(self.norm(x).reshape(b, h * w, c)).reshape(b, h, w, c)
        return x.astype(y.dtype) + y


def sinusoidal_embedding(t, dim: int, max_period: float = 10000.0):
    """ADM timestep embedding: ``[cos(t f_i), sin(t f_i)]``, ``f_i = max_period^(-i/half)``.

    ``t``: (N,) (float or int) -> (N, dim) float32.
    """
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = jnp.asarray(t, jnp.float32)[:, None] * freqs[None]
    emb = jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)
    if dim % 2:
        emb = jnp.pad(emb, ((0, 0), (0, 1)))
    return emb


class EmbeddingMLP(nnx.Module):
    """Sinusoidal embedding of a scalar per example -> Linear -> SiLU -> Linear (ADM ``time_embed``)."""

    def __init__(self, in_dim: int, out_dim: int, *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.in_dim = in_dim
        self.fc1 = linear(in_dim, out_dim, dtype=dtype, rngs=rngs)
        self.fc2 = linear(out_dim, out_dim, axes=("mlp", "embed"), dtype=dtype, rngs=rngs)

    def __call__(self, t):
        return self.fc2(jax.nn.silu(self.fc1(sinusoidal_embedding(t, self.in_dim))))
