"""Latent whitening statistics: measured on the encoding the LDM trains on, on both data paths.

The LDM trains on whitened posterior *samples* of normalised slices (`MotionLDM.encode` with a
key); the statistics must make exactly those latents zero-mean and unit-variance, whether the
geometry/normalisation runs on the host or inside the jitted step (`data.geometry="device"`).
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from gid_jax.config import load_config
from gid_jax.models.ldm import MotionLDM
from gid_jax.models.vae import LatentStats, MotionVAE
from gid_jax.train.motion_data import finish_batch, spectral_iterator
from gid_jax.train.vae_task import LATENT_STATS, VAEStageModel, VAETask


def _stats(prepared, tmp_path, geometry: str):
    config = load_config("configs/vae.py:tiny", [f"--config.data.dir={prepared}",
                                                  f"--config.data.geometry={geometry}"])
    config.latent_stats_batches = 3
    # An untrained VAE: posterior log-variances near 0, so samples differ clearly from means.
    model = VAEStageModel(MotionVAE.from_config(config.model.vae, rngs=nnx.Rngs(0)))
    out = tmp_path / geometry
    out.mkdir()
    VAETask(config).finalize(model, config, out)
    return config, model, LatentStats.load(str(out / LATENT_STATS))


def test_whitening_is_measured_on_normalised_posterior_samples(prepared_tiny, tmp_path):
    config, model, stats = _stats(prepared_tiny, tmp_path, "host")
    # What the LDM trains on: whitened posterior samples of the (normalised) training slices.
    ldm = MotionLDM(config.model, num_freqs=8, stage=1, latent_mean=stats.mean,
                    latent_std=stats.std, rngs=nnx.Rngs(1))
    nnx.update(ldm.vae, nnx.state(model.vae))
    it = spectral_iterator(config, batch_size=4, process_index=0, process_count=1,
                           augment=False, seed_offset=1)
    sv = jnp.asarray(next(it)["spectral_volume"])
    z = np.asarray(ldm.encode(sv.reshape((-1,) + sv.shape[2:]), jax.random.key(5)))
    z = z.reshape(-1, z.shape[-1])
    np.testing.assert_allclose(z.std(0), 1.0, atol=0.1)     # sampling noise of ~3e4 latents
    np.testing.assert_allclose(z.mean(0), 0.0, atol=0.1)


def test_device_geometry_statistics_match_host(prepared_tiny, tmp_path):
    _, _, host = _stats(prepared_tiny, tmp_path, "host")
    config, _, device = _stats(prepared_tiny, tmp_path, "device")
    assert host.count == device.count
    # Same batches, same keys; only the (identity) resampling path differs: float32 rounding.
    np.testing.assert_allclose(device.mean, host.mean, atol=1e-3)
    np.testing.assert_allclose(device.std, host.std, rtol=1e-3)
    # And the device path really normalises: its batches match the host path's.
    it_h = spectral_iterator(load_config("configs/vae.py:tiny", [f"--config.data.dir={prepared_tiny}"]),
                             batch_size=2, process_index=0, process_count=1, augment=False)
    it_d = spectral_iterator(config, batch_size=2, process_index=0, process_count=1, augment=False)
    a = next(it_h)["spectral_volume"]
    b = finish_batch(config, jax.tree.map(jnp.asarray, next(it_d)), augment=False)["spectral_volume"]
    np.testing.assert_allclose(np.asarray(b), a, atol=1e-4)
