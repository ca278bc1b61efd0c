"""Frame and clip bookkeeping for the video metrics of docs/method.md §9.1.

* FID / KID: over all frames of the generated vs the real videos.
* FVD (window 16), FVD32 (window 32): I3D (Kinetics-400) logits of clips cut from each video
  (non-overlapping windows by default; ``stride`` overrides), Fréchet distance between the sets.
* DTFVD / DTFVD32: the same with an I3D trained on the Dynamic Textures Database (user weights).
* Sliding-window FID (window 30) and DTFVD (window 16) against the window's start frame: for every
  start s, the metric between generated and real frames/clips covering frames [s, s + window).

All videos are ``(N, T, H, W, 3)`` in [0, 1]; evaluation first center-crops to 256x128
(`center_crop`, docs/method.md §9.1). Feature extractors are any callables ``(N, ...) -> (N, D)`` (see
`gid_jax.eval.inception`, `gid_jax.eval.i3d`), so the bookkeeping is tested with cheap stand-ins.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from gid_jax.eval.frechet import frechet_distance_from_features
from gid_jax.eval.kid import kernel_inception_distance


def _videos(v, who) -> np.ndarray:
    v = np.asarray(v)
    if v.ndim != 5 or v.shape[-1] != 3:
        raise ValueError(f"{who}: videos must be (N, T, H, W, 3) in [0, 1], got {v.shape}")
    return v


def center_crop(frames, size=(128, 256)):
    """Center crop ``(..., H, W, C)`` to ``size=(h, w)`` (docs/method.md §9.1: 256x160 -> 256x128)."""
    frames = np.asarray(frames)
    h, w = frames.shape[-3:-1]
    ch, cw = size
    if ch > h or cw > w:
        raise ValueError(f"center_crop: crop {ch}x{cw} larger than frames {h}x{w}")
    y, x = (h - ch) // 2, (w - cw) // 2
    return frames[..., y:y + ch, x:x + cw, :]


def window_starts(num_frames: int, window: int, stride: Optional[int] = None) -> np.ndarray:
    """Start frames of the windows ``[s, s + window)`` that fit in ``num_frames`` (stride default
    = window: non-overlapping)."""
    stride = window if stride is None else stride
    if window < 1 or stride < 1:
        raise ValueError(f"window_starts: window and stride must be >= 1, got {window}, {stride}")
    if num_frames < window:
        raise ValueError(f"window_starts: videos have {num_frames} frames, fewer than the window {window}")
    return np.arange(0, num_frames - window + 1, stride)


def split_windows(videos, window: int, stride: Optional[int] = None) -> np.ndarray:
    """``(N, T, ...)`` -> clips ``(N * S, window, ...)`` (video-major order)."""
    videos = np.asarray(videos)
    starts = window_starts(videos.shape[1], window, stride)
    clips = np.stack([videos[:, s:s + window] for s in starts], 1)
    return clips.reshape((-1, window) + videos.shape[2:])


def frame_features(videos, extractor: Callable) -> np.ndarray:
    """Per-frame features ``(N, T, D)`` of ``(N, T, H, W, 3)`` videos."""
    v = _videos(videos, "frame_features")
    n, t = v.shape[:2]
    f = np.asarray(extractor(v.reshape((n * t,) + v.shape[2:])))
    return f.reshape(n, t, -1)


def window_features(videos, extractor: Callable, window: int, stride: Optional[int] = None) -> np.ndarray:
    """Per-window clip features ``(N, S, D)`` for the windows of `window_starts`."""
    v = _videos(videos, "window_features")
    n = v.shape[0]
    f = np.asarray(extractor(split_windows(v, window, stride)))
    return f.reshape(n, -1, f.shape[-1])


def fid_kid_from_frame_features(gen, real, kid_subsets: int = 100, kid_subset_size: int = 1000,
                                seed: int = 0) -> dict:
    """FID and KID over all frames; ``gen``, ``real``: ``(N, T, D)`` or ``(N, D)`` features."""
    g = np.asarray(gen).reshape(-1, np.shape(gen)[-1])
    r = np.asarray(real).reshape(-1, np.shape(real)[-1])
    out = {"fid": frechet_distance_from_features(g, r)}
    kid = kernel_inception_distance(g, r, num_subsets=kid_subsets, subset_size=kid_subset_size, seed=seed)
    out.update(kid)
    out["kid_x100"] = 100.0 * kid["kid"]
    return out


def fvd_from_window_features(gen, real) -> float:
    """FVD over all clips; ``gen``, ``real``: ``(N, S, D)`` or ``(N, D)`` clip features."""
    g = np.asarray(gen).reshape(-1, np.shape(gen)[-1])
    r = np.asarray(real).reshape(-1, np.shape(real)[-1])
    return frechet_distance_from_features(g, r)


def sliding_fd_from_features(gen, real, window: int = 1, stride: int = 1):
    """Per-start Fréchet distance. With per-frame features ``(N, T, D)`` and ``window > 1`` (the
    sliding FID), start s pools the frames [s, s+window) of all videos; with per-window clip
    features ``(N, S, D)`` and ``window=1`` (the sliding DTFVD), entry s is compared directly.
    Returns ``(starts, values)``."""
    gen, real = np.asarray(gen, np.float64), np.asarray(real, np.float64)
    if gen.ndim != 3 or real.ndim != 3 or gen.shape[1:] != real.shape[1:]:
        raise ValueError(f"sliding_fd_from_features: need (N, T, D) features with equal T, D; got "
                         f"{gen.shape} and {real.shape}")
    starts = window_starts(gen.shape[1], window, stride)
    vals = np.array([frechet_distance_from_features(gen[:, s:s + window].reshape(-1, gen.shape[2]),
                                                    real[:, s:s + window].reshape(-1, real.shape[2]))
                     for s in starts])
    return starts, vals


def evaluate_videos(gen_videos, real_videos, *, inception: Optional[Callable] = None,
                    i3d: Optional[Callable] = None, dtdb_i3d: Optional[Callable] = None,
                    crop=(128, 256), fvd_windows=(16, 32), fvd_stride: Optional[int] = None,
                    sliding_fid_window: int = 30, sliding_dtfvd_window: int = 16,
                    sliding_stride: int = 1, kid_subsets: int = 100, kid_subset_size: int = 1000,
                    seed: int = 0) -> dict:
    """The docs/method.md §9.1 metrics for generated vs real videos; metrics whose network is None are
    skipped. Returns scalars (``fid``, ``kid``, ``kid_x100``, ``fvd16``, ``fvd32``, ``dtfvd16``,
    ``dtfvd32``) and curves (``sliding_fid``, ``sliding_dtfvd``: ``(starts, values)``)."""
    g, r = _videos(gen_videos, "evaluate_videos"), _videos(real_videos, "evaluate_videos")
    if crop is not None:
        g, r = center_crop(g, crop), center_crop(r, crop)
    out = {}
    if inception is not None:
        fg, fr = frame_features(g, inception), frame_features(r, inception)
        out.update(fid_kid_from_frame_features(fg, fr, kid_subsets, kid_subset_size, seed))
        if sliding_fid_window and g.shape[1] >= sliding_fid_window:
            out["sliding_fid"] = sliding_fd_from_features(fg, fr, sliding_fid_window, sliding_stride)
    for prefix, net in (("fvd", i3d), ("dtfvd", dtdb_i3d)):
        if net is None:
            continue
        for w in fvd_windows:
            if g.shape[1] >= w:
                out[f"{prefix}{w}"] = fvd_from_window_features(window_features(g, net, w, fvd_stride),
                                                               window_features(r, net, w, fvd_stride))
        if prefix == "dtfvd" and sliding_dtfvd_window and g.shape[1] >= sliding_dtfvd_window:
            wg = window_features(g, net, sliding_dtfvd_window, sliding_stride)
            wr = window_features(r, net, sliding_dtfvd_window, sliding_stride)
            starts, vals = sliding_fd_from_features(wg, wr, 1, 1)
            out["sliding_dtfvd"] = (starts * sliding_stride, vals)
    return out
