"""The motion latent diffusion model as one module: frozen VAE + denoiser + the constants that
map between spectral volumes and whitened latents.

Parameter paths: `vae/...` (trained in the VAE stage, frozen afterwards), `denoiser/...`
(`image_encoder` + `unet`; the `freq_attn` parts exist in stage 2 only). `latent_mean`,
`latent_std` (VAE latent whitening, docs/method.md §4.1) and `freq_scales` (frequency adaptive
normalisation s_k, docs/method.md §3) are `Constant` variables: never trained, but checkpointed and
exported with the weights, so a checkpoint alone is enough to sample.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from gid_jax.diffusion.schedule import NoiseSchedule
from gid_jax.models.unet import MotionDenoiser
from gid_jax.models.vae import MotionVAE, sample_latent
from gid_jax.motion.normalization import frequency_denormalize


class Constant(nnx.Variable):
    """A non-trainable array that belongs to the model (statistics, scales)."""


class MotionLDM(nnx.Module):
    def __init__(self, model_cfg, *, num_freqs: int, stage: int, latent_mean=None, latent_std=None,
                 freq_scales=None, diffusion=None, dtype=jnp.float32, rngs: nnx.Rngs):
        """`diffusion`: the run config's `diffusion` block, for what the denoiser predicts
        (`prediction`, and the schedule v needs); None, or a run from before the field existed,
        means ε."""
        if stage not in (1, 2):
            raise ValueError(f"MotionLDM: stage must be 1 or 2, got {stage!r}")
        channels = model_cfg.vae.latent_channels
        self.num_freqs, self.stage = num_freqs, stage
        self.vae = MotionVAE.from_config(model_cfg.vae, dtype=dtype, rngs=rngs)
        prediction = "epsilon" if diffusion is None else diffusion.get("prediction", "epsilon")
        alpha_bar = None
        if prediction == "v":
            alpha_bar = NoiseSchedule.create(diffusion.num_steps, diffusion.beta_start,
                                             diffusion.beta_end, diffusion.schedule).alphas_cumprod
        self.denoiser = MotionDenoiser.from_config(model_cfg, frequency_attention=stage == 2,
                                                   prediction=prediction, alpha_bar=alpha_bar,
                                                   dtype=dtype, rngs=rngs)
        self.latent_mean = Constant(_vector(latent_mean, channels, 0.0))
        self.latent_std = Constant(_vector(latent_std, channels, 1.0))
        self.freq_scales = Constant(_vector(freq_scales, num_freqs, 1.0))

    def encode(self, slices, key=None):
        """Normalised slices `(N, H, W, 4)` → whitened latents `(N, h, w, 4)` (a posterior sample
        with `key`, the mean without)."""
        mean, logvar = self.vae.encode(slices)
        z = mean if key is None else sample_latent(mean, logvar, key)
        return (z - self.latent_mean[...]) / self.latent_std[...]

    def decode(self, latents):
        """Whitened latents `(N, h, w, 4)` → normalised slices `(N, H, W, 4)`."""
        return self.vae.decode(latents * self.latent_std[...] + self.latent_mean[...])

    def denormalize(self, sv_normalized):
        """Inverse frequency adaptive normalisation of `(..., K, H, W, 4)`: sign(x)·x²·s_k."""
        return frequency_denormalize(jnp.asarray(sv_normalized), self.freq_scales[...])

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        f = self.vae.downsample_factor
        return height // f, width // f, self.vae.latent_channels


def _vector(value, size: int, default: float) -> jax.Array:
    if value is None:
        return jnp.full((size,), default, jnp.float32)
    value = np.asarray(value, np.float32)
    if value.shape != (size,):
        raise ValueError(f"MotionLDM: expected {size} values, got shape {value.shape}")
    return jnp.asarray(value)
