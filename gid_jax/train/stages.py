"""The four training stages of the method, in order, and how each one finds its inputs.

One table for every caller that trains the whole method (`gid quickstart`, the test fixtures,
retraining the default model), so the order and the hand-over between stages live in one place.
"""

from __future__ import annotations

from pathlib import Path

# (run name, config file, the run it starts from: the config field naming it and that run's name)
STAGES = (
    ("vae", "configs/vae.py", None),
    ("ldm", "configs/ldm.py", ("vae_workdir", "vae")),
    ("ldm2", "configs/ldm_freq_attn.py", ("ldm_workdir", "ldm")),
    ("renderer", "configs/renderer.py", None),
)


def stage_plan(runs_dir, variant: str, data_dir, overrides: dict | None = None):
    """`[(name, "configs/x.py:variant", [--config.… overrides], workdir)]` for all four stages.

    `overrides` maps a stage name to extra `--config.x=y` strings (e.g. longer schedules)."""
    runs_dir = Path(runs_dir)
    overrides = overrides or {}
    plan = []
    for name, config_file, parent in STAGES:
        extra = [f"--config.data.dir={data_dir}"]
        if parent is not None:
            field, run = parent
            extra.append(f"--config.{field}={runs_dir / run}")
        plan.append((name, f"{config_file}:{variant}", extra + list(overrides.get(name, ())),
                     runs_dir / name))
    return plan


def train_stages(runs_dir, variant: str, data_dir, overrides: dict | None = None,
                 on_stage=None) -> dict[str, Path]:
    """Trains every stage that has not finished yet (a `FINISHED` marker is written when a run
    reaches its last step, so a re-run resumes or skips). Returns `{name: workdir}`."""
    from gid_jax.config import load_config
    from gid_jax.logs import quiet_libraries
    from gid_jax.train import get_task, train

    quiet_libraries()
    runs = {}
    plan = stage_plan(runs_dir, variant, data_dir, overrides)
    for i, (name, spec, extra, workdir) in enumerate(plan):
        runs[name] = workdir
        if on_stage is not None:
            on_stage(i, len(plan), name, workdir)
        done = workdir / "FINISHED"
        if done.exists():
            continue
        config = load_config(spec, extra)
        result = train(get_task(config.task, config), config, workdir)
        if result.step >= int(config.train.num_steps):
            done.write_text(f"{result.step}\n")
    return runs
