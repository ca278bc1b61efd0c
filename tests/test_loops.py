"""Loops of any length: whole-period playback, the loop guidance, predict_motion = what animate
renders, amplitude kept; and the fast paths of `gid animate` (checks before loading, no TensorFlow,
the compilation cache, --timings)."""

import dataclasses
import json
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from gid_jax import cli, motion, pipeline
from gid_jax.pipeline import SamplerSettings, playback_speed


def in_range(ratios):
    return 0.5 <= ratios["step_ratio"] <= 1.5 and ratios["accel_ratio"] <= 2.0


def mean_motion(traj):
    return float(np.linalg.norm(traj, axis=-1).mean())


# ----------------------------------------------------------------------------- motion maths

def test_playback_speed_fits_whole_periods():
    assert playback_speed(150, 1.0, 150) == 1.0
    assert playback_speed(300, 0.5, 150) == 0.5           # already whole periods: unchanged
    assert playback_speed(45, 1.0, 30) == pytest.approx(60 / 45)   # 1.5 periods → 2 (ratio-nearer)
    assert playback_speed(90, 1.0, 150) == pytest.approx(150 / 90)  # at least one period
    assert playback_speed(200, 1.0, 150) == pytest.approx(150 / 200)
    with pytest.raises(ValueError):
        playback_speed(10, float("nan"), 30)


def oscillation_spectrum(period=60, num_freqs=12, size=(6, 8), seed=0):
    """A spectral volume of stationary oscillation: random coefficients, falling with frequency."""
    rng = np.random.default_rng(seed)
    scale = 1.0 / (1.0 + np.arange(num_freqs))[:, None, None, None]
    sv = (rng.normal(size=(num_freqs, *size, 4)) * scale * period).astype(np.float32)
    sv[0] = 0.0
    return sv


@pytest.mark.parametrize("num_frames", [60, 90, 36, 200])
def test_whole_periods_wrap_seamlessly_where_the_asked_speed_jumps(num_frames):
    period = 60
    sv = oscillation_spectrum(period)
    speed = playback_speed(num_frames, 1.0, period)
    looped = np.asarray(motion.to_trajectories(sv, times=motion.frame_times(num_frames, speed), period=period))
    assert in_range(motion.seam_ratios(looped)), motion.seam_ratios(looped)
    asked = np.asarray(motion.to_trajectories(sv, num_frames, period=period))
    assert (speed == 1.0) == in_range(motion.seam_ratios(asked))
    assert mean_motion(looped) == pytest.approx(mean_motion(asked), rel=0.2)


def test_guidance_targets_the_seam_it_is_asked_for():
    s = SamplerSettings(period=30, loop_mode="seam_guidance")
    assert pipeline._loop_guidance(s, True, 60, 1.0)[0] is None        # two whole periods
    kind, times = pipeline._loop_guidance(s, True, 45, 1.0)
    assert kind == "seam" and times == (-1.0, 0.0, 1.0, 44.0, 45.0, 46.0)
    paper = dataclasses.replace(s, loop_mode="paper_guidance")
    assert pipeline._loop_guidance(paper, True, 45, 1.0) == ("paper", (0.0, 1.0, 28.0, 29.0))
    assert pipeline._loop_guidance(paper, False, 45, 1.0)[0] is None


def test_settings_are_validated_with_the_field_named():
    SamplerSettings(solver="unipc", order=2, grid="quadratic").validate()
    for field, value in [("solver", "euler"), ("loop_mode", "pause"), ("grid", "cosine"),
                         ("order", 4), ("num_steps", 0), ("guidance_weight", float("inf")),
                         ("match_amplitude", "yes")]:
        with pytest.raises(ValueError, match=field):
            SamplerSettings(**{field: value}).validate()
    assert SamplerSettings(solver="unipc").solver_options() == ("unipc", 3, "logsnr")
    assert SamplerSettings(solver="unipc").solver_options(guided=True) == ("ddim", 1, "uniform")
    assert SamplerSettings(solver="dpm_solver_pp", grid="uniform").solver_options()[1:] == (2, "uniform")


def test_cli_sampler_options_reach_the_pipeline_settings():
    args = cli.build_parser().parse_args(["animate", "x.png", "--out", "x.gif", "--guidance", "2",
                                          "--no-match-amplitude"])
    assert cli._sampler_overrides(args) == {"guidance_weight": 2.0, "match_amplitude": False}
    args = cli.build_parser().parse_args(["interact", "x.png", "--match-amplitude"])
    overrides = cli._sampler_overrides(args)
    assert overrides == {"match_amplitude": True}
    assert SamplerSettings(**overrides).validate().match_amplitude is True


def test_cli_choices_match_the_pipeline():
    from gid_jax.diffusion import GRIDS

    assert cli.SOLVERS == pipeline.SOLVERS and cli.LOOP_MODES == pipeline.LOOP_MODES
    assert cli.GRIDS == GRIDS and pipeline.DEFAULT_SOLVER in pipeline.SOLVERS


# ----------------------------------------------------------------------------- trained pipeline



@pytest.mark.parametrize("factor", [1.5, 0.6])          # N = 1.5 T, N = 0.6 T
def test_loops_of_any_length_wrap_like_the_series_at_full_amplitude(pipe, image, factor):
    """A loop of N ≠ T frames wraps exactly where the series does (t ≡ 0 mod T), so its seam is
    the series' own: as seamless as a T-frame loop of the same sample, and far smoother than
    the N-frame video without looping. How seamless the series itself is depends on the
    training spectra (loop-closed ones: test_learning_recipe.py; this fixture's are raw)."""
    period = pipe.settings.period
    num_frames = round(factor * period)
    looped = pipe.predict_motion(image, num_frames, loop=True, seed=1)
    plain = pipe.predict_motion(image, num_frames, loop=False, seed=1)
    series = motion.seam_ratios(pipe.predict_motion(image, period, loop=True, seed=1))
    assert looped.shape == (num_frames, pipe.height, pipe.width, 2)
    ratios, unlooped = motion.seam_ratios(looped), motion.seam_ratios(plain)
    for key in ("step_ratio", "accel_ratio"):
        assert 0.67 < ratios[key] / series[key] < 1.5, (ratios, series)
        assert abs(np.log(ratios[key])) < abs(np.log(unlooped[key])), (ratios, unlooped)
    assert mean_motion(looped) > 0.9 * mean_motion(plain)


def test_predict_motion_is_what_animate_renders(pipe, image, monkeypatch):
    seen = []
    render = pipe.render
    monkeypatch.setattr(pipe, "render", lambda img, traj, *a, **k: seen.append(traj) or render(img, traj, *a, **k))
    for loop, num_frames, speed in [(True, 7, 1.0), (False, 5, 0.5)]:
        frames = pipe.animate(image, loop=loop, num_frames=num_frames, seed=2, speed=speed, amplitude=2.0)
        assert frames.shape == (num_frames, pipe.height, pipe.width, 3)
        traj = pipe.predict_motion(image, num_frames, loop=loop, seed=2, speed=speed, amplitude=2.0)
        np.testing.assert_allclose(seen[-1], traj, atol=1e-5)


def test_solvers_and_grids_are_wired(pipe, image):
    for solver, grid in [("unipc", None), ("dpm_solver_pp", "uniform")]:
        sv = pipe.predict_spectral_volume(image, seed=0, solver=solver, grid=grid, num_steps=4)
        assert sv.shape == (pipe.ldm.num_freqs, pipe.height, pipe.width, 4) and np.all(np.isfinite(sv))


def test_matched_amplitude_is_the_guided_sample_at_the_conditional_samples_amplitude(pipe, image):
    """match_amplitude: each guided sample times one factor per image, the factor that gives it
    the mean amplitude (numpy reference: eval.learning.amplitude_map) of the conditional (w = 0)
    sample drawn from the same seed."""
    from gid_jax.eval.learning import amplitude_map

    images = np.stack([image, image[::-1, ::-1]])
    kw = dict(seed=3, num_steps=4, guidance_weight=3.0)
    guided = pipe.predict_spectral_volumes(images, **kw)
    matched = pipe.predict_spectral_volumes(images, **kw, match_amplitude=True)
    conditional = pipe.predict_spectral_volumes(images, **{**kw, "guidance_weight": 0.0})
    for g, m, c in zip(guided, matched, conditional):
        factor = amplitude_map(c).mean() / amplitude_map(g).mean()
        assert abs(np.log(factor)) > 0.01, factor        # guidance did change the amplitude
        assert amplitude_map(m).mean() == pytest.approx(amplitude_map(c).mean(), rel=1e-4)
        np.testing.assert_allclose(m, g * factor, rtol=1e-4, atol=1e-5 * np.abs(g).max())


# ----------------------------------------------------------------------------- gid animate

def gid(*args, **kw):
    return subprocess.run([sys.executable, "-m", "gid_jax.cli", *args], capture_output=True,
                          text=True, timeout=600, **kw)


def test_bad_options_fail_before_any_model_is_loaded(tiny_runs, tmp_path):
    img = tmp_path / "img.png"
    cv2.imwrite(str(img), (np.random.default_rng(1).random((40, 64, 3)) * 255).astype(np.uint8))
    sliver = tmp_path / "sliver.png"
    cv2.imwrite(str(sliver), np.zeros((3, 50, 3), np.uint8))
    out = str(tmp_path / "o.mp4")
    cases = [(img, out, ["--frames", "0"], "--frames"), (img, out, ["--speed", "nan"], "--speed"),
             (img, out, ["--amplitude", "-1"], "--amplitude"), (img, out, ["--fps", "inf"], "--fps"),
             (img, out, ["--steps", "0"], "--steps"),
             (img, str(tmp_path / "no" / "o.mp4"), [], "does not exist"),
             (img, str(tmp_path / "o.avi"), [], ".mp4 or .gif"),
             (sliver, out, [], "sliver.png: image is 50x3 pixels")]
    for image, target, extra, message in cases:
        start = time.perf_counter()
        res = gid("animate", str(image), "--checkpoint", str(tiny_runs["pipeline"]), "--out", target,
                  *extra)
        line = res.stderr.strip().splitlines()[-1]
        assert res.returncode == 2 and message in line, (extra, res.stderr[-2000:])
        assert "init_from" not in res.stderr and time.perf_counter() - start < 30


def test_inference_imports_no_tensorflow_or_beam(tiny_runs):
    code = ("import sys, gid_jax; gid_jax.Pipeline.load(sys.argv[1]); "
            "print([m for m in ('tensorflow', 'tensorflow_datasets', 'apache_beam', 'clu') "
            "if m in sys.modules])")
    res = subprocess.run([sys.executable, "-c", code, str(tiny_runs["pipeline"])],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().splitlines()[-1] == "[]"


def test_animate_loop_reports_timings_and_fills_the_cache(tiny_runs, tmp_path):
    import os

    img = tmp_path / "img.png"
    cv2.imwrite(str(img), (np.random.default_rng(2).random((40, 64, 3)) * 255).astype(np.uint8))
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    res = gid("animate", str(img), "--checkpoint", str(tiny_runs["pipeline"]), "--out",
              str(tmp_path / "o.gif"), "--loop", "--frames", "45", "--steps", "2", "--timings", env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    timings = json.loads(res.stderr.split("timings ")[-1].splitlines()[0])
    assert set(timings) == {"check", "import", "load", "sample", "render", "write"}
    assert "speed 1.33 instead of 1" in res.stdout
    assert any((tmp_path / "xdg" / "gid-jax" / "jax").iterdir())
