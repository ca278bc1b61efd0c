"""How the loop modes loop: seam ratios and motion per frame on fresh procedural images; prints
one JSON object.

    python benchmarks/loops.py --checkpoint runs/demo/pipeline --images 8

For each case (loop mode, video length N), every image is sampled with seed 0 and
`Pipeline.predict_motion` gives the N frames' displacements that `gid animate` would render.
Reported, median over images: `motion.seam_ratios` (wrap step and wrap acceleration over the
median in-clip ones; ≈ 1 seamless, ≫ 1 a jump, step ≪ 1 a pause), and the mean motion per frame
in pixels (a mode that shrinks the motion shows here). N = T and N = 1.5 T, T the model's period.
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def per_frame_motion(traj: np.ndarray) -> float:
    return float(np.sqrt(np.sum(np.square(np.diff(traj, axis=0)), axis=-1)).mean())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True, help="pipeline directory, bundle or LDM run")
    ap.add_argument("--images", type=int, default=8, help="procedural images (seeds 10000, 10001, ...)")
    ap.add_argument("--guided", action="store_true",
                    help="also the guided modes (paper_guidance at N = T, seam_guidance at N = 1.5 T; DDIM, slow)")
    args = ap.parse_args(argv)

    from gid_jax import motion
    from gid_jax.eval import learning as L
    from gid_jax.pipeline import Pipeline

    pipe = Pipeline.load(args.checkpoint)
    period, longer = pipe.settings.period, pipe.settings.period * 3 // 2
    scenes = L.procedural_scenes(args.images, 10_000, (pipe.width, pipe.height), period,
                                 pipe.ldm.num_freqs, pipe.settings.fps)
    cases = [("no loop", {"loop": False}, period), ("periods", {"loop": True}, period),
             ("no loop", {"loop": False}, longer), ("periods", {"loop": True}, longer)]
    if args.guided:
        cases += [("paper_guidance", {"loop": True, "loop_mode": "paper_guidance"}, period),
                  ("seam_guidance", {"loop": True, "loop_mode": "seam_guidance"}, longer)]
    out = {"checkpoint": args.checkpoint, "period": period, "images": args.images, "cases": []}
    for name, kwargs, n in cases:
        rows = []
        for scene in scenes:
            traj = pipe.predict_motion(scene["image"], num_frames=n, seed=0, **kwargs)
            ratios = motion.seam_ratios(traj)
            rows.append((ratios["step_ratio"], ratios["accel_ratio"], per_frame_motion(traj)))
        rows = np.asarray(rows)
        out["cases"].append({"mode": name, "num_frames": n,
                             "speed": pipe.playback_speed(n, 1.0, kwargs["loop"], kwargs.get("loop_mode")),
                             "step_ratio": float(np.median(rows[:, 0])),
                             "accel_ratio": float(np.median(rows[:, 1])),
                             "px_per_frame": float(rows[:, 2].mean())})
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
