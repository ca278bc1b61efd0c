"""`gid eval --report`: an offline HTML page of a sweep (``OUT/report/index.html``).

It shows the table (every row of ``table.json``: the model cells and the baselines, key
metrics each with its sample count; the full table is ``table.csv``), the notes (what was
skipped and why, the small-sample bias), the metric-vs-axis plots of `sweep.plot_results`
(vs checkpoint, sampler steps, K, CFG weight: whichever axes vary; vs training step for
``RUN@STEP`` checkpoints, vs the K checkpoints were trained with), the sliding-window FID /
DTFVD curves of every row, and for the first few clips (``config.report_clips``) the real clip
and each row's video side by side, with the amplitude map of the motion that made it. Every
file it names lies under OUT and is referenced by a relative path, so the folder can be copied
and opened without a network or a server.
"""

from __future__ import annotations

import html
from pathlib import Path

from gid_jax.atomic import write_text_atomic

KEY_METRICS = (("fid", "fid_frames", "frames"), ("kid_x100", "kid_frames", "frames"),
               ("fvd16", "fvd16_windows", "windows"), ("fvd32", "fvd32_windows", "windows"),
               ("dtfvd16", "dtfvd16_windows", "windows"), ("dtfvd32", "dtfvd32_windows", "windows"),
               ("sliding_fid_mean", "sliding_fid_points", "points"),
               ("sliding_dtfvd_mean", "sliding_dtfvd_points", "points"),
               ("seam_step_ratio", "seam_clips", "clips"), ("learn_auc", None, None),
               ("learn_amplitude_ratio", None, None), ("learn_image_dependence", None, None),
               ("render_psnr", None, None))
PLOTTED = {m for m, _, _ in KEY_METRICS} | {"learn_phase_diversity", "sv_relerr"}
CSS = """body{font-family:sans-serif;margin:1.5em;max-width:1400px}table{border-collapse:collapse;
font-size:12px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#eee}
td.l{text-align:left}.c{color:#777;font-size:10px}img{image-rendering:pixelated}
figure{display:inline-block;margin:4px;text-align:center;font-size:11px}.note{color:#444}"""


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def _table(rows) -> str:
    present = [(m, c, u) for m, c, u in KEY_METRICS if any(m in r["metrics"] for r in rows)]
    head = "".join(f"<th>{html.escape(m)}</th>" for m, _, _ in present)
    out = [f"<table><tr><th>row</th><th>method</th><th>CFG w</th><th>K</th><th>clips</th>{head}</tr>"]
    for r in rows:
        m, info = r["metrics"], r["info"]
        k = info.get("k_mode", "")        # a trained-K row shows the checkpoint's own K
        shown = info.get("model_num_freqs") if k == "trained" else r.get("num_freqs", "")
        k = f"{_fmt(shown)} ({k})" if k else ""
        cells = []
        for name, count, unit in present:
            value = _fmt(m.get(name))
            if count and count in m and name in m:
                value += f"<div class=c>{int(m[count])} {unit}</div>"
            cells.append(f"<td>{value}</td>")
        out.append(f"<tr><td class=l>{_fmt(r.get('label'))}<div class=c>{_fmt(r['cell_id'])}</div>"
                   f"</td><td class=l>{_fmt(r['method'])}</td><td>{_fmt(info.get('cfg_weight'))}</td>"
                   f"<td>{k}</td><td>{_fmt(m.get('clips'))}</td>{''.join(cells)}</tr>")
    out.append("</table>")
    return "\n".join(out)


def _curve_plots(rows, folder: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for name in ("sliding_fid", "sliding_dtfvd"):
        with_curve = [r for r in rows if name in r["curves"]]
        if not with_curve:
            continue
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for r in with_curve:
            c = r["curves"][name]
            ax.plot(c["starts"], c["values"], marker=".", label=f"{r['method']} {r['cell_id'][-6:]}")
        ax.set_xlabel("window start frame")
        ax.set_ylabel(name.replace("sliding_", "") + " of the window")
        ax.set_title(name.replace("_", " "))
        ax.legend(fontsize=6)
        fig.tight_layout()
        path = folder / f"{name}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)
    return written


def _clips(out: Path, rows, num_clips: int) -> str:
    real = sorted((out / "media" / "real").glob("*.gif"))[:max(num_clips, 0)]
    if not real:
        return "<p>No clips kept (run <code>gid eval --report</code> on cells not yet computed).</p>"
    parts = []
    for gif in real:
        figs = [_figure(out, gif, "real")]
        for r in rows:
            media = out / "media" / r["cell_id"] / r["method"] / gif.name
            if media.exists():
                figs.append(_figure(out, media, f"{r['method']} {r['cell_id'][-6:]}"))
        parts.append(f"<h3>{html.escape(gif.stem)}</h3><div>{''.join(figs)}</div>")
    return "\n".join(parts)


def _figure(out: Path, gif: Path, caption: str) -> str:
    """A clip's GIF with its motion's amplitude map below it."""
    width = _width(gif)
    img = f'<img src="{html.escape(_rel(out, gif))}" width="{width}">'
    motion = gif.with_name(f"{gif.stem}_motion.png")
    if motion.exists():
        img += f'<br><img src="{html.escape(_rel(out, motion))}" width="{width}" title="amplitude map">'
    return f"<figure>{img}<figcaption>{html.escape(caption)}</figcaption></figure>"


def _rel(out: Path, path: Path) -> str:
    """``path`` (under OUT) as seen from OUT/report/."""
    return "../" + Path(path).resolve().relative_to(out).as_posix()


def _width(path: Path) -> int:
    from PIL import Image

    with Image.open(path) as im:
        return max(128, 2 * im.size[0])


def write_report(config, merged: dict) -> Path:
    """Writes ``OUT/report/index.html`` from a `sweep.merge_results` result; returns its path."""
    out = Path(config.out_dir).resolve()
    folder = out / "report"
    folder.mkdir(parents=True, exist_ok=True)
    doc = merged["table"]
    rows = doc["rows"]
    notes = list(doc.get("notes", []))
    for r in rows:
        notes += [n for n in r["notes"] if not n.startswith("counts:") and n not in notes]
    plots = [Path(p).resolve() for p in merged.get("plots", [])
             if Path(p).stem.split("_vs_")[0] in PLOTTED]
    curves = _curve_plots(rows, folder)
    missing = merged.get("missing", [])
    body = [f"<h1>gid eval: {html.escape(str(config.out_dir))}</h1>",
            f"<p>data: {html.escape(str(config.data_dir))} (split {html.escape(str(config.split))}); "
            f"{len(rows)} rows from {merged.get('num_cells', 0) - len(missing)} of "
            f"{merged.get('num_cells', 0)} cells{' (incomplete)' if missing else ''}. All columns: "
            '<a href="../table.csv">table.csv</a>, <a href="../table.json">table.json</a>.</p>',
            "<h2>Notes</h2><ul>" + "".join(f"<li class=note>{html.escape(n)}</li>" for n in notes) + "</ul>",
            "<h2>Table</h2>", _table(rows),
            "<h2>Sliding-window curves</h2>",
            "".join(f'<img src="{html.escape(p.name)}">' for p in curves) or "<p>No curves.</p>",
            "<h2>Metrics vs sweep axes</h2>",
            "".join(f'<figure><img src="{html.escape(_rel(out, p))}"></figure>' for p in plots)
            or "<p>No axis varies in this grid.</p>",
            "<h2>Clips: real and generated, with the amplitude map of their motion</h2>",
            _clips(out, rows, int(config.get("report_clips", 3) or 3))]
    page = (f"<!DOCTYPE html><html><head><meta charset=utf-8><title>gid eval report</title>"
            f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>")
    path = folder / "index.html"
    write_text_atomic(path, page)
    return path
