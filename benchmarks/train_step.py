"""Time the generic training step of a task: steps/s, examples/s, peak memory, MFU → JSON.

    python benchmarks/train_step.py --task toy --batch 256 --steps 50 --mesh data=-1,fsdp=1
    python benchmarks/train_step.py --task toy --dtype bfloat16 --accum 2
    python benchmarks/train_step.py --config configs/ldm.py:paper --batch 96 --dtype bfloat16 \
        --config.data.dir=DATA --config.vae_workdir=runs/vae

`--task` is a name registered in `gid_jax.train.TASKS` (stage tasks register there); the task's own
iterator supplies one batch which is reused, so input-pipeline cost is excluded. MFU uses FLOPs
from XLA's cost analysis of the compiled (per-device) step and the device's peak bf16 FLOP/s
(`gid_jax.train.metrics.PEAK_BF16_FLOPS`); it is null where the peak is unknown (CPU).

Fit before running (`--analyze`): compile only, never execute, no data needed:

    python benchmarks/train_step.py --analyze --devices 8 --mesh data=-1,fsdp=8 \
        --per-device-batch 1 --dtype bfloat16 [--stages vae,ldm,ldm_freq_attn,renderer] \
        [--variant paper] [--config.model.remat=full] [--config.model.vae.remat=full]

For every stage at the `--variant` config (default paper) it lowers and compiles the training
step (`jax.jit(...).lower(...).compile()`) on the mesh of `--devices` fake CPU devices (or the
real devices when `--devices` is 0) for two per-device batch sizes, b and 2b, and prints JSON:
FLOPs per step per device (XLA `cost_analysis()`), bytes per device (`memory_analysis()`:
arguments + outputs + temporaries - donated aliases) and, extrapolating those bytes LINEARLY in
the batch size from the two points, the largest per-device batch that fits in 80 GB (H100) and
95 GB (TPU v5p). Caveat: the CPU backend plans buffers differently from the GPU/TPU compilers
(other fusions, no cuDNN workspace); the estimate is a guide, not a guarantee. The LDM stages
read no data: a throw-away folder with the statistics files their task opens stands in.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time

import jax
import numpy as np


def parse_mesh(text: str) -> dict:
    out = {}
    for part in filter(None, text.split(",")):
        k, v = part.split("=")
        out[k.strip()] = int(v)
    return out


STAGES = {"vae": "configs/vae.py", "ldm": "configs/ldm.py",
          "ldm_freq_attn": "configs/ldm_freq_attn.py", "renderer": "configs/renderer.py"}
CAPACITIES_GB = {"h100_80gb": 80.0, "tpu_v5p_95gb": 95.0}
# The remat field of the model each stage trains (docs/parallelism.md "Memory: rematerialisation").
REMAT_FIELD = {"vae": "model.vae.remat", "ldm": "model.remat", "ldm_freq_attn": "model.remat",
               "renderer": "model.renderer.remat"}


def stage_remat(stage: str, config) -> str:
    node = config
    for key in REMAT_FIELD[stage].split("."):
        node = node.get(key) if node is not None else None
    return "none" if node is None else str(node)


def fake_prepared_dir(root: str, num_freqs: int, height: int, width: int) -> str:
    """The files an LDM task opens at start-up (frequency scales, prepare settings), no data."""
    from gid_jax.motion.normalization import FrequencyNormalizer
    from gid_jax.train import motion_data

    paths = motion_data.dataset_paths(root)      # the layout the tasks read
    os.makedirs(os.path.dirname(paths["normalization"]), exist_ok=True)
    norm = FrequencyNormalizer(num_freqs)
    norm._scales = np.ones((num_freqs,), np.float32)
    norm.save(paths["normalization"])
    with open(paths["prepare_config"], "w") as f:
        json.dump({"height": height, "width": width, "num_frames": 150, "fps": 30.0}, f)
    return root


def stage_config(stage: str, variant: str, overrides=(), data_dir: str | None = None):
    """The stage's config at `variant`, with `data.dir` pointing at a fake prepared folder."""
    from gid_jax.config import load_config

    config = load_config(f"{STAGES[stage]}:{variant}", overrides)
    if stage != "renderer":
        h, w = config.model.image_size
        data_dir = data_dir or tempfile.mkdtemp(prefix="gid_fake_data_")
        config.data.dir = fake_prepared_dir(data_dir, int(config.model.num_freqs), h, w)
    return config


def synthetic_batch(stage: str, config, batch: int) -> dict:
    """Numpy arrays shaped like the stage's training batch (values do not matter for timing)."""
    h, w = config.model.image_size
    r = np.random.default_rng(0)
    if stage == "renderer":
        return {"image": r.random((batch, h, w, 3), np.float32),
                "target_image": r.random((batch, h, w, 3), np.float32),
                "flow": r.normal(size=(batch, h, w, 2)).astype(np.float32),
                "mean_motion": r.random((batch, h, w, 1), np.float32)}
    k = int(config.model.num_freqs)
    return {"image": r.random((batch, h, w, 3), np.float32),
            "spectral_volume": (0.3 * r.normal(size=(batch, k, h, w, 4))).astype(np.float32)}


def time_steps(trainer, state, batch, warmup: int, steps: int) -> tuple[float, object, float]:
    """(seconds per training step after `warmup` untimed ones, the final state, the mean loss of
    all the steps); compiles the step first."""
    trainer.compile(batch)
    macc = trainer.empty_metrics()
    for _ in range(warmup):
        state, macc = trainer.step(state, batch, macc)
    jax.block_until_ready(state)
    t0 = time.perf_counter()
    for _ in range(steps):
        state, macc = trainer.step(state, batch, macc)
    jax.block_until_ready((state, macc))
    seconds = (time.perf_counter() - t0) / steps
    return seconds, state, float(np.asarray(macc.compute()["loss"]))


def _memory_bytes(compiled) -> dict:
    m = compiled.memory_analysis()
    if m is None:
        return {}
    out = {k: int(getattr(m, f"{k}_size_in_bytes", 0) or 0)
           for k in ("argument", "output", "temp", "alias", "generated_code")}
    out["total"] = out["argument"] + out["output"] + out["temp"] - out["alias"] + out["generated_code"]
    return out


def _state_bytes(abstract_state) -> dict:
    """Bytes of the training state by part: `global` (unsharded) and `per_device` (one shard)."""
    from gid_jax.train.metrics import tree_nbytes

    out = {}
    for part in ("params", "rest", "opt_state", "ema"):
        leaves = [x for x in jax.tree.leaves(getattr(abstract_state, part)) if hasattr(x, "shape")]
        out[part] = {"global": tree_nbytes(leaves), "per_device": tree_nbytes(leaves, per_device=True)}
    out["total"] = {k: sum(v[k] for v in out.values()) for k in ("global", "per_device")}
    return out


def analyze_stage(stage: str, args, overrides) -> dict:
    """Compile (never run) the stage's step at per-device batch b and 2b; extrapolate the fit."""
    from gid_jax.parallel import batch_shards
    from gid_jax.train import Trainer, get_task

    rows = []
    data_dir = tempfile.mkdtemp(prefix="gid_fake_data_")
    for b in (args.per_device_batch, 2 * args.per_device_batch):
        config = stage_config(stage, args.variant, overrides, data_dir)
        config.train.update(compute_dtype=args.dtype, grad_accum_steps=1)
        config.mesh.update(parse_mesh(args.mesh))
        from gid_jax.parallel import create_mesh, rules_from_config

        shards = batch_shards(create_mesh(config.mesh), rules_from_config(config.mesh))
        config.train.batch_size = b * shards
        task = get_task(config.task, config)
        trainer = Trainer(task, config)
        host = synthetic_batch(stage, config, 1)
        abstract = {k: jax.ShapeDtypeStruct((b * shards,) + v.shape[1:], v.dtype,
                                            sharding=trainer.batch_sharding) for k, v in host.items()}
        compiled = trainer.compile(abstract)
        rows.append({"per_device_batch": b, "global_batch": b * shards,
                     "compile_seconds": round(trainer.compile_seconds, 1),
                     "flops_per_step_per_device": trainer.flops_per_step,
                     "bytes_per_device": _memory_bytes(compiled)})
        state_bytes = _state_bytes(trainer.abstract_state)
        del trainer, compiled
    (b1, m1), (b2, m2) = [(r["per_device_batch"], r["bytes_per_device"].get("total")) for r in rows]
    fits = {}
    if m1 is not None and m2 is not None:
        slope = max((m2 - m1) / (b2 - b1), 1.0)
        fixed = m1 - slope * b1
        fits = {name: max(0, math.floor((gb * 1e9 - fixed) / slope)) for name, gb in CAPACITIES_GB.items()}
        fits.update(bytes_per_example=slope, bytes_fixed=fixed)
    out = {"stage": stage, "variant": args.variant, "compute_dtype": args.dtype,
           "remat_field": REMAT_FIELD[stage], "remat": stage_remat(stage, config), "points": rows,
           "state_bytes": state_bytes, "max_per_device_batch": fits,
           "method": "linear extrapolation of compiled bytes/device from per-device batch b and 2b"}
    if stage == "renderer":
        out["perceptual_vgg"] = bool(getattr(task, "uses_vgg", False))
    return out


def analyze(args, overrides) -> dict:
    from gid_jax.parallel import mesh_summary, create_mesh

    stages = [s for s in args.stages.split(",") if s]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise SystemExit(f"--stages: unknown {unknown}; choose from {sorted(STAGES)}")
    result = {"analyze": True, "backend": jax.default_backend(), "num_devices": jax.device_count(),
              "mesh": mesh_summary(create_mesh(parse_mesh(args.mesh))), "stages": []}
    for stage in stages:
        result["stages"].append(analyze_stage(stage, args, overrides))
        print(json.dumps(result["stages"][-1]), file=sys.stderr, flush=True)   # progress
    print(json.dumps(result))
    return result


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
    ap.add_argument("--analyze", action="store_true", help="compile only: FLOPs, bytes/device, fit")
    ap.add_argument("--stages", default=",".join(STAGES), help="--analyze: stages to compile")
    ap.add_argument("--variant", default="paper", choices=("tiny", "paper"), help="--analyze config")
    ap.add_argument("--per-device-batch", type=int, default=1, help="--analyze: b (and 2b)")
    ap.add_argument("--devices", type=int, default=0, help="fake CPU devices (0: the real ones)")
    from gid_jax.config import load_config, split_overrides

    argv, overrides = split_overrides(list(sys.argv[1:] if argv is None else argv))
    args = ap.parse_args(argv)
    if args.devices:     # before anything touches a device
        jax.config.update("jax_platforms", "cpu")
        jax.config.update("jax_num_cpu_devices", args.devices)
    if args.analyze:
        return analyze(args, overrides)

    from gid_jax.parallel import initialize_distributed, mesh_summary
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
    batch = trainer.host_to_global(next(it))
    step_seconds, state, loss = time_steps(trainer, state, batch, args.warmup, args.steps)
    sps = 1.0 / step_seconds
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
        "final_loss": loss,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
