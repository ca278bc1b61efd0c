"""Preprocessing config: videos → spectral-volume and renderer-pair datasets (docs/method.md §8).

    get_config("paper")  # 256x160, 30 fps, T=150 frames from every 10th start frame, K=16
    get_config("tiny")   # 64x40, T=30, K=8: CPU tests in seconds
    get_config("paper,k=8")  # the paper's recipe with K=8 bins (Table 2's K ablation)

K lives here only: the spectra are cut to K bins when the data are made, and the LDM stages
take K from the prepared data (`gid_jax.train.ldm_task.resolve_config`), so a model trained on
`paper,k=8` data predicts 8 bins with the unchanged stage configs (docs/evaluation.md §4).

Used by `data_pipelines.prepare.prepare(videos_dir, out_dir, config)` and `gid prepare`
(`--config.x=y` overrides any field).
"""

from __future__ import annotations

import ml_collections

from gid_jax.config import parse_variant_k


def get_config(arg: str = "paper") -> ml_collections.ConfigDict:
    arg, k = parse_variant_k(arg, "configs/prepare.py")

    c = ml_collections.ConfigDict()
    c.variant = arg

    # ---- what a training example is (docs/method.md §2.2, §8) --------------------------------
    c.fps = 30.0              # [I] every video is resampled to this rate (nearest frame in time)
    c.width = 256             # [P] training resolution W x H
    c.height = 160
    c.num_frames = 150        # [P] T: start frame I0 + the following 149 frames
    c.stride = 10             # [P] every 10th frame is a start frame
    c.num_freqs = 16          # [P] K kept Fourier bins (0 .. 3.0 Hz at 30 fps)
    # Our choice (docs/method.md §2.1): take the spectrum of the trajectory with its non-looping
    # part removed (`gid_jax.motion.close_loop`), so every spectral volume plays as a seamless
    # loop; False = the paper's FFT of the raw trajectory, whose wrap jumps.
    c.close_loops = True
    # Decoding stops after this many frames (at `fps`) so a long video never fills memory:
    # 1800 frames = 60 s; 0 = no limit. NOT RECOVERED.
    c.max_frames_per_video = 1800
    c.flow_backend = ""       # "" = gid_jax.flow's default (the coarse-to-fine method of docs/method.md §8)
    # "flow": trajectories by optical flow (the paper; any video). "ground_truth": the exact
    # motion data_pipelines.synth writes beside each procedural clip (NAME.npz), from frame 0 only.
    # "auto": the exact motion where a clip has it, optical flow for the others (real footage
    # mixed with procedural clips).
    c.motion_source = "flow"

    # ---- filters (docs/method.md §8, final version) ------------------------------------------
    # W(p) = mean over t=1..T-1 of |F_t(p)| (pixels). Camera motion: drop the clip if at least
    # `camera_motion_fraction` of the pixels have W > `camera_motion_threshold_px`.
    c.camera_motion_threshold_px = 1.0
    c.camera_motion_fraction = 0.95
    # Static scene: drop the clip if the mean of W over the image is below this.
    c.static_threshold_px = 1.0

    # ---- renderer pairs (docs/method.md §6) ---------------------------------------------------
    c.pairs_per_clip = 3      # NOT RECOVERED: target frames t sampled per kept start frame
    c.seed = 0                # pair sampling is a pure function of (seed, video, start frame)

    # ---- splits ---------------------------------------------------------------------------------
    c.test_fraction = 0.1     # [P] 10% of the videos held out (by a hash of the relative path)

    # ---- storage --------------------------------------------------------------------------------
    # Spectral volume on disk: "float16" (default; measured error far below optical-flow error,
    # see data_pipelines/prepare.py), "int8_sqrt" (half the size again, per-example per-frequency
    # scale + int8 of sign*sqrt), or "float32" (exact).
    c.sv_encoding = "float16"
    c.tensor_encoding = "zlib"  # tfds.features.Encoding for the tensors: "zlib" or "bytes"
    c.keep_cache = True         # keep OUT/cache (per-video flow results) after a successful run

    # ---- statistics (docs/method.md §3) ---------------------------------------------------------
    c.percentile = 95.0
    c.magnitude = "component"   # FrequencyNormalizer(magnitude=...): "component" or "complex"

    # ---- Beam (local DirectRunner defaults; any --runner given on the command line wins) -------
    c.num_workers = 0           # DirectRunner workers; 0 = all CPU cores
    c.direct_running_mode = "multi_processing"  # or "multi_threading" / "in_memory"

    if arg == "tiny":
        c.width, c.height = 64, 40
        c.num_frames = 30
        c.stride = 10
        c.num_freqs = 8
        c.max_frames_per_video = 300
        c.pairs_per_clip = 2
        c.flow_backend = "opencv_brox"  # coarse-to-fine variational, ~4 ms per 64x40 pair
        # The paper's 1 px thresholds scaled with the image (64x40 is 1/4 of 256x160, and the
        # procedural scenes' motion scales with size like a resized video's would).
        c.camera_motion_threshold_px = 1.0 * c.height / 160
        c.static_threshold_px = 1.0 * c.height / 160
        c.num_workers = 2
        c.direct_running_mode = "multi_threading"
    if k is not None:
        if k > c.num_frames // 2 + 1:
            raise ValueError(f"configs/prepare.py: k={k}, but T={c.num_frames} frames have "
                             f"{c.num_frames // 2 + 1} Fourier bins")
        c.num_freqs = k
    return c
