"""Stages 2 and 3 of 4: the motion LDM (docs/method.md §4.2, §4.3, §5).

Stage 1 (`stage=1`) trains the denoiser (image encoder + UNet) on single frequency slices: each
example contributes one random slice k with its frequency embedding. Stage 2 (`stage=2`) adds the
zero-initialised frequency attention, freezes everything else, and denoises all K slices of an
example jointly (one diffusion time per example). Both use the square-linear schedule, predict ε
(the paper's) or v (`diffusion.prediction`), and drop the image condition with probability `diffusion.cond_dropout` for
classifier-free guidance. The VAE is frozen: stage 1 copies it from the VAE run
(`train.init_from`), stage 2 copies everything from the stage-1 run.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
from flax import nnx

from gid_jax.diffusion import NoiseSchedule
from gid_jax.diffusion.schedule import LOSS_WEIGHTINGS, PREDICTIONS
from gid_jax.models.ldm import MotionLDM
from gid_jax.models.unet import FREQ_ATTN
from gid_jax.motion import FrequencyNormalizer, amplitude
from gid_jax.train.motion_data import data_paths, finish_batch, spectral_iterator
from gid_jax.train.task import compute_dtype
from gid_jax.train.vae_task import LATENT_STATS


def read_latent_stats(vae_workdir: str) -> tuple[list[float], list[float]]:
    path = Path(vae_workdir) / LATENT_STATS
    try:
        stats = json.loads(path.read_text())
        return stats["mean"], stats["std"]
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: not found; train the VAE stage to the end first "
                                "(it writes the latent whitening statistics)") from None


def resolve_config(config) -> None:
    """Writes what the prepared data decide into `config.model`: K, the image size, the period T
    the spectra were taken over and the frame rate, so that the run's config.json alone rebuilds
    the model for inference and export. `gid_jax.train.get_task` calls it before it builds the
    task and locks the config; the task itself only reads the config."""
    paths = data_paths(config)
    scales = FrequencyNormalizer.load(paths["normalization"]).scales
    prepared = json.loads(Path(paths["prepare_config"]).read_text())
    config.model.num_freqs = len(scales)
    config.model.image_size = (int(prepared["height"]), int(prepared["width"]))
    config.model.period = int(prepared["num_frames"])
    config.model.fps = float(prepared["fps"])


class LDMTask:
    def __init__(self, config):
        self.freq_scales = FrequencyNormalizer.load(data_paths(config)["normalization"]).scales
        if int(config.model.num_freqs) != len(self.freq_scales):
            raise ValueError(f"config.model.num_freqs={config.model.num_freqs} but the data have "
                             f"K={len(self.freq_scales)}; build the task with "
                             "gid_jax.train.get_task, which takes K from the data")
        self.config = config
        self.stage = int(config.stage)
        self.name = "ldm" if self.stage == 1 else "ldm_freq_attn"
        self.trainable = (nnx.All(nnx.Param, nnx.PathContains("denoiser")) if self.stage == 1
                          else nnx.All(nnx.Param, nnx.PathContains(FREQ_ATTN)))
        self.schedule = NoiseSchedule.from_config(config)
        if config.diffusion.prediction not in PREDICTIONS:
            raise ValueError(f"config.diffusion.prediction must be one of {PREDICTIONS}, "
                             f"got {config.diffusion.prediction!r}")
        if config.diffusion.loss_weighting not in LOSS_WEIGHTINGS:
            raise ValueError(f"config.diffusion.loss_weighting must be one of {LOSS_WEIGHTINGS}, "
                             f"got {config.diffusion.loss_weighting!r}")

    def create_model(self, config, rngs):
        mean = std = None
        if config.vae_workdir:     # stage 2 gets them from the stage-1 checkpoint
            mean, std = read_latent_stats(config.vae_workdir)
        return MotionLDM(config.model, num_freqs=len(self.freq_scales), stage=self.stage,
                         latent_mean=mean, latent_std=std, freq_scales=self.freq_scales,
                         diffusion=config.diffusion, dtype=compute_dtype(config), rngs=rngs)

    def create_train_iterator(self, config, *, batch_size, process_index, process_count):
        return spectral_iterator(config, batch_size=batch_size, process_index=process_index,
                                 process_count=process_count)

    def loss_fn(self, model, batch, rng):
        batch = finish_batch(self.config, batch)
        sv, image = batch["spectral_volume"], batch["image"] * 2.0 - 1.0
        b, k = sv.shape[:2]
        k_key, enc_key, t_key, noise_key, drop_key = jax.random.split(rng, 5)
        if self.stage == 1:      # one random frequency slice per example
            freq = jax.random.randint(k_key, (b,), 0, k)
            slices = jnp.take_along_axis(sv, freq[:, None, None, None, None], axis=1)[:, 0]
            t = jax.random.randint(t_key, (b,), 0, self.schedule.num_steps)
        else:                    # all K slices, image-major, one time per example
            freq = None
            slices = sv.reshape((b * k,) + sv.shape[2:])
            t = jnp.repeat(jax.random.randint(t_key, (b,), 0, self.schedule.num_steps), k)
        z0 = jax.lax.stop_gradient(model.encode(slices, enc_key))
        noise = jax.random.normal(noise_key, z0.shape, z0.dtype)
        zt = self.schedule.add_noise(z0, noise, t)
        drop = jax.random.bernoulli(drop_key, float(self.config.diffusion.cond_dropout), (b,))
        features = model.denoiser.encode_image(image)
        eps = model.denoiser(zt, t, freq, image, drop_image=drop, image_features=features)
        d = self.config.diffusion
        weight = self.schedule.loss_weight(t, d.loss_weighting, float(d.min_snr_gamma), d.prediction)
        loss = jnp.mean(weight * jnp.mean(jnp.square(eps - noise), axis=(1, 2, 3)))
        metrics = {"latent_std": jnp.std(z0), f"{'eps' if d.prediction == 'epsilon' else 'v'}_loss": loss}
        saliency_weight = float(self.config.saliency_loss_weight)
        if saliency_weight > 0 and self.stage == 1:     # stage 2 freezes the image encoder
            target = saliency_target(sv, features.shape[1:3])
            metrics["saliency_loss"] = jnp.mean(jnp.square(features[..., 0] - target))
            loss = loss + saliency_weight * metrics["saliency_loss"]
        return loss, metrics


def saliency_target(sv_normalized, size) -> jnp.ndarray:
    """log(1 + A) `(B, h, w)`: where and how much each example moves, A = Σ_{k≥1} |S_k| of its
    normalised spectral volume `(B, K, H, W, 4)`, area-averaged to the image features' size.

    The target of the auxiliary saliency loss (`config.saliency_loss_weight`, our addition): the
    image features' first channel learns to predict it from the image. Measured on the demo's
    data, the ε-loss alone teaches the image encoder little (held-out localisation AUC of the
    samples 0.72-0.78), while the same tiny encoder trained directly on this map localises the
    motion of held-out scenes with AUC 0.90-0.92 (README, "Learning: what we measured")."""
    amp = jnp.sum(amplitude(sv_normalized[:, 1:]), axis=1)
    amp = jax.image.resize(amp, (amp.shape[0],) + tuple(size), "linear", antialias=True)
    return jnp.log1p(amp)


def make_ldm_task(config) -> LDMTask:
    return LDMTask(config)
