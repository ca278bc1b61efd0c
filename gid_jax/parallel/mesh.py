"""Device mesh from config: axes ('data', 'fsdp', 'tensor'), sizes from `config.mesh` (-1 = the rest).

    mesh = create_mesh(config.mesh)          # e.g. {data: -1, fsdp: 4, tensor: 1} on 16 devices → 4×4×1

The axes are Auto (not Explicit): with current JAX `jax.make_mesh` defaults to Explicit axes, under
which ordinary NNX layers fail inside `jax.set_mesh` (docs/architecture.md §9). Placement is
driven by explicit `in_shardings`/`out_shardings` on the jitted step instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
from jax.sharding import AxisType, Mesh

MESH_AXES: tuple[str, ...] = ("data", "fsdp", "tensor")
# Keys of `config.mesh` that are not axis sizes (the logical-axis rule table, gid_jax.parallel.rules).
NON_AXIS_KEYS: tuple[str, ...] = ("rules",)


def _as_dict(mesh_config: Any) -> dict[str, Any]:
    if mesh_config is None:
        return {}
    if hasattr(mesh_config, "to_dict"):
        mesh_config = mesh_config.to_dict()
    if not isinstance(mesh_config, Mapping):
        raise ValueError(f"mesh config must be a mapping with keys {MESH_AXES}, got {mesh_config!r}")
    return {k: v for k, v in mesh_config.items() if k not in NON_AXIS_KEYS}


def resolve_mesh_shape(mesh_config: Any, num_devices: int) -> tuple[int, ...]:
    """Sizes of ('data', 'fsdp', 'tensor') for `num_devices` devices.

    Missing axes default to data=-1, fsdp=1, tensor=1. At most one axis may be -1 (it takes the
    devices left over); the product must equal `num_devices`. Bad sizes raise a ValueError that
    says what was asked and how many devices there are.
    """
    cfg = _as_dict(mesh_config)
    unknown = sorted(set(cfg) - set(MESH_AXES))
    if unknown:
        raise ValueError(f"mesh config: unknown axes {unknown}; the mesh axes are {list(MESH_AXES)}")
    defaults = {"data": -1, "fsdp": 1, "tensor": 1}
    sizes: dict[str, int] = {}
    for axis in MESH_AXES:
        v = cfg.get(axis, defaults[axis])
        if v is None:
            v = defaults[axis]
        if isinstance(v, bool) or not isinstance(v, (int,)) and not (isinstance(v, float) and v.is_integer()):
            raise ValueError(f"mesh config: {axis}={v!r} is not an integer (use -1 for 'the rest')")
        v = int(v)
        if v == 0 or v < -1:
            raise ValueError(f"mesh config: {axis}={v} is invalid; sizes are positive integers or -1")
        sizes[axis] = v
    wild = [a for a, v in sizes.items() if v == -1]
    if len(wild) > 1:
        raise ValueError(f"mesh config: only one axis may be -1, got {wild} ({sizes})")
    fixed = math.prod(v for v in sizes.values() if v != -1)
    if wild:
        if num_devices % fixed:
            raise ValueError(
                f"mesh config {sizes}: the fixed axes need a multiple of {fixed} devices, "
                f"but there are {num_devices}")
        sizes[wild[0]] = num_devices // fixed
    elif fixed != num_devices:
        raise ValueError(
            f"mesh config {sizes}: product {fixed} does not match the {num_devices} available devices "
            "(set one axis to -1 to take the rest)")
    return tuple(sizes[a] for a in MESH_AXES)


def create_mesh(mesh_config: Any = None, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A ('data', 'fsdp', 'tensor') mesh with Auto axis types over `devices` (default: all)."""
    devices = list(jax.devices()) if devices is None else list(devices)
    shape = resolve_mesh_shape(mesh_config, len(devices))
    return jax.make_mesh(shape, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES), devices=devices)


def mesh_summary(mesh: Mesh) -> dict[str, int]:
    return {name: int(size) for name, size in mesh.shape.items()}
