"""Stage 5 (beyond the paper): consistency distillation of a finished LDM stage-2 run into a 1-4
step sampler (gid_jax/train/distill_task.py).

    gid train --config configs/distill.py:tiny --workdir runs/distill \\
        --config.data.dir=DATA_DIR --config.teacher_workdir=runs/ldm2

The student and the frozen teacher both start from the teacher run; classifier-free guidance
with `distill.guidance_weight` is distilled in, so the student samples without a null pass
(`Pipeline.from_runs(runs/distill)` picks the consistency sampler).
"""

from __future__ import annotations

import ml_collections

from gid_jax.config import load_config, parse_variant


def get_config(arg: str = "paper") -> ml_collections.ConfigDict:
    arg = parse_variant(arg, "configs/distill.py")
    paper = arg == "paper"
    c = load_config(f"configs/ldm_freq_attn.py:{arg}")
    c.task = "distill"
    del c["ldm_workdir"]
    c.teacher_workdir = ml_collections.FieldReference("", field_type=str)  # an LDM stage-2 run
    c.train.init_from = ml_collections.ConfigDict(dict(
        workdir=c.get_ref("teacher_workdir"), step=-1, filter=".*", use_ema=True,
        strip_prefix="^(student|teacher)/"))      # both copies start from the teacher's weights
    c.distill = ml_collections.ConfigDict(dict(
        guidance_weight=1.75 if paper else 4.0,   # the w the teacher samples with (pipeline's)
        num_intervals=50,                         # NOT RECOVERED: LCM's skip of 20 of 1000 steps
    ))
    c.optimizer.learning_rate = 1e-5 if paper else 2e-4   # NOT RECOVERED (LCM: 8e-6)
    c.train.num_steps = 50_000 if paper else 10
    return c
