"""The `gid` command line: help texts and one-line errors for bad arguments."""

import subprocess
import sys

import pytest


def gid(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "gid_jax.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def test_synth_help_explains_itself():
    out = gid("synth", "--help")
    assert out.returncode == 0
    for word in ("--out", "--num-videos", "--size", "--frames", "--fps", "--seed", "trajectories"):
        assert word in out.stdout


@pytest.mark.parametrize("args, message", [
    (["--size=-256x160"], "size must be positive"),
    (["--size", "256by160"], "WIDTHxHEIGHT"),
    (["--frames", "0"], "frames"),
    (["--num-videos", "0"], "num_videos"),
])
def test_synth_bad_arguments_give_one_clear_line(tmp_path, args, message):
    out = gid("synth", "--out", str(tmp_path / "o"), "--num-videos", "1", "--size", "64x48",
              "--frames", "4", *args)
    assert out.returncode == 2
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert message in lines[-1] and "Traceback" not in out.stderr


def test_synth_unwritable_output_directory(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    out = gid("synth", "--out", str(blocker / "videos"), "--num-videos", "1", "--size", "64x48",
              "--frames", "4")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert str(blocker / "videos") in out.stderr.strip().splitlines()[-1]


def test_synth_writes_videos(tmp_path):
    out = gid("synth", "--out", str(tmp_path), "--num-videos", "2", "--size", "64x48",
              "--frames", "6", "--seed", "3")
    assert out.returncode == 0, out.stderr
    assert sorted(p.suffix for p in tmp_path.iterdir() if not p.name.startswith(".")) == \
        [".mp4", ".mp4", ".npz", ".npz"]


def test_prepare_help_and_bad_input(tmp_path):
    out = gid("prepare", "--help")
    assert out.returncode == 0 and "DataflowRunner" in out.stdout and "--config" in out.stdout
    out = gid("prepare", "--videos", str(tmp_path / "missing"), "--out", str(tmp_path / "data"),
              "--config", "configs/prepare.py:tiny")
    assert out.returncode == 2 and "missing" in out.stderr.strip().splitlines()[-1]
    out = gid("prepare", "--videos", str(tmp_path), "--out", str(tmp_path / "data"),
              "--config", "configs/prepare.py:tiny", "--config.no_such_field=1")
    assert out.returncode == 2 and "no_such_field" in out.stderr.strip().splitlines()[-1]


def test_train_runs_a_config_and_reports_bad_ones(tmp_path):
    out = gid("train", "--config", "configs/toy.py:tiny", "--workdir", str(tmp_path / "run"),
              "--config.train.num_steps=10")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "step 10" in out.stdout and (tmp_path / "run" / "metrics.jsonl").exists()
    out = gid("train", "--config", "configs/models.py:tiny", "--workdir", str(tmp_path / "bad"))
    assert out.returncode == 2 and "no 'task' field" in out.stderr.strip().splitlines()[-1]
    out = gid("train", "--config", "configs/nope.py:tiny", "--workdir", str(tmp_path / "bad"))
    assert out.returncode == 2 and "config file not found" in out.stderr.strip().splitlines()[-1]


def test_train_reports_a_zero_model_size_as_one_line(tmp_path):
    out = gid("train", "--config", "configs/vae.py:tiny", "--workdir", str(tmp_path / "run"),
              "--config.model.vae.latent_channels=0")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    line = out.stderr.strip().splitlines()[-1]
    assert "MotionVAE: latent_channels must be an integer >= 1, got 0" in line


def test_train_stops_when_the_loss_diverges(tmp_path):
    out = gid("train", "--config", "configs/toy.py:tiny", "--workdir", str(tmp_path / "run"),
              "--config.optimizer.learning_rate=1e9", "--config.train.max_nonfinite_steps=3")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    line = out.stderr.strip().splitlines()[-1]
    assert "gid train: error: training diverged at step" in line and "no checkpoint was written" in line
    assert not [p for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.isdigit()]


def test_configs_ship_inside_a_non_editable_install(tmp_path):
    # `pip install .` (a copy in site-packages, not a link to the checkout), used from another
    # directory: `configs/NAME.py:VARIANT` must name the packaged configs.
    from pathlib import Path

    import shutil

    repo, source, site = Path(__file__).resolve().parents[1], tmp_path / "source", tmp_path / "site"
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=repo,
                           capture_output=True, text=True, check=True).stdout.split()
    for name in files:     # the sources only, so the build's scratch stays out of the checkout
        if (repo / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(repo / name, source / name)
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                          "--target", str(site), str(source)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    probe = ("import gid_jax, gid_jax.config as c; print(gid_jax.__file__); "
             "print(c.load_config('configs/ldm.py:tiny').task); "
             "print(c.load_config('configs/prepare.py:tiny').num_freqs)")
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                         env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    where, task, num_freqs = out.stdout.split()
    assert where.startswith(str(site)) and task == "ldm" and int(num_freqs) > 0
    (tmp_path / "configs").mkdir()                  # an edited copy in the working directory wins
    (tmp_path / "configs" / "ldm.py").write_text("def get_config(arg=None):\n    return {'task': 'mine'}\n")
    out = subprocess.run([sys.executable, "-c", "import gid_jax.config as c; print(c.load_config('configs/ldm.py:x')['task'])"],
                         cwd=tmp_path, capture_output=True, text=True, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "mine", out.stderr[-2000:]
