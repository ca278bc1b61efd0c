"""The main job at tiny size: outputs exist, numbers are sane, a re-run reuses finished steps."""

import json

import cv2
import numpy as np

from gid_jax import motion
from gid_jax.quickstart import describe_motion, quickstart


def test_quickstart_writes_report_and_reuses_outputs(tmp_path):
    report = quickstart(tmp_path, num_videos=2, size=(64, 48), num_frames=30, seed=0)
    text = report.read_text()
    rows = json.loads((report.parent / "summary.json").read_text())
    assert len(rows) == 2 and "synth_00000_motion.png" in text
    for row in rows:
        picture = cv2.imread(str(report.parent / row["picture"]))
        assert picture is not None and picture.shape[0] > 100
        assert 0.0 <= row["moving_fraction"] <= 1.0 and row["max_displacement_px"] >= 0.0
    # some generated scenes are nearly calm by design; at least one here really moves
    assert max(row["max_displacement_px"] for row in rows) > 0.5
    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.suffix in {".mp4", ".png"}}
    quickstart(tmp_path, num_videos=2, size=(64, 48), num_frames=30, seed=0)
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes


def test_describe_motion_on_a_known_trajectory():
    t = np.arange(150)
    traj = np.zeros((150, 4, 4, 2), np.float32)
    traj[:, :2, :, 0] = (2.0 * np.sin(2 * np.pi * 0.8 * t / 30))[:, None, None]   # 0.8 Hz, on bin 4
    info = describe_motion(traj, fps=30.0, num_freqs=motion.NUM_FREQS)
    assert info["moving_fraction"] == 0.5
    assert info["dominant_frequency_hz"] == 0.8
    assert abs(info["max_displacement_px"] - 2.0) < 1e-3
    assert info["k16_reconstruction_error_px"] < 1e-4       # on-bin sine: K=16 is exact
