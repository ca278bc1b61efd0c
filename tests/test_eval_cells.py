"""`gid eval` end to end on the tiny trained pipeline: every clip rendered by every row (the
model, its softmax-splat twin, and the still / true-motion / fixed-map baselines), video
metrics with their counts, resume, kept videos, the HTML report (parsed, and as headless
Chromium shows it), metrics vs training step of one run. The feature networks are
tiny random-weight versions of the real InceptionV3 / I3D graphs (the real ones cost ~0.4 s a
frame and ~10 s a 16-frame clip on this CPU; `benchmarks/eval_metrics.py` measures them)."""

from __future__ import annotations

import csv
import json
import math
import re
import shutil

import pytest
from PIL import Image

from data_pipelines.video_io import read_video
from gid_jax.cli import main as gid_main
from gid_jax.eval import i3d, inception, video_scores
from gid_jax.interact.browser import check_page_media, find_chromium

NUM_CLIPS = 3          # sorted: synth_00000 f0 (40 frames), f10 (30), synth_00001 f0 (40)
FRAMES = 40 + 30 + 40
BASELINES = ("still", "true_motion", "splat", "fixed_map")
needs_chromium = pytest.mark.skipif(
    find_chromium() is None, reason="headless browser test needs Chromium: apt-get install -y chromium")


def patch_networks(mp) -> None:
    """`gid eval` in process with the tiny networks (and no need for the real weight files)."""
    mp.setattr(video_scores, "load_networks", tiny_networks)
    mp.setattr(video_scores, "weight_paths", lambda m: {})


def tiny_networks(_metrics_config=None) -> video_scores.Networks:
    w = 1 / 16
    return video_scores.Networks(
        inception=inception.InceptionFeatures(inception.random_inception_params(0, w), width=w,
                                              size=75, batch_size=8),
        i3d=i3d.I3DFeatures(i3d.random_i3d_params(1, w), width=w, size=32, batch_size=4),
        identity={"inception": "random width 1/16 seed 0", "i3d": "random width 1/16 seed 1"})


def eval_args(tiny_runs, prepared_tiny, out, *extra):
    return ["eval", "--config", "configs/eval.py:tiny", f"--config.data_dir={prepared_tiny}",
            f"--config.videos_dir={prepared_tiny.parent / 'videos'}", "--config.split=train",
            f"--config.checkpoints=('{tiny_runs['pipeline']}',)", f"--config.num_videos={NUM_CLIPS}",
            "--config.grid.num_steps=(2,)", "--config.grid.guidance_weight=('pipeline',)",
            "--config.grid.num_freqs=(8,)", f"--config.baselines={BASELINES!r}",
            f"--config.out_dir={out}", *extra]


@pytest.fixture(scope="module")
def sweep(tiny_runs, prepared_tiny, tmp_path_factory):
    """One `gid eval --report --keep-videos` run, in process (so the compiled models are reused)."""
    import time

    out = tmp_path_factory.mktemp("eval_cells") / "eval"
    args = eval_args(tiny_runs, prepared_tiny, out, "--report", "--keep-videos",
                     "--config.report_clips=2")
    with pytest.MonkeyPatch.context() as mp:
        patch_networks(mp)
        t0 = time.time()
        code = gid_main(args)
        seconds = time.time() - t0
    assert code == 0
    table = json.loads((out / "table.json").read_text())
    return {"out": out, "args": args, "table": table, "seconds": seconds,
            "rows": {(r["method"], r.get("num_freqs")): r for r in table["rows"]}}


def test_every_row_and_column_finite_with_counts(sweep):
    rows = sweep["rows"]
    assert set(rows) == {("model", 8), ("splat", 8), ("still", None), ("true_motion", None),
                         ("fixed_map", None)}
    for (method, _), r in rows.items():
        m = r["metrics"]
        assert all(math.isfinite(v) for v in m.values()), (method, m)
        assert m["clips"] == NUM_CLIPS and m["fid_frames"] == FRAMES and m["kid_frames"] == FRAMES
        assert m["fvd16_windows"] == 2 + 1 + 2 and m["fvd32_windows"] == 2   # non-overlapping
        for name in ("fid", "kid_x100", "fvd16", "fvd32", "sliding_fid_mean", "learn_auc",
                     "learn_amplitude_ratio", "sv_err", "epe"):
            assert name in m, (method, name)
        curve = r["curves"]["sliding_fid"]   # windows of 30 at stride 5 (tiny config)
        assert curve["starts"] == [0, 5, 10] and curve["counts"] == [90, 60, 60]
        assert m["sliding_fid_points"] == 3 and all(math.isfinite(v) for v in curve["values"])
        assert any(n.startswith("DTFVD/DTFVD32 skipped") for n in r["notes"])   # no DTDB weights
        assert not any(k.startswith("dtfvd") for k in m)
        if method != "still":                 # nothing moves in the still video: no seam
            assert m["seam_clips"] == NUM_CLIPS and m["seam_step_ratio"] > 0
    assert any("biased" in n for n in sweep["table"]["notes"])


def test_rows_state_cfg_weight_and_k(sweep):
    """(Truncated K is tested with a stand-in pipeline in tests/test_eval.py.)"""
    from gid_jax.pipeline import SamplerSettings

    full = sweep["rows"][("model", 8)]
    for r in (full, sweep["rows"][("splat", 8)]):   # "pipeline": the checkpoint's own w
        assert r["info"]["cfg_weight"] == SamplerSettings().guidance_weight
        assert r["info"]["k_mode"] == "full" and "CFG w=1.75" in r["label"]
    assert "render_psnr" in full["metrics"] and "learn_phase_diversity" in full["metrics"]
    assert sweep["rows"][("true_motion", None)]["metrics"]["learn_amplitude_ratio"] == pytest.approx(1.0)
    assert sweep["rows"][("still", None)]["metrics"]["learn_amplitude_ratio"] == 0.0


def test_true_motion_beats_still_on_fvd(sweep):
    """The renderer's ceiling (the measured motion) is nearer the real clips than no motion."""
    true, still = sweep["rows"][("true_motion", None)]["metrics"], sweep["rows"][("still", None)]["metrics"]
    assert true["fvd16"] < still["fvd16"] and true["fvd32"] < still["fvd32"], (true, still)


def test_csv_one_row_per_cell_counts_beside_values(sweep):
    with open(sweep["out"] / "table.csv") as f:
        reader = csv.reader(f)
        header = next(reader)
        body = list(reader)
    assert len(body) == len(sweep["table"]["rows"]) == 5
    for value, count in (("fid", "fid_frames"), ("fvd16", "fvd16_windows"), ("fvd32", "fvd32_windows")):
        assert header.index(count) == header.index(value) + 1
    assert {"cfg_weight", "k_mode", "notes", "method", "label"} <= set(header)


def test_resume_skips_finished_cells(sweep, capsys):
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as mp:
        patch_networks(mp)
        assert gid_main(sweep["args"] + ["--config.plots=False"]) == 0
    assert "0 cells computed, 4 already done" in capsys.readouterr().out


def test_kept_videos_match_the_real_clips(sweep):
    videos = sweep["out"] / "videos"
    real = sorted((videos / "real").glob("*.mp4"))
    assert len(real) == NUM_CLIPS
    for r in sweep["table"]["rows"]:
        kept = sorted((videos / r["cell_id"] / r["method"]).glob("*.mp4"))
        assert [p.name for p in kept] == [p.name for p in real]
        for gen, ref in zip(kept, real):
            assert read_video(gen)[0].shape == read_video(ref)[0].shape   # same frames and size


def test_report_names_only_files_that_load(sweep):
    page = sweep["out"] / "report" / "index.html"
    text = page.read_text()
    refs = re.findall(r'(?:src|href)="([^"]+)"', text)
    assert refs and not any(r.startswith(("http:", "https:", "/")) for r in refs)   # offline, relative
    images = [r for r in refs if r.endswith((".png", ".gif"))]
    assert any(r.endswith(".gif") for r in images) and any("sliding_fid" in r for r in images)
    for ref in refs:
        path = (page.parent / ref).resolve()
        assert path.is_file(), ref
        if ref.endswith((".png", ".gif")):
            with Image.open(path) as im:
                im.verify()
    gif = next(r for r in images if r.endswith(".gif") and "/real/" in r)
    with Image.open(page.parent / gif) as im:
        assert im.n_frames in (30, 40)
    assert len(re.findall(r'/real/[^"]+\.gif"', text)) == 2           # report_clips
    for r in sweep["table"]["rows"]:
        assert r["cell_id"] in text


@needs_chromium
def test_report_renders_in_headless_chromium_with_every_file_loaded(sweep, tmp_path):
    """The page as a browser shows it: the table laid out, every <img> decoded with a size,
    every link answered. And the check fails when it should: in a copy of the report with one
    row's clip and table.csv deleted it names exactly those two."""
    page = "report/index.html"
    text = (sweep["out"] / page).read_text()
    result = check_page_media(sweep["out"], page)
    assert result["broken"] == [], result["broken"]
    assert result["title"] == "gid eval report" and result["rows"] == 1 + len(sweep["table"]["rows"])
    assert result["height"] > 500 and result["videos"] == []     # clips are GIFs (<img>), no <video>
    assert len(result["images"]) == text.count("<img ") and {x["src"] for x in result["links"]} == {
        "../table.csv", "../table.json"}
    for im in result["images"]:
        assert im["natural"][0] > 0 and im["box"][0] > 0, im
    gifs = [im for im in result["images"] if im["src"].endswith(".gif")]
    assert len(gifs) == 2 * len(sweep["table"]["rows"]) + 2 and all(im["natural"] == [64, 40] for im in gifs)

    copy = tmp_path / "eval"
    for part in ("report", "media", "plots"):
        shutil.copytree(sweep["out"] / part, copy / part)
    for part in ("table.csv", "table.json"):
        shutil.copy2(sweep["out"] / part, copy / part)
    gone = next(im["src"] for im in gifs if "/real/" not in im["src"])
    (copy / "report" / gone).resolve().unlink()
    (copy / "table.csv").unlink()
    assert check_page_media(copy, page)["broken"] == [gone, "../table.csv"]


def test_metric_vs_training_step_from_one_run(tiny_runs, prepared_tiny, tmp_path, capsys):
    """``PIPELINE@all``: one model cell per step saved in the pipeline's LDM run (here stage 1:
    steps 20 and 40), each sampling with that step's weights and labelled with the K the
    checkpoint was trained with; the step plot has one point per step, the still video dashed."""
    from gid_jax.eval.checkpoint_steps import saved_steps
    from gid_jax.pipeline import Pipeline

    steps = saved_steps(tiny_runs["ldm"])
    assert len(steps) >= 2
    run = Pipeline.write_spec(tmp_path / "stage1", tiny_runs["ldm"], tiny_runs["renderer"])
    out = tmp_path / "eval"
    args = ["eval", "--config", "configs/eval.py:tiny", f"--config.data_dir={prepared_tiny}",
            "--config.split=train", f"--config.checkpoints=('{run}@all',)", "--config.num_videos=2",
            "--config.grid.num_steps=(2,)", "--config.grid.guidance_weight=('pipeline',)",
            "--config.grid.num_freqs=('trained',)", "--config.baselines=('still',)",
            f"--config.out_dir={out}", "--report"]
    assert gid_main(args) == 0
    rows = json.loads((out / "table.json").read_text())["rows"]
    model = sorted((r for r in rows if r["method"] == "model"), key=lambda r: r["step"])
    assert [r["step"] for r in model] == steps and [r["checkpoint"] for r in model] == [
        f"{run}@{s}" for s in steps]
    trained_k = json.loads((tiny_runs["ldm"] / "config.json").read_text())["model"]["num_freqs"]
    for r in model:
        assert r["info"]["k_mode"] == "trained" and r["info"]["model_num_freqs"] == trained_k == 8
        assert "(the K it was trained with)" in r["label"]
    assert model[0]["metrics"]["sv_err"] != model[-1]["metrics"]["sv_err"]     # each step's weights
    plot = json.loads((out / "plots" / "learn_auc_vs_step.json").read_text())
    assert [[x for x, _ in line["points"]] for line in plot["lines"]] == [steps]
    assert [p[1] for p in plot["lines"][0]["points"]] == [r["metrics"]["learn_auc"] for r in model]
    assert [b["label"] for b in plot["baselines"]] == ["still"]
    assert (out / "plots" / "learn_auc_vs_step.png").stat().st_size > 1000
    assert '"../plots/learn_auc_vs_step.png"' in (out / "report" / "index.html").read_text()

    capsys.readouterr()
    bad = [a.replace("@all", "@7") for a in args if not a.startswith("--config.out_dir")]
    assert gid_main(bad + [f"--config.out_dir={tmp_path / 'bad'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "step 7 is not saved" in err and f"(saved: {steps})" in err


def test_real_features_are_cached(sweep, tiny_runs, prepared_tiny, monkeypatch):
    """A second evaluator reads the real clips' features from OUT/real_features/ (no decoding)."""
    from gid_jax.config import load_config
    from gid_jax.eval import clips
    from gid_jax.eval.pipeline_eval import make_cell_evaluator

    config = load_config("configs/eval.py:tiny", [a for a in sweep["args"] if a.startswith("--config.")])
    evaluator = make_cell_evaluator(config, networks=tiny_networks())
    monkeypatch.setattr(clips.RealClips, "__call__", lambda self, clip: pytest.fail("decoded again"))
    feats = evaluator.real_features()
    assert [int(f["n"]) for f in feats] == [40, 30, 40]
    assert feats[0]["frames"].shape == (40, inception.inception_feature_dim(1 / 16))


def test_wrong_videos_dir_is_one_clear_line(tiny_runs, prepared_tiny, tmp_path, capsys):
    (tmp_path / "videos").mkdir()
    args = eval_args(tiny_runs, prepared_tiny, tmp_path / "out")
    args = [a if not a.startswith("--config.videos_dir") else f"--config.videos_dir={tmp_path / 'videos'}"
            for a in args]
    with pytest.MonkeyPatch.context() as mp:
        patch_networks(mp)
        assert gid_main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "config.videos_dir" in err and "synth_00000" in err
