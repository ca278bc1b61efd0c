"""Wind forcing and damped modal oscillators.

Every mode m of a scene is a damped oscillator driven by its own forcing signal
    q_m'' + 2 zeta_m omega_m q_m' + omega_m^2 q_m = omega_m^2 f_m(t)
(unit static gain, so f_m is "the displacement the wind would hold the mode at"). The forcing is
a mix of a scene-wide wind (mean + turbulence with a von Karman-like f^-5/3 power spectrum +
smooth gusts) arriving at each object with a delay, local turbulence, and for flames a broadband
flicker noise. Integration is semi-implicit Euler with several sub-steps per frame, after a
burn-in long enough for the free response to decay, so the clip is in steady state.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class ModeSpec:
    """One modal coordinate: frequency (Hz), damping ratio, and how it is driven."""
    freq: float
    damping: float
    source: str            # 'wind' (scene wind seen by the object) or 'flicker' (broadband)
    obj: int               # index of the object that owns the mode
    group: str             # amplitude-normalisation group inside the object ('sway', 'flutter', ...)
    gain: float = 1.0      # modal participation (relative weight inside its group)
    delay: float = 0.0     # extra forcing delay in seconds (travelling waves: quarter period)
    kind: str = ""         # human-readable mode type, for the scene description


def spectral_noise(rng: np.random.Generator, n: int, dt: float, corner_hz: float,
                   slope: float, highcut_hz: float | None = None) -> np.ndarray:
    """Zero-mean unit-std noise with amplitude spectrum (1+(f/corner)^2)^(-slope/2)."""
    white = rng.standard_normal(n)
    spec = np.fft.rfft(white)
    f = np.fft.rfftfreq(n, dt)
    shape = (1.0 + (f / corner_hz) ** 2) ** (-slope / 2.0)
    if highcut_hz is not None:
        shape *= np.exp(-(f / highcut_hz) ** 4)
    shape[0] = 0.0
    x = np.fft.irfft(spec * shape, n)
    return x / max(float(x.std()), 1e-12)


def scene_wind(rng: np.random.Generator, n: int, dt: float) -> tuple[np.ndarray, dict]:
    """Scene-wide wind signal (arbitrary units, std ~1) and its description."""
    duration = n * dt
    mean = float(rng.uniform(0.0, 1.5))
    turb = float(rng.uniform(0.4, 1.0))
    corner = float(rng.uniform(0.1, 0.5))
    # Turbulence: power ~ f^-5/3 above the corner frequency (amplitude exponent 5/6).
    w = mean + turb * spectral_noise(rng, n, dt, corner, slope=5.0 / 6.0, highcut_hz=12.0)
    rate = float(rng.uniform(0.0, 0.25))          # gusts per second
    num_gusts = int(rng.poisson(rate * duration))
    t = np.arange(n) * dt
    for _ in range(num_gusts):
        t0 = rng.uniform(0, duration)
        length = rng.uniform(1.0, 4.0)
        amp = rng.exponential(1.0)
        inside = (t >= t0) & (t < t0 + length)
        w[inside] += amp * 0.5 * (1 - np.cos(2 * np.pi * (t[inside] - t0) / length))
    return w, {"mean": mean, "turbulence": turb, "corner_hz": corner, "gust_rate_hz": rate,
               "num_gusts": num_gusts}


def forcing(rng: np.random.Generator, modes: list[ModeSpec], num_objects: int, n: int,
            dt: float, wind: np.ndarray, delays: np.ndarray) -> np.ndarray:
    """Forcing signals `(M, n)`: each object sees the scene wind delayed by its position plus local
    turbulence; flame modes get broadband flicker; each mode may add its own delay."""
    t = np.arange(n) * dt
    local, flicker = {}, {}
    for o in range(num_objects):      # one draw per object either way: determinism by object
        seed = int(rng.integers(2 ** 63))
        srcs = {spec.source for spec in modes if spec.obj == o}
        r = np.random.default_rng(seed)
        if "wind" in srcs:
            local[o] = 0.5 * spectral_noise(r, n, dt, corner_hz=0.8, slope=5.0 / 6.0, highcut_hz=12.0)
        if "flicker" in srcs:
            flicker[o] = spectral_noise(r, n, dt, corner_hz=6.0, slope=0.5, highcut_hz=15.0)
    out = np.zeros((len(modes), n), np.float64)
    for m, spec in enumerate(modes):
        if spec.source == "flicker":
            sig = flicker[spec.obj] + 0.3 * (wind - wind.mean())
        else:
            sig = wind + local[spec.obj]
        shift = delays[spec.obj] + spec.delay
        out[m] = spec.gain * np.interp(t - shift, t, sig)
    return out


def simulate(freqs: np.ndarray, damping: np.ndarray, force: np.ndarray, num_frames: int,
             substeps: int, dt: float) -> np.ndarray:
    """Integrates all oscillators from rest at the initial forcing; returns the modal coordinates
    sampled every `substeps` steps, `(num_frames, M)` float64 (callers drop a burn-in prefix).

    `force` `(M, n)` holds at least `(num_frames-1)*substeps + 1` samples spaced `dt` apart.
    Semi-implicit (symplectic) Euler, v += dt (w^2 (f - q) - c v); q += dt v, is linear in the
    state x = (q, v): x <- A x + B f. One frame of `substeps` steps is applied at once,
    x <- A^K x + sum_i A^(K-1-i) B f_i, so the Python loop runs over frames, not sub-steps.
    """
    omega = 2 * np.pi * np.asarray(freqs, np.float64)
    zeta = np.asarray(damping, np.float64)
    M, K = len(omega), int(substeps)
    w2, c = omega ** 2, 2 * zeta * omega
    A = np.empty((M, 2, 2))
    A[:, 0, 0], A[:, 0, 1] = 1 - dt * dt * w2, dt * (1 - c * dt)
    A[:, 1, 0], A[:, 1, 1] = -dt * w2, 1 - c * dt
    B = np.stack([dt * dt * w2, dt * w2], -1)                     # (M, 2)
    H = np.empty((M, K, 2))                                       # H[:, i] = A^(K-1-i) B
    H[:, K - 1] = B
    for i in range(K - 2, -1, -1):
        H[:, i] = np.einsum("mij,mj->mi", A, H[:, i + 1])
    AK = np.linalg.matrix_power(A, K)
    n_blocks = num_frames - 1
    F = force[:, :n_blocks * K].reshape(M, n_blocks, K)
    G = np.einsum("mbk,mkc->bmc", F, H)                           # (n_blocks, M, 2)
    x = np.stack([force[:, 0], np.zeros(M)], -1)                  # at rest at the initial forcing
    out = np.empty((num_frames, M), np.float64)
    out[0] = x[:, 0]
    for k in range(n_blocks):
        x = np.einsum("mij,mj->mi", AK, x) + G[k]
        out[k + 1] = x[:, 0]
    return out
