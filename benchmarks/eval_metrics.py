"""Throughput of `gid eval`'s feature extraction and statistics; prints one JSON object.

    python benchmarks/eval_metrics.py                       # real networks (if installed)
    python benchmarks/eval_metrics.py --batch 32 --clip-batch 4 --repeat 3
    python benchmarks/eval_metrics.py --tiny                # random width-1/16 networks (smoke)

* ``inception_frames_per_s``: InceptionV3 (FID/KID) on 128x256 frames (the paper's crop),
  resized to 299x299 inside the jitted function, ``--batch`` frames per call (the extractor
  pads the last batch, so one compiled shape serves a whole sweep);
* ``i3d16_clips_per_s`` / ``i3d32_clips_per_s``: the Kinetics I3D (FVD16 / FVD32) on 16- and
  32-frame 128x256 clips resized to 224x224, ``--clip-batch`` clips per call;
* ``*_compile_s``: the first call (compilation) separately; the rates are steady state;
* ``fd_*`` / ``kid_*``: the statistics at 2048-d, where few samples use the sample-space form
  of the Fréchet distance and up to 6000 the KID kernels are computed once.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from gid_jax.eval import features as F
from gid_jax.eval import i3d, inception
from gid_jax.eval.frechet import frechet_distance_from_features
from gid_jax.eval.kid import kernel_inception_distance


def _rate(fn, items: int, repeat: int) -> tuple[float, float]:
    """(first call seconds, items per second over ``repeat`` further calls)."""
    t = time.perf_counter()
    fn()
    first = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return first, items * repeat / (time.perf_counter() - t)


def _networks(tiny: bool, batch: int, clip_batch: int):
    if tiny:
        w = 1 / 16
        return (inception.InceptionFeatures(inception.random_inception_params(0, w), width=w,
                                            batch_size=batch),
                i3d.I3DFeatures(i3d.random_i3d_params(1, w), width=w, batch_size=clip_batch))
    inc = (inception.InceptionFeatures(batch_size=batch)
           if F.default_weights_path("inception_v3") else None)
    vid = (i3d.I3DFeatures(batch_size=clip_batch)
           if F.default_weights_path("i3d_kinetics400") else None)
    return inc, vid


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=32, help="frames per Inception call")
    ap.add_argument("--clip-batch", type=int, default=4, help="clips per I3D call")
    ap.add_argument("--repeat", type=int, default=2, help="timed calls after the first")
    ap.add_argument("--height", type=int, default=128)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--tiny", action="store_true", help="random width-1/16 networks")
    ap.add_argument("--skip-stats", action="store_true")
    args = ap.parse_args()

    import jax

    rng = np.random.default_rng(0)
    out = {"backend": jax.default_backend(), "device": str(jax.devices()[0].device_kind),
           "batch": args.batch, "clip_batch": args.clip_batch, "frame_hw": [args.height, args.width],
           "networks": "random width 1/16" if args.tiny else "real"}
    inc, vid = _networks(args.tiny, args.batch, args.clip_batch)
    if inc is None or vid is None:
        out["missing_weights"] = [name for name, net in (("inception_v3", inc), ("i3d_kinetics400", vid))
                                  if net is None]
    if inc is not None:
        x = rng.uniform(size=(args.batch, args.height, args.width, 3)).astype(np.float32)
        first, rate = _rate(lambda: inc(x), args.batch, args.repeat)
        out.update(inception_compile_s=first, inception_frames_per_s=rate)
    if vid is not None:
        for t in (16, 32):
            v = rng.uniform(size=(args.clip_batch, t, args.height, args.width, 3)).astype(np.float32)
            first, rate = _rate(lambda: vid(v), args.clip_batch, args.repeat)
            out.update({f"i3d{t}_compile_s": first, f"i3d{t}_clips_per_s": rate})
    if not args.skip_stats:
        for n in (500, 5000):
            a, b = rng.normal(size=(n, 2048)), rng.normal(size=(n, 2048))
            t = time.perf_counter()
            frechet_distance_from_features(a, b)
            out[f"fd_2048d_n{n}_s"] = time.perf_counter() - t
        a, b = rng.normal(size=(3000, 2048)), rng.normal(size=(3000, 2048))
        t = time.perf_counter()
        kernel_inception_distance(a, b, num_subsets=100, subset_size=1000)
        out["kid_2048d_n3000_100x1000_s"] = time.perf_counter() - t
    print(json.dumps(out))


if __name__ == "__main__":
    main()
