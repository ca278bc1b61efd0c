"""Checkpoint entries of an eval sweep at a training step: ``PIPELINE@STEP`` and ``PIPELINE@all``.

A metric-vs-training-step curve needs one model cell per saved step of one run, without a
pipeline directory per step. So an entry of ``config.checkpoints`` may name a step of the LDM
run its ``pipeline.json`` points at:

* ``runs/p`` — the pipeline as `Pipeline.load` gives it (the LDM run's latest step);
* ``runs/p@20000`` — the same pipeline with the LDM weights of step 20000 (the renderer run is
  the same for every step: a pipeline's renderer is trained separately);
* ``runs/p@all`` — one entry per step saved in ``LDM_RUN/checkpoints/`` (as many as the run's
  ``checkpoint.keep`` / ``keep_best`` left), expanded when the grid is built.

Only ``@`` followed by digits or ``all`` is read as a step, so other paths with an ``@`` still
work. Bundles hold one set of weights: a step on a bundle is an error.
"""

from __future__ import annotations

import json
from pathlib import Path

ALL = "all"


def split_entry(entry) -> tuple[str, int | str | None]:
    """``"runs/p@20"`` → ``("runs/p", 20)``; ``"runs/p@all"`` → ``("runs/p", "all")``; else
    ``(entry, None)``."""
    text = str(entry)
    path, sep, tail = text.rpartition("@")
    if sep and path and (tail.isdigit() or tail == ALL):
        return path, (int(tail) if tail.isdigit() else ALL)
    return text, None


def step_of(entry) -> int | None:
    """The training step an entry names, or None (the run's latest)."""
    step = split_entry(entry)[1]
    return step if isinstance(step, int) else None


def run_of(entry) -> str:
    """The pipeline path of an entry, without its step."""
    return split_entry(entry)[0]


def ldm_run(pipeline_dir) -> Path:
    """The LDM training run a pipeline directory's ``pipeline.json`` names."""
    from gid_jax.bundle import is_bundle
    from gid_jax.pipeline import PIPELINE_FILE

    path = Path(pipeline_dir)
    if is_bundle(path):
        raise ValueError(f"config.checkpoints: {path} is an exported bundle, which holds one set "
                         "of weights (a step needs a pipeline directory naming its training runs)")
    spec = path / PIPELINE_FILE
    try:
        return path / json.loads(spec.read_text())["ldm"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"config.checkpoints: {spec}: cannot read the LDM run it names "
                         f"({type(err).__name__}: {err})") from None


def saved_steps(run_dir) -> list[int]:
    """Steps of the finished checkpoints of a `gid train` run (Orbax names each step directory
    by its number; unfinished saves carry a suffix and are left out)."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())


def expand_checkpoints(entries) -> list[str]:
    """``config.checkpoints`` with every ``@all`` replaced by one ``@STEP`` per saved step, in
    order, duplicates dropped."""
    out = []
    for entry in entries:
        path, step = split_entry(entry)
        if step == ALL:
            run = ldm_run(path)
            steps = saved_steps(run)
            if not steps:
                raise ValueError(f"config.checkpoints: {entry}: no saved checkpoint in "
                                 f"{run / 'checkpoints'}")
            out += [f"{path}@{s}" for s in steps]
        else:
            out.append(str(entry))
    return list(dict.fromkeys(out))


def load_pipeline(entry):
    """`Pipeline.load` of the entry's path; with a step, its LDM weights are then replaced by
    that step's (the EMA copy where the run kept one, as `Pipeline.from_runs` reads)."""
    from gid_jax.pipeline import RUN_CONFIG, Pipeline

    path, step = split_entry(entry)
    if step == ALL:
        raise ValueError(f"config.checkpoints: {entry}: '@all' is expanded by the sweep grid, "
                         "not loadable by itself")
    if step is None:
        return Pipeline.load(path)
    run = ldm_run(path)
    steps = saved_steps(run)
    if step not in steps:          # before loading anything
        raise ValueError(f"config.checkpoints: {entry}: step {step} is not saved in "
                         f"{run / 'checkpoints'} (saved: {steps})")
    from gid_jax.checkpoints import restore_model

    pipe = Pipeline.load(path)

    distilled = json.loads((run / RUN_CONFIG).read_text()).get("task") == "distill"
    restore_model(run, pipe.ldm, step=step, source_path=("^", "student/") if distilled else ("", ""))
    return pipe
