"""The training state: one pytree with everything a step reads and writes, checkpointed whole."""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
from flax import nnx


@flax.struct.dataclass
class TrainState:
    step: jax.Array          # int32: optimiser steps taken (skipped steps included)
    params: Any              # nnx.State of the trainable parameters (float32)
    rest: Any                # nnx.State of everything else (frozen params, batch stats)
    opt_state: Any           # optax state over `params`
    ema: Any                 # nnx.State like `params`, or None when train.ema_decay == 0
    rng: jax.Array           # raw base PRNG key; step s uses fold_in(rng, s)
    skipped: jax.Array       # int32: steps skipped by the NaN/inf guard


def abstract_model(task, config) -> nnx.Module:
    """The model with ShapeDtypeStructs for arrays (no memory, no devices)."""
    with nnx.use_eager_sharding(False):
        return nnx.eval_shape(lambda: task.create_model(config, nnx.Rngs(0)))


def make_init_fn(task, config, tx, trainable, ema_decay: float):
    """A pure function seed_key -> TrainState (jit it with out_shardings to create sharded state)."""
    def init(key):
        model_key, rng = jax.random.split(key)
        with nnx.use_eager_sharding(False):
            model = task.create_model(config, nnx.Rngs(model_key))
        _, params, rest = nnx.split(model, trainable, ...)
        ema = jax.tree.map(jnp.copy, params) if ema_decay > 0 else None
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, rest=rest,
                          opt_state=tx.init(params), ema=ema, rng=rng,
                          skipped=jnp.zeros((), jnp.int32))
    return init
