"""Motion mathematics against independent references: numpy FFTs, closed-form sums of
sinusoids, exact percentiles and the closed-form damped oscillator."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gid_jax import motion

T, K = 150, 16


def random_traj(rng, shape=(T, 6, 5), num_freqs=None):
    """Random real trajectories; band-limited to `num_freqs` bins if given (F[0] not forced 0)."""
    traj = rng.normal(size=shape + (2,)).astype(np.float64)
    if num_freqs is not None:
        spec = np.fft.rfft(traj, axis=0)
        spec[num_freqs:] = 0
        traj = np.fft.irfft(spec, n=shape[0], axis=0)
    return traj.astype(np.float32)


# -- spectral volume ------------------------------------------------------------------------

def test_spectral_volume_matches_numpy_rfft_batched():
    rng = np.random.default_rng(0)
    traj = np.stack([random_traj(rng), random_traj(rng)])            # (2, T, H, W, 2)
    sv = np.asarray(jax.jit(motion.to_spectral_volume)(traj))
    ref = np.fft.rfft(traj.astype(np.float64), axis=1)[:, :K]          # (2, K, H, W, 2)
    assert sv.shape == (2, K, 6, 5, 4) and sv.dtype == np.float32
    np.testing.assert_allclose(sv[..., :2], ref.real, atol=1e-3)
    np.testing.assert_allclose(sv[..., 2:], ref.imag, atol=1e-3)


def test_on_bin_sinusoid_has_closed_form_coefficient():
    # x(t) = A cos(2π k0 t / T + φ)  ⇒  S_k0 = A T / 2 · e^{iφ}, every other bin 0.
    amp, k0, phi = 1.0, 3, 0.7
    t = np.arange(T)
    traj = np.zeros((T, 1, 1, 2), np.float32)
    traj[:, 0, 0, 0] = amp * np.cos(2 * np.pi * k0 * t / T + phi)
    sv = np.asarray(motion.to_spectral_volume(traj))[:, 0, 0]
    expected = amp * T / 2 * np.exp(1j * phi)                           # |S| = 75 px (docs/method.md §2.2)
    np.testing.assert_allclose(sv[k0, 0] + 1j * sv[k0, 2], expected, atol=1e-3)
    others = np.delete(sv, k0, axis=0)
    assert np.abs(others).max() < 1e-3


def test_off_bin_sinusoid_matches_geometric_sum_leakage():
    # x(t) = Re e^{2πi f t/T} at f = 2.37 bins leaks into every bin; the DFT is a geometric sum.
    f = 2.37
    t = np.arange(T)
    traj = np.zeros((T, 1, 1, 2), np.float32)
    traj[:, 0, 0, 1] = np.cos(2 * np.pi * f * t / T)
    sv = np.asarray(motion.to_spectral_volume(traj))[:, 0, 0]

    def geometric(delta):  # Σ_t e^{2πi δ t/T}
        return (1 - np.exp(2j * np.pi * delta)) / (1 - np.exp(2j * np.pi * delta / T))

    k = np.arange(K)
    expected = 0.5 * (geometric(f - k) + geometric(-f - k))
    np.testing.assert_allclose(sv[:, 1] + 1j * sv[:, 3], expected, atol=2e-3)


def test_band_limited_round_trip_is_exact():
    rng = np.random.default_rng(1)
    traj = random_traj(rng, num_freqs=K)
    back = motion.to_trajectories(motion.to_spectral_volume(traj), num_frames=T)
    np.testing.assert_allclose(np.asarray(back), traj, atol=1e-4)


def test_to_trajectories_equals_numpy_irfft_of_padded_spectrum():
    rng = np.random.default_rng(2)
    sv = rng.normal(size=(3, K, 4, 3, 4)).astype(np.float32) * 10
    spec = np.zeros((3, T // 2 + 1, 4, 3, 2), complex)
    spec[:, :K] = sv[..., :2] + 1j * sv[..., 2:]
    ref = np.fft.irfft(spec, n=T, axis=1)
    out = np.asarray(motion.to_trajectories(sv))
    assert out.shape == (3, T, 4, 3, 2)
    np.testing.assert_allclose(out, ref, atol=1e-4)


def test_fractional_times_evaluate_the_continuous_fourier_series():
    # A sum of on-bin sinusoids is its own Fourier series: evaluate at t = 10.25, 77.5, ...
    t_frac = np.array([0.5, 10.25, 77.5, 149.9, 160.0])
    comps = [(1.5, 1, 0.3), (0.4, 7, -1.1), (0.2, 15, 2.0)]

    def signal(t):
        return sum(a * np.cos(2 * np.pi * k * t / T + p) for a, k, p in comps)

    traj = np.zeros((T, 1, 1, 2), np.float32)
    traj[:, 0, 0, 0] = signal(np.arange(T))
    traj[:, 0, 0, 1] = -2 * signal(np.arange(T))
    sv = motion.to_spectral_volume(traj)
    out = np.asarray(motion.to_trajectories(sv, times=t_frac))[:, 0, 0]
    np.testing.assert_allclose(out[:, 0], signal(t_frac), atol=1e-4)
    np.testing.assert_allclose(out[:, 1], -2 * signal(t_frac), atol=1e-4)


def test_slow_motion_and_magnification():
    rng = np.random.default_rng(3)
    sv = rng.normal(size=(K, 4, 4, 4)).astype(np.float32)
    normal = np.asarray(motion.to_trajectories(sv, num_frames=T))
    slow = np.asarray(motion.to_trajectories(sv, times=motion.frame_times(2 * T, speed=0.5)))
    np.testing.assert_allclose(slow[::2], normal, atol=1e-4)           # every other frame: the original
    np.testing.assert_allclose(slow[1::2][:-1], np.asarray(           # in between: half-integer times
        motion.to_trajectories(sv, times=np.arange(T - 1) + 0.5)), atol=1e-5)
    magnified = np.asarray(motion.to_trajectories(motion.scale_amplitude(sv, 2.0)))
    np.testing.assert_allclose(magnified, 2 * normal, atol=1e-4)


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match=r"\(\.\.\., T, H, W, 2\)"):
        motion.to_spectral_volume(np.zeros((T, 4, 4, 3)))
    with pytest.raises(ValueError, match="num_freqs"):
        motion.to_spectral_volume(np.zeros((10, 4, 4, 2)), num_freqs=7)
    with pytest.raises(ValueError, match=r"\(\.\.\., K, H, W, 4\)"):
        motion.to_trajectories(np.zeros((K, 4, 4, 2)))


# -- frequency adaptive normalisation --------------------------------------------------------

def heavy_tailed_svs(rng, n=6):
    """Spectral volumes whose scale decays with frequency, like natural motion (docs/method.md §2.1)."""
    decay = (80.0 * np.exp(-0.3 * np.arange(K)))[None, :, None, None, None]
    return (rng.standard_t(3, size=(n, K, 10, 8, 4)) * decay).astype(np.float32)


@pytest.mark.parametrize("magnitude", ["component", "complex"])
def test_streaming_percentile_matches_exact_percentile(magnitude):
    rng = np.random.default_rng(4)
    svs = heavy_tailed_svs(rng, n=12)
    norm = motion.FrequencyNormalizer(K, percentile=95.0, magnitude=magnitude)
    for chunk in np.array_split(svs, 5):                    # streamed in uneven chunks
        norm.update(chunk)
    mags = np.abs(svs) if magnitude == "component" else np.hypot(svs[..., :2], svs[..., 2:])
    exact = np.percentile(np.moveaxis(mags, 1, 0).reshape(K, -1), 95.0, axis=1)
    # One log bin is 0.58% wide and the estimate interpolates inside it; order statistics of
    # ~1-4k samples per frequency differ from the interpolated percentile by well under that.
    np.testing.assert_allclose(norm.scales, exact, rtol=6e-3)
    assert norm.num_examples == 12


def test_merge_equals_single_pass_and_json_round_trip(tmp_path):
    rng = np.random.default_rng(5)
    a, b = heavy_tailed_svs(rng), heavy_tailed_svs(rng)
    whole = motion.FrequencyNormalizer(K).update(np.concatenate([a, b]))
    merged = motion.FrequencyNormalizer(K).update(a).merge(motion.FrequencyNormalizer(K).update(b))
    np.testing.assert_array_equal(whole.counts, merged.counts)
    np.testing.assert_array_equal(whole.scales, merged.scales)
    path = whole.save(tmp_path / "stats.json")
    loaded = motion.FrequencyNormalizer.load(path)
    np.testing.assert_array_equal(loaded.scales, whole.scales)
    np.testing.assert_array_equal(loaded.counts, whole.counts)
    assert loaded.update(a).num_examples == whole.num_examples + len(a)   # statistics can continue


def test_normalise_is_sign_sqrt_and_inverse_is_exact():
    rng = np.random.default_rng(6)
    svs = heavy_tailed_svs(rng)
    norm = motion.FrequencyNormalizer(K).update(svs)
    s = norm.scales.astype(np.float64)[:, None, None, None]
    out = np.asarray(jax.jit(norm.normalize)(svs))
    np.testing.assert_allclose(out, np.sign(svs) * np.sqrt(np.abs(svs) / s), rtol=1e-5, atol=1e-7)
    assert np.mean(np.abs(out) <= 1.0) == pytest.approx(0.95, abs=0.01)  # 95th percentile → 1
    back = np.asarray(jax.jit(norm.denormalize)(out))
    np.testing.assert_allclose(back, svs, rtol=2e-6, atol=1e-6)


def test_normaliser_errors(tmp_path):
    with pytest.raises(ValueError, match="no statistics"):
        _ = motion.FrequencyNormalizer(K).scales
    with pytest.raises(ValueError, match="NaN"):
        motion.FrequencyNormalizer(K).update(np.full((1, K, 2, 2, 4), np.nan))
    with pytest.raises(ValueError, match="expected spectral volumes"):
        motion.FrequencyNormalizer(K).update(np.zeros((1, 8, 2, 2, 4)))
    bad = tmp_path / "stats.json"
    bad.write_text(json.dumps({"num_freqs": 16}))
    with pytest.raises(ValueError, match=r"stats\.json.*missing field 'percentile'"):
        motion.FrequencyNormalizer.load(bad)
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"stats\.json: not valid"):
        motion.FrequencyNormalizer.load(bad)
    with pytest.raises(FileNotFoundError, match="nope.json"):
        motion.FrequencyNormalizer.load(tmp_path / "nope.json")


# -- loop constraint -------------------------------------------------------------------------

def test_loop_seam_closed_form_and_periodic_signal():
    t = np.arange(T + 1, dtype=np.float32)
    drift = np.zeros((T + 1, 2, 3, 2), np.float32)
    drift[..., 0] = 0.1 * t[:, None, None]                    # constant velocity 0.1 px/frame in x
    position, velocity = motion.loop_seam(drift)
    assert float(position) == pytest.approx(0.1 * T, rel=1e-5)
    assert float(velocity) == pytest.approx(0.0, abs=1e-5)
    periodic = np.zeros_like(drift)                           # one full period incl. t = T
    periodic[..., 1] = np.sin(2 * np.pi * 3 * t / T)[:, None, None]
    assert float(motion.loop_loss(periodic)) < 1e-5


def test_loop_loss_is_differentiable_through_the_inverse_fft():
    rng = np.random.default_rng(7)
    sv = jnp.asarray(rng.normal(size=(K, 4, 4, 4)).astype(np.float32) * 5)

    def loss(s):
        return motion.loop_loss(motion.to_trajectories(s, num_frames=120))

    value, grad = jax.value_and_grad(loss)(sv)
    assert np.all(np.isfinite(np.asarray(grad))) and float(jnp.abs(grad).sum()) > 0
    direction = rng.normal(size=sv.shape).astype(np.float32)  # directional derivative check
    eps = 1e-2
    numeric = (loss(sv + eps * direction) - loss(sv - eps * direction)) / (2 * eps)
    assert float(jnp.vdot(grad, direction)) == pytest.approx(float(numeric), rel=2e-2)
    assert float(loss(sv - 0.5 * grad / jnp.linalg.norm(grad))) < float(value)


# -- modal dynamics --------------------------------------------------------------------------

def damped_closed_form(q0, omega, gamma, t):
    """q'' + γq' + ω²q = 0, q(0) = q0, q'(0) = 0 (complex sqrt covers over-damping)."""
    wd = np.sqrt(complex(omega**2 - gamma**2 / 4))
    return q0 * np.exp(-gamma * t / 2) * (np.cos(wd * t) + gamma / (2 * wd) * np.sin(wd * t))


def single_mode_sv(k, height=3, width=4):
    sv = np.zeros((K, height, width, 4), np.float32)
    sv[k, ..., 0] = 2.0      # Re x
    sv[k, ..., 3] = 1.0      # Im y
    return sv


def test_modal_simulation_converges_to_closed_form():
    k, fps, duration = 5, 30.0, 2.0                     # 1 Hz mode
    sv = single_mode_sv(k)
    omega = motion.mode_angular_frequencies(K, fps)[k]
    gamma = motion.DAMPING_ALPHA + motion.DAMPING_BETA * omega**2
    errors = []
    for substeps in (1, 4, 16):
        dt = 1.0 / (fps * substeps)
        steps = int(round(duration / dt)) + 1
        disp = np.asarray(motion.simulate_modal(sv, (1, 1), (3.0, 0.0), steps, dt))
        # drag along x: d·S_k = 2 (real) ⇒ q(0) = 3 / 2² · 2 = 1.5, x = Re(2 q), y = Re(i q)
        q = damped_closed_form(1.5, omega, gamma, np.arange(steps) * dt)
        np.testing.assert_allclose(disp[0, 1, 1], [3.0, 0.0], atol=1e-5)
        err = np.abs(disp[:, 2, 3, 0] - np.real(2 * q)).max()
        err_y = np.abs(disp[:, 2, 3, 1] - np.real(1j * q)).max()
        errors.append(max(err, err_y))
    # Semi-implicit Euler is first order: 4x smaller steps ⇒ error ~4x smaller.
    assert errors[1] < errors[0] / 3 and errors[2] < errors[1] / 3, errors
    assert errors[2] < 0.02


def test_drag_response_release_decay_and_errors():
    rng = np.random.default_rng(8)
    sv = rng.normal(size=(K, 6, 7, 4)).astype(np.float32) * 10
    disp = np.asarray(motion.simulate_modal(sv, (3, 2), (1.5, -2.0), 300))
    d = np.array([1.5, -2.0]) / 2.5
    assert disp[0, 2, 3] @ d == pytest.approx(2.5, rel=1e-4)       # released exactly at the drag
    energy = np.square(disp).sum(axis=(1, 2, 3))
    assert energy[-30:].max() < 1e-3 * energy[:30].max()           # damped: the response dies out
    weak = np.asarray(motion.simulate_modal(sv, (3, 2), (1.5, -2.0), 300, alpha=0.05, beta=0.01))
    assert np.square(weak[-30:]).sum() > 10 * np.square(disp[-30:]).sum()  # less damping, longer ring
    np.testing.assert_array_equal(motion.simulate_modal(sv, (3, 2), (0.0, 0.0), 5), 0.0)
    with pytest.raises(ValueError, match="outside the 7x6 image"):
        motion.simulate_modal(sv, (10, 2), (1.0, 0.0), 5)


def test_loop_seam_needs_only_the_end_frames():
    # Guidance evaluates just frames 0, 1, T-2, T-1 of the Fourier series: same seam, 37x less work.
    rng = np.random.default_rng(9)
    sv = rng.normal(size=(K, 3, 3, 4)).astype(np.float32)
    full = motion.loop_seam(motion.to_trajectories(sv))
    ends = motion.loop_seam(motion.to_trajectories(sv, times=[0, 1, T - 2, T - 1]))
    np.testing.assert_allclose(np.asarray(ends), np.asarray(full), rtol=1e-5)


def test_stiff_damping_is_substepped_and_matches_closed_form():
    # at 30 fps, beta = 0.3 makes one Euler step per frame diverge for the 3 Hz band (dt·γ > 2);
    # sub-stepping keeps it stable and on the closed-form (here overdamped) solution
    k = 15
    omega = motion.mode_angular_frequencies(K)[k]
    gamma = motion.DAMPING_ALPHA + 0.3 * omega**2
    assert motion.stable_substeps([omega], [gamma], 1 / 30) > 1
    disp = np.asarray(motion.simulate_modal(single_mode_sv(k), (1, 1), (3.0, 0.0), 20, beta=0.3))
    q = damped_closed_form(1.5, omega, gamma, np.arange(20) / 30)
    # first order at the smallest stable sub-step: within 4% (measured 3.7%), and no blow-up
    np.testing.assert_allclose(disp[:, 2, 3, 0], np.real(2 * q), rtol=0.05, atol=1e-3)
