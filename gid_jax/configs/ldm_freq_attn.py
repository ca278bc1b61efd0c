"""Stage 3 of 4: LDM stage 2, frequency attention on a frozen stage-1 model (docs/method.md §5).

    gid train --config configs/ldm_freq_attn.py:paper --workdir runs/ldm2 \\
        --config.data.dir=DATA_DIR --config.ldm_workdir=runs/ldm

Everything (VAE, denoiser, statistics) is copied from the stage-1 run; only the zero-initialised
frequency-attention layers train, so the first step computes exactly the stage-1 model.
"""

from __future__ import annotations

import ml_collections

from gid_jax.config import load_config, parse_variant


def get_config(arg: str = "paper") -> ml_collections.ConfigDict:
    arg = parse_variant(arg, "configs/ldm_freq_attn.py")
    paper = arg == "paper"
    c = load_config(f"configs/ldm.py:{arg}")
    c.stage = 2
    c.ldm_workdir = ml_collections.FieldReference("", field_type=str)  # the stage-1 run
    # A new block: stage 1's init_from is tied to vae_workdir, which stage 2 does not use
    # (the VAE and the latent statistics come with the stage-1 checkpoint).
    c.train.init_from = ml_collections.ConfigDict(dict(
        workdir=c.get_ref("ldm_workdir"), step=-1, filter=".*", use_ema=True, strip_prefix=""))
    c.train.num_steps = 250_000 if paper else 10          # the rest of 750K; NOT RECOVERED split
    c.train.batch_size = 96 if paper else 2               # each example is all K slices
    return c
