"""The prepared data's format: names, paths, feature schema, spectral-volume codec.

Shared by the writer (`data_pipelines.prepare`, the prepare job) and the readers (the training
input `data_pipelines.training_input`, training, eval). It imports neither Apache Beam nor, until
a function needs them, TensorFlow, TFDS or JAX, so reading the format does not pull in the
writer's dependencies.

Layout of a prepared folder (OUT)::

    OUT/prepare_config.json                      the settings the datasets were built with
    OUT/report.json                              per-video outcome, per-clip filter stats, counts
    OUT/gid_motion/spectral/1.0.0/               TFDS dataset: image + spectral volume
        normalization.json                       FrequencyNormalizer.load(...) (train split)
    OUT/gid_motion/pairs/1.0.0/                  TFDS dataset: renderer training pairs
    OUT/cache/NAME-HASH.npz, NAME-HASH.json      per-video flow results + summary (resume)

Read with `load_dataset(OUT, "spectral", "train")` (or `tfds.builder_from_directory`) and
`decode_spectral_volume(example)` (TF ops, works inside `tf.data` map).

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
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from data_pipelines import storage

DATASET_NAME = "gid_motion"
VERSION = "1.0.0"
CONFIG_NAMES = ("spectral", "pairs")
SPLITS = ("train", "test")
SV_ENCODINGS = ("float16", "int8_sqrt", "float32")
# Recorded in every dataset_info.json; changing it changes the written datasets.
DESCRIPTION = "Generative Image Dynamics training data (data_pipelines/prepare.py)."
# Settings copied into `builder.info.metadata`.
METADATA_FIELDS = ("fps", "num_frames", "num_freqs", "width", "height", "stride", "sv_encoding",
                   "camera_motion_threshold_px", "camera_motion_fraction", "static_threshold_px",
                   "test_fraction")
_FLOAT16_MAX = 65504.0
_INT8_LEVELS = 127.0


# ==============================================================================================
# Paths


def dataset_paths(out_dir: str | os.PathLike) -> dict[str, str]:
    """Where `prepare(videos, out_dir, ...)` puts things: 'spectral' and 'pairs' TFDS folders,
    the 'normalization' statistics JSON and the 'prepare_config' settings it was built with."""
    out_dir = os.fspath(out_dir)
    spectral = storage.join(out_dir, DATASET_NAME, "spectral", VERSION)
    return {"spectral": spectral, "pairs": storage.join(out_dir, DATASET_NAME, "pairs", VERSION),
            "normalization": storage.join(spectral, "normalization.json"),
            "prepare_config": storage.join(out_dir, "prepare_config.json")}


def load_dataset(out_dir: str | os.PathLike, name: str = "spectral", split: str = "train",
                 **as_dataset_kwargs):
    """`tf.data.Dataset` of one prepared split (convenience for tests and notebooks)."""
    import tensorflow_datasets as tfds

    path = storage.join(os.fspath(out_dir), DATASET_NAME, name, VERSION)
    if not storage.exists(storage.join(path, "dataset_info.json")):
        raise FileNotFoundError(f"{path}: no prepared dataset (run `gid prepare` first)")
    return tfds.builder_from_directory(path).as_dataset(split=split, **as_dataset_kwargs)


# ==============================================================================================
# Feature schema


def features(kind: str, settings: dict):
    """The `tfds.features.FeaturesDict` of the `spectral` or `pairs` dataset (see above)."""
    import tensorflow_datasets as tfds

    s = settings
    h, w, k = s["height"], s["width"], s["num_freqs"]
    enc = tfds.features.Encoding.ZLIB if s["tensor_encoding"] == "zlib" else tfds.features.Encoding.BYTES
    common = dict(
        image=tfds.features.Image(shape=(h, w, 3)),
        mean_motion=tfds.features.Tensor(shape=(h, w), dtype=np.float32, encoding=enc),
        video=tfds.features.Text(),
        start_frame=tfds.features.Scalar(dtype=np.int32),
    )
    if kind == "spectral":
        sv_dtype = {"float16": np.float16, "float32": np.float32, "int8_sqrt": np.int8}[s["sv_encoding"]]
        feats = dict(common,
                     spectral_volume=tfds.features.Tensor(shape=(k, h, w, 4), dtype=sv_dtype, encoding=enc),
                     spectral_scale=tfds.features.Tensor(shape=(k,), dtype=np.float32))
    else:
        feats = dict(common,
                     target_image=tfds.features.Image(shape=(h, w, 3)),
                     flow=tfds.features.Tensor(shape=(h, w, 2), dtype=np.float32, encoding=enc),
                     target_frame=tfds.features.Scalar(dtype=np.int32))
    return tfds.features.FeaturesDict(feats)


def metadata(settings: dict) -> dict:
    return {key: settings[key] for key in METADATA_FIELDS}


# ==============================================================================================
# Spectral-volume codec


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
        x = _normalize(sv, scale)
        return np.clip(np.round(x * _INT8_LEVELS), -127, 127).astype(np.int8), scale
    raise ValueError(f"unknown sv_encoding {encoding!r}; expected one of {SV_ENCODINGS}")


def _normalize(sv: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """sign*sqrt(|S|/s_k) in numpy through `gid_jax.motion.frequency_normalize`, its one
    implementation (imported here, not at the top, to keep JAX out of this module's imports;
    tests/test_prepare.py checks that the codec's output is bit-identical to the formula)."""
    from gid_jax.motion.normalization import frequency_normalize

    return frequency_normalize(sv, scales)


def decode_spectral_volume_np(data: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """numpy twin of `decode_spectral_volume` → float32 `(..., K, H, W, 4)`."""
    data = np.asarray(data)
    if data.dtype == np.int8:
        from gid_jax.motion.normalization import frequency_denormalize

        q = data.astype(np.float32) / np.float32(_INT8_LEVELS)
        return frequency_denormalize(q, np.asarray(scale, np.float32))
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
    s = np.maximum(np.asarray(scales, np.float64), 1e-12)
    norm = lambda x: _normalize(x, s)  # noqa: E731
    return {
        "encoding": encoding,
        "bytes_per_example": int(enc[0][0].nbytes + (0 if encoding != "int8_sqrt" else 4 * num_freqs)),
        "traj_rms_px": float(np.sqrt(np.mean(traj_err ** 2))),
        "traj_max_px": float(traj_err.max()),
        "coef_rel_l2_worst_freq": float(rel.max()),
        "normalized_max_abs": float(np.abs(norm(dec.astype(np.float64)) - norm(sv.astype(np.float64))).max()),
    }
