"""A toy regression task (a 2-layer MLP): exercises the training machinery in seconds.

    gid train --config configs/toy.py:tiny --workdir /tmp/toy
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_here = Path(__file__).resolve().parent


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"gid_configs_{name}", _here / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def get_config(arg: str = "tiny"):
    from gid_jax.train.toy import toy_config

    c = _load("train_defaults").get_config(arg)
    c.task = "toy"
    c.toy = toy_config()
    c.optimizer.learning_rate = 1e-2
    return c
