"""Generating one synthetic clip with ground truth, writing it, and synthesising a dataset."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
from pathlib import Path

import cv2
import numpy as np

from data_pipelines.synth import render as R
from data_pipelines.synth.dynamics import forcing, scene_wind, simulate, spectral_noise
from data_pipelines.synth.scenes import SceneBuilder, build_scene
from gid_jax.atomic import atomic_path

SUBSTEPS = 10            # oscillator sub-steps per frame
MAX_GRADIENT = 0.7      # bound on |grad D| per layer: keeps p -> p + D invertible, iteration contracting
MIN_SIZE = 32
NPZ_KEYS = ("trajectories", "visible_layer", "mode_frequencies", "fps", "scene_json")


@dataclasses.dataclass
class SynthVideo:
    frames: np.ndarray            # (T,H,W,3) float32 in [0,1]
    trajectories: np.ndarray      # (T,H,W,2) float32, F[0]==0
    visible_layer: np.ndarray     # (T,H,W) int16, 0 = background, i>0 = layer index
    mode_frequencies: np.ndarray  # (M,) float32, Hz
    fps: float
    scene: dict                   # JSON-serialisable description


_BLAS_NAMES = (("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
               ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
               ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
               ("openblas_get_num_threads", "openblas_set_num_threads"))


@functools.lru_cache(maxsize=1)
def _openblas_controls() -> list:
    """(get, set) thread-count functions of the OpenBLAS libraries loaded in this process."""
    import ctypes

    try:
        with open("/proc/self/maps") as fh:
            paths = sorted({line.split()[-1] for line in fh if "openblas" in line.lower() and "/" in line})
    except OSError:
        return []
    out = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for get, set_ in _BLAS_NAMES:
            if hasattr(lib, get) and hasattr(lib, set_):
                out.append((getattr(lib, get), getattr(lib, set_)))
                break
    return out


@contextlib.contextmanager
def _single_threaded():
    """Runs one clip's generation on one thread, restoring the settings afterwards.

    A clip is thousands of small array operations on which OpenCV's and OpenBLAS's thread pools
    only add overhead (measured: 1.6x the CPU time at 256x160, 3x at 64x40); datasets are built
    clip by clip and parallelise across clips.
    """
    cv_threads = cv2.getNumThreads()
    blas = [(get, set_, get()) for get, set_ in _openblas_controls()]
    cv2.setNumThreads(1)
    for _, set_, _ in blas:
        set_(1)
    try:
        yield
    finally:
        cv2.setNumThreads(cv_threads)
        for _, set_, n in blas:
            set_(n)


def _check_args(size, num_frames, fps, camera_shake_prob, static_prob):
    try:
        width, height = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be (width, height), got {size!r}") from None
    if width < MIN_SIZE or height < MIN_SIZE or width % 2 or height % 2:
        raise ValueError(f"size must be even and at least {MIN_SIZE}x{MIN_SIZE} (H.264 needs even "
                         f"width and height), got {width}x{height}")
    if int(num_frames) != num_frames or num_frames < 2:
        raise ValueError(f"num_frames must be an integer >= 2, got {num_frames!r}")
    if not (fps > 0 and np.isfinite(fps)):
        raise ValueError(f"fps must be positive, got {fps!r}")
    for name, p in (("camera_shake_prob", camera_shake_prob), ("static_prob", static_prob)):
        if not (0.0 <= p <= 1.0):
            raise ValueError(f"{name} must be in [0, 1], got {p!r}")
    return width, height


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return x


def _spectral_max(J: np.ndarray) -> float:
    """Largest spectral norm of 2x2 Jacobians stored as (..., 4) = (a_x, a_y, b_x, b_y)."""
    ax, ay, bx, by = J[..., 0], J[..., 1], J[..., 2], J[..., 3]
    fro2 = ax * ax + ay * ay + bx * bx + by * by
    det = ax * by - ay * bx
    s2 = fro2 + np.sqrt(np.maximum(fro2 * fro2 - 4 * det * det, 0.0))
    return float(np.sqrt(0.5 * s2.max(initial=0.0)))


class _LayerCheck:
    """The exact Jacobians and displacements of one layer's D(t) = sum_m q_m(t) Phi_m at every
    frame, on its texture dilated by twice its displacement (where folds could hide content),
    from 120 px frame height on every other pixel (the fields' finest scale, a leaf's weight, is
    >= 3 px there; measured: the full-resolution maximum is within 4% of the bound):
    J_t = Q_t @ grad Phi."""

    def __init__(self, b: SceneBuilder, layer, q: np.ndarray):
        self.modes = np.asarray(layer.modes, np.int64)
        alpha = layer.rgba[..., 3] > 1e-4
        st = int(np.clip(round(2 * b.S), 1, 2))
        ys, xs = np.nonzero(alpha)
        self.ok = len(xs) > 0
        if not self.ok:
            return
        amps = np.abs(q[:, self.modes]).max(axis=0)
        sub = (ys % st == 0) & (xs % st == 0)
        if not sub.any():
            sub[:] = True
        sup = [b.fields[m][ys[sub], xs[sub]] for m in self.modes]
        bound = float(np.max(sum(a * np.linalg.norm(f, axis=-1) for a, f in zip(amps, sup))))
        r = int(min(np.ceil(2 * bound) + 1, b.P))
        y0, y1 = max(ys.min() - r - 1, 0), min(ys.max() + r + 2, alpha.shape[0])
        x0, x1 = max(xs.min() - r - 1, 0), min(xs.max() + r + 2, alpha.shape[1])
        crop = alpha[y0:y1, x0:x1].astype(np.uint8)
        if r > 0:
            crop = cv2.dilate(crop, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
        mask = np.zeros_like(crop)
        mask[::st, ::st] = crop[::st, ::st]
        py, px = np.nonzero(mask)
        grads = []
        for m in self.modes:
            f = b.fields[m][y0:y1, x0:x1]
            a_y, a_x = np.gradient(f[..., 0])
            b_y, b_x = np.gradient(f[..., 1])
            grads.append(np.stack([a_x[py, px], a_y[py, px], b_x[py, px], b_y[py, px]], -1))
        self.G = np.stack(grads).reshape(len(self.modes), -1).astype(np.float32)   # (M_l, N*4)
        self.P = np.stack(sup).reshape(len(self.modes), -1).astype(np.float32)     # (M_l, N_sup*2)

    def grad(self, q, scale=None):
        Q = q[:, self.modes].astype(np.float32)
        if scale is not None:
            Q = Q * scale.astype(np.float32)
        return _spectral_max((Q @ self.G).reshape(Q.shape[0], -1, 4))

    def disp(self, q):
        D = (q[:, self.modes].astype(np.float32) @ self.P).reshape(q.shape[0], -1, 2)
        return float(np.sqrt((D * D).sum(-1).max(initial=0.0)))


FINE_KINDS = ("leaf_flutter", "cluster_twist", "cluster_jiggle")   # reduced first: much shear,
                                                                    # little displacement


def _limit_amplitudes(b: SceneBuilder, q: np.ndarray, max_disp: float) -> tuple[list, dict]:
    """Scales modal coordinates (in place) so that every layer's D(t) keeps |grad D| <=
    MAX_GRADIENT (exact Jacobians over the clip, see `_LayerCheck`) and |D| <= max_disp.

    Of a layer's own modes the fine ones (leaf flutter, cluster twist, then jiggle: much shear
    for little displacement) are reduced first, down to 30%; then all its modes together. Returns
    the objects whose amplitudes were reduced and each layer's largest |D| (by 1-based index).
    """
    capped = set()
    checks = [(i, layer, _LayerCheck(b, layer, q)) for i, layer in enumerate(b.layers, start=1) if layer.modes]
    index = [i for i, _, c in checks if c.ok]
    checks = [(layer, c) for _, layer, c in checks if c.ok]
    users = {}
    for layer, _ in checks:
        for m in layer.modes:
            users[m] = users.get(m, 0) + 1
    for sweep in range(4):
        changed = False
        for layer, c in checks:
            g = c.grad(q)
            if g <= MAX_GRADIENT:
                continue
            f = np.ones(len(layer.modes))
            for kind in FINE_KINDS:
                sel = np.array([users[m] == 1 and b.modes[m].kind == kind for m in layer.modes])
                if not sel.any():
                    continue
                if c.grad(q, np.where(sel, 0.3 * f, f)) > MAX_GRADIENT:
                    f[sel] *= 0.3
                    continue
                lo, hi = 0.3, 1.0                    # largest factor that fits (convex in it)
                for _ in range(6):
                    mid = 0.5 * (lo + hi)
                    lo, hi = (mid, hi) if c.grad(q, np.where(sel, mid * f, f)) <= MAX_GRADIENT else (lo, mid)
                f[sel] *= lo
                break
            q[:, layer.modes] *= f
            g = c.grad(q)
            if g > MAX_GRADIENT:
                q[:, layer.modes] *= 0.999 * MAX_GRADIENT / g
            capped.add(layer.obj)
            changed = True
        if not changed:
            break
    worst = max([c.grad(q) for _, c in checks], default=0.0)
    if worst > MAX_GRADIENT:                         # not settled: one uniform factor fixes all layers
        q *= 0.999 * MAX_GRADIENT / worst
        capped.update(layer.obj for layer, _ in checks)
    reach = {}                 # each layer's largest |D| (after all scaling), by 1-based layer index
    for i, (layer, c) in zip(index, checks):
        d = c.disp(q)
        if d > max_disp:
            q[:, layer.modes] *= max_disp / d
            capped.add(layer.obj)
            d = max_disp
        reach[i] = d
    return sorted(capped), reach


def generate_video(seed: int, size=(256, 160), num_frames=150, fps=30.0, camera_shake_prob=0.0,
                   static_prob=0.0, wind_seed: int | None = None) -> SynthVideo:
    """One procedural clip with exact motion: photographic backgrounds and static rigid objects,
    and plants, grass, cloth and candle flames that move as their size and shape suggest.

    `wind_seed` redraws only the wind's gusts and turbulence: the same scene, objects and mean
    wind strength in other weather. No image shows the gusts, so these clips are what a perfect
    sampler of the scene's motion would draw (`gid_jax.eval.learning` scores them as a ceiling)."""
    width, height = _check_args(size, num_frames, fps, camera_shake_prob, static_prob)
    with _single_threaded():
        return _generate(seed, width, height, int(num_frames), float(fps), camera_shake_prob,
                         static_prob, wind_seed)


def _generate(seed, width, height, num_frames, fps, camera_shake_prob, static_prob,
              wind_seed=None) -> SynthVideo:
    num_frames, fps = int(num_frames), float(fps)
    ss = np.random.SeedSequence(int(seed))
    scene_rng, wind_rng, shake_rng, flag_rng = (np.random.default_rng(s) for s in ss.spawn(4))
    if wind_seed is not None:
        wind_rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(wind_seed)]))
    static = bool(flag_rng.random() < static_prob)
    shaking = bool(flag_rng.random() < camera_shake_prob)
    # log-uniform from a breeze to strong wind; windless clips come from static_prob
    wind_strength = float(np.exp(scene_rng.uniform(np.log(0.8), np.log(1.7))))
    pad = int(np.ceil(0.15 * height)) + 2
    b = SceneBuilder(scene_rng, width, height, pad)
    desc = build_scene(b, wind_strength)
    S = b.S

    # Camera shake: smooth small translation of everything, background included.
    shake = np.zeros((num_frames, 2), np.float64)
    shake_desc = None
    if shaking:
        amp = shake_rng.uniform(0.5, 2.0) * S
        n = max(num_frames, 8)
        for k in range(2):
            shake[:, k] = amp * spectral_noise(shake_rng, n, 1.0 / fps, corner_hz=1.0, slope=1.5,
                                               highcut_hz=6.0)[:num_frames]
        shake -= shake[0]
        lim = pad / 3.0
        shake *= min(1.0, lim / max(float(np.abs(shake).max()), 1e-9))
        shake_desc = {"amplitude_px": float(amp)}

    # Modal dynamics driven by the wind, in steady state after a burn-in.
    modes = b.modes
    M = len(modes)
    freqs = np.array([m.freq for m in modes], np.float64)
    damp = np.array([m.damping for m in modes], np.float64)
    if M:
        decay = float((damp * 2 * np.pi * freqs).min())
        burn_frames = int(np.ceil(np.clip(5.0 / decay, 10.0, 60.0) * fps))
    else:
        burn_frames = 0
    total_frames = burn_frames + num_frames
    dt = 1.0 / (fps * SUBSTEPS)
    n = (total_frames - 1) * SUBSTEPS + 1
    wind, wind_desc = scene_wind(wind_rng, n, dt)
    delays = wind_rng.uniform(0.0, 1.0, size=len(b.objects))
    q = np.zeros((num_frames, M), np.float64)
    if M and not static:
        force = forcing(wind_rng, modes, len(b.objects), n, dt, wind, delays)
        q_all = simulate(freqs, damp, force, total_frames, SUBSTEPS, dt)
        stat = q_all[max(0, burn_frames - int(20 * fps)):]    # 20 s of steady state + the clip
        q = q_all[burn_frames:].copy()
        # Amplitude of each (object, group): std of its modal coordinates -> target.
        for (obj, group), target in b.targets.items():
            idx = [i for i, m in enumerate(modes) if m.obj == obj and m.group == group]
            if not idx:
                continue
            std = float(np.sqrt(stat[:, idx].var(axis=0).sum()))
            q[:, idx] *= target / max(std, 1e-12)
    capped, reach = [], {}
    if M and not static:
        capped, reach = _limit_amplitudes(b, q, pad - 2 - float(np.abs(shake).max()))
    prepared = R.prepare(b.layers, b.fields, q, shake, width, height, pad, reach)
    frames, visible, traj, stats = R.render(b.background, prepared, q, shake, width, height, pad)

    for o, obj in enumerate(b.objects):
        obj["modes"] = [{"freq_hz": m.freq, "damping": m.damping, "type": m.kind, "group": m.group,
                         "rms_px": float(q[:, i].std())}
                        for i, m in enumerate(modes) if m.obj == o]
        obj["amplitude_capped"] = o in capped
    scene = _jsonable({
        "generator": "gid-jax synth v2",
        "seed": int(seed), "size": [width, height], "num_frames": num_frames, "fps": fps,
        "pad": pad, **desc,
        "static": static, "wind_strength": wind_strength, "wind": wind_desc,
        "camera_shake": shake_desc,
        "objects": b.objects,
        "layers": [{"index": i, "name": l.name, "object": l.obj, "num_modes": len(l.modes)}
                   for i, l in enumerate(b.layers, start=1)],
        "kinds": sorted({o["kind"] for o in b.objects}),
        "render": stats,
    })
    return SynthVideo(frames=frames, trajectories=traj, visible_layer=visible,
                      mode_frequencies=freqs.astype(np.float32), fps=fps, scene=scene)


def write_example(video: SynthVideo, out_dir, name: str) -> tuple[Path, Path]:
    """Writes `name.mp4` (H.264) and `name.npz` (ground truth); both atomically."""
    from data_pipelines.video_io import write_video

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    mp4 = write_video(out_dir / f"{name}.mp4", video.frames, video.fps)
    npz = out_dir / f"{name}.npz"
    with atomic_path(npz) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(
            fh,
            trajectories=np.asarray(video.trajectories, np.float32),
            visible_layer=np.asarray(video.visible_layer[0], np.int16),
            mode_frequencies=np.asarray(video.mode_frequencies, np.float32),
            fps=np.float64(video.fps),
            scene_json=np.array(json.dumps(video.scene)))
    return mp4, npz


def load_ground_truth(npz_path) -> dict:
    """Reads a ground-truth npz written by `write_example` (scene_json parsed into `scene`)."""
    path = Path(npz_path)
    if not path.is_file():
        raise ValueError(f"{path}: no such ground-truth file")
    try:
        with np.load(path, allow_pickle=False) as data:
            files = set(data.files)
            out = {k: data[k] for k in NPZ_KEYS if k in files}
    except Exception as err:  # zipfile/OSError/EOFError/ValueError on a truncated or foreign file
        raise ValueError(f"{path}: cannot read ground-truth file ({type(err).__name__}: {err})") from None
    missing = [k for k in NPZ_KEYS if k not in out]
    if missing:
        raise ValueError(f"{path}: ground-truth file lacks key(s) {', '.join(missing)}")
    traj = out["trajectories"]
    if traj.ndim != 4 or traj.shape[-1] != 2:
        raise ValueError(f"{path}: trajectories must have shape (T,H,W,2), got {traj.shape}")
    if out["visible_layer"].shape != traj.shape[1:3]:
        raise ValueError(f"{path}: visible_layer shape {out['visible_layer'].shape} does not match "
                         f"trajectories {traj.shape}")
    try:
        scene = json.loads(str(out["scene_json"]))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: scene_json is not valid JSON ({err})") from None
    return {"trajectories": traj.astype(np.float32),
            "visible_layer": out["visible_layer"].astype(np.int16),
            "mode_frequencies": out["mode_frequencies"].astype(np.float32),
            "fps": float(out["fps"]), "scene_json": str(out["scene_json"]), "scene": scene}


def _check_out_dir(out_dir) -> Path:
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write_probe.{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"output directory {out} cannot be created or written ({err.strerror or err})") from None
    return out


def video_seed(seed: int, index: int) -> int:
    """Seed of video `index` of a dataset synthesised with `seed`."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def synthesize(out_dir, num_videos: int, size=(256, 160), num_frames=150, fps=30.0, seed=0,
               camera_shake_prob=0.0, static_prob=0.0, progress=True) -> list[Path]:
    """Writes `num_videos` clips `synth_00000.mp4/.npz`, ... ; resumable (existing pairs are kept).

    Returns the mp4 paths in order.
    """
    _check_args(size, num_frames, fps, camera_shake_prob, static_prob)
    if int(num_videos) != num_videos or num_videos < 1:
        raise ValueError(f"num_videos must be a positive integer, got {num_videos!r}")
    out = _check_out_dir(out_dir)
    from tqdm import tqdm

    paths = []
    for i in tqdm(range(int(num_videos)), desc="synth", unit="video", disable=not progress):
        name = f"synth_{i:05d}"
        mp4, npz = out / f"{name}.mp4", out / f"{name}.npz"
        if not (mp4.is_file() and npz.is_file()):
            video = generate_video(video_seed(seed, i), size=size, num_frames=num_frames, fps=fps,
                                   camera_shake_prob=camera_shake_prob, static_prob=static_prob)
            write_example(video, out, name)
        paths.append(mp4)
    return paths
