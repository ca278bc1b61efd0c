"""Logical axis names on model parameters.

Every parameter of the models is created through :func:`partitioned`, which wraps its initializer
with ``nnx.with_partitioning`` so the ``nnx.Param`` carries logical axis names as its
``out_sharding`` metadata, e.g. a 3x3 conv kernel is ``(None, None, 'conv_in', 'conv_out')``.
Logical names say what an axis *is*; the one rule table, :data:`gid_jax.parallel.rules.
LOGICAL_AXIS_RULES`, says where it goes on the mesh ``('data', 'fsdp', 'tensor')``: weights are
sharded ZeRO-3 style over ``fsdp`` on their input side and over ``tensor`` on their output side;
the frequency axis K is never sharded.

Annotations are created with ``eager_sharding=False`` (flax 0.12 shards eagerly by default and
then fails without a mesh): building a model needs no mesh (CPU tests, ``nnx.eval_shape``); the
shardings are computed later by :func:`gid_jax.parallel.rules.tree_shardings`, which replicates
dimensions a mesh axis does not divide instead of failing inside ``jit``.
"""

from __future__ import annotations

from typing import Optional

from flax import nnx

from gid_jax.parallel.rules import LOGICAL_AXIS_RULES, tree_shardings, tree_specs

__all__ = ["LOGICAL_AXIS_RULES", "partitioned", "tree_shardings", "tree_specs"]


def partitioned(init, *names: Optional[str]):
    """``init`` annotated with logical axis ``names`` (one per parameter dimension)."""
    return nnx.with_partitioning(init, tuple(names), eager_sharding=False)
