"""The `gid` command line: one sub-command per job, each with its own `--help`."""

from __future__ import annotations

import argparse
import logging
import os
import sys


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
    from data_pipelines.prepare import prepare, summary
    from gid_jax.config import load_config

    config = load_config(args.config, args.overrides)
    result = prepare(args.videos, args.out, config, beam_options=args.beam_options)
    print(summary(result))


def _cmd_train(args) -> int:
    from gid_jax.config import load_config
    from gid_jax.train import get_task, train

    config = load_config(args.config, args.overrides)
    if "task" not in config:
        raise ValueError(f"{args.config}: the config has no 'task' field naming the stage to train")
    result = train(get_task(config.task, config), config, args.workdir)
    if result.preempted:
        print(f"preempted: checkpoint saved at step {result.step}; run the same command to resume",
              file=sys.stderr)
        return 143  # 128 + SIGTERM, so schedulers see an unfinished job and can requeue it
    print(f"trained {config.task} to step {result.step}; checkpoints in {args.workdir}")
    return 0


def _cmd_quickstart(args) -> None:
    from gid_jax.quickstart import quickstart

    report = quickstart(args.workdir, num_videos=args.num_videos, size=args.size,
                        num_frames=args.frames, seed=args.seed)
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
              "[--config.FIELD=VALUE ...] [-- BEAM_OPTIONS ...]",
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

    quick = sub.add_parser(
        "quickstart", help="run the main job end to end on procedural data",
        description="The main job (what `make demo` runs): synthesise a few procedural videos, "
        "turn their ground-truth motion into spectral volumes, and write a report with "
        "per-frequency amplitude maps and X-t slices. Finished steps are reused on re-runs.")
    quick.add_argument("--workdir", required=True, help="directory for videos and the report")
    quick.add_argument("--num-videos", type=int, default=4, help="procedural videos (default: 4)")
    quick.add_argument("--size", type=parse_size, default=(256, 160), help="WIDTHxHEIGHT (default: 256x160)")
    quick.add_argument("--frames", type=int, default=150, help="frames per video (default: 150)")
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
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname).1s %(message)s",
                        datefmt="%H:%M:%S")
    for handler in logging.getLogger().handlers:
        handler.addFilter(_quiet_libraries)
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
        # Bad input gets one clear line, not a traceback (DESIGN.md, Errors).
        print(f"gid {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gid {args.command}: interrupted", file=sys.stderr)
        return 130
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
