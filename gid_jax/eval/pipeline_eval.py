"""`gid eval`: a sweep cell = one trained pipeline × sampler settings, evaluated on a test split.

For every test example of a prepared dataset (its start frame and the spectral volume measured
from the real video), the cell's pipeline samples a spectral volume and is scored in motion
space (`motion_metrics`: per-frequency errors, endpoint error of the motion textures, loop
seam) and by the learning metrics (`gid_jax.eval.learning`, keys ``learn_*``: localisation AUC
of the amplitude map against the pixels moving in the measured spectral volume, amplitude ratio,
spectrum log error, own-scene amplitude correlation, image dependence, and over
``config.diversity_seeds`` samples of the first ``config.diversity_videos`` images, amplitude
agreement and phase diversity; plus two references: ``learn_auc_fixed_map``, the AUC of the
other test scenes' mean amplitude map, and ``learn_image_dependence_truth``). The `num_freqs`
axis keeps only the first K bins of the sample (an inference-time K
ablation). The renderer is scored on the test split's frame pairs given the real motion:
PSNR/SSIM of I_t rendered from I0 and the measured flow I0→I_t. Distribution metrics
(FID/KID/FVD/DTFVD) need sets of rendered and real clips: see
`gid_jax.eval.video_windows.evaluate_videos`.
"""

from __future__ import annotations

import numpy as np

from gid_jax.eval import learning
from gid_jax.eval.image_metrics import frame_metrics
from gid_jax.eval.motion_metrics import motion_metrics

DIVERSITY_SEED_STRIDE = 100_003   # extra samples of image i use seed + i + s * stride, s >= 1


def test_examples(data_dir: str, split: str, limit: int = -1) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image (H,W,3) in [0,1], spectral volume (K,H,W,4) in pixels) pairs of a prepared split."""
    from data_pipelines.training_input import make_dataset

    it = make_dataset(data_dir, 1, 0, augment=None, shuffle_buffer=0, repeat=False,
                      drop_remainder=False, split=split, process_index=0, process_count=1)
    examples = []
    for batch in it:
        examples.append((batch["image"][0], batch["spectral_volume"][0]))
        if 0 < limit <= len(examples):
            break
    if not examples:
        raise ValueError(f"{data_dir}: split {split!r} has no examples")
    return examples


def test_pairs(data_dir: str, split: str, limit: int = -1) -> list[dict]:
    """Renderer pairs (I0, I_t, flow I0→I_t, W) of a prepared split, unflipped, in order."""
    from data_pipelines.training_input import make_pairs_dataset

    it = make_pairs_dataset(data_dir, 1, 0, flip_prob=0.0, shuffle_buffer=0, repeat=False,
                            drop_remainder=False, split=split, process_index=0, process_count=1)
    pairs = []
    for batch in it:
        pairs.append({k: batch[k][0] for k in ("image", "target_image", "flow", "mean_motion")})
        if 0 < limit <= len(pairs):
            break
    return pairs


def make_cell_evaluator(config):
    """`evaluate_cell(cell) -> {metric: float}` for `gid_jax.eval.sweep.run_sweep`."""
    from gid_jax.pipeline import Pipeline

    examples = test_examples(config.data_dir, config.split, int(config.num_videos))
    pairs = test_pairs(config.data_dir, config.split, int(config.num_videos))
    masks = [learning.moving_mask_from_sv(sv) for _, sv in examples]
    num_seeds = int(config.get("diversity_seeds", 2))
    num_diverse = min(len(examples), int(config.get("diversity_videos", 2)))
    pipelines: dict[str, Pipeline] = {}
    rendering: dict[str, dict] = {}   # depends on the checkpoint only, not on sampler settings

    def render_scores(pipe) -> dict:
        frames = [pipe.render(p["image"], p["flow"][None], p["mean_motion"][..., 0], batch_frames=1)[0]
                  for p in pairs]
        targets = [p["target_image"] for p in pairs]
        scores = frame_metrics(np.stack(frames), np.stack(targets))
        return {f"render_{name}": float(value) for name, value in scores.items()}

    def evaluate_cell(cell: dict) -> dict:
        path = cell["checkpoint"]
        if path not in pipelines:
            pipelines[path] = Pipeline.load(path)
        pipe = pipelines[path]
        k = int(cell.get("num_freqs", pipe.ldm.num_freqs))
        if not 1 <= k <= pipe.ldm.num_freqs:
            raise ValueError(f"num_freqs={k}: the model at {path} predicts {pipe.ldm.num_freqs} bins")
        settings = {name: cell[name] for name in ("num_steps", "guidance_weight", "solver") if name in cell}

        def sample(image, seed):
            sv = pipe.predict_spectral_volume(image, seed=seed, **settings)
            sv[k:] = 0.0
            return sv

        rows, preds, truths, diverse = [], [], [], []
        for i, (image, true_sv) in enumerate(examples):
            sv = sample(image, int(config.seed) + i)
            truth = true_sv[:pipe.ldm.num_freqs]
            rows.append(motion_metrics(sv, truth, num_frames=pipe.settings.period))
            preds.append(sv)
            truths.append(truth)
            if i < num_diverse and num_seeds >= 2:
                diverse.append([sv] + [sample(image, int(config.seed) + i + s * DIVERSITY_SEED_STRIDE)
                                       for s in range(1, num_seeds)])
        if path not in rendering:
            rendering[path] = render_scores(pipe) if pairs else {}
        return {**{name: float(np.mean([r[name] for r in rows])) for name in rows[0]},
                **learning_scores(preds, truths, masks, diverse), **rendering[path]}

    return evaluate_cell


def learning_scores(preds, truths, masks, diverse=None) -> dict:
    """``learn_*`` metrics of a cell (finite values only: e.g. image dependence needs 2 videos)."""
    scores = {f"learn_{name}": v
              for name, v in learning.score_predictions(preds, truths, masks, diverse or None).items()}
    if len(truths) >= 2:
        fixed = [learning.fixed_amplitude_sv(truths, i) for i in range(len(truths))]
        scores["learn_auc_fixed_map"] = learning.score_predictions(fixed, truths, masks)["auc"]
        scores["learn_image_dependence_truth"] = learning.image_dependence(truths, truths)
    return {name: float(v) for name, v in scores.items() if v is not None and np.isfinite(v)}
