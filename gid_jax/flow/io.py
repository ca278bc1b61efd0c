"""Middlebury ``.flo`` optical-flow files.

Layout (Baker et al., "A Database and Evaluation Methodology for Optical Flow", 2011), all
little-endian: float32 magic ``202021.25`` (the bytes spell ``PIEH``), int32 width, int32 height,
then ``height * width * 2`` float32 values, row-major, ``u`` (x, right) and ``v`` (y, down)
interleaved per pixel. Values above 1e9 mean "unknown" by convention; they are kept as they are.
"""

from __future__ import annotations

import os

import numpy as np

from gid_jax.atomic import write_bytes_atomic

FLO_MAGIC = np.float32(202021.25)
_HEADER_BYTES = 12
# Refuse absurd headers before allocating memory for them.
_MAX_SIDE = 1 << 16


def write_flo(path, flow) -> None:
    """Write ``flow`` ``(H, W, 2)`` to ``path`` in Middlebury ``.flo`` format.

    The file is written under a temporary name in the same folder and moved into place with
    ``os.replace``, so a reader never sees a half-written file and an existing file is only
    replaced by a complete one.
    """
    path = os.fspath(path)
    arr = np.asarray(flow)
    if arr.ndim != 3 or arr.shape[2] != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"write_flo({path!r}): flow must have shape (H, W, 2), got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise ValueError(f"write_flo({path!r}): flow must be real numbers, got dtype {arr.dtype}")
    height, width = arr.shape[:2]
    header = np.array([FLO_MAGIC], "<f4").tobytes() + np.array([width, height], "<i4").tobytes()
    body = np.ascontiguousarray(arr, dtype="<f4").tobytes()
    write_bytes_atomic(path, header + body, fsync=True)


def read_flo(path) -> np.ndarray:
    """Read a Middlebury ``.flo`` file into a float32 ``(H, W, 2)`` array."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ValueError(f"read_flo({path!r}): cannot read file: {e}") from e
    if len(data) < _HEADER_BYTES:
        raise ValueError(
            f"read_flo({path!r}): not a .flo file: {len(data)} bytes is shorter than the "
            f"{_HEADER_BYTES}-byte header"
        )
    magic = np.frombuffer(data, "<f4", count=1)[0]
    if magic != FLO_MAGIC:
        raise ValueError(
            f"read_flo({path!r}): not a .flo file: magic number {magic!r} != {float(FLO_MAGIC)}"
        )
    width, height = (int(x) for x in np.frombuffer(data, "<i4", count=2, offset=4))
    if not (0 < width <= _MAX_SIDE and 0 < height <= _MAX_SIDE):
        raise ValueError(f"read_flo({path!r}): invalid size width={width} height={height}")
    expected = _HEADER_BYTES + width * height * 2 * 4
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "has trailing bytes"
        raise ValueError(
            f"read_flo({path!r}): file {what}: {len(data)} bytes, expected {expected} for "
            f"{width}x{height} flow"
        )
    flow = np.frombuffer(data, "<f4", offset=_HEADER_BYTES).reshape(height, width, 2)
    return flow.astype(np.float32)  # native byte order, writable copy
