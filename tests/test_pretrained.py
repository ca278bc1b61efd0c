"""The default model shipped in the package (gid_jax/pretrained): `Pipeline.pretrained()`, the CLI
default, the manifest's provenance and the size limit."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

import gid_jax.pretrained as pretrained
from gid_jax.export import bundle_size


def test_missing_model_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained, "_ROOT", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no shipped model 'small'.*retrain"):
        pretrained.bundle_path()


@pytest.mark.skipif(pretrained.DEFAULT_MODEL not in pretrained.available(),
                    reason="no default model shipped in this checkout")
def test_shipped_model_loads_predicts_and_records_its_recipe(tmp_path):
    from gid_jax.pipeline import Pipeline
    from gid_jax.pretrained.retrain import MAX_BUNDLE_MB

    path = pretrained.bundle_path()
    assert bundle_size(path) <= MAX_BUNDLE_MB * 1e6
    provenance = json.loads((path / "manifest.json").read_text())["provenance"]
    assert provenance["commit"] and provenance["data"]["motion_source"] and provenance["training"]
    assert provenance["heldout_metrics"]["model"]["auc"] > 0.5
    pipe = Pipeline.pretrained()
    image = np.random.default_rng(0).random((pipe.height, pipe.width, 3)).astype(np.float32)
    sv = pipe.predict_spectral_volume(image, seed=0, num_steps=4)
    assert sv.shape == (pipe.ldm.num_freqs, pipe.height, pipe.width, 4) and np.all(np.isfinite(sv))
    src = tmp_path / "still.png"
    cv2.imwrite(str(src), (image * 255).astype(np.uint8))
    out = tmp_path / "video.mp4"
    res = subprocess.run([sys.executable, "-m", "gid_jax.cli", "animate", str(src), "--out", str(out),
                          "--frames", "8", "--steps", "4"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert out.stat().st_size > 0


@pytest.mark.skipif(pretrained.DEFAULT_MODEL not in pretrained.available(),
                    reason="no default model shipped in this checkout")
def test_loading_the_shipped_model_imports_no_training_stack():
    """A bundle is numpy + JSON: loading it imports no TensorFlow, TFDS, Beam or CLU (nor
    Orbax or the training code), which also keeps `gid animate`'s start-up short."""
    code = ("import sys, gid_jax; gid_jax.Pipeline.pretrained(); "
            "print(sorted(m for m in ('tensorflow', 'apache_beam', 'tensorflow_datasets', 'clu', "
            "'orbax', 'orbax.checkpoint', 'gid_jax.train', 'gid_jax.checkpoints') "
            "if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().splitlines()[-1] == "[]"
