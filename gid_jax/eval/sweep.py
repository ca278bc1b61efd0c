"""Batch evaluation sweeps: a grid of checkpoints x sampler settings, over a test split.

    from gid_jax.eval.sweep import run_sweep
    result = run_sweep(config, evaluate_cell)      # config: configs/eval.py

* The grid is ``config.checkpoints`` x the product of the axes in ``config.grid`` (e.g.
  ``num_steps``, ``guidance_weight``, ``solver``, ``num_freqs``); `grid_cells` lists it in a fixed
  order, each cell a dict ``{"checkpoint": ..., axis: value, ..., "split": ..., "cell_id": ...}``.
* ``evaluate_cell(cell) -> dict[str, float]`` is the plug-in point: it samples/renders the test
  split for that checkpoint and setting and returns its metrics (e.g. `evaluate_videos` scalars;
  `gid eval`'s is `gid_jax.eval.pipeline_eval.make_cell_evaluator`: motion errors, the ``learn_*``
  metrics of `gid_jax.eval.learning` and ``render_*`` scores). Undefined metrics are left out of a
  cell rather than written as NaN.
* Distribution: cell i runs on process ``i % process_count`` (``jax.process_index()`` /
  ``jax.process_count()`` by default; pass both to override, e.g. for independent jobs).
* Resumable: each finished cell is written atomically as ``OUT/cells/<cell_id>.json``; cells whose
  file exists are skipped, so a killed sweep re-run only computes the missing ones.
* Results (`merge_results`, run by process 0 after all processes finish, or by hand): a tidy
  ``OUT/results.csv`` and ``OUT/results.json`` (one row per cell x metric) and ``OUT/plots/*.png``
  (each metric against each axis that varies, one line per combination of the other settings).
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import time
from pathlib import Path
from typing import Callable, Mapping, Optional

from gid_jax.atomic import atomic_path, write_json_atomic

CELL_DIR = "cells"


def _plain(v):
    if hasattr(v, "tolist"):
        v = v.tolist()
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def grid_axes(config) -> dict:
    """``{"checkpoint": [...], axis: [...], ...}``: the sweep's axes in a fixed order."""
    checkpoints = list(config.checkpoints)
    if not checkpoints:
        raise ValueError("sweep config: `checkpoints` is empty")
    axes = {"checkpoint": [str(c) for c in checkpoints]}
    grid = config.grid.to_dict() if hasattr(config.grid, "to_dict") else dict(config.grid)
    for name in sorted(grid):
        values = grid[name]
        values = list(values) if isinstance(values, (list, tuple)) else [values]
        if not values:
            raise ValueError(f"sweep config: grid axis {name!r} has no values")
        axes[name] = [_plain(v) for v in values]
    return axes


def cell_id(cell: Mapping) -> str:
    """Stable, filename-safe identifier of a cell's settings."""
    settings = {k: v for k, v in cell.items() if k != "cell_id"}
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    ckpt = Path(str(cell.get("checkpoint", "ckpt")).rstrip("/")).name or "ckpt"
    ckpt = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in ckpt)[:40]
    return f"{ckpt}-{digest}"


def grid_cells(config) -> list[dict]:
    axes = grid_axes(config)
    split = str(config.get("split", "test"))
    cells = []
    for values in itertools.product(*axes.values()):
        cell = dict(zip(axes, values))
        cell["split"] = split
        cell["cell_id"] = cell_id(cell)
        cells.append(cell)
    return cells


def _write_json_atomic(path: Path, obj) -> None:
    """Cells are polled by other processes: fsync before the rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, obj, fsync=True, indent=1, sort_keys=True)


def _read_cell(path: Path) -> Optional[dict]:
    try:
        with open(path) as f:
            rec = json.load(f)
        return rec if isinstance(rec, dict) and isinstance(rec.get("metrics"), dict) else None
    except (OSError, ValueError):
        return None


def _check_metrics(cell, metrics) -> dict:
    if not isinstance(metrics, Mapping):
        raise TypeError(f"evaluate_cell({cell['cell_id']}) must return dict[str, float], got "
                        f"{type(metrics).__name__}")
    out = {}
    for k, v in metrics.items():
        try:
            out[str(k)] = float(v)
        except (TypeError, ValueError):
            raise TypeError(f"evaluate_cell({cell['cell_id']}): metric {k!r} is not a number: {v!r}") from None
    return out


def run_sweep(config, evaluate_cell: Callable[[dict], Mapping[str, float]], *,
              process_index: Optional[int] = None, process_count: Optional[int] = None,
              out_dir=None, merge: Optional[bool] = None, progress: bool = True) -> dict:
    """Evaluate this process's share of the grid (skipping finished cells), then merge.

    ``merge`` None: merge on process 0, after a barrier when running multi-host under
    ``jax.distributed``; with an explicit ``process_count > 1`` and no barrier, pass ``merge``
    yourself (or call `merge_results` once every process is done). Returns ``{"computed": [ids],
    "skipped": [ids], "results": merge_results(...) or None}``.
    """
    from tqdm.auto import tqdm

    jax_defaults = process_index is None and process_count is None
    from gid_jax.parallel.distributed import resolve_process

    index, count = resolve_process(process_index, process_count)
    out = Path(out_dir or config.out_dir)
    cells = grid_cells(config)
    mine = [c for i, c in enumerate(cells) if i % count == index]
    computed, skipped = [], []
    bar = tqdm(mine, desc=f"eval sweep [{index}/{count}]", unit="cell", disable=not progress)
    for cell in bar:
        path = out / CELL_DIR / f"{cell['cell_id']}.json"
        if _read_cell(path) is not None:
            skipped.append(cell["cell_id"])
            continue
        bar.set_postfix_str(cell["cell_id"])
        t0 = time.time()
        metrics = _check_metrics(cell, evaluate_cell(dict(cell)))
        _write_json_atomic(path, {"cell": cell, "metrics": metrics, "seconds": time.time() - t0,
                                  "process_index": index, "process_count": count})
        computed.append(cell["cell_id"])
    bar.close()
    if merge is None:
        if jax_defaults and count > 1:
            from jax.experimental import multihost_utils
            multihost_utils.sync_global_devices("gid_eval_sweep_done")
        merge = index == 0 and (count == 1 or jax_defaults)
    results = merge_results(config, out_dir=out, plots=bool(config.get("plots", True))) if merge else None
    return {"computed": computed, "skipped": skipped, "results": results}


def merge_results(config, out_dir=None, plots: bool = True) -> dict:
    """Collect ``OUT/cells/*.json`` for the config's grid into the tidy table, CSV, JSON, plots."""
    out = Path(out_dir or config.out_dir)
    axes = grid_axes(config)
    cells = grid_cells(config)
    rows, missing = [], []
    for cell in cells:
        rec = _read_cell(out / CELL_DIR / f"{cell['cell_id']}.json")
        if rec is None:
            missing.append(cell["cell_id"])
            continue
        for metric in sorted(rec["metrics"]):
            row = {"cell_id": cell["cell_id"], "split": cell["split"]}
            row.update({a: cell[a] for a in axes})
            row.update(metric=metric, value=rec["metrics"][metric])
            rows.append(row)
    columns = ["cell_id", "split", *axes, "metric", "value"]
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "results.csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        for row in rows:
            w.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in row.items()})
    result = {"columns": columns, "rows": rows, "axes": axes, "num_cells": len(cells),
              "missing": missing, "complete": not missing}
    _write_json_atomic(out / "results.json", result)
    if plots and rows:
        result["plots"] = [str(p) for p in plot_results(rows, axes, out / "plots")]
    return result


def plot_results(rows, axes: Mapping[str, list], plot_dir) -> list[Path]:
    """One PNG per (metric, varying axis): metric vs the axis, a line per other setting."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plot_dir = Path(plot_dir)
    plot_dir.mkdir(parents=True, exist_ok=True)
    varying = [a for a, vals in axes.items() if len(vals) > 1]
    key = lambda v: json.dumps(v)  # noqa: E731
    written = []
    for metric in sorted({r["metric"] for r in rows}):
        mrows = [r for r in rows if r["metric"] == metric]
        for axis in varying:
            xs = axes[axis]
            numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)
            pos = {key(x): (x if numeric else i) for i, x in enumerate(xs)}
            others = [a for a in axes if a != axis]
            groups = {}
            for r in mrows:
                label = ", ".join(f"{a}={Path(str(r[a])).name if a == 'checkpoint' else r[a]}"
                                  for a in others if len(axes[a]) > 1)
                groups.setdefault(label, []).append((pos[key(r[axis])], r["value"]))
            fig, ax = plt.subplots(figsize=(5, 3.5))
            for label, pts in sorted(groups.items()):
                pts.sort()
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label or None)
            if not numeric:
                ax.set_xticks(range(len(xs)), [Path(str(x)).name for x in xs], rotation=20)
            ax.set_xlabel(axis)
            ax.set_ylabel(metric)
            if any(groups) and len(groups) <= 12:
                ax.legend(fontsize=6)
            fig.tight_layout()
            safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in f"{metric}_vs_{axis}")
            path = plot_dir / f"{safe}.png"
            fig.savefig(path, dpi=80)
            plt.close(fig)
            written.append(path)
    return written


def results_table(result: dict):
    """``{(cell_id, metric): value}`` view of a merge result (handy in tests and notebooks)."""
    return {(r["cell_id"], r["metric"]): r["value"] for r in result["rows"]}


