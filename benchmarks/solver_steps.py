"""Learning metrics against the sampler and its number of steps, on fresh procedural scenes;
prints one JSON object and, with --plot, draws each metric against the steps per solver.

    python benchmarks/solver_steps.py --checkpoint runs/quickstart/pipeline \\
        --samplers ddim:250,ddim:20,dpm_solver_pp:10,dpm_solver_pp:20,unipc:5,unipc:10 --plot steps.png

--checkpoint: a pipeline directory, an exported bundle, or an LDM training run (stage 1 or 2).
Every sampler draws the same scenes with the same seeds (`gid_jax.eval.learning`: localisation
AUC, amplitude ratio, spectrum log error, image dependence, seed amplitude agreement). "noise" is
the standard deviation of each metric across seeds: two samplers whose means differ by less are
within noise of each other. Grids are each solver's default (uniform for DDIM, log-SNR for the
multistep solvers); the guidance weight is the checkpoint's unless --guidance is given.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from gid_jax.atomic import atomic_path
from gid_jax.eval import learning as L

METRICS = ("auc", "amplitude_ratio", "spectrum_log_error", "image_dependence")
BATCH = 8   # images per sampler call


def parse_samplers(text: str) -> list[tuple[str, int]]:
    out = []
    for item in text.split(","):
        solver, _, steps = item.strip().partition(":")
        if not steps.isdigit() or int(steps) < 1:
            raise argparse.ArgumentTypeError(f"--samplers: expected SOLVER:STEPS items, got {item!r}")
        out.append((solver, int(steps)))
    return out


def load_pipeline(path: str, guidance: float | None):
    from gid_jax.pipeline import Pipeline

    p = Path(path)
    pipe = (Pipeline.load(p) if (p / "manifest.json").is_file() or (p / "pipeline.json").is_file()
            else Pipeline.from_runs(p))
    if guidance is not None:
        pipe.settings = dataclasses.replace(pipe.settings, guidance_weight=guidance).validate()
    return pipe


def score(pipe, scenes, seeds, solver: str, steps: int) -> dict:
    """Per-seed metrics → their mean and spread across seeds, plus seconds per sample."""
    predictor = L.as_predictor(pipe, solver=solver, num_steps=steps)
    images = [s["image"] for s in scenes]
    for size in {min(BATCH, len(images) - i) for i in range(0, len(images), BATCH)}:
        predictor.batch(np.stack(images[:size]), 0)  # compile every batch shape outside the timing
    t0 = time.perf_counter()
    samples = L.sample_scenes(predictor, images, seeds, batch_size=BATCH)
    seconds = (time.perf_counter() - t0) / (len(images) * len(seeds))
    truths = [s["true_sv"] for s in scenes]
    masks = [L.moving_mask(s["trajectories"]) for s in scenes]
    per_seed = [L.score_predictions([x[j] for x in samples], truths, masks) for j in range(len(seeds))]
    agreement = L.score_predictions([x[0] for x in samples], truths, masks, samples)["amplitude_agreement"]
    out = {"solver": solver, "steps": steps, "seconds_per_sample": round(seconds, 3),
           "amplitude_agreement": agreement}
    for m in METRICS:
        vals = np.array([r[m] for r in per_seed], np.float64)
        out[m] = float(vals.mean())
        out[f"{m}_noise"] = float(vals.std(ddof=1)) if len(vals) > 1 else None
    return out


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(METRICS), figsize=(4 * len(METRICS), 3.4))
    for ax, m in zip(axes, METRICS):
        for solver in dict.fromkeys(r["solver"] for r in rows):
            pts = sorted((r["steps"], r[m], r[f"{m}_noise"] or 0.0) for r in rows if r["solver"] == solver)
            xs, ys, es = zip(*pts)
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=solver)
        ax.set_xscale("log")
        ax.set_xlabel("sampler steps")
        ax.set_title(m.replace("_", " "))
    axes[0].legend()
    fig.tight_layout()
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=110)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="pipeline directory, bundle or LDM run")
    ap.add_argument("--samplers", type=parse_samplers,
                    default=parse_samplers("ddim:250,ddim:20,dpm_solver_pp:10,dpm_solver_pp:20,unipc:5,unipc:10"),
                    help="comma-separated SOLVER:STEPS (solvers: ddim, dpm_solver_pp, unipc)")
    ap.add_argument("--scenes", type=int, default=8, help="held-out procedural scenes")
    ap.add_argument("--seed", type=int, default=10_000, help="first scene seed")
    ap.add_argument("--seeds", type=int, default=2, help="samples per image (>= 2 for the noise)")
    ap.add_argument("--guidance", type=float, default=None, help="CFG weight (default: the checkpoint's)")
    ap.add_argument("--plot", default="", help="write the metrics-vs-steps figure here (PNG)")
    args = ap.parse_args(argv)
    if args.scenes < 2 or args.seeds < 1:
        ap.error("--scenes must be >= 2 (image dependence compares scenes) and --seeds >= 1")
    pipe = load_pipeline(args.checkpoint, args.guidance)
    for solver, steps in args.samplers:          # every option checked before any sampling
        dataclasses.replace(pipe.settings, solver=solver, num_steps=steps).validate()
    scenes = L.procedural_scenes(args.scenes, args.seed, (pipe.width, pipe.height),
                                 int(pipe.settings.period), int(pipe.ldm.num_freqs))
    rows = [score(pipe, scenes, list(range(args.seeds)), s, n) for s, n in args.samplers]
    if args.plot:
        plot(rows, args.plot)
    print(json.dumps({"checkpoint": args.checkpoint, "guidance_weight": pipe.settings.guidance_weight,
                      "scenes": args.scenes, "seeds": args.seeds, "results": rows}, indent=2))


if __name__ == "__main__":
    main()
