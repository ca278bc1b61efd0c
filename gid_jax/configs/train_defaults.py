"""Generic training defaults: the `train`, `optimizer`, `mesh` and `checkpoint` blocks.

Stage configs extend these:

    config = train_defaults.get_config()
    config.optimizer.learning_rate = 5e-5      # LDM (docs/method.md §4.3); renderer 1e-4 (§6)
    config.train.batch_size = 96
    config.model = models.get_config(variant)

Everything is overridable from the command line (`--config.train.num_steps=...`).
"""

from __future__ import annotations

import ml_collections

from gid_jax.config import parse_variant
from gid_jax.parallel.rules import LOGICAL_AXIS_RULES, format_rules


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant = parse_variant(arg, "configs/train_defaults.py")
    c = ml_collections.ConfigDict()
    c.seed = 0

    c.train = ml_collections.ConfigDict(dict(
        num_steps=750_000,            # LDM: 750K steps (docs/method.md §4.3); renderer 300K (§6)
        batch_size=96,                # GLOBAL batch over all hosts; LDM 96, renderer 32
        grad_accum_steps=1,           # k micro-batches per optimiser step (lax.scan); batch % k == 0
        compute_dtype="float32",      # "bfloat16" for mixed precision; params, grads, loss float32
        # Persistent XLA compilation cache: a rerun of the same step skips compilation. "" = off;
        # the JAX_COMPILATION_CACHE_DIR environment variable, when set, wins over this field.
        compilation_cache_dir="~/.cache/gid_jax/jax_cache",
        ema_decay=0.9999,             # NOT RECOVERED (docs/method.md §10.3); 0 disables the EMA copy
        log_every=100,                # steps between metric writes (TensorBoard + metrics.jsonl)
        progress_every_secs=60.0,     # clu ReportProgress (steps/s, ETA)
        eval_every=0,                 # 0: no periodic evaluation (needs task.eval_fn)
        eval_use_ema=True,            # evaluate the EMA parameters when kept
        profile=False,                # clu periodic_actions.Profile
        profile_first_step=10,
        profile_num_steps=5,
        nan_guard=True,               # skip (and count) steps with a non-finite loss or gradient
        max_nonfinite_steps=10,       # stop (diverged) after this many skipped steps in a row; 0: never
        init_from=ml_collections.ConfigDict(dict(
            workdir="",                # another run's workdir ('' = off): stage 2 from stage 1
            step=-1,                   # -1: its latest checkpoint
            filter=".*",               # regex over '/'-joined parameter paths to copy
            use_ema=True,              # copy its EMA parameters (if it kept them)
            strip_prefix="",           # regex removed from a path to name it in that run
        )),
    ))

    c.optimizer = ml_collections.ConfigDict(dict(
        name="adam",                  # docs/method.md §4.3 / §6: Adam
        learning_rate=5e-5,           # LDM 5e-5 (docs/method.md §4.3); renderer 1e-4 (§6)
        b1=0.9, b2=0.999, eps=1e-8,   # Adam defaults (not stated in the paper)
        weight_decay=0.0,             # > 0 switches to AdamW
        schedule="constant",          # constant | cosine | linear (after warm-up)
        warmup_steps=0,               # NOT RECOVERED
        decay_steps=-1,               # -1: train.num_steps
        end_lr_factor=0.0,            # final lr = learning_rate * end_lr_factor (cosine / linear)
        grad_clip_norm=1.0,           # global-norm clipping; 0 disables. NOT RECOVERED
        momentum=0.0,                 # name="sgd" only (0: plain SGD)
    ))

    # Mesh axis sizes (-1 = the rest) and the logical-axis rule table, "name=axis1+axis2,name2=,..."
    # (an empty right side: never sharded). A `--config.mesh.rules=...` string need only name the
    # entries it changes, e.g. "embed=,conv_in=" (plain data parallel). The 'batch' rule sets the
    # batch axes of the input. Recipes: docs/parallelism.md.
    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1,
                                            rules=format_rules(LOGICAL_AXIS_RULES)))

    c.checkpoint = ml_collections.ConfigDict(dict(
        every_steps=5000,
        keep=3,                       # keep the last N
        keep_best=1,                  # plus the best N by `best_metric` (0: off)
        best_metric="train/loss",     # a logged metric name, e.g. "eval/loss"
        best_mode="min",              # min | max
        async_save=True,
    ))
    if variant == "tiny":
        c.train.update(num_steps=20, batch_size=8, log_every=5, ema_decay=0.9, progress_every_secs=10.0)
        c.checkpoint.update(every_steps=10)
    return c
