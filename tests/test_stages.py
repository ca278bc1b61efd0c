"""The motion stages end to end at tiny size on procedural data: VAE → LDM stage 1 → stage 2.

Each stage's loss must fall in a short run; stage 2 must leave every stage-1 parameter
bit-identical while training its frequency attention. (The runs come from the session fixture
`tiny_runs` in conftest.py, which the pipeline tests reuse.)"""

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from gid_jax.models.ldm import MotionLDM
from gid_jax.train.checkpoint import load_params_from
from gid_jax.train.ldm_task import saliency_target
from gid_jax.train.metrics import read_metrics


def losses(workdir, key="train/loss"):
    records = read_metrics(workdir)
    return np.array([records[s][key] for s in sorted(records) if key in records[s]])


def test_vae_learns_and_writes_whitening_statistics(tiny_runs):
    curve = losses(tiny_runs["vae"])
    assert curve[-2:].mean() < 0.85 * curve[:2].mean(), curve   # measured: 0.83 → 0.45 in 40 steps
    stats = json.loads((tiny_runs["vae"] / "latent_stats.json").read_text())
    assert stats["count"] > 0 and all(s > 0 for s in stats["std"])


def test_ldm_stage1_learns_to_denoise(tiny_runs):
    curve = losses(tiny_runs["ldm"], "train/v_loss")
    # the tiny LDM predicts v: MSE ≈ 1 at the start (zero-initialised output, unit-variance
    # v); it must clearly improve.
    assert curve[0] > 0.8 and curve[-2:].mean() < 0.9 * curve[:2].mean(), curve
    # the auxiliary saliency loss (tiny configs: weight 1) falls too
    saliency = losses(tiny_runs["ldm"], "train/saliency_loss")
    assert len(saliency) == len(curve) and saliency[-2:].mean() < 0.8 * saliency[:2].mean(), saliency


def test_saliency_target_is_the_pooled_log_amplitude():
    """log(1 + Σ_{k≥1} |S_k|) against numpy: DC ignored, and a field constant on 8×8 blocks keeps
    its block values inside each 4×4 block of the halved map (the antialiased linear kernel
    reaches 1.5 output pixels, so only the blocks' inner 2×2 are free of their neighbours)."""
    rng = np.random.default_rng(0)
    block = rng.random((2, 3, 4, 4)).astype(np.float32)             # (B, K, 4, 4) block values
    sv = np.zeros((2, 3, 32, 32, 4), np.float32)
    sv[..., 0] = np.kron(block, np.ones((8, 8)))                     # x real part
    sv[..., 2] = 0.5 * sv[..., 0]                                    # x imaginary part
    sv[:, 0] = 5.0                                                    # DC: ignored
    got = np.asarray(saliency_target(jnp.asarray(sv), (16, 16)))
    want = np.log1p(np.hypot(1.0, 0.5) * block[:, 1:].sum(1))        # (B, 4, 4)
    assert got.shape == (2, 16, 16)
    np.testing.assert_allclose(got.reshape(2, 4, 4, 4, 4)[:, :, 1:3, :, 1:3],
                               np.broadcast_to(want[:, :, None, :, None], (2, 4, 2, 4, 2)), rtol=1e-5)


def test_distillation_teacher_step_is_the_samplers_ddim_step():
    """The distillation target's teacher step calls `ddim_step` (η = 0); it computes bit for
    bit what the loss wrote out before, √ᾱ_lo·x̂0 + √(1−ᾱ_lo)·ε̂ (measured too on the whole
    tiny distillation loss: 134.22069 before and after, same bytes)."""
    from gid_jax.diffusion import NoiseSchedule, predict_x0
    from gid_jax.diffusion.samplers import ddim_step

    schedule = NoiseSchedule.create(1000, 0.0015, 0.0195, "scaled_linear")
    abar = jnp.asarray(schedule.alphas_cumprod, jnp.float32)
    k = jax.random.split(jax.random.key(0), 3)
    z, eps = (jax.random.normal(key, (6, 4, 6, 4)) for key in k[:2])
    t_hi = jax.random.randint(k[2], (6,), 1, 1000)
    t_lo = jnp.maximum(t_hi - 20, 0)
    a_hi, a_lo = (abar[t].reshape((-1, 1, 1, 1)) for t in (t_hi, t_lo))

    def written_out(z, eps, a_hi, a_lo):
        return jnp.sqrt(a_lo) * predict_x0(z, eps, a_hi) + jnp.sqrt(1.0 - a_lo) * eps

    for fn in (lambda f: f, jax.jit):
        np.testing.assert_array_equal(np.asarray(fn(ddim_step)(z, eps, a_hi, a_lo)),
                                      np.asarray(fn(written_out)(z, eps, a_hi, a_lo)))


def test_distillation_trains_the_student_only_and_samples_in_two_steps(tiny_runs, tmp_path):
    """Stage 5: a few consistency-distillation steps from the stage-2 run change the student, not
    the frozen teacher; the run then loads as a Pipeline that samples with the consistency
    sampler (no null pass) and returns finite spectral volumes."""
    from gid_jax.config import load_config
    from gid_jax.pipeline import Pipeline
    from gid_jax.train import get_task, train

    workdir = tmp_path / "distill"
    config = load_config("configs/distill.py:tiny", [
        f"--config.data.dir={tiny_runs['ldm2'].parent.parent / 'data'}",
        f"--config.teacher_workdir={tiny_runs['ldm2']}", "--config.train.num_steps=4",
        "--config.train.log_every=2", "--config.checkpoint.every_steps=4"])
    train(get_task("distill", config), config, workdir)
    assert np.all(np.isfinite(losses(workdir)))
    model_cfg = ml_collections.ConfigDict(json.loads((tiny_runs["ldm2"] / "config.json").read_text())).model
    fresh = {"m": nnx.state(MotionLDM(model_cfg, num_freqs=model_cfg.num_freqs, stage=2, rngs=nnx.Rngs(0)))}
    teacher_src, _ = load_params_from(tiny_runs["ldm2"], fresh, filter="denoiser")
    for role, same in (("teacher", True), ("student", False)):
        got, names = load_params_from(workdir, fresh, filter="denoiser", use_ema=False,
                                      source_path=("^", f"{role}/"))
        equal = [np.array_equal(np.asarray(a), np.asarray(b))
                 for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(teacher_src))]
        assert names and (all(equal) if same else not all(equal)), role
    pipe = Pipeline.from_runs(workdir)
    assert (pipe.settings.solver, pipe.settings.num_steps) == ("consistency", 2)
    image = np.random.default_rng(0).random((pipe.height, pipe.width, 3)).astype(np.float32)
    sv = pipe.predict_spectral_volume(image, seed=0)
    assert sv.shape == (pipe.ldm.num_freqs, pipe.height, pipe.width, 4) and np.all(np.isfinite(sv))
