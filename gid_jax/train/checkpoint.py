"""Orbax checkpoints of the whole training run: state, training-input position, run metadata.

One step directory `<workdir>/checkpoints/<step>/` holds three items:
  state/  TrainState (params, non-trainable state, optimiser state, EMA, RNG, counters) — async
  data/   each host's training-input position (`process_<i>`: the iterator's own `save(path)`
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

import errno
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as ocm

from gid_jax.checkpoints import DataIteratorHandler, DataIteratorRestore, DataIteratorSave, _jsonable
from gid_jax.checkpoints import load_params_from, restore_model  # noqa: F401 - re-exported
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
        keep, keep_best = int(ckpt_cfg.keep), int(ckpt_cfg.keep_best)
        metric, mode = ckpt_cfg.best_metric, ckpt_cfg.best_mode
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
            enable_async_checkpointing=bool(ckpt_cfg.async_save),
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
