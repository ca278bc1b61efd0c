"""Interactive dynamics: the spectral volume as an image-space modal basis (docs/method.md §7.3).

Each kept frequency f_k is a mode with natural frequency ω_k = 2π f_k and Rayleigh damping
γ_k = α + β ω_k². A drag-and-release at pixel p sets each complex modal coordinate q_k(0) from
the projection of the unit drag direction d onto the mode shape S_k(p) (supplement Eqs. 9-10:
|q_k(0)| = |d·S_k(p)|, phase = -phase(d·S_k(p))), i.e. q_k(0) ∝ conj(d·S_k(p)). We scale all
q_k(0) by one factor so that at release the dragged pixel is displaced by exactly the drag length
along d (our choice: the paper does not give the force scale). Then q̈ + γ q̇ + ω² q = 0 is
integrated by semi-implicit Euler (Eqs. 6-8, m = 1; with as many sub-steps per frame as
stiff damping needs to stay stable, see `stable_substeps`) and the displacement field is
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


def stable_substeps(omega, gamma, dt: float, max_substeps: int = 4096) -> int:
    """How many semi-implicit Euler sub-steps per `dt` keep every mode stable.

    One step of size h maps (q, q̇) by a matrix with determinant 1 − hγ and trace
    2 − hγ − h²ω²; both eigenvalues lie inside the unit circle iff hγ < 2 and h²ω² < 4 − 2hγ.
    Stiff damping (large β with high bands, or coarse frequency grids of short clips) needs
    h = dt/n with n > 1; the frame rate of the output is unchanged.
    """
    omega, gamma = np.asarray(omega, np.float64), np.asarray(gamma, np.float64)
    for n in range(1, max_substeps + 1):
        h = float(dt) / n
        if np.all(h * gamma < 2.0) and np.all((h * omega) ** 2 < 4.0 - 2.0 * h * gamma):
            return n
    raise ValueError(f"modal simulation: no stable step below dt/{max_substeps} for damping "
                     f"up to {gamma.max():.3g} and ω up to {omega.max():.3g} rad/s")


@functools.partial(jax.jit, static_argnames=("num_steps", "substeps"))
def integrate_modes(q0, omega, gamma, dt, num_steps: int, substeps: int = 1):
    """Semi-implicit Euler trajectories `(num_steps, K)` of q̈ + γq̇ + ω²q = 0, released at rest.

    Row n is the state at time n·dt (row 0 = q0), reached in `substeps` steps of dt/substeps;
    q may be complex (x and y share the modes).
    """
    h = dt / substeps

    def step(state, _):
        def sub(_, qv):
            q, v = qv
            v = v + h * (-gamma * v - omega**2 * q)
            return q + h * v, v

        q, v = jax.lax.fori_loop(0, substeps, sub, state)
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
    q0 = initial_modal_state(sv, point, drag)
    q = integrate_modes(q0, jnp.asarray(omega), jnp.asarray(gamma, jnp.float32),
                        jnp.float32(dt), num_steps, stable_substeps(omega, gamma, dt))
    real, imag = sv[..., :2], sv[..., 2:]
    return (jnp.einsum("nk,khwc->nhwc", q.real, real) - jnp.einsum("nk,khwc->nhwc", q.imag, imag))
