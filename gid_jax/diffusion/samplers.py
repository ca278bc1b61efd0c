"""Samplers for ε-prediction diffusion: DDIM (with optional loss guidance and self-recurrence)
and DPM-Solver++(2M). Each runs as one `lax.scan` over the sampling steps, so a sampler compiles
once per shape; the denoiser is any `eps_fn(z, t) -> ε` (classifier-free guidance is composed
into it with `classifier_free_guidance`).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from gid_jax.diffusion.schedule import NoiseSchedule

EpsFn = Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]


def classifier_free_guidance(eps_cond_fn: EpsFn, eps_uncond_fn: EpsFn, weight: float) -> EpsFn:
    """ε̂ = (1 + w) ε(z; c) − w ε(z; ∅)  (PAPER.md 7.2, Eq. 5). w = 0 is plain conditional."""
    if weight == 0:
        return eps_cond_fn

    def eps_fn(z, t):
        return (1.0 + weight) * eps_cond_fn(z, t) - weight * eps_uncond_fn(z, t)

    return eps_fn


def _alphas(schedule: NoiseSchedule, steps, dtype=jnp.float32):
    """ᾱ at `steps` (int array), with step −1 meaning the clean end point (ᾱ = 1)."""
    table = jnp.asarray(list(schedule.alphas_cumprod) + [1.0], dtype)
    return table[jnp.where(steps < 0, schedule.num_steps, steps)]


def predict_x0(z, eps, abar):
    return (z - jnp.sqrt(1.0 - abar) * eps) / jnp.sqrt(abar)


def ddim_sample(eps_fn: EpsFn, noise: jnp.ndarray, key: jax.Array, schedule: NoiseSchedule,
                num_steps: int, eta: float = 0.0,
                guidance_loss: Callable[[jnp.ndarray], jnp.ndarray] | None = None,
                guidance_scale: float = 0.0, self_recurrence: int = 1) -> jnp.ndarray:
    """DDIM (Song et al. 2021) from `noise` (the initial z_N) to a clean sample.

    With `guidance_loss` (a scalar function of the predicted clean sample x̂0), each step adds
    u·σ_t·∇_z L(x̂0(z)) to ε̂ (universal "forward" guidance, PAPER.md 7.2), differentiating
    through the denoiser with rematerialisation; `self_recurrence` > 1 repeats each step after
    re-noising z_{t-1} back to z_t with fresh noise (universal guidance self-recurrence).
    """
    steps = jnp.asarray(schedule.sampling_steps(num_steps))
    prev_steps = jnp.concatenate([steps[1:], jnp.array([-1], steps.dtype)])
    batch = noise.shape[0]
    denoiser = jax.checkpoint(eps_fn)

    def guided_eps(z, t_vec, abar):
        if guidance_loss is None or guidance_scale == 0.0:
            return eps_fn(z, t_vec)

        def loss_with_eps(z_):
            eps = denoiser(z_, t_vec)
            return guidance_loss(predict_x0(z_, eps, abar)), eps

        grad, eps = jax.grad(loss_with_eps, has_aux=True)(z)
        return eps + guidance_scale * jnp.sqrt(1.0 - abar) * grad

    def one_step(z, t, t_prev, key):
        abar, abar_prev = _alphas(schedule, t, z.dtype), _alphas(schedule, t_prev, z.dtype)
        eps = guided_eps(z, jnp.full((batch,), t, jnp.int32), abar)
        x0 = predict_x0(z, eps, abar)
        sigma = eta * jnp.sqrt((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev))
        direction = jnp.sqrt(jnp.maximum(1.0 - abar_prev - sigma**2, 0.0)) * eps
        return jnp.sqrt(abar_prev) * x0 + direction + sigma * jax.random.normal(key, z.shape, z.dtype)

    def scan_body(z, inputs):
        t, t_prev, key = inputs
        abar, abar_prev = _alphas(schedule, t, z.dtype), _alphas(schedule, t_prev, z.dtype)
        step_key, renoise_key = jax.random.split(key)

        def recurrence(r, z_t):   # re-noise z_{t-1} → z_t and repeat the step (one traced copy)
            z_prev = one_step(z_t, t, t_prev, jax.random.fold_in(step_key, r))
            ratio = abar / abar_prev
            noise = jax.random.normal(jax.random.fold_in(renoise_key, r), z.shape, z.dtype)
            return jnp.sqrt(ratio) * z_prev + jnp.sqrt(1.0 - ratio) * noise

        z = jax.lax.fori_loop(0, self_recurrence - 1, recurrence, z)
        return one_step(z, t, t_prev, jax.random.fold_in(step_key, self_recurrence - 1)), None

    keys = jax.random.split(key, len(steps))
    z, _ = jax.lax.scan(scan_body, noise, (steps, prev_steps, keys))
    return z


def dpm_solver_pp_sample(eps_fn: EpsFn, noise: jnp.ndarray, schedule: NoiseSchedule,
                         num_steps: int) -> jnp.ndarray:
    """DPM-Solver++(2M) (Lu et al. 2022): a second-order multistep solver of the probability-flow
    ODE in data-prediction form; reaches DDIM-250 quality in far fewer steps."""
    steps = jnp.asarray(schedule.sampling_steps(num_steps))
    prev_steps = jnp.concatenate([steps[1:], jnp.array([-1], steps.dtype)])
    batch = noise.shape[0]

    def lam(abar):  # log(α/σ); finite clean end point handled by the caller
        return 0.5 * (jnp.log(abar) - jnp.log1p(-abar))

    def body(carry, inputs):
        z, x0_prev, h_prev, index = carry
        t, t_prev = inputs
        abar, abar_next = _alphas(schedule, t, z.dtype), _alphas(schedule, t_prev, z.dtype)
        x0 = predict_x0(z, eps_fn(z, jnp.full((batch,), t, jnp.int32)), abar)
        last = t_prev < 0
        safe_next = jnp.where(last, abar, abar_next)          # avoid log(0) on the last step
        h = lam(safe_next) - lam(abar)
        r = h_prev / jnp.where(h == 0, 1.0, h)
        second_order = (1.0 + 0.5 / r) * x0 - (0.5 / r) * x0_prev
        d = jnp.where(index == 0, x0, second_order)
        sigma, sigma_next = jnp.sqrt(1.0 - abar), jnp.sqrt(1.0 - safe_next)
        z_next = sigma_next / sigma * z - jnp.sqrt(safe_next) * jnp.expm1(-h) * d
        z_next = jnp.where(last, x0, z_next)                   # final step: the clean estimate
        return (z_next, x0, h, index + 1), None

    init = (noise, jnp.zeros_like(noise), jnp.ones((), noise.dtype), jnp.int32(0))
    (z, *_), _ = jax.lax.scan(body, init, (steps, prev_steps))
    return z
