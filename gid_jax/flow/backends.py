"""The backend registry and the one function everything else calls: ``estimate_flow``.

Backends (see ``available_backends()``):

===================  =====================================================================
``jax_tvl1``          coarse-to-fine TV-L1 with warping, robust L1 data term on a
                      structure-texture image, median filtering (pure JAX: CPU/GPU/TPU,
                      jit once per shape, vmap over pairs). Best under brightness changes.
``opencv_brox``       coarse-to-fine variational (Brox et al. 2004 style: colour + gradient
                      constancy, Charbonnier penalties) from OpenCV's VariationalRefinement.
                      Lowest EPE on the procedural videos: the default.
``opencv_dis_medium`` DIS with variational refinement: fast and reasonably accurate.
``opencv_dis_fast``   DIS, fast preset.
``opencv_dis_ultrafast`` DIS, ultrafast preset.
``opencv_farneback``  Farnebäck polynomial expansion.
===================  =====================================================================
"""

from __future__ import annotations

from typing import Callable, Dict

import numpy as np

from gid_jax.flow import opencv as _cv

# Chosen from the endpoint-error table of ``benchmarks/flow_backends.py`` (3 procedural videos,
# 256x160, pairs (0, t) for t in 1..149): opencv_brox had the lowest EPE (0.10 px all pixels,
# 0.22 px on moving pixels) vs jax_tvl1 0.17 / 0.28, dis_medium 0.16 / 0.38, farneback 0.16 / 0.32.
# It is also the paper's kind of method (Brox et al. 2004 / Ce Liu). Use "jax_tvl1" to run on an
# accelerator.
DEFAULT_BACKEND = "opencv_brox"

# Frames are float in [0, 1]; a little overshoot (e.g. from bicubic resizing) is clipped, anything
# further out is almost certainly a 0..255 image and is refused.
_RANGE_SLACK = 0.05


def _jax_pair(i0: np.ndarray, i1: np.ndarray) -> np.ndarray:
    from gid_jax.flow import tvl1

    return np.asarray(tvl1.tvl1_flow_jit(i0, i1, tvl1.TVL1Config()))


def _jax_batch(i0: np.ndarray, frames: np.ndarray, chunk_size: int) -> np.ndarray:
    from gid_jax.flow import tvl1

    cfg = tvl1.TVL1Config()
    n = frames.shape[0]
    if n <= chunk_size:
        return np.asarray(tvl1.tvl1_flow_batch(i0, frames, cfg))
    out = []
    for start in range(0, n, chunk_size):
        chunk = frames[start:start + chunk_size]
        k = chunk.shape[0]
        if k < chunk_size:  # pad with copies so every chunk has one shape: one compile only
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], chunk_size - k, axis=0)], axis=0)
        out.append(np.asarray(tvl1.tvl1_flow_batch(i0, chunk, cfg))[:k])
    return np.concatenate(out, axis=0)


_PAIR: Dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "jax_tvl1": _jax_pair,
    "opencv_brox": _cv.brox_flow,
    "opencv_dis_medium": _cv.dis_medium_flow,
    "opencv_dis_fast": _cv.dis_fast_flow,
    "opencv_dis_ultrafast": _cv.dis_ultrafast_flow,
    "opencv_farneback": _cv.farneback_flow,
}


def available_backends() -> tuple:
    """Names accepted by ``estimate_flow(..., backend=name)``."""
    return tuple(_PAIR)


def _resolve(backend) -> str:
    name = DEFAULT_BACKEND if backend is None else backend
    if name not in _PAIR:
        raise ValueError(
            f"unknown optical-flow backend {name!r}; available: {', '.join(available_backends())}"
        )
    return name


def _check_image(img, what: str, shape=None) -> np.ndarray:
    arr = np.asarray(img)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"estimate_flow: {what} must have shape (H, W, 3), got {arr.shape}")
    if shape is not None and arr.shape != shape:
        raise ValueError(f"estimate_flow: {what} has shape {arr.shape}, expected {shape} like i0")
    if arr.shape[0] < 8 or arr.shape[1] < 8:
        raise ValueError(f"estimate_flow: {what} is {arr.shape[0]}x{arr.shape[1]}; need at least 8x8")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(
            f"estimate_flow: {what} must be a float image in [0, 1], got dtype {arr.dtype} "
            "(convert uint8 frames with img / 255.0)"
        )
    arr = arr.astype(np.float32, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"estimate_flow: {what} contains NaN or infinite values")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -_RANGE_SLACK or hi > 1.0 + _RANGE_SLACK:
        raise ValueError(
            f"estimate_flow: {what} values span [{lo:.3g}, {hi:.3g}]; expected [0, 1] "
            "(0..255 images must be divided by 255)"
        )
    return np.clip(arr, 0.0, 1.0)


def _check_result(flow: np.ndarray, name: str, shape) -> np.ndarray:
    flow = np.asarray(flow, dtype=np.float32)
    if flow.shape != tuple(shape):
        raise RuntimeError(f"optical-flow backend {name!r} returned shape {flow.shape}, expected {shape}")
    if not np.all(np.isfinite(flow)):
        raise RuntimeError(f"optical-flow backend {name!r} produced NaN/inf flow")
    return flow


def estimate_flow(i0, i1, backend=None) -> np.ndarray:
    """Optical flow from ``i0`` to ``i1``.

    Args:
      i0, i1: ``(H, W, 3)`` float RGB images in [0, 1].
      backend: a name from ``available_backends()``; ``None`` uses ``DEFAULT_BACKEND``.

    Returns:
      ``(H, W, 2)`` float32 ``flow`` with ``i0(p) ≈ i1(p + flow(p))``; channel 0 is x (right),
      channel 1 is y (down), in pixels.
    """
    name = _resolve(backend)
    a = _check_image(i0, "i0")
    b = _check_image(i1, "i1", a.shape)
    return _check_result(_PAIR[name](a, b), name, a.shape[:2] + (2,))


def estimate_flow_batch(i0, frames, backend=None, chunk_size: int = 16) -> np.ndarray:
    """Flow from one start frame ``i0`` ``(H, W, 3)`` to each of ``frames`` ``(N, H, W, 3)``.

    Returns ``(N, H, W, 2)`` float32, equal (up to float rounding) to ``N`` calls of
    ``estimate_flow(i0, frames[n], backend)``. The JAX backend runs ``chunk_size`` pairs at a time
    under ``vmap`` (the last chunk padded, so there is one compilation per image shape).
    """
    name = _resolve(backend)
    a = _check_image(i0, "i0")
    frames = np.asarray(frames)
    if frames.ndim != 4:
        raise ValueError(f"estimate_flow_batch: frames must have shape (N, H, W, 3), got {frames.shape}")
    if frames.shape[0] == 0:
        return np.zeros((0,) + a.shape[:2] + (2,), np.float32)
    if int(chunk_size) < 1:
        raise ValueError(f"estimate_flow_batch: chunk_size must be >= 1, got {chunk_size}")
    checked = np.stack([_check_image(f, f"frames[{n}]", a.shape) for n, f in enumerate(frames)])
    if name == "jax_tvl1":
        out = _jax_batch(a, checked, int(chunk_size))
    else:
        out = np.stack([_PAIR[name](a, f) for f in checked])
    return _check_result(out, name, checked.shape[:3] + (2,))
