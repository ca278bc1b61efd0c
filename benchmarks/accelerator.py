"""One accelerator, one script: training-step time and MFU of every stage at the paper config,
sampling time per spectral volume and rendering frames/s at 256x160 → one JSON object.

    python benchmarks/accelerator.py                       # on one GPU/TPU: ~8 minutes
    python benchmarks/accelerator.py --budget-seconds 300 --stages ldm,ldm_freq_attn
    python benchmarks/accelerator.py --tiny                # CPU smoke run at the tiny config

Weights and batches are random (timing does not depend on them): no data or checkpoint needed.

* Training: each stage's generic step (`gid_jax.train.Trainer`, bf16 compute, float32 weights)
  at the per-device batch `--batch` (default: the paper's; stage 2: 4 examples of 16
  slices, what fits 80 GB), AOT-compiled, `--warmup` untimed steps, then `--steps` timed ones. MFU = XLA's FLOPs of
  the compiled step (`cost_analysis()`) / step time / the device's peak dense bf16 FLOP/s
  (`PEAK_BF16_FLOPS`, printed; null on CPU).
* Sampling: `Pipeline.predict_spectral_volume` (the inference code path) with 250 DDIM steps
  (the paper's) and with the default solver (10 DPM-Solver++ steps); seconds per spectral volume,
  compile excluded (one untimed call first).
* Rendering: `Pipeline.render` of `--frames` frames; frames/s, compile excluded.

`--budget-seconds` bounds the whole run: sections are run by priority (LDM stage 1, sampling,
rendering, then the other stages) and a section that would start after the budget is reported as
skipped. Compiled programs go to the persistent cache (~/.cache/gid_jax/jax_cache), so a rerun
spends its time measuring. A stage that runs out of memory is reported with its error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_step  # noqa: E402  (stage configs without data, synthetic batches)

# Paper batch sizes (docs/method.md §4.3, §6), per device on one device. Stage 2 sees all 16 slices of
# an example: 4 examples = 64 slices (train_step.py --analyze, bf16: ~13.7 GB per example, 5 fit in 80 GB).
PAPER_BATCH = {"ldm": 96, "ldm_freq_attn": 4, "vae": 32, "renderer": 32}
TINY_BATCH = {"ldm": 4, "ldm_freq_attn": 2, "vae": 4, "renderer": 4}
ORDER = ("ldm", "sampling", "rendering", "ldm_freq_attn", "vae", "renderer")


def parse_batches(text: str, default: dict) -> dict:
    out = dict(default)
    for item in filter(None, text.split(",")):
        name, _, value = item.partition("=")
        if name not in out:
            raise SystemExit(f"--batch: unknown stage {name!r}; stages: {sorted(out)}")
        out[name] = int(value)
    return out


def peak_memory() -> int | None:
    try:
        stats = jax.local_devices()[0].memory_stats() or {}
        return stats.get("peak_bytes_in_use")
    except Exception:  # noqa: BLE001 - not every backend reports memory
        return None


def time_training(stage: str, args, batch: int, data_dir: str) -> dict:
    """Compile, warm up and time `args.steps` steps of `stage` on one device."""
    from gid_jax.train import Trainer, get_task
    from gid_jax.train import metrics as tm

    config = train_step.stage_config(stage, args.variant, args.overrides, data_dir)
    config.train.update(batch_size=batch, compute_dtype=args.dtype, grad_accum_steps=1)
    config.model.remat = args.remat
    config.mesh.update(data=-1, fsdp=1, tensor=1)
    trainer = Trainer(get_task(config.task, config), config)
    state = trainer.init_state(0)
    host = train_step.synthetic_batch(stage, config, batch)
    data = trainer.host_to_global(host)
    step_seconds, _, loss = train_step.time_steps(trainer, state, data, args.warmup, args.steps)
    peak = tm.peak_flops_per_device()
    flops = trainer.flops_per_step
    return {"stage": stage, "per_device_batch": batch, "compile_seconds": round(trainer.compile_seconds, 2),
            "step_seconds": step_seconds, "examples_per_sec": batch / step_seconds,
            "flops_per_step": flops, "achieved_flops_per_sec": flops / step_seconds if flops else None,
            "mfu": flops / step_seconds / peak if (flops and peak) else None,
            "loss": loss, "peak_memory_bytes": peak_memory()}


def build_pipeline(args):
    from flax import nnx

    from gid_jax.config import load_config
    from gid_jax.diffusion import NoiseSchedule
    from gid_jax.models.ldm import MotionLDM
    from gid_jax.models.renderer import Renderer
    from gid_jax.pipeline import Pipeline

    cfg = load_config(f"configs/models.py:{args.variant}")
    dtype = jax.numpy.dtype(args.dtype)
    rngs = nnx.Rngs(0)
    ldm = MotionLDM(cfg, num_freqs=cfg.num_freqs, stage=2, dtype=dtype, rngs=rngs)
    renderer = Renderer(cfg.renderer, rngs=rngs, dtype=dtype)
    return Pipeline(ldm, renderer, tuple(cfg.image_size), NoiseSchedule.create()), cfg


def timed_call(fn) -> tuple[float, float]:
    """(first call incl. compile, second call) seconds."""
    t0 = time.perf_counter()
    fn()
    t1 = time.perf_counter()
    fn()
    return t1 - t0, time.perf_counter() - t1


def time_sampling(pipe, image, ddim_steps: int) -> dict:
    from gid_jax.pipeline import DEFAULT_SOLVER, DEFAULT_STEPS

    out = {}
    for name, kw in (("default", {}), ("ddim", dict(solver="ddim", num_steps=ddim_steps))):
        first, again = timed_call(lambda: pipe.predict_spectral_volume(image, seed=0, **kw))
        out[name] = {"solver": kw.get("solver", DEFAULT_SOLVER), "steps": kw.get("num_steps", DEFAULT_STEPS),
                     "seconds_per_spectral_volume": again, "first_call_seconds": first,
                     "seconds_per_step": again / kw.get("num_steps", DEFAULT_STEPS)}
    return out


def time_rendering(pipe, image, frames: int) -> dict:
    sv = pipe.predict_spectral_volume(image, seed=0)
    traj = pipe.motion_texture(sv, frames)
    first, again = timed_call(lambda: pipe.render(image, traj))
    return {"frames": frames, "frames_per_sec": frames / again, "first_call_seconds": first}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="CPU smoke run: the tiny config")
    ap.add_argument("--stages", default="ldm,ldm_freq_attn,vae,renderer", help="training stages to time")
    ap.add_argument("--batch", default="", help="per-device batch per stage, e.g. ldm=64,vae=16")
    ap.add_argument("--steps", type=int, default=10, help="timed training steps per stage")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--remat", default="none", help="model.remat for the LDM stages")
    ap.add_argument("--ddim-steps", type=int, default=250)
    ap.add_argument("--frames", type=int, default=64, help="frames rendered for frames/s")
    ap.add_argument("--no-sampling", action="store_true")
    ap.add_argument("--budget-seconds", type=float, default=420.0,
                    help="start no new section after this many seconds (default fits ~8 min)")
    from gid_jax.config import split_overrides

    argv, overrides = split_overrides(list(sys.argv[1:] if argv is None else argv))
    args = ap.parse_args(argv)
    args.overrides = overrides
    args.variant = "tiny" if args.tiny else "paper"
    if args.tiny:
        args.dtype = "float32" if args.dtype == "bfloat16" else args.dtype   # CPU: bf16 is emulated
    from gid_jax.train import metrics as tm
    from gid_jax.train.trainer import enable_compilation_cache

    enable_compilation_cache("~/.cache/gid_jax/jax_cache")
    start = time.perf_counter()
    batches = parse_batches(args.batch, TINY_BATCH if args.tiny else PAPER_BATCH)
    stages = [s for s in args.stages.split(",") if s]
    result = {"device": jax.devices()[0].device_kind, "backend": jax.default_backend(),
              "variant": args.variant, "compute_dtype": args.dtype, "remat": args.remat,
              "peak_bf16_flops": dict(tm.PEAK_BF16_FLOPS),
              "peak_flops_this_device": tm.peak_flops_per_device(), "train": [], "skipped": []}
    data_dir = tempfile.mkdtemp(prefix="gid_fake_data_")
    pipe = image = None
    for section in ORDER:
        if section in ("sampling", "rendering") and args.no_sampling:
            continue
        if section not in ("sampling", "rendering") and section not in stages:
            continue
        if time.perf_counter() - start > args.budget_seconds:
            result["skipped"].append(section)
            continue
        try:
            if section in ("sampling", "rendering") and pipe is None:
                pipe, cfg = build_pipeline(args)
                h, w = cfg.image_size
                image = np.random.default_rng(0).random((h, w, 3)).astype(np.float32)
                result["size"] = [w, h]
            if section == "sampling":
                result["sampling"] = time_sampling(pipe, image, args.ddim_steps)
            elif section == "rendering":
                result["rendering"] = time_rendering(pipe, image, args.frames)
            else:
                result["train"].append(time_training(section, args, batches[section], data_dir))
        except Exception as err:  # noqa: BLE001 - e.g. out of memory: report, go on
            result.setdefault("errors", {})[section] = f"{type(err).__name__}: {str(err)[:500]}"
        print(json.dumps({"section": section, "elapsed_seconds": round(time.perf_counter() - start, 1)}),
              file=sys.stderr, flush=True)
    result["peak_memory_bytes"] = peak_memory()
    result["total_seconds"] = time.perf_counter() - start
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
