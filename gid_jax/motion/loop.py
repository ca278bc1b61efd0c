"""The loop constraint of motion self-guidance (PAPER.md 7.2, Eq. 5).

L_g = ||F_T - F_1||_1 + ||∇F_T - ∇F_1||_1: each pixel's position and velocity at the last frame
should match those at the first frame, so that the video can play in a seamless loop. We read ∇F
as the temporal derivative ("velocity" in the text), taken as the one-frame difference inside the
clip at each end: F[1] - F[0] at the start and F[-1] - F[-2] at the end. Norms are averaged over
pixels (summed over x, y) so the guidance weight does not depend on the resolution (our choice).
"""

from __future__ import annotations

import jax.numpy as jnp


def loop_seam(traj: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Position and velocity jumps between the last and first frame of `(..., T, H, W, 2)`.

    Returns two arrays of shape `(...)`: the mean over pixels of |F[-1] - F[0]|_1 and of
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
