"""Stage 1 of 4: the motion VAE on single normalised frequency slices (docs/method.md §4.1).

Loss: L1 + 0.2 × multi-scale gradient loss + 1e-6 × KL. When training finishes, `finalize`
measures the per-channel latent statistics (whitening) over the training data and writes
WORKDIR/latent_stats.json, which the LDM stages read.
"""

from __future__ import annotations

import logging
from pathlib import Path

import jax
import jax.numpy as jnp
from flax import nnx

from gid_jax.models.vae import LatentStats, MotionVAE, sample_latent, vae_loss
from gid_jax.train.motion_data import finish_batch, spectral_iterator
from gid_jax.train.task import compute_dtype

log = logging.getLogger(__name__)
LATENT_STATS = "latent_stats.json"


class VAEStageModel(nnx.Module):
    """Holds the VAE under the path `vae/`, the same path it has inside the LDM."""

    def __init__(self, vae: MotionVAE):
        self.vae = vae


def pick_slices(sv, count: int, key):
    """`(B, K, H, W, 4)` → `(B·count, H, W, 4)`: `count` random frequency slices per example
    (all K, in order, when count is 0 or K)."""
    b, k = sv.shape[:2]
    if count in (0, k):
        return sv.reshape((b * k,) + sv.shape[2:])
    idx = jax.random.randint(key, (b, count), 0, k)
    picked = jnp.take_along_axis(sv, idx[:, :, None, None, None], axis=1)
    return picked.reshape((b * count,) + sv.shape[2:])


class VAETask:
    name = "vae"

    def __init__(self, config):
        self.config = config

    def create_model(self, config, rngs):
        return VAEStageModel(MotionVAE.from_config(config.model.vae, dtype=compute_dtype(config), rngs=rngs))

    def create_train_iterator(self, config, *, batch_size, process_index, process_count):
        return spectral_iterator(config, batch_size=batch_size, process_index=process_index,
                                 process_count=process_count)

    def loss_fn(self, model, batch, rng):
        batch = finish_batch(self.config, batch)
        pick_key, sample_key = jax.random.split(rng)
        x = pick_slices(batch["spectral_volume"], int(self.config.data.slices_per_example), pick_key)
        recon, mean, logvar = model.vae(x, key=sample_key)
        w = self.config.model.vae
        loss, terms = vae_loss(recon, x, mean, logvar, l1_weight=w.l1_weight,
                               gradient_weight=w.gradient_weight, kl_weight=w.kl_weight,
                               gradient_scales=w.gradient_scales)
        return loss, terms

    def finalize(self, model, config, workdir):
        """Latent whitening statistics over `latent_stats_batches` unaugmented training batches.

        Measured on posterior *samples* of normalised slices, i.e. on exactly the encoding the
        LDM trains on (`MotionLDM.encode` with a key), so whitened training latents have unit
        variance; on the device-geometry path the batches are normalised here first."""
        stats = LatentStats(config.model.vae.latent_channels)
        it = spectral_iterator(config, batch_size=int(config.train.batch_size) // jax.process_count(),
                               process_index=jax.process_index(), process_count=jax.process_count(),
                               augment=False, seed_offset=1)

        @nnx.jit
        def encode(m, batch, key):
            sv = finish_batch(config, batch, augment=False)["spectral_volume"]
            mean, logvar = m.vae.encode(sv.reshape((-1,) + sv.shape[2:]))
            return sample_latent(mean, logvar, key)

        key = jax.random.fold_in(jax.random.key(int(config.seed)), jax.process_index())
        for i in range(int(config.latent_stats_batches)):
            batch = jax.tree.map(jnp.asarray, next(it))
            stats.update(jax.device_get(encode(model, batch, jax.random.fold_in(key, i))))
        if jax.process_index() == 0:
            stats.save(str(Path(workdir) / LATENT_STATS))
        log.info("latent whitening: mean %s, std %s over %d latents", stats.mean, stats.std, stats.count)


def make_vae_task(config) -> VAETask:
    return VAETask(config)
