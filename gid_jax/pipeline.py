"""The inference pipeline: a still image in, a spectral volume and an animated video out.

    pipe = gid_jax.Pipeline.load("runs/demo/pipeline")      # or an exported bundle
    frames = pipe.animate(image, loop=True, num_frames=150, seed=0)   # (N, H, W, 3) in [0, 1]

image → ResNet features → a diffusion sampler (DDIM, DPM-Solver++ or UniPC; classifier-free
guidance) over the B·K latent frequency slices → VAE decode → denormalise → spectral volume S
(K,H,W,4) → motion texture F_t (the Fourier series at any, also fractional, times; scaled for
magnification) → the renderer warps the image's feature pyramid by F_t with softmax splatting.

Loops (`loop=True`, `SamplerSettings.loop_mode`). The Fourier series is exactly periodic in the
period T the spectra were taken over, and smooth (a finite sum of sinusoids), so a video whose N
frames span a whole number of periods wraps as smoothly as it moves anywhere else. Modes:
  * "periods" (default): play N frames over m = the whole number of periods nearest to N·speed/T
    (at least 1), i.e. at speed m·T/N instead of `speed` (unchanged when N·speed is already a
    multiple of T; `playback_speed` reports it). No guidance, the sample as drawn.
  * "seam_guidance": keep `speed`; when N·speed is not a whole number of periods, DDIM is guided
    so that the frames around the video's real wrap continue the motion: F(j·speed) →
    F(N·speed + j·speed) for j = -1, 0, 1 (position, velocity and acceleration across the wrap).
    Measured on the tiny model (u = 10, 20 steps, N = 45, T = 30): wrap step 3.1 → 2.7x a normal
    one, not yet seamless; u = 100 or 1000 overshoots (5.7x, 7.3x).
  * "paper_guidance": the paper's literal self-guidance (docs/method.md §7.2, Eq. 7.1) on F[T-1] vs F[0].
    With a periodic series F[T-1] → F[0] is an ordinary step, so forcing it to zero puts a pause
    at the wrap; for N ≠ T it does not touch the real seam at all.
The training spectra themselves loop: a clip that does not (drift, a gust) would leave a fast,
Gibbs-smeared transition at t ≡ 0 in its series (wrap step a median 4.2x a normal one on the
procedural clips) that a model would learn and every loop would play; the data recipe removes
it before the transform (`motion.close_loop`, `configs/prepare.py` close_loops; 0.76x after).
Measure loops with `motion.seam_ratios` (≈ 1 seamless, ≫ 1 jump, ≪ 1 pause).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from data_pipelines.video_io import load_image
from gid_jax import motion
from gid_jax.atomic import write_json_atomic
from gid_jax.bundle import (MANIFEST, BundleError, abstract_model, decode_spectral_volumes, is_bundle,
                            load_models, read_manifest, render_chunk)
from gid_jax.diffusion import (GRIDS, NoiseSchedule, consistency_sample, ddim_sample,
                               dpm_solver_pp_sample, unipc_sample)
from gid_jax.models.ldm import MotionLDM
from gid_jax.models.renderer import Renderer, average_motion_magnitude

PIPELINE_FILE = "pipeline.json"
RUN_CONFIG = "config.json"   # what `gid train` writes into its workdir
LDM_TASKS = ("ldm", "distill")  # training tasks whose runs hold a MotionLDM
SOLVERS = ("ddim", "dpm_solver_pp", "unipc", "consistency")
# DPM-Solver++(2M) on the log-SNR grid, 10 steps: on a trained model its learning metrics match
# DDIM-250's within seed noise at 1/16 of the time (benchmarks/solver_steps.py; README).
DEFAULT_SOLVER = "dpm_solver_pp"
DEFAULT_STEPS = 10
SOLVER_DEFAULTS = {"ddim": (1, "uniform"), "dpm_solver_pp": (2, "logsnr"), "unipc": (3, "logsnr"),
                   "consistency": (1, "uniform")}
# A distilled LDM run (configs/distill.py) samples with the consistency sampler, guidance built in.
DISTILLED_SAMPLER = {"solver": "consistency", "num_steps": 2, "guidance_weight": 0.0}
LOOP_MODES = ("periods", "seam_guidance", "paper_guidance")


@dataclasses.dataclass
class SamplerSettings:
    """How spectral volumes are sampled (docs/method.md §4.3, §7.2); every field overridable per call."""

    num_steps: int = DEFAULT_STEPS  # sampler steps (the paper: 250 DDIM steps)
    solver: str = DEFAULT_SOLVER    # one of SOLVERS; the multistep ones need far fewer steps
    order: int | None = None        # multistep order (None: 2 for DPM-Solver++, 3 for UniPC)
    grid: str | None = None         # step grid, one of GRIDS (None: uniform for DDIM, else logsnr)
    eta: float = 0.0                # DDIM η; NOT RECOVERED for v3 (v1 ablations used 0)
    guidance_weight: float = 1.75   # classifier-free guidance w (docs/method.md §7.2)
    # Rescale each guided sample to the mean motion amplitude of the conditional (w = 0) sample
    # drawn from the same noise: guidance decides *where* the scene moves, the prior *how much*
    # (CFG sharpens the layout but inflates the amplitude). Our addition; costs one more
    # conditional sampling pass (README, "Learning: what we measured").
    match_amplitude: bool = False
    loop_mode: str = "periods"      # how loop=True loops, one of LOOP_MODES (module doc)
    loop_weight: float = 200.0      # self-guidance u on the L1-norm loop loss (docs/method.md §7.2)
    self_recurrence: int = 2        # universal-guidance recurrences when guiding (docs/method.md §7.2)
    period: int = motion.NUM_FRAMES  # T the spectra describe (150 frames)
    fps: float = 30.0

    def validate(self) -> "SamplerSettings":
        """Raises ValueError naming the first bad field (cheap: call it before sampling)."""
        def finite(v):
            return isinstance(v, (int, float, np.number)) and math.isfinite(v)

        def integer(v, low):
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= low

        problems = [
            (self.solver in SOLVERS, f"solver must be one of {SOLVERS}, got {self.solver!r}"),
            (self.loop_mode in LOOP_MODES, f"loop_mode must be one of {LOOP_MODES}, got {self.loop_mode!r}"),
            (self.grid is None or self.grid in GRIDS, f"grid must be one of {GRIDS}, got {self.grid!r}"),
            (self.order is None or self.order in (1, 2, 3), f"order must be 1, 2 or 3, got {self.order!r}"),
            (integer(self.num_steps, 1), f"num_steps must be an integer >= 1, got {self.num_steps!r}"),
            (finite(self.guidance_weight), f"guidance_weight must be finite, got {self.guidance_weight!r}"),
            (isinstance(self.match_amplitude, (bool, np.bool_)),
             f"match_amplitude must be true or false, got {self.match_amplitude!r}"),
            (finite(self.eta) and self.eta >= 0, f"eta must be finite and >= 0, got {self.eta!r}"),
            (finite(self.loop_weight) and self.loop_weight >= 0,
             f"loop_weight must be finite and >= 0, got {self.loop_weight!r}"),
            (integer(self.self_recurrence, 1),
             f"self_recurrence must be an integer >= 1, got {self.self_recurrence!r}"),
            (integer(self.period, 2), f"period must be >= 2, got {self.period!r}"),
            (finite(self.fps) and self.fps > 0, f"fps must be finite and > 0, got {self.fps!r}")]
        for ok, message in problems:
            if not ok:
                raise ValueError(message)
        return self

    def solver_options(self, guided: bool = False) -> tuple[str, int, str]:
        """(solver, order, grid) actually run: loss guidance exists only in DDIM, so a guided
        loop samples with DDIM whatever `solver` says."""
        solver = "ddim" if guided else self.solver
        order, grid = SOLVER_DEFAULTS[solver]
        return solver, self.order or order, self.grid or grid


def playback_speed(num_frames: int, speed: float = 1.0, period: int = motion.NUM_FRAMES) -> float:
    """The speed at which `num_frames` frames span a whole number m ≥ 1 of periods, m nearest to
    num_frames·speed/period in ratio (so the change m·period/(num_frames·speed) is the smallest);
    `speed` itself when it already does."""
    if num_frames < 1 or not (math.isfinite(speed) and speed > 0):
        raise ValueError(f"need num_frames >= 1 and a finite speed > 0, got {num_frames}, {speed}")
    x = num_frames * speed / period
    if abs(x - round(x)) < 1e-9 * max(1.0, x) and round(x) >= 1:
        return float(speed)
    lo, hi = max(1, math.floor(x)), max(1, math.ceil(x))
    m = lo if abs(math.log(lo / x)) <= abs(math.log(hi / x)) else hi
    return m * period / num_frames


class Pipeline:
    """Trained LDM + renderer with everything needed to animate an image."""

    def __init__(self, ldm: MotionLDM, renderer: Renderer, image_size: tuple[int, int],
                 schedule: NoiseSchedule, settings: SamplerSettings | None = None):
        self.ldm, self.renderer = ldm, renderer
        self.height, self.width = (int(v) for v in image_size)
        self.schedule = schedule
        self.settings = (settings or SamplerSettings()).validate()
        self._samplers: dict = {}

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path: str | os.PathLike) -> "Pipeline":
        """From a pipeline directory (`pipeline.json` naming the LDM and renderer training runs)
        or an exported bundle (`manifest.json`; see gid_jax/bundle.py)."""
        path = Path(path)
        if is_bundle(path):
            return cls.from_bundle(path)
        spec_path = path / PIPELINE_FILE
        if not spec_path.is_file():
            raise FileNotFoundError(f"{path}: no {PIPELINE_FILE} here (expected a pipeline "
                                    "directory from `gid quickstart` or a run layout; see README)")
        try:
            spec = json.loads(spec_path.read_text())
            ldm_dir, renderer_dir = (path / spec[key] for key in ("ldm", "renderer"))
            sampler = spec.get("sampler", {})
            if not isinstance(sampler, dict):
                raise TypeError(f"'sampler' must be an object of SamplerSettings fields, got "
                                f"{sampler!r}")
        except (KeyError, TypeError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{spec_path}: invalid pipeline file ({err})") from None
        return cls.from_runs(ldm_dir, renderer_dir, where=spec_path, **sampler)

    @classmethod
    def from_bundle(cls, path: str | os.PathLike) -> "Pipeline":
        """From an exported bundle: every file's checksum, the format version and the shapes are
        checked first (gid_jax/bundle.py); numpy arrays and JSON only, no Orbax, no training
        code. The pipeline gets `bundle` (its path) and `manifest` attributes."""
        path = Path(path)
        manifest = read_manifest(path)
        try:
            settings = SamplerSettings(**manifest.get("sampler", {})).validate()
        except (TypeError, ValueError) as err:
            raise BundleError(f"{path / MANIFEST}: invalid sampler settings ({err})") from None
        ldm, renderer, image_size, schedule = load_models(path, manifest)
        pipe = cls(ldm, renderer, image_size, schedule, settings)
        pipe.bundle, pipe.manifest = path, manifest
        return pipe

    @classmethod
    def from_runs(cls, ldm_workdir, renderer_workdir=None, *, where=None, **sampler) -> "Pipeline":
        """From training runs directly: an LDM run (stage 1 or 2) and optionally a renderer run
        (without one, only the motion methods work). `sampler`: `SamplerSettings` fields."""
        ldm_dir = Path(ldm_workdir)
        ldm_cfg = _run_config(ldm_dir, LDM_TASKS)
        distilled = ldm_cfg.get("task") == "distill"
        try:
            settings = SamplerSettings(**{"period": int(ldm_cfg.model.get("period", motion.NUM_FRAMES)),
                                          "fps": float(ldm_cfg.model.get("fps", 30.0)),
                                          **(DISTILLED_SAMPLER if distilled else {}),
                                          **sampler}).validate()
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where or ldm_dir}: invalid sampler settings ({err})") from None
        renderer_cfg = (None if renderer_workdir is None
                        else _run_config(Path(renderer_workdir), ("renderer",)))
        from gid_jax.checkpoints import restore_model  # Orbax, only for runs: bundles need none

        # shapes only, then every array from the checkpoint
        ldm = abstract_model(lambda: MotionLDM(ldm_cfg.model, num_freqs=int(ldm_cfg.model.num_freqs),
                                               stage=int(ldm_cfg.stage), diffusion=ldm_cfg.diffusion,
                                               rngs=nnx.Rngs(0)),
                             ldm_dir / RUN_CONFIG)
        try:
            image_size, schedule = tuple(ldm_cfg.model.image_size), NoiseSchedule.from_config(ldm_cfg)
        except (AttributeError, KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{ldm_dir / RUN_CONFIG}: invalid LDM run config ({err})") from None
        # a distillation run holds student/... and teacher/...: the student is the model
        restore_model(ldm_dir, ldm, source_path=("^", "student/") if distilled else ("", ""))
        renderer = None
        if renderer_cfg is not None:
            renderer = abstract_model(lambda: Renderer(renderer_cfg.model.renderer, rngs=nnx.Rngs(0)),
                                      Path(renderer_workdir) / RUN_CONFIG)
            restore_model(Path(renderer_workdir), renderer)
        return cls(ldm, renderer, image_size, schedule, settings)

    @classmethod
    def pretrained(cls, name: str = "small") -> "Pipeline":
        """The model shipped inside the package (`gid_jax/pretrained/NAME`, an exported bundle)."""
        from gid_jax.pretrained import bundle_path

        return cls.load(bundle_path(name))

    @staticmethod
    def write_spec(directory: str | os.PathLike, ldm_workdir, renderer_workdir, **sampler) -> Path:
        """Writes a pipeline directory's `pipeline.json` (paths stored relative to it)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        spec = {"ldm": os.path.relpath(ldm_workdir, directory),
                "renderer": os.path.relpath(renderer_workdir, directory), "sampler": sampler}
        write_json_atomic(directory / PIPELINE_FILE, spec, indent=2)
        return directory

    # ------------------------------------------------------------------ motion
    def prepare_image(self, image) -> np.ndarray:
        """Any path or array → RGB float32 `(H, W, 3)` at the model's size (cover + centre crop)."""
        return _finite("image", load_image(image, (self.width, self.height)))

    def predict_spectral_volume(self, image, seed: int = 0, loop: bool = False, *,
                                num_frames: int | None = None, speed: float = 1.0,
                                **overrides) -> np.ndarray:
        """Samples S `(K, H, W, 4)` in pixels for one image (see `predict_spectral_volumes`)."""
        return self.predict_spectral_volumes(self.prepare_image(image)[None], seed, loop,
                                             num_frames=num_frames, speed=speed, **overrides)[0]

    def predict_spectral_volumes(self, images: np.ndarray, seed: int = 0, loop: bool = False, *,
                                 num_frames: int | None = None, speed: float = 1.0,
                                 **overrides) -> np.ndarray:
        """Batched sampling: `(B, H, W, 3)` images in [0, 1] → `(B, K, H, W, 4)` spectral volumes.

        `loop`, `num_frames` (default T) and `speed` matter to the guided loop modes only, which
        steer sampling towards a seamless loop of that video. Deterministic given `seed`;
        compiled once per (batch, settings, kind of guidance).
        """
        s = dataclasses.replace(self.settings, **overrides).validate()
        num_frames = num_frames or s.period
        guided, ends = _loop_guidance(s, loop, num_frames, speed)
        sampler = self._sampler(s, guided)
        images = _finite("images", images) * 2.0 - 1.0
        ends = np.asarray(ends, np.float32)           # traced: one compile for any N and speed
        return np.array(sampler(self.ldm, images, jax.random.key(int(seed)), ends))  # writable

    def _sampler(self, settings: SamplerSettings, guided: str | None):
        """One compiled sampler per (settings, guidance); jit adds one per input shape."""
        key = (dataclasses.astuple(settings), guided)
        if key not in self._samplers:
            self._samplers[key] = nnx.jit(functools.partial(
                _sample_spectral_volumes, schedule=self.schedule, settings=settings, guided=guided))
        return self._samplers[key]

    def playback_speed(self, num_frames: int, speed: float = 1.0, loop: bool = False,
                       loop_mode: str | None = None) -> float:
        """The speed the motion of a `num_frames` video is played at: `speed`, or for a loop in
        "periods" mode the nearest speed that fits whole periods (see `playback_speed`)."""
        if loop and (loop_mode or self.settings.loop_mode) == "periods":
            return playback_speed(num_frames, speed, self.settings.period)
        return float(speed)

    def motion_texture(self, sv, num_frames: int = motion.NUM_FRAMES, speed: float = 1.0,
                       amplitude: float = 1.0, loop: bool = False,
                       loop_mode: str | None = None) -> np.ndarray:
        """F `(num_frames, H, W, 2)`: the Fourier series at `speed`× time (0.5 = 2× slow motion;
        for a loop in "periods" mode, the whole-periods speed) with every displacement scaled by
        `amplitude` (magnify > 1, minify < 1)."""
        sv = _finite("spectral volume", sv)
        for name, value in (("speed", speed), ("amplitude", amplitude)):
            _finite(name, value)
        times = motion.frame_times(num_frames, self.playback_speed(num_frames, speed, loop, loop_mode))
        return np.asarray(_texture(jnp.asarray(sv), times, amplitude, self.settings.period))

    def predict_motion(self, image, num_frames: int = motion.NUM_FRAMES, loop: bool = False,
                       seed: int = 0, speed: float = 1.0, amplitude: float = 1.0,
                       **overrides) -> np.ndarray:
        """F `(num_frames, H, W, 2)`: exactly the displacements `animate` renders with the same
        arguments; with `loop`, frame `num_frames` would be frame 0 again."""
        sv = self.predict_spectral_volume(image, seed, loop, num_frames=num_frames, speed=speed,
                                          **overrides)
        return self.motion_texture(sv, num_frames, speed, amplitude, loop, overrides.get("loop_mode"))

    # ------------------------------------------------------------------ rendering
    def render(self, image, trajectories, motion_weight=None, seed: int = 0,
               batch_frames: int = 16) -> np.ndarray:
        """Frames `(T, H, W, 3)` in [0, 1]: the renderer warps `image` by each F_t.

        `motion_weight` W `(H, W)` (the softmax-splat depth proxy, default mean_t |F_t| of the
        given trajectories); one style noise for the whole video keeps frames consistent.
        """
        if self.renderer is None:
            raise ValueError("this pipeline holds a motion prior only (Pipeline.from_runs without a "
                             "renderer run); it can predict motion but not render frames")
        # host-side numpy around the one compiled renderer call: each eager jnp op would be
        # compiled on its own (a tenth of a second apiece on a CPU)
        image = self.prepare_image(image)[None] * 2.0 - 1.0
        traj = _finite("trajectories", trajectories)
        if motion_weight is None:
            motion_weight = average_motion_magnitude(jnp.asarray(traj))[..., 0]
        weight = _finite("motion_weight", motion_weight)[None, :, :, None]
        noise = jax.random.normal(jax.random.key(int(seed) + 1), (1, self.renderer.style_dim))
        frames = []
        for start in range(0, traj.shape[0], batch_frames):
            chunk = traj[start:start + batch_frames]
            pad = batch_frames - chunk.shape[0]     # one compiled shape for every chunk
            chunk = np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:], chunk.dtype)])
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
        sv = _finite("spectral volume", sv)
        _finite("amplitude", amplitude)
        return np.asarray(_period_weight(jnp.asarray(sv), amplitude, self.settings.period))

    def render_motion(self, image, sv, num_frames: int = motion.NUM_FRAMES, speed: float = 1.0,
                      amplitude: float = 1.0, seed: int = 0, loop: bool = False,
                      loop_mode: str | None = None) -> np.ndarray:
        """Frames of `image` moving by the spectral volume `sv` (see `motion_texture`)."""
        traj = self.motion_texture(sv, num_frames, speed, amplitude, loop, loop_mode)
        return self.render(image, traj, self.motion_weight(sv, amplitude), seed)

    def animate(self, image, loop: bool = False, num_frames: int = motion.NUM_FRAMES,
                seed: int = 0, amplitude: float = 1.0, speed: float = 1.0, **overrides) -> np.ndarray:
        """The whole pipeline: image → spectral volume → motion texture → frames `(N,H,W,3)`;
        the displacements are those of `predict_motion` with the same arguments."""
        image = self.prepare_image(image)
        sv = self.predict_spectral_volume(image, seed, loop, num_frames=num_frames, speed=speed,
                                          **overrides)
        return self.render_motion(image, sv, num_frames, speed, amplitude, seed, loop,
                                  overrides.get("loop_mode"))


@functools.partial(jax.jit, static_argnames="period")
def _texture(sv, times, amplitude, period: int):
    return motion.to_trajectories(motion.scale_amplitude(sv, amplitude), times=times, period=period)


@functools.partial(jax.jit, static_argnames="period")
def _period_weight(sv, amplitude, period: int):
    full = _texture(sv, jnp.arange(period, dtype=jnp.float32), amplitude, period)
    return average_motion_magnitude(full)[..., 0]


_render_chunk = nnx.jit(render_chunk)   # the function a bundle exports as render_chunk.bin


def _loop_guidance(s: SamplerSettings, loop: bool, num_frames: int, speed: float):
    """(kind, times) of the loop guidance: (None, dummy) for none; ("paper", frames 0, 1, T-2,
    T-1) for Eq. 5; ("seam", times -v, 0, v, then the same shifted by N·v, v = speed): the video's
    frames around its wrap and where the motion would have continued."""
    if loop and s.loop_mode == "paper_guidance":
        return "paper", (0.0, 1.0, float(s.period - 2), float(s.period - 1))
    if loop and s.loop_mode == "seam_guidance" and playback_speed(num_frames, speed, s.period) != speed:
        wrap = float(num_frames * speed)
        return "seam", tuple(float(v) + shift for shift in (0.0, wrap) for v in (-speed, 0.0, speed))
    return None, (0.0,)


def _sample_spectral_volumes(ldm: MotionLDM, images, key, ends, *, schedule: NoiseSchedule,
                             settings: SamplerSettings, guided: str | None):
    """DDIM / DPM-Solver++ / UniPC over the B·K latent slices with CFG (+ DDIM loop guidance of
    kind `guided` at the times `ends`, see `_loop_guidance`); `images` in [-1, 1]."""
    s = settings
    b, height, width = images.shape[:3]
    k = ldm.num_freqs
    h, w, c = ldm.latent_shape(height, width)
    features = ldm.denoiser.encode_image(images)

    def eps_fn(z, t):
        return ldm.denoiser.guided_eps(z, t, features, s.guidance_weight)

    def conditional_eps(z, t):
        return ldm.denoiser.eps(z, t, features)
    noise_key, sample_key = jax.random.split(key)
    noise = jax.random.normal(noise_key, (b * k, h, w, c))

    def spectral_volume(latents):
        return decode_spectral_volumes(ldm, latents, b, height, width)

    solver, order, grid = s.solver_options(guided is not None)
    if solver == "consistency":      # a distilled model: guidance is in its weights
        latents = consistency_sample(conditional_eps, noise, sample_key, schedule, s.num_steps)
        return spectral_volume(latents)

    def loop_loss(latents):
        traj = motion.to_trajectories(spectral_volume(latents), times=ends, period=s.period)
        if guided == "paper":   # L_g = ‖F_T − F_1‖₁ + ‖∇F_T − ∇F_1‖₁ over all pixels (Eq. 5)
            return jnp.sum(motion.loop_loss(traj)) * height * width   # per-pixel mean → L1
        return jnp.sum(jnp.abs(traj[:, :3] - traj[:, 3:]))   # frames at the wrap vs onwards

    def sample(eps_fn, loop_guided: bool):
        if solver == "dpm_solver_pp":
            return dpm_solver_pp_sample(eps_fn, noise, schedule, s.num_steps, order=order, grid=grid)
        if solver == "unipc":
            return unipc_sample(eps_fn, noise, schedule, s.num_steps, order=order, grid=grid)
        if not loop_guided:
            return ddim_sample(eps_fn, noise, sample_key, schedule, s.num_steps, eta=s.eta, grid=grid)
        return ddim_sample(eps_fn, noise, sample_key, schedule, s.num_steps, eta=s.eta,
                           guidance_loss=loop_loss, guidance_scale=s.loop_weight,
                           self_recurrence=s.self_recurrence, grid=grid)

    sv = spectral_volume(sample(eps_fn, guided is not None))
    if s.match_amplitude and s.guidance_weight != 0:
        reference = spectral_volume(sample(conditional_eps, False))
        scale = _mean_amplitude(reference) / jnp.maximum(_mean_amplitude(sv), 1e-12)
        sv = sv * scale[:, None, None, None, None]
    return sv


def _mean_amplitude(svs) -> jnp.ndarray:
    """`(B, K, H, W, 4)` → `(B,)`: each volume's amplitude map Σ_{k≥1} |S_k(p)| averaged over
    pixels (the DC term is a static offset, not motion)."""
    return jnp.mean(jnp.sum(motion.amplitude(svs[:, 1:]), axis=1), axis=(1, 2))


def _finite(what: str, value) -> np.ndarray:
    """`value` as float32, refused when it holds a NaN or inf: one would make every sample or
    frame NaN (a grey video) far from where it came in."""
    value = np.asarray(value, np.float32)
    if not np.isfinite(value).all():
        got = value if value.ndim == 0 else "NaN or inf values"
        raise ValueError(f"{what} must be finite, got {got}")
    return value


def _run_config(workdir: Path, tasks: tuple[str, ...]) -> ml_collections.ConfigDict:
    """The config of a `gid train` run of one of `tasks`, checked to be one: a VAE run named as
    the LDM would otherwise fail deep inside the model code."""
    path = workdir / RUN_CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{workdir}: no {RUN_CONFIG} (not a finished `gid train` run?)")
    try:
        config = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    found = config.get("task") if isinstance(config, dict) else None
    if found not in tasks:
        raise ValueError(f"{path}: not the config of a `gid train` {' or '.join(tasks)} run (its "
                         f"task is {found!r})")
    if not isinstance(config.get("model"), dict):
        raise ValueError(f"{path}: its 'model' must be an object of model settings")
    return ml_collections.ConfigDict(config)
