"""Run with 8 fake CPU devices: the three recipes of docs/parallelism.md (data parallel, FSDP,
FSDP + tensor parallel) each train a few toy steps (and FSDP + TP one tiny LDM stage-2 step)
through the generic Trainer. Prints one JSON line per case: the specs the parameters and the
batch got, and the losses."""

import json
import sys
import tempfile
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import train_step  # noqa: E402  (fake data folder + synthetic batches)

from jax.sharding import NamedSharding  # noqa: E402

from gid_jax.parallel import tree_shardings  # noqa: E402
from gid_jax.parallel.rules import path_str  # noqa: E402
from gid_jax.train import Trainer, get_task  # noqa: E402
from gid_jax.train.toy import make_toy_task, toy_train_config  # noqa: E402

assert jax.device_count() == 8, jax.devices()
RECIPES = {"data_parallel": {"data": -1, "fsdp": 1, "tensor": 1},
           "fsdp": {"data": 1, "fsdp": -1, "tensor": 1},
           "fsdp_tp": {"data": 1, "fsdp": -1, "tensor": 2}}


def spec_str(spec):
    return str(tuple(spec))


def run(name, task, config, host_batch, steps, param_paths):
    trainer = Trainer(task, config)
    state = trainer.init_state(0)
    batch = trainer.host_to_global(host_batch)
    trainer.compile(batch)
    macc = trainer.empty_metrics()
    losses = []
    for _ in range(steps):
        state, macc = trainer.step(state, batch, macc)
        losses.append(float(macc.compute()["loss"]))
    trees = {"params": state.params, "rest": state.rest}
    live = {path_str(p).removesuffix("/value"): spec_str(x.sharding.spec) for p, x in
            jax.tree_util.tree_flatten_with_path(trees)[0]}
    specs = {path_str(p): spec_str(s.spec) for p, s in jax.tree_util.tree_flatten_with_path(
        tree_shardings(trees, trainer.mesh, trainer.rules),
        is_leaf=lambda x: isinstance(x, NamedSharding))[0]}
    print(json.dumps({"case": name, "mesh": dict(trainer.mesh.shape), "losses": losses,
                      "batch_spec": {k: spec_str(v.sharding.spec) for k, v in batch.items()},
                      "param_specs": {k: v for k, v in live.items() if any(q in k for q in param_paths)},
                      "sharded_leaves": sum(v != "()" for v in live.values()),
                      "rule_specs_match": live == specs}), flush=True)


for name, mesh in RECIPES.items():
    c = toy_train_config(batch_size=16, num_steps=3)
    c.mesh.update(mesh)
    run(name, make_toy_task(c), c, next(make_toy_task(c).create_train_iterator(
        c, batch_size=16, process_index=0, process_count=1)), 3, ("l1", "l2"))

c = train_step.stage_config("ldm_freq_attn", "tiny", (), tempfile.mkdtemp())
c.mesh.update(RECIPES["fsdp_tp"])
c.train.batch_size = 4
run("ldm_freq_attn_fsdp_tp", get_task(c.task, c), c, train_step.synthetic_batch("ldm_freq_attn", c, 4),
    1, ("mid/res1/conv1/kernel", "freq_attn/attn/qkv/kernel"))
