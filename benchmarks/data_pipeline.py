"""Throughput of the data pipelines; prints one JSON object (one entry per measurement).

    python benchmarks/data_pipeline.py [--data-dir OUT] [--size 256x160] [--num-freqs 16]
        [--batch 8] [--batches 40] [--only input_pipeline,augment_ops]

Without `--data-dir` a temporary TFDS dataset with `gid prepare`'s `spectral` schema (PNG image,
float16 zlib spectral volume) of smooth synthetic examples is written first. Each measurement is
a function `name(args, ctx) -> dict` in MEASUREMENTS; add new ones there.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time

import numpy as np
import tensorflow as tf

from data_pipelines import augment as aug
from data_pipelines import training_input as ip


# ---------------------------------------------------------------------------------------------
# a temporary dataset
# ---------------------------------------------------------------------------------------------

def _smooth(rng, shape, cells=(5, 8)):
    """Smooth random fields `(..., H, W)`: bilinear upsampling of a coarse random grid."""
    *lead, h, w = shape
    coarse = rng.normal(size=(int(np.prod(lead, dtype=int)), cells[0], cells[1], 1)).astype(np.float32)
    up = tf.image.resize(coarse, (h, w), method="bilinear").numpy()[..., 0]
    return up.reshape(shape)


def write_synthetic_tfds(data_dir, num_examples, height, width, num_freqs, seed=0):
    """A TFDS dataset like `gid prepare`'s `spectral` config; returns its builder directory."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core import registered

    h, w, k = height, width, num_freqs
    rng = np.random.default_rng(seed)
    decay = (60.0 * np.exp(-np.arange(k) / 3.0)).astype(np.float32)[:, None, None, None]

    def example(i):
        image = np.clip(_smooth(rng, (3, h, w)).transpose(1, 2, 0) * 60 + 128
                        + rng.normal(size=(h, w, 3)) * 8, 0, 255).astype(np.uint8)
        sv = _smooth(rng, (k, 4, h, w)).transpose(0, 2, 3, 1) * decay
        return {"image": image, "spectral_volume": sv.astype(np.float16),
                "spectral_scale": np.ones(k, np.float32), "mean_motion": np.zeros((h, w), np.float32),
                "video": f"synthetic_{i}.mp4", "start_frame": i}

    with registered.skip_registration():
        class BenchMotion(tfds.core.GeneratorBasedBuilder):
            VERSION = tfds.core.Version("1.0.0")

            @tfds.core.utils.classproperty
            @classmethod
            def code_path(cls):
                return None

            def _info(self):
                zlib = tfds.features.Encoding.ZLIB
                return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                    "image": tfds.features.Image(shape=(h, w, 3)),
                    "spectral_volume": tfds.features.Tensor(shape=(k, h, w, 4), dtype=np.float16, encoding=zlib),
                    "spectral_scale": tfds.features.Tensor(shape=(k,), dtype=np.float32),
                    "mean_motion": tfds.features.Tensor(shape=(h, w), dtype=np.float32, encoding=zlib),
                    "video": tfds.features.Text(),
                    "start_frame": tfds.features.Scalar(dtype=np.int32),
                }))

            def _split_generators(self, dl_manager):
                return {"train": self._generate_examples()}

            def _generate_examples(self):
                for i in range(num_examples):
                    yield i, example(i)

    builder = BenchMotion(data_dir=data_dir)
    builder.download_and_prepare()
    return os.fspath(builder.data_dir)


# ---------------------------------------------------------------------------------------------
# measurements
# ---------------------------------------------------------------------------------------------

def _throughput(it, batches, warmup=3):
    for _ in range(warmup):
        next(it)
    nbytes, count = 0, 0
    start = time.perf_counter()
    for _ in range(batches):
        batch = next(it)
        count += len(batch["image"])
        nbytes += sum(v.nbytes for v in batch.values())
    seconds = time.perf_counter() - start
    return {"examples_per_s": round(count / seconds, 1), "MB_per_s": round(nbytes / seconds / 1e6, 1)}


def input_pipeline(args, ctx) -> dict:
    """Examples/s and MB/s (of output batches) of the full tf.data pipeline, several variants."""
    scales = np.linspace(20.0, 1.0, args.num_freqs).astype(np.float32)
    common = dict(batch_size=args.batch, seed=0, normalizer_scales=scales, process_index=0,
                  process_count=1, shuffle_buffer=args.shuffle_buffer)
    out = {}
    variants = {
        "host_full_augment": dict(augment="default", geometry="host"),
        "host_flip_crop_jitter_only": dict(augment=aug.AugmentConfig(max_scale=1.0, max_rotation_deg=0.0),
                                           geometry="host"),
        "host_no_augment": dict(augment=None, geometry="host"),
        "device_geometry_host_part": dict(augment="default", geometry="device"),
    }
    for name, kw in variants.items():
        it = ip.make_dataset(ctx["data_dir"], **common, **kw)
        out[name] = _throughput(it, args.batches)
        if name == "device_geometry_host_part":
            ctx["device_batch"], ctx["device_fn"] = next(it), it.device_fn
    return out


def augment_device(args, ctx) -> dict:
    """`augment_batch_jax` (geometry + normalisation) per batch on JAX's default device."""
    import jax

    if "device_batch" not in ctx:
        it = ip.make_dataset(ctx["data_dir"], args.batch, 0, geometry="device", process_index=0,
                             process_count=1, normalizer_scales=np.ones(args.num_freqs, np.float32))
        ctx["device_batch"], ctx["device_fn"] = next(it), it.device_fn
    fn = jax.jit(ctx["device_fn"])
    batch = jax.device_put(ctx["device_batch"])
    jax.block_until_ready(fn(batch))
    times = []
    for _ in range(5):
        start = time.perf_counter()
        jax.block_until_ready(fn(batch))
        times.append(time.perf_counter() - start)
    seconds = float(np.median(times))
    return {"device": str(jax.devices()[0]), "batch_s": round(seconds, 4),
            "examples_per_s": round(args.batch / seconds, 1)}


def augment_ops(args, ctx) -> dict:
    """Milliseconds per example of each per-example stage, as traced tf.functions (2 cores)."""
    import tensorflow_datasets as tfds

    h, w, k = args.height, args.width, args.num_freqs
    builder = tfds.builder_from_directory(ctx["data_dir"])
    raw = next(iter(builder.as_dataset(split="train", decoders={"image": tfds.decode.SkipDecoding()})))
    config = aug.AugmentConfig()
    params = aug.sample_params(tf.constant([1, 2], tf.int64), config, (h, w), (h, w))
    scales = np.linspace(20.0, 1.0, k).astype(np.float32)
    image = tf.image.convert_image_dtype(tf.io.decode_png(raw["image"]), tf.float32)
    sv = tf.cast(raw["spectral_volume"], tf.float32)
    flat = tf.reshape(tf.transpose(sv, [1, 2, 0, 3]), [h, w, 4 * k])
    stacked = tf.concat([image, flat], -1)
    serialized = next(iter(tf.data.TFRecordDataset(
        sorted(tf.io.gfile.glob(os.path.join(ctx["data_dir"], "*train*")))[:1])))
    m = aug.inverse_affine(params["flip"], params["scale"], params["angle"], params["offset_x"],
                           params["offset_y"], (float(h), float(w)), (h, w))
    transform = tf.stack([*m, 0.0, 0.0])[None]

    stages = {
        "parse_and_zlib_decode": (lambda: builder.info.features.deserialize_example(serialized)["spectral_volume"]),
        "png_decode": (lambda: tf.io.decode_png(raw["image"])),
        "float16_to_float32": (lambda: tf.cast(raw["spectral_volume"], tf.float32)),
        "to_channels_last": (lambda: tf.reshape(tf.transpose(sv, [1, 2, 0, 3]), [h, w, 4 * k])),
        "resample_all_channels": (lambda: tf.raw_ops.ImageProjectiveTransformV3(
            images=stacked[None], transforms=transform, output_shape=[h, w], fill_value=0.0,
            interpolation="BILINEAR", fill_mode="NEAREST")),
        "rotate_vectors": (lambda: aug.transform_vectors(flat, *aug.linear_part(params["flip"], params["scale"], params["angle"]))),
        "full_geometry": (lambda: aug.apply_geometry(params, config, (h, w), image=image, fields=sv)),
        "color_jitter": (lambda: aug.color_jitter(image, params["jitter"])),
        "normalize": (lambda: aug.normalize_tf(sv, scales)),
    }
    out = {}
    for name, fn in stages.items():
        f = tf.function(fn)
        f()
        times = []
        for _ in range(args.op_repeats):
            start = time.perf_counter()
            f()
            times.append(time.perf_counter() - start)
        out[name + "_ms"] = round(1000 * float(np.median(times)), 2)
    return out


MEASUREMENTS = {"input_pipeline": input_pipeline, "augment_ops": augment_ops, "augment_device": augment_device}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="a prepared dataset (gid prepare OUT or its TFDS folder)")
    parser.add_argument("--size", default="256x160", help="WxH of the temporary dataset")
    parser.add_argument("--num-freqs", type=int, default=16)
    parser.add_argument("--num-examples", type=int, default=48, help="examples in the temporary dataset")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--batches", type=int, default=30, help="batches timed per variant")
    parser.add_argument("--shuffle-buffer", type=int, default=32)
    parser.add_argument("--op-repeats", type=int, default=10)
    parser.add_argument("--only", default=",".join(MEASUREMENTS), help="comma-separated measurements")
    args = parser.parse_args()
    args.width, args.height = (int(v) for v in args.size.lower().split("x"))
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = set(names) - set(MEASUREMENTS)
    if unknown:
        parser.error(f"unknown measurements {sorted(unknown)}; known: {sorted(MEASUREMENTS)}")

    tmp = None
    results = {"cpu_count": os.cpu_count(), "batch": args.batch}
    try:
        if args.data_dir:
            data_dir = os.fspath(ip._find_builder_dir(__import__("pathlib").Path(args.data_dir)))
        else:
            tmp = tempfile.mkdtemp(prefix="gid_bench_data_")
            start = time.perf_counter()
            data_dir = write_synthetic_tfds(tmp, args.num_examples, args.height, args.width, args.num_freqs)
            results["write_temp_dataset_s"] = round(time.perf_counter() - start, 1)
        import tensorflow_datasets as tfds
        info = tfds.builder_from_directory(data_dir).info
        shape = info.features["spectral_volume"].shape
        if "augment_ops" in names and (shape[1], shape[2], shape[0]) != (args.height, args.width, args.num_freqs):
            args.num_freqs, args.height, args.width = shape[0], shape[1], shape[2]
        results["dataset"] = {"dir": data_dir, "spectral_volume": list(shape),
                              "dtype": str(np.dtype(info.features["spectral_volume"].np_dtype)),
                              "examples": info.splits["train"].num_examples}
        ctx = {"data_dir": data_dir}
        for name in names:
            results[name] = MEASUREMENTS[name](args, ctx)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
