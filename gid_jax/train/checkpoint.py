"""Orbax checkpoints of the whole training run: state, input-pipeline position, run metadata.

One step directory `<workdir>/checkpoints/<step>/` holds three items:
  state/  TrainState (params, non-trainable state, optimiser state, EMA, RNG, counters) — async
  data/   each host's input-pipeline position (`process_<i>`: the iterator's own `save(path)`
          file, or JSON of its `get_state()`), written synchronously at save time
  meta/   JSON: step, process count, global batch size, mesh, and every state leaf's shape/dtype
          (so a restart with a changed model/config fails with a clear message instead of a
          wrong restore)

Retention: the last `keep` checkpoints plus the best `keep_best` by `best_metric` (orbax
LatestN ∪ BestN preservation policies). Restoring walks back from the newest step: a checkpoint
that cannot be read (truncated/corrupt file, missing item) is moved to
`<workdir>/checkpoints_corrupt/` (never deleted) with one warning, and the previous one is tried.
A checkpoint that cannot be written (e.g. a full disk) raises CheckpointWriteError, one line.
"""

from __future__ import annotations

import base64
import dataclasses
import errno
import json
import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from orbax.checkpoint import checkpoint_managers as ocm

from gid_jax.logs import quiet_libraries
from gid_jax.parallel.rules import path_str

log = logging.getLogger(__name__)


class CheckpointMismatchError(ValueError):
    """A checkpoint exists but was written by an incompatible run (model, batch, processes)."""


class CheckpointWriteError(OSError):
    """Saving a checkpoint failed (full disk, lost storage): Orbax's error as one line."""


def _reason(err: BaseException, limit: int = 300) -> str:
    """The end of an (Orbax/TensorStore) error's first line: the innermost cause, without the
    kilobytes of TensorStore spec it appends."""
    text = str(err).strip().split(" [tensorstore_spec", 1)[0]
    text = ": ".join(text.splitlines()[0].split(": ")[-2:]) if text else type(err).__name__
    return text if len(text) <= limit else text[:limit] + "…"


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


# ----------------------------------------------------------------------------- run metadata

def tree_signature(tree: Any) -> dict[str, list]:
    """{'/'-joined path: [shape, dtype]} for every leaf (arrays or ShapeDtypeStructs)."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        out[path_str(path)] = [list(np.shape(leaf)), str(np.dtype(leaf.dtype))]
    return out


def _compare_signatures(saved: dict, now: dict) -> list[str]:
    diffs = []
    for k in sorted(set(saved) | set(now)):
        a, b = saved.get(k), now.get(k)
        if a != b:
            diffs.append(f"{k}: checkpoint {a}, now {b}")
    return diffs


# ----------------------------------------------------------------------------- the manager

class Checkpointer:
    """Save / restore-with-fallback of training runs (see module docstring)."""

    def __init__(self, directory: str | os.PathLike, ckpt_cfg: Any, *, read_only: bool = False):
        quiet_libraries()   # Orbax's tracebacks of failed reads/writes, its read-only notices
        self.directory = Path(directory).absolute()
        self._writing: int | None = None   # the step of the last save, which may still be running
        self.cfg = ckpt_cfg
        keep = int(ckpt_cfg.get("keep", 3))
        keep_best = int(ckpt_cfg.get("keep_best", 0))
        metric = ckpt_cfg.get("best_metric", "")
        mode = ckpt_cfg.get("best_mode", "min")
        if mode not in ("min", "max"):
            raise ValueError(f"checkpoint.best_mode={mode!r}: expected 'min' or 'max'")
        self.best_metric = metric if keep_best > 0 and metric else None
        policies = [ocm.LatestN(n=max(keep, 1))]
        best_fn = None
        if self.best_metric:
            best_fn = lambda m, k=self.best_metric: float(m[k])  # noqa: E731
            policies.append(ocm.BestN(get_metric_fn=best_fn, reverse=(mode == "min"), n=keep_best,
                                      keep_checkpoints_without_metrics=False))
        options = ocp.CheckpointManagerOptions(
            best_fn=best_fn, best_mode=mode,
            preservation_policy=None if read_only else ocm.AnyPreservationPolicy(policies),
            enable_async_checkpointing=bool(ckpt_cfg.get("async_save", True)),
            cleanup_tmp_directories=not read_only, create=not read_only, read_only=read_only)
        self.manager = ocp.CheckpointManager(
            self.directory, options=options,
            item_handlers={"state": ocp.StandardCheckpointHandler(), "data": DataIteratorHandler(),
                           "meta": ocp.JsonCheckpointHandler()})

    # -- saving
    def save(self, step: int, state: Any, data_iter: Any, meta: dict, metrics: dict | None = None,
             force: bool = False) -> bool:
        if metrics is not None:
            metrics = {k: float(v) for k, v in metrics.items() if np.isfinite(float(v))}
            if self.best_metric and self.best_metric not in metrics:
                metrics = None
        if not self.best_metric:
            metrics = None
        meta = dict(meta, step=int(step), state_signature=tree_signature(state))
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), data=DataIteratorSave(data_iter),
                                  meta=ocp.args.JsonSave(_jsonable(meta)))
        try:   # also raises the error of the previous (async) save
            saved = self.manager.save(int(step), args=args, metrics=metrics, force=force)
        except (OSError, ValueError) as err:
            raise self._write_error(err, self._writing or step) from err
        if saved:
            self._writing = int(step)
        return saved

    def _write_error(self, err: BaseException, step: int | None) -> CheckpointWriteError:
        reason = _reason(err)
        if "No space left on device" in str(err) or getattr(err, "errno", None) == errno.ENOSPC:
            reason = "no space left on device"
        which = "a checkpoint" if step is None else f"checkpoint {step}"
        return CheckpointWriteError(f"{self.directory}: {which} could not be written ({reason})")

    def wait(self) -> None:
        try:
            self.manager.wait_until_finished()
        except (OSError, ValueError) as err:
            raise self._write_error(err, self._writing) from err

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self.manager.close()

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    # -- restoring
    def read_meta(self, step: int) -> dict:
        restored = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return dict(restored["meta"])

    def restore(self, abstract_state: Any, data_iter: Any, expected_meta: dict | None = None):
        """(step, state, meta) from the newest readable checkpoint, or None if there is none.

        A checkpoint whose metadata disagrees with `expected_meta` / the state's shapes raises
        CheckpointMismatchError (a config change, not corruption: nothing is moved).
        """
        self.manager.reload()
        for step in sorted(self.manager.all_steps(), reverse=True):
            err = None
            try:
                meta = self.read_meta(step)
            except Exception as e:  # unreadable metadata = damaged checkpoint
                meta, err = None, e
            if meta is not None:
                self._check_meta(step, meta, abstract_state, expected_meta or {})
                try:
                    restored = self.manager.restore(step, args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(abstract_state),
                        data=DataIteratorRestore(data_iter)))
                    state = restored["state"]
                    jax.block_until_ready(state)
                except Exception as e:
                    err = e
            ok = _all_processes_ok(err is None)
            if ok:
                return step, state, meta
            moved = self._quarantine(step)
            log.warning("checkpoint at step %d in %s cannot be restored (%s); moved it to %s, falling "
                        "back to the previous one", step, self.directory,
                        f"{type(err).__name__}: {_reason(err)}" if err else "failed on another process",
                        moved or f"{self.directory.name}_corrupt/")
        return None

    def _check_meta(self, step, meta, abstract_state, expected):
        where = f"{self.directory / str(step)}"
        for key, value in expected.items():
            if key in meta and _jsonable(value) != meta[key]:
                raise CheckpointMismatchError(
                    f"{where}: written with {key}={meta[key]!r}, this run has {key}={value!r}; "
                    "resume with the same settings or use a new workdir")
        saved = meta.get("state_signature")
        if saved is not None:
            diffs = _compare_signatures(saved, tree_signature(abstract_state))
            if diffs:
                more = f" (and {len(diffs) - 5} more)" if len(diffs) > 5 else ""
                raise CheckpointMismatchError(
                    f"{where}: the checkpointed training state does not match this run's model/optimiser: "
                    + "; ".join(diffs[:5]) + more + ". Use a new workdir, or train.init_from to start "
                    "from its parameters")

    def _quarantine(self, step: int) -> Path | None:
        """Moves the step's directory aside (process 0); returns where it went."""
        dst = None
        if jax.process_index() == 0:
            src = self.directory / str(step)
            dst_root = self.directory.parent / (self.directory.name + "_corrupt")
            dst_root.mkdir(parents=True, exist_ok=True)
            if src.exists():
                dst = dst_root / f"{step}_{time.strftime('%Y%m%d-%H%M%S')}"
                shutil.move(os.fspath(src), os.fspath(dst))
        _barrier(f"gid_quarantine_{step}")
        self.manager.reload()
        return dst


def _barrier(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _all_processes_ok(ok: bool) -> bool:
    if jax.process_count() == 1:
        return ok
    from jax.experimental import multihost_utils

    flags = multihost_utils.process_allgather(np.asarray([1 if ok else 0], np.int32))
    return bool(np.all(flags))


# ----------------------------------------------------------------------------- init_from

def load_params_from(workdir: str | os.PathLike, targets: dict[str, Any], *, filter: str = ".*",
                     use_ema: bool = True, step: int = -1,
                     source_path: tuple[str, str] = ("", "")) -> tuple[dict[str, Any], list[str]]:
    """Copy parameters from another run's checkpoint into this run's fresh state trees.

    `targets` maps names to nnx.States of this run (e.g. {'params': state.params, 'rest': state.rest}:
    stage 2 keeps the frozen stage-1 base in 'rest'). A leaf is matched by its path inside the
    model, whichever container holds it on either side; it is copied when its '/'-joined path
    matches the regex `filter` and the shapes agree. The source's EMA copy replaces its trainable
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
                if tuple(m.shape) != tuple(leaf.shape):
                    log.warning("init_from: %s has shape %s in %s, %s here; not copied", short,
                                tuple(m.shape), workdir, tuple(leaf.shape))
                    continue
                wanted[f"{tname}/{name}"] = (f"{container}/{src_name}", leaf)
                names.append(short)
        if not names:
            raise ValueError(f"train.init_from: no parameter of {workdir} (step {step}) matches filter "
                             f"{filter!r} with equal shapes")
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
