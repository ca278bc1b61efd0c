"""The `Task` protocol: what a training stage gives the one training loop (`gid_jax.train.train`).

A stage file (VAE, LDM stage 1/2, renderer) is a small class with:

    name: str
    create_model(config, rngs: nnx.Rngs) -> nnx.Module
        Build the model from `config` (use `compute_dtype(config)` for activations; keep params
        float32). Parameters carry logical axis names via `nnx.with_partitioning`.
    loss_fn(model, batch, rng) -> (loss, {name: scalar})
        `batch`: dict of global arrays (leading dim = global batch, or one micro-batch of it);
        `rng`: a raw PRNG key (uint32) fresh for every step (and micro-batch). Must be pure JAX.
    create_train_iterator(config, *, batch_size, process_index, process_count) -> iterator
        Yields dicts of numpy arrays with `batch_size` (= this host's share) leading examples.
        Its position must be checkpointable: `save(path)`/`restore(path)` (e.g. the tf.data
        InputIterator) or `get_state()`/`set_state(state)` (JSON-able / bytes).
Optional:
    trainable: an nnx filter of the parameters to train (default `nnx.Param`); the rest
        (frozen params, batch statistics) is carried unchanged through the optimiser.
    eval_fn(model, step) -> {name: float}
        Called every `train.eval_every` steps with the EMA model (or the live one); metrics
        are logged under "eval/<name>".
    finalize(model, config, workdir)
        Called once with the EMA model when training reaches `train.num_steps` (e.g. the VAE
        stage computes the latent whitening statistics the LDM stages need). Idempotent.

A stage's module may also define `resolve_config(config)`, which writes the config fields the
data decide; `gid_jax.train.get_task` calls it before building the task and then locks the
config, so a task reads `config.x` and never writes it.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
from flax import nnx


@runtime_checkable
class Task(Protocol):
    name: str

    def create_model(self, config: Any, rngs: nnx.Rngs) -> nnx.Module: ...

    def loss_fn(self, model: nnx.Module, batch: Mapping[str, jax.Array],
                rng: jax.Array) -> tuple[jax.Array, Mapping[str, jax.Array]]: ...

    def create_train_iterator(self, config: Any, *, batch_size: int, process_index: int,
                              process_count: int) -> Iterator[Mapping[str, Any]]: ...


def compute_dtype(config: Any):
    """`config.train.compute_dtype` as a jnp dtype (float32 / bfloat16 / float16)."""
    name = str(config.train.compute_dtype)
    try:
        return jnp.dtype(name)
    except TypeError:
        raise ValueError(f"train.compute_dtype={name!r} is not a dtype name (float32, bfloat16)") from None


def trainable_filter(task: Any):
    return getattr(task, "trainable", None) or nnx.Param
