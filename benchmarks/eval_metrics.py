"""Time the evaluation statistics and (if installed) the real feature networks; prints JSON.

    python benchmarks/eval_metrics.py [--images 8] [--videos 1]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from gid_jax.eval import features as F
from gid_jax.eval.i3d import I3DFeatures
from gid_jax.eval.inception import InceptionFeatures
from gid_jax.eval.frechet import frechet_distance_from_features
from gid_jax.eval.kid import kernel_inception_distance


def _timed(fn, repeat=1):
    fn()  # warm-up / compile
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t) / repeat


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--videos", type=int, default=1)
    ap.add_argument("--features", type=int, default=2000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(args.features, 2048)), rng.normal(size=(args.features, 2048))
    out = {
        "fd_2048d_s": _timed(lambda: frechet_distance_from_features(a, b)),
        "kid_2048d_10x1000_s": _timed(lambda: kernel_inception_distance(a, b, num_subsets=10)),
    }
    if F.default_weights_path("inception_v3"):
        net = InceptionFeatures(batch_size=args.images)
        x = rng.uniform(size=(args.images, 128, 256, 3)).astype(np.float32)
        out["inception_s_per_image"] = _timed(lambda: net(x)) / args.images
    if F.default_weights_path("i3d_kinetics400"):
        net = I3DFeatures(batch_size=args.videos)
        v = rng.uniform(size=(args.videos, 16, 128, 256, 3)).astype(np.float32)
        out["i3d_s_per_16frame_clip"] = _timed(lambda: net(v)) / args.videos
    import jax
    out["backend"] = jax.default_backend()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
