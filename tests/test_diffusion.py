"""Samplers against the closed-form optimal denoiser of Gaussian data: for x ~ N(μ, s²) the
ideal ε-predictor is E[ε | z_t] = √(1-ᾱ)(z_t − √ᾱ μ) / (ᾱ s² + 1 − ᾱ), and a deterministic
sampler must turn N(0, 1) noise into N(μ, s²)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gid_jax.diffusion import (NoiseSchedule, classifier_free_guidance, ddim_sample,
                               dpm_solver_pp_sample)

MU, S = 1.5, 0.3
SCHEDULE = NoiseSchedule.create()


def gaussian_eps(mu=MU, s=S):
    abar_table = jnp.asarray(SCHEDULE.alphas_cumprod, jnp.float32)

    def eps_fn(z, t):
        abar = abar_table[t].reshape((-1,) + (1,) * (z.ndim - 1))
        return jnp.sqrt(1 - abar) * (z - jnp.sqrt(abar) * mu) / (abar * s**2 + 1 - abar)

    return eps_fn


NOISE = jax.random.normal(jax.random.key(0), (256, 2, 2, 1))


def exact_sample(noise, mu=MU, s=S):
    """The probability-flow ODE of Gaussian data keeps (z_t − m_t)/√v_t fixed (m_t = √ᾱ μ,
    v_t = ᾱ s² + 1 − ᾱ): transport the noise to the last step, then take E[x | z_0]."""
    abar = SCHEDULE.alphas_cumprod
    var = lambda a: a * s**2 + 1 - a  # noqa: E731
    z0 = np.sqrt(abar[0]) * mu + np.sqrt(var(abar[0])) * (np.asarray(noise) - np.sqrt(abar[-1]) * mu) / np.sqrt(var(abar[-1]))
    return mu + np.sqrt(abar[0]) * s**2 * (z0 - np.sqrt(abar[0]) * mu) / var(abar[0])


def test_schedule_is_square_linear():
    betas = 1 - SCHEDULE.alphas_cumprod / np.concatenate([[1.0], SCHEDULE.alphas_cumprod[:-1]])
    np.testing.assert_allclose(np.sqrt(betas), np.linspace(0.0015**0.5, 0.0195**0.5, 1000), rtol=1e-9)
    assert list(SCHEDULE.sampling_steps(4)) == [999, 666, 333, 0]
    with pytest.raises(ValueError, match="sampling steps"):
        SCHEDULE.sampling_steps(0)


def test_ddim_is_first_order_and_dpm_solver_second_order():
    truth = exact_sample(NOISE)
    ddim_err, dpm_err = [], []
    for n in (80, 160, 320):
        ddim = ddim_sample(gaussian_eps(), NOISE, jax.random.key(1), SCHEDULE, n)
        dpm = dpm_solver_pp_sample(gaussian_eps(), NOISE, SCHEDULE, n)
        ddim_err.append(np.abs(np.asarray(ddim) - truth).max())
        dpm_err.append(np.abs(np.asarray(dpm) - truth).max())
    # Halving the step: first order halves the error, second order quarters it (measured 3.5x
    # at 160 → 320 in float64; uniform-t spacing is still pre-asymptotic at the start).
    assert 1.6 < ddim_err[1] / ddim_err[2] < 2.5, ddim_err
    assert dpm_err[1] / dpm_err[2] > 3.0, dpm_err
    assert dpm_err[2] < ddim_err[2] / 2
    assert abs(np.asarray(ddim).std() - truth.std()) < 0.03 * S   # 2.2% measured at 320 steps


def test_sampler_determinism_and_stochastic_eta():
    eps = gaussian_eps()
    a = ddim_sample(eps, NOISE[:8], jax.random.key(3), SCHEDULE, 10, eta=1.0)
    b = ddim_sample(eps, NOISE[:8], jax.random.key(3), SCHEDULE, 10, eta=1.0)
    c = ddim_sample(eps, NOISE[:8], jax.random.key(4), SCHEDULE, 10, eta=1.0)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert np.abs(np.asarray(a) - np.asarray(c)).max() > 1e-3


def test_classifier_free_guidance_extrapolates_the_condition():
    cond, uncond = gaussian_eps(mu=1.0), gaussian_eps(mu=0.0)
    z, t = NOISE[:4], jnp.full((4,), 500)
    guided = classifier_free_guidance(cond, uncond, 1.75)(z, t)
    np.testing.assert_allclose(np.asarray(guided), np.asarray(2.75 * cond(z, t) - 1.75 * uncond(z, t)), rtol=1e-5)
    assert classifier_free_guidance(cond, uncond, 0.0) is cond


def test_loss_guidance_with_self_recurrence_pulls_samples_to_the_target():
    target = 2.5

    def loss(x0):
        return jnp.mean(jnp.square(x0 - target)) * x0.shape[0]

    plain = ddim_sample(gaussian_eps(), NOISE, jax.random.key(5), SCHEDULE, 20)
    guided = ddim_sample(gaussian_eps(), NOISE, jax.random.key(5), SCHEDULE, 20,
                         guidance_loss=loss, guidance_scale=20.0, self_recurrence=2)
    assert float(jnp.mean(guided)) > float(jnp.mean(plain)) + 0.1
    assert np.all(np.isfinite(np.asarray(guided)))
