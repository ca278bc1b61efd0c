"""Reading weights out of `gid train` checkpoints, for inference (`Pipeline.from_runs`) as much
as for training (`train.init_from`); here rather than in gid_jax/train so that inference imports
Orbax only, no training code. The step directories are written by gid_jax/train/checkpoint.py;
their `data` item's handler lives here because a read-only manager needs every item's handler
to open a step without warnings.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from gid_jax.logs import quiet_libraries
from gid_jax.parallel.rules import path_str

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- data iterator item

def _jsonable(x):
    if isinstance(x, bytes):
        return {"__bytes__": base64.b64encode(x).decode("ascii")}
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return {"__array__": x.tolist(), "dtype": str(x.dtype)}
    return x


def _unjsonable(x):
    if isinstance(x, dict):
        if set(x) == {"__bytes__"}:
            return base64.b64decode(x["__bytes__"])
        if set(x) == {"__array__", "dtype"}:
            return np.asarray(x["__array__"], dtype=x["dtype"])
        return {k: _unjsonable(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_unjsonable(v) for v in x]
    return x


def save_iterator_state(iterator: Any, directory: Path, process_index: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    if callable(getattr(iterator, "save", None)):
        iterator.save(os.fspath(directory / f"process_{process_index}"))
    elif callable(getattr(iterator, "get_state", None)):
        (directory / f"process_{process_index}.json").write_text(json.dumps(_jsonable(iterator.get_state())))
    else:
        raise TypeError(f"the training iterator {type(iterator).__name__} has neither save(path)/restore(path) "
                        "nor get_state()/set_state(): its position cannot be checkpointed")


def restore_iterator_state(iterator: Any, directory: Path, process_index: int) -> None:
    if callable(getattr(iterator, "restore", None)):
        path = directory / f"process_{process_index}"
        if not path.exists() and not list(directory.glob(f"process_{process_index}*")):
            raise FileNotFoundError(f"{path}: no input-pipeline state for process {process_index}")
        iterator.restore(os.fspath(path))
    elif callable(getattr(iterator, "set_state", None)):
        path = directory / f"process_{process_index}.json"
        iterator.set_state(_unjsonable(json.loads(path.read_text())))
    else:
        raise TypeError(f"the training iterator {type(iterator).__name__} cannot restore its position")


class DataIteratorHandler(ocp.CheckpointHandler):
    """Saves each process's input-pipeline position into the step directory (synchronously)."""

    def save(self, directory: epath.Path, args: "DataIteratorSave"):
        save_iterator_state(args.item, Path(os.fspath(directory)), jax.process_index())

    def restore(self, directory: epath.Path, args: "DataIteratorRestore"):
        restore_iterator_state(args.item, Path(os.fspath(directory)), jax.process_index())
        return args.item

    def metadata(self, directory: epath.Path):
        return None

    def finalize(self, directory: epath.Path) -> None:
        pass

    def close(self):
        pass


@ocp.args.register_with_handler(DataIteratorHandler, for_save=True)
@dataclasses.dataclass
class DataIteratorSave(ocp.args.CheckpointArgs):
    item: Any


@ocp.args.register_with_handler(DataIteratorHandler, for_restore=True)
@dataclasses.dataclass
class DataIteratorRestore(ocp.args.CheckpointArgs):
    item: Any


# ----------------------------------------------------------------------------- init_from

def load_params_from(workdir: str | os.PathLike, targets: dict[str, Any], *, filter: str = ".*",
                     use_ema: bool = True, step: int = -1,
                     source_path: tuple[str, str] = ("", "")) -> tuple[dict[str, Any], list[str]]:
    """Copy parameters from another run's checkpoint into this run's fresh state trees.

    `targets` maps names to nnx.States of this run (e.g. {'params': state.params, 'rest': state.rest}:
    stage 2 keeps the frozen stage-1 base in 'rest'). A leaf is matched by its path inside the
    model, whichever container holds it on either side; it is copied when its '/'-joined path
    matches the regex `filter`; a matched leaf of another shape is an error. The source's EMA copy replaces its trainable
    params when `use_ema` and it has one. Everything else keeps its fresh initialisation (e.g.
    stage 2's new frequency-attention layers). Returns (updated targets, copied paths). Placement
    (sharding) follows the targets. `source_path` = (regex, replacement) renames a target path
    to the source's (`re.sub`; ("", "") keeps it): e.g. ("^(student|teacher)/", "") fills both
    copies of a distillation model from one LDM run, ("^", "student/") reads a student back.
    """
    ckpt_dir = Path(workdir).absolute() / "checkpoints"   # Orbax needs absolute paths
    if not ckpt_dir.exists():
        raise FileNotFoundError(f"train.init_from: {ckpt_dir} does not exist (no checkpoints in {workdir})")
    quiet_libraries()
    # Every item of the step has its handler, else Orbax warns about each one it cannot read.
    mgr = ocp.CheckpointManager(ckpt_dir, options=ocp.CheckpointManagerOptions(read_only=True, create=False),
                                item_handlers={"state": ocp.PyTreeCheckpointHandler(),
                                               "data": DataIteratorHandler(),
                                               "meta": ocp.JsonCheckpointHandler()})
    try:
        steps = sorted(mgr.all_steps())
        if not steps:
            raise FileNotFoundError(f"train.init_from: no finished checkpoint in {ckpt_dir}")
        if step is None or step < 0:
            step = steps[-1]
        elif step not in steps:
            raise FileNotFoundError(f"train.init_from: step {step} not in {ckpt_dir} (have {steps})")
        tree_meta = mgr.item_metadata(step)["state"]
        tree_meta = getattr(tree_meta, "tree", tree_meta)
        trainable_src = "ema" if use_ema and isinstance(tree_meta.get("ema"), dict) and tree_meta["ema"] else "params"
        src: dict[str, tuple[str, Any]] = {}   # model path -> (container, metadata)
        for container in ("rest", trainable_src):
            sub = tree_meta.get(container)
            if isinstance(sub, dict):
                for p, m in jax.tree_util.tree_flatten_with_path(sub)[0]:
                    src[path_str(p)] = (container, m)
        pattern = re.compile(filter)
        flat_targets = {name: jax.tree_util.tree_flatten_with_path(t) for name, t in targets.items()}
        wanted: dict[str, tuple[str, Any]] = {}   # "target/path" -> (source "container/path", leaf)
        names = []
        for tname, (leaves, _) in flat_targets.items():
            for path, leaf in leaves:
                name = path_str(path)
                short = name[:-len("/value")] if name.endswith("/value") else name
                src_name = re.sub(source_path[0], source_path[1], name, count=1) if source_path[0] else name
                if not pattern.search(short) or src_name not in src:
                    continue
                container, m = src[src_name]
                if tuple(m.shape) != tuple(leaf.shape):   # half a model copied is a silent bug
                    raise ValueError(f"train.init_from: {short} has shape {tuple(m.shape)} in "
                                     f"{workdir} but {tuple(leaf.shape)} here; build the same "
                                     "architecture (the source run's --config.model.* overrides)")
                wanted[f"{tname}/{name}"] = (f"{container}/{src_name}", leaf)
                names.append(short)
        if not names:
            raise ValueError(f"train.init_from: no parameter of {workdir} (step {step}) matches filter "
                             f"{filter!r}")
        nested: dict = {}
        for src_name, leaf in wanted.values():
            d = nested
            parts = src_name.split("/")
            for p in parts[:-1]:
                d = d.setdefault(p, {})
            d[parts[-1]] = jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=leaf.sharding)
        restore_args = ocp.checkpoint_utils.construct_restore_args(nested)
        restored = mgr.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
            item=nested, restore_args=restore_args, partial_restore=True)))["state"]
    finally:
        mgr.close()

    def get(name):
        d = restored
        for p in name.split("/"):
            d = d[p]
        return d

    out, used = {}, set()
    for tname, (leaves, treedef) in flat_targets.items():
        new = []
        for path, leaf in leaves:
            key = f"{tname}/{path_str(path)}"
            if key not in wanted:
                new.append(leaf)
                continue
            source = wanted[key][0]
            value = get(source).astype(leaf.dtype)
            # a source array filling two targets (`source_path`) must not be one buffer twice
            new.append(jnp.copy(value) if source in used else value)
            used.add(source)
        out[tname] = jax.tree_util.tree_unflatten(treedef, new)
    log.info("copied %d arrays from %s, step %d (%s)", len(names), workdir, step, trainable_src)
    return out, names


def restore_model(workdir: str | os.PathLike, model, *, use_ema: bool = True, step: int = -1,
                  source_path: tuple[str, str] = ("", "")):
    """Loads a run's (EMA) weights into `model`, a freshly built module of the same config, in
    place; every array of the model must be in the checkpoint (a partial match is an error).
    `source_path`: see `load_params_from`."""
    from flax import nnx

    state = nnx.state(model)
    out, names = load_params_from(workdir, {"model": state}, use_ema=use_ema, step=step,
                                  source_path=source_path)
    expected = len(jax.tree.leaves(state))
    if len(names) != expected:
        raise ValueError(f"{workdir}: checkpoint holds {len(names)} of the model's {expected} "
                         "arrays; was it trained with a different config?")
    nnx.update(model, out["model"])
    return model
