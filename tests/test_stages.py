"""The motion stages end to end at tiny size on procedural data: VAE → LDM stage 1 → stage 2.

Each stage's loss must fall in a short run; stage 2 must leave every stage-1 parameter
bit-identical while training its frequency attention. (The runs come from the session fixture
`tiny_runs` in conftest.py, which the pipeline tests reuse.)"""

import json

import jax
import ml_collections
import numpy as np
from flax import nnx

from gid_jax.models.ldm import MotionLDM
from gid_jax.train.checkpoint import load_params_from
from gid_jax.train.metrics import read_metrics


def losses(workdir):
    records = read_metrics(workdir)
    return np.array([records[s]["train/loss"] for s in sorted(records) if "train/loss" in records[s]])


def test_vae_learns_and_writes_whitening_statistics(tiny_runs):
    curve = losses(tiny_runs["vae"])
    assert curve[-2:].mean() < 0.85 * curve[:2].mean(), curve   # measured: 0.83 → 0.45 in 40 steps
    stats = json.loads((tiny_runs["vae"] / "latent_stats.json").read_text())
    assert stats["count"] > 0 and all(s > 0 for s in stats["std"])


def test_ldm_stage1_learns_to_denoise(tiny_runs):
    curve = losses(tiny_runs["ldm"])
    # ε-prediction starts at MSE ≈ 1 (zero-initialised output); it must clearly improve.
    assert curve[0] > 0.8 and curve[-2:].mean() < 0.9 * curve[:2].mean(), curve


def test_stage2_trains_only_frequency_attention(tiny_runs):
    config = ml_collections.ConfigDict(json.loads((tiny_runs["ldm2"] / "config.json").read_text()))
    model = MotionLDM(config.model, num_freqs=config.model.num_freqs, stage=2, rngs=nnx.Rngs(0))
    target = {"m": nnx.state(model)}
    frozen = r"^denoiser/(?!.*freq_attn)"
    after, names = load_params_from(tiny_runs["ldm2"], target, filter=frozen)
    before, names1 = load_params_from(tiny_runs["ldm"], target, filter=frozen)   # stage-1 EMA
    assert names and sorted(names) == sorted(names1) and any("unet" in n for n in names)
    for a, b in zip(jax.tree.leaves(after), jax.tree.leaves(before)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    trained, _ = load_params_from(tiny_runs["ldm2"], target, filter="freq_attn")
    fresh = jax.tree.leaves(target)
    assert any(not np.array_equal(np.asarray(a), np.asarray(b))
               for a, b in zip(jax.tree.leaves(trained), fresh))
    assert np.all(np.isfinite(losses(tiny_runs["ldm2"])))
