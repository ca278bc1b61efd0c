"""A tiny regression task for tests and benchmarks: a 2-layer MLP fits a fixed random linear map.

Data are synthetic and deterministic: batch number n of host h is drawn from
`np.random.default_rng([seed, h, n])`, so the iterator's whole state is one integer.
`config.toy.nan_at_steps` poisons those batches (tests the NaN guard); `config.toy.frozen`
trains only the second layer (tests frozen parameters); `config.toy.sleep_per_batch` slows the
input (tests kill/resume).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from gid_jax.train.task import compute_dtype


def toy_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(in_dim=8, hidden=32, out_dim=4, noise=0.01, nan_at_steps=(),
                                          sleep_per_batch=0.0, frozen=False, eval_examples=64))


def toy_train_config(**train_overrides) -> ml_collections.ConfigDict:
    """configs/toy.py ('tiny') with `train` fields overridden, for tests and benchmarks."""
    from gid_jax.config import load_config

    c = load_config("configs/toy.py:tiny")
    c.train.update(train_overrides)
    return c


class MLP(nnx.Module):
    def __init__(self, in_dim, hidden, out_dim, *, dtype, rngs: nnx.Rngs):
        init = nnx.initializers.lecun_normal()
        self.l1 = nnx.Linear(in_dim, hidden, dtype=dtype, param_dtype=jnp.float32, rngs=rngs,
                             kernel_init=nnx.with_partitioning(init, ("embed", "mlp")),
                             bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), ("mlp",)))
        self.l2 = nnx.Linear(hidden, out_dim, dtype=dtype, param_dtype=jnp.float32, rngs=rngs,
                             kernel_init=nnx.with_partitioning(init, ("mlp", "embed")))

    def __call__(self, x):
        return self.l2(jax.nn.gelu(self.l1(x)))


class ToyIterator:
    """Infinite iterator of {'x', 'y'} numpy batches; state = number of batches produced."""

    def __init__(self, cfg, batch_size: int, seed: int, process_index: int):
        self.cfg, self.batch_size, self.seed, self.process_index = cfg, batch_size, seed, process_index
        self.position = 0
        self.w = np.random.default_rng(seed + 1000).normal(size=(cfg.in_dim, cfg.out_dim)).astype(np.float32)

    def __iter__(self):
        return self

    def __next__(self):
        if self.cfg.sleep_per_batch:
            time.sleep(self.cfg.sleep_per_batch)
        r = np.random.default_rng([self.seed, self.process_index, self.position])
        x = r.normal(size=(self.batch_size, self.cfg.in_dim)).astype(np.float32)
        y = np.tanh(x @ self.w) + self.cfg.noise * r.normal(size=(self.batch_size, self.cfg.out_dim))
        if self.position in tuple(self.cfg.nan_at_steps):
            x[0, 0] = np.nan
        self.position += 1
        return {"x": x, "y": y.astype(np.float32)}

    def get_state(self):
        return {"position": self.position, "seed": self.seed, "batch_size": self.batch_size}

    def set_state(self, state):
        if state["seed"] != self.seed or state["batch_size"] != self.batch_size:
            raise ValueError(f"toy iterator state {state} does not match seed={self.seed}, "
                             f"batch_size={self.batch_size}")
        self.position = int(state["position"])


class ToyTask:
    name = "toy"

    def __init__(self, config=None):
        self._eval = None

    def create_model(self, config, rngs):
        c = config.toy
        return MLP(c.in_dim, c.hidden, c.out_dim, dtype=compute_dtype(config), rngs=rngs)

    def loss_fn(self, model, batch, rng):
        pred = model(batch["x"]).astype(jnp.float32)
        err = pred - batch["y"]
        loss = jnp.mean(err ** 2)
        return loss, {"mae": jnp.mean(jnp.abs(err))}

    def create_train_iterator(self, config, *, batch_size, process_index, process_count):
        return ToyIterator(config.toy, batch_size, int(config.seed), process_index)

    def eval_fn(self, model, step):
        if self._eval is None:
            it = ToyIterator(self._cfg.toy, self._cfg.toy.eval_examples, 10_000 + int(self._cfg.seed), 0)
            self._eval = next(it)
        loss, m = self.loss_fn(model, self._eval, None)
        return {"loss": float(loss), "mae": float(m["mae"])}


class FrozenToyTask(ToyTask):
    """The toy task with the first layer frozen."""

    name = "toy_frozen"
    trainable = nnx.All(nnx.Param, nnx.PathContains("l2"))


def make_toy_task(config) -> ToyTask:
    task = FrozenToyTask() if config.toy.frozen else ToyTask()
    task._cfg = config
    return task
