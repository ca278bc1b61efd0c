"""Interactive dynamics session: a drag-and-release simulated frame by frame (docs/method.md §7.3).

`InteractiveSession` holds one still image, its spectral volume ``S`` (the image-space modal basis)
and the complex modal state ``(q, q̇)`` of the K modes. A drag sets ``q(0)`` with
`gid_jax.motion.initial_modal_state` (supplement Eqs. 9-10, scaled so that at release the dragged
pixel sits exactly at the drag's end) and ``q̇(0) = 0``; every `step` then advances the modes by
one frame with the same semi-implicit Euler update as `gid_jax.motion.simulate_modal`
(supplement Eqs. 6-8, m = 1, δt = 1/fps)::

    q̇ ← q̇ + δt (−γ q̇ − ω² q),    q ← q + δt q̇,    ω_k = 2π k fps / period,  γ_k = α + β ω_k²

and the displacement field is ``D(p) = Re Σ_k S_k(p) q_k``. The DC band has ω = 0 and no
restoring force: `initial_modal_state` leaves it at 0, so it never moves. Because the state is
kept, a web page can ask for frames a few at a time and the frames match `simulate_modal`'s.

Rendering is pluggable: ``render_fn(image (H,W,3), displacement (H,W,2)) -> frame (H,W,3)`` in
[0, 1]; the trained image-based renderer is plugged in there. The default, `SplatRenderer`, needs
no model:

* forward-warp the image with `softmax_splat` by ``D``, with ``Z = z_scale · W / max W`` where
  ``W(p) = mean_{k≥1} ‖S_k(p)‖`` is the mean spectral amplitude of the pixel, a stand-in for the
  renderer's average motion magnitude ``W(p)`` of docs/method.md §6 (moving foreground wins over the
  static background where pixels collide). ``W`` is divided by its maximum so that ``Z`` does not
  depend on the spectral volume's overall scale (our choice);
* holes: where the warp leaves a target pixel empty (disocclusions behind a moving object) the
  original image shows through. The blend weight is the splatted bilinear coverage
  ``c(q) = min(1, Σ_p b(p, q))`` (``sum_splat`` of ones): ``frame = c · warped + (1 − c) · image``,
  so partly covered pixels at the edges of a hole fade instead of showing a hard seam.

Everything on the per-frame path is jitted once per shape (module-level jitted functions, so
sessions of the same size share compilations).
"""

from __future__ import annotations

import threading
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from gid_jax.models.splatting import softmax_splat, sum_splat
from gid_jax.motion.modal import (DAMPING_ALPHA, DAMPING_BETA, initial_modal_state, stable_substeps,
                                  mode_angular_frequencies)
from gid_jax.motion.spectral import NUM_FRAMES, amplitude

__all__ = ["InteractiveSession", "SplatRenderer", "render_drag_response", "write_drag_response"]

RenderFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
MAX_DRAG_IMAGE_SIZES = 4.0   # a drag may be this many image sizes long: more is a bad request


# ----------------------------------------------------------------------------- jitted kernels


@jax.jit
def _advance(q, v, omega, gamma, dt, n):
    """``n`` semi-implicit Euler steps of q̈ + γq̇ + ω²q = 0 (same update as `integrate_modes`)."""

    def body(_, state):
        q, v = state
        v = v + dt * (-gamma * v - omega**2 * q)
        q = q + dt * v
        return q, v

    return jax.lax.fori_loop(0, n, body, (q, v))


@jax.jit
def _displacement(q, sv_real, sv_imag):
    """``Re Σ_k S_k q_k``: ``(K,)`` complex, ``(K,H,W,2)`` twice → ``(H,W,2)`` pixels."""
    return (jnp.einsum("k,khwc->hwc", q.real, sv_real)
            - jnp.einsum("k,khwc->hwc", q.imag, sv_imag))


@jax.jit
def _splat_render(image, disp, z):
    """Softmax-splat ``image`` by ``disp`` with importance ``z``; holes show the original image."""
    img, flow = image[None], disp[None]
    warped = softmax_splat(img, flow, z[None])
    coverage = jnp.minimum(sum_splat(jnp.ones_like(img[..., :1]), flow), 1.0)
    return jnp.clip(coverage * warped + (1.0 - coverage) * img, 0.0, 1.0)[0]


@jax.jit
def _displace_and_splat(q, sv_real, sv_imag, image, z):
    return _splat_render(image, _displacement(q, sv_real, sv_imag), z)


def motion_weight(sv) -> jnp.ndarray:
    """``W(p) = mean_{k≥1} ‖S_k(p)‖``, ``(K,H,W,4)`` → ``(H,W,1)`` (DC band left out when K > 1)."""
    amp = amplitude(jnp.asarray(sv, jnp.float32))
    if amp.shape[0] > 1:
        amp = amp[1:]
    return jnp.mean(amp, axis=0)[..., None]


class SplatRenderer:
    """Default ``render_fn``: softmax splatting with ``Z = z_scale · W / max W`` + hole filling."""

    def __init__(self, sv, z_scale: float = 10.0):
        w = motion_weight(sv)
        wmax = float(jnp.max(w))
        self.z_scale = float(z_scale)
        self.z = (self.z_scale * w / wmax) if wmax > 0 else jnp.zeros_like(w)

    def __call__(self, image, displacement):
        return _splat_render(jnp.asarray(image, jnp.float32),
                             jnp.asarray(displacement, jnp.float32), self.z)


# ----------------------------------------------------------------------------- the session


def _as_pair(value, name) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be two numbers, got {value!r}") from None
    if not (np.isfinite(a) and np.isfinite(b)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return a, b


class InteractiveSession:
    """One image + spectral volume + the modal state of a drag-and-release (thread-safe).

    Args:
      image: ``(H,W,3)`` float in [0, 1].
      sv: ``(K,H,W,4)`` spectral volume of the image (the modal basis).
      render_fn: ``(image, displacement (H,W,2)) -> (H,W,3)``; default `SplatRenderer`.
      fps: frames per second of the simulation (δt = 1/fps) and of the frames served.
      alpha, beta: Rayleigh damping, γ_k = alpha + beta ω_k² (paper: 0.4, 0.08).
      period: clip length (frames) the K bins of ``sv`` refer to: ω_k = 2π k fps / period.
      renderer_name: the render mode the page shows; default "splat preview" without
        ``render_fn``, else "learned renderer" (`gid interact` plugs in the trained renderer).
    """

    def __init__(self, image, sv, render_fn: Optional[RenderFn] = None, fps: float = 30.0,
                 alpha: float = DAMPING_ALPHA, beta: float = DAMPING_BETA,
                 period: int = NUM_FRAMES, renderer_name: Optional[str] = None):
        image = np.asarray(image, np.float32)
        sv = np.asarray(sv, np.float32)
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"image must have shape (H, W, 3), got {image.shape}")
        if sv.ndim != 4 or sv.shape[-1] != 4:
            raise ValueError(f"spectral volume must have shape (K, H, W, 4), got {sv.shape}")
        if sv.shape[1:3] != image.shape[:2]:
            raise ValueError(f"spectral volume {sv.shape} and image {image.shape} differ in size")
        if not (np.all(np.isfinite(image)) and np.all(np.isfinite(sv))):
            raise ValueError("image and spectral volume must be finite (found NaN or inf)")
        if not fps > 0 or not period > 0 or alpha < 0 or beta < 0:
            raise ValueError(f"need fps > 0, period > 0, alpha >= 0, beta >= 0; got "
                             f"fps={fps}, period={period}, alpha={alpha}, beta={beta}")
        self.image = image
        self.sv = sv
        self.height, self.width = image.shape[:2]
        self.num_freqs = sv.shape[0]
        self.fps, self.alpha, self.beta, self.period = float(fps), float(alpha), float(beta), period
        self.dt = 1.0 / self.fps
        omega = mode_angular_frequencies(self.num_freqs, self.fps, period)
        gamma = self.alpha + self.beta * omega.astype(np.float64) ** 2
        self.substeps = stable_substeps(omega, gamma, self.dt)   # per frame, for stiff damping
        self.omega = jnp.asarray(omega)
        self.gamma = jnp.asarray(gamma, jnp.float32)
        self._sv_real = jnp.asarray(sv[..., :2])
        self._sv_imag = jnp.asarray(sv[..., 2:])
        # per-mode largest |S_k(p)| over the image: bounds how far mode k can move any pixel
        self._mode_peak = np.asarray(jnp.max(amplitude(jnp.asarray(sv)), axis=(1, 2)), np.float64)
        self._image_j = jnp.asarray(image)
        self._default_render = render_fn is None
        self._splat = SplatRenderer(sv) if render_fn is None else None
        self.render_fn: RenderFn = render_fn if render_fn is not None else self._splat
        self.renderer_name = renderer_name or ("splat preview" if render_fn is None
                                               else "learned renderer")
        # longer drags are refused: far past the image they only overflow the modal state
        self.max_drag = MAX_DRAG_IMAGE_SIZES * max(self.width, self.height)
        self._lock = threading.RLock()
        self.reset()

    # -- state -------------------------------------------------------------------------------

    def reset(self) -> None:
        """Back to rest: no motion, the still image."""
        with self._lock:
            self.q = jnp.zeros(self.num_freqs, jnp.complex64)
            self.v = jnp.zeros(self.num_freqs, jnp.complex64)
            self.frame_index = 0
            self.last_drag: Optional[dict] = None

    def drag(self, point, drag) -> None:
        """Drag pixel ``point=(x, y)`` by ``drag=(dx, dy)`` pixels and release it at rest."""
        x, y = _as_pair(point, "point")
        dx, dy = _as_pair(drag, "drag")
        if not (0 <= round(x) < self.width and 0 <= round(y) < self.height):
            raise ValueError(f"drag point ({x:g}, {y:g}) lies outside the "
                             f"{self.width}x{self.height} image")
        if np.hypot(dx, dy) > self.max_drag:
            raise ValueError(f"drag ({dx:g}, {dy:g}) is longer than {self.max_drag:g} pixels "
                             f"({MAX_DRAG_IMAGE_SIZES:g} times the image size)")
        q0 = np.asarray(initial_modal_state(self.sv, (x, y), (dx, dy)))
        if not np.all(np.isfinite(q0)):   # never keep a state that renders NaN frames
            raise ValueError(f"drag ({dx:g}, {dy:g}) at ({x:g}, {y:g}) gives a non-finite "
                             "modal state")
        with self._lock:
            self.q = jnp.asarray(q0, jnp.complex64)
            self.v = jnp.zeros_like(self.q)
            self.frame_index = 0
            self.last_drag = {"x": x, "y": y, "dx": dx, "dy": dy}

    def step(self, n_frames: int = 1) -> None:
        """Advance the simulation by ``n_frames`` frames of δt = 1/fps."""
        n = int(n_frames)
        if n < 0:
            raise ValueError(f"n_frames must be >= 0, got {n_frames}")
        with self._lock:
            if n:
                self.q, self.v = _advance(self.q, self.v, self.omega, self.gamma,
                                          jnp.float32(self.dt / self.substeps),
                                          jnp.int32(n * self.substeps))
                self.frame_index += n

    def modal_state(self) -> tuple[np.ndarray, np.ndarray]:
        """Current complex modal coordinates and velocities, ``(K,)`` each."""
        with self._lock:
            return np.asarray(self.q), np.asarray(self.v)

    def motion(self) -> float:
        """Upper bound (pixels) on how far any pixel can still move: Σ_k a_k max_p ‖S_k(p)‖.

        ``a_k = sqrt(|q_k|² + |q̇_k|²/ω_k²)`` is mode k's oscillation amplitude (its energy
        expressed as a displacement); it decays like e^{-γ_k t / 2}. The page stops animating
        once this falls below a fraction of a pixel.
        """
        q, v = self.modal_state()
        omega = np.asarray(self.omega, np.float64)
        safe = np.where(omega > 0, omega, 1.0)
        amp = np.sqrt(np.abs(q) ** 2 + np.where(omega > 0, np.abs(v) ** 2 / safe**2, 0.0))
        return float(np.sum(amp * self._mode_peak))

    # -- output ------------------------------------------------------------------------------

    def displacement(self) -> np.ndarray:
        """Current displacement field ``(H,W,2)`` in pixels (x right, y down)."""
        with self._lock:
            return np.asarray(_displacement(self.q, self._sv_real, self._sv_imag))

    def frame(self) -> np.ndarray:
        """The current frame ``(H,W,3)`` float32 in [0, 1]."""
        with self._lock:
            if self._default_render:
                out = _displace_and_splat(self.q, self._sv_real, self._sv_imag, self._image_j,
                                          self._splat.z)
            else:
                disp = _displacement(self.q, self._sv_real, self._sv_imag)
                out = self.render_fn(self.image, np.asarray(disp))
            return np.asarray(out, np.float32)

    def next_frames(self, n: int) -> np.ndarray:
        """The current frame and the ``n - 1`` after it, ``(n,H,W,3)``; the state moves ``n`` on."""
        n = int(n)
        if n < 1:
            raise ValueError(f"need n >= 1 frames, got {n}")
        with self._lock:
            frames = []
            for _ in range(n):
                frames.append(self.frame())
                self.step(1)
            return np.stack(frames)

    def warmup(self) -> None:
        """Compile the per-frame path now (first frame otherwise pays for it)."""
        with self._lock:
            q, v, idx = self.q, self.v, self.frame_index
            self.frame()
            self.step(1)
            self.q, self.v, self.frame_index = q, v, idx


# ----------------------------------------------------------------------------- headless


def render_drag_response(session: InteractiveSession, point, drag, num_frames: int) -> np.ndarray:
    """Frames ``(num_frames,H,W,3)`` in [0, 1] of the scene's response to one drag-and-release.

    Frame 0 is the moment of release (the dragged pixel displaced by ``drag``); frame n is n/fps
    seconds later. The session is left at rest afterwards.
    """
    num_frames = int(num_frames)
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    session.drag(point, drag)
    try:
        return session.next_frames(num_frames)
    finally:
        session.reset()


def write_drag_response(path, session: InteractiveSession, point, drag, num_frames: int):
    """`render_drag_response` written as an mp4 at the session's fps; returns the path."""
    from data_pipelines.video_io import write_video

    frames = render_drag_response(session, point, drag, num_frames)
    return write_video(path, frames, session.fps)
