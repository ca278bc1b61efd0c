"""Training: one generic loop (`train`) driven by a small `Task` per stage.

The names below are loaded on first use (PEP 562), so that importing a light submodule such as
`gid_jax.train.checkpoint` (what inference needs to restore weights) does not pull in the loop
and with it CLU and TensorFlow.
"""

import importlib

TASKS: dict[str, str] = {
    # name -> "module:factory(config) -> Task"; stage tasks register here.
    "toy": "gid_jax.train.toy:make_toy_task",
    "renderer": "gid_jax.train.renderer_task:make_renderer_task",
    "vae": "gid_jax.train.vae_task:make_vae_task",
    "ldm": "gid_jax.train.ldm_task:make_ldm_task",
    "distill": "gid_jax.train.distill_task:make_distill_task",
}

_LAZY = {"Trainer": "loop", "TrainResult": "loop", "train": "loop", "TrainState": "state",
         "Task": "task", "compute_dtype": "task"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"gid_jax.train.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'gid_jax.train' has no attribute {name!r}")


def get_task(name: str, config):
    """Instantiate a registered task by name."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known: {sorted(TASKS)}")
    module, factory = TASKS[name].split(":")
    return getattr(importlib.import_module(module), factory)(config)


__all__ = ["TASKS", "Task", "TrainResult", "TrainState", "Trainer", "compute_dtype", "get_task", "train"]
