"""The main job's last steps on the tiny trained pipeline: animate a held-out procedural video,
measure it against the truth, write the report; finished training stages are reused."""

import numpy as np

from data_pipelines.synth import synthesize
from data_pipelines.video_io import read_video
from gid_jax.pipeline import Pipeline
from gid_jax.quickstart import _animate_heldout, _markdown, _train_once


def test_animate_heldout_and_report(tiny_runs, tmp_path):
    pipe = Pipeline.load(tiny_runs["pipeline"])
    video = synthesize(tmp_path / "heldout", 1, size=(64, 40), num_frames=40, seed=123,
                       progress=False)[0]
    row = _animate_heldout(pipe, video, tmp_path, num_frames=12)
    for key in ("vae_reconstruction_l1", "motion_relative_error", "plain_seam_position_px",
                "loop_seam_position_px", "predicted_mean_amplitude_px", "true_mean_amplitude_px"):
        assert np.isfinite(row[key]), key
    assert row["true_mean_amplitude_px"] > 0
    frames, _ = read_video(tmp_path / f"{video.stem}_animated.mp4")
    assert frames.shape == (12, 40, 64, 3)
    for name in ("animated.gif", "predicted_motion.png", "true_motion.png"):
        assert (tmp_path / f"{video.stem}_{name}").stat().st_size > 0
    text = _markdown([row], pipe)
    assert "loop seam with self-guidance" in text and f"{video.stem}_animated.gif" in text


def test_finished_stages_are_not_retrained(tmp_path):
    run = tmp_path / "vae"
    run.mkdir()
    (run / "FINISHED").write_text("40\n")
    _train_once(run, "configs/does_not_exist.py:tiny", [])   # would fail if it tried to train
