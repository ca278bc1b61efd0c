"""Noise schedules for the ε-prediction diffusion of latent slices (PAPER.md 4.3)."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

SCHEDULES = ("scaled_linear", "linear")


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

    @property
    def num_steps(self) -> int:
        return len(self.alphas_cumprod)

    def add_noise(self, x0, noise, t):
        """z_t = √ᾱ_t x0 + √(1-ᾱ_t) ε, for integer steps `t` of shape `(B,)`."""
        abar = jnp.asarray(self.alphas_cumprod, jnp.float32)[t]
        abar = abar.reshape(abar.shape + (1,) * (x0.ndim - 1))
        return jnp.sqrt(abar) * x0 + jnp.sqrt(1.0 - abar) * noise

    def sampling_steps(self, num_sampling_steps: int) -> np.ndarray:
        """Evenly spaced training steps, descending, e.g. 250 of 1000 (DDIM "uniform" spacing)."""
        if not 1 <= num_sampling_steps <= self.num_steps:
            raise ValueError(f"sampling steps must be in [1, {self.num_steps}], got {num_sampling_steps}")
        steps = np.round(np.linspace(0, self.num_steps - 1, num_sampling_steps)).astype(np.int32)
        return steps[::-1].copy()
