"""Videos → training datasets: long-range flow, spectral volumes, renderer pairs (PAPER.md 8).

What it does
------------
For every video under `videos_dir` (files and frame folders, see `data_pipelines.video_io`):

1. decode at `config.fps` (30) and resize + centre-crop to `config.width x config.height`;
2. every `config.stride`-th frame (10) with `num_frames - 1` frames after it is a start frame I0;
   optical flow is computed from I0 *directly* to each following frame (long-range, never
   chained), giving trajectories F `(T, H, W, 2)`, F[0] = 0;
3. F → spectral volume S `(K, H, W, 4)` = `gid_jax.motion.to_spectral_volume(F, K)`;
4. filters (PAPER.md 8, final version), on W(p) = mean_{t=1..T-1} |F_t(p)| in pixels:
   *camera motion*: dropped if at least 95% of the pixels have W > 1 px; *static*: dropped if the
   mean of W is below 1 px (thresholds are config fields; counts land in the report);
5. for each kept start frame, `config.pairs_per_clip` target frames t are sampled for the
   renderer: (I0, I_t, flow I0→I_t = F_t, t, W).

Videos are split train/test by a hash of their path relative to `videos_dir` (10% test), so no
video feeds both. The work runs as Apache Beam pipelines, the writing one inside a TFDS dataset builder
(`GidMotion`, configs `spectral` and `pairs`). The per-frequency normalisation statistics
(`gid_jax.motion.FrequencyNormalizer` histograms as a Beam CombineFn) of the train split are
computed in the same pass and written as `normalization.json` inside the dataset folder.

Output layout (OUT = `out_dir`)::

    OUT/prepare_config.json                      the settings the datasets were built with
    OUT/report.json                              per-video outcome, per-clip filter stats, counts
    OUT/gid_motion/spectral/1.0.0/               TFDS dataset: image + spectral volume
        normalization.json                       FrequencyNormalizer.load(...) (train split)
    OUT/gid_motion/pairs/1.0.0/                  TFDS dataset: renderer training pairs
    OUT/cache/NAME-HASH.npz, NAME-HASH.json      per-video flow results + summary (resume)

Two Beam jobs run on the same runner: (1) per video, flow + spectra into OUT/cache (the heavy
part, distributed over workers); (2) per dataset config, the TFDS writer, which reads the cache,
applies the filters and, for `spectral`, combines the statistics. Splits that end up empty
(e.g. no test video among a handful) are left out, since TFDS refuses empty splits.

Read with `tfds.builder_from_directory(OUT/gid_motion/spectral/1.0.0).as_dataset(split=...)`
and `decode_spectral_volume(example)` (TF ops, works inside `tf.data` map).

Dataset schema (H, W = config.height, config.width; K = config.num_freqs)
------------------------------------------------------------------------
`spectral`:
    image            Image (H, W, 3) uint8, PNG      the start frame I0
    spectral_volume  Tensor (K, H, W, 4) float16     [Re x, Re y, Im x, Im y], unnormalised rfft
                     (int8 with sv_encoding="int8_sqrt", float32 with "float32"); zlib
    spectral_scale   Tensor (K,) float32             per-frequency scale (int8_sqrt), else 1
    mean_motion      Tensor (H, W) float32           W = mean_t |F_t| (softmax-splat weight proxy)
    video            Text                            path relative to videos_dir
    start_frame      int32                           index of I0 in the video (at config.fps)
`pairs`:
    image, target_image  Image (H, W, 3) uint8       I0 and I_t
    flow             Tensor (H, W, 2) float32        flow I0 → I_t (= F_t), pixels, x then y
    target_frame     int32                           t, frames after I0 (1 .. T-1)
    mean_motion, video, start_frame                  as above
Dataset metadata (`builder.info.metadata`): fps, num_frames, num_freqs, width, height,
sv_encoding, filter thresholds.

On-disk precision of the spectral volume (measured, `encoding_error`)
----------------------------------------------------------------------
One 256x160 K=16 volume is 10.5 MB in float32. Measured with `encoding_error` on procedural data
(ground-truth trajectories of 4 `data_pipelines.synth` scenes at 256x160, T=150, K=16; |S| up
to 600, per-frequency 95th percentiles 1.2-18):

    encoding   bytes/example  traj. error RMS / max (px)  worst-freq rel. L2  normalised max abs
    float32    10.5 MB        0 / 0                        0                   0
    float16     5.2 MB        1.2e-4 / 3.2e-3              2.2e-4              2.0e-3
    int8_sqrt   2.6 MB        4.0e-3 / 8.6e-2              8.9e-3              3.6e-2

("normalised" = after the paper's sign*sqrt(|S|/s_k) with the data's 95th-percentile scales,
i.e. the values the VAE sees, mostly within [-1.5, 1.5].) float16 is the default: its error is
~1000x below any optical flow's (0.1-1 px) and ~1e-3 of the normalised range, i.e. lossless
for training; int8_sqrt halves disk again, but a 0.09 px worst-case trajectory error and 3.6%
error in the normalised domain are no longer negligible, so it is opt-in
(`--config.sv_encoding=int8_sqrt`) for very large datasets. zlib on top compresses the static
background. Coefficients beyond float16's range (|S| > 65504, i.e. > 400 px mean displacement at
T=150) are clipped and would be dropped by the camera-motion filter anyway.

Running it
----------
Locally (DirectRunner, one worker process per CPU core, progress bar with ETA over videos):

    gid prepare --videos ~/videos --out ~/data/gid --config configs/prepare.py:paper

Distributed, on any Beam runner: everything after `--` is passed to Beam as pipeline options.
Videos, OUT and the cache may be on GCS (read/written through tf.io.gfile). The workers need
this package: build an sdist (`python -m build --sdist`) and ship it with `--extra_package`:

    gid prepare --videos gs://BUCKET/videos --out gs://BUCKET/gid_data \\
        --config configs/prepare.py:paper -- \\
        --runner=DataflowRunner --project=PROJECT --region=us-central1 \\
        --temp_location=gs://BUCKET/tmp --extra_package=dist/gid_jax-0.1.0.tar.gz \\
        --machine_type=n2-highcpu-16 --max_num_workers=200
    # Flink / Spark: --runner=FlinkRunner --flink_master=HOST:8081 --environment_type=LOOPBACK
    #                --runner=SparkRunner  --spark_master_url=spark://HOST:7077

From Python: `prepare(videos_dir, out_dir, config, beam_options=["--runner=..."])`.

Resuming
--------
The expensive part (flow for every start frame of a video) is cached per video in
OUT/cache/NAME-HASH.npz, written under a temporary name and renamed, keyed by the video's relative
path, size, mtime and every setting that changes the flow result. Re-running after a crash skips
finished videos; TFDS writes each dataset in a temporary folder and renames it at the end, so a
killed run leaves no half-written dataset. Re-running a finished prepare only prints a message.
Unreadable, corrupt or too-short videos are reported (`PrepareResult.skipped`, report.json) and
skipped. Run one `prepare` per OUT at a time (stale temporaries of killed runs are removed).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
import zlib
from pathlib import Path
from typing import Any

import apache_beam as beam
import numpy as np

log = logging.getLogger(__name__)

SV_ENCODINGS = ("float16", "int8_sqrt", "float32")
SPLITS = ("train", "test")
CONFIG_NAMES = ("spectral", "pairs")
VERSION = "1.0.0"
DROP_REASONS = ("camera_motion", "static")
# Where a clip's trajectories come from: optical flow (the paper; any video), or the exact motion
# that `data_pipelines.synth` stores beside each procedural clip (`NAME.npz`).
MOTION_SOURCES = ("flow", "ground_truth", "auto")
_FLOAT16_MAX = 65504.0
_INT8_LEVELS = 127.0
# Settings whose change alters the per-video cache (flow results); the others (filters, splits,
# statistics, storage of the final datasets) are applied when the datasets are written.
_CACHE_FIELDS = ("fps", "width", "height", "num_frames", "stride", "num_freqs",
                 "max_frames_per_video", "flow_backend", "motion_source", "pairs_per_clip",
                 "seed", "sv_encoding_cache")
DATASET_NAME = "gid_motion"


# ==============================================================================================
# Settings


def _settings(config) -> dict:
    """ml_collections config (or dict) → validated plain dict (picklable, JSON-able)."""
    get = (lambda k: config[k]) if isinstance(config, dict) else (lambda k: getattr(config, k))
    fields = dict(
        fps=float, width=int, height=int, num_frames=int, stride=int, num_freqs=int,
        max_frames_per_video=int, flow_backend=str, motion_source=str,
        camera_motion_threshold_px=float,
        camera_motion_fraction=float, static_threshold_px=float, pairs_per_clip=int, seed=int,
        test_fraction=float, sv_encoding=str, tensor_encoding=str, keep_cache=bool,
        percentile=float, magnitude=str, num_workers=int, direct_running_mode=str)
    s = {}
    for name, typ in fields.items():
        try:
            value = get(name)
        except (KeyError, AttributeError):
            raise ValueError(f"prepare config is missing field '{name}' (see configs/prepare.py)") from None
        s[name] = typ(value) if value is not None else ("" if typ is str else value)
    checks = [
        (s["fps"] > 0, "fps must be > 0"),
        (s["width"] > 0 and s["height"] > 0, "width and height must be > 0"),
        (s["num_frames"] >= 2, "num_frames must be >= 2"),
        (s["stride"] >= 1, "stride must be >= 1"),
        (1 <= s["num_freqs"] <= s["num_frames"] // 2 + 1, "num_freqs must be in [1, num_frames//2+1]"),
        (s["max_frames_per_video"] == 0 or s["max_frames_per_video"] >= s["num_frames"],
         "max_frames_per_video must be 0 (no limit) or >= num_frames"),
        (0.0 <= s["test_fraction"] < 1.0, "test_fraction must be in [0, 1)"),
        (0.0 < s["camera_motion_fraction"] <= 1.0, "camera_motion_fraction must be in (0, 1]"),
        (s["pairs_per_clip"] >= 0, "pairs_per_clip must be >= 0"),
        (s["sv_encoding"] in SV_ENCODINGS, f"sv_encoding must be one of {SV_ENCODINGS}"),
        (s["tensor_encoding"] in ("zlib", "bytes"), "tensor_encoding must be 'zlib' or 'bytes'"),
        (s["direct_running_mode"] in ("in_memory", "multi_threading", "multi_processing"),
         "direct_running_mode must be in_memory, multi_threading or multi_processing"),
        (s["num_workers"] >= 0, "num_workers must be >= 0"),
        (s["motion_source"] in MOTION_SOURCES, f"motion_source must be one of {MOTION_SOURCES}"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ValueError(f"bad prepare config: {msg}")
    # The cache holds float16 spectra (float32 for float32 datasets); lossy dataset encodings
    # are made from it when the examples are written, so the cache serves every encoding.
    s["sv_encoding_cache"] = "float32" if s["sv_encoding"] == "float32" else "float16"
    return s


# ==============================================================================================
# Spectral-volume encoding on disk


def encode_spectral_volume(sv: np.ndarray, encoding: str) -> tuple[np.ndarray, np.ndarray]:
    """`(K,H,W,4)` float → (stored array, per-frequency scale `(K,)` float32)."""
    sv = np.asarray(sv, np.float32)
    num_freqs = sv.shape[0]
    ones = np.ones((num_freqs,), np.float32)
    if encoding == "float32":
        return sv, ones
    if encoding == "float16":
        return np.clip(sv, -_FLOAT16_MAX, _FLOAT16_MAX).astype(np.float16), ones
    if encoding == "int8_sqrt":
        scale = np.abs(sv).reshape(num_freqs, -1).max(axis=1).astype(np.float32)
        scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
        x = np.sign(sv) * np.sqrt(np.abs(sv) / scale[:, None, None, None])
        return np.clip(np.round(x * _INT8_LEVELS), -127, 127).astype(np.int8), scale
    raise ValueError(f"unknown sv_encoding {encoding!r}; expected one of {SV_ENCODINGS}")


def decode_spectral_volume_np(data: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """numpy twin of `decode_spectral_volume` → float32 `(..., K, H, W, 4)`."""
    data = np.asarray(data)
    if data.dtype == np.int8:
        q = data.astype(np.float32) / np.float32(_INT8_LEVELS)
        return np.sign(q) * q * q * np.asarray(scale, np.float32)[..., :, None, None, None]
    return data.astype(np.float32)


def decode_spectral_volume(example) -> "Any":
    """Spectral volume of a dataset example as float32 `(..., K, H, W, 4)`, in TF ops.

    `example` is a dict from the `spectral` dataset (batched or not) with `spectral_volume`
    (float16 / int8 / float32) and `spectral_scale`; works inside `tf.data.Dataset.map`.
    """
    import tensorflow as tf

    data = example["spectral_volume"]
    if data.dtype == tf.int8:
        q = tf.cast(data, tf.float32) / _INT8_LEVELS
        scale = tf.cast(example["spectral_scale"], tf.float32)[..., :, None, None, None]
        return tf.sign(q) * q * q * scale
    return tf.cast(data, tf.float32)


def encoding_error(sv: np.ndarray, encoding: str, num_frames: int,
                   scales: np.ndarray | None = None) -> dict:
    """Round-trip error of an encoding on spectral volumes `(N,K,H,W,4)` (exact float32).

    Returns bytes per example, trajectory error in pixels (RMS and max over all t, pixels),
    the worst per-frequency relative L2 error of the coefficients, and the max absolute error
    after the paper's normalisation sign*sqrt(|S|/s_k) (`scales` default: 95th percentile of |S|).
    """
    sv = np.asarray(sv, np.float32)
    enc = [encode_spectral_volume(x, encoding) for x in sv]
    dec = np.stack([decode_spectral_volume_np(d, s) for d, s in enc])
    delta = dec.astype(np.float64) - sv
    num_freqs = sv.shape[1]
    full = np.zeros((sv.shape[0], num_frames // 2 + 1) + sv.shape[2:4] + (2,), np.complex128)
    full[:, :num_freqs] = delta[..., :2] + 1j * delta[..., 2:]
    traj_err = np.linalg.norm(np.fft.irfft(full, n=num_frames, axis=1), axis=-1)
    num = np.sqrt(np.sum(delta ** 2, axis=(0, 2, 3, 4)))
    den = np.sqrt(np.sum(sv.astype(np.float64) ** 2, axis=(0, 2, 3, 4)))
    rel = np.where(den > 0, num / np.maximum(den, 1e-30), 0.0)
    if scales is None:
        scales = np.percentile(np.abs(sv), 95, axis=(0, 2, 3, 4))
    s = np.maximum(np.asarray(scales, np.float64), 1e-12)[None, :, None, None, None]
    norm = lambda x: np.sign(x) * np.sqrt(np.abs(x) / s)  # noqa: E731
    return {
        "encoding": encoding,
        "bytes_per_example": int(enc[0][0].nbytes + (0 if encoding != "int8_sqrt" else 4 * num_freqs)),
        "traj_rms_px": float(np.sqrt(np.mean(traj_err ** 2))),
        "traj_max_px": float(traj_err.max()),
        "coef_rel_l2_worst_freq": float(rel.max()),
        "normalized_max_abs": float(np.abs(norm(dec.astype(np.float64)) - norm(sv.astype(np.float64))).max()),
    }


# ==============================================================================================
# Sources, splits, cache keys


def _is_remote(path: str) -> bool:
    return "://" in str(path)


def _join(a: str, *parts: str) -> str:
    return "/".join([str(a).rstrip("/")] + [p.strip("/") for p in parts]) if _is_remote(a) \
        else str(Path(a, *parts))


def _exists(path: str) -> bool:
    if _is_remote(path):
        import tensorflow as tf
        return tf.io.gfile.exists(path)
    return os.path.exists(path)


def _read_bytes(path: str) -> bytes:
    if _is_remote(path):
        import tensorflow as tf
        with tf.io.gfile.GFile(path, "rb") as f:
            return f.read()
    return Path(path).read_bytes()


def _write_atomic(path: str, data: bytes) -> None:
    """Writes under a hidden temporary name in the same folder, then renames over `path`."""
    parent, name = path.rsplit("/", 1) if _is_remote(path) else (str(Path(path).parent), Path(path).name)
    tmp = _join(parent, f".{name}.tmp-{uuid.uuid4().hex[:12]}")
    if _is_remote(path):
        import tensorflow as tf
        tf.io.gfile.makedirs(parent)
        with tf.io.gfile.GFile(tmp, "wb") as f:
            f.write(data)
        tf.io.gfile.rename(tmp, path, overwrite=True)
        return
    os.makedirs(parent, exist_ok=True)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _write_json(path: str, payload: Any) -> str:
    _write_atomic(path, json.dumps(payload, indent=1, sort_keys=True).encode())
    return path


def split_of(relpath: str, test_fraction: float) -> str:
    """'test' for a deterministic `test_fraction` of relative paths (by SHA-1), else 'train'."""
    digest = hashlib.sha1(relpath.encode("utf-8")).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0 ** 64
    return "test" if u < test_fraction else "train"


def list_sources(videos_dir: str) -> list[tuple[str, str, int, float]]:
    """(relative path, path, size, mtime) of every video file / frame folder under `videos_dir`."""
    from data_pipelines import video_io

    if _is_remote(videos_dir):
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


def cache_key(relpath: str, size: int, mtime: float, settings: dict) -> str:
    """`NAME-HASH`: readable stem + hash of the path, file size/mtime and the flow settings."""
    ident = json.dumps([relpath, int(size), round(float(mtime), 3),
                        [settings[k] for k in _CACHE_FIELDS]], sort_keys=True)
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(relpath).stem)[:40] or "video"
    return f"{stem}-{hashlib.sha1(ident.encode()).hexdigest()[:16]}"


def _sources_elements(videos_dir: str, settings: dict) -> list[dict]:
    sources = list_sources(videos_dir)
    if settings["motion_source"] == "ground_truth":
        for _, path, _, _ in sources:   # before any slow work
            if _is_remote(path) or not Path(path).with_suffix(".npz").is_file():
                raise ValueError(f"{path}: motion_source='ground_truth' needs its exact motion in "
                                 f"{Path(path).with_suffix('.npz').name} beside it (written by "
                                 "data_pipelines.synth); use motion_source='flow' for other videos")
    return [dict(relpath=rel, path=path, split=split_of(rel, settings["test_fraction"]),
                 key=cache_key(rel, size, mtime, settings))
            for rel, path, size, mtime in sources]


# ==============================================================================================
# Per-video work: flow → trajectories → spectral volumes (+ renderer pairs)


def _flow_function(backend: str):
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
    return source == "ground_truth" or (source == "auto" and not _is_remote(path)
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
    """None to keep a clip, or why it is dropped: 'camera_motion' or 'static' (PAPER.md 8)."""
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


def _load_frames(path: str, settings: dict) -> np.ndarray:
    from data_pipelines.video_io import load_clip

    kwargs = dict(fps=settings["fps"], size=(settings["width"], settings["height"]),
                  max_frames=settings["max_frames_per_video"] or None,
                  min_frames=settings["num_frames"])
    if not _is_remote(path):
        return load_clip(path, **kwargs).frames
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
        return load_clip(local, **kwargs).frames


def process_video(path: str, relpath: str, settings: dict, flow_fn=None) -> dict[str, np.ndarray]:
    """Everything the datasets need from one video, as arrays (the per-video cache content).

    Raises `VideoError` (a ValueError) for unreadable / too-short sources.
    """
    from gid_jax.motion import to_spectral_volume

    flow_fn = flow_fn or _flow_function(settings["flow_backend"])
    t0 = time.perf_counter()
    frames = _load_frames(path, settings)
    num_t, stride = settings["num_frames"], settings["stride"]
    starts = np.arange(0, len(frames) - num_t + 1, stride, dtype=np.int32)
    truth = None
    if uses_ground_truth(path, settings):
        truth = ground_truth_trajectories(path, settings)
        starts = starts[:1]   # the exact motion is of frame 0's pixels
    images, svs, scales, motions, pair_t, pair_images, pair_flows = [], [], [], [], [], [], []
    for start in starts:
        clip = frames[start:start + num_t]
        traj = truth[:num_t] if truth is not None else trajectories_from_frames(clip, flow_fn)
        sv = np.asarray(to_spectral_volume(traj, settings["num_freqs"]), np.float32)
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


_FILTER_FIELDS = ("camera_motion_threshold_px", "camera_motion_fraction", "static_threshold_px")


def _summary_of(arrays: dict, element: dict, settings: dict) -> dict:
    """Small JSON record of a cached video: per start frame the filter statistics and decision."""
    clips = []
    for start, w in zip(arrays["start_frames"], arrays["mean_motion"]):
        clips.append(dict(start=int(start), mean_px=float(np.mean(w)),
                          moving_fraction=float(np.mean(w > settings["camera_motion_threshold_px"])),
                          drop=clip_filter(w, settings)))
    return dict(video=element["relpath"], status="ok", error=None,
                motion="ground_truth" if uses_ground_truth(element["path"], settings) else "flow",
                num_frames=int(arrays["num_video_frames"]), seconds=float(arrays["seconds"]),
                thresholds={k: settings[k] for k in _FILTER_FIELDS}, clips=clips)


def ensure_cache(element: dict, settings: dict, cache_dir: str, flow_fn=None) -> dict:
    """Computes (or finds) one video's cache; returns its summary (see `_summary_of`).

    Files: `KEY.npz` (arrays, written first) and `KEY.json` (summary, written last: its existence
    with the current filter thresholds means the video is done). Unreadable / too-short videos
    get a `KEY.json` with status 'error' and are not retried until the file changes.
    """
    npz_path = _join(cache_dir, element["key"] + ".npz")
    json_path = _join(cache_dir, element["key"] + ".json")
    thresholds = {k: settings[k] for k in _FILTER_FIELDS}
    if _exists(json_path):
        summary = json.loads(_read_bytes(json_path))
        if summary["status"] == "error" or summary["thresholds"] == thresholds:
            return summary
    if _exists(npz_path):  # flow done; only the summary is missing or has other thresholds
        summary = _summary_of(load_cache(npz_path), element, settings)
        _write_json(json_path, summary)
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
        _write_json(json_path, summary)
        return summary
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    _write_atomic(npz_path, buf.getvalue())
    summary = _summary_of(arrays, element, settings)
    _write_json(json_path, summary)
    return summary


def load_cache(path: str) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(_read_bytes(path))) as z:
        return {k: z[k] for k in z.files}


# ==============================================================================================
# Beam pieces


class CacheVideo(beam.DoFn):
    """Per video: flow for every start frame → OUT/cache/KEY.npz (skipped when present)."""

    def __init__(self, settings, cache_dir):
        self.settings, self.cache_dir = settings, cache_dir

    def setup(self):
        # A worker process must not grab a whole accelerator for a jnp.fft call.
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        self.flow_fn = _flow_function(self.settings["flow_backend"])

    def process(self, element):
        yield ensure_cache(element, self.settings, self.cache_dir, self.flow_fn)


class EmitExamples(beam.DoFn):
    """One video's cache → its kept clips as (key, example) on the split's tag (+ stats input)."""

    def __init__(self, settings, kind):
        self.settings, self.kind = settings, kind

    def process(self, element):
        s, split, video = self.settings, element["split"], element["relpath"]
        c = load_cache(element["cache"])
        for i in element["keep"]:
            start = int(c["start_frames"][i])
            base = dict(image=c["images"][i], mean_motion=c["mean_motion"][i], video=video,
                        start_frame=np.int32(start))
            if self.kind == "spectral":
                sv = decode_spectral_volume_np(c["sv"][i], c["sv_scale"][i])
                data, scale = encode_spectral_volume(sv, s["sv_encoding"])
                stored = decode_spectral_volume_np(data, scale)
                if not np.all(np.isfinite(stored)):
                    raise ValueError(f"{element['path']}: non-finite spectral volume at frame {start}")
                yield beam.pvalue.TaggedOutput(split, (f"{video}@{start}", dict(
                    base, spectral_volume=data, spectral_scale=scale)))
                if split == "train":
                    yield beam.pvalue.TaggedOutput("stats", stored)
            else:
                for j, t in enumerate(c["pair_t"][i]):
                    yield beam.pvalue.TaggedOutput(split, (f"{video}@{start}+{int(t)}", dict(
                        base, target_image=c["pair_images"][i, j], flow=c["pair_flow"][i, j],
                        target_frame=np.int32(t))))


class NormalizerCombineFn(beam.CombineFn):
    """FrequencyNormalizer histograms as the accumulator: merges across workers by addition."""

    def __init__(self, num_freqs, percentile, magnitude):
        self.args = (num_freqs, percentile, magnitude)

    def create_accumulator(self):
        from gid_jax.motion import FrequencyNormalizer
        return FrequencyNormalizer(*self.args)

    def add_input(self, acc, sv):
        return acc.update(sv)

    def merge_accumulators(self, accs):
        accs = list(accs)
        first = accs[0]
        for other in accs[1:]:
            first.merge(other)
        return first

    def extract_output(self, acc):
        return acc


def _write_normalizer(norm, path: str):
    if norm.num_examples == 0:
        log.warning("no training examples: %s not written", path)
        return None
    if _is_remote(path):
        local = os.path.join(tempfile.mkdtemp(prefix="gid_norm_"), "normalization.json")
        norm.save(local)
        _write_atomic(path, Path(local).read_bytes())
        return path
    norm.save(path)
    return path


# ==============================================================================================
# TFDS builder


def _builder_class():
    """The TFDS builder (defined once, lazily, so that importing this module stays light)."""
    global _BUILDER
    if _BUILDER is not None:
        return _BUILDER
    import tensorflow_datasets as tfds

    from tensorflow_datasets.core import registered

    with registered.skip_registration():
        cls = _define_builder(tfds)
    _BUILDER = cls
    return cls


def _define_builder(tfds):
    class GidMotion(tfds.core.GeneratorBasedBuilder):
        """Spectral volumes (`spectral`) and renderer pairs (`pairs`) from a folder of videos."""

        VERSION = tfds.core.Version(VERSION)
        RELEASE_NOTES = {str(VERSION): "Long-range flow, K-bin spectral volumes, PAPER.md 8 filters."}
        BUILDER_CONFIGS = [
            tfds.core.BuilderConfig(name="spectral", description="start frame + spectral volume"),
            tfds.core.BuilderConfig(name="pairs", description="renderer pairs (I0, I_t, flow, t, W)"),
        ]

        # No checksums / metadata files live beside this module. (TFDS 4.9.10 would otherwise
        # look for them through `importlib_resources`, which it does not declare as a dependency.)
        @tfds.core.utils.classproperty
        @classmethod
        def code_path(cls):
            return None

        def __init__(self, *, settings: dict, elements: list[dict], **kwargs):
            # elements: one per video with kept clips: relpath, path, split, cache, keep.
            self._settings, self._elements = settings, elements
            super().__init__(**kwargs)

        def _info(self):
            s = self._settings
            h, w, k = s["height"], s["width"], s["num_freqs"]
            enc = tfds.features.Encoding.ZLIB if s["tensor_encoding"] == "zlib" else tfds.features.Encoding.BYTES
            common = dict(
                image=tfds.features.Image(shape=(h, w, 3)),
                mean_motion=tfds.features.Tensor(shape=(h, w), dtype=np.float32, encoding=enc),
                video=tfds.features.Text(),
                start_frame=tfds.features.Scalar(dtype=np.int32),
            )
            if self.builder_config.name == "spectral":
                sv_dtype = {"float16": np.float16, "float32": np.float32, "int8_sqrt": np.int8}[s["sv_encoding"]]
                feats = dict(common,
                             spectral_volume=tfds.features.Tensor(shape=(k, h, w, 4), dtype=sv_dtype, encoding=enc),
                             spectral_scale=tfds.features.Tensor(shape=(k,), dtype=np.float32))
            else:
                feats = dict(common,
                             target_image=tfds.features.Image(shape=(h, w, 3)),
                             flow=tfds.features.Tensor(shape=(h, w, 2), dtype=np.float32, encoding=enc),
                             target_frame=tfds.features.Scalar(dtype=np.int32))
            meta = {key: s[key] for key in ("fps", "num_frames", "num_freqs", "width", "height", "stride",
                                            "sv_encoding", "camera_motion_threshold_px",
                                            "camera_motion_fraction", "static_threshold_px", "test_fraction")}
            return tfds.core.DatasetInfo(
                builder=self, description="Generative Image Dynamics training data (data_pipelines/prepare.py).",
                features=tfds.features.FeaturesDict(feats),
                metadata=tfds.core.MetadataDict(meta))

        def _split_generators(self, dl_manager, pipeline):
            del dl_manager
            s, kind = self._settings, self.builder_config.name
            data_dir = os.fspath(self.data_dir)  # the temporary folder TFDS renames at the end
            splits = sorted({e["split"] for e in self._elements})  # TFDS refuses empty splits
            outs = (pipeline
                    | "Videos" >> beam.Create(self._elements)
                    | "Distribute" >> beam.Reshuffle()
                    | "Examples" >> beam.ParDo(EmitExamples(s, kind)).with_outputs("stats", *splits))
            if kind == "spectral":
                _ = (outs.stats
                     | "Statistics" >> beam.CombineGlobally(
                         NormalizerCombineFn(s["num_freqs"], s["percentile"], s["magnitude"]))
                     | "WriteStatistics" >> beam.Map(_write_normalizer,
                                                     path=_join(data_dir, "normalization.json")))
            return {split: outs[split] for split in splits}

        def _generate_examples(self):  # everything happens in _split_generators
            raise NotImplementedError

    return GidMotion


_BUILDER = None


# ==============================================================================================
# Driver


@dataclasses.dataclass
class PrepareResult:
    """What `prepare` did. Counts are per split ('train', 'test'); `dropped` per reason."""

    out_dir: str
    dataset_dirs: dict[str, str | None]   # 'spectral' / 'pairs' → TFDS dataset folder
    normalization_path: str | None        # per-frequency statistics of the train split
    report_path: str                      # OUT/report.json: per-video outcome
    videos: dict[str, int]                # readable videos per split
    clips: dict[str, int]                 # start frames considered per split
    examples: dict[str, int]              # spectral-volume examples per split (kept clips)
    pairs: dict[str, int]                 # renderer pairs per split
    dropped: dict[str, int]               # 'camera_motion' / 'static' → clips dropped
    skipped: list[tuple[str, str]]        # (video, reason): unreadable / corrupt / too short
    already_prepared: bool = False
    seconds: float = 0.0


def beam_pipeline_options(beam_options: list[str] | None, settings: dict):
    """Beam `PipelineOptions` from command-line style flags, with DirectRunner defaults."""
    from apache_beam.options.pipeline_options import PipelineOptions

    flags = list(beam_options or [])
    runner = next((f.split("=", 1)[1] for f in flags if f.startswith("--runner=")), "DirectRunner")
    if runner in ("DirectRunner", "direct", "PrismRunner"):
        if not any(f.startswith("--direct_num_workers") for f in flags):
            flags.append(f"--direct_num_workers={settings['num_workers'] or os.cpu_count() or 1}")
        if not any(f.startswith("--direct_running_mode") for f in flags):
            flags.append(f"--direct_running_mode={settings['direct_running_mode']}")
    bad = [f for f in flags if not f.startswith("--")]
    if bad:
        raise ValueError(f"bad Beam pipeline options {bad}: each must look like --name=value")
    return PipelineOptions(flags)


def _remove_stale_temporaries(out_dir: str, cache_dir: str) -> int:
    """Temp files of killed runs (`.X.tmp-*`, TFDS `incomplete.*` folders); local OUT only."""
    if _is_remote(out_dir):
        return 0
    removed = 0
    for folder in [Path(cache_dir), Path(out_dir)] + [Path(out_dir, DATASET_NAME, c) for c in CONFIG_NAMES]:
        if not folder.is_dir():
            continue
        for f in folder.iterdir():
            if (f.name.startswith(".") and ".tmp-" in f.name) or f.name.startswith("incomplete."):
                shutil.rmtree(f, ignore_errors=True) if f.is_dir() else f.unlink(missing_ok=True)
                removed += 1
    if removed:
        log.info("removed %d temporaries of an interrupted run", removed)
    return removed


class _CacheProgress:
    """tqdm bar over videos whose cache summary exists, polled while the Beam job runs."""

    def __init__(self, cache_dir: str, keys: list[str], enabled: bool):
        self.cache_dir, self.keys, self.enabled = cache_dir, set(keys), enabled
        self._stop = threading.Event()

    def _done(self) -> int:
        try:
            if _is_remote(self.cache_dir):
                import tensorflow as tf
                names = tf.io.gfile.listdir(self.cache_dir)
            else:
                names = os.listdir(self.cache_dir)
        except Exception:  # noqa: BLE001 - the folder may not exist yet
            return 0
        return len({n[:-5] for n in names if n.endswith(".json")} & self.keys)

    def __enter__(self):
        if self.enabled:
            from tqdm import tqdm
            self.bar = tqdm(total=len(self.keys), initial=self._done(), unit="video",
                            desc="optical flow + spectra", dynamic_ncols=True)
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()
        return self

    def _run(self):
        while not self._stop.wait(1.0):
            self._update()

    def _update(self):
        done = self._done()
        if done > self.bar.n:
            self.bar.update(done - self.bar.n)

    def __exit__(self, *exc):
        if self.enabled:
            self._stop.set()
            self.thread.join()
            self._update()
            self.bar.close()


def _check_recorded_settings(out_dir: str, settings: dict) -> None:
    path = _join(out_dir, "prepare_config.json")
    fixed = {k: v for k, v in settings.items()
             if k not in ("num_workers", "direct_running_mode", "keep_cache")}
    if _exists(path):
        try:
            recorded = json.loads(_read_bytes(path))
        except json.JSONDecodeError:
            recorded = None
        if isinstance(recorded, dict):
            recorded.setdefault("motion_source", "flow")   # folders prepared before the field
        if recorded is not None and recorded != fixed:
            diff = sorted(k for k in set(recorded) | set(fixed) if recorded.get(k) != fixed.get(k))
            raise ValueError(f"{out_dir}: already holds data prepared with different settings "
                             f"({', '.join(diff)}); use another output folder")
        if recorded is not None:
            return
    _write_json(path, fixed)


def _summary_path(cache_dir: str, element: dict) -> str:
    return _join(cache_dir, element["key"] + ".json")


def _current_summary(cache_dir: str, element: dict, settings: dict) -> dict | None:
    path = _summary_path(cache_dir, element)
    if not _exists(path):
        return None
    summary = json.loads(_read_bytes(path))
    thresholds = {k: settings[k] for k in _FILTER_FIELDS}
    return summary if summary["status"] == "error" or summary["thresholds"] == thresholds else None


def run_flow_stage(sources: list[dict], settings: dict, cache_dir: str, options,
                   progress: bool = True) -> list[dict]:
    """Beam job 1: optical flow + spectra per video into the cache; returns every summary.

    Videos whose summary is already there are not scheduled at all (resume).
    """
    todo = [e for e in sources if _current_summary(cache_dir, e, settings) is None]
    if todo:
        if not _is_remote(cache_dir):
            os.makedirs(cache_dir, exist_ok=True)
        with _CacheProgress(cache_dir, [e["key"] for e in sources], progress):
            with beam.Pipeline(options=options) as pipeline:
                _ = (pipeline
                     | "Videos" >> beam.Create(todo)
                     | "Distribute" >> beam.Reshuffle()
                     | "FlowAndSpectra" >> beam.ParDo(CacheVideo(settings, cache_dir)))
    summaries = []
    for e in sources:
        summary = _current_summary(cache_dir, e, settings)
        if summary is None:
            raise RuntimeError(f"{e['path']}: the flow stage finished without a result for this video")
        summaries.append(dict(summary, split=e["split"], key=e["key"], path=e["path"]))
    return summaries


def _report(summaries: list[dict], settings: dict) -> dict:
    totals = {split: dict(videos=0, clips=0, examples=0, pairs=0, **{r: 0 for r in DROP_REASONS})
              for split in SPLITS}
    skipped = []
    for v in summaries:
        if v["status"] == "error":
            skipped.append(dict(video=v["video"], error=v["error"]))
            continue
        t = totals[v["split"]]
        t["videos"] += 1
        t["clips"] += len(v["clips"])
        for c in v["clips"]:
            if c["drop"]:
                t[c["drop"]] += 1
            else:
                t["examples"] += 1
                t["pairs"] += min(settings["pairs_per_clip"], settings["num_frames"] - 1)
    return dict(totals=totals, skipped=skipped, thresholds={k: settings[k] for k in _FILTER_FIELDS},
                videos=[{k: v.get(k) for k in ("video", "split", "status", "error", "motion", "num_frames",
                                               "seconds", "clips")} for v in summaries])


def _result(out_dir, dataset_dirs, report, already, seconds) -> PrepareResult:
    totals = report["totals"]
    norm = _join(dataset_dirs["spectral"], "normalization.json")
    return PrepareResult(
        out_dir=out_dir, dataset_dirs=dataset_dirs,
        normalization_path=norm if _exists(norm) else None,
        report_path=_join(out_dir, "report.json"),
        videos={s: totals[s]["videos"] for s in SPLITS},
        clips={s: totals[s]["clips"] for s in SPLITS},
        examples={s: totals[s]["examples"] for s in SPLITS},
        pairs={s: totals[s]["pairs"] for s in SPLITS},
        dropped={r: sum(totals[s][r] for s in SPLITS) for r in DROP_REASONS},
        skipped=[(r["video"], r["error"]) for r in report["skipped"]],
        already_prepared=already, seconds=seconds)


def prepare(videos_dir: str | os.PathLike, out_dir: str | os.PathLike, config,
            beam_options: list[str] | None = None, progress: bool = True) -> PrepareResult:
    """Turns a folder of videos into the `spectral` and `pairs` TFDS datasets under `out_dir`.

    Two Beam jobs on the same runner: (1) optical flow + spectral volumes per video into
    OUT/cache (resumable), (2) per dataset, the TFDS writer (+ the normalisation statistics).

    Args:
      videos_dir: folder of video files / frame folders (local or gs://...).
      out_dir: output folder (created); see the module docstring for its layout.
      config: `configs/prepare.py` config (ml_collections ConfigDict or a dict).
      beam_options: Beam pipeline flags, e.g. `["--runner=DataflowRunner", "--project=..."]`;
        none → local DirectRunner with `config.num_workers` workers.
      progress: progress bar with ETA over videos, and a summary at the end.

    Raises:
      FileNotFoundError: `videos_dir` does not exist.
      ValueError: no videos found, no clip passed the filters, bad config or Beam options, or
        `out_dir` was prepared with different settings.
    """
    t0 = time.perf_counter()
    settings = _settings(config)
    videos_dir, out_dir = os.fspath(videos_dir), os.fspath(out_dir)
    sources = _sources_elements(videos_dir, settings)
    if not sources:
        raise ValueError(f"{videos_dir}: no videos found (looked for video files and folders of frames)")
    if not _is_remote(out_dir):
        os.makedirs(out_dir, exist_ok=True)
    _check_recorded_settings(out_dir, settings)
    cache_dir = _join(out_dir, "cache")
    report_path = _join(out_dir, "report.json")
    names = [n for n in CONFIG_NAMES if n != "pairs" or settings["pairs_per_clip"] > 0]
    dataset_dirs = {n: _join(out_dir, DATASET_NAME, n, VERSION) if n in names else None
                    for n in CONFIG_NAMES}
    if all(_exists(_join(dataset_dirs[n], "dataset_info.json")) for n in names) and _exists(report_path):
        result = _result(out_dir, dataset_dirs, json.loads(_read_bytes(report_path)), True,
                         time.perf_counter() - t0)
        if progress:
            print(f"{out_dir}: already prepared ({sum(result.examples.values())} examples from "
                  f"{len(sources)} video sources); nothing to do")
        return result
    _remove_stale_temporaries(out_dir, cache_dir)
    options = beam_pipeline_options(beam_options, settings)

    summaries = run_flow_stage(sources, settings, cache_dir, options, progress)
    report = _report(summaries, settings)
    elements = []
    for v in summaries:
        keep = [i for i, c in enumerate(v["clips"]) if not c["drop"]]
        if v["status"] == "ok" and keep:
            elements.append(dict(relpath=v["video"], path=v["path"], split=v["split"], keep=keep,
                                 cache=_join(cache_dir, v["key"] + ".npz")))
    if not elements:
        _write_json(report_path, report)
        t = report["totals"]
        raise ValueError(
            f"{videos_dir}: no clip passed the filters ({len(report['skipped'])} unreadable videos, "
            f"{sum(t[s]['camera_motion'] for s in SPLITS)} clips with camera motion, "
            f"{sum(t[s]['static'] for s in SPLITS)} static clips; see {report_path})")
    if not any(e["split"] == "train" for e in elements):
        log.warning("no training clips passed the filters; normalization.json is not written")

    import tensorflow_datasets as tfds

    cls = _builder_class()
    for name in names:
        builder = cls(settings=settings, elements=elements, data_dir=out_dir, config=name)
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(beam_options=options))
    _write_json(report_path, report)
    if not settings["keep_cache"] and not _is_remote(cache_dir):
        shutil.rmtree(cache_dir, ignore_errors=True)
    result = _result(out_dir, dataset_dirs, report, False, time.perf_counter() - t0)
    if progress:
        print(summary(result))
    return result


def summary(result: PrepareResult) -> str:
    """Human-readable account of a `PrepareResult`."""
    lines = [f"{result.out_dir}: already prepared" if result.already_prepared
             else f"prepared {result.out_dir} in {result.seconds:.1f} s"]
    for s in SPLITS:
        lines.append(f"  {s}: {result.videos[s]} videos, {result.clips[s]} clips, "
                     f"{result.examples[s]} spectral examples, {result.pairs[s]} renderer pairs")
    lines.append("  dropped clips: " + ", ".join(f"{k} {v}" for k, v in result.dropped.items()))
    for video, reason in result.skipped:
        lines.append(f"  skipped {video}: {reason}")
    for name, path in result.dataset_dirs.items():
        if path:
            lines.append(f"  {name}: {path}")
    return "\n".join(lines)


def load_dataset(out_dir: str | os.PathLike, name: str = "spectral", split: str = "train",
                 **as_dataset_kwargs):
    """`tf.data.Dataset` of one prepared split (convenience for tests and notebooks)."""
    import tensorflow_datasets as tfds

    path = _join(os.fspath(out_dir), DATASET_NAME, name, VERSION)
    if not _exists(_join(path, "dataset_info.json")):
        raise FileNotFoundError(f"{path}: no prepared dataset (run `gid prepare` first)")
    return tfds.builder_from_directory(path).as_dataset(split=split, **as_dataset_kwargs)


def dataset_paths(out_dir: str | os.PathLike) -> dict[str, str]:
    """Where `prepare(videos, out_dir, ...)` puts things: 'spectral' and 'pairs' TFDS folders,
    the 'normalization' statistics JSON and the 'prepare_config' settings it was built with."""
    out_dir = os.fspath(out_dir)
    spectral = _join(out_dir, DATASET_NAME, "spectral", VERSION)
    return {"spectral": spectral, "pairs": _join(out_dir, DATASET_NAME, "pairs", VERSION),
            "normalization": _join(spectral, "normalization.json"),
            "prepare_config": _join(out_dir, "prepare_config.json")}
