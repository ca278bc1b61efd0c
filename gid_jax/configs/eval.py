"""Evaluation: metrics of docs/method.md §9.1 and the sweep grid (`gid_jax.eval.sweep.run_sweep`).

    get_config("paper")   # the paper's protocol: 150 frames, 256x128 center crop, FVD16/32 ...
    get_config("tiny")    # small grid for CPU tests (64x40 data: 64x32 crop, clips of <= 40 frames)

Video metrics (FID/KID/FVD/DTFVD, docs/evaluation.md) need ``videos_dir``, the folder `gid
prepare --videos` read: the real clips are decoded from it. Empty: they are skipped, with a note.

Override from the command line, e.g. ``--config.checkpoints='("runs/a","runs/b")'
--config.grid.num_steps='(50,250)'``.
"""

from __future__ import annotations

import ml_collections

from gid_jax.config import parse_variant


def get_config(variant: str = "paper") -> ml_collections.ConfigDict:
    variant = parse_variant(variant, "configs/eval.py")
    paper = variant == "paper"
    c = ml_collections.ConfigDict()
    c.out_dir = "runs/eval"
    c.data_dir = ""                         # a `gid prepare` output folder (its test split)
    c.videos_dir = ""                       # the videos it was prepared from ("" = no video metrics)
    c.split = "test"
    c.checkpoints = ("runs/train",)         # pipeline directories or exported bundles
    # Sweep axes: every combination is one cell. Paper values: DDIM 250 steps (docs/method.md §4.3).
    # guidance_weight: the pipeline's default CFG weight w (SamplerSettings, 1.75 as in the paper
    # v3); "pipeline" = each checkpoint's own setting. Every row states the w it used (cfg_weight).
    from gid_jax.pipeline import SamplerSettings

    c.grid = ml_collections.ConfigDict(dict(
        num_steps=(250,) if paper else (2, 4),
        guidance_weight=(SamplerSettings.guidance_weight,) if paper else (1.0, 2.0),
        solver=("ddim",),
        # K bins kept of the model's sample: an inference-time TRUNCATION (rows say k_mode =
        # "truncated"), not a model trained with K bins (Table 2 trains one per K).
        num_freqs=(16,) if paper else (8, 4),
    ))
    # Baseline rows, same clips and code (gid_jax/eval/methods.py): I0 repeated, true motion
    # through the renderer, the model's motion by plain softmax splatting, one fixed motion map.
    c.baselines = ("still", "true_motion", "splat", "fixed_map") if paper else ()
    c.fixed_map_source = "train"            # the fixed map: mean amplitudes of "train" or "test"
    c.fixed_map_examples = 256              # ... over at most this many examples
    c.keep_videos = False                   # write every generated clip to OUT/videos/ (mp4)
    c.report_clips = 0                      # clips per row kept as GIFs for --report (it sets 3)
    c.plots = True
    c.seed = 0
    c.num_videos = -1 if paper else 2      # test videos per cell (-1: the whole split; NOT RECOVERED)

    # Metrics (docs/method.md §9.1)
    m = c.metrics = ml_collections.ConfigDict()
    m.num_frames = 150 if paper else 40      # real clip length (<= what the video has left)
    m.crop = (128, 256) if paper else (32, 64)   # (H, W): 256x128 center crop from 256x160
    m.fvd_windows = (16, 32)                 # FVD / FVD32, DTFVD / DTFVD32
    m.fvd_stride = -1                        # -1: non-overlapping windows (NOT RECOVERED)
    m.sliding_fid_window = 30
    m.sliding_dtfvd_window = 16
    m.sliding_stride = 1 if paper else 5
    m.kid_subsets = 100                      # KID defaults of Bińkowski et al.
    m.kid_subset_size = 1000                 # (capped at the number of frames)
    m.report_kid_x100 = True                 # the paper reports KID x 100
    # Feature-network weight files; "" = the packaged default (see gid_jax/eval/__init__.py).
    m.inception_weights = ""
    m.i3d_weights = ""
    m.dtdb_i3d_weights = ""                  # I3D trained on the DTDB: user-provided only
    m.inception_batch_size = 32 if paper else 4
    m.i3d_batch_size = 4 if paper else 1
    return c
