"""Seconds per spectral volume (with and without looping guidance), rendered frames/s and peak
memory of the inference pipeline; prints one JSON object.

    python benchmarks/sampling.py --variant tiny --steps 20          # CPU smoke run
    python benchmarks/sampling.py --variant paper --steps 250 --dtype bfloat16   # on a GPU
    python benchmarks/sampling.py --solver unipc --steps 20                      # UniPC-3

Weights are random (timing does not depend on them), so no trained checkpoint is needed.
docs/method.md §10.1: 0.5 s per DDIM step (~2 min per spectral volume) and 25 frames/s rendering on a V100.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np
from flax import nnx

from gid_jax.config import load_config
from gid_jax.diffusion import NoiseSchedule
from gid_jax.models.ldm import MotionLDM
from gid_jax.models.renderer import Renderer
from gid_jax.diffusion import GRIDS
from gid_jax.pipeline import LOOP_MODES, SOLVERS, Pipeline, SamplerSettings


def timed(fn, repeats: int) -> float:
    fn()                                   # compile
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="tiny", choices=("tiny", "paper"))
    ap.add_argument("--steps", type=int, default=250, help="sampler steps (paper: 250 DDIM steps)")
    ap.add_argument("--solver", default="ddim", choices=SOLVERS)
    ap.add_argument("--order", type=int, choices=(1, 2, 3), help="multistep order (default: the solver's)")
    ap.add_argument("--grid", choices=GRIDS, help="step grid (default: the solver's)")
    ap.add_argument("--loop-mode", default="paper_guidance", choices=LOOP_MODES,
                    help="loop mode of the looping timing (default: paper_guidance, the DDIM + "
                    "loss-guidance cost; periods costs what a plain sample does)")
    ap.add_argument("--frames", type=int, default=64, help="frames rendered for frames/s")
    ap.add_argument("--dtype", default="float32", help="compute dtype (bfloat16 on accelerators)")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    cfg = load_config(f"configs/models.py:{args.variant}")
    dtype = jax.numpy.dtype(args.dtype)
    height, width = cfg.image_size
    rngs = nnx.Rngs(0)
    ldm = MotionLDM(cfg, num_freqs=cfg.num_freqs, stage=2, dtype=dtype, rngs=rngs)
    renderer = Renderer(cfg.renderer, rngs=rngs, dtype=dtype)
    pipe = Pipeline(ldm, renderer, (height, width), NoiseSchedule.create(),
                    SamplerSettings(num_steps=args.steps, solver=args.solver, order=args.order,
                                    grid=args.grid, loop_mode=args.loop_mode))
    image = np.random.default_rng(0).random((height, width, 3)).astype(np.float32)

    plain = timed(lambda: pipe.predict_spectral_volume(image, seed=0), args.repeats)
    looped = timed(lambda: pipe.predict_spectral_volume(image, seed=0, loop=True), args.repeats)
    sv = pipe.predict_spectral_volume(image, seed=0)
    traj = pipe.motion_texture(sv, args.frames)
    render = timed(lambda: pipe.render(image, traj), args.repeats)
    try:
        stats = jax.local_devices()[0].memory_stats() or {}
        peak = stats.get("peak_bytes_in_use")
    except Exception:  # noqa: BLE001 - not every backend reports memory
        peak = None
    print(json.dumps({
        "device": jax.devices()[0].device_kind, "variant": args.variant, "size": [width, height],
        "num_freqs": cfg.num_freqs, "steps": args.steps, "solver": args.solver, "dtype": args.dtype,
        "order_grid": list(pipe.settings.solver_options()[1:]), "loop_mode": args.loop_mode,
        "seconds_per_spectral_volume": plain, "seconds_per_looping_spectral_volume": looped,
        "seconds_per_step": plain / args.steps, "rendered_frames_per_sec": args.frames / render,
        "peak_memory_bytes": peak,
    }, indent=2))


if __name__ == "__main__":
    main()
