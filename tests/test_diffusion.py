"""Samplers against the closed-form optimal denoiser of Gaussian data: for x ~ N(μ, s²) the
ideal ε-predictor is E[ε | z_t] = √(1-ᾱ)(z_t − √ᾱ μ) / (ᾱ s² + 1 − ᾱ), and a deterministic
sampler must turn N(0, 1) noise into N(μ, s²)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gid_jax.diffusion import (NoiseSchedule, classifier_free_guidance, consistency_sample,
                               consistency_steps, ddim_sample, dpm_solver_pp_sample,
                               multistep_coefficients, unipc_sample)

MU, S = 1.5, 0.3
SCHEDULE = NoiseSchedule.create()


def gaussian_eps(mu=MU, s=S, schedule=SCHEDULE):
    abar_table = jnp.asarray(schedule.alphas_cumprod)

    def eps_fn(z, t):
        abar = abar_table[t].reshape((-1,) + (1,) * (z.ndim - 1))
        return jnp.sqrt(1 - abar) * (z - jnp.sqrt(abar) * mu) / (abar * s**2 + 1 - abar)

    return eps_fn


NOISE = jax.random.normal(jax.random.key(0), (256, 2, 2, 1))


def exact_sample(noise, mu=MU, s=S, schedule=SCHEDULE):
    """The probability-flow ODE of Gaussian data keeps (z_t − m_t)/√v_t fixed (m_t = √ᾱ μ,
    v_t = ᾱ s² + 1 − ᾱ): transport the noise to the last step, then take E[x | z_0]."""
    abar = schedule.alphas_cumprod
    var = lambda a: a * s**2 + 1 - a  # noqa: E731
    z0 = np.sqrt(abar[0]) * mu + np.sqrt(var(abar[0])) * (np.asarray(noise) - np.sqrt(abar[-1]) * mu) / np.sqrt(var(abar[-1]))
    return mu + np.sqrt(abar[0]) * s**2 * (z0 - np.sqrt(abar[0]) * mu) / var(abar[0])


def test_schedule_is_square_linear():
    betas = 1 - SCHEDULE.alphas_cumprod / np.concatenate([[1.0], SCHEDULE.alphas_cumprod[:-1]])
    np.testing.assert_allclose(np.sqrt(betas), np.linspace(0.0015**0.5, 0.0195**0.5, 1000), rtol=1e-9)
    assert list(SCHEDULE.sampling_steps(4)) == [999, 666, 333, 0]
    with pytest.raises(ValueError, match="sampling steps"):
        SCHEDULE.sampling_steps(0)


def test_min_snr_loss_weight():
    """min(SNR, γ)/SNR from ᾱ in numpy: 1 where SNR ≤ γ (high noise), γ/SNR below it."""
    t = jnp.asarray([0, 10, 100, 400, 999])
    abar = SCHEDULE.alphas_cumprod[np.asarray(t)]
    snr = abar / (1 - abar)
    np.testing.assert_allclose(SCHEDULE.loss_weight(t, "min_snr", 5.0), np.minimum(snr, 5.0) / snr, rtol=1e-5)
    assert float(SCHEDULE.loss_weight(t, "min_snr", 5.0)[-1]) == 1.0 and snr[0] > 5.0
    np.testing.assert_array_equal(SCHEDULE.loss_weight(t, "uniform"), np.ones(5))
    with pytest.raises(ValueError, match="loss weighting"):
        SCHEDULE.loss_weight(t, "snr")


def test_sampling_grids():
    lam = SCHEDULE.log_snr
    for grid in ("uniform", "quadratic", "logsnr"):
        for n in (2, 10, 50, 1000):
            steps = SCHEDULE.sampling_steps(n, grid)
            assert len(steps) == n and steps[0] == 999 and steps[-1] == 0
            assert np.all(np.diff(steps) < 0), (grid, n)
    # log-SNR grid: equal λ steps up to rounding to integer t ...
    h = np.diff(lam[SCHEDULE.sampling_steps(10, "logsnr")])
    np.testing.assert_allclose(h, (lam[0] - lam[-1]) / 9, rtol=0.1)
    # ... and a long one ends in consecutive steps, λ(0) − λ(1) = 0.35 being unresolvable
    assert list(SCHEDULE.sampling_steps(100, "logsnr")[-8:]) == [7, 6, 5, 4, 3, 2, 1, 0]
    assert list(SCHEDULE.sampling_steps(5, "quadratic")) == [999, 562, 250, 62, 0]
    with pytest.raises(ValueError, match="sampling grid"):
        SCHEDULE.sampling_steps(10, "cosine")


def test_ddim_is_first_order_and_dpm_solver_second_order():
    truth = exact_sample(NOISE)
    ddim_err, dpm_err = [], []
    for n in (80, 160, 320):
        ddim = ddim_sample(gaussian_eps(), NOISE, jax.random.key(1), SCHEDULE, n)
        dpm = dpm_solver_pp_sample(gaussian_eps(), NOISE, SCHEDULE, n, grid="uniform")
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


# -- few-step multistep solvers ----------------------------------------------------------------

def rms_error(sample, truth):
    return float(np.sqrt(np.mean(np.square(np.asarray(sample, np.float64) - truth))))


def test_multistep_weights_integrate_polynomials_exactly():
    # Order-p predictor (p nodes, order 3) and corrector (p + 1 nodes) steps are exponential
    # integrals of the interpolating polynomial: exact when x̂0(λ) is a polynomial of lower degree.
    steps = SCHEDULE.sampling_steps(12, "logsnr")
    lam, abar = SCHEDULE.log_snr[steps], SCHEDULE.alphas_cumprod[steps]
    alpha, sigma = np.sqrt(abar), np.sqrt(1 - abar)
    nodes, gauss = np.polynomial.legendre.leggauss(40)

    def integral(poly, i):   # ∫_{λ_i}^{λ_i+1} e^{λ-λ_i+1} poly(λ) dλ
        h = lam[i + 1] - lam[i]
        x = lam[i] + 0.5 * (nodes + 1) * h
        return 0.5 * h * np.sum(gauss * np.exp(x - lam[i + 1]) * poly(x))

    for order in (1, 2, 3):
        coef = multistep_coefficients(SCHEDULE, steps, order, corrector=True)
        below, at = (np.polynomial.Polynomial(np.arange(1.0, d + 2)) for d in (order - 1, order))
        for i in range(order, len(steps) - 1):
            hist = lam[i::-1][:order]
            if order != 2:   # 2M is Lu et al.'s damped form, exact for constants only
                assert coef["weights"][i, :order] @ below(hist) == pytest.approx(
                    alpha[i + 1] * integral(below, i), rel=1e-9)
            assert coef["ratio"][i] == pytest.approx(sigma[i + 1] / sigma[i])
            assert coef["c_weights"][i + 1] @ at(np.concatenate([[lam[i + 1]], hist])) == (
                pytest.approx(alpha[i + 1] * integral(at, i), rel=1e-9))
            assert coef["c_ratio"][i + 1] == pytest.approx(sigma[i + 1] / sigma[i])
        assert coef["ratio"][-1] == 0 and list(coef["weights"][-1]) == [1.0] + [0.0] * order
        assert coef["c_ratio"][0] == 1 and not coef["c_weights"][0].any()


def test_convergence_orders_on_a_log_snr_linear_schedule():
    # λ linear in t makes the 41-, 81- and 161-step grids nested and exactly λ-uniform, so the
    # error ratio on doubling the steps is 2^order (float64: the 4th order reaches 1e-7).
    lam = np.linspace(SCHEDULE.log_snr[0], SCHEDULE.log_snr[-1], 961)
    schedule = NoiseSchedule(1.0 / (1.0 + np.exp(-2.0 * lam)))
    with jax.enable_x64(True):
        noise = jnp.asarray(NOISE, jnp.float64)
        truth, eps = exact_sample(noise, schedule=schedule), gaussian_eps(schedule=schedule)
        solvers = {"2M": (lambda n: dpm_solver_pp_sample(eps, noise, schedule, n), 3.5, 4.6),
                   "3M": (lambda n: dpm_solver_pp_sample(eps, noise, schedule, n, 3), 7.0, 25),
                   "UniPC-2": (lambda n: unipc_sample(eps, noise, schedule, n, 2), 7.0, 9.0),
                   "UniPC-3": (lambda n: unipc_sample(eps, noise, schedule, n, 3), 11.0, 20)}
        for name, (solve, low, high) in solvers.items():
            errors = [rms_error(solve(n), truth) for n in (41, 81, 161)]
            # measured 3.9/4.0, 11.5/10.1, 8.0/8.0, 13.4/14.9
            assert all(low < a / b < high for a, b in zip(errors, errors[1:])), (name, errors)


def guided_reference(noise, weight, steps=2000):
    """RK4 in λ of dz/dλ = σ² z − σ ε̂(z) for classifier-free guided Gaussian denoisers (linear
    in z, no closed form needed), from t = N-1 to t = 0, then x̂0 there."""
    cond = lambda z, a: np.sqrt(1 - a) * (z - np.sqrt(a)) / (a * 0.09 + 1 - a)    # noqa: E731
    uncond = lambda z, a: np.sqrt(1 - a) * z                                        # noqa: E731
    eps = lambda z, a: (1 + weight) * cond(z, a) - weight * uncond(z, a)          # noqa: E731
    grid = np.linspace(SCHEDULE.log_snr[-1], SCHEDULE.log_snr[0], steps + 1)
    z = np.asarray(noise, np.float64)

    def f(z, lam):
        a = 1.0 / (1.0 + np.exp(-2.0 * lam))
        return (1 - a) * z - np.sqrt(1 - a) * eps(z, a)

    for lo, hi in zip(grid[:-1], grid[1:]):
        h = hi - lo
        k1 = f(z, lo)
        k2 = f(z + h / 2 * k1, lo + h / 2)
        k3 = f(z + h / 2 * k2, lo + h / 2)
        z = z + h / 6 * (k1 + 2 * k2 + 2 * k3 + f(z + h * k3, hi))
    a = SCHEDULE.alphas_cumprod[0]
    return (z - np.sqrt(1 - a) * eps(z, a)) / np.sqrt(a)


def test_few_step_solvers_match_ddim_250():
    # RMS error against the exact map (measured, float32; DDIM-250 ≈ 8e-3 in all three cases):
    # s = 0.3: 2M 2.5e-3 (10 steps) 2.4e-3 (20), UniPC-3 3.1e-4 (20); s = 1: UniPC-3 1.1e-4,
    # 3M 1.5e-3 (20); guided (w = 1.75, DDIM-250 1.2e-2): UniPC-3 2.7e-3 (20).
    def ddim250(eps):
        return ddim_sample(eps, NOISE, jax.random.key(1), SCHEDULE, 250)

    truth, eps = exact_sample(NOISE), gaussian_eps()
    reference = rms_error(ddim250(eps), truth)
    for n in (10, 20):
        assert rms_error(dpm_solver_pp_sample(eps, NOISE, SCHEDULE, n), truth) < reference / 2
    assert rms_error(unipc_sample(eps, NOISE, SCHEDULE, 20), truth) < reference / 10

    truth, eps = exact_sample(NOISE, s=1.0), gaussian_eps(s=1.0)     # unit-variance latents
    reference = rms_error(ddim250(eps), truth)
    assert rms_error(unipc_sample(eps, NOISE, SCHEDULE, 20), truth) < reference / 10
    assert rms_error(dpm_solver_pp_sample(eps, NOISE, SCHEDULE, 20, 3), truth) < reference / 2

    eps = classifier_free_guidance(gaussian_eps(mu=1.0), gaussian_eps(mu=0.0, s=1.0), 1.75)
    truth = guided_reference(NOISE, 1.75)
    reference = rms_error(ddim250(eps), truth)
    assert rms_error(unipc_sample(eps, NOISE, SCHEDULE, 20), truth) < reference / 2


def test_solver_arguments_are_checked():
    with pytest.raises(ValueError, match="order"):
        dpm_solver_pp_sample(gaussian_eps(), NOISE, SCHEDULE, 10, order=4)
    with pytest.raises(ValueError, match="sampling grid"):
        unipc_sample(gaussian_eps(), NOISE, SCHEDULE, 10, grid="karras")


def test_consistency_sampler_with_the_exact_consistency_function():
    """For Gaussian data the probability-flow ODE keeps (z_t − √ᾱ μ)/√v_t fixed, so its exact
    consistency function is f(z, t) = μ + s (z_t − √ᾱ μ)/√v_t. Given as an ε-model, 1, 2 and 4
    consistency steps must all return samples of N(μ, s²) (4096 draws: 4 standard errors)."""
    abar_table = jnp.asarray(SCHEDULE.alphas_cumprod)

    def eps_fn(z, t):
        abar = abar_table[t].reshape((-1,) + (1,) * (z.ndim - 1))
        f = MU + S * (z - jnp.sqrt(abar) * MU) / jnp.sqrt(abar * S**2 + 1 - abar)
        return (z - jnp.sqrt(abar) * f) / jnp.sqrt(1 - abar)

    noise = jax.random.normal(jax.random.key(3), (4096, 1, 1, 1))
    for n in (1, 2, 4):
        x = np.asarray(consistency_sample(eps_fn, noise, jax.random.key(n), SCHEDULE, n)).ravel()
        assert abs(x.mean() - MU) < 4 * S / 64 and abs(x.std() - S) < 4 * S / np.sqrt(2 * 4096), (n, x.mean(), x.std())
    assert list(consistency_steps(SCHEDULE, 4)) == [999, 749, 500, 250]
    assert list(consistency_steps(SCHEDULE, 1)) == [999]
    with pytest.raises(ValueError, match="consistency step"):
        consistency_steps(SCHEDULE, 0)


def test_v_prediction_objective_and_its_epsilon():
    """v = √ᾱ ε − √(1−ᾱ) x0 (independent numpy algebra): the weighted ε-MSE of a v-network
    is its v-MSE, and its ε̂ gives back x̂0 = √ᾱ z − √(1−ᾱ) v̂."""
    from flax import nnx

    from gid_jax.config import load_config
    from gid_jax.diffusion.samplers import predict_x0
    from gid_jax.models.unet import MotionDenoiser

    rng = np.random.default_rng(0)
    t = np.array([0, 300, 700, 999])
    abar = SCHEDULE.alphas_cumprod[t][:, None]
    x0, eps, x0_hat = (rng.normal(size=(4, 6)) for _ in range(3))
    z = np.sqrt(abar) * x0 + np.sqrt(1 - abar) * eps
    eps_hat = (z - np.sqrt(abar) * x0_hat) / np.sqrt(1 - abar)        # one prediction, as ε̂ and as v̂
    v, v_hat = (np.sqrt(abar) * e - np.sqrt(1 - abar) * x for e, x in ((eps, x0), (eps_hat, x0_hat)))
    weight = np.asarray(SCHEDULE.loss_weight(jnp.asarray(t), "uniform", prediction="v"))
    np.testing.assert_allclose(weight * np.mean((eps - eps_hat) ** 2, 1), np.mean((v - v_hat) ** 2, 1),
                               rtol=1e-4)
    np.testing.assert_allclose(SCHEDULE.loss_weight(jnp.asarray(t), "min_snr", prediction="v"),
                               SCHEDULE.loss_weight(jnp.asarray(t), "min_snr"), rtol=1e-6)

    cfg = load_config("configs/ldm.py:tiny").model
    net = MotionDenoiser.from_config(cfg, prediction="v", alpha_bar=SCHEDULE.alphas_cumprod,
                                     rngs=nnx.Rngs(0))
    kernel = net.unet.conv_out.kernel                  # zero-initialised: make the output non-zero
    kernel.value = jax.random.normal(jax.random.key(2), kernel.value.shape) * 0.1
    z = jax.random.normal(jax.random.key(1), (4, 8, 6, cfg.vae.latent_channels))   # for a 16x12 image
    features = net.encode_image(jnp.zeros((4, 16, 12, 3)))
    raw = np.asarray(net.unet(z, jnp.asarray(t), None, features))
    assert np.abs(raw).mean() > 0.01
    x0_from_eps = np.asarray(predict_x0(z, net.eps(z, jnp.asarray(t), features), abar[:, :, None, None]))
    a = abar[:, :, None, None]
    np.testing.assert_allclose(x0_from_eps, np.sqrt(a) * np.asarray(z) - np.sqrt(1 - a) * raw, atol=1e-4)
    with pytest.raises(ValueError, match="prediction must be one of"):
        MotionDenoiser.from_config(cfg, prediction="x0", rngs=nnx.Rngs(0))
