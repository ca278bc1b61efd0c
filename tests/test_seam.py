"""`motion.seam_ratios` against videos with known seams: exact periods (seamless), truncated
periods (a jump at the wrap) and motion held still at the ends (a pause)."""

import jax.numpy as jnp
import numpy as np
import pytest

from gid_jax import motion

H = W = 24
N = 60


def sinusoids(rng, cycles, num_frames=N):
    """Σ_c a/c · sin(2π c n/N + φ) with per-pixel, per-axis random a ∈ [0.5, 1.5] and phase φ."""
    n = np.arange(num_frames)[:, None, None, None]
    out = np.zeros((num_frames, H, W, 2))
    for c in cycles:
        amp, phase = rng.uniform(0.5, 1.5, (H, W, 2)), rng.uniform(0, 2 * np.pi, (H, W, 2))
        out += amp / c * np.sin(2 * np.pi * c * n / num_frames + phase)
    return out


def decaying_spectral_volume(rng, num_freqs=16):
    """Random spectral volume, amplitudes ∝ 1/(1+k)² like natural motion (low bins dominate)."""
    k = np.arange(num_freqs)[:, None, None, None]
    return (rng.normal(size=(num_freqs, H, W, 4)) / (1 + k) ** 2).astype(np.float32)


def test_periodic_signal_is_seamless():
    seam = motion.seam_ratios(sinusoids(np.random.default_rng(0), [1, 2, 3]))
    assert 0.8 < seam["step_ratio"] < 1.25 and 0.8 < seam["accel_ratio"] < 1.25, seam
    assert seam["moving_pixels"] == H * W
    assert seam["wrap_step"] == pytest.approx(seam["clip_step"], rel=0.25)


def test_truncated_period_is_a_jump():
    seam = motion.seam_ratios(sinusoids(np.random.default_rng(1), [1.5, 2.3]))
    assert seam["step_ratio"] > 3 and seam["accel_ratio"] > 3, seam        # measured 10, 51


def test_motion_held_still_at_the_ends_is_a_pause():
    window = np.sin(np.pi * np.arange(N) / (N - 1))[:, None, None, None] ** 2   # 0 at both ends
    seam = motion.seam_ratios(sinusoids(np.random.default_rng(2), [1, 2, 3]) * window)
    assert seam["step_ratio"] < 0.3, seam


def test_spectral_volume_loops_over_its_own_period_only():
    sv = decaying_spectral_volume(np.random.default_rng(3))
    period = 30
    whole = motion.seam_ratios(motion.to_trajectories(sv, period, period=period))
    assert 0.8 < whole["step_ratio"] < 1.25 and 0.8 < whole["accel_ratio"] < 1.25, whole
    twice = motion.seam_ratios(motion.to_trajectories(sv, 2 * period, period=period))
    assert twice["step_ratio"] == pytest.approx(whole["step_ratio"], rel=1e-3)
    jump = motion.seam_ratios(motion.to_trajectories(sv, 45, period=period))    # 1.5 periods
    assert jump["step_ratio"] > 3, jump
    # frames 0..T: the last frame repeats the first, what F[T-1] = F[0] guidance aims for
    held = motion.seam_ratios(motion.to_trajectories(sv, period + 1, period=period))
    assert held["step_ratio"] < 1e-3, held


def test_moving_mask_and_still_pixels():
    rng = np.random.default_rng(4)
    traj = sinusoids(rng, [1.5, 2.3])
    seam = motion.seam_ratios(traj)
    still = traj.copy()
    still[:, : H // 2] *= 1e-3                    # below 5% of the largest motion: not counted
    masked = motion.seam_ratios(still)
    assert masked["moving_pixels"] == H * W // 2
    mask = np.zeros((H, W), bool)
    mask[H // 2:] = True
    explicit = motion.seam_ratios(jnp.asarray(traj, jnp.float32), moving_mask=mask)
    assert explicit["moving_pixels"] == H * W // 2
    assert explicit["step_ratio"] == pytest.approx(masked["step_ratio"], rel=1e-4)
    assert abs(np.log(masked["step_ratio"] / seam["step_ratio"])) < np.log(1.5)
    empty = motion.seam_ratios(np.zeros((N, H, W, 2)))
    assert empty["moving_pixels"] == 0 and np.isnan(empty["step_ratio"])
    with pytest.raises(ValueError, match="moving_mask"):
        motion.seam_ratios(traj, moving_mask=mask[:-1])
    with pytest.raises(ValueError, match="N>=4"):
        motion.seam_ratios(traj[:3])


# ---- closing the loop before the spectrum (motion.close_loop, the data recipe's close_loops)

def _k_bin_loop(traj, num_freqs):
    """The video a spectral volume of `traj` plays over its own period."""
    sv = motion.to_spectral_volume(traj, num_freqs)
    return np.asarray(motion.to_trajectories(sv, traj.shape[0], period=traj.shape[0]))


def test_close_loop_keeps_a_looping_trajectory_and_removes_a_drift():
    rng = np.random.default_rng(0)
    periodic = sinusoids(rng, (1, 2, 5))               # integer cycles, all inside K = 8 bins
    periodic -= periodic[:1]                           # displacements of frame 0's pixels
    np.testing.assert_allclose(motion.close_loop(periodic, 8), periodic, atol=1e-4)
    drift = rng.normal(size=(1, H, W, 2)) * np.arange(N)[:, None, None, None] / N
    np.testing.assert_allclose(motion.close_loop(periodic + 3.0 * drift, 8), periodic, atol=1e-3)


def test_close_loop_is_the_least_squares_quadratic_outside_the_kept_bins():
    """Independent reference: per pixel, numpy lstsq of the dropped-band residual on [t, t²]."""
    rng = np.random.default_rng(1)
    traj = np.cumsum(rng.normal(size=(N, 3, 4, 2)), axis=0)          # a random walk: no loop
    traj -= traj[:1]
    k = 8
    drop = lambda x: np.fft.irfft(np.where(np.arange(N // 2 + 1)[:, None] < k, 0.0,  # noqa: E731
                                           np.fft.rfft(x, axis=0)), n=N, axis=0)
    t = np.arange(N, dtype=np.float64)
    basis = drop(np.stack([t, t * t], axis=1))
    flat = traj.reshape(N, -1)
    beta = np.linalg.lstsq(basis, drop(flat), rcond=None)[0]
    want = (flat - np.stack([t, t * t], axis=1) @ beta).reshape(traj.shape)
    np.testing.assert_allclose(motion.close_loop(traj, k), want, rtol=1e-4, atol=1e-3 * np.abs(traj).max())


def test_closed_clips_loop_seamlessly_where_raw_ones_jump():
    """A clip cut mid-cycle (2.3 and 3.7 cycles) with a drift: the raw spectrum's loop jumps
    at the wrap; the closed one's wrap step and acceleration look like the clip's own."""
    rng = np.random.default_rng(2)
    n = np.arange(N)[:, None, None, None]
    traj = (np.sin(2 * np.pi * 2.3 * n / N + rng.uniform(0, 6, (1, H, W, 2)))
            + 0.5 * np.sin(2 * np.pi * 3.7 * n / N + rng.uniform(0, 6, (1, H, W, 2)))
            + rng.normal(size=(1, H, W, 2)) * n / N * 2.0)
    traj -= traj[:1]
    raw = motion.seam_ratios(_k_bin_loop(traj, 8))
    closed = motion.seam_ratios(_k_bin_loop(np.asarray(motion.close_loop(traj, 8)), 8))
    assert raw["step_ratio"] > 2.0
    assert 0.5 <= closed["step_ratio"] <= 1.5 and closed["accel_ratio"] <= 2.0, closed
    np.testing.assert_allclose(motion.to_spectral_volume(traj, 8, loop_closed=True),
                               motion.to_spectral_volume(motion.close_loop(traj, 8), 8), atol=1e-4)


def test_close_loop_needs_bins_to_drop():
    with pytest.raises(ValueError, match="num_freqs < T//2\\+1"):
        motion.close_loop(np.zeros((10, 2, 2, 2)), 6)
