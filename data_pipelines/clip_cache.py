"""Per-video work of `gid prepare`: sources and splits, flow → trajectories → spectral volumes
(+ renderer pairs), and the per-video cache that makes a killed run resumable.

Cache (OUT/cache): `KEY.npz` holds one video's arrays (`process_video`), `KEY.json` its summary,
written last, so its presence means the video is done. `KEY` = readable stem + a hash of the
video's relative path, size, mtime and every setting that changes the flow result
(`cache_key`). A damaged `.npz` (e.g. truncated by a full disk) is found by `current_summary`
before the datasets are written, reported and recomputed.

Frame folders with a missing frame (numbered names such as 0016.png, 0018.png) are split at the
gap: clips never span it, since the frames after it would sit one frame early in time and the
flow from I0 to them would be attributed to the wrong t. The runs on either side are still
continuous footage, so they are kept rather than dropping the whole folder; the missing numbers
are logged and recorded in the report (`missing_frames`).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import tempfile
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np

from data_pipelines import storage
from data_pipelines.dataset_format import encode_spectral_volume

log = logging.getLogger(__name__)

DROP_REASONS = ("camera_motion", "static")
# Where a clip's trajectories come from: optical flow (the paper; any video), or the exact motion
# that `data_pipelines.synth` stores beside each procedural clip (`NAME.npz`).
MOTION_SOURCES = ("flow", "ground_truth", "auto")
# Settings whose change alters the per-video cache (flow results); the others (filters, splits,
# statistics, storage of the final datasets) are applied when the datasets are written.
CACHE_FIELDS = ("fps", "width", "height", "num_frames", "stride", "num_freqs",
                "max_frames_per_video", "flow_backend", "motion_source", "pairs_per_clip",
                "seed", "sv_encoding_cache", "close_loops")
FILTER_FIELDS = ("camera_motion_threshold_px", "camera_motion_fraction", "static_threshold_px")


# ==============================================================================================
# Sources, splits, cache keys


def split_of(relpath: str, test_fraction: float) -> str:
    """'test' for a deterministic `test_fraction` of relative paths (by SHA-1), else 'train'."""
    digest = hashlib.sha1(relpath.encode("utf-8")).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0 ** 64
    return "test" if u < test_fraction else "train"


def list_sources(videos_dir: str) -> list[tuple[str, str, int, float]]:
    """(relative path, path, size, mtime) of every video file / frame folder under `videos_dir`."""
    from data_pipelines import video_io

    if storage.is_remote(videos_dir):
        import tensorflow as tf
        root = videos_dir.rstrip("/")
        if not tf.io.gfile.isdir(root):
            raise FileNotFoundError(f"{videos_dir}: no such folder")
        out = []
        for dirpath, _, files in tf.io.gfile.walk(root):
            rel_dir = dirpath[len(root):].strip("/")
            if any(part.startswith(".") for part in rel_dir.split("/") if part):
                continue
            visible = [f for f in files if not f.startswith(".")]
            if sum(f.lower().endswith(video_io.IMAGE_EXTENSIONS) for f in visible) >= 2:
                st = [tf.io.gfile.stat(f"{dirpath}/{f}") for f in visible]
                out.append((rel_dir or ".", dirpath, sum(s.length for s in st),
                            max(s.mtime_nsec for s in st) / 1e9))
            for f in visible:
                if f.lower().endswith(video_io.VIDEO_EXTENSIONS):
                    st = tf.io.gfile.stat(f"{dirpath}/{f}")
                    out.append(("/".join(p for p in (rel_dir, f) if p), f"{dirpath}/{f}",
                                st.length, st.mtime_nsec / 1e9))
        return sorted(out)

    root = Path(videos_dir)
    if not root.exists():
        raise FileNotFoundError(f"{videos_dir}: no such folder")
    if not root.is_dir():
        raise ValueError(f"{videos_dir}: not a folder (give the folder that holds the videos)")
    out = []
    for p in video_io.iter_video_sources(root):
        rel = p.relative_to(root).as_posix() if p != root else "."
        if p.is_dir():
            stats = [f.stat() for f in p.iterdir() if f.is_file()]
            size, mtime = sum(s.st_size for s in stats), max((s.st_mtime for s in stats), default=0.0)
        else:
            st = p.stat()
            size, mtime = st.st_size, st.st_mtime
        out.append((rel, str(p), int(size), float(mtime)))
    return out


def cache_key(relpath: str, size: int, mtime: float, settings: dict,
              missing_frames: list[int] | None = None) -> str:
    """`NAME-HASH`: readable stem + hash of the path, file size/mtime and the flow settings.

    A frame folder with missing frames also hashes them, so a cache made before gaps were
    detected (clips across the gap) is not reused; other keys are unchanged.
    """
    fields = [relpath, int(size), round(float(mtime), 3), [settings[k] for k in CACHE_FIELDS]]
    if missing_frames:
        fields.append(["missing_frames", [int(i) for i in missing_frames]])
    ident = json.dumps(fields, sort_keys=True)
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(relpath).stem)[:40] or "video"
    return f"{stem}-{hashlib.sha1(ident.encode()).hexdigest()[:16]}"


def _frame_names(folder: str) -> list[str]:
    """Image names of a frame folder, in the order `video_io` reads them."""
    from data_pipelines.video_io import IMAGE_EXTENSIONS, _natural_key

    if storage.is_remote(folder):
        import tensorflow as tf
        names = [f for f in tf.io.gfile.listdir(folder) if not tf.io.gfile.isdir(f"{folder.rstrip('/')}/{f}")]
    else:
        names = [f.name for f in Path(folder).iterdir() if f.is_file()]
    names = [n for n in names if not n.startswith(".") and n.lower().endswith(IMAGE_EXTENSIONS)]
    return sorted(names, key=_natural_key)


def frame_gaps(names: list[str]) -> list[tuple[int, list[int]]]:
    """Gaps in a numbered frame sequence: (position in `names` after the gap, missing numbers).

    The step is the smallest difference between consecutive numbers (frames exported every
    2nd frame are not gaps). Names that are not one prefix + number sequence give [].
    """
    matches = [re.fullmatch(r"(.*?)(\d+)", Path(n).stem) for n in names]
    if len(matches) < 2 or any(m is None for m in matches) or len({m.group(1) for m in matches}) != 1:
        return []
    nums = [int(m.group(2)) for m in matches]
    diffs = [b - a for a, b in zip(nums, nums[1:])]
    if min(diffs) <= 0:   # repeated numbers (1.png, 01.png): not a plain sequence
        return []
    step = min(diffs)
    return [(i + 1, list(range(a + step, b, step)))
            for i, (a, b) in enumerate(zip(nums, nums[1:])) if b - a > step]


def source_elements(videos_dir: str, settings: dict) -> list[dict]:
    """One dict per video source (relpath, path, split, cache key[, missing_frames]).

    Missing frames of frame folders are logged here, once per run, before any slow work.
    """
    sources = list_sources(videos_dir)
    if settings["motion_source"] == "ground_truth":
        for _, path, _, _ in sources:   # before any slow work
            if storage.is_remote(path) or not Path(path).with_suffix(".npz").is_file():
                raise ValueError(f"{path}: motion_source='ground_truth' needs its exact motion in "
                                 f"{Path(path).with_suffix('.npz').name} beside it (written by "
                                 "data_pipelines.synth); use motion_source='flow' for other videos")
    elements = []
    for rel, path, size, mtime in sources:
        is_dir = _remote_isdir(path) if storage.is_remote(path) else Path(path).is_dir()
        missing = [i for _, gap in frame_gaps(_frame_names(path)) for i in gap] if is_dir else []
        element = dict(relpath=rel, path=path, split=split_of(rel, settings["test_fraction"]),
                       key=cache_key(rel, size, mtime, settings, missing))
        if missing:
            log.warning("%s: frame folder is missing frame%s %s; clips do not span the gap",
                        path, "s" * (len(missing) > 1), _ranges(missing))
            element["missing_frames"] = missing
        elements.append(element)
    return elements


def _remote_isdir(path: str) -> bool:
    import tensorflow as tf
    return tf.io.gfile.isdir(path)


def _ranges(numbers: list[int]) -> str:
    """[3, 4, 5, 9] → '3-5, 9' (one log line even for a long run of missing frames)."""
    out, start = [], None
    for i, n in enumerate(numbers):
        if start is None:
            start = n
        if i + 1 == len(numbers) or numbers[i + 1] != n + 1:
            out.append(str(start) if start == n else f"{start}-{n}")
            start = None
    return ", ".join(out)


# ==============================================================================================
# Per-video work: flow → trajectories → spectral volumes (+ renderer pairs)


def flow_function(backend: str):
    """(i0 (H,W,3), frames (N,H,W,3)) → flows (N,H,W,2) from i0 to each frame."""
    from gid_jax import flow as gflow

    backend = backend or None
    batch = getattr(gflow, "estimate_flow_batch", None)
    if batch is not None:
        return lambda i0, frames: np.asarray(batch(i0, frames, backend=backend), np.float32)
    return lambda i0, frames: np.stack(
        [np.asarray(gflow.estimate_flow(i0, f, backend=backend), np.float32) for f in frames])


def trajectories_from_frames(frames: np.ndarray, flow_fn) -> np.ndarray:
    """Frames `(T,H,W,3)` → trajectories `(T,H,W,2)`: long-range flow frames[0] → frames[t]."""
    flows = flow_fn(frames[0], frames[1:])
    traj = np.concatenate([np.zeros_like(flows[:1]), flows], axis=0).astype(np.float32)
    if not np.all(np.isfinite(traj)):
        raise ValueError("optical flow returned NaN or inf")
    return traj


def uses_ground_truth(path: str, settings: dict) -> bool:
    """Whether a video's motion comes from its exact trajectories (`motion_source`
    "ground_truth", or "auto" with a `NAME.npz` beside it) rather than from optical flow."""
    source = settings["motion_source"]
    return source == "ground_truth" or (source == "auto" and not storage.is_remote(path)
                                        and Path(path).with_suffix(".npz").is_file())


def ground_truth_trajectories(path: str, settings: dict) -> np.ndarray:
    """The exact trajectories `(N, H, W, 2)` of a procedural clip (its `.npz`), from frame 0,
    resized and centre-cropped exactly like its frames (`video_io.load_clip`), displacements
    scaled with the image."""
    from data_pipelines.synth import load_ground_truth
    from data_pipelines.video_io import _cover_crop, cover_size

    npz = Path(path).with_suffix(".npz")
    truth = load_ground_truth(npz)
    if abs(float(truth["fps"]) - settings["fps"]) > 1e-6:
        raise ValueError(f"{npz}: exact motion is at {float(truth['fps']):g} fps, but the clips are "
                         f"resampled to {settings['fps']:g} fps; use motion_source='flow'")
    traj = np.asarray(truth["trajectories"], np.float32)
    size = (settings["width"], settings["height"])
    h, w = traj.shape[1:3]
    if (w, h) == size:
        return traj
    new_w, new_h = cover_size(w, h, size)
    resized = np.stack([_cover_crop(f, size) for f in traj])
    return resized * np.array([new_w / w, new_h / h], np.float32)


def mean_motion(traj: np.ndarray) -> np.ndarray:
    """W(p) = mean over t = 1..T-1 of |F_t(p)| → `(H, W)` float32 (pixels)."""
    return np.linalg.norm(traj[1:], axis=-1).mean(axis=0).astype(np.float32)


def clip_filter(mean_motion_map: np.ndarray, settings: dict) -> str | None:
    """None to keep a clip, or why it is dropped: 'camera_motion' or 'static' (docs/method.md §8)."""
    w = np.asarray(mean_motion_map)
    if np.mean(w > settings["camera_motion_threshold_px"]) >= settings["camera_motion_fraction"]:
        return "camera_motion"
    if float(np.mean(w)) < settings["static_threshold_px"]:
        return "static"
    return None


def _pair_targets(relpath: str, start: int, settings: dict) -> np.ndarray:
    num = min(settings["pairs_per_clip"], settings["num_frames"] - 1)
    seed = [settings["seed"], zlib.crc32(relpath.encode("utf-8")), start]
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(np.arange(1, settings["num_frames"]), size=num, replace=False)).astype(np.int32)


def _to_uint8(frames: np.ndarray) -> np.ndarray:
    return (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _load_frames(path: str, settings: dict) -> tuple[np.ndarray, list[int]]:
    """Frames at `settings` fps and size, and the positions where a frame folder has a gap.

    A folder's frames are read at `fps` itself, so frame positions are output indices.
    """
    from data_pipelines.video_io import load_clip

    kwargs = dict(fps=settings["fps"], size=(settings["width"], settings["height"]),
                  max_frames=settings["max_frames_per_video"] or None,
                  min_frames=settings["num_frames"])

    def load(local):
        frames = load_clip(local, **kwargs).frames
        breaks = [i for i, _ in frame_gaps(_frame_names(local))] if os.path.isdir(local) else []
        return frames, [b for b in breaks if b < len(frames)]

    if not storage.is_remote(path):
        return load(path)
    import tensorflow as tf
    with tempfile.TemporaryDirectory(prefix="gid_prepare_") as tmp:
        name = path.rstrip("/").rsplit("/", 1)[-1]
        local = os.path.join(tmp, name)
        if tf.io.gfile.isdir(path):
            os.makedirs(local)
            for f in tf.io.gfile.listdir(path):
                if not tf.io.gfile.isdir(f"{path}/{f}"):
                    tf.io.gfile.copy(f"{path}/{f}", os.path.join(local, f))
        else:
            tf.io.gfile.copy(path, local)
        return load(local)


def process_video(path: str, relpath: str, settings: dict, flow_fn=None) -> dict[str, np.ndarray]:
    """Everything the datasets need from one video, as arrays (the per-video cache content).

    Raises `VideoError` (a ValueError) for unreadable / too-short sources.
    """
    from gid_jax.motion import to_spectral_volume

    flow_fn = flow_fn or flow_function(settings["flow_backend"])
    t0 = time.perf_counter()
    frames, breaks = _load_frames(path, settings)
    num_t, stride = settings["num_frames"], settings["stride"]
    bounds = [0, *breaks, len(frames)]   # continuous runs of frames; clips stay inside one
    starts = np.concatenate([np.arange(a, b - num_t + 1, stride, dtype=np.int32)
                             for a, b in zip(bounds, bounds[1:])])
    if breaks and not len(starts):
        from data_pipelines.video_io import VideoError
        raise VideoError(f"{path}: too short: frames are missing, and no run between the gaps "
                         f"has the {num_t} consecutive frames a clip needs")
    truth = None
    if uses_ground_truth(path, settings):
        truth = ground_truth_trajectories(path, settings)
        starts = starts[:1]   # the exact motion is of frame 0's pixels
    images, svs, scales, motions, pair_t, pair_images, pair_flows = [], [], [], [], [], [], []
    for start in starts:
        clip = frames[start:start + num_t]
        traj = truth[:num_t] if truth is not None else trajectories_from_frames(clip, flow_fn)
        sv = np.asarray(to_spectral_volume(traj, settings["num_freqs"], settings["close_loops"]), np.float32)
        data, scale = encode_spectral_volume(sv, settings["sv_encoding_cache"])
        targets = _pair_targets(relpath, int(start), settings)
        images.append(_to_uint8(clip[0]))
        svs.append(data)
        scales.append(scale)
        motions.append(mean_motion(traj))
        pair_t.append(targets)
        pair_images.append(_to_uint8(clip[targets]))
        pair_flows.append(traj[targets])
    h, w, k, p = settings["height"], settings["width"], settings["num_freqs"], len(_pair_targets(relpath, 0, settings))
    stack = lambda xs, shape, dt: np.stack(xs) if xs else np.zeros((0,) + shape, dt)  # noqa: E731
    return dict(
        start_frames=starts,
        images=stack(images, (h, w, 3), np.uint8),
        sv=stack(svs, (k, h, w, 4), np.float32),
        sv_scale=stack(scales, (k,), np.float32),
        mean_motion=stack(motions, (h, w), np.float32),
        pair_t=stack(pair_t, (p,), np.int32),
        pair_images=stack(pair_images, (p, h, w, 3), np.uint8),
        pair_flow=stack(pair_flows, (p, h, w, 2), np.float32),
        num_video_frames=np.int32(len(frames)),
        seconds=np.float32(time.perf_counter() - t0),
    )


def _summary_of(arrays: dict, element: dict, settings: dict) -> dict:
    """Small JSON record of a cached video: per start frame the filter statistics and decision."""
    clips = []
    for start, w in zip(arrays["start_frames"], arrays["mean_motion"]):
        clips.append(dict(start=int(start), mean_px=float(np.mean(w)),
                          moving_fraction=float(np.mean(w > settings["camera_motion_threshold_px"])),
                          drop=clip_filter(w, settings)))
    summary = dict(video=element["relpath"], status="ok", error=None,
                   motion="ground_truth" if uses_ground_truth(element["path"], settings) else "flow",
                   num_frames=int(arrays["num_video_frames"]), seconds=float(arrays["seconds"]),
                   thresholds={k: settings[k] for k in FILTER_FIELDS}, clips=clips)
    if element.get("missing_frames"):
        summary["missing_frames"] = list(element["missing_frames"])
    return summary


def ensure_cache(element: dict, settings: dict, cache_dir: str, flow_fn=None) -> dict:
    """Computes (or finds) one video's cache; returns its summary (see `_summary_of`).

    Files: `KEY.npz` (arrays, written first) and `KEY.json` (summary, written last: its existence
    with the current filter thresholds means the video is done). Unreadable / too-short videos
    get a `KEY.json` with status 'error' and are not retried until the file changes.
    """
    npz_path = storage.join(cache_dir, element["key"] + ".npz")
    json_path = storage.join(cache_dir, element["key"] + ".json")
    thresholds = {k: settings[k] for k in FILTER_FIELDS}
    summary = current_summary(cache_dir, element, settings)
    if summary is not None:
        return summary
    if storage.exists(npz_path) and not _discard_if_damaged(npz_path):
        # flow done; only the summary is missing or has other thresholds
        summary = _summary_of(load_cache(npz_path), element, settings)
        storage.write_json(json_path, summary)
        return summary
    from data_pipelines.video_io import VideoError

    try:
        arrays = process_video(element["path"], element["relpath"], settings, flow_fn)
    except (VideoError, ValueError, RuntimeError) as err:
        # RuntimeError: the flow backend refused a frame pair (e.g. NaN flow): a bad video.
        reason = str(err) if isinstance(err, VideoError) else f"{element['path']}: {err}"
        log.warning("skipping video: %s", reason)
        summary = dict(video=element["relpath"], status="error", error=reason, clips=[],
                       thresholds=thresholds)
        if element.get("missing_frames"):
            summary["missing_frames"] = list(element["missing_frames"])
        storage.write_json(json_path, summary)
        return summary
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    storage.write_atomic(npz_path, buf.getvalue())
    summary = _summary_of(arrays, element, settings)
    storage.write_json(json_path, summary)
    return summary


def load_cache(path: str) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(storage.read_bytes(path))) as z:
        return {k: z[k] for k in z.files}


def current_summary(cache_dir: str, element: dict, settings: dict) -> dict | None:
    """The video's summary if its cache is complete and made with the current filter
    thresholds; None if it has to be (re)computed. A damaged `.npz` is reported and removed
    together with its summary, so it is recomputed instead of failing the dataset writer."""
    json_path = storage.join(cache_dir, element["key"] + ".json")
    if not storage.exists(json_path):
        return None
    try:
        summary = json.loads(storage.read_bytes(json_path))
    except (json.JSONDecodeError, UnicodeDecodeError):
        log.warning("cache summary %s is damaged; recomputing the video", json_path)
        storage.remove(json_path)
        return None
    thresholds = {k: settings[k] for k in FILTER_FIELDS}
    if summary["status"] != "error" and summary["thresholds"] != thresholds:
        return None
    if summary["status"] == "ok" and _discard_if_damaged(storage.join(cache_dir, element["key"] + ".npz")):
        storage.remove(json_path)
        return None
    return summary


def _discard_if_damaged(npz_path: str) -> bool:
    """True (after one warning line and removing the file) if `npz_path` is missing or damaged."""
    problem = _cache_problem(npz_path)
    if problem is None:
        return False
    log.warning("cache file %s is damaged (%s); recomputing it", npz_path, problem)
    storage.remove(npz_path)
    return True


def _cache_problem(npz_path: str) -> str | None:
    """Why a cache `.npz` cannot be read, checked from its zip directory without reading the
    arrays (a cut-off file has lost the directory at its end, or its members overrun it)."""
    if not storage.exists(npz_path):
        return "missing"
    try:
        if storage.is_remote(npz_path):
            import tensorflow as tf
            size = tf.io.gfile.stat(npz_path).length
            with tf.io.gfile.GFile(npz_path, "rb") as f, zipfile.ZipFile(f) as z:
                infos = z.infolist()
        else:
            size = os.path.getsize(npz_path)
            with zipfile.ZipFile(npz_path) as z:
                infos = z.infolist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        return f"{type(err).__name__}: {err}"
    if not infos:
        return "no arrays"
    for info in infos:
        if info.header_offset + info.compress_size > size:
            return f"{info.filename} runs past the end of the file"
    return None
