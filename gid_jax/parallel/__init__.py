"""Parallelism: mesh from config, THE logical-axis rule table, multi-host init, host ⇄ global arrays."""

from gid_jax.parallel.arrays import batch_sharding, batch_shards, batch_spec, host_to_global, to_host
from gid_jax.parallel.distributed import initialize_distributed, resolve_distributed_config
from gid_jax.parallel.mesh import BATCH_AXES, MESH_AXES, create_mesh, mesh_summary, resolve_mesh_shape
from gid_jax.parallel.rules import LOGICAL_AXIS_RULES, logical_to_spec, tree_shardings, tree_specs

__all__ = [
    "BATCH_AXES", "LOGICAL_AXIS_RULES", "MESH_AXES", "batch_sharding", "batch_shards", "batch_spec",
    "create_mesh", "host_to_global", "initialize_distributed", "logical_to_spec", "mesh_summary",
    "resolve_distributed_config", "resolve_mesh_shape", "to_host", "tree_shardings", "tree_specs",
]
