"""A toy regression task (a 2-layer MLP): exercises the training machinery in seconds.

    gid train --config configs/toy.py:tiny --workdir /tmp/toy
"""

from __future__ import annotations

from gid_jax.config import load_config, parse_variant


def get_config(arg: str = "tiny"):
    from gid_jax.train.toy import toy_config

    variant = parse_variant(arg, "configs/toy.py", default="tiny")
    c = load_config(f"configs/train_defaults.py:{variant}")
    c.task = "toy"
    c.toy = toy_config()
    c.optimizer.learning_rate = 1e-2
    return c
