"""Interactive dynamics: the spectral volume as an image-space modal basis (PAPER.md 7.3).

Each kept frequency f_k is a mode with natural frequency ω_k = 2π f_k and Rayleigh damping
γ_k = α + β ω_k². A drag-and-release at pixel p sets each complex modal coordinate q_k(0) from
the projection of the unit drag direction d onto the mode shape S_k(p) (supplement Eqs. 9-10:
|q_k(0)| = |d·S_k(p)|, phase = -phase(d·S_k(p))), i.e. q_k(0) ∝ conj(d·S_k(p)). We scale all
q_k(0) by one factor so that at release the dragged pixel is displaced by exactly the drag length
along d (our choice: the paper does not give the force scale). Then q̈ + γ q̇ + ω² q = 0 is
integrated by semi-implicit Euler (Eqs. 6-8, m = 1) and the displacement field is
D_t(p) = Re Σ_k S_k(p) q_k(t). The DC band (ω = 0) has no restoring force and is left out.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from gid_jax.motion.spectral import NUM_FRAMES, complex_coefficients

DAMPING_ALPHA = 0.4  # Rayleigh mass damping, supplement §1 ("empirically set")
DAMPING_BETA = 0.08  # Rayleigh stiffness damping


def mode_angular_frequencies(num_freqs: int, fps: float = 30.0, period: int = NUM_FRAMES) -> np.ndarray:
    """ω_k = 2π k fps / period (rad/s): bin k of a `period`-frame clip at `fps`."""
    return (2.0 * np.pi * np.arange(num_freqs) * fps / period).astype(np.float32)


def initial_modal_state(sv, point, drag) -> jnp.ndarray:
    """Complex modal coordinates `(K,)` just after a drag by `(dx, dy)` pixels at `(x, y)` is released."""
    sv = jnp.asarray(sv)
    height, width = sv.shape[-3:-1]
    x, y = (int(round(float(c))) for c in point)
    if not (0 <= x < width and 0 <= y < height):
        raise ValueError(f"drag point {tuple(point)} lies outside the {width}x{height} image")
    drag = np.asarray(drag, np.float32)
    length = float(np.hypot(*drag))
    coeff = complex_coefficients(sv[:, y, x, :])            # (K, 2)
    if length == 0.0:
        return jnp.zeros(coeff.shape[0], jnp.complex64)
    proj = coeff @ jnp.asarray(drag / length, coeff.dtype)   # d · S_k(p), (K,)
    proj = proj.at[0].set(0.0)                                # DC band: not a mode
    energy = jnp.sum(jnp.abs(proj) ** 2)
    scale = jnp.where(energy > 0, length / jnp.where(energy > 0, energy, 1.0), 0.0)
    return (scale * jnp.conj(proj)).astype(jnp.complex64)


def check_stable(omega, gamma, dt, alpha, beta) -> None:
    """Refuse damping that makes semi-implicit Euler diverge (it would render NaN frames).

    One step maps (q, q̇) by a matrix with determinant 1 − δtγ and trace 2 − δtγ − δt²ω²; both
    eigenvalues lie inside the unit circle iff 0 <= δtγ < 2 and δt²ω² < 4 − 2δtγ.
    """
    h = float(dt)
    bad = [k for k, (w, g) in enumerate(zip(omega, gamma))
           if not (h * g < 2.0 and (h * w) ** 2 < 4.0 - 2.0 * h * g)]
    if bad:
        k = bad[0]
        raise ValueError(
            f"modal simulation is unstable at δt = {h:.4g} s: mode {k} (ω = {omega[k]:.3g} rad/s) "
            f"has damping γ = alpha + beta·ω² = {gamma[k]:.3g}, and semi-implicit Euler needs "
            f"δt·γ < 2 and δt²ω² < 4 − 2δt·γ; lower beta (now {beta:g}) or alpha (now {alpha:g}), "
            "or raise fps")


@functools.partial(jax.jit, static_argnames="num_steps")
def integrate_modes(q0, omega, gamma, dt, num_steps: int):
    """Semi-implicit Euler trajectories `(num_steps, K)` of q̈ + γq̇ + ω²q = 0, released at rest.

    Row n is the state at time n·dt (row 0 = q0); q may be complex (x and y share the modes).
    """

    def step(state, _):
        q, v = state
        v = v + dt * (-gamma * v - omega**2 * q)
        q = q + dt * v
        return (q, v), q

    _, rest = jax.lax.scan(step, (q0, jnp.zeros_like(q0)), None, length=num_steps - 1)
    return jnp.concatenate([q0[None], rest], axis=0)


def simulate_modal(sv, point, drag, num_steps: int, dt: float = 1.0 / 30.0,
                   alpha: float = DAMPING_ALPHA, beta: float = DAMPING_BETA,
                   fps: float = 30.0, period: int = NUM_FRAMES) -> jnp.ndarray:
    """Response of the scene to a drag: `(K,H,W,4)`, `(x,y)`, `(dx,dy)` → `(num_steps,H,W,2)` px.

    `fps` and `period` say which temporal frequencies the K bins of `sv` stand for.
    """
    sv = jnp.asarray(sv, jnp.float32)
    if sv.ndim != 4 or sv.shape[-1] != 4:
        raise ValueError(f"spectral volume must have shape (K, H, W, 4), got {sv.shape}")
    if num_steps < 1 or dt <= 0:
        raise ValueError(f"need num_steps >= 1 and dt > 0, got {num_steps}, {dt}")
    omega = mode_angular_frequencies(sv.shape[0], fps, period)
    gamma = alpha + beta * omega**2
    check_stable(omega, gamma, dt, alpha, beta)
    q0 = initial_modal_state(sv, point, drag)
    q = integrate_modes(q0, jnp.asarray(omega), jnp.asarray(gamma, jnp.float32),
                        jnp.float32(dt), num_steps)
    real, imag = sv[..., :2], sv[..., 2:]
    return (jnp.einsum("nk,khwc->nhwc", q.real, real) - jnp.einsum("nk,khwc->nhwc", q.imag, imag))
