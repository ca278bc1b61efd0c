"""Batch evaluation sweeps: a grid of checkpoints x sampler settings, plus baseline rows, over a
test split.

    from gid_jax.eval.sweep import run_sweep
    result = run_sweep(config, evaluate_cell)      # config: configs/eval.py

* The grid is ``config.checkpoints`` x the product of the axes in ``config.grid`` (e.g.
  ``num_steps``, ``guidance_weight``, ``solver``, ``num_freqs``); `grid_cells` lists it in a fixed
  order, each cell a dict ``{"checkpoint": ..., axis: value, ..., "split": ..., "cell_id": ...}``,
  followed by one cell per baseline of ``config.baselines`` (``{"method": name, "checkpoint":
  ...}``: ``still`` once, ``true_motion`` and ``fixed_map`` per checkpoint; ``splat`` is not a
  cell of its own but a second row of every model cell, made from the same samples).
* A checkpoint may name a training step of its LDM run, ``RUN@STEP``, or every saved step,
  ``RUN@all`` (`gid_jax.eval.checkpoint_steps`): the metric-vs-training-step plot of one run.
* ``evaluate_cell(cell) -> dict[str, float]`` is the plug-in point: it samples/renders the test
  split for that checkpoint and setting and returns its metrics. An evaluator with a ``rows``
  method (`gid_jax.eval.pipeline_eval.CellEvaluator`, what `gid eval` runs) is asked for
  ``rows(cell) -> [{"method", "metrics", "curves", "notes", "info"}, ...]`` instead: several
  table rows per cell, curves (sliding-window FID/DTFVD) and notes (what was skipped, why).
  Undefined metrics are left out of a row rather than written as NaN.
* Distribution: cell i runs on process ``i % process_count`` (``jax.process_index()`` /
  ``jax.process_count()`` by default; pass both to override, e.g. for independent jobs).
* Resumable: each finished cell is written atomically as ``OUT/cells/<cell_id>.json``; cells whose
  file exists are skipped, so a killed sweep re-run only computes the missing ones.
* Results (`merge_results`, run by process 0 after all processes finish, or by hand):
  ``OUT/table.csv`` and ``OUT/table.json``, one row per cell and method with every metric as a
  column (each Fréchet number beside its sample count, ``notes`` saying what was skipped; the
  JSON also holds the curves), the tidy ``OUT/results.csv`` / ``OUT/results.json`` (one row per
  cell x method x metric) and ``OUT/plots/*.png`` (each metric against each axis that varies,
  one line per combination of the other settings, baselines as dashed lines; also against the
  training step of ``RUN@STEP`` checkpoints and against the K checkpoints were trained with,
  `derived_values`), each with a ``.json`` of its points.
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
from gid_jax.eval.checkpoint_steps import expand_checkpoints, run_of, step_of
from gid_jax.eval.methods import BASELINES, LABELS, MODEL

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
    axes = {"checkpoint": expand_checkpoints(str(c) for c in checkpoints)}   # RUN@all: each step
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
    if cell.get("method", MODEL) != MODEL:
        ckpt = f"{cell['method']}-{Path(str(cell.get('checkpoint') or 'none').rstrip('/')).name}"
    ckpt = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in ckpt)[:40]
    return f"{ckpt}-{digest}"


def baseline_names(config) -> list[str]:
    """``config.baselines``, checked (`gid_jax.eval.methods.BASELINES`)."""
    names = [str(b) for b in (config.get("baselines", ()) or ())]
    bad = [b for b in names if b not in BASELINES]
    if bad:
        raise ValueError(f"config.baselines: unknown {bad}; choose from {list(BASELINES)}")
    return list(dict.fromkeys(names))


def grid_cells(config) -> list[dict]:
    """Model cells (checkpoint x grid, no ``method`` key: their ids predate baselines), then
    the baseline cells (``splat`` rides along with the model cells; ``true_motion`` and
    ``fixed_map`` once per run, not per ``RUN@STEP``: they use only its renderer)."""
    axes = grid_axes(config)
    split = str(config.get("split", "test"))
    cells = []
    for values in itertools.product(*axes.values()):
        cell = dict(zip(axes, values))
        cell["split"] = split
        cell["cell_id"] = cell_id(cell)
        cells.append(cell)
    for name in baseline_names(config):
        if name == "splat":
            continue
        for ckpt in ([""] if name == "still" else dict.fromkeys(map(run_of, axes["checkpoint"]))):
            cell = {"method": name, "checkpoint": ckpt, "split": split}
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


def _cell_rows(cell, evaluate_cell) -> list[dict]:
    """The table rows of one cell: ``evaluate_cell.rows(cell)`` where the evaluator has it,
    else one row of ``evaluate_cell(cell)``'s metrics."""
    method = cell.get("method", MODEL)
    if hasattr(evaluate_cell, "rows"):
        raw = list(evaluate_cell.rows(dict(cell)))
    else:
        raw = [{"method": method, "metrics": evaluate_cell(dict(cell))}]
    rows = []
    for r in raw:
        rows.append({"method": str(r.get("method", method)),
                     "metrics": _check_metrics(cell, r.get("metrics", {})),
                     "curves": _plain(dict(r.get("curves") or {})),
                     "notes": [str(n) for n in (r.get("notes") or ())],
                     "info": {str(k): _plain(v) for k, v in (r.get("info") or {}).items()}})
    if not rows:
        raise ValueError(f"evaluate_cell({cell['cell_id']}) returned no rows")
    return rows


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
        rows = _cell_rows(cell, evaluate_cell)
        _write_json_atomic(path, {"cell": cell, "metrics": rows[0]["metrics"], "rows": rows,
                                  "seconds": time.time() - t0, "process_index": index,
                                  "process_count": count})
        computed.append(cell["cell_id"])
    bar.close()
    if merge is None:
        if jax_defaults and count > 1:
            from jax.experimental import multihost_utils
            multihost_utils.sync_global_devices("gid_eval_sweep_done")
        merge = index == 0 and (count == 1 or jax_defaults)
    results = merge_results(config, out_dir=out, plots=bool(config.get("plots", True))) if merge else None
    return {"computed": computed, "skipped": skipped, "results": results}


def _record_rows(rec: dict) -> list[dict]:
    """A cell file's rows (files written before rows existed hold one metrics dict)."""
    rows = rec.get("rows")
    if isinstance(rows, list) and rows:
        return rows
    return [{"method": rec["cell"].get("method", MODEL), "metrics": rec["metrics"], "curves": {},
             "notes": [], "info": {}}]


# video metrics first, each Fréchet number followed by its count; then the rest by name
_LEADING = ("clips", "fid", "fid_frames", "kid_x100", "kid", "kid_std", "kid_frames",
            "kid_subset_size", "sliding_fid_mean", "sliding_fid_points", "fvd16", "fvd16_windows",
            "fvd32", "fvd32_windows", "dtfvd16", "dtfvd16_windows", "dtfvd32", "dtfvd32_windows",
            "sliding_dtfvd_mean", "sliding_dtfvd_points")


_COUNTS = ("clips", "kid_subset_size", "kid_std")   # not plotted: sample counts and spreads


def _metric_columns(names) -> list[str]:
    names = set(names)
    ordered = [n for n in _LEADING if n in names]
    rest = sorted(names - set(ordered))
    for n in list(rest):
        base = n.rsplit("_", 1)[0]
        if n.endswith(("_windows", "_frames")) and base in names and base not in _LEADING:
            rest.remove(n)
            rest.insert(rest.index(base) + 1, n)
    return ordered + rest


DERIVED = ("step", "trained_num_freqs")


def derived_values(cell: Mapping, row: Mapping) -> dict:
    """What a row is plotted against besides the grid axes: ``step``, the training step of a
    ``RUN@STEP`` checkpoint, and ``trained_num_freqs``, the K the checkpoint was trained with
    (rows of ``num_freqs = "trained"``, `pipeline_eval`; never a truncated sample's K)."""
    out = {}
    step = step_of(cell.get("checkpoint") or "")
    if step is not None:
        out["step"] = step
    info = row.get("info") or {}
    if info.get("k_mode") == "trained" and info.get("model_num_freqs") is not None:
        out["trained_num_freqs"] = int(info["model_num_freqs"])
    return out


def merge_results(config, out_dir=None, plots: bool = True) -> dict:
    """Collect ``OUT/cells/*.json`` for the config's grid into the wide table (``table.csv``,
    ``table.json``), the tidy one (``results.csv``, ``results.json``) and plots. The derived
    axes (`derived_values`) become columns and plot axes where any row has them."""
    out = Path(out_dir or config.out_dir)
    axes = grid_axes(config)
    cells = grid_cells(config)
    rows, table, missing, derived = [], [], [], {}
    for cell in cells:
        rec = _read_cell(out / CELL_DIR / f"{cell['cell_id']}.json")
        if rec is None:
            missing.append(cell["cell_id"])
            continue
        for r in _record_rows(rec):
            ident = {"cell_id": cell["cell_id"], "method": r["method"], "split": cell["split"]}
            ident.update({a: cell.get(a) for a in axes})
            extra = derived_values(cell, r)
            ident.update(extra)
            for name, value in extra.items():
                derived.setdefault(name, set()).add(value)
            for metric in sorted(r["metrics"]):
                rows.append({**ident, "metric": metric, "value": r["metrics"][metric]})
            table.append({**ident, "label": r["info"].get("label", LABELS.get(r["method"], r["method"])),
                          "info": r["info"], "metrics": r["metrics"], "curves": r["curves"],
                          "notes": r["notes"]})
    derived = {name: sorted(derived[name]) for name in DERIVED if name in derived}
    columns = ["cell_id", "split", "method", *axes, *derived, "metric", "value"]
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / "results.csv", columns, rows)
    result = {"columns": columns, "rows": rows, "axes": axes, "derived_axes": derived,
              "num_cells": len(cells), "missing": missing, "complete": not missing}
    _write_json_atomic(out / "results.json", result)
    result["table"] = write_table(out, table, {**axes, **derived})
    if plots and rows:
        result["plots"] = [str(p) for p in plot_results(rows, axes, out / "plots", derived)]
    return result


def _write_csv(path, columns, rows) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        for row in rows:
            w.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else v
                        for k, v in row.items() if k in columns})


def write_table(out, table: list[dict], axes: Mapping[str, list]) -> dict:
    """``table.csv`` (one row per cell and method: identity, info, every metric, notes) and
    ``table.json`` (the same plus the sliding-window curves and the notes on bias)."""
    from gid_jax.eval.video_scores import BIAS_NOTE

    out = Path(out)
    metric_cols = _metric_columns({m for t in table for m in t["metrics"]})
    info_cols = sorted({k for t in table for k in t["info"]} - {"label"})
    columns = ["cell_id", "method", "label", *axes, "split", *info_cols, *metric_cols, "notes"]
    flat = []
    for t in table:
        row = {k: t.get(k) for k in ("cell_id", "method", "label", "split", *axes)}
        row.update({k: t["info"].get(k) for k in info_cols})
        row.update({k: t["metrics"].get(k) for k in metric_cols})
        row["notes"] = " | ".join(t["notes"])
        flat.append(row)
    _write_csv(out / "table.csv", columns, flat)
    video = any("fid" in t["metrics"] or "fvd16" in t["metrics"] for t in table)
    doc = {"columns": columns, "rows": table, "notes": [BIAS_NOTE] if video else [],
           "count_columns": [c for c in metric_cols if c.endswith(("_frames", "_windows", "_points"))]}
    _write_json_atomic(out / "table.json", doc)
    return doc


def _plot_axes(axes: Mapping[str, list], derived: Mapping[str, list]):
    """(axis, x values, grid axes that name a row's line, whether the run names it too) of every
    plot: the grid axes that vary, then the derived ones, whose lines drop the checkpoint (and
    for trained K the ``num_freqs`` axis, "trained" on all their rows)."""
    runs = {run_of(c) for c in axes.get("checkpoint", ())}
    steps_only = len(runs) == 1 and len(derived.get("step", ())) > 1   # vs checkpoint = vs step
    specs = [(a, xs, [o for o in axes if o != a], False) for a, xs in axes.items()
             if len(xs) > 1 and not (a == "checkpoint" and steps_only)]
    for name, xs in derived.items():
        if len(xs) > 1:
            drop = ("checkpoint", "num_freqs") if name == "trained_num_freqs" else ("checkpoint",)
            specs.append((name, xs, [o for o in axes if o not in drop],
                          name == "step" and len(runs) > 1))
    return specs


def plot_results(rows, axes: Mapping[str, list], plot_dir, derived: Mapping[str, list] | None = None
                 ) -> list[Path]:
    """One PNG per (metric, varying axis): metric vs the axis, a line per other setting of the
    model cells (dotted: their splat rows), each baseline cell as a dashed horizontal line.
    ``derived`` (`derived_values`: training step, trained K) are axes too; a model row without
    the value (e.g. a truncated-K row on the trained-K plot) is left out of that plot. Beside
    each PNG, ``<same name>.json`` holds the points it draws."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plot_dir = Path(plot_dir)
    plot_dir.mkdir(parents=True, exist_ok=True)
    key = lambda v: json.dumps(v)  # noqa: E731
    written = []
    is_model = lambda r: r.get("method", MODEL) == MODEL  # noqa: E731
    standalone = lambda r: r.get("method", MODEL) not in (MODEL, "splat")  # noqa: E731
    counts = lambda m: m in _COUNTS or m.endswith(("_frames", "_windows", "_points", "_clips"))  # noqa: E731
    specs = _plot_axes(axes, derived or {})
    for metric in sorted({r["metric"] for r in rows if is_model(r) and not counts(r["metric"])}):
        mrows = [r for r in rows if r["metric"] == metric]
        for axis, xs, others, by_run in specs:
            grid_axis = axis in axes
            numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)
            pos = {key(x): (x if numeric else i) for i, x in enumerate(xs)}
            groups, brows = {}, []
            for r in mrows:
                if r.get(axis) is None or key(r[axis]) not in pos:
                    if grid_axis or standalone(r):      # a baseline cell: no axes
                        brows.append(r)
                    continue
                parts = [f"run={Path(run_of(r['checkpoint'])).name}"] if by_run else []
                parts += [f"{a}={Path(str(r[a])).name if a == 'checkpoint' else r[a]}"
                          for a in others if len(axes[a]) > 1]
                label = ", ".join(parts)
                if not is_model(r):              # a model cell's companion row (splat)
                    label = f"{r['method']}{': ' + label if label else ''}"
                groups.setdefault(label, []).append((pos[key(r[axis])], r["value"]))
            fig, ax = plt.subplots(figsize=(5, 3.5))
            lines = []
            for label, pts in sorted(groups.items()):
                pts.sort()
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label or "model",
                        linestyle=":" if label.startswith(BASELINES) else "-")
                lines.append({"label": label or "model", "points": [list(p) for p in pts]})
            baselines = []
            for r in brows:
                name = r["method"] + (f" ({Path(str(r['checkpoint'])).name})"
                                      if r.get("checkpoint") and len(axes["checkpoint"]) > 1 else "")
                ax.axhline(r["value"], linestyle="--", linewidth=1, color="0.5")
                ax.annotate(name, (0.01, r["value"]), xycoords=("axes fraction", "data"), fontsize=6,
                            color="0.35", va="bottom")
                baselines.append({"label": name, "value": r["value"]})
            if not numeric:
                ax.set_xticks(range(len(xs)), [Path(str(x)).name for x in xs], rotation=20)
            ax.set_xlabel({"step": "training step", "trained_num_freqs": "K (trained)"}.get(axis, axis))
            ax.set_ylabel(metric)
            if groups and len(groups) <= 12:
                ax.legend(fontsize=6)
            fig.tight_layout()
            safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in f"{metric}_vs_{axis}")
            path = plot_dir / f"{safe}.png"
            fig.savefig(path, dpi=80)
            plt.close(fig)
            write_json_atomic(path.with_suffix(".json"), {
                "metric": metric, "axis": axis, "lines": lines, "baselines": baselines,
                "x_labels": None if numeric else [Path(str(x)).name for x in xs]})
            written.append(path)
    return written


def results_table(result: dict):
    """``{(cell_id, metric): value}`` view of a merge result's model rows, and
    ``{(cell_id, method, metric): value}`` entries for every row (handy in tests/notebooks)."""
    out = {}
    for r in result["rows"]:
        out[(r["cell_id"], r["method"], r["metric"])] = r["value"]
        if r["method"] == MODEL or (r["cell_id"], r["metric"]) not in out:
            out[(r["cell_id"], r["metric"])] = r["value"]
    return out
