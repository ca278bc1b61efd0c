"""Metrics in motion space that need no pretrained network.

* `spectral_volume_error`: per-frequency error between predicted and reference spectral volumes
  ``(..., K, H, W, 4)`` ([Re x, Re y, Im x, Im y]): the mean over pixels of the norm of the complex
  2-vector difference |S_pred(f, p) - S_ref(f, p)| (`gid_jax.motion.amplitude` of the difference),
  and the same divided by the mean reference amplitude at that frequency.
* `endpoint_error`: mean Euclidean distance between displacements of motion textures
  ``(..., T, H, W, 2)`` (per frame, or overall).
* `loop_seam_metrics`: position and velocity jumps between the last and first frames
  (`gid_jax.motion.loop_seam`).
* `motion_metrics`: all of the above for one predicted/reference spectral volume pair, with the
  motion textures from `gid_jax.motion.to_trajectories`.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from gid_jax.motion import NUM_FRAMES, amplitude, loop_seam, to_trajectories

_EPS = 1e-12


def _check(pred, ref, channels, who, what):
    pred, ref = jnp.asarray(pred, jnp.float32), jnp.asarray(ref, jnp.float32)
    if pred.shape != ref.shape or pred.ndim < 4 or pred.shape[-1] != channels:
        raise ValueError(f"{who}: need two {what} of equal shape (..., {channels}), got "
                         f"{pred.shape} and {ref.shape}")
    return pred, ref


def spectral_volume_error(pred, ref) -> dict:
    """Per-frequency errors ``(..., K)``: ``{"abs": mean_p |ΔS|, "rel": abs / mean_p |S_ref|}``."""
    pred, ref = _check(pred, ref, 4, "spectral_volume_error", "spectral volumes (..., K, H, W, 4)")
    err = jnp.mean(amplitude(pred - ref), axis=(-2, -1))
    scale = jnp.mean(amplitude(ref), axis=(-2, -1))
    return {"abs": err, "rel": err / (scale + _EPS)}


def endpoint_error(pred, ref, per_frame: bool = False):
    """Mean endpoint error of motion textures ``(..., T, H, W, 2)``: ``(...)`` or ``(..., T)``."""
    pred, ref = _check(pred, ref, 2, "endpoint_error", "motion textures (..., T, H, W, 2)")
    epe = jnp.sqrt(jnp.sum(jnp.square(pred - ref), axis=-1))
    return jnp.mean(epe, axis=(-2, -1)) if per_frame else jnp.mean(epe, axis=(-3, -2, -1))


def loop_seam_metrics(traj) -> dict:
    """``{"seam_position": ..., "seam_velocity": ...}`` (pixels, pixels/frame) of ``(..., T, H, W, 2)``."""
    position, velocity = loop_seam(traj)
    return {"seam_position": position, "seam_velocity": velocity}


def motion_metrics(pred_sv, ref_sv, num_frames: int = NUM_FRAMES, period: int | None = None) -> dict:
    """Scalar summary for one pair (mean over leading axes): per-frequency ``sv_err_f{k}`` and
    ``sv_relerr_f{k}``, their means, ``epe`` of the motion textures, seam jumps of the prediction.
    ``period``: the clip length the spectra describe (default ``num_frames``)."""
    period = period or num_frames
    errs = spectral_volume_error(pred_sv, ref_sv)
    out = {}
    ab = np.asarray(errs["abs"]).reshape(-1, errs["abs"].shape[-1]).mean(0)
    rel = np.asarray(errs["rel"]).reshape(-1, errs["rel"].shape[-1]).mean(0)
    for k in range(ab.shape[0]):
        out[f"sv_err_f{k}"] = float(ab[k])
        out[f"sv_relerr_f{k}"] = float(rel[k])
    out["sv_err"] = float(ab.mean())
    out["sv_relerr"] = float(rel.mean())
    tp = to_trajectories(jnp.asarray(pred_sv), num_frames=num_frames, period=period)
    tr = to_trajectories(jnp.asarray(ref_sv), num_frames=num_frames, period=period)
    out["epe"] = float(jnp.mean(endpoint_error(tp, tr)))
    for k, v in loop_seam_metrics(tp).items():
        out[k] = float(jnp.mean(v))
    return out
