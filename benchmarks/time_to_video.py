"""Time from `gid animate` to a looping video: a cold run (empty compilation cache) and a warm
one, each a fresh process, with the command's own breakdown; prints one JSON object.

    python benchmarks/time_to_video.py --checkpoint runs/demo/pipeline            # 150-frame loop
    python benchmarks/time_to_video.py photo.png --checkpoint BUNDLE --frames 90 --steps 20

Each run is `python -m gid_jax.cli animate IMAGE --out OUT --loop --frames N --timings` with
JAX_COMPILATION_CACHE_DIR set to a fresh directory shared by the two runs, so the first one
compiles everything and the second one finds it cached, as a user's second `gid animate` does.
`--timings` gives check / import / load / sample / render / write seconds; `startup` is the rest
of the wall time (interpreter, `gid` itself, JAX). Wall times on a shared machine depend on the
load: the load average before and after each run is reported with it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def default_checkpoint() -> str | None:
    """The shipped default model, where gid_jax has one (`Pipeline.pretrained()`)."""
    from gid_jax.pipeline import Pipeline

    pretrained = getattr(Pipeline, "pretrained", None)
    if pretrained is None:
        return None
    pipe = pretrained()
    path = getattr(pipe, "bundle", None) or getattr(pipe, "path", None)
    return str(path) if path else None


def make_image(path: Path) -> Path:
    """A smooth random 256x160 RGB image (any image works; the model resizes it)."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur((rng.random((160, 256, 3)) * 255).astype(np.uint8), (9, 9), 3.0)
    cv2.imwrite(str(path), image)
    return path


def run_once(command: list[str], env: dict) -> dict:
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"gid animate failed ({result.returncode}):\n{result.stderr[-3000:]}")
    lines = [line for line in result.stderr.splitlines() if line.startswith("timings ")]
    phases = json.loads(lines[-1][len("timings "):]) if lines else {}
    phases["startup"] = round(wall - sum(phases.values()), 3)
    return {"wall_s": round(wall, 2), "phases_s": phases,
            "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("image", nargs="?", help="input image (default: a generated 256x160 one)")
    ap.add_argument("--checkpoint", help="pipeline directory or bundle (default: the shipped model)")
    ap.add_argument("--frames", type=int, default=150, help="frames of the loop (default: 150)")
    ap.add_argument("--steps", type=int, help="sampler steps (default: the pipeline's)")
    ap.add_argument("--solver", help="sampler (default: the pipeline's)")
    ap.add_argument("--runs", type=int, default=2, help="runs after the cold one share its cache")
    args = ap.parse_args()

    checkpoint = args.checkpoint or default_checkpoint()
    if checkpoint is None:
        ap.error("no shipped default model in this gid_jax: pass --checkpoint PIPELINE_DIR_OR_BUNDLE")
    with tempfile.TemporaryDirectory(prefix="gid-time-to-video-") as tmp:
        tmp = Path(tmp)
        image = args.image or str(make_image(tmp / "image.png"))
        command = [sys.executable, "-m", "gid_jax.cli", "animate", image, "--checkpoint", checkpoint,
                   "--out", str(tmp / "loop.mp4"), "--loop", "--frames", str(args.frames), "--timings"]
        for flag, value in (("--steps", args.steps), ("--solver", args.solver)):
            if value is not None:
                command += [flag, str(value)]
        env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(tmp / "jax-cache")}
        runs = [run_once(command, env) for _ in range(max(2, args.runs))]
    print(json.dumps({
        "checkpoint": checkpoint, "frames": args.frames, "cpus": os.cpu_count(),
        "first_run_s": runs[0]["wall_s"], "second_run_s": runs[1]["wall_s"], "runs": runs,
        "command": " ".join(command[1:]),
    }, indent=2))


if __name__ == "__main__":
    main()
