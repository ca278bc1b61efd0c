"""Training: one generic loop (`train`) driven by a small `Task` per stage."""

from gid_jax.train.loop import Trainer, TrainResult, train
from gid_jax.train.state import TrainState
from gid_jax.train.task import Task, compute_dtype

TASKS: dict[str, str] = {
    # name -> "module:factory(config) -> Task"; stage tasks register here.
    "toy": "gid_jax.train.toy:make_toy_task",
    "renderer": "gid_jax.train.renderer_task:make_renderer_task",
    "vae": "gid_jax.train.vae_task:make_vae_task",
    "ldm": "gid_jax.train.ldm_task:make_ldm_task",
}


def get_task(name: str, config):
    """Instantiate a registered task by name."""
    import importlib

    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known: {sorted(TASKS)}")
    module, factory = TASKS[name].split(":")
    return getattr(importlib.import_module(module), factory)(config)


__all__ = ["TASKS", "Task", "TrainResult", "TrainState", "Trainer", "compute_dtype", "get_task", "train"]
