"""The main job's last steps on the tiny trained pipeline: measure held-out procedural scenes
against their truth and the floors, animate them, write the report; finished training stages
are reused."""

import json

import numpy as np

from data_pipelines.synth import synthesize
from data_pipelines.video_io import read_video
from gid_jax.pipeline import Pipeline
from gid_jax.quickstart import _markdown, measure
from gid_jax.train.stages import STAGES, stage_plan, train_stages


def test_measure_and_report(tiny_runs, tmp_path):
    pipe = Pipeline.load(tiny_runs["pipeline"])
    heldout = synthesize(tmp_path / "heldout", 2, size=(64, 40), num_frames=40, seed=123,
                         progress=False)
    train = synthesize(tmp_path / "train", 2, size=(64, 40), num_frames=40, seed=7, progress=False)
    results = measure(pipe, tiny_runs["pipeline"], heldout, train[0].parent, tmp_path, 12)
    learning = results["learning"]
    for column in (learning["model"], learning["floors"]["untrained"],
                   learning["floors"]["zero_motion"], learning["floors"]["fixed_map"]):
        assert 0.0 <= column["auc"] <= 1.0
    truth = learning["ceiling"]["truth"]
    assert truth["auc"] > 0.95 and truth["amplitude_ratio"] == 1.0
    assert learning["floors"]["zero_motion"]["auc"] == 0.5
    assert results["renderer"]["renderer"]["psnr"] > 0 and "splat" in results["renderer"]
    assert all(np.isfinite(results["loop"][f"{n}_{r}_ratio"]) for n in ("period", "other") for r in ("step", "accel"))
    frames, _ = read_video(tmp_path / f"{heldout[0].stem}_animated.mp4")
    assert frames.shape == (12, 40, 64, 3)
    for name in ("animated.gif", "predicted_motion.png", "true_motion.png"):
        assert (tmp_path / f"{heldout[0].stem}_{name}").stat().st_size > 0
    assert (tmp_path / "motion_comparison.png").stat().st_size > 0
    text = _markdown(json.loads(json.dumps(results)), pipe)
    assert "localisation AUC" in text and "untrained" in text and f"{heldout[0].stem}_animated.gif" in text


def test_stage_plan_chains_the_runs(tmp_path):
    plan = stage_plan(tmp_path, "tiny", "DATA", {"ldm": ["--config.train.num_steps=7"]})
    assert [p[0] for p in plan] == [s[0] for s in STAGES]
    ldm = dict((p[0], p) for p in plan)["ldm"]
    assert ldm[1] == "configs/ldm.py:tiny" and f"--config.vae_workdir={tmp_path / 'vae'}" in ldm[2]
    assert ldm[2][-1] == "--config.train.num_steps=7" and ldm[3] == tmp_path / "ldm"


def test_finished_stages_are_not_retrained(tmp_path):
    for name, _, _ in STAGES:
        (tmp_path / name).mkdir()
        (tmp_path / name / "FINISHED").write_text("40\n")
    # Would fail (no data) if it tried to train any stage.
    runs = train_stages(tmp_path, "tiny", tmp_path / "no_data")
    assert sorted(runs) == sorted(s[0] for s in STAGES)
