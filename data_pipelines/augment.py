"""Motion-consistent data augmentation (docs/method.md §4.3) in TensorFlow ops, plus a JAX twin.

The paper trains with colour jitter, random horizontal flips, random image scaling, random
rotation within 5 degrees and random crops. Every geometric augmentation must also act on the
target motion, and on the displacement *vectors*, not only on the map that holds them:

* a spatial map A: p -> L (p - c_in) + c_out + t (an affine map of pixel coordinates: x right,
  y down, pixel centres at integers) moves image content from p to A(p);
* a point p with displacement d moves to p + d, so after augmentation the point A(p) moves to
  A(p + d) = A(p) + L d: the new displacement field is D'(A(p)) = L D(p);
* the spectral volume is linear in the trajectories and L does not depend on time, so each
  Fourier coefficient transforms like a displacement: both the Re (x, y) pair and the Im (x, y)
  pair are multiplied by L. Augment-then-reconstruct equals reconstruct-then-augment.

Here L = s * R(theta) * Flip with Flip = diag(-1, 1) when flipped (mirror the map and negate the
x displacement), s the scale factor (all coefficients are multiplied by s) and
R(theta) = [[cos, sin], [-sin, cos]]: with y pointing down this turns content and vectors
counter-clockwise *as seen on screen* by theta (an arrow pointing right, (1, 0), becomes
(cos, -sin): up and to the right). Rotation, scaling, flip and crop are fused into one affine
resampling (`tf.raw_ops.ImageProjectiveTransformV3`) over image and motion channels together.

Randomness is stateless: `sample_params(seed, ...)` draws every parameter from a `[2]` int seed,
so an example's augmentation is a pure function of (seed, example index). The parameters are a
small dict of tensors, and `apply_params` / `augment_batch_jax` apply them: the latter on the
accelerator (the fast path when host CPUs cannot resample 4K motion channels fast enough).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import numpy as np
import tensorflow as tf

FILL_MODES = ("nearest", "reflect", "wrap", "constant")
INTERPOLATIONS = ("bilinear", "nearest")
# Flat layout of the parameters when they travel with a batch (see `pack_params`).
PARAM_FIELDS = ("flip", "scale", "angle", "offset_x", "offset_y")


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Magnitudes of every augmentation (docs/method.md §4.3); `AugmentConfig.none()` turns all off.

    The paper gives the kinds and the 5-degree rotation bound; the other magnitudes are NOT
    RECOVERED and are our defaults.
    """

    flip_prob: float = 0.5              # probability of a horizontal flip
    min_scale: float = 1.0              # image (and motion) scale factor s ~ U[min, max]
    max_scale: float = 1.15
    max_rotation_deg: float = 5.0       # theta ~ U[-max, max] degrees
    random_crop: bool = True            # random crop position inside the scaled image (else centre)
    brightness: float = 0.1             # additive delta ~ U[-b, b]
    contrast: float = 0.1               # contrast factor ~ U[1-c, 1+c]
    saturation: float = 0.1             # saturation factor ~ U[1-s, 1+s]
    hue: float = 0.02                   # hue shift ~ U[-h, h] (fraction of the colour circle)
    fill_mode: str = "nearest"          # what the resampling reads outside the source frame
    interpolation: str = "bilinear"

    def __post_init__(self):
        if not 0.0 <= self.flip_prob <= 1.0:
            raise ValueError(f"flip_prob must be in [0, 1], got {self.flip_prob}")
        if not 0.0 < self.min_scale <= self.max_scale:
            raise ValueError(f"need 0 < min_scale <= max_scale, got {self.min_scale}, {self.max_scale}")
        if not 0.0 <= self.max_rotation_deg < 90.0:
            raise ValueError(f"max_rotation_deg must be in [0, 90), got {self.max_rotation_deg}")
        for name in ("brightness", "contrast", "saturation", "hue"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.contrast >= 1 or self.saturation >= 1 or self.hue > 0.5:
            raise ValueError("contrast and saturation must be < 1 and hue <= 0.5")
        if self.fill_mode not in FILL_MODES:
            raise ValueError(f"fill_mode must be one of {FILL_MODES}, got {self.fill_mode!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}")

    @classmethod
    def none(cls) -> "AugmentConfig":
        return cls(flip_prob=0.0, min_scale=1.0, max_scale=1.0, max_rotation_deg=0.0,
                   random_crop=False, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0)

    @classmethod
    def from_config(cls, config: Any) -> "AugmentConfig":
        """From an `AugmentConfig`, a dict or an ml_collections ConfigDict (unknown keys rejected)."""
        if config is None:
            return cls.none()
        if isinstance(config, cls):
            return config
        if hasattr(config, "to_dict"):
            config = config.to_dict()
        if not isinstance(config, Mapping):
            raise TypeError(f"augmentation config must be a mapping, got {type(config).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(config) - names
        if unknown:
            raise ValueError(f"unknown augmentation fields {sorted(unknown)}; known: {sorted(names)}")
        return cls(**dict(config))

    @property
    def resamples(self) -> bool:
        """Whether geometry needs interpolation (scale or rotation), not only flip + integer crop."""
        return self.max_scale != 1.0 or self.min_scale != 1.0 or self.max_rotation_deg != 0.0

    @property
    def jitters(self) -> bool:
        return any((self.brightness, self.contrast, self.saturation, self.hue))


# --------------------------------------------------------------------------------------------
# parameters
# --------------------------------------------------------------------------------------------

def sample_params(seed, config: AugmentConfig, input_hw, output_hw) -> dict[str, tf.Tensor]:
    """Draws one example's augmentation parameters from a `[2]` integer seed (stateless).

    Returns float32 scalars: 'flip' (0 or 1), 'scale', 'angle' (radians, counter-clockwise on
    screen), 'offset_x', 'offset_y' (crop offset of the output centre from the scaled image's
    centre, in output pixels), and 'jitter' (4,): brightness delta, contrast factor, saturation
    factor, hue delta.
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=9)

    def uniform(i, lo, hi):
        return tf.random.stateless_uniform([], seeds[i], minval=lo, maxval=hi, dtype=tf.float32)

    cfg = config
    flip = tf.cast(uniform(0, 0.0, 1.0) < cfg.flip_prob, tf.float32)
    scale = uniform(1, cfg.min_scale, cfg.max_scale) if cfg.max_scale > cfg.min_scale else tf.constant(cfg.min_scale, tf.float32)
    max_angle = math.radians(cfg.max_rotation_deg)
    angle = uniform(2, -max_angle, max_angle) if max_angle > 0 else tf.constant(0.0, tf.float32)
    in_h, in_w = (tf.cast(v, tf.float32) for v in input_hw)
    out_h, out_w = (float(v) for v in output_hw)
    # Room for the output window inside the scaled source (axis-aligned); rotation corners
    # beyond it read `fill_mode`.
    room_x = tf.maximum(scale * in_w - out_w, 0.0) / 2.0
    room_y = tf.maximum(scale * in_h - out_h, 0.0) / 2.0
    if cfg.random_crop:
        offset_x = uniform(3, -1.0, 1.0) * room_x
        offset_y = uniform(4, -1.0, 1.0) * room_y
        if not cfg.resamples:   # keep pure flip + crop exact: integer shifts need no interpolation
            offset_x, offset_y = _align(offset_x, in_w, out_w), _align(offset_y, in_h, out_h)
    else:
        offset_x = offset_y = tf.constant(0.0, tf.float32)
        if not cfg.resamples:
            offset_x, offset_y = _align(offset_x, in_w, out_w), _align(offset_y, in_h, out_h)
    jitter = tf.stack([
        uniform(5, -cfg.brightness, cfg.brightness) if cfg.brightness else tf.constant(0.0),
        uniform(6, 1 - cfg.contrast, 1 + cfg.contrast) if cfg.contrast else tf.constant(1.0),
        uniform(7, 1 - cfg.saturation, 1 + cfg.saturation) if cfg.saturation else tf.constant(1.0),
        uniform(8, -cfg.hue, cfg.hue) if cfg.hue else tf.constant(0.0),
    ])
    return {"flip": flip, "scale": scale, "angle": angle, "offset_x": offset_x,
            "offset_y": offset_y, "jitter": jitter}


def _align(offset, in_len, out_len):
    """Rounds a crop offset so that source pixel centres land on output pixel centres."""
    half = (in_len - out_len) / 2.0           # source centre minus output centre
    return tf.round(offset + half) - half


def make_params(flip=False, scale=1.0, angle_deg=0.0, offset=(0.0, 0.0), jitter=(0.0, 1.0, 1.0, 0.0)):
    """Explicit parameters (for tests and tools), in the layout `sample_params` returns."""
    return {"flip": tf.constant(float(flip)), "scale": tf.constant(float(scale)),
            "angle": tf.constant(math.radians(angle_deg), tf.float32),
            "offset_x": tf.constant(float(offset[0])), "offset_y": tf.constant(float(offset[1])),
            "jitter": tf.constant(jitter, tf.float32)}


def pack_params(params) -> tf.Tensor:
    """Geometric parameters as one float32 vector `(5,)` in `PARAM_FIELDS` order."""
    return tf.stack([tf.cast(params[k], tf.float32) for k in PARAM_FIELDS])


def _xp(a):
    """The array namespace of `a`: tf, jax.numpy or numpy."""
    if isinstance(a, (tf.Tensor, tf.Variable)):
        return tf.math
    if type(a).__module__.startswith("jax"):
        import jax.numpy as jnp
        return jnp
    return np


def linear_part(flip, scale, angle):
    """L = s * R(angle) * Flip as four scalars (l00, l01, l10, l11); works for tf, np and jnp."""
    xp = _xp(angle)
    c, s_ = xp.cos(angle), xp.sin(angle)
    fx = 1.0 - 2.0 * flip                      # -1 when flipped
    return scale * c * fx, scale * s_, -scale * s_ * fx, scale * c


def inverse_affine(flip, scale, angle, offset_x, offset_y, input_hw, output_hw):
    """Output -> input pixel map p = M (p' - c_out - t) + c_in, as (m00, m01, b0, m10, m11, b1)."""
    xp = _xp(angle)
    c, s_ = xp.cos(angle), xp.sin(angle)
    fx = 1.0 - 2.0 * flip
    # M = L^-1 = Flip^-1 R(-angle) / s = diag(fx, 1) [[c, -s], [s, c]] / s
    m00, m01, m10, m11 = fx * c / scale, -fx * s_ / scale, s_ / scale, c / scale
    in_h, in_w = input_hw
    out_h, out_w = output_hw
    ux = (out_w - 1) / 2.0 + offset_x
    uy = (out_h - 1) / 2.0 + offset_y
    b0 = (in_w - 1) / 2.0 - (m00 * ux + m01 * uy)
    b1 = (in_h - 1) / 2.0 - (m10 * ux + m11 * uy)
    return m00, m01, b0, m10, m11, b1


# --------------------------------------------------------------------------------------------
# TensorFlow application (inside tf.data map)
# --------------------------------------------------------------------------------------------

def color_jitter(image, jitter):
    """Brightness, contrast, saturation, hue (in that order) on a float image in [0, 1]."""
    image = tf.image.adjust_brightness(image, jitter[0])
    image = tf.image.adjust_contrast(image, jitter[1])
    image = tf.image.adjust_saturation(image, jitter[2])
    image = tf.image.adjust_hue(image, jitter[3])
    return tf.clip_by_value(image, 0.0, 1.0)


def transform_vectors(fields, l00, l01, l10, l11):
    """Multiplies every (x, y) pair of the last axis (static, even length) by L.

    One contraction with the block-diagonal kron(I, L^T) over the channel axis: much faster in
    TF than slicing the interleaved x and y channels apart.
    """
    channels = fields.shape[-1]
    if channels is None or channels % 2:
        raise ValueError(f"vector fields need a static, even channel count, got {channels}")
    lt = tf.stack([tf.stack([l00, l10]), tf.stack([l01, l11])])           # L^T (2, 2)
    block = tf.einsum("ij,ab->iajb", tf.eye(channels // 2, dtype=lt.dtype), lt)
    return tf.einsum("...c,cd->...d", fields, tf.reshape(block, [channels, channels]))


def apply_geometry(params, config: AugmentConfig, output_hw, image=None, fields=None):
    """Applies the flip/scale/rotation/crop of `params` to an image and to vector fields.

    image: `(H0, W0, C)` float, or None. fields: `(N, H0, W0, 2M)` float, M (x, y) pairs per
    pixel (a spectral volume `(K, H, W, 4)` = [Re x, Re y, Im x, Im y]; a trajectory
    `(T, H, W, 2)`), or None. Returns `(image, fields)` at `output_hw`, the vectors multiplied by L.
    """
    out_h, out_w = output_hw
    ref = image if image is not None else fields[0]
    in_hw = tf.shape(ref)[0], tf.shape(ref)[1]
    in_hw_f = tuple(tf.cast(v, tf.float32) for v in in_hw)
    flip, scale, angle = params["flip"], params["scale"], params["angle"]

    parts, sizes = [], []
    if image is not None:
        parts.append(image)
        sizes.append(tf.shape(image)[-1])
    if fields is not None:
        n, c = tf.shape(fields)[0], tf.shape(fields)[-1]
        parts.append(tf.reshape(tf.transpose(fields, [1, 2, 0, 3]), [in_hw[0], in_hw[1], n * c]))
        sizes.append(n * c)
    stacked = parts[0] if len(parts) == 1 else tf.concat(parts, axis=-1)

    if not config.resamples:
        warped = _flip_and_crop(stacked, params, in_hw_f, output_hw)
    else:
        m = inverse_affine(flip, scale, angle, params["offset_x"], params["offset_y"], in_hw_f, output_hw)
        transform = tf.stack([*m, 0.0, 0.0])[None]
        warped = tf.raw_ops.ImageProjectiveTransformV3(
            images=stacked[None], transforms=transform, output_shape=[out_h, out_w],
            fill_value=0.0, interpolation=config.interpolation.upper(),
            fill_mode=config.fill_mode.upper())[0]

    out_image = out_fields = None
    if image is not None:
        out_image = warped[..., :sizes[0]] if fields is not None else warped
    if fields is not None:
        flat = warped[..., sizes[0]:] if image is not None else warped
        out_fields = tf.transpose(tf.reshape(flat, [out_h, out_w, n, -1]), [2, 0, 1, 3])
        out_fields = tf.ensure_shape(out_fields, [None, out_h, out_w, fields.shape[-1]])
        out_fields = transform_vectors(out_fields, *linear_part(flip, scale, angle))
    return out_image, out_fields


def _flip_and_crop(stacked, params, in_hw_f, output_hw):
    """Exact path without interpolation: mirror (maybe), then an integer-offset window.

    With M = diag(+-1, 1) the window covers source columns (W0 - W) / 2 - t_x ... in mirrored
    coordinates (x -> W0 - 1 - x) as well as in plain ones, and rows (H0 - H) / 2 - t_y ...
    """
    out_h, out_w = output_hw
    stacked = tf.cond(params["flip"] > 0.5, lambda: tf.reverse(stacked, axis=[1]), lambda: stacked)
    top = tf.cast(tf.round((in_hw_f[0] - out_h) / 2.0 - params["offset_y"]), tf.int32)
    left = tf.cast(tf.round((in_hw_f[1] - out_w) / 2.0 - params["offset_x"]), tf.int32)
    return tf.slice(stacked, [top, left, 0], [out_h, out_w, -1])


def augment_example(image, spectral_volume, params, config: AugmentConfig, output_hw):
    """The full host-side augmentation of one example.

    image: float32 `(H0, W0, 3)` in [0, 1]; spectral_volume: float32 `(K, H0, W0, 4)` in pixels.
    Colour jitter (image only) first, then the geometry on both.
    """
    if config.jitters:
        image = color_jitter(image, params["jitter"])
    return apply_geometry(params, config, output_hw, image=image, fields=spectral_volume)


def normalize_tf(spectral_volume, scales):
    """Frequency adaptive normalisation sign(S) * sqrt(|S| / s_k) on `(K, H, W, 4)` (docs/method.md §3)."""
    inv = tf.reshape(1.0 / tf.constant(np.asarray(scales, np.float32)), [-1, 1, 1, 1])
    return tf.sign(spectral_volume) * tf.sqrt(tf.abs(spectral_volume) * inv)


# --------------------------------------------------------------------------------------------
# JAX application (on the accelerator, batched)
# --------------------------------------------------------------------------------------------

def augment_batch_jax(batch, output_hw, config: AugmentConfig | None = None, normalizer_scales=None):
    """Geometric augmentation (+ normalisation) of a batch on the device, in jnp.

    `batch` as produced by the training input with `geometry="device"`: 'image' `(B, H0, W0, 3)`,
    'spectral_volume' `(B, K, H0, W0, 4)` unnormalised, 'augment_params' `(B, 5)`
    (`PARAM_FIELDS`). Same semantics as the host path (`apply_geometry` with bilinear
    interpolation; fill modes 'nearest' and 'constant'), then sign-sqrt normalisation when
    `normalizer_scales` is given. Jit-able; returns a new dict with the other keys passed through.
    """
    import jax
    import jax.numpy as jnp

    from gid_jax.motion.normalization import frequency_normalize

    config = config or AugmentConfig()
    if config.fill_mode not in ("nearest", "constant") or config.interpolation != "bilinear":
        raise ValueError("augment_batch_jax supports bilinear interpolation with fill_mode "
                         f"'nearest' or 'constant', got {config.interpolation!r}/{config.fill_mode!r}")
    out_h, out_w = output_hw
    image, sv, p = batch["image"], batch["spectral_volume"], batch["augment_params"]
    b, k, in_h, in_w, _ = sv.shape

    def one(img, vol, prm):
        flip, scale, angle, ox, oy = (prm[i] for i in range(5))
        m00, m01, b0, m10, m11, b1 = inverse_affine(flip, scale, angle, ox, oy, (in_h, in_w), output_hw)
        yy, xx = jnp.meshgrid(jnp.arange(out_h, dtype=jnp.float32),
                              jnp.arange(out_w, dtype=jnp.float32), indexing="ij")
        sx = m00 * xx + m01 * yy + b0
        sy = m10 * xx + m11 * yy + b1
        stacked = jnp.concatenate(
            [img, jnp.transpose(vol, (1, 2, 0, 3)).reshape(in_h, in_w, k * 4)], axis=-1)
        warped = _bilinear(stacked, sx, sy, config.fill_mode)
        l00, l01, l10, l11 = linear_part(flip, scale, angle)
        mot = warped[..., 3:].reshape(out_h, out_w, k, 2, 2)
        x, y = mot[..., 0], mot[..., 1]
        mot = jnp.stack([l00 * x + l01 * y, l10 * x + l11 * y], axis=-1)
        mot = jnp.transpose(mot.reshape(out_h, out_w, k, 4), (2, 0, 1, 3))
        return warped[..., :3], mot

    new_image, new_sv = jax.vmap(one)(jnp.asarray(image, jnp.float32), jnp.asarray(sv, jnp.float32),
                                      jnp.asarray(p, jnp.float32))
    if normalizer_scales is not None:
        new_sv = frequency_normalize(new_sv, jnp.asarray(normalizer_scales, new_sv.dtype))
    out = {k_: v for k_, v in batch.items() if k_ != "augment_params"}
    out["image"], out["spectral_volume"] = new_image, new_sv
    return out


def _bilinear(x, sx, sy, fill_mode):
    """Samples `x (H, W, C)` at float coordinates like ImageProjectiveTransformV3 (BILINEAR)."""
    import jax.numpy as jnp

    h, w = x.shape[:2]
    if fill_mode == "nearest":
        sx = jnp.clip(sx, 0.0, w - 1.0)
        sy = jnp.clip(sy, 0.0, h - 1.0)
    x0, y0 = jnp.floor(sx), jnp.floor(sy)
    wx, wy = sx - x0, sy - y0
    out = 0.0
    for dy, wgt_y in ((0, 1.0 - wy), (1, wy)):
        for dx, wgt_x in ((0, 1.0 - wx), (1, wx)):
            xi, yi = (x0 + dx).astype(jnp.int32), (y0 + dy).astype(jnp.int32)
            inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
            val = x[jnp.clip(yi, 0, h - 1), jnp.clip(xi, 0, w - 1)]
            out = out + jnp.where(inside, wgt_x * wgt_y, 0.0)[..., None] * val
    return out
