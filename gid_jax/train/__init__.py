"""Training: one generic training loop (`train`, in `trainer.py`) driven by a small `Task` per stage.

The names below are loaded on first use (PEP 562), so that importing a light submodule such as
`gid_jax.train.checkpoint` (what inference needs to restore weights) does not pull in the
trainer and with it CLU and TensorFlow.
"""

import importlib
import pkgutil

TASKS: dict[str, str] = {
    # name -> "module:factory(config) -> Task"; stage tasks register here.
    "toy": "gid_jax.train.toy:make_toy_task",
    "renderer": "gid_jax.train.renderer_task:make_renderer_task",
    "vae": "gid_jax.train.vae_task:make_vae_task",
    "ldm": "gid_jax.train.ldm_task:make_ldm_task",
    "distill": "gid_jax.train.distill_task:make_distill_task",
}

_LAZY = {"Trainer": "trainer", "TrainResult": "trainer", "train": "trainer", "TrainState": "state",
         "Task": "task", "compute_dtype": "task"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"gid_jax.train.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'gid_jax.train' has no attribute {name!r}")


def get_task(name: str, config):
    """Instantiate a registered task by name, with `config` complete and locked.

    The task's module may define `resolve_config(config)`, which fills in the fields the data
    decide (the LDM stages: K, image size, period, fps); it runs first. Then `config.lock()`:
    from here on no code can add a field (a misspelt one raises instead of being ignored), and
    the task only reads the config."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known: {sorted(TASKS)}")
    factory = pkgutil.resolve_name(TASKS[name])
    resolve = getattr(importlib.import_module(factory.__module__), "resolve_config", None)
    if resolve is not None:
        resolve(config)
    config.lock()
    return factory(config)


__all__ = ["TASKS", "Task", "TrainResult", "TrainState", "Trainer", "compute_dtype", "get_task", "train"]
