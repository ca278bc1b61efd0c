"""Safe readers for pretrained-network weight files (VGG-16/LPIPS, InceptionV3, I3D).

Weight files come from third-party packages (pickles, torch zips), so they are read without
executing anything they name: the unpicklers here rebuild only numpy arrays, dtypes, plain
containers and (for torch zips) tensors and stand-ins for TorchScript objects, and refuse every
other global. Neither torch nor the packages' own code is imported.
"""

from __future__ import annotations

import collections
import importlib.util
import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import Mapping, Optional

import numpy as np

__all__ = ["TorchObject", "WeightsFileError", "flatten_tree", "load_numpy_pickle",
           "packaged_file", "read_torch_zip", "torchscript_attributes"]


class WeightsFileError(ValueError):
    """A weight file is missing, unreadable or does not match its network."""


def packaged_file(env: str, package: Optional[str], rel: Optional[str]) -> Optional[str]:
    """``$env`` if set, else the file ``rel`` inside the installed ``package`` (found with
    ``importlib.util.find_spec``, so the package's code is never imported), else None."""
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


# --------------------------------------------------------------------------------------------
# pickles of numpy arrays

_NUMPY_CORE = ("numpy.core.multiarray", "numpy._core.multiarray")


class _NumpyUnpickler(pickle.Unpickler):
    """Rebuilds only numpy arrays, dtypes, scalars and plain containers."""

    def find_class(self, module, name):
        if name == "_reconstruct" and module in _NUMPY_CORE:
            return np.ndarray.__reduce__(np.zeros(0))[0]  # numpy's _reconstruct, any version
        if name == "scalar" and module in _NUMPY_CORE:
            return np.float32(0).__reduce__()[0]
        if (module, name) in (("numpy", "ndarray"), ("numpy", "dtype")):
            return getattr(np, name)
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only numpy arrays allowed)")


def load_numpy_pickle(file) -> object:
    """Unpickle an open binary file that may hold only numpy arrays and containers; raises
    `pickle.UnpicklingError` ("refusing to load ...") for anything else."""
    return _NumpyUnpickler(file).load()


# --------------------------------------------------------------------------------------------
# torch zip files (torch.save / TorchScript), without torch

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


def read_torch_zip(path, error: type[Exception] = WeightsFileError) -> object:
    """Unpickle the ``data.pkl`` of a torch zip file (``torch.save`` / TorchScript) without torch.

    Tensors become numpy arrays (read from the zip's ``data/N`` storages); TorchScript modules
    become `TorchObject` with their attributes in ``.state``; only these and plain containers are
    reconstructed (anything else is refused). Failures raise ``error`` (a `WeightsFileError`
    subclass of the caller's choice) naming the file.
    """
    path = str(path)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise error(f"{path}: not a readable torch zip file ({e})") from None
    with zf:
        pkls = [n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if not pkls:
            raise error(f"{path}: torch zip without a data.pkl")
        prefix = pkls[0][: -len("data.pkl")]
        try:
            return _TorchZipUnpickler(io.BytesIO(zf.read(pkls[0])), zf, prefix).load()
        except (pickle.UnpicklingError, KeyError, ValueError, EOFError) as e:
            raise error(f"{path}: cannot read {pkls[0]}: {e}") from None


def flatten_tree(tree, prefix: str = "", sep: str = "/") -> dict:
    """Flatten nested dicts / `TorchObject` into ``{"a/b/c": np.ndarray}`` (other leaves, such as
    TorchScript's int attributes, are dropped)."""
    out = {}
    if isinstance(tree, TorchObject):
        tree = tree.state
    if isinstance(tree, Mapping):
        for k, v in tree.items():
            out.update(flatten_tree(v, f"{prefix}{sep}{k}" if prefix else str(k), sep))
    elif isinstance(tree, np.ndarray):
        out[prefix] = tree
    return out


def torchscript_attributes(tree, prefix="") -> dict:
    """``{module path: {attribute: value}}`` of the non-array attributes (stride, padding...)."""
    out = {}
    if isinstance(tree, TorchObject):
        attrs = {k: v for k, v in tree.state.items()
                 if not isinstance(v, (TorchObject, np.ndarray, Mapping))}
        out[prefix] = attrs
        for k, v in tree.state.items():
            if isinstance(v, TorchObject):
                out.update(torchscript_attributes(v, f"{prefix}/{k}" if prefix else k))
    return out


