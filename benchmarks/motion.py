"""Throughput of the motion mathematics on the default device; prints one JSON object.

    python benchmarks/motion.py [--batch 8] [--size 256x160] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from gid_jax import motion


def timed(fn, *args, repeats: int) -> float:
    """Median seconds per call of an already-compiled function (first call compiles)."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", default="256x160")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    rng = np.random.default_rng(0)
    traj = jnp.asarray(rng.normal(size=(args.batch, motion.NUM_FRAMES, height, width, 2)), jnp.float32)
    sv = jax.jit(motion.to_spectral_volume)(traj)
    norm = motion.FrequencyNormalizer().update(np.asarray(sv[:1]))
    # Self-guidance only needs the two first and two last frames of the loop: evaluate just those.
    ends = np.array([0, 1, motion.NUM_FRAMES - 2, motion.NUM_FRAMES - 1])
    loop_grad = jax.jit(jax.grad(lambda s: motion.loop_loss(motion.to_trajectories(s, times=ends)).sum()))
    results = {
        "device": str(jax.devices()[0]), "batch": args.batch, "size": args.size,
        "to_spectral_volume_s": timed(jax.jit(motion.to_spectral_volume), traj, repeats=args.repeats),
        "to_trajectories_s": timed(jax.jit(motion.to_trajectories), sv, repeats=args.repeats),
        "normalize_s": timed(jax.jit(norm.normalize), sv, repeats=args.repeats),
        "loop_loss_grad_s": timed(loop_grad, sv, repeats=args.repeats),
    }
    start = time.perf_counter()
    norm.update(np.asarray(sv))
    results["normalizer_update_examples_per_s"] = args.batch / (time.perf_counter() - start)
    results["simulate_modal_300_steps_s"] = timed(
        lambda s: motion.simulate_modal(s, (width // 2, height // 2), (3.0, 1.0), 300), sv[0],
        repeats=args.repeats)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
