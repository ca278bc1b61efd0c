"""Stage 2 of 4: LDM stage 1, the denoiser on single frequency slices (docs/method.md §4.2, §4.3, §5).

    gid train --config configs/ldm.py:paper --workdir runs/ldm \\
        --config.data.dir=DATA_DIR --config.vae_workdir=runs/vae

The frozen VAE and its latent statistics come from the VAE run (`vae_workdir`).
"""

from __future__ import annotations

import ml_collections

from gid_jax.config import load_config, parse_variant


def get_config(arg: str = "paper") -> ml_collections.ConfigDict:
    arg = parse_variant(arg, "configs/ldm.py")
    paper = arg == "paper"
    c = load_config(f"configs/vae.py:{arg}")
    c.task = "ldm"
    c.stage = 1
    c.data.slices_per_example = 0     # the LDM sees every slice of an example
    # Decided by the prepared data: `gid_jax.train.ldm_task.resolve_config` overwrites these and
    # model.num_freqs / model.image_size from DATA_DIR before training (the values here are the
    # matching configs/prepare.py variant's).
    c.model.period = 150 if paper else 30     # T, the frames the spectra were taken over
    c.model.fps = 30.0
    c.vae_workdir = ml_collections.FieldReference("", field_type=str)  # the finished VAE run
    c.train.init_from.workdir = c.get_ref("vae_workdir")
    c.train.init_from.filter = "^vae/"                                   # copy the VAE only
    c.diffusion = ml_collections.ConfigDict(dict(
        num_steps=1000,               # N (supplement)
        schedule="scaled_linear",     # "square linear" (supplement)
        beta_start=0.0015, beta_end=0.0195,  # NOT RECOVERED: the LDM configs' values
        cond_dropout=0.1,             # NOT RECOVERED: image-condition dropout for CFG
        # What the network predicts: "epsilon" (LDM's, the paper's) | "v" (docs/method.md §4.3).
        # tiny: v (measured, demo data and schedule, stage 1, w = 4, 32 held-out scenes: AUC
        # 0.822 → 0.823, amplitude ratio 5.06 → 1.73, image dependence 0.315 → 0.346).
        prediction="epsilon" if paper else "v",
        loss_weighting="uniform",     # "uniform" MSE of the prediction | "min_snr" (Min-SNR-γ)
        min_snr_gamma=5.0,            # γ of "min_snr" (the Min-SNR paper's choice)
    ))
    # Auxiliary loss (our addition, not the paper's): the image features' first channel learns
    # log(1 + amplitude map) of the example (gid_jax/train/ldm_task.py `saliency_target`), so
    # the denoiser is handed where and how much the scene moves. 0 = the paper's ε-loss only.
    # tiny: 1 (measured, demo data, 1500 steps, 8 held-out scenes, w = 1.75: AUC 0.72 → 0.76,
    # image dependence 0.19 → 0.25; weight 4 is no better than 1).
    c.saliency_loss_weight = 0.0 if paper else 1.0
    c.optimizer.learning_rate = 5e-5 if paper else 2e-3   # "5^-5" = 5e-5 (docs/method.md §4.3)
    c.train.batch_size = 96 if paper else 4                # docs/method.md §4.3
    c.train.num_steps = 500_000 if paper else 40           # of 750K in all; NOT RECOVERED split
    del c["latent_stats_batches"]
    return c
