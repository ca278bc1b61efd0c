"""Inference on the tiny trained pipeline: sampling, looping, motion controls, interactive
dynamics, and the `gid animate` / `gid interact` command lines."""

import json
import struct
import subprocess
import sys
import zlib

import cv2
import numpy as np
import pytest

from data_pipelines.video_io import read_video
from gid_jax import motion
from gid_jax.cli import main as gid_main
from gid_jax.interact import InteractiveSession, render_drag_response
from gid_jax.pipeline import Pipeline


def test_sampler_is_deterministic_and_batched(pipe, image):
    a = pipe.predict_spectral_volume(image, seed=3)
    b = pipe.predict_spectral_volume(image, seed=3)
    c = pipe.predict_spectral_volume(image, seed=4)
    assert a.shape == (pipe.ldm.num_freqs, pipe.height, pipe.width, 4) and np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 0
    batch = pipe.predict_spectral_volumes(np.stack([image, image]), seed=3)
    assert batch.shape == (2,) + a.shape


def test_paper_self_guidance_reduces_its_loop_loss(pipe, image):
    period = pipe.settings.period

    def seam(sv):   # Eq. 5's own measure; tests/test_loops.py judges loops by seam_ratios
        position, velocity = motion.loop_seam(pipe.motion_texture(sv, period))
        return float(position) + float(velocity)

    plain = pipe.predict_spectral_volume(image, seed=1, loop=False)
    # u = 1: at 8 steps larger weights overshoot on this model (measured: seam 0.23 plain →
    # 0.14 at u = 1, 0.16 at u = 3, 0.38 at u = 10).
    looped = pipe.predict_spectral_volume(image, seed=1, loop=True, loop_mode="paper_guidance",
                                          loop_weight=1.0)
    assert seam(looped) < seam(plain), (seam(looped), seam(plain))


def test_magnification_and_slow_motion(pipe):
    rng = np.random.default_rng(2)
    sv = rng.normal(size=(pipe.ldm.num_freqs, 6, 5, 4)).astype(np.float32)
    base = pipe.motion_texture(sv, 20)
    np.testing.assert_allclose(pipe.motion_texture(sv, 20, amplitude=2.0), 2 * base, rtol=1e-5, atol=1e-5)
    slow = pipe.motion_texture(sv, 40, speed=0.5)
    np.testing.assert_allclose(slow[::2], base, atol=1e-4)
    halves = np.asarray(motion.to_trajectories(sv, times=np.arange(20) + 0.5, period=pipe.settings.period))
    np.testing.assert_allclose(slow[1::2], halves, atol=1e-4)


def test_animate_renders_frames_in_range(pipe, image):
    frames = pipe.animate(image, num_frames=6, seed=0)
    assert frames.shape == (6, pipe.height, pipe.width, 3)
    assert frames.min() >= 0 and frames.max() <= 1 and np.all(np.isfinite(frames))


def test_non_finite_inputs_are_refused_not_rendered_grey(pipe, image):
    poisoned = image.copy()
    poisoned[3, 4, 1] = np.nan
    with pytest.raises(ValueError, match="image must be finite"):
        pipe.animate(poisoned, num_frames=2)
    with pytest.raises(ValueError, match="images must be finite"):
        pipe.predict_spectral_volumes(poisoned[None])
    sv = np.zeros((pipe.ldm.num_freqs, pipe.height, pipe.width, 4), np.float32)
    for bad in (np.nan, np.inf):
        sv[1, 2, 3, 0] = bad
        with pytest.raises(ValueError, match="spectral volume must be finite"):
            pipe.render_motion(image, sv, 2)
    sv[1, 2, 3, 0] = 0.0
    with pytest.raises(ValueError, match="speed must be finite, got nan"):
        pipe.motion_texture(sv, 2, speed=float("nan"))
    with pytest.raises(ValueError, match="amplitude must be finite, got inf"):
        pipe.render_motion(image, sv, 2, amplitude=float("inf"))


def test_drag_response_with_the_trained_renderer_decays(pipe, image):
    sv = pipe.predict_spectral_volume(image, seed=0)
    # make sure there is motion at the dragged point whatever the tiny model predicted
    sv[1:, :, :, 0] += 20.0
    fast = InteractiveSession(image, sv, render_fn=pipe.frame_renderer(sv), fps=pipe.settings.fps,
                              alpha=2.0, beta=0.05, period=pipe.settings.period)
    frames = render_drag_response(fast, (pipe.width // 2, pipe.height // 2), (3.0, 0.0), 40)
    change = np.abs(frames - frames[-1]).mean(axis=(1, 2, 3))
    assert change[0] > 0 and change[-5:].max() < 0.5 * change[0]


def gid(*args):
    return subprocess.run([sys.executable, "-m", "gid_jax.cli", *args], capture_output=True,
                          text=True, timeout=600)


def last_line(out):
    return out.stderr.strip().splitlines()[-1]


def test_animate_cli_accepts_any_size_grey_and_rgba(tiny_runs, tmp_path):
    rng = np.random.default_rng(5)
    grey = tmp_path / "grey.png"
    cv2.imwrite(str(grey), (rng.random((97, 131)) * 255).astype(np.uint8))       # odd size, 1 channel
    rgba = tmp_path / "rgba.png"
    cv2.imwrite(str(rgba), (rng.random((30, 50, 4)) * 255).astype(np.uint8))      # small, 4 channels
    for src in (grey, rgba):
        out = tmp_path / f"{src.stem}.mp4"
        res = gid("animate", str(src), "--checkpoint", str(tiny_runs["pipeline"]), "--out", str(out),
                  "--frames", "4", "--steps", "2", "--loop")
        assert res.returncode == 0, res.stderr[-3000:]
        frames, _ = read_video(out)
        assert frames.shape[0] == 4 and frames.shape[1:3] == (40, 64)


def test_animate_cli_errors(tiny_runs, tmp_path):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    res = gid("animate", str(junk), "--checkpoint", str(tiny_runs["pipeline"]), "--out", str(tmp_path / "o.mp4"))
    assert res.returncode == 2 and "junk.png: cannot read image" in last_line(res)
    res = gid("animate", str(tmp_path / "missing.png"), "--checkpoint", str(tiny_runs["pipeline"]),
              "--out", str(tmp_path / "o.mp4"))
    assert res.returncode == 2 and "missing.png: no such image file" in last_line(res)
    res = gid("animate", str(junk), "--checkpoint", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o.mp4"))
    assert res.returncode == 2 and "nowhere: no pipeline.json" in last_line(res)
    assert "Traceback" not in res.stderr


def test_interact_cli_headless_drag(tiny_runs, tmp_path):
    img = tmp_path / "img.png"
    cv2.imwrite(str(img), (np.random.default_rng(6).random((40, 64, 3)) * 255).astype(np.uint8))
    out = tmp_path / "response.mp4"
    res = gid("interact", str(img), "--checkpoint", str(tiny_runs["pipeline"]), "--drag", "30,20,3,0",
              "--out", str(out), "--frames", "12", "--steps", "2", "--splat-preview")
    assert res.returncode == 0, res.stderr[-3000:]
    assert read_video(out)[0].shape[0] == 12


def test_eval_sweep_cli(tiny_runs, prepared_tiny, tmp_path):
    out = tmp_path / "eval"
    args = ["eval", "--config", "configs/eval.py:tiny", f"--config.data_dir={prepared_tiny}",
            f"--config.checkpoints=('{tiny_runs['pipeline']}',)", "--config.split=train",
            "--config.num_videos=1", "--config.grid.num_steps=(2,)",
            "--config.grid.guidance_weight=(1.0,)", f"--config.out_dir={out}"]
    res = gid(*args)
    assert res.returncode == 0, res.stderr[-3000:]
    table = (out / "results.csv").read_text()
    assert "sv_relerr" in table and "epe" in table and "render_psnr" in table
    assert len(list((out / "cells").glob("*.json"))) == 2          # K = 8 and K = 4
    again = gid(*args)
    assert again.returncode == 0 and "0 cells computed, 2 already done" in again.stdout


def test_load_from_a_relative_path(tiny_runs, monkeypatch):
    # Orbax wants absolute paths; a relative pipeline directory (as `make demo` uses) must work
    monkeypatch.chdir(tiny_runs["pipeline"].parent)
    pipe = Pipeline.load("pipeline")
    assert pipe.ldm.num_freqs > 0


def gid_in_process(capsys, *args):
    """(exit code, last stderr line) of `gid ARGS` run in this process: an error that escaped
    the command line's one-line handling would fail the test with its traceback."""
    code = gid_main([str(a) for a in args])
    return code, capsys.readouterr().err.strip().splitlines()[-1]


def png_claiming(width, height):
    """A tiny PNG whose header claims `width` x `height` pixels."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("option, value", [("--speed", "nan"), ("--amplitude", "inf"),
                                           ("--guidance", "nan")])
def test_animate_refuses_non_finite_options_before_loading(tmp_path, capsys, option, value):
    (tmp_path / "pipeline.json").write_text('{"ldm": "nowhere", "renderer": "nowhere"}')
    img = tmp_path / "img.png"
    cv2.imwrite(str(img), np.zeros((40, 64, 3), np.uint8))
    code, line = gid_in_process(capsys, "animate", img, "--checkpoint", tmp_path, "--out",
                                tmp_path / "o.mp4", option, value)
    assert code == 2 and f"{option} must be a finite number" in line    # not "nowhere: ..."


def test_animate_names_an_image_too_large_for_opencv(tiny_runs, tmp_path, capsys):
    huge = tmp_path / "huge.png"
    huge.write_bytes(png_claiming(60000, 60000))
    code, line = gid_in_process(capsys, "animate", huge, "--checkpoint", tiny_runs["pipeline"],
                                "--out", tmp_path / "o.mp4")
    assert code == 2 and "huge.png: cannot read image" in line and "CV_IO_MAX_IMAGE_PIXELS" in line


def _write_pipeline(directory, ldm, renderer, **extra):
    directory.mkdir()
    (directory / "pipeline.json").write_text(json.dumps({"ldm": str(ldm), "renderer": str(renderer),
                                                         **extra}))
    return directory


@pytest.mark.parametrize("case, message", [
    ("unknown_sampler_key", "invalid sampler settings (SamplerSettings.__init__() got an unexpected "
                            "keyword argument 'bogus')"),
    ("sampler_string", "invalid pipeline file ('sampler' must be an object"),
    ("num_steps_string", "invalid sampler settings (num_steps must be an integer >= 1, got 'many')"),
    ("vae_as_ldm", "vae/config.json: not the config of a `gid train` ldm or distill run (its task "
                   "is 'vae')"),
    ("model_is_a_number", "bad_run/config.json: not the config of a `gid train` ldm or distill run"),
    ("model_without_fields", "bad_run/config.json: cannot build the model from this config"),
])
def test_a_bad_pipeline_directory_is_one_line(tiny_runs, tmp_path, capsys, case, message):
    ldm, renderer = tiny_runs["ldm2"], tiny_runs["renderer"]
    bad_run = tmp_path / "bad_run"
    bad_run.mkdir()
    (bad_run / "config.json").write_text(json.dumps(
        {"model": 3} if case == "model_is_a_number" else {"task": "ldm", "model": {}}))
    spec = {"unknown_sampler_key": dict(sampler={"bogus": 1}),
            "sampler_string": dict(sampler="fast"),
            "num_steps_string": dict(sampler={"num_steps": "many"})}.get(case, {})
    if case == "vae_as_ldm":
        ldm = tiny_runs["vae"]
    elif case in ("model_is_a_number", "model_without_fields"):
        ldm = bad_run
    pipeline_dir = _write_pipeline(tmp_path / "pipeline", ldm, renderer, **spec)
    img = tmp_path / "img.png"
    cv2.imwrite(str(img), np.zeros((40, 64, 3), np.uint8))
    code, line = gid_in_process(capsys, "animate", img, "--checkpoint", pipeline_dir, "--out",
                                tmp_path / "o.mp4")
    assert code == 2 and message in line, line
