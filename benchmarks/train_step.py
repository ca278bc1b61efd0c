"""Time the generic training step of a task: steps/s, examples/s, peak memory, MFU → JSON.

    python benchmarks/train_step.py --task toy --batch 256 --steps 50 --mesh data=-1,fsdp=1
    python benchmarks/train_step.py --task toy --dtype bfloat16 --accum 2
    python benchmarks/train_step.py --config configs/ldm.py:paper --batch 96 --dtype bfloat16 \
        --config.data.dir=DATA --config.vae_workdir=runs/vae

`--task` is a name registered in `gid_jax.train.TASKS` (stage tasks register there); the task's own
iterator supplies one batch which is reused, so input-pipeline cost is excluded. MFU uses FLOPs
from XLA's cost analysis of the compiled (per-device) step and the device's peak bf16 FLOP/s
(`gid_jax.train.metrics.PEAK_BF16_FLOPS`); it is null where the peak is unknown (CPU).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import jax
import numpy as np


def parse_mesh(text: str) -> dict:
    out = {}
    for part in filter(None, text.split(",")):
        k, v = part.split("=")
        out[k.strip()] = int(v)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="", help="task name (default: the config's `task`)")
    ap.add_argument("--config", default="", help="FILE:VARIANT, e.g. configs/vae.py:paper; extra "
                    "--config.x=y arguments override its fields (default: the toy task)")
    ap.add_argument("--batch", type=int, default=256, help="global batch size")
    ap.add_argument("--accum", type=int, default=1, help="gradient-accumulation micro-batches")
    ap.add_argument("--dtype", default="float32", help="compute dtype")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--mesh", default="data=-1", help="e.g. data=2,fsdp=4,tensor=1")
    from gid_jax.config import load_config, split_overrides

    argv, overrides = split_overrides(list(sys.argv[1:] if argv is None else argv))
    args = ap.parse_args(argv)

    from gid_jax.parallel import host_to_global, initialize_distributed, mesh_summary
    from gid_jax.train import Trainer, get_task
    from gid_jax.train import metrics as tm

    initialize_distributed()
    config = load_config(args.config or "configs/toy.py:tiny", overrides)
    args.task = args.task or config.task
    config.train.update(batch_size=args.batch, grad_accum_steps=args.accum, compute_dtype=args.dtype,
                        num_steps=args.warmup + args.steps)
    config.mesh.update(parse_mesh(args.mesh))
    task = get_task(args.task, config)
    trainer = Trainer(task, config)
    state = trainer.init_state(0)
    it = task.create_train_iterator(config, batch_size=args.batch // jax.process_count(),
                                    process_index=jax.process_index(), process_count=jax.process_count())
    batch = host_to_global(next(it), trainer.mesh)
    trainer.compile(batch)
    macc = trainer.empty_metrics()
    for _ in range(args.warmup):
        state, macc = trainer.step(state, batch, macc)
    jax.block_until_ready(state)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        state, macc = trainer.step(state, batch, macc)
    jax.block_until_ready((state, macc))
    dt = time.perf_counter() - t0
    sps = args.steps / dt
    peak = tm.peak_flops_per_device()
    mem = None
    try:
        stats = jax.local_devices()[0].memory_stats()
        mem = int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None
    except Exception:
        mem = None
    result = {
        "task": args.task, "device": jax.devices()[0].device_kind, "num_devices": jax.device_count(),
        "mesh": mesh_summary(trainer.mesh), "global_batch": args.batch, "grad_accum_steps": args.accum,
        "compute_dtype": args.dtype, "compile_seconds": round(trainer.compile_seconds, 3),
        "steps_per_sec": sps, "examples_per_sec": sps * args.batch,
        "flops_per_step_per_device": trainer.flops_per_step,
        "peak_flops_per_device": peak,
        "mfu": (trainer.flops_per_step * sps / peak) if (peak and trainer.flops_per_step) else None,
        "peak_memory_bytes": mem,
        "state_bytes": tm.tree_nbytes(state),
        "final_loss": float(np.asarray(macc.compute()["loss"])),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
