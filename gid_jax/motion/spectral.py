"""Spectral volumes: per-pixel temporal Fourier coefficients of motion, and back to trajectories.

Conventions (docs/architecture.md §8.1): trajectories `(..., T, H, W, 2)` in pixels with channel 0 = x, 1 = y;
spectral volumes `(..., K, H, W, 4)` with channels `[Re x, Re y, Im x, Im y]`, the unnormalised
forward FFT over T samples (numpy's default), bins 0..K-1 (DC included).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

NUM_FRAMES = 150  # T: samples per clip (5 s at 30 fps), docs/method.md §2.2
NUM_FREQS = 16    # K: kept frequency bins, 0 .. 3.0 Hz at 30 fps, docs/method.md §2.1


def to_spectral_volume(traj: jnp.ndarray, num_freqs: int = NUM_FREQS,
                       loop_closed: bool = False) -> jnp.ndarray:
    """`(..., T, H, W, 2)` trajectories → `(..., K, H, W, 4)` spectral volume (first K rfft bins),
    of `close_loop(traj)` with `loop_closed` (what the data recipe trains on by default)."""
    traj = jnp.asarray(traj)
    if traj.ndim < 4 or traj.shape[-1] != 2:
        raise ValueError(f"trajectories must have shape (..., T, H, W, 2), got {traj.shape}")
    num_frames = traj.shape[-4]
    if not 1 <= num_freqs <= num_frames // 2 + 1:
        raise ValueError(f"num_freqs={num_freqs} must be in [1, T//2+1] for T={num_frames}")
    if loop_closed:
        traj = close_loop(traj, num_freqs)
    coeffs = jnp.fft.rfft(traj, axis=-4)[..., :num_freqs, :, :, :]
    return jnp.concatenate([coeffs.real, coeffs.imag], axis=-1).astype(jnp.float32)


def close_loop(traj: jnp.ndarray, num_freqs: int = NUM_FREQS) -> jnp.ndarray:
    """Remove the part of each pixel's trajectory that does not loop, before taking its spectrum.

    A clip's FFT describes its periodic extension, which jumps at the wrap when the clip does
    not end where it began (a gust that leaves a branch bent, an oscillation cut mid-cycle); the
    K kept bins smear that jump into a fast transition at t ≡ 0 that a model learns and every
    video then plays at its wrap. We subtract the per-pixel quadratic c(t) = a·t + b·t² (c(0) = 0,
    so frame 0 keeps its displacement) that leaves the least energy outside the K kept bins: a
    jump in position or velocity at the wrap spreads over all frequencies, the motion the
    spectrum keeps does not. A trajectory that is already periodic within the K bins is left
    exactly as it is, and a drift d·t is removed entirely. Least squares along time with one
    fixed (2, T) matrix. `(..., T, H, W, 2)` → same shape; needs K < T//2 + 1 (bins to drop).
    The paper takes the FFT of the raw trajectory (docs/method.md §2.1); closing the loop first
    is our addition, on by default in the data recipe.
    """
    f = jnp.asarray(traj, jnp.float32)
    if f.ndim < 4 or f.shape[-1] != 2:
        raise ValueError(f"trajectories must have shape (..., T, H, W, 2), got {f.shape}")
    num_frames = f.shape[-4]
    if not 1 <= num_freqs < num_frames // 2 + 1:
        raise ValueError(f"close_loop needs 1 <= num_freqs < T//2+1 (some bins to drop) for "
                         f"T={num_frames}, got num_freqs={num_freqs}")
    t = np.arange(num_frames, dtype=np.float64)
    ramps = np.stack([t, t * t], axis=1)                                   # (T, 2)
    spectrum = np.fft.rfft(ramps, axis=0)
    spectrum[:num_freqs] = 0.0
    dropped = np.fft.irfft(spectrum, n=num_frames, axis=0)                 # their dropped part
    # min ||R(f - ramps·β)||² with R the projector onto the dropped bins: β = (MᵀM)⁻¹ Mᵀ f, M = R·ramps
    solve = np.linalg.solve(dropped.T @ dropped, dropped.T)                # (2, T)
    beta = jnp.einsum("ct,...thwd->...chwd", jnp.asarray(solve, jnp.float32), f)
    return f - jnp.einsum("tc,...chwd->...thwd", jnp.asarray(ramps, jnp.float32), beta)


def fourier_basis(times, num_freqs: int, period: int = NUM_FRAMES):
    """Real synthesis basis `(len(times), K)` pair (cos, sin) for evaluating a truncated rfft.

    The inverse real DFT of bins 0..K-1 (the rest zero) at time t is
    `sum_k c_k (Re S_k cos(2πkt/N) - Im S_k sin(2πkt/N)) / N` with c_0 = 1, c_{N/2} = 1 and
    c_k = 2 otherwise: exactly `irfft` at integer t, and the continuous Fourier series in between.
    """
    times = jnp.asarray(times, jnp.float32)
    k = jnp.arange(num_freqs, dtype=jnp.float32)
    weight = jnp.where((k == 0) | (2 * k == period), 1.0, 2.0) / period
    phase = 2.0 * jnp.pi * times[:, None] * k[None, :] / period
    return weight * jnp.cos(phase), weight * jnp.sin(phase)


def to_trajectories(sv: jnp.ndarray, num_frames: int = NUM_FRAMES, times=None,
                    period: int = NUM_FRAMES) -> jnp.ndarray:
    """`(..., K, H, W, 4)` spectral volume → `(..., T, H, W, 2)` displacements.

    `times` (fractional frame indices, e.g. from `frame_times`) overrides `num_frames`; the motion
    is the Fourier series of period `period` frames (the clip length the spectrum was taken over),
    so fractional times give slow motion and times beyond `period` repeat the loop.
    """
    sv = jnp.asarray(sv)
    if sv.ndim < 4 or sv.shape[-1] != 4:
        raise ValueError(f"spectral volume must have shape (..., K, H, W, 4), got {sv.shape}")
    if times is None:
        times = jnp.arange(num_frames)
    cos, sin = fourier_basis(times, sv.shape[-4], period)
    cos, sin = cos.astype(sv.dtype), sin.astype(sv.dtype)
    real, imag = sv[..., :2], sv[..., 2:]
    return (jnp.einsum("tk,...khwc->...thwc", cos, real)
            - jnp.einsum("tk,...khwc->...thwc", sin, imag))


def frame_times(num_frames: int, speed: float = 1.0, start: float = 0.0) -> np.ndarray:
    """Frame indices at which to evaluate the motion: `speed=0.5` plays it twice as slowly."""
    if num_frames < 1 or speed <= 0:
        raise ValueError(f"need num_frames >= 1 and speed > 0, got {num_frames}, {speed}")
    return (start + speed * np.arange(num_frames)).astype(np.float32)


def scale_amplitude(sv: jnp.ndarray, factor: float) -> jnp.ndarray:
    """Motion magnification (factor > 1) or minification (< 1): every displacement scales by factor."""
    return sv * factor


def complex_coefficients(sv: jnp.ndarray) -> jnp.ndarray:
    """`(..., K, H, W, 4)` → complex `(..., K, H, W, 2)` coefficients of (x, y)."""
    sv = jnp.asarray(sv)
    return sv[..., :2] + 1j * sv[..., 2:]


def amplitude(sv: jnp.ndarray) -> jnp.ndarray:
    """Per-frequency motion amplitude `(..., K, H, W)`: the 2D complex vector norm at each pixel."""
    return jnp.sqrt(jnp.sum(jnp.square(sv), axis=-1))
