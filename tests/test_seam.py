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
