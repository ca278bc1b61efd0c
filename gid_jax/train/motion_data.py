"""Training batches of (image, normalised spectral volume) for the VAE and LDM stages."""

from __future__ import annotations

import os

from data_pipelines.augment import AugmentConfig, augment_batch_jax
from data_pipelines.dataset_format import dataset_paths
from data_pipelines.training_input import make_dataset


def data_paths(config) -> dict[str, str]:
    """The prepared dataset of `config.data.dir`, with a clear error when it is missing."""
    data_dir = config.data.dir
    if not data_dir:
        raise ValueError("config.data.dir is empty: pass --config.data.dir=DATA_DIR, a folder "
                         "written by `gid prepare`")
    paths = dataset_paths(data_dir)
    if not os.path.exists(paths["normalization"]):
        raise FileNotFoundError(f"{paths['normalization']}: not found; is {data_dir} a finished "
                                "`gid prepare` output folder?")
    return paths


def augment_config(config, augment: bool = True) -> AugmentConfig:
    return AugmentConfig() if augment and config.data.augment == "default" else AugmentConfig.none()


def spectral_iterator(config, *, batch_size: int, process_index: int, process_count: int,
                      augment: bool = True, seed_offset: int = 0):
    """Checkpointable iterator over this host's part of the training split."""
    paths = data_paths(config)
    return make_dataset(paths["spectral"], batch_size, int(config.seed) + seed_offset,
                        augment=augment_config(config, augment),
                        normalizer_scales=paths["normalization"],
                        shuffle_buffer=int(config.data.shuffle_buffer),
                        process_index=process_index, process_count=process_count,
                        geometry=config.data.geometry)


def finish_batch(config, batch, augment: bool = True):
    """With `data.geometry="device"` the geometric augmentation and normalisation run here, on
    the accelerator, inside the jitted step (see data_pipelines.training_input). `augment` must
    match the iterator's: `augment=False` still normalises (statistics are taken on exactly
    what the models train on)."""
    if config.data.geometry != "device":
        return batch
    from gid_jax.motion import FrequencyNormalizer

    scales = FrequencyNormalizer.load(data_paths(config)["normalization"]).scales
    hw = batch["image"].shape[1:3]
    return augment_batch_jax(batch, hw, augment_config(config, augment), normalizer_scales=scales)
