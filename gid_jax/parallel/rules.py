"""The logical-axis rule table, and NamedShardings for NNX states from their annotations.

Model code names the axes of every parameter with logical names
(`nnx.with_partitioning(init, ('conv_h', 'conv_w', 'conv_in', 'conv_out'))`) and of a few
activations (`constrain(x, ('batch', 'freq', ...))`); the rule table alone decides which mesh axes
those names land on. Change placement in the table, never in model code.

The table is data: `LOGICAL_AXIS_RULES` below is the built-in default, a run's table is
`config.mesh.rules` (a string, `format_rules`/`parse_rules`; entries given there replace the
default's entry of the same name), resolved by `rules_from_config`. The batch axes of the
input arrays are the rule of the logical name 'batch' (`batch_axes`). docs/parallelism.md has
the recipes (data parallel, FSDP, FSDP + tensor parallel).

Conventions (docs/architecture.md §4.4): batch over ('data', 'fsdp'); weights sharded over 'fsdp' (ZeRO-3 style)
on their input-feature axis and over 'tensor' on heads / hidden units; the frequency axis K is
never sharded so frequency attention needs no collective (`check_rules` refuses a table that
shards 'freq').

`tree_shardings(tree, mesh)` turns a pytree that holds `nnx.Variable`s (an NNX state, an optax state
built from one, a TrainState) into a matching tree of NamedShardings:
  * a Variable annotated with `out_sharding=(name, ...)` maps each name through the table;
  * anything unannotated (plain arrays, step counters, RNG keys, unannotated params) is replicated;
  * a mesh axis whose size does not divide the dimension is dropped for that array (logged once),
    as is a mesh axis already used by an earlier dimension of the same array.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

log = logging.getLogger(__name__)

MeshAxes = str | tuple[str, ...] | None

# logical name -> mesh axis / axes (None: never sharded).
LOGICAL_AXIS_RULES: tuple[tuple[str, MeshAxes], ...] = (
    # activations
    ("batch", ("data", "fsdp")),
    ("freq", None),            # K spectral frequencies: local to a device (frequency attention)
    ("height", None),
    ("width", None),
    # dense / attention weights
    ("embed", "fsdp"),         # model width (input features of a dense layer)
    ("mlp", "tensor"),         # hidden units of an MLP
    ("heads", "tensor"),       # attention heads
    ("head_dim", None),
    ("qkv", None),             # the 3 of a fused qkv projection
    # convolution weights (kh, kw, cin, cout)
    ("conv_h", None),
    ("conv_w", None),
    ("conv_in", "fsdp"),
    ("conv_out", "tensor"),
    # per-channel vectors (biases, norm scales) and small tables
    ("channels", None),
    ("norm", None),
    ("time_embed", None),      # sinusoidal/time/frequency embedding width
    ("style", None),           # renderer style vectors
    ("layers", None),          # stacked (scanned) layers
)

_RULES_DICT = dict(LOGICAL_AXIS_RULES)
Rules = Sequence[tuple[str, MeshAxes]]


def known_logical_names() -> tuple[str, ...]:
    return tuple(name for name, _ in LOGICAL_AXIS_RULES)


def format_rules(rules: Rules = LOGICAL_AXIS_RULES) -> str:
    """The table as the config string: 'batch=data+fsdp,freq=,embed=fsdp,...' ('' = never sharded)."""
    def axes(target):
        return "" if target is None else target if isinstance(target, str) else "+".join(target)

    return ",".join(f"{name}={axes(target)}" for name, target in rules)


def parse_rules(text: "str | Rules | Mapping | None", base: Rules = LOGICAL_AXIS_RULES
                ) -> tuple[tuple[str, MeshAxes], ...]:
    """`base` with the entries of `text` replacing those of the same name.

    `text`: 'name=axis1+axis2,name2=,...' (an empty right side: never sharded), or already a
    sequence of (name, axes) pairs / a mapping. Names `base` does not have are refused (typos
    would otherwise silently replicate); the result passes `check_rules`.
    """
    if text is None or (isinstance(text, str) and not text.strip()):
        entries: list[tuple[str, MeshAxes]] = []
    elif isinstance(text, str):
        entries = []
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, sep, target = item.partition("=")
            if not sep or not name.strip():
                raise ValueError(f"mesh.rules: entry {item!r} must look like name=axis or "
                                 "name=axis1+axis2 or name= (never sharded)")
            axes = tuple(a.strip() for a in target.split("+") if a.strip())
            entries.append((name.strip(), None if not axes else axes[0] if len(axes) == 1 else axes))
    else:
        entries = list(text.items() if isinstance(text, Mapping) else text)
    table = dict(base)
    for name, target in entries:
        if name not in table:
            raise ValueError(f"mesh.rules: unknown logical axis name {name!r}; known names: "
                             f"{sorted(table)}")
        if isinstance(target, (list, tuple)):
            target = tuple(target) if len(target) != 1 else target[0]
            target = target or None
        table[name] = target or None
    rules = tuple(table.items())
    check_rules(rules)
    return rules


def check_rules(rules: Rules, mesh_axes: Sequence[str] = ("data", "fsdp", "tensor")) -> None:
    """Refuses tables naming unknown mesh axes, and any that shards 'freq': frequency attention
    attends across the K slices of an example and must find all of them on one device."""
    for name, target in rules:
        for ax in () if target is None else (target,) if isinstance(target, str) else target:
            if ax not in mesh_axes:
                raise ValueError(f"mesh.rules: {name}={ax!r} is not a mesh axis {tuple(mesh_axes)}")
    if dict(rules).get("freq") is not None:
        raise ValueError("mesh.rules: 'freq' must stay unsharded (freq=): frequency attention "
                         "needs all K slices of an example on one device")


def rules_from_config(mesh_config: Any) -> tuple[tuple[str, MeshAxes], ...]:
    """The rule table of a run: `config.mesh.rules` over the built-in default."""
    get = getattr(mesh_config, "get", None)
    return parse_rules(get("rules", None) if get is not None else None)


def batch_axes(rules: Rules | None = None) -> tuple[str, ...]:
    """The mesh axes the batch dimension of every input array is split over: the 'batch' rule."""
    target = dict(LOGICAL_AXIS_RULES if rules is None else rules).get("batch")
    return () if target is None else (target,) if isinstance(target, str) else tuple(target)


# Activation constraints: active only while a trainer traces its step (`activation_sharding`), so
# model code stays mesh-free (CPU tests, inference and export see a no-op).
_ACTIVE: contextvars.ContextVar = contextvars.ContextVar("gid_activation_sharding", default=None)


@contextlib.contextmanager
def activation_sharding(mesh: Mesh, rules: Rules | None = None):
    """While tracing inside this context, `constrain` pins activations to `mesh` by `rules`."""
    token = _ACTIVE.set((mesh, LOGICAL_AXIS_RULES if rules is None else tuple(rules)))
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def constrain(x, logical_axes: Sequence[str | None]):
    """`jax.lax.with_sharding_constraint` of `x` by logical names, or `x` outside
    `activation_sharding` (or on a one-device mesh)."""
    active = _ACTIVE.get()
    if active is None or active[0].size == 1:
        return x
    mesh, rules = active
    spec = logical_to_spec(logical_axes, x.shape, mesh, rules, where="activation")
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))


def _mesh_axes_for(name: str | None, rules: dict[str, MeshAxes], where: str) -> tuple[str, ...]:
    if name is None:
        return ()
    if name not in rules:
        raise ValueError(
            f"{where}: logical axis name {name!r} has no rule in the table (config.mesh.rules / "
            f"gid_jax.parallel.rules.LOGICAL_AXIS_RULES); known names: {sorted(rules)}")
    target = rules[name]
    if target is None:
        return ()
    return (target,) if isinstance(target, str) else tuple(target)


_logged: set[tuple] = set()


def _log_once(key: tuple, msg: str, *args) -> None:
    if key not in _logged:
        _logged.add(key)
        log.info(msg, *args)


def logical_to_spec(logical_axes: Sequence[str | None] | None, shape: Sequence[int], mesh: Mesh,
                    rules: Sequence[tuple[str, MeshAxes]] | None = None, where: str = "array") -> PartitionSpec:
    """PartitionSpec for an array of `shape` annotated with `logical_axes` (None = replicated).

    Mesh axes of size 1 are omitted; an axis that does not divide its dimension, or that an
    earlier dimension already uses, is dropped (logged once per array name).
    """
    if logical_axes is None:
        return PartitionSpec()
    logical_axes = tuple(logical_axes)
    if len(logical_axes) != len(shape):
        raise ValueError(f"{where}: {len(logical_axes)} logical axis names {logical_axes} for an array "
                         f"of rank {len(shape)} (shape {tuple(shape)})")
    table = _RULES_DICT if rules is None else dict(rules)
    used: set[str] = set()
    spec: list[Any] = []
    for dim, name in zip(shape, logical_axes):
        axes = []
        for ax in _mesh_axes_for(name, table, where):
            if ax not in mesh.shape:
                raise ValueError(f"{where}: rule for {name!r} names mesh axis {ax!r}, "
                                 f"mesh has {tuple(mesh.shape)}")
            size = mesh.shape[ax]
            if size == 1:
                continue
            if ax in used:
                _log_once((where, ax, "reuse"), "%s: mesh axis %r already used by an earlier dim; "
                          "not sharding dim %r over it", where, ax, name)
                continue
            if dim % (math.prod(mesh.shape[a] for a in axes) * size):
                _log_once((where, ax, dim), "%s: dim %r of size %d not divisible by mesh axis %r "
                          "(size %d); that axis is dropped for this array", where, name, dim, ax, size)
                continue
            axes.append(ax)
        used.update(axes)
        spec.append(None if not axes else axes[0] if len(axes) == 1 else tuple(axes))
    while spec and spec[-1] is None:
        spec.pop()
    return PartitionSpec(*spec)


def path_str(path) -> str:
    """A pytree key path as 'a/b/0/c' (nnx state paths, dict keys, sequence indices)."""
    parts = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return "/".join(parts)


def _variable_axes(var: nnx.Variable):
    meta = var.get_metadata()
    axes = meta.get("out_sharding", None)
    if axes is None:
        axes = meta.get("sharding_names", None)
    if isinstance(axes, PartitionSpec):
        axes = tuple(axes)
    return axes


def tree_shardings(tree: Any, mesh: Mesh, rules: Sequence[tuple[str, MeshAxes]] | None = None) -> Any:
    """A tree of NamedShardings for `tree` (arrays or ShapeDtypeStructs; may contain nnx.Variables).

    The result has a NamedSharding where `tree` has a Variable or an array leaf, so it is a valid
    tree prefix for `jax.jit(in_shardings/out_shardings)` and `jax.device_put`.
    """
    def leaf_sharding(path, x):
        where = path_str(path)
        if isinstance(x, nnx.Variable):
            value = x.get_value()
            shape = getattr(value, "shape", ())
            return NamedSharding(mesh, logical_to_spec(_variable_axes(x), shape, mesh, rules, where))
        return NamedSharding(mesh, PartitionSpec())

    return jax.tree_util.tree_map_with_path(
        leaf_sharding, tree, is_leaf=lambda x: isinstance(x, nnx.Variable))


def tree_specs(tree: Any, mesh: Mesh, rules=None) -> Any:
    """Like `tree_shardings` but PartitionSpecs (for logging / tests)."""
    return jax.tree.map(lambda s: s.spec, tree_shardings(tree, mesh, rules))
