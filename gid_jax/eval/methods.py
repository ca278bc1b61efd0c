"""How each row of a `gid eval` table makes its video from a test clip's first frame.

* ``model``: the checkpoint's sampler draws S from I0, the renderer animates I0 by it
  (`Pipeline.render_motion`, exactly what `gid animate` does without looping);
* ``splat`` (baseline): the same sample, but frames made by plain softmax splatting of I0 by
  F_t with Z = splat_z_scale · W and no synthesis network; holes (no source pixel lands) keep
  I0's pixel. What the synthesis network adds;
* ``true_motion`` (baseline): the spectral volume measured from the real clip, through the
  renderer: the renderer's ceiling given the motion representation (K bins, period T);
* ``fixed_map`` (baseline): one image-independent S for every clip (`clips.fixed_map_sv`, the
  mean per-bin amplitude of training examples), through the renderer: what image
  conditioning adds;
* ``still`` (baseline): I0 repeated (zero motion).

Every method makes as many frames as the real clip has, at its frame rate: frame i is the
Fourier series at time i · speed model frames, speed = model fps / clip fps (1 when the data
was prepared at the model's rate). Past the period T the series repeats, as in `gid animate`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from gid_jax.models.splatting import softmax_splat

MODEL = "model"
BASELINES = ("still", "true_motion", "splat", "fixed_map")
METHODS = (MODEL, *BASELINES)
LABELS = {"model": "model", "splat": "predicted motion, softmax splatting (no synthesis)",
          "true_motion": "true motion, our renderer", "fixed_map": "fixed motion map, our renderer",
          "still": "still image repeated (zero motion)"}
SPLAT_CHUNK = 8


def speed_for(pipe, clip_fps: float) -> float:
    return float(pipe.settings.fps) / float(clip_fps)


def trajectories(pipe, sv, num_frames: int, speed: float) -> np.ndarray:
    """F (n, H, W, 2): the displacements the video of ``sv`` plays (no looping)."""
    return pipe.motion_texture(np.asarray(sv, np.float32), int(num_frames), speed)


def render(pipe, image, sv, num_frames: int, speed: float, seed: int) -> np.ndarray:
    """Frames (n, H, W, 3) in [0, 1] from the pipeline's renderer."""
    return pipe.render_motion(image, np.asarray(sv, np.float32), int(num_frames), speed, seed=seed)


@jax.jit
def _splat_chunk(image, flows, z):
    n = flows.shape[0]
    feat = jnp.concatenate([image, jnp.ones(image.shape[:2] + (1,), image.dtype)], axis=-1)
    warped = softmax_splat(jnp.broadcast_to(feat, (n,) + feat.shape), flows,
                           jnp.broadcast_to(z, (n,) + z.shape))
    rgb = jnp.clip(warped[..., :3], 0.0, 1.0)
    return jnp.where(warped[..., 3:] > 0, rgb, image[None])


def splat(pipe, image, sv, num_frames: int, speed: float) -> np.ndarray:
    """Frames (n, H, W, 3): softmax splatting of I0 by the motion of ``sv``, holes kept as I0
    (`gid_jax.eval.learning.renderer_metrics`' ``splat_filled``), in fixed-size chunks."""
    traj = trajectories(pipe, sv, num_frames, speed)
    weight = pipe.motion_weight(np.asarray(sv, np.float32))
    scale = float(getattr(pipe.renderer, "splat_z_scale", 1.0)) if pipe.renderer is not None else 1.0
    z = jnp.asarray(scale * weight, jnp.float32)[..., None]
    image = jnp.asarray(image, jnp.float32)
    out = []
    for s in range(0, len(traj), SPLAT_CHUNK):
        chunk = traj[s:s + SPLAT_CHUNK]
        pad = SPLAT_CHUNK - len(chunk)
        chunk = np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:], chunk.dtype)])
        out.append(np.asarray(_splat_chunk(image, jnp.asarray(chunk), z))[:SPLAT_CHUNK - pad])
    return np.concatenate(out)


def still(image, num_frames: int) -> np.ndarray:
    return np.repeat(np.asarray(image, np.float32)[None], int(num_frames), axis=0)
