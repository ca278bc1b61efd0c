"""FID / KID / FVD / DTFVD and their sliding-window curves over sets of clips of any length,
each number next to the sample count it was computed from.

`gid eval` scores a cell clip by clip: `clip_features` turns one video (real or generated,
``(n, H, W, 3)`` in [0, 1]) into the features every metric needs, so no frames are held beyond
one clip, and `score_feature_sets` compares the generated clips' features with the real ones
(clip i generated from real clip i, so both have the same length). Unlike
`gid_jax.eval.video_windows.evaluate_videos` (equal-length ``(N, T, ...)`` arrays), clips may
differ in length: a window counts where a clip is long enough for it, and every point of a
sliding-window curve pools the clips that reach it.

Why the counts: the Fréchet distance of Gaussians fitted to n samples is biased upward by
roughly O(D/n) (Chong & Forsyth 2020, "Effectively Unbiased FID"), so FID on a few hundred
frames or FVD on a few dozen windows is far above what the same model scores on thousands:
compare rows of one table (same clips, same counts), never with the paper's numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

from gid_jax.eval.frechet import frechet_distance_from_features
from gid_jax.eval.kid import kernel_inception_distance

BIAS_NOTE = ("Fréchet distances and KID are biased by the sample size (FID of n samples is "
             "biased upward by ~O(D/n)): with a few hundred frames or a few dozen windows they "
             "are not comparable with the paper's numbers; compare rows of this table, which "
             "share clips and counts")


@dataclass
class MetricSpec:
    """What to compute (fields of ``configs/eval.py`` ``metrics``)."""

    crop: Optional[tuple] = (128, 256)
    fvd_windows: tuple = (16, 32)
    fvd_stride: int = -1                 # <= 0: non-overlapping windows
    sliding_fid_window: int = 30
    sliding_dtfvd_window: int = 16
    sliding_stride: int = 1
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    seed: int = 0

    @classmethod
    def from_config(cls, m, seed: int = 0) -> "MetricSpec":
        crop = tuple(int(v) for v in m.crop) if m.get("crop") else None
        if crop is not None and (len(crop) != 2 or min(crop) < 1):
            raise ValueError(f"config.metrics.crop must be (height, width) > 0, got {m.crop!r}")
        windows = tuple(int(w) for w in m.fvd_windows)
        if any(w < 2 for w in windows):
            raise ValueError(f"config.metrics.fvd_windows must be >= 2 frames, got {m.fvd_windows!r}")
        for name, ok, want in (("sliding_fid_window", lambda v: v == 0 or v >= 2, "0 (off) or >= 2"),
                               ("sliding_dtfvd_window", lambda v: v == 0 or v >= 2, "0 (off) or >= 2"),
                               ("sliding_stride", lambda v: v >= 1, ">= 1"),
                               ("kid_subsets", lambda v: v >= 1, ">= 1"),
                               ("kid_subset_size", lambda v: v >= 2, ">= 2")):
            if not ok(int(m.get(name))):
                raise ValueError(f"config.metrics.{name} must be {want}, got {m.get(name)!r}")
        return cls(crop, windows, int(m.fvd_stride), int(m.sliding_fid_window),
                   int(m.sliding_dtfvd_window), int(m.sliding_stride), int(m.kid_subsets),
                   int(m.kid_subset_size), int(seed))


@dataclass
class Networks:
    """Feature extractors (``(N, ...) -> (N, D)``, e.g. `InceptionFeatures`, `I3DFeatures`);
    None skips their metrics (``notes`` may say why; a missing DTDB I3D always gets a note)."""

    inception: Optional[Callable] = None
    i3d: Optional[Callable] = None
    dtdb_i3d: Optional[Callable] = None
    notes: list = field(default_factory=list)
    identity: dict = field(default_factory=dict)   # weight files, for the real-feature cache key


DTFVD_SKIPPED = ("DTFVD/DTFVD32 skipped: no Dynamic-Textures I3D weights (no package ships them; "
                 "set config.metrics.dtdb_i3d_weights or $GID_DTFVD_I3D_WEIGHTS to a file in the "
                 "I3D format)")


def weight_paths(m) -> dict:
    """The weight files of ``config.metrics`` (a name or the packaged default), checked to exist:
    Inception and the Kinetics I3D are required (the error says how to install them); the DTDB
    I3D is "" unless given. Cheap: run before any sampling."""
    import os

    from gid_jax.eval import features

    paths = {"inception": m.get("inception_weights") or features.default_weights_path("inception_v3"),
             "i3d": m.get("i3d_weights") or features.default_weights_path("i3d_kinetics400"),
             "dtdb_i3d": m.get("dtdb_i3d_weights") or features.default_weights_path("i3d_dtdb") or ""}
    for key, net, field_name in (("inception", "inception_v3", "inception_weights"),
                                 ("i3d", "i3d_kinetics400", "i3d_weights"),
                                 ("dtdb_i3d", "i3d_dtdb", "dtdb_i3d_weights")):
        if key != "dtdb_i3d" and not paths[key]:
            raise features.FeatureWeightsError(f"config.metrics.{field_name}: no weights found: "
                                               + features.install_hint(net))
        if paths[key] and not os.path.isfile(paths[key]):
            raise features.FeatureWeightsError(f"config.metrics.{field_name}: {paths[key]} not found")
    return {k: str(v) for k, v in paths.items()}


def load_networks(m) -> Networks:
    """The real networks of ``config.metrics`` (`weight_paths`); the DTDB I3D only when a file
    is given."""
    from gid_jax.eval.i3d import I3DFeatures
    from gid_jax.eval.inception import InceptionFeatures

    paths = weight_paths(m)
    nets = Networks(identity=dict(paths))
    nets.inception = InceptionFeatures(paths["inception"], batch_size=int(m.inception_batch_size))
    nets.i3d = I3DFeatures(paths["i3d"], batch_size=int(m.i3d_batch_size))
    if paths["dtdb_i3d"]:
        nets.dtdb_i3d = I3DFeatures(paths["dtdb_i3d"], name="i3d_dtdb",
                                    batch_size=int(m.i3d_batch_size))
    return nets


def crop_frames(frames, crop) -> np.ndarray:
    frames = np.asarray(frames, np.float32)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"clip_features: frames must be (n, H, W, 3) in [0, 1], got {frames.shape}")
    if crop is None:
        return frames
    h, w = frames.shape[1:3]
    ch, cw = crop
    if ch > h or cw > w:
        raise ValueError(f"config.metrics.crop: {ch}x{cw} (HxW) is larger than the {h}x{w} frames")
    y, x = (h - ch) // 2, (w - cw) // 2
    return frames[:, y:y + ch, x:x + cw]


def _starts(n: int, window: int, stride: int) -> np.ndarray:
    return np.arange(0, n - window + 1, stride) if n >= window else np.zeros((0,), int)


def _window_features(frames, net, window: int, stride: int) -> np.ndarray:
    """Features of the windows ``[s, s + window)``, built a batch at a time (a 150-frame clip
    has 135 stride-1 windows: all at once would be 135 copies of the clip)."""
    starts = _starts(len(frames), window, stride)
    chunk = max(1, int(getattr(net, "batch_size", 8)))
    out = [np.asarray(net(np.stack([frames[s:s + window] for s in starts[i:i + chunk]])))
           for i in range(0, len(starts), chunk)]
    return np.concatenate(out) if out else np.zeros((0, int(getattr(net, "dim", 0))))


def clip_features(frames, nets: Networks, spec: MetricSpec) -> dict:
    """Everything the metrics need from one clip: ``frames`` (n, D) Inception features,
    ``fvd{w}`` / ``dtfvd{w}`` (windows, D) I3D features of its non-overlapping (or
    ``fvd_stride``) windows, ``sliding_dtfvd`` (windows, D) at ``sliding_stride``, and ``n``."""
    frames = crop_frames(frames, spec.crop)
    n = len(frames)
    out = {"n": np.asarray(n)}
    if nets.inception is not None:
        out["frames"] = np.asarray(nets.inception(frames), np.float32)
    for prefix, net in (("fvd", nets.i3d), ("dtfvd", nets.dtdb_i3d)):
        if net is None:
            continue
        for w in spec.fvd_windows:
            stride = w if spec.fvd_stride <= 0 else spec.fvd_stride
            out[f"{prefix}{w}"] = _window_features(frames, net, w, stride).astype(np.float32)
        if prefix == "dtfvd" and spec.sliding_dtfvd_window:
            out["sliding_dtfvd"] = _window_features(frames, net, spec.sliding_dtfvd_window,
                                                    spec.sliding_stride).astype(np.float32)
    return out


def _pool(sets: Sequence[dict], key: str) -> np.ndarray:
    parts = [s[key] for s in sets if key in s and len(s[key])]
    return np.concatenate(parts).astype(np.float64) if parts else np.zeros((0, 0))


def _frechet(gen, real, key, label, what, metrics, notes) -> None:
    g, r = _pool(gen, key), _pool(real, key)
    if len(g) < 2 or len(r) < 2:
        notes.append(f"{label} skipped: {min(len(g), len(r))} {what} (needs >= 2)")
        return
    metrics[label] = frechet_distance_from_features(g, r)
    metrics[f"{label}_{what}"] = float(len(g))


def score_feature_sets(gen: Sequence[dict], real: Sequence[dict], spec: MetricSpec,
                       nets: Optional[Networks] = None) -> tuple[dict, dict, list]:
    """(metrics, curves, notes) of generated vs real clips (lists of `clip_features`, clip i
    of each the same length). Metrics hold every number with its count (``fid`` and
    ``fid_frames``, ``fvd16`` and ``fvd16_windows``, ...); curves are ``{"starts", "values",
    "counts"}`` per sliding metric; notes say what was skipped and why."""
    if len(gen) != len(real):
        raise ValueError(f"score_feature_sets: {len(gen)} generated vs {len(real)} real clips")
    for i, (g, r) in enumerate(zip(gen, real)):
        if int(g["n"]) != int(r["n"]):
            raise ValueError(f"score_feature_sets: clip {i} has {int(g['n'])} generated and "
                             f"{int(r['n'])} real frames")
    metrics, curves, notes = {"clips": float(len(gen))}, {}, list(nets.notes if nets else [])
    if nets is not None and nets.dtdb_i3d is None and DTFVD_SKIPPED not in notes:
        notes.append(DTFVD_SKIPPED)
    if gen and "frames" in gen[0]:
        g, r = _pool(gen, "frames"), _pool(real, "frames")
        if len(g) >= 2:
            metrics["fid"] = frechet_distance_from_features(g, r)
            metrics["fid_frames"] = float(len(g))
            kid = kernel_inception_distance(g, r, num_subsets=spec.kid_subsets,
                                            subset_size=spec.kid_subset_size, seed=spec.seed)
            metrics.update(kid=kid["kid"], kid_std=kid["kid_std"], kid_x100=100.0 * kid["kid"],
                           kid_frames=float(len(g)),
                           kid_subset_size=float(min(spec.kid_subset_size, len(g))))
        else:
            notes.append("FID/KID skipped: fewer than 2 frames")
        curve = _sliding_fid(gen, real, spec)
        if curve is not None:
            _record_curve("sliding_fid", curve, metrics, curves)
        elif spec.sliding_fid_window:
            notes.append(f"sliding FID skipped: no clip has {spec.sliding_fid_window} frames")
    for prefix, present in (("fvd", gen and any(k.startswith("fvd") for k in gen[0])),
                            ("dtfvd", gen and any(k.startswith("dtfvd") for k in gen[0]))):
        if not present:
            continue
        for w in spec.fvd_windows:
            _frechet(gen, real, f"{prefix}{w}", f"{prefix}{w}", "windows", metrics, notes)
    if gen and "sliding_dtfvd" in gen[0]:
        curve = _sliding_windows(gen, real, spec)
        if curve is not None:
            _record_curve("sliding_dtfvd", curve, metrics, curves)
        elif spec.sliding_dtfvd_window:
            notes.append(f"sliding DTFVD skipped: fewer than 2 clips reach "
                         f"{spec.sliding_dtfvd_window} frames")
    return metrics, curves, notes


def _record_curve(name: str, curve: dict, metrics: dict, curves: dict) -> None:
    """Keeps a sliding-window curve and puts its mean and point count in the row."""
    curves[name] = curve
    metrics[f"{name}_mean"] = float(np.mean(curve["values"]))
    metrics[f"{name}_points"] = float(len(curve["values"]))


def _sliding_fid(gen, real, spec) -> Optional[dict]:
    """FID of frames [s, s + window) pooled over the clips that have them, per start s."""
    w, stride = spec.sliding_fid_window, spec.sliding_stride
    if not w:
        return None
    longest = max(int(g["n"]) for g in gen)
    starts, values, counts = [], [], []
    for s in _starts(longest, w, stride):
        chosen = [i for i, g in enumerate(gen) if int(g["n"]) >= s + w]
        fg = np.concatenate([gen[i]["frames"][s:s + w] for i in chosen]).astype(np.float64)
        fr = np.concatenate([real[i]["frames"][s:s + w] for i in chosen]).astype(np.float64)
        starts.append(int(s))
        values.append(frechet_distance_from_features(fg, fr))
        counts.append(len(fg))
    return {"starts": starts, "values": values, "counts": counts, "unit": "frames"} if starts else None


def _sliding_windows(gen, real, spec) -> Optional[dict]:
    """DTFVD of the windows starting at s (one per clip that reaches s + window), per s."""
    starts, values, counts = [], [], []
    longest = max(len(g["sliding_dtfvd"]) for g in gen)
    for j in range(longest):
        chosen = [i for i, g in enumerate(gen) if len(g["sliding_dtfvd"]) > j]
        if len(chosen) < 2:
            break
        fg = np.stack([gen[i]["sliding_dtfvd"][j] for i in chosen]).astype(np.float64)
        fr = np.stack([real[i]["sliding_dtfvd"][j] for i in chosen]).astype(np.float64)
        starts.append(int(j * spec.sliding_stride))
        values.append(frechet_distance_from_features(fg, fr))
        counts.append(len(chosen))
    return {"starts": starts, "values": values, "counts": counts, "unit": "windows"} if starts else None


def save_feature_sets(path, sets: Sequence[dict], key: dict) -> None:
    """Real clips' features, reused by every cell (and every process) with the same ``key``."""
    import json
    from pathlib import Path

    from gid_jax.atomic import atomic_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"{i}/{name}": v for i, s in enumerate(sets) for name, v in s.items()}
    arrays["__key__"] = np.asarray(json.dumps(key, sort_keys=True))
    with atomic_path(path, ".npz", fsync=True) as tmp:
        np.savez(tmp, **arrays)


def load_feature_sets(path, key: dict) -> Optional[list]:
    """`save_feature_sets`' sets, or None if the file is missing, damaged or for another key."""
    import json
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["__key__"]) != json.dumps(key, sort_keys=True):
                return None
            sets: dict = {}
            for name in z.files:
                if name != "__key__":
                    i, what = name.split("/", 1)
                    sets.setdefault(int(i), {})[what] = z[name]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    return [sets[i] for i in sorted(sets)] if sets and sorted(sets) == list(range(len(sets))) else None
