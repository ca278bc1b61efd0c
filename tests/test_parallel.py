"""Mesh config, the logical-axis rule table, distributed start-up, host⇄global arrays, two processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from gid_jax.parallel import (create_mesh, host_to_global, logical_to_spec, resolve_distributed_config,
                              resolve_mesh_shape, tree_specs)
from gid_jax.parallel.distributed import first_slurm_host

REPO = Path(__file__).resolve().parents[1]


def test_mesh_shape_parsing():
    assert resolve_mesh_shape({"data": -1, "fsdp": 4, "tensor": 1}, 16) == (4, 4, 1)
    assert resolve_mesh_shape({"data": 2, "fsdp": -1}, 8) == (2, 4, 1)
    assert resolve_mesh_shape(None, 8) == (8, 1, 1)
    assert resolve_mesh_shape({"data": 2, "fsdp": 2, "tensor": 2}, 8) == (2, 2, 2)
    for bad, msg in [({"data": -1, "fsdp": -1}, "only one axis"), ({"data": 3, "fsdp": -1}, "multiple of 3"),
                     ({"data": 2, "fsdp": 2, "tensor": 1}, "does not match the 8"), ({"data": 0}, "invalid"),
                     ({"pipeline": 2}, "unknown axes"), ({"data": "x"}, "not an integer")]:
        with pytest.raises(ValueError, match=msg):
            resolve_mesh_shape(bad, 8)


def test_create_mesh_is_auto():
    mesh = create_mesh({"data": -1})
    assert mesh.axis_names == ("data", "fsdp", "tensor")
    assert all(t == jax.sharding.AxisType.Auto for t in mesh.axis_types)


class _FakeMesh:
    """Only `.shape` is read by the rules (lets us test a 2×4×2 layout on one CPU device)."""

    def __init__(self, **shape):
        self.shape = shape


def test_logical_rules_and_divisibility():
    mesh = _FakeMesh(data=2, fsdp=4, tensor=2)
    assert logical_to_spec(("batch", "height", "width", "channels"), (16, 8, 8, 3), mesh) == P(("data", "fsdp"))
    assert logical_to_spec(("embed", "mlp"), (64, 128), mesh) == P("fsdp", "tensor")
    # 6 is not divisible by fsdp=4 → that axis is dropped; 'tensor' still applies.
    assert logical_to_spec(("conv_h", "conv_w", "conv_in", "conv_out"), (3, 3, 6, 8), mesh) == P(None, None, None, "tensor")
    # batch of 2: 'data' fits, 'fsdp' does not.
    assert logical_to_spec(("batch",), (2,), mesh) == P("data")
    # the same mesh axis is never used twice in one array
    assert logical_to_spec(("embed", "embed"), (8, 8), mesh) == P("fsdp")
    assert logical_to_spec(("freq", "height"), (16, 8), mesh) == P()          # K never sharded
    with pytest.raises(ValueError, match="no rule"):
        logical_to_spec(("nonsense",), (4,), mesh)
    with pytest.raises(ValueError, match="rank"):
        logical_to_spec(("embed",), (4, 4), mesh)


def test_tree_shardings_from_nnx_annotations():
    class M(nnx.Module):
        def __init__(self, rngs):
            self.a = nnx.Linear(8, 16, rngs=rngs, kernel_init=nnx.with_partitioning(
                nnx.initializers.lecun_normal(), ("embed", "mlp")))
            self.b = nnx.Linear(16, 4, rngs=rngs)      # unannotated → replicated

    with nnx.use_eager_sharding(False):
        state = nnx.state(nnx.eval_shape(lambda: M(nnx.Rngs(0))))
    mesh = create_mesh({"data": -1})
    specs = tree_specs(state, mesh)
    assert specs["a"]["kernel"] == P() and specs["b"]["kernel"] == P()    # 1-device mesh: size-1 axes omitted
    assert logical_to_spec(("embed", "mlp"), (8, 16), _FakeMesh(data=1, fsdp=4, tensor=2)) == P("fsdp", "tensor")


def test_host_to_global_single_process():
    mesh = create_mesh({"data": -1})
    g = host_to_global({"x": np.arange(12, dtype=np.float32).reshape(4, 3)}, mesh)
    np.testing.assert_array_equal(np.asarray(g["x"]), np.arange(12).reshape(4, 3))
    with pytest.raises(ValueError, match="leading batch"):
        host_to_global({"x": np.float32(1)}, mesh)


def test_resolve_distributed_config():
    assert resolve_distributed_config({}) is None
    assert resolve_distributed_config({"GID_NUM_PROCESSES": "1"}) is None
    assert resolve_distributed_config({"GID_COORDINATOR_ADDRESS": "h:1", "GID_NUM_PROCESSES": "4",
                                       "GID_PROCESS_ID": "2"}) == dict(
        coordinator_address="h:1", num_processes=4, process_id=2)
    assert resolve_distributed_config({"JAX_COORDINATOR_ADDRESS": "c:9", "JAX_NUM_PROCESSES": "2",
                                       "JAX_PROCESS_ID": "1"})["process_id"] == 1
    slurm = {"SLURM_NTASKS": "8", "SLURM_PROCID": "3", "SLURM_JOB_NODELIST": "gpu[07-08,11],cpu1"}
    assert resolve_distributed_config(slurm) == dict(coordinator_address="gpu07:12321", num_processes=8,
                                                     process_id=3)
    assert resolve_distributed_config({"SLURM_NTASKS": "2", "SLURM_PROCID": "0",
                                       "SLURM_LAUNCH_NODE_IPADDR": "10.0.0.5", "GID_COORDINATOR_PORT": "999"}
                                      )["coordinator_address"] == "10.0.0.5:999"
    assert resolve_distributed_config({"SLURM_NTASKS": "1", "SLURM_PROCID": "0"}) is None
    assert resolve_distributed_config({"TPU_WORKER_HOSTNAMES": "a,b,c,d"}) == {}
    assert first_slurm_host("node5") == "node5"
    with pytest.raises(ValueError, match="outside"):
        resolve_distributed_config({"GID_COORDINATOR_ADDRESS": "h:1", "GID_NUM_PROCESSES": "2",
                                    "GID_PROCESS_ID": "2"})
    with pytest.raises(ValueError, match="integer"):
        resolve_distributed_config({"GID_COORDINATOR_ADDRESS": "h:1", "GID_NUM_PROCESSES": "two"})


WORKER = r"""
import json, sys
from gid_jax.parallel import initialize_distributed
assert initialize_distributed()          # before anything touches a device
import jax
from gid_jax.train import train
from gid_jax.train.toy import make_toy_task, toy_train_config
c = toy_train_config(num_steps=6, log_every=1, batch_size=8)
c.checkpoint.update(every_steps=3, keep=2, keep_best=0)
r = train(make_toy_task(c), c, sys.argv[1])
print("RESULT", json.dumps({"process": jax.process_index(), "processes": jax.process_count(),
                            "devices": jax.device_count(), "local": jax.local_device_count(), "step": r.step}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_distributed_training(tmp_path):
    port = _free_port()
    procs = []
    for i in range(2):
        env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO),
                   XLA_FLAGS="--xla_force_host_platform_device_count=2",
                   GID_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", GID_NUM_PROCESSES="2", GID_PROCESS_ID=str(i))
        procs.append(subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path)], env=env, cwd=REPO,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        assert p.returncode == 0, err[-3000:]
        outs.append(json.loads(out.split("RESULT", 1)[1]))
    assert sorted(o["process"] for o in outs) == [0, 1]
    assert all(o["processes"] == 2 and o["devices"] == 4 and o["local"] == 2 and o["step"] == 6 for o in outs)
    ck = tmp_path / "checkpoints"
    assert sorted(int(p.name) for p in ck.iterdir() if p.name.isdigit()) == [3, 6]
    assert {p.name for p in (ck / "6" / "data").glob("process_*")} == {"process_0.json", "process_1.json"}
    from gid_jax.train.metrics import read_metrics

    m = read_metrics(tmp_path)
    assert sorted(m) == list(range(1, 7)) and all(np.isfinite(m[s]["train/loss"]) for s in m)
