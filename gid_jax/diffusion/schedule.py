"""Noise schedules for the diffusion of latent slices (docs/method.md §4.3)."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

SCHEDULES = ("scaled_linear", "linear")
GRIDS = ("uniform", "quadratic", "logsnr")
LOSS_WEIGHTINGS = ("uniform", "min_snr")
PREDICTIONS = ("epsilon", "v")   # what the denoiser network outputs (see MotionDenoiser.to_eps)


@dataclasses.dataclass(frozen=True)
class NoiseSchedule:
    """Discrete schedule over N training steps: β_n, ᾱ_n = Π(1-β), and derived quantities.

    `scaled_linear` is the LDM "square linear" schedule the supplement names:
    β_n = linspace(√β_start, √β_end, N)². β_start/β_end are NOT RECOVERED; 0.0015 → 0.0195 are
    the LDM configs' values.
    """

    alphas_cumprod: np.ndarray   # (N,) float64

    @classmethod
    def create(cls, num_steps: int = 1000, beta_start: float = 0.0015, beta_end: float = 0.0195,
               kind: str = "scaled_linear") -> "NoiseSchedule":
        if kind not in SCHEDULES:
            raise ValueError(f"noise schedule must be one of {SCHEDULES}, got {kind!r}")
        if num_steps < 2 or not 0 < beta_start < beta_end < 1:
            raise ValueError(f"need num_steps >= 2 and 0 < beta_start < beta_end < 1, got "
                             f"{num_steps}, {beta_start}, {beta_end}")
        if kind == "scaled_linear":
            betas = np.linspace(beta_start**0.5, beta_end**0.5, num_steps) ** 2
        else:
            betas = np.linspace(beta_start, beta_end, num_steps)
        return cls(np.cumprod(1.0 - betas))

    @classmethod
    def from_config(cls, config) -> "NoiseSchedule":
        """The schedule of an LDM run's config (its `diffusion` fields): training, sampling and
        bundle loading all build it from the run's config this one way."""
        d = config.diffusion
        return cls.create(d.num_steps, d.beta_start, d.beta_end, d.schedule)

    @property
    def num_steps(self) -> int:
        return len(self.alphas_cumprod)

    def alpha_bar(self, steps, dtype=jnp.float32):
        """ᾱ at integer `steps`, step −1 meaning the clean end point (ᾱ = 1): the last DDIM
        step's target."""
        table = jnp.asarray(list(self.alphas_cumprod) + [1.0], dtype)
        return table[jnp.where(steps < 0, self.num_steps, steps)]

    def add_noise(self, x0, noise, t):
        """z_t = √ᾱ_t x0 + √(1-ᾱ_t) ε, for integer steps `t` of shape `(B,)`."""
        abar = jnp.asarray(self.alphas_cumprod, jnp.float32)[t]
        abar = abar.reshape(abar.shape + (1,) * (x0.ndim - 1))
        return jnp.sqrt(abar) * x0 + jnp.sqrt(1.0 - abar) * noise

    def loss_weight(self, t, kind: str = "uniform", gamma: float = 5.0, prediction: str = "epsilon"):
        """Per-example weight of the ε-MSE |ε - ε̂|² at integer steps `t` `(B,)`, the model's
        ε̂ being what `MotionDenoiser.to_eps` makes of its output. In clean-latent terms the
        ε-MSE is SNR_t · |x0 - x̂0|² and the v-MSE |v - v̂|² = |ε - ε̂|² / ᾱ_t is (1 + SNR_t) ·
        |x0 - x̂0|².

        * `uniform`: the plain MSE of what the network predicts: 1 for ε (DDPM/LDM, the
          paper's), 1/ᾱ_t for v, which weighs the high-noise steps (where the layout of the
          sample, here which pixels move, is decided) ~1/SNR times more.
        * `min_snr`: x0-weight min(SNR_t, γ) (Hang et al. 2023, "Min-SNR-γ"), the same objective
          for either prediction: ε-weight min(SNR_t, γ) / SNR_t.
        """
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
        if kind == "uniform":
            if prediction == "v":
                return 1.0 / self.alpha_bar(t)
            return jnp.ones(jnp.shape(t), jnp.float32)
        if kind != "min_snr":
            raise ValueError(f"loss weighting must be one of {LOSS_WEIGHTINGS}, got {kind!r}")
        abar = self.alphas_cumprod
        snr = jnp.asarray(abar / (1.0 - abar), jnp.float32)[t]
        return jnp.minimum(snr, gamma) / snr

    @property
    def log_snr(self) -> np.ndarray:
        """λ_n = log(α_n/σ_n) = ½ log(ᾱ_n / (1-ᾱ_n)), decreasing in n (float64)."""
        abar = self.alphas_cumprod
        return 0.5 * (np.log(abar) - np.log1p(-abar))

    def sampling_steps(self, num_sampling_steps: int, grid: str = "uniform") -> np.ndarray:
        """`num_sampling_steps` distinct training steps, descending from N-1 (n > 1) to 0.

        * `uniform`: evenly spaced steps, e.g. 250 of 1000 (DDIM's spacing; the default).
        * `quadratic`: t ∝ (i/(n-1))², denser near the data (DDIM's "quad" spacing).
        * `logsnr`: evenly spaced in λ = log(α/σ) (DPM-Solver's choice): the exponential
          integrators' error depends on the λ step h, so equal h spreads it evenly.

        Non-uniform grids are rounded to integer steps (the denoiser is trained on those) and made
        strictly decreasing, so a long log-SNR grid ends in ..., 2, 1, 0: the discrete schedule
        cannot resolve λ between t = 1 and t = 0 (a gap of 0.35 for the default schedule).
        """
        if grid not in GRIDS:
            raise ValueError(f"sampling grid must be one of {GRIDS}, got {grid!r}")
        n, last = num_sampling_steps, self.num_steps - 1
        if not 1 <= n <= self.num_steps:
            raise ValueError(f"sampling steps must be in [1, {self.num_steps}], got {n}")
        if grid == "uniform":
            steps = np.round(np.linspace(0, last, n)).astype(np.int32)
            return steps[::-1].copy()
        frac = np.linspace(1.0, 0.0, n)                     # 1 = noise end, 0 = data end
        if grid == "quadratic":
            t = last * frac**2
        else:
            lam = self.log_snr
            target = lam[0] + frac * (lam[-1] - lam[0])
            t = np.interp(target, lam[::-1], np.arange(last, -1, -1, dtype=np.float64))
        steps = np.round(t).astype(np.int64)
        steps[0] = last
        for i in range(1, n):                               # strictly decreasing, within [0, N-1]
            steps[i] = min(steps[i], steps[i - 1] - 1)
        steps[-1] = 0
        for i in range(n - 2, -1, -1):
            steps[i] = max(steps[i], steps[i + 1] + 1)
        return steps.astype(np.int32)
