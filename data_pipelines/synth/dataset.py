"""Generating one synthetic clip with ground truth, writing it, and synthesising a dataset."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np

from data_pipelines.synth import render as R
from data_pipelines.synth.dynamics import forcing, scene_wind, simulate, spectral_noise
from data_pipelines.synth.modes import max_gradient_norm
from data_pipelines.synth.scenes import SceneBuilder, build_scene

SUBSTEPS = 10            # oscillator sub-steps per frame
MAX_GRADIENT = 0.5      # bound on |grad D| per layer: keeps p -> p + D invertible, iteration contracting
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


def _limit_amplitudes(b: SceneBuilder, q: np.ndarray, max_disp: float) -> list:
    """Scales modal coordinates (in place) so that for every layer |grad D| <= MAX_GRADIENT
    everywhere (pointwise bound sum_m max|q_m| |grad Phi_m|) and |D| <= max_disp on its texture.

    A layer's own modes (e.g. leaf flutter) are reduced first; modes shared with other layers
    of the object (the stem's bending) only if those alone break the bound. Returns the
    objects whose amplitudes were reduced.
    """
    capped = set()
    for layer in b.layers:
        if not layer.modes:
            continue
        ys, xs = np.nonzero(layer.rgba[..., 3] > 1e-4)
        if len(xs) == 0:
            continue
        m = b.P                                            # the region the renderer can touch
        box = (slice(max(ys.min() - m, 0), ys.max() + m + 1), slice(max(xs.min() - m, 0), xs.max() + m + 1))
        amps = np.abs(q).max(axis=0)
        shared = [m for m in layer.modes if any(m in o.modes for o in b.layers if o is not layer)]
        own = [m for m in layer.modes if m not in shared]
        gs = max_gradient_norm([b.fields[m][box] for m in shared], amps[shared]) if shared else 0.0
        go = max_gradient_norm([b.fields[m][box] for m in own], amps[own]) if own else 0.0
        if np.max(gs) > MAX_GRADIENT:
            f = MAX_GRADIENT / float(np.max(gs + go))
            q[:, layer.modes] *= f
            capped.add(layer.obj)
        elif own and np.max(gs + go) > MAX_GRADIENT:
            go = np.asarray(go)
            room = (MAX_GRADIENT - gs) / np.maximum(go, 1e-12)
            q[:, own] *= float(room[go > 1e-9].min())
            capped.add(layer.obj)
        amps = np.abs(q).max(axis=0)
        support = layer.rgba[..., 3] > 1e-4
        disp = np.zeros(support.shape, np.float32)
        for m in layer.modes:
            disp += amps[m] * np.linalg.norm(b.fields[m], axis=-1)
        dmax = float(disp[support].max()) if support.any() else 0.0
        if dmax > max_disp:
            q[:, layer.modes] *= max_disp / dmax
            capped.add(layer.obj)
    return sorted(capped)


def generate_video(seed: int, size=(256, 160), num_frames=150, fps=30.0, camera_shake_prob=0.0,
                   static_prob=0.0) -> SynthVideo:
    """One procedural clip of oscillating plants / grass / candles / cloth with exact motion."""
    width, height = _check_args(size, num_frames, fps, camera_shake_prob, static_prob)
    num_frames, fps = int(num_frames), float(fps)
    ss = np.random.SeedSequence(int(seed))
    scene_rng, wind_rng, shake_rng, flag_rng = (np.random.default_rng(s) for s in ss.spawn(4))
    static = bool(flag_rng.random() < static_prob)
    shaking = bool(flag_rng.random() < camera_shake_prob)
    # log-uniform from a light breeze to strong wind; windless clips come from static_prob
    wind_strength = float(np.exp(scene_rng.uniform(np.log(0.2), np.log(1.2))))
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
    capped = _limit_amplitudes(b, q, pad - 2 - float(np.abs(shake).max())) if (M and not static) else []
    prepared = R.prepare(b.layers, b.fields, q, shake, width, height, pad)
    frames, visible, traj, stats = R.render(b.background, prepared, q, shake, width, height, pad)

    for o, obj in enumerate(b.objects):
        obj["modes"] = [{"freq_hz": m.freq, "damping": m.damping, "type": m.kind, "group": m.group,
                         "rms_px": float(q[:, i].std())}
                        for i, m in enumerate(modes) if m.obj == o]
        obj["amplitude_capped"] = o in capped
    scene = _jsonable({
        "generator": "gid-jax synth v1",
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
    tmp = out_dir / f".{name}.tmp{os.getpid()}.npz"
    try:
        with open(tmp, "wb") as fh:
            np.savez_compressed(
                fh,
                trajectories=np.asarray(video.trajectories, np.float32),
                visible_layer=np.asarray(video.visible_layer[0], np.int16),
                mode_frequencies=np.asarray(video.mode_frequencies, np.float32),
                fps=np.float64(video.fps),
                scene_json=np.array(json.dumps(video.scene)))
        os.replace(tmp, npz)
    finally:
        tmp.unlink(missing_ok=True)
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
