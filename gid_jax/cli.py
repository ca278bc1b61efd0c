"""The `gid` command line: one sub-command per job, each with its own `--help`."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from pathlib import Path


def parse_size(text: str) -> tuple[int, int]:
    """'256x160' → (256, 160) as (width, height)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like WIDTHxHEIGHT (e.g. 256x160), got {text!r}")
    if width <= 0 or height <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return width, height


def _cmd_synth(args) -> None:
    from data_pipelines.synth import synthesize

    paths = synthesize(args.out, args.num_videos, size=args.size, num_frames=args.frames,
                       fps=args.fps, seed=args.seed, camera_shake_prob=args.camera_shake_prob,
                       static_prob=args.static_prob)
    print(f"{len(paths)} videos (.mp4 + ground-truth .npz) in {args.out}")


def _cmd_prepare(args) -> None:
    from data_pipelines.prepare import prepare
    from gid_jax.config import load_config

    if args.verbose:  # the libraries' INFO too (Beam's runner and workers)
        for handler in logging.getLogger().handlers:
            handler.removeFilter(_quiet_libraries)
    config = load_config(args.config, args.overrides)
    # prepare prints the progress bar and, at the end, its summary.
    prepare(args.videos, args.out, config, beam_options=args.beam_options, verbose=args.verbose)


def _cmd_train(args) -> int:
    from gid_jax.config import load_config
    from gid_jax.train import get_task, train
    from gid_jax.train.trainer import TrainingDiverged

    config = load_config(args.config, args.overrides)
    if "task" not in config:
        raise ValueError(f"{args.config}: the config has no 'task' field naming the stage to train")
    try:
        result = train(get_task(config.task, config), config, args.workdir)
    except TrainingDiverged as err:
        print(f"gid train: error: {err}", file=sys.stderr)
        return 1
    if result.preempted:
        print(f"preempted: checkpoint saved at step {result.step}; run the same command to resume",
              file=sys.stderr)
        return 143  # 128 + SIGTERM, so schedulers see an unfinished job and can requeue it
    print(f"trained {config.task} to step {result.step}; checkpoints in {args.workdir}")
    return 0


def parse_drag(text: str) -> tuple[float, float, float, float]:
    try:
        x, y, dx, dy = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--drag must be x,y,dx,dy in image pixels, got {text!r}")
    return x, y, dx, dy


# The sampler choices, kept here as literals so that the arguments are checked before JAX and the
# models are imported; tests/test_loops.py checks them against gid_jax.pipeline.
SOLVERS = ("ddim", "dpm_solver_pp", "unipc", "consistency")
GRIDS = ("uniform", "quadratic", "logsnr")
LOOP_MODES = ("periods", "seam_guidance", "paper_guidance")
FIGURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pdf", ".svg")


def _sampler_overrides(args) -> dict:
    names = {"steps": "num_steps", "solver": "solver", "guidance": "guidance_weight",
             "order": "order", "grid": "grid", "loop_mode": "loop_mode",
             "match_amplitude": "match_amplitude"}
    return {field: getattr(args, arg) for arg, field in names.items()
            if getattr(args, arg, None) is not None}


def _check_number(value, option: str, positive: bool = True) -> None:
    if value is not None and not (math.isfinite(value) and (value > 0 if positive else value >= 0)):
        raise ValueError(f"{option} must be a finite number {'> 0' if positive else '>= 0'}, got {value}")


def _check_output(path, option: str, suffixes: tuple[str, ...]) -> Path:
    """An output file we will be able to write: known suffix, existing writable directory."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise ValueError(f"{path}: {option} must end in {' or '.join(suffixes)}")
    folder = path.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"{path}: {option} directory {folder} does not exist")
    if path.is_dir() or not os.access(folder, os.W_OK):
        raise PermissionError(f"{path}: {option} is not writable")
    return path


def _check_checkpoint(args) -> None:
    """The cheap part of Pipeline.load's checks, before anything heavy is imported; no
    --checkpoint means the model shipped with the package."""
    if args.checkpoint is None:
        from gid_jax.pretrained import bundle_path

        args.checkpoint = str(bundle_path())
    path = Path(args.checkpoint)
    if not ((path / "pipeline.json").is_file() or (path / "manifest.json").is_file()):
        raise FileNotFoundError(f"{path}: no pipeline.json or manifest.json here (expected a pipeline "
                                "directory from `gid quickstart` or a bundle from `gid export`)")


def _check_common_args(args) -> None:
    """What `animate` and `interact` share: the checkpoint path, --frames and the sampler."""
    _check_checkpoint(args)
    if args.frames < 1:
        raise ValueError(f"--frames must be >= 1, got {args.frames}")
    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    _check_number(args.guidance, "--guidance", positive=False)


class _Timings:
    """Wall time per phase of a command, printed as one JSON line on stderr with --timings."""

    def __init__(self, enabled: bool):
        self.enabled, self.phases, self._last = enabled, {}, time.perf_counter()

    def __call__(self, phase: str) -> None:
        now = time.perf_counter()
        self.phases[phase] = round(self.phases.get(phase, 0.0) + now - self._last, 3)
        self._last = now

    def report(self) -> None:
        if self.enabled:
            print("timings " + json.dumps(self.phases), file=sys.stderr)


def enable_compilation_cache() -> str:
    """JAX's persistent compilation cache, so a second `gid animate` reuses the compiled sampler
    and renderer instead of compiling them again (measured on a 2-core CPU: sample 23 → 5 s,
    render 17 → 2 s): JAX_COMPILATION_CACHE_DIR if set, else $XDG_CACHE_HOME/gid-jax/jax
    (~/.cache/gid-jax/jax); JAX_ENABLE_COMPILATION_CACHE=false turns it off."""
    import jax

    directory = os.environ.get("JAX_COMPILATION_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "gid-jax", "jax")
    jax.config.update("jax_compilation_cache_dir", directory)
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    return directory


def _cmd_animate(args) -> None:
    timings = _Timings(args.timings)
    _check_common_args(args)
    for option in ("speed", "amplitude", "fps"):
        _check_number(getattr(args, option), f"--{option}")
    out = _check_output(args.out, "--out", (".mp4", ".gif"))
    if args.motion_figure:
        _check_output(args.motion_figure, "--motion-figure", FIGURE_SUFFIXES)
    from data_pipelines.video_io import load_image

    image = load_image(args.image)      # a missing, unreadable or absurd image fails here
    timings("check")

    enable_compilation_cache()
    from data_pipelines.video_io import write_gif, write_video
    from gid_jax.pipeline import Pipeline

    timings("import")
    pipe = Pipeline.load(args.checkpoint)
    timings("load")
    overrides = _sampler_overrides(args)
    image = pipe.prepare_image(image)
    sv = pipe.predict_spectral_volume(image, args.seed, args.loop, num_frames=args.frames,
                                      speed=args.speed, **overrides)
    timings("sample")
    loop_mode = overrides.get("loop_mode")
    frames = pipe.render_motion(image, sv, args.frames, args.speed, args.amplitude, args.seed,
                                args.loop, loop_mode)
    timings("render")
    fps = args.fps or pipe.settings.fps
    (write_gif if out.suffix.lower() == ".gif" else write_video)(out, frames, fps)
    if args.motion_figure:
        from gid_jax.viz import spectral_volume_figure

        spectral_volume_figure(args.motion_figure, image, sv, frames=frames, fps=pipe.settings.fps,
                               period=pipe.settings.period, title=Path(args.image).name)
    timings("write")
    speed = pipe.playback_speed(args.frames, args.speed, args.loop, loop_mode)
    note = ""
    if speed != args.speed:
        note = (f" (a loop of {round(args.frames * speed / pipe.settings.period)} motion period(s): "
                f"speed {speed:.3g} instead of {args.speed:g})")
    print(f"{len(frames)} frames → {out}{note}")
    timings.report()


def _cmd_interact(args) -> None:
    _check_common_args(args)
    for option in ("alpha", "beta"):
        _check_number(getattr(args, option), f"--{option}", positive=False)
    if args.drag is not None:
        if args.out is None:
            raise ValueError("--drag needs --out response.mp4")
        _check_output(args.out, "--out", (".mp4",))
    from data_pipelines.video_io import load_image

    image = load_image(args.image)

    enable_compilation_cache()
    from gid_jax.interact import InteractiveSession, run_forever, write_drag_response
    from gid_jax.pipeline import Pipeline

    pipe = Pipeline.load(args.checkpoint)
    image = pipe.prepare_image(image)
    sv = pipe.predict_spectral_volume(image, seed=args.seed, **_sampler_overrides(args))
    render_fn = None if args.splat_preview else pipe.frame_renderer(sv, args.seed)
    session = InteractiveSession(image, sv, render_fn=render_fn, fps=pipe.settings.fps,
                                 alpha=args.alpha, beta=args.beta, period=pipe.settings.period)
    if args.drag is None:
        run_forever(session, port=args.port, open_browser=args.open_browser)
        return
    x, y, dx, dy = args.drag
    path = write_drag_response(args.out, session, (x, y), (dx, dy), args.frames)
    print(f"drag response ({args.frames} frames) → {path}")


def _cmd_eval(args) -> None:
    from gid_jax.config import load_config
    from gid_jax.eval.pipeline_eval import make_cell_evaluator
    from gid_jax.eval.sweep import run_sweep

    config = load_config(args.config, args.overrides)
    if not config.data_dir:
        raise ValueError("--config.data_dir is empty: point it at a `gid prepare` output folder")
    if args.keep_videos:
        config.keep_videos = True
    if args.report and int(config.get("report_clips", 0) or 0) <= 0:
        config.report_clips = 3
    evaluator = make_cell_evaluator(config)
    result = run_sweep(config, evaluator)
    print(f"{len(result['computed'])} cells computed, {len(result['skipped'])} already done; "
          f"results in {config.out_dir}")
    if evaluator.skipped_video_note:
        print(f"note: {evaluator.skipped_video_note}")
    merged = result["results"]
    if merged is not None and merged.get("table", {}).get("notes"):
        print("note: " + "; ".join(merged["table"]["notes"]))
    if args.report and merged is not None:
        from gid_jax.eval.report import write_report

        print(f"report: {write_report(config, merged)}")


def _cmd_quickstart(args) -> None:
    from gid_jax.quickstart import quickstart

    report = quickstart(args.workdir, num_videos=args.num_videos, num_heldout=args.num_heldout,
                        size=args.size, num_frames=args.frames, seed=args.seed,
                        motion_source=args.motion_source)
    print(f"report: {report}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gid", description="Generative Image Dynamics in JAX: synthesise training videos, "
        "learn motion priors, animate still images.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    synth = sub.add_parser(
        "synth", help="write procedural oscillation videos with ground-truth motion",
        description="Render physically based scenes (plants with leaves, grass, candle flames, "
        "hanging cloth) moving as damped modes driven by random wind. Each video is written as "
        "NAME.mp4 plus NAME.npz with the exact trajectories of every frame-0 pixel "
        "(T,H,W,2 in pixels), the visible-layer map and the scene's mode frequencies. "
        "Existing videos are kept, so an interrupted run can simply be repeated.")
    synth.add_argument("--out", required=True, help="output directory (created if missing)")
    synth.add_argument("--num-videos", type=int, required=True, help="number of videos to write")
    synth.add_argument("--size", type=parse_size, default=(256, 160),
                       help="WIDTHxHEIGHT, even numbers (default: 256x160, the paper's resolution)")
    synth.add_argument("--frames", type=int, default=150, help="frames per video (default: 150)")
    synth.add_argument("--fps", type=float, default=30.0, help="frame rate (default: 30)")
    synth.add_argument("--seed", type=int, default=0, help="random seed; video i uses (seed, i)")
    synth.add_argument("--camera-shake-prob", type=float, default=0.0,
                       help="fraction of videos with a shaking camera (default: 0)")
    synth.add_argument("--static-prob", type=float, default=0.0,
                       help="fraction of windless, motionless videos (default: 0)")
    synth.set_defaults(run=_cmd_synth)

    prep = sub.add_parser(
        "prepare", help="turn a folder of videos into training datasets",
        usage="gid prepare --videos DIR --out DATA_DIR [--config FILE:VARIANT] "
              "[--config.FIELD=VALUE ...] [--verbose] [-- BEAM_OPTIONS ...]",
        description="Decode every video (mp4/mov/webm/gif/frame folders) at the training fps and "
        "size, compute optical flow from every 10th frame to each of the next 149, FFT the "
        "trajectories into spectral volumes, drop camera-motion and static clips, and write TFDS "
        "datasets (spectral volumes + renderer pairs) with per-frequency normalisation "
        "statistics. Runs on Apache Beam: locally on the DirectRunner with all cores, or on "
        "Dataflow/Flink/Spark with pipeline options after `--`, e.g. "
        "`-- --runner=DataflowRunner --project=P --region=R --temp_location=gs://B/tmp`. "
        "Re-running skips finished videos; corrupt files are reported and skipped.")
    prep.add_argument("--videos", required=True, help="folder of videos (searched recursively)")
    prep.add_argument("--out", required=True, help="output data directory")
    prep.add_argument("--config", default="configs/prepare.py:paper",
                      help="config FILE:VARIANT (default: configs/prepare.py:paper; tiny for tests); "
                      "override fields with --config.FIELD=VALUE")
    prep.add_argument("--verbose", action="store_true",
                      help="show Apache Beam's INFO logging (runner and worker start-up, channels) "
                      "and TFDS's per-dataset 'Downloading and preparing' lines")
    prep.set_defaults(run=_cmd_prepare)

    trn = sub.add_parser(
        "train", help="train one stage (VAE, LDM stage 1/2, renderer)",
        usage="gid train --config configs/STAGE.py:VARIANT --workdir DIR [--config.FIELD=VALUE ...]",
        description="Run the generic training loop for the stage named by the config's `task` "
        "field, on every local device (and every host when launched with jax.distributed). "
        "Checkpoints, the input position and the RNG go to WORKDIR/checkpoints; rerunning the "
        "same command resumes exactly where a killed or preempted run stopped. Metrics go to "
        "TensorBoard event files and WORKDIR/metrics.jsonl.")
    trn.add_argument("--config", required=True,
                     help="config FILE:VARIANT, e.g. configs/vae.py:tiny or configs/ldm.py:paper")
    trn.add_argument("--workdir", required=True, help="run directory (checkpoints, metrics)")
    trn.set_defaults(run=_cmd_train)

    def add_sampler_args(p):
        p.add_argument("--seed", type=int, default=0, help="random seed of the motion (default: 0)")
        p.add_argument("--steps", type=int, help="sampling steps (default: the pipeline's)")
        p.add_argument("--solver", choices=SOLVERS, help="sampler (default: the pipeline's)")
        p.add_argument("--order", type=int, choices=(1, 2, 3),
                       help="multistep solver order (default: 2 for dpm_solver_pp, 3 for unipc)")
        p.add_argument("--grid", choices=GRIDS,
                       help="sampling step grid (default: uniform for ddim, logsnr otherwise)")
        p.add_argument("--guidance", type=float, help="classifier-free guidance weight w")
        p.add_argument("--match-amplitude", action=argparse.BooleanOptionalAction,
                       help="rescale the guided motion to the amplitude of the unguided (w = 0) "
                       "sample from the same noise: guidance picks where, the model how much "
                       "(default: the pipeline's)")

    anim = sub.add_parser(
        "animate", help="animate a still image into a (looping) video",
        description="Predict a spectral volume for IMAGE (any size: it is resized and centre-"
        "cropped to the model's; grey and RGBA images are converted), turn it into a motion "
        "texture and render the video with the trained renderer. --checkpoint is a pipeline "
        "directory (pipeline.json naming the LDM and renderer runs; `gid quickstart` writes "
        "WORKDIR/pipeline).")
    anim.add_argument("image", help="input image file")
    anim.add_argument("--checkpoint", help="pipeline directory or exported bundle (default: "
                      "the `small` model shipped with the package)")
    anim.add_argument("--out", required=True, help="output video, .mp4 or .gif")
    anim.add_argument("--loop", action="store_true",
                      help="a seamlessly looping video (frame N wraps to frame 0; see --loop-mode)")
    anim.add_argument("--loop-mode", choices=LOOP_MODES,
                      help="periods (default): play a whole number of periods of the motion, "
                      "changing the speed (reported) when --frames is not one; "
                      "seam_guidance: keep the speed and guide sampling towards a seamless wrap; "
                      "paper_guidance: the paper's self-guidance (Eq. 5) on F[T-1] = F[0]")
    anim.add_argument("--frames", type=int, default=150, help="frames to render (default: 150)")
    anim.add_argument("--fps", type=float, help="output frame rate (default: the model's)")
    anim.add_argument("--amplitude", type=float, default=1.0,
                      help="motion magnification (>1) or minification (<1) (default: 1)")
    anim.add_argument("--speed", type=float, default=1.0,
                      help="playback speed of the motion; 0.5 = 2x slow motion (default: 1)")
    anim.add_argument("--motion-figure", help="also save a picture of the predicted motion (PNG)")
    anim.add_argument("--timings", action="store_true",
                      help="print the wall time of each phase (check, import, load, sample, "
                      "render, write) as one JSON line on stderr")
    add_sampler_args(anim)
    anim.set_defaults(run=_cmd_animate)

    inter = sub.add_parser(
        "interact", help="drag a point of an image and watch the scene respond",
        description="Predict the image's spectral volume and use it as an image-space modal "
        "basis (docs/method.md §7.3). Without --drag: serve a local web page on 127.0.0.1 where you "
        "drag and release a point. With --drag x,y,dx,dy --out response.mp4: render that "
        "drag-and-release headlessly.")
    inter.add_argument("image", help="input image file")
    inter.add_argument("--checkpoint", help="pipeline directory or exported bundle (default: "
                      "the `small` model shipped with the package)")
    inter.add_argument("--port", type=int, default=8000, help="web page port (default: 8000)")
    inter.add_argument("--open-browser", action="store_true", help="open the page in a browser")
    inter.add_argument("--drag", type=parse_drag, help="headless: x,y,dx,dy in image pixels")
    inter.add_argument("--out", help="headless: output video (.mp4)")
    inter.add_argument("--frames", type=int, default=90, help="headless: frames (default: 90)")
    inter.add_argument("--alpha", type=float, default=0.4, help="Rayleigh damping α (paper: 0.4)")
    inter.add_argument("--beta", type=float, default=0.08, help="Rayleigh damping β (paper: 0.08)")
    inter.add_argument("--splat-preview", action="store_true",
                       help="render by plain softmax splatting instead of the trained renderer (faster)")
    add_sampler_args(inter)
    inter.set_defaults(run=_cmd_interact)

    ev = sub.add_parser(
        "eval", help="evaluate a grid of checkpoints x sampler settings on a test split",
        usage="gid eval --config configs/eval.py:VARIANT [--config.FIELD=VALUE ...]",
        description="A sweep over config.checkpoints (pipeline directories or bundles) and the "
        "config.grid axes (num_steps, guidance_weight, solver, num_freqs), plus the baselines of "
        "config.baselines. Each cell samples motion for the test examples of config.data_dir and "
        "scores it against the measured spectral volumes; with config.videos_dir (the videos "
        "`gid prepare` read) it also renders every clip and scores FID/KID/FVD/DTFVD against the "
        "real clips. Cells are shared out over all processes/hosts, each written as its own "
        "JSON (finished cells are skipped on re-runs); table.csv/json (one row per cell), "
        "results.csv/json and plots land in config.out_dir (docs/evaluation.md).")
    ev.add_argument("--config", default="configs/eval.py:paper", help="config FILE:VARIANT")
    ev.add_argument("--keep-videos", action="store_true",
                    help="write every generated (and real) clip to OUT/videos/ as mp4")
    ev.add_argument("--report", action="store_true",
                    help="also write OUT/report/index.html (offline: table, plots, sliding-window "
                    "curves, a few clips side by side)")
    ev.set_defaults(run=_cmd_eval)

    from gid_jax.export import add_export_command  # noqa: PLC0415 - its own sub-command

    add_export_command(sub)

    quick = sub.add_parser(
        "quickstart", help="run the main job end to end on procedural data",
        description="The main job (what `make demo` runs), the whole method end to end at tiny "
        "size on a CPU: synthesise procedural videos, prepare datasets (exact or optical-flow "
        "motion, spectral volumes), train the VAE, LDM stages 1 and 2 and the renderer, then measure on held-out "
        "scenes whether the motion prior learned (localisation AUC, amplitude ratio, spectrum, "
        "image dependence, seed diversity, renderer vs plain splatting; each beside an untrained "
        "model, zero motion, a fixed map and the truth), animate them, and write "
        "WORKDIR/report/report.md. Finished steps are reused on re-runs.")
    quick.add_argument("--workdir", required=True, help="directory for videos and the report")
    quick.add_argument("--num-videos", type=int, default=160, help="training videos (default: 160)")
    quick.add_argument("--num-heldout", type=int, default=32,
                       help="held-out scenes the learning metrics use; the first 8 are animated (default: 32)")
    quick.add_argument("--size", type=parse_size, default=(64, 40), help="WIDTHxHEIGHT (default: 64x40)")
    quick.add_argument("--frames", type=int, default=30,
                       help="frames per video (default: 30, one period T of the tiny models)")
    quick.add_argument("--motion-source", choices=("ground_truth", "flow"), default="ground_truth",
                       help="training motion: the generator's exact trajectories (default; at "
                       "64x40 the motion is sub-pixel and optical flow mostly measures noise) or "
                       "optical flow as in the paper")
    quick.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    quick.set_defaults(run=_cmd_quickstart)
    return parser


def _quiet_libraries(record: logging.LogRecord) -> bool:
    """Keeps INFO from our code (progress, ETA, metrics); libraries speak at WARNING and up."""
    if record.levelno >= logging.WARNING:
        return True
    path = record.pathname.replace("\\", "/")
    return "/gid_jax/" in path or "/data_pipelines/" in path or "/clu/periodic_actions" in path


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter
    # ... and its "oneDNN custom operations are on" banner, printed before any log level
    # applies; TensorFlow only feeds data here (tf.data), none of the model's numerics.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname).1s %(message)s",
                        datefmt="%H:%M:%S")
    for handler in logging.getLogger().handlers:
        handler.addFilter(_quiet_libraries)
    from gid_jax.logs import quiet_libraries

    quiet_libraries()   # the libraries' known noise (Orbax, TFDS), at any level
    from gid_jax.config import split_overrides

    argv = list(sys.argv[1:] if argv is None else argv)
    beam_options = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    argv, overrides = split_overrides(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.overrides, args.beam_options = overrides, beam_options
    if overrides and not hasattr(args, "config"):
        parser.error(f"gid {args.command} takes no --config overrides")
    try:
        code = args.run(args)
    except (ValueError, OSError) as err:
        # Bad input gets one clear line, not a traceback (docs/architecture.md §8.6).
        print(f"gid {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gid {args.command}: interrupted", file=sys.stderr)
        return 130
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
