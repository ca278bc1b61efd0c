"""The inference pipeline: a still image in, a spectral volume and an animated video out.

    pipe = gid_jax.Pipeline.load("runs/demo/pipeline")      # or an exported bundle
    frames = pipe.animate(image, loop=True, num_frames=150, seed=0)   # (T, H, W, 3) in [0, 1]

image → ResNet features → DDIM (+ classifier-free guidance, + motion self-guidance for loops)
over the B·K latent frequency slices → VAE decode → denormalise → spectral volume S (K,H,W,4)
→ motion texture F_t (inverse FFT at any, also fractional, times; scaled for magnification)
→ the renderer warps the image's feature pyramid by F_t with softmax splatting → frames.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from data_pipelines.video_io import load_image
from gid_jax import motion
from gid_jax.diffusion import (NoiseSchedule, classifier_free_guidance, ddim_sample,
                               dpm_solver_pp_sample)
from gid_jax.models.ldm import MotionLDM
from gid_jax.models.renderer import Renderer, average_motion_magnitude

PIPELINE_FILE = "pipeline.json"
SOLVERS = ("ddim", "dpm_solver_pp")


@dataclasses.dataclass
class SamplerSettings:
    """How spectral volumes are sampled (PAPER.md 4.3, 7.2); every field overridable per call."""

    num_steps: int = 250            # DDIM steps of the main results (paper: 250)
    solver: str = "ddim"            # "ddim" or "dpm_solver_pp" (much fewer steps)
    eta: float = 0.0                # DDIM η; NOT RECOVERED for v3 (v1 ablations used 0)
    guidance_weight: float = 1.75   # classifier-free guidance w (PAPER.md 7.2)
    loop_weight: float = 200.0      # self-guidance u on the L1-norm loop loss (PAPER.md 7.2)
    self_recurrence: int = 2        # universal-guidance recurrences when looping (PAPER.md 7.2)
    period: int = motion.NUM_FRAMES  # T the spectra describe (150 frames)
    fps: float = 30.0


class Pipeline:
    """Trained LDM + renderer with everything needed to animate an image."""

    def __init__(self, ldm: MotionLDM, renderer: Renderer, image_size: tuple[int, int],
                 schedule: NoiseSchedule, settings: SamplerSettings | None = None):
        self.ldm, self.renderer = ldm, renderer
        self.height, self.width = (int(v) for v in image_size)
        self.schedule = schedule
        self.settings = settings or SamplerSettings()
        self._samplers: dict = {}

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path: str | os.PathLike) -> "Pipeline":
        """From a pipeline directory (`pipeline.json` naming the LDM and renderer training runs)
        or an exported bundle (`manifest.json`; see gid_jax/export.py)."""
        path = Path(path)
        if (path / "manifest.json").is_file():
            from gid_jax.export import load_bundle

            return load_bundle(path)
        spec_path = path / PIPELINE_FILE
        if not spec_path.is_file():
            raise FileNotFoundError(f"{path}: no {PIPELINE_FILE} here (expected a pipeline "
                                    "directory from `gid quickstart` or a run layout; see README)")
        try:
            spec = json.loads(spec_path.read_text())
            ldm_dir, renderer_dir = (path / spec[key] for key in ("ldm", "renderer"))
        except (KeyError, TypeError, json.JSONDecodeError) as err:
            raise ValueError(f"{spec_path}: invalid pipeline file ({err})") from None
        ldm_cfg = _run_config(ldm_dir)
        settings = SamplerSettings(**{"period": int(ldm_cfg.model.get("period", motion.NUM_FRAMES)),
                                      "fps": float(ldm_cfg.model.get("fps", 30.0)),
                                      **spec.get("sampler", {})})
        renderer_cfg = _run_config(renderer_dir)
        from gid_jax.train.checkpoint import restore_model
        from gid_jax.train.ldm_task import noise_schedule

        rngs = nnx.Rngs(0)
        ldm = MotionLDM(ldm_cfg.model, num_freqs=int(ldm_cfg.model.num_freqs),
                        stage=int(ldm_cfg.stage), rngs=rngs)
        restore_model(ldm_dir, ldm)
        renderer = Renderer(renderer_cfg.model, rngs=rngs)
        restore_model(renderer_dir, renderer)
        return cls(ldm, renderer, tuple(ldm_cfg.model.image_size), noise_schedule(ldm_cfg), settings)

    @staticmethod
    def write_spec(directory: str | os.PathLike, ldm_workdir, renderer_workdir, **sampler) -> Path:
        """Writes a pipeline directory's `pipeline.json` (paths stored relative to it)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        spec = {"ldm": os.path.relpath(ldm_workdir, directory),
                "renderer": os.path.relpath(renderer_workdir, directory), "sampler": sampler}
        tmp = directory / f".{PIPELINE_FILE}.tmp"
        tmp.write_text(json.dumps(spec, indent=2))
        os.replace(tmp, directory / PIPELINE_FILE)
        return directory

    # ------------------------------------------------------------------ motion
    def prepare_image(self, image) -> np.ndarray:
        """Any path or array → RGB float32 `(H, W, 3)` at the model's size (cover + centre crop)."""
        return load_image(image, (self.width, self.height))

    def predict_spectral_volume(self, image, seed: int = 0, loop: bool = False, **overrides) -> np.ndarray:
        """Samples S `(K, H, W, 4)` in pixels for one image (see `predict_spectral_volumes`)."""
        return self.predict_spectral_volumes(self.prepare_image(image)[None], seed, loop, **overrides)[0]

    def predict_spectral_volumes(self, images: np.ndarray, seed: int = 0, loop: bool = False,
                                 **overrides) -> np.ndarray:
        """Batched sampling: `(B, H, W, 3)` images in [0, 1] → `(B, K, H, W, 4)` spectral volumes.

        Deterministic given `seed`; compiled once per (batch, settings).
        """
        s = dataclasses.replace(self.settings, **overrides)
        if s.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {s.solver!r}")
        sampler = self._sampler(s, bool(loop))
        images = jnp.asarray(images, jnp.float32) * 2.0 - 1.0
        return np.array(sampler(self.ldm, images, jax.random.key(int(seed))))   # a writable copy

    def _sampler(self, settings: SamplerSettings, loop: bool):
        """One compiled sampler per (settings, loop); jit adds one per input shape."""
        key = (dataclasses.astuple(settings), loop)
        if key not in self._samplers:
            self._samplers[key] = nnx.jit(functools.partial(
                _sample_spectral_volumes, schedule=self.schedule, settings=settings, loop=loop))
        return self._samplers[key]

    def motion_texture(self, sv, num_frames: int = motion.NUM_FRAMES, speed: float = 1.0,
                       amplitude: float = 1.0) -> np.ndarray:
        """F `(num_frames, H, W, 2)`: the Fourier series at `speed`× time (0.5 = 2× slow motion)
        with every displacement scaled by `amplitude` (magnify > 1, minify < 1)."""
        times = motion.frame_times(num_frames, speed)
        sv = motion.scale_amplitude(jnp.asarray(sv), amplitude)
        return np.asarray(motion.to_trajectories(sv, times=times, period=self.settings.period))

    # ------------------------------------------------------------------ rendering
    def render(self, image, trajectories, motion_weight=None, seed: int = 0,
               batch_frames: int = 16) -> np.ndarray:
        """Frames `(T, H, W, 3)` in [0, 1]: the renderer warps `image` by each F_t.

        `motion_weight` W `(H, W)` (the softmax-splat depth proxy, default mean_t |F_t| of the
        given trajectories); one style noise for the whole video keeps frames consistent.
        """
        image = jnp.asarray(self.prepare_image(image))[None] * 2.0 - 1.0
        traj = jnp.asarray(trajectories, jnp.float32)
        if motion_weight is None:
            motion_weight = average_motion_magnitude(traj)[..., 0]
        weight = jnp.asarray(motion_weight, jnp.float32)[None, :, :, None]
        noise = jax.random.normal(jax.random.key(int(seed) + 1), (1, self.renderer.style_dim))
        frames = []
        for start in range(0, traj.shape[0], batch_frames):
            chunk = traj[start:start + batch_frames]
            pad = batch_frames - chunk.shape[0]     # one compiled shape for every chunk
            chunk = jnp.concatenate([chunk, jnp.zeros((pad,) + chunk.shape[1:], chunk.dtype)])
            out = _render_chunk(self.renderer, image, chunk, weight, noise)
            frames.append(np.asarray(out[:batch_frames - pad]))
        return np.clip((np.concatenate(frames) + 1.0) / 2.0, 0.0, 1.0)

    def frame_renderer(self, sv, seed: int = 0):
        """`render_fn(image, displacement (H,W,2)) -> frame` with the trained renderer, for
        interactive dynamics (`gid_jax.interact`); W comes from the spectral volume's motion."""
        weight = self.motion_weight(sv)

        def render_fn(image, displacement):
            return self.render(image, np.asarray(displacement)[None], weight, seed, batch_frames=1)[0]

        return render_fn

    def motion_weight(self, sv, amplitude: float = 1.0) -> np.ndarray:
        """W `(H, W)` = mean_t |F_t| over one whole period: the softmax-splat depth proxy, the
        same for every frame whatever part of the motion is rendered."""
        full = self.motion_texture(sv, self.settings.period, 1.0, amplitude)
        return np.asarray(average_motion_magnitude(jnp.asarray(full))[..., 0])

    def render_motion(self, image, sv, num_frames: int = motion.NUM_FRAMES, speed: float = 1.0,
                      amplitude: float = 1.0, seed: int = 0) -> np.ndarray:
        """Frames of `image` moving by the spectral volume `sv` (see `motion_texture`)."""
        traj = self.motion_texture(sv, num_frames, speed, amplitude)
        return self.render(image, traj, self.motion_weight(sv, amplitude), seed)

    def animate(self, image, loop: bool = False, num_frames: int = motion.NUM_FRAMES,
                seed: int = 0, amplitude: float = 1.0, speed: float = 1.0, **overrides) -> np.ndarray:
        """The whole pipeline: image → spectral volume → motion texture → frames `(T,H,W,3)`."""
        image = self.prepare_image(image)
        sv = self.predict_spectral_volume(image, seed=seed, loop=loop, **overrides)
        return self.render_motion(image, sv, num_frames, speed, amplitude, seed)


@nnx.jit
def _render_chunk(renderer, image, flows, weight, noise):
    encoded = renderer.encode(image)
    return renderer.synthesize(encoded, flows, jnp.broadcast_to(weight, flows.shape[:3] + (1,)),
                               jnp.broadcast_to(noise, (flows.shape[0], noise.shape[1])))


def _sample_spectral_volumes(ldm: MotionLDM, images, key, *, schedule: NoiseSchedule,
                             settings: SamplerSettings, loop: bool):
    """DDIM / DPM-Solver++ over the B·K latent slices with CFG (+ loop self-guidance);
    `images` in [-1, 1]."""
    s = settings
    b, height, width = images.shape[:3]
    k = ldm.num_freqs
    h, w, c = ldm.latent_shape(height, width)
    features = ldm.denoiser.encode_image(images)
    null = jnp.zeros_like(features)

    def unet(z, t, feats):
        return ldm.denoiser.unet(z, t, None, feats)

    eps_fn = classifier_free_guidance(lambda z, t: unet(z, t, features),
                                      lambda z, t: unet(z, t, null), s.guidance_weight)
    noise_key, sample_key = jax.random.split(key)
    noise = jax.random.normal(noise_key, (b * k, h, w, c))

    def spectral_volume(latents):
        slices = ldm.decode(latents).reshape((b, k, height, width, 4))
        return ldm.denormalize(slices)

    if s.solver == "dpm_solver_pp" and not loop:
        latents = dpm_solver_pp_sample(eps_fn, noise, schedule, s.num_steps)
    else:
        ends = jnp.array([0, 1, s.period - 2, s.period - 1], jnp.float32)

        def loop_loss(latents):   # L_g = ‖F_T − F_1‖₁ + ‖∇F_T − ∇F_1‖₁ over all pixels (Eq. 5)
            traj = motion.to_trajectories(spectral_volume(latents), times=ends, period=s.period)
            return jnp.sum(motion.loop_loss(traj)) * height * width   # per-pixel mean → L1 norm

        latents = ddim_sample(eps_fn, noise, sample_key, schedule, s.num_steps, eta=s.eta,
                              guidance_loss=loop_loss if loop else None,
                              guidance_scale=s.loop_weight if loop else 0.0,
                              self_recurrence=s.self_recurrence if loop else 1)
    return spectral_volume(latents)


def _run_config(workdir: Path) -> ml_collections.ConfigDict:
    path = workdir / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{workdir}: no config.json (not a finished `gid train` run?)")
    return ml_collections.ConfigDict(json.loads(path.read_text()))
