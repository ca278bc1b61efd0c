"""Host-local numpy batches ⇄ global jax.Arrays sharded over the mesh.

Every host's training input yields its own slice of the global batch (global batch / process
count examples); `host_to_global` stitches those slices into one global array per key, split
on the leading dimension over the mesh axes of the 'batch' rule of the rule table (`rules`,
default the built-in table), with `jax.make_array_from_process_local_data`.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from gid_jax.parallel.rules import batch_axes


def batch_spec(mesh: Mesh, extra_leading: int = 0, rules=None) -> PartitionSpec:
    """PartitionSpec splitting dimension `extra_leading` over the batch axes that exist in `mesh`."""
    axes = tuple(a for a in batch_axes(rules) if a in mesh.shape and mesh.shape[a] > 1)
    batch = None if not axes else axes[0] if len(axes) == 1 else axes
    return PartitionSpec(*([None] * extra_leading), batch)


def batch_sharding(mesh: Mesh, rules=None) -> NamedSharding:
    return NamedSharding(mesh, batch_spec(mesh, rules=rules))


def batch_shards(mesh: Mesh, rules=None) -> int:
    """How many ways the batch dimension is split (by default data × fsdp)."""
    return int(np.prod([mesh.shape[a] for a in batch_axes(rules) if a in mesh.shape]))


def host_to_global(batch: Any, mesh: Mesh, rules=None) -> Any:
    """Pytree of host-local numpy arrays (leading dim = this host's examples) → global jax.Arrays."""
    sharding = batch_sharding(mesh, rules)
    shards = batch_shards(mesh, rules)

    def one(x):
        x = np.asarray(x)
        if x.ndim == 0:
            raise ValueError("host_to_global: batch leaves need a leading batch dimension, got a scalar")
        global_n = x.shape[0] * jax.process_count()
        if global_n % shards:
            raise ValueError(f"global batch {global_n} ({x.shape[0]} per host × {jax.process_count()} hosts) "
                             f"is not divisible by the batch axes' mesh size {shards}")
        return jax.make_array_from_process_local_data(sharding, x, (global_n,) + x.shape[1:])

    return jax.tree.map(one, batch)


def to_host(x: Any) -> Any:
    """Global arrays → numpy on every host (all-gathers arrays not fully addressable here)."""
    def one(a):
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(a, tiled=True))
        return np.asarray(a)

    return jax.tree.map(one, x)
