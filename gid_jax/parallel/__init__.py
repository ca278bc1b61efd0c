"""Parallelism: mesh from config, the logical-axis rule table, multi-host init, host ⇄ global arrays."""

from gid_jax.parallel.arrays import batch_sharding, batch_shards, batch_spec, host_to_global, to_host
from gid_jax.parallel.distributed import initialize_distributed, resolve_distributed_config
from gid_jax.parallel.mesh import MESH_AXES, create_mesh, mesh_summary, resolve_mesh_shape
from gid_jax.parallel.rules import (LOGICAL_AXIS_RULES, activation_sharding, batch_axes, check_rules,
                                    constrain, format_rules, logical_to_spec, parse_rules,
                                    rules_from_config, tree_shardings, tree_specs)

__all__ = [
    "LOGICAL_AXIS_RULES", "MESH_AXES", "activation_sharding", "batch_axes", "batch_sharding",
    "batch_shards", "batch_spec", "check_rules", "constrain", "create_mesh", "format_rules",
    "host_to_global", "initialize_distributed", "logical_to_spec", "mesh_summary", "parse_rules",
    "resolve_distributed_config", "resolve_mesh_shape", "rules_from_config", "to_host",
    "tree_shardings", "tree_specs",
]
