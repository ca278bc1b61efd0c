"""The video loop: the loop constraint of motion self-guidance (docs/method.md §7.2, Eqs.
7.1-7.2) and the seam metrics of a looping video. (The training loop is gid_jax/train/trainer.py.)

L_g = ||F_T - F_1||_1 + ||∇F_T - ∇F_1||_1: each pixel's position and velocity at the last frame
should match those at the first frame, so that the video can play in a seamless loop. We read ∇F
as the temporal derivative ("velocity" in the text), taken as the one-frame difference inside the
clip at each end: F[1] - F[0] at the start and F[-1] - F[-2] at the end. Norms are averaged over
pixels (summed over x, y) so the guidance weight does not depend on the resolution (our choice).

Measuring a loop: a T-frame video from `to_trajectories(sv, T)` is already exactly periodic, the
wrap F[T-1] → F[0] being just another step, so |F[T-1] - F[0]| (`loop_seam`) is not a seam
error: it is one step of the motion, and driving it to zero puts a duplicated frame, a pause, at
the wrap. `seam_ratios` is the metric to report: it compares the wrap step and acceleration with
the ones inside the clip (≈ 1 seamless, ≫ 1 a jump, step ratio ≪ 1 a pause).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

MOVING_FRACTION = 0.05   # default moving pixels: mean in-clip step > 5% of the largest


def loop_seam(traj: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Position and velocity jumps between the last and first frame of `(..., T, H, W, 2)`.

    The guidance's own measure (Eq. 5); for judging a loop use `seam_ratios`. Returns two
    arrays of shape `(...)`: the mean over pixels of |F[-1] - F[0]|_1 and of
    |(F[-1] - F[-2]) - (F[1] - F[0])|_1, in pixels and pixels per frame.
    """
    traj = jnp.asarray(traj)
    if traj.ndim < 4 or traj.shape[-1] != 2 or traj.shape[-4] < 3:
        raise ValueError(f"trajectories must have shape (..., T>=3, H, W, 2), got {traj.shape}")
    first, second, last, before_last = (traj[..., i, :, :, :] for i in (0, 1, -1, -2))
    position = jnp.abs(last - first).sum(-1).mean((-2, -1))
    velocity = jnp.abs((last - before_last) - (second - first)).sum(-1).mean((-2, -1))
    return position, velocity


def loop_loss(traj: jnp.ndarray) -> jnp.ndarray:
    """Differentiable loop loss `(...)`: position jump + velocity jump (see `loop_seam`)."""
    position, velocity = loop_seam(traj)
    return position + velocity


def _median_ratio(num, den) -> float:
    return float(num / den) if den > 0 else (float("inf") if num > 0 else float("nan"))


def seam_ratios(traj, moving_mask=None, moving_fraction: float = MOVING_FRACTION) -> dict:
    """How the wrap of a looping video compares with its other frame steps (numpy, not traced).

    `traj` `(N, H, W, 2)`: displacements of each frame-0 pixel over a video meant to play in a
    loop (frame N is frame 0 again). With |·| the Euclidean norm over (x, y):
      * wrap step |F[0] - F[N-1]| vs the in-clip steps |F[n+1] - F[n]|, n = 0..N-2;
      * wrap accelerations |F[1] - 2F[0] + F[N-1]| and |F[0] - 2F[N-1] + F[N-2]| (the two second
        differences spanning the wrap) vs the in-clip |F[n+1] - 2F[n] + F[n-1]|.
    Each ratio is a median over the moving pixels (and frames) of the wrap quantity over the
    median of the in-clip one. Ratios of pooled medians rather than medians of per-pixel ratios:
    in a seamless periodic video the wrap is one of N equivalent steps, so across pixels (whose
    phases differ) it is distributed like the in-clip steps and the ratio is ~1; no division by
    one pixel's near-zero motion happens, and the medians ignore a few outlier pixels. Caveat: if
    the whole scene moves in one phase, the wrap step measures the speed at that point of the
    cycle (a perfect single-sinusoid loop wrapped at a turning point reads slow).

    Moving pixels: `moving_mask` `(H, W)` if given, else the pixels whose mean in-clip step
    exceeds `moving_fraction` (5%) of the largest. Returns floats: `step_ratio`, `accel_ratio`,
    the medians `wrap_step`, `clip_step`, `wrap_accel`, `clip_accel` (pixels, pixels per frame
    per frame) and `moving_pixels` (count); ratios are nan when nothing moves.
    A seamless loop has both ratios ≈ 1; a jump ≫ 1; a pause (frames held at the wrap) has
    step ratio ≪ 1 (its accel ratio is typically > 1: the motion stops abruptly).
    """
    f = np.asarray(traj, np.float64)
    if f.ndim != 4 or f.shape[-1] != 2 or f.shape[0] < 4:
        raise ValueError(f"trajectories must have shape (N>=4, H, W, 2), got {f.shape}")
    norm = lambda v: np.sqrt(np.sum(np.square(v), axis=-1))   # noqa: E731
    clip_step = norm(f[1:] - f[:-1])                                     # (N-1, H, W)
    wrap_step = norm(f[0] - f[-1])[None]                                 # (1, H, W)
    clip_accel = norm(f[2:] - 2.0 * f[1:-1] + f[:-2])                    # (N-2, H, W)
    wrap_accel = np.stack([norm(f[1] - 2.0 * f[0] + f[-1]), norm(f[0] - 2.0 * f[-1] + f[-2])])
    if moving_mask is None:
        mean_step = clip_step.mean(axis=0)
        moving = mean_step > moving_fraction * mean_step.max() if mean_step.max() > 0 else (
            np.zeros(mean_step.shape, bool))
    else:
        moving = np.asarray(moving_mask, bool)
        if moving.shape != f.shape[1:3]:
            raise ValueError(f"moving_mask must have shape {f.shape[1:3]}, got {moving.shape}")
    out = {"moving_pixels": int(moving.sum())}
    if not moving.any():
        nan = float("nan")
        return {**out, "step_ratio": nan, "accel_ratio": nan, "wrap_step": nan, "clip_step": nan,
                "wrap_accel": nan, "clip_accel": nan}
    for name, values in (("wrap_step", wrap_step), ("clip_step", clip_step),
                         ("wrap_accel", wrap_accel), ("clip_accel", clip_accel)):
        out[name] = float(np.median(values[:, moving]))
    out["step_ratio"] = _median_ratio(out["wrap_step"], out["clip_step"])
    out["accel_ratio"] = _median_ratio(out["wrap_accel"], out["clip_accel"])
    return out
