"""The training input: tf.data readers of the prepared datasets, (image, spectral volume)
examples and renderer pairs, per host, augmented, with a checkpointable position.

    it = make_dataset("data/gid_motion", batch_size=8, seed=0, normalizer_scales=scales)
    batch = next(it)          # {'image': (B, H, W, 3) float32 in [0, 1],
                              #  'spectral_volume': (B, K, H, W, 4) float32, normalised}
    it.save("ckpt/input_0.json"); ...; it.restore("ckpt/input_0.json")

Stages, per host: the host's disjoint part of the data (`tfds.split_for_jax_process` for a TFDS
directory, `Dataset.shard` for a plain `tf.data.Dataset`) -> per-epoch seeded shuffle of the
*compact* examples -> repeat -> decode -> motion-consistent augmentation (`augment.py`) ->
frequency adaptive normalisation -> batch (drop_remainder) -> prefetch. Maps run in parallel with
`deterministic=True`; every random draw is stateless, seeded by (seed, process, example position
in the stream), so the batches are a pure function of the seed and the data.

Position and checkpoints. Epoch e is the host's data shuffled with a seed derived from (seed, e);
example i of the stream is example i % N of epoch i // N. The iterator's whole state is therefore
one integer, the number of examples consumed: `save` writes it (plus what it must match) as a
small JSON file, and `restore` rebuilds the dataset at that position by skipping the cheap,
undecoded part of at most one epoch. Checkpoints stay tiny regardless of shuffle and prefetch
buffers, which serialising a tf.data iterator (`tf.train.Checkpoint`) would write out in full
(a 256-example shuffle buffer of spectral volumes is > 1 GB). The iterator implements clu's
`DatasetIterator` interface (`get_next`, `reset`, `element_spec`, `save`, `restore`).

Geometry on host or device. Resampling 4K + 3 channels at 256x160 costs ~16 ms of CPU per example
(`benchmarks/data_pipeline.py`), too slow for the paper's batch rate on a few host cores. With
`geometry="device"` the host only decodes, colour-jitters and samples the per-example
augmentation parameters; `iterator.device_fn(batch)` (`augment.augment_batch_jax`, jit-able)
then warps, rotates the vectors and normalises on the accelerator, with the same semantics.

Renderer pairs (docs/method.md §6). `make_pairs_dataset` reads the `pairs` dataset of `gid prepare`
through the same machinery (host sharding, per-epoch seeded shuffle, one-integer position,
`InputIterator` save/restore) with another per-example function:

    it = make_pairs_dataset("data/out", batch_size=8, seed=0, flip_prob=0.5)
    batch = next(it)          # {'image', 'target_image': (B, H, W, 3) float32 in [0, 1],
                              #  'flow': (B, H, W, 2) float32 pixels (I0 -> I_t, x then y),
                              #  'mean_motion': (B, H, W, 1) float32 W = mean_t |F_t|, ...}

Its only augmentation is the horizontal flip (with probability `flip_prob`), consistent with
the motion: image, target, flow map and W are mirrored and the flow's x component negated
(`augment.apply_geometry` with L = diag(-1, 1)); the flip is exact (no interpolation).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import tensorflow as tf

from clu.data import dataset_iterator as clu_iterator

from data_pipelines import augment as aug
from data_pipelines.dataset_format import decode_spectral_volume
from gid_jax.atomic import write_json_atomic

GEOMETRY_PLACES = ("host", "device")
_STATE_FORMAT = "gid_jax.InputIterator/1"


# --------------------------------------------------------------------------------------------
# sources
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class TfdsSource:
    """A dataset written by `gid prepare` (a TFDS builder directory)."""

    data_dir: str
    split: str = "train"


# The features each kind of dataset must have; its images ('image', 'target_image') may be PNG.
DATASET_FEATURES = {
    "spectral": ("image", "spectral_volume"),
    "pairs": ("image", "target_image", "flow", "mean_motion"),
}


def load_tfds(source: TfdsSource, process_index: int, process_count: int, kind: str = "spectral"):
    """Reads this host's part of a TFDS directory, undecoded, plus the function that decodes it.

    Returns `(dataset, decode_fn)`: images stay encoded (PNG bytes) and spectral volumes compact
    until after the shuffle, so the shuffle buffer holds compact examples. `kind` ("spectral" or
    "pairs", `DATASET_FEATURES`) picks the dataset below `gid prepare`'s output folder and the
    features it must have.
    """
    import tensorflow_datasets as tfds

    if kind not in DATASET_FEATURES:
        raise ValueError(f"unknown dataset kind {kind!r}; known: {sorted(DATASET_FEATURES)}")
    path = Path(source.data_dir)
    if not path.exists():
        raise FileNotFoundError(f"{path}: dataset directory not found (write one with `gid prepare`)")
    builder_dir = _find_builder_dir(path, prefer=kind)
    try:
        builder = tfds.builder_from_directory(os.fspath(builder_dir))
    except Exception as err:  # noqa: BLE001 - any TFDS failure is reported with the path
        raise ValueError(f"{builder_dir}: not a TFDS dataset directory ({err})") from None
    features = builder.info.features
    missing = set(DATASET_FEATURES[kind]) - set(features.keys())
    if missing:
        raise ValueError(f"{builder_dir}: dataset lacks features {sorted(missing)}; has {sorted(features.keys())}")
    if source.split not in builder.info.splits:
        raise ValueError(f"{builder_dir}: no split {source.split!r}; has {sorted(builder.info.splits.keys())}")
    split = tfds.split_for_jax_process(source.split, process_index=process_index,
                                       process_count=process_count)
    encoded = [k for k in ("image", "target_image")
               if k in DATASET_FEATURES[kind] and isinstance(features[k], tfds.features.Image)]
    decoders = {k: tfds.decode.SkipDecoding() for k in encoded} or None
    ds = builder.as_dataset(split=split, shuffle_files=False, decoders=decoders,
                            read_config=tfds.ReadConfig(interleave_cycle_length=1))
    image_shape = tuple(features["image"].shape)
    decode_sv = decode_spectral_volume if kind == "spectral" else None

    def decode(example):
        example = dict(example)
        for key in encoded:
            image = tf.io.decode_image(example[key], channels=3, expand_animations=False)
            shape = tuple(features[key].shape)
            if None not in shape:
                image = tf.ensure_shape(image, shape)
            example[key] = image
        if decode_sv is not None:
            example["spectral_volume"] = decode_sv(example)
        return example

    decode.output_image_shape = image_shape
    return ds, decode


def _find_builder_dir(path: Path, prefer: str = "spectral") -> Path:
    """`path` itself, or the dataset folder below it (`gid prepare`'s OUT: its `prefer` config)."""
    if (path / "dataset_info.json").exists():
        return path
    found = sorted(p.parent for p in path.rglob("dataset_info.json"))
    if len(found) > 1:
        preferred = [p for p in found if prefer in p.relative_to(path).parts]
        found = preferred or found
    if not found:
        raise FileNotFoundError(f"{path}: no dataset_info.json found (not a prepared dataset)")
    if len(found) > 1:
        raise ValueError(f"{path}: several datasets found ({', '.join(map(str, found))}); pass one")
    return found[0]


# --------------------------------------------------------------------------------------------
# the tf.data graph
# --------------------------------------------------------------------------------------------

def _seed_key(*words: int) -> int:
    """A signed int64 key from integers (numpy's SeedSequence hashing)."""
    state = np.random.SeedSequence([int(w) & (2**63 - 1) for w in words]).generate_state(2, np.uint64)
    return int(state[0].astype(np.int64))


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """Everything that fixes the stream; stored in the iterator state and checked on restore."""

    batch_size: int
    seed: int
    process_index: int
    process_count: int
    shuffle_buffer: int
    repeat: bool
    drop_remainder: bool
    geometry: str
    output_hw: tuple[int, int]
    num_examples: int            # this host's examples per epoch, -1 if unknown


def build_dataset(raw: tf.data.Dataset, spec: InputSpec, *, decode_fn=None,
                  augment: aug.AugmentConfig | None = None, normalizer_scales=None,
                  start: int = 0, num_parallel_calls=tf.data.AUTOTUNE,
                  example_fn: Callable | None = None) -> tf.data.Dataset:
    """The tf.data graph for this host's (already sharded) `raw` examples, from stream position `start`.

    `example_fn(index, example, *, spec, config, decode_fn, example_key)` turns one raw example
    into a training example (default: the spectral one, `_process_example`, with
    `normalizer_scales`); `_process_pair` for renderer pairs.
    """
    config = augment or aug.AugmentConfig.none()
    n = spec.num_examples
    if n == 0:
        raise ValueError("this host's part of the dataset is empty (more processes than examples?)")
    first_epoch, skip = (start // n, start % n) if n > 0 else (0, start)
    last_epoch = np.iinfo(np.int64).max if spec.repeat else 1
    shuffle_key = _seed_key(spec.seed, spec.process_index, 1)
    example_key = _seed_key(spec.seed, spec.process_index, 2)

    def one_epoch(epoch):
        if not spec.shuffle_buffer:
            return raw
        epoch_seed = tf.random.stateless_uniform([], tf.stack([tf.constant(shuffle_key, tf.int64), epoch]),
                                                 minval=None, maxval=None, dtype=tf.int64)
        return raw.shuffle(spec.shuffle_buffer, seed=epoch_seed, reshuffle_each_iteration=False)

    ds = tf.data.Dataset.range(first_epoch, last_epoch).flat_map(one_epoch)
    ds = ds.enumerate(start=first_epoch * n if n > 0 else 0).skip(skip)
    if example_fn is None:
        process = functools.partial(_process_example, spec=spec, config=config, decode_fn=decode_fn,
                                    scales=normalizer_scales, example_key=example_key)
    else:
        if normalizer_scales is not None:
            raise ValueError("normalizer_scales apply to spectral examples only")
        process = functools.partial(example_fn, spec=spec, config=config, decode_fn=decode_fn,
                                    example_key=example_key)
    ds = ds.map(process, num_parallel_calls=num_parallel_calls, deterministic=True)
    ds = ds.batch(spec.batch_size, drop_remainder=spec.drop_remainder,
                  num_parallel_calls=num_parallel_calls, deterministic=True)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = True
    options.experimental_optimization.map_parallelization = True
    return ds.with_options(options)


def _process_example(index, example, *, spec: InputSpec, config: aug.AugmentConfig, decode_fn,
                     scales, example_key):
    stored_sv = example["spectral_volume"]
    if decode_fn is not None:
        example = decode_fn(example)
    image = example["image"]
    image = tf.image.convert_image_dtype(image, tf.float32) if image.dtype.is_integer else tf.cast(image, tf.float32)
    sv = tf.cast(example["spectral_volume"], tf.float32)
    in_hw = tf.shape(image)[0], tf.shape(image)[1]
    seed = tf.stack([tf.constant(example_key, tf.int64), index])
    params = aug.sample_params(seed, config, in_hw, spec.output_hw)
    out = {k: v for k, v in example.items()
           if k not in ("image", "spectral_volume") and v.shape.rank == 0 and v.dtype != tf.string}
    if spec.geometry == "device":
        if config.jitters:
            image = aug.color_jitter(image, params["jitter"])
        if stored_sv.dtype == tf.float16:   # ship half the bytes; `device_fn` casts to float32
            sv = stored_sv
        out.update(image=image, spectral_volume=sv, augment_params=aug.pack_params(params))
        return out
    same_size = image.shape[:2] == tuple(spec.output_hw)
    if config.resamples or config.flip_prob > 0 or not same_size:
        image, sv = aug.augment_example(image, sv, params, config, spec.output_hw)
    elif config.jitters:
        image = aug.color_jitter(image, params["jitter"])
    if scales is not None:
        sv = aug.normalize_tf(sv, scales)
    out.update(image=image, spectral_volume=sv)
    return out


def make_dataset(source, batch_size: int, seed: int, *, augment: Any = "default",
                 normalizer_scales=None, shuffle_buffer: int = 256, process_index: int | None = None,
                 process_count: int | None = None, repeat: bool = True, drop_remainder: bool = True,
                 output_size: tuple[int, int] | None = None, geometry: str = "host",
                 split: str = "train") -> "InputIterator":
    """A checkpointable iterator of numpy batches for this host.

    source: a `tf.data.Dataset` of dicts {'image': uint8 (H, W, 3), 'spectral_volume': float32
      (K, H, W, 4), optional scalar features passed through (e.g. 'id')}, a TFDS directory written
      by `gid prepare` (str / Path, with `split`), or a `TfdsSource`.
    batch_size: per-host batch size. seed: fixes shuffle and augmentation.
    augment: "default" (`AugmentConfig()`, the paper's augmentations), None (none; centre crop
      to `output_size` if smaller), an `AugmentConfig`, a dict or a ConfigDict of its fields.
    normalizer_scales: per-frequency s_k `(K,)`, a `FrequencyNormalizer` or the path of its
      JSON (`normalization.json` beside a prepared dataset); if given the spectral volume is normalised
      (sign-sqrt, docs/method.md §3) — on the host, or by `device_fn` when `geometry="device"`.
    process_index / process_count: default `jax.process_index()` / `jax.process_count()`.
    output_size: (H, W) of the batches; default the examples' size.
    geometry: "host" (augment in tf.data) or "device": batches then hold the unaugmented
      'spectral_volume' (float16 when stored so, else float32) at the examples' size, the
      colour-jittered 'image' and 'augment_params' (B, 5); `iterator.device_fn(batch)` finishes
      them (geometry, vector transform, normalisation) on the accelerator.
    """
    if geometry not in GEOMETRY_PLACES:
        raise ValueError(f"geometry must be one of {GEOMETRY_PLACES}, got {geometry!r}")
    process_index, process_count = _check_batch_and_process(batch_size, process_index, process_count)
    config = aug.AugmentConfig() if isinstance(augment, str) and augment == "default" else aug.AugmentConfig.from_config(augment)
    if isinstance(normalizer_scales, (str, os.PathLike)):   # a normalization.json
        from gid_jax.motion import FrequencyNormalizer
        normalizer_scales = FrequencyNormalizer.load(normalizer_scales).scales
    if normalizer_scales is not None:
        normalizer_scales = np.asarray(getattr(normalizer_scales, "scales", normalizer_scales), np.float32)
        if normalizer_scales.ndim != 1 or np.any(~np.isfinite(normalizer_scales)) or np.any(normalizer_scales <= 0):
            raise ValueError(f"normalizer_scales must be positive finite numbers (K,), got {normalizer_scales}")

    if isinstance(source, (str, os.PathLike)):
        source = TfdsSource(os.fspath(source), split)
    if isinstance(source, TfdsSource):
        raw, decode_fn = load_tfds(source, process_index, process_count)
        image_shape = decode_fn.output_image_shape
    elif isinstance(source, tf.data.Dataset):
        spec_ = source.element_spec
        if not isinstance(spec_, dict) or not {"image", "spectral_volume"} <= set(spec_):
            raise ValueError("source dataset must yield dicts with 'image' and 'spectral_volume'")
        raw = source.shard(process_count, process_index) if process_count > 1 else source
        decode_fn, image_shape = None, tuple(spec_["image"].shape)
    else:
        raise TypeError(f"source must be a tf.data.Dataset, a TFDS directory or a TfdsSource, got {type(source).__name__}")

    if output_size is None:
        if len(image_shape) != 3 or None in image_shape[:2]:
            raise ValueError(f"examples have no static size ({image_shape}); pass output_size=(H, W)")
        output_size = tuple(image_shape[:2])
    output_hw = (int(output_size[0]), int(output_size[1]))
    if len(image_shape) == 3 and None not in image_shape[:2] and not config.resamples:
        if output_hw[0] > image_shape[0] or output_hw[1] > image_shape[1]:
            raise ValueError(f"output_size {output_hw} is larger than the examples {image_shape[:2]} "
                             "and no scaling is configured")
    spec = _input_spec(raw, batch_size=batch_size, seed=seed, process_index=process_index,
                          process_count=process_count, shuffle_buffer=shuffle_buffer, repeat=repeat,
                          drop_remainder=drop_remainder, geometry=geometry, output_hw=output_hw)
    build = functools.partial(build_dataset, raw, spec, decode_fn=decode_fn, augment=config,
                              normalizer_scales=None if geometry == "device" else normalizer_scales)
    device_fn = None
    if geometry == "device":
        device_fn = functools.partial(aug.augment_batch_jax, output_hw=output_hw, config=config,
                                      normalizer_scales=normalizer_scales)
    return InputIterator(build, spec, device_fn=device_fn)


def _check_batch_and_process(batch_size, process_index, process_count) -> tuple[int, int]:
    """Validates the batch size; `(process_index, process_count)`, defaulting to JAX's."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    from gid_jax.parallel.distributed import resolve_process

    return resolve_process(process_index, process_count)


def _input_spec(raw: tf.data.Dataset, *, batch_size, seed, process_index, process_count,
                   shuffle_buffer, repeat, drop_remainder, geometry, output_hw) -> InputSpec:
    cardinality = int(raw.cardinality())
    return InputSpec(batch_size=int(batch_size), seed=int(seed), process_index=int(process_index),
                        process_count=int(process_count), shuffle_buffer=int(shuffle_buffer or 0),
                        repeat=bool(repeat), drop_remainder=bool(drop_remainder), geometry=geometry,
                        output_hw=output_hw, num_examples=cardinality if cardinality >= 0 else -1)


# --------------------------------------------------------------------------------------------
# renderer pairs
# --------------------------------------------------------------------------------------------

_PAIRS_STATE_FORMAT = "gid_jax.PairsIterator/1"


def _float_image(image: tf.Tensor) -> tf.Tensor:
    return tf.image.convert_image_dtype(image, tf.float32) if image.dtype.is_integer else tf.cast(image, tf.float32)


def _process_pair(index, example, *, spec: InputSpec, config: aug.AugmentConfig, decode_fn,
                  example_key):
    """One renderer pair: images to float [0, 1], W to (H, W, 1), then the (optional) flip."""
    if decode_fn is not None:
        example = decode_fn(example)
    image, target = _float_image(example["image"]), _float_image(example["target_image"])
    flow = tf.cast(example["flow"], tf.float32)
    weight = tf.cast(example["mean_motion"], tf.float32)
    if weight.shape.rank == 2:
        weight = weight[..., None]
    out = {k: v for k, v in example.items()
           if k not in DATASET_FEATURES["pairs"] and v.shape.rank == 0 and v.dtype != tf.string}
    if config.flip_prob > 0:
        seed = tf.stack([tf.constant(example_key, tf.int64), index])
        params = aug.sample_params(seed, config, (tf.shape(image)[0], tf.shape(image)[1]), spec.output_hw)
        # Mirror image, target and W as one map, and the flow as a vector field (x negated).
        maps, fields = aug.apply_geometry(params, config, spec.output_hw,
                                          image=tf.concat([image, target, weight], axis=-1),
                                          fields=flow[None])
        image, target, weight, flow = maps[..., :3], maps[..., 3:6], maps[..., 6:], fields[0]
    out.update(image=image, target_image=target, flow=flow, mean_motion=weight)
    return out


def pairs_augment_config(flip_prob: float = 0.5) -> aug.AugmentConfig:
    """The pairs' augmentation: only the horizontal flip (exact, no resampling, no colour)."""
    if not 0.0 <= float(flip_prob) <= 1.0:
        raise ValueError(f"flip_prob must be in [0, 1], got {flip_prob}")
    return dataclasses.replace(aug.AugmentConfig.none(), flip_prob=float(flip_prob))


def make_pairs_dataset(source, batch_size: int, seed: int, *, flip_prob: float = 0.5,
                       shuffle_buffer: int = 256, process_index: int | None = None,
                       process_count: int | None = None, repeat: bool = True,
                       drop_remainder: bool = True, split: str = "train") -> "InputIterator":
    """A checkpointable iterator of renderer-pair batches for this host (see module docstring).

    source: `gid prepare`'s output folder or its `pairs` dataset folder (str / Path, with
      `split`), a `TfdsSource`, or a `tf.data.Dataset` of dicts {'image', 'target_image': uint8
      (H, W, 3), 'flow': float32 (H, W, 2), 'mean_motion': float32 (H, W) or (H, W, 1), optional
      scalar features passed through}.
    flip_prob: probability of the motion-consistent horizontal flip (0 turns it off).
    Other arguments as in `make_dataset`. The iterator's state is the stream position.
    """
    process_index, process_count = _check_batch_and_process(batch_size, process_index, process_count)
    config = pairs_augment_config(flip_prob)
    if isinstance(source, (str, os.PathLike)):
        source = TfdsSource(os.fspath(source), split)
    if isinstance(source, TfdsSource):
        raw, decode_fn = load_tfds(source, process_index, process_count, kind="pairs")
        image_shape = decode_fn.output_image_shape
    elif isinstance(source, tf.data.Dataset):
        spec_ = source.element_spec
        if not isinstance(spec_, dict) or not set(DATASET_FEATURES["pairs"]) <= set(spec_):
            raise ValueError(f"source dataset must yield dicts with {list(DATASET_FEATURES['pairs'])}")
        raw = source.shard(process_count, process_index) if process_count > 1 else source
        decode_fn, image_shape = None, tuple(spec_["image"].shape)
    else:
        raise TypeError(f"source must be a tf.data.Dataset, a TFDS directory or a TfdsSource, got {type(source).__name__}")
    if len(image_shape) != 3 or None in image_shape[:2]:
        raise ValueError(f"pair images have no static size ({image_shape})")
    spec = _input_spec(raw, batch_size=batch_size, seed=seed, process_index=process_index,
                          process_count=process_count, shuffle_buffer=shuffle_buffer, repeat=repeat,
                          drop_remainder=drop_remainder, geometry="host",
                          output_hw=(int(image_shape[0]), int(image_shape[1])))
    build = functools.partial(build_dataset, raw, spec, decode_fn=decode_fn, augment=config,
                              example_fn=_process_pair)
    return InputIterator(build, spec, state_format=_PAIRS_STATE_FORMAT, settings={"flip_prob": config.flip_prob})


# --------------------------------------------------------------------------------------------
# the iterator
# --------------------------------------------------------------------------------------------

class InputIterator(clu_iterator.DatasetIterator):
    """Numpy batches of the training input; its state is the stream position (module docstring).

    `state_format` names the kind of stream (spectral / pairs) and `settings` holds further
    JSON-able values it must match on restore (beyond the `InputSpec`).
    """

    def __init__(self, build: Callable[..., tf.data.Dataset], spec: InputSpec, device_fn=None, *,
                 state_format: str = _STATE_FORMAT, settings: dict | None = None):
        self._build, self.spec = build, spec
        self.state_format, self.settings = state_format, dict(settings or {})
        self.device_fn = device_fn if device_fn is not None else (lambda batch: batch)
        self._start(0)

    def _start(self, position: int):
        self.position = int(position)
        self.dataset = self._build(start=self.position)
        self._iterator = self.dataset.as_numpy_iterator()

    def __next__(self) -> dict[str, np.ndarray]:
        batch = next(self._iterator)
        self.position += len(batch["image"])
        return batch

    def get_next(self):
        return next(self)

    def reset(self):
        self._start(0)

    @property
    def element_spec(self):
        return {k: clu_iterator.ArraySpec(dtype=v.dtype.as_numpy_dtype, shape=tuple(v.shape))
                for k, v in self.dataset.element_spec.items()}

    def state(self) -> dict:
        return {"format": self.state_format, "position": self.position, **self._identity()}

    def _identity(self) -> dict:
        return {**_jsonable(dataclasses.asdict(self.spec)), **self.settings}

    def save(self, filename) -> Path:
        """Writes the position (and the spec it belongs to) as JSON, atomically."""
        path = Path(os.fspath(filename))
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_json_atomic(path, self.state())

    def restore(self, filename) -> None:
        """Continues from a saved position; the input settings must be those it was saved with."""
        path = Path(os.fspath(filename))
        try:
            state = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: training input state not found") from None
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: unreadable training input state ({err})") from None
        if not isinstance(state, dict) or state.get("format") != self.state_format:
            raise ValueError(f"{path}: not a training input state of this kind (expected format "
                             f"{self.state_format}, found {state.get('format') if isinstance(state, dict) else None!r})")
        mine = self._identity()
        diff = {k: (state.get(k), v) for k, v in mine.items() if state.get(k) != v}
        if diff:
            detail = ", ".join(f"{k}: saved {a!r}, now {b!r}" for k, (a, b) in sorted(diff.items()))
            raise ValueError(f"{path}: training input state was saved with other settings ({detail})")
        self._start(int(state["position"]))


def _jsonable(d: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def save_state(iterator: InputIterator, path) -> Path:
    return iterator.save(path)


def restore_state(iterator: InputIterator, path) -> InputIterator:
    iterator.restore(path)
    return iterator
