"""Endpoint error and speed of every optical-flow backend on procedural videos with exact GT.

For a few videos from ``data_pipelines.synth.generate_video`` (ground-truth trajectories
``F[t]`` = flow from frame 0 to frame t), estimate the flow of pairs (frame 0, frame t) at several
``t`` with each backend and report the mean endpoint error (EPE) over all pixels and over moving
pixels (|GT| > 0.5 px), plus pairs/s (wall time of ``estimate_flow_batch``, the JAX backend
timed after a warm-up compile). Prints one JSON object.

    python benchmarks/flow_backends.py --videos 3 --times 1,5,15,40,80,149
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from data_pipelines.synth import generate_video
from gid_jax.flow import available_backends, estimate_flow_batch
from gid_jax.flow import backends as flow_backends


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--videos", type=int, default=3)
    ap.add_argument("--times", default="1,5,15,40,80,149")
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--height", type=int, default=160)
    ap.add_argument("--num-frames", type=int, default=150)
    ap.add_argument("--backends", default=",".join(available_backends()))
    ap.add_argument("--moving-threshold", type=float, default=0.5)
    args = ap.parse_args(argv)

    times = [int(t) for t in args.times.split(",") if int(t) < args.num_frames]
    names = [b for b in args.backends.split(",") if b]
    videos = []
    for seed in range(args.videos):
        v = generate_video(seed, size=(args.width, args.height), num_frames=args.num_frames, fps=30.0)
        videos.append((np.asarray(v.frames, np.float32), np.asarray(v.trajectories, np.float32)))

    gt_mag = np.concatenate([np.linalg.norm(tr[times], axis=-1).ravel() for _, tr in videos])
    result = {
        "size": [args.width, args.height],
        "times": times,
        "videos": args.videos,
        "default_backend": flow_backends.DEFAULT_BACKEND,
        "gt_magnitude": {"mean": float(gt_mag.mean()), "p99": float(np.percentile(gt_mag, 99)),
                         "max": float(gt_mag.max()),
                         "moving_fraction": float((gt_mag > args.moving_threshold).mean())},
        "backends": {},
    }
    for name in names:
        # Warm-up (compilation for the JAX backend) on the first video, not timed.
        frames0 = videos[0][0]
        estimate_flow_batch(frames0[0], frames0[times], backend=name)
        errs, moving_errs, per_t, elapsed, pairs = [], [], {t: [] for t in times}, 0.0, 0
        for frames, traj in videos:
            t0 = time.perf_counter()
            flows = estimate_flow_batch(frames[0], frames[times], backend=name)
            elapsed += time.perf_counter() - t0
            pairs += len(times)
            for k, t in enumerate(times):
                e = np.linalg.norm(flows[k] - traj[t], axis=-1)
                moving = np.linalg.norm(traj[t], axis=-1) > args.moving_threshold
                errs.append(e.ravel())
                moving_errs.append(e[moving])
                per_t[t].append(float(e.mean()))
        all_e = np.concatenate(errs)
        mov_e = np.concatenate(moving_errs)
        result["backends"][name] = {
            "epe_all": float(all_e.mean()),
            "epe_moving": float(mov_e.mean()) if mov_e.size else None,
            "outliers_3px": float((all_e > 3.0).mean()),
            "epe_all_by_t": {str(t): float(np.mean(v)) for t, v in per_t.items()},
            "pairs_per_s": pairs / elapsed,
            "s_per_pair": elapsed / pairs,
        }
        print(f"# {name}: EPE {result['backends'][name]['epe_all']:.3f} px", flush=True)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
