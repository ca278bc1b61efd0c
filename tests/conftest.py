"""Shared test setup: CPU only, quiet TensorFlow, a shared compilation cache, and session
fixtures for the tiny prepared data and trained runs."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Compiled programs are shared by the test processes (pytest-xdist workers and the CLI
# subprocesses): the models compile once per run instead of once per process.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(
    os.environ.get("TMPDIR", "/tmp"), "gid-jax-test-jit-cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1")
# The "rbg" generator compiles model initialisation ~3x faster on CPU than threefry (measured on
# the renderer: 12.8 s → 4.2 s); it is just as deterministic, which is all the tests need.
os.environ.setdefault("JAX_DEFAULT_PRNG_IMPL", "rbg")

import fcntl  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def prepared_tiny(tmp_path_factory) -> Path:
    """A tiny prepared dataset (procedural videos → `gid prepare`, configs/prepare.py:tiny),
    built once per test run and shared by the pytest-xdist workers through a file lock."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):   # workers' temp dirs share this run's parent
        base = base.parent
    root = base / "prepared_tiny"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        out = root / "data"
        if not (out / "report.json").exists():
            from data_pipelines.prepare import prepare
            from data_pipelines.synth import synthesize
            from gid_jax.config import load_config

            synthesize(root / "videos", 6, size=(64, 40), num_frames=40, fps=30.0, seed=11,
                       progress=False)
            # The paper's raw transform: these clips get optical flow of sub-pixel motion, whose
            # noise a loop closure's fit would amplify (test_prepare.py measures it); the
            # closure itself is tested in test_seam.py and test_prepare.py.
            prepare(root / "videos", out, load_config("configs/prepare.py:tiny", ["--config.close_loops=False"]),
                    progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_runs(prepared_tiny) -> dict:
    """All four stages trained at tiny size on `prepared_tiny` (VAE → LDM 1 → LDM 2, renderer)
    plus a pipeline directory, built once per test run and shared by the xdist workers."""
    root = prepared_tiny.parent / "runs"
    root.mkdir(exist_ok=True)
    runs = {name: root / name for name in ("vae", "ldm", "ldm2", "renderer")}
    runs["pipeline"] = root / "pipeline"
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (runs["pipeline"] / "pipeline.json").exists():
            from gid_jax.pipeline import Pipeline
            from gid_jax.train.stages import train_stages

            train_stages(root, "tiny", prepared_tiny)
            Pipeline.write_spec(runs["pipeline"], runs["ldm2"], runs["renderer"], num_steps=8,
                                loop_weight=10.0)
    return runs


@pytest.fixture(scope="module")
def pipe(tiny_runs):
    """The tiny trained pipeline, loaded once per test module."""
    from gid_jax.pipeline import Pipeline

    return Pipeline.load(tiny_runs["pipeline"])


@pytest.fixture(scope="module")
def image(pipe):
    """A smooth random test image at the pipeline's size."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.random((pipe.height, pipe.width, 3)).astype(np.float32), (5, 5), 1.5)
    return np.clip(img, 0, 1)
