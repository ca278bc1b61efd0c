"""Frame rate of the `gid interact` page in headless Chromium, with the learned renderer and with
the splat preview; prints one JSON object.

    python benchmarks/interactive_fps.py                         # the shipped default model
    python benchmarks/interactive_fps.py photo.jpg --checkpoint runs/demo/pipeline --seconds 10

The scene is built as `gid interact` builds it: the pipeline's spectral volume of the image
(default: the first frame of a procedural scene at the model's size), rendered by the trained
renderer or, as with `gid interact --splat-preview`, by plain softmax splatting. Each mode is
served on 127.0.0.1 and opened in headless Chromium with a scripted drag at the liveliest pixel
(``?autodrag=``, repeated whenever the scene comes to rest). The page counts the frames it
actually draws and shows them per second in its corner label ("12.3 fps"), reporting each
one-second value to /telemetry; a mode's ``fps`` is the frames over the seconds of all its full
one-second windows. The page never plays faster than the scene's fps (``scene_fps``). The
server, JAX and Chromium share the machine's CPUs: the load average is reported alongside.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np


def parse_drag(text: str) -> tuple[float, float, float, float]:
    try:
        x, y, dx, dy = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--drag: expected x,y,dx,dy numbers, got {text!r}") from None
    return x, y, dx, dy


def liveliest_pixel(sv) -> tuple[int, int]:
    """The pixel with the largest mean spectral amplitude (bands k >= 1): a drag there moves."""
    sv = np.asarray(sv, np.float32)
    amp = np.sqrt((sv[1:] ** 2).sum(-1)).mean(0)
    y, x = np.unravel_index(np.argmax(amp), amp.shape)
    return int(x), int(y)


def build_sessions(args):
    """(image, spectral volume, {mode: InteractiveSession}) as `gid interact` would build them."""
    from gid_jax.cli import enable_compilation_cache
    from gid_jax.interact import InteractiveSession
    from gid_jax.pipeline import Pipeline

    enable_compilation_cache()
    pipe = Pipeline.load(args.checkpoint) if args.checkpoint else Pipeline.pretrained()
    if args.image:
        image = pipe.prepare_image(args.image)
    else:
        from data_pipelines.synth import generate_video

        image = generate_video(args.seed, size=(pipe.width, pipe.height), num_frames=30).frames[0]
        image = np.asarray(image, np.float32)
    sv = pipe.predict_spectral_volume(image, seed=args.seed)
    timing = {"fps": pipe.settings.fps, "period": pipe.settings.period}
    sessions = {
        "learned_renderer": InteractiveSession(image, sv, pipe.frame_renderer(sv, args.seed),
                                               **timing),
        "splat_preview": InteractiveSession(image, sv, **timing),
    }
    return image, sv, sessions


def measure(session, drag, seconds: float, chromium: str) -> dict:
    """Serve ``session``, drag it in headless Chromium until ``seconds`` of full fps windows."""
    from gid_jax.interact import serve
    from gid_jax.interact.browser import HeadlessChromium, wait_for_telemetry

    def windows(records):
        return [r for r in records if r.get("kind") == "fps" and r.get("full")]

    def enough(records):
        return sum(r["ms"] for r in windows(records)) >= 1000.0 * seconds

    x, y, dx, dy = drag
    server, url = serve(session)          # compiles the render path first, as `gid interact`
    try:
        query = f"?autodrag={x:g},{y:g},{dx:g},{dy:g}&repeat=1000&telemetry=fps"
        with HeadlessChromium(url + query, chromium) as browser:
            records = wait_for_telemetry(server, enough, 4.0 * seconds + 60.0, browser)
    finally:
        server.shutdown()
        server.server_close()
    errors = [r["message"] for r in records if r.get("kind") == "error"]
    full = windows(records)
    if errors or not full:
        sys.exit(f"{session.renderer_name}: no frame rate measured (page errors: {errors}; "
                 f"telemetry: {records[-5:]}; chromium said:\n{browser.output}")
    frames, ms = sum(r["frames"] for r in full), sum(r["ms"] for r in full)
    return {
        "renderer": session.renderer_name,
        "fps": round(1000.0 * frames / ms, 2),
        "fps_per_second": [round(float(r["fps"]), 1) for r in full],
        "labels": sorted({r["label"] for r in full}),
        "frames": frames, "seconds": round(ms / 1000.0, 2),
        "drags": sum(r.get("kind") == "drag" for r in records),
        "server_render_ms_per_frame": round(statistics.median(r["render_ms"] for r in full), 2),
    }


def device() -> str:
    import jax

    d = jax.devices()[0]
    return f"cpu ({os.cpu_count()} cores)" if d.platform == "cpu" else f"{d.platform}: {d.device_kind}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("image", nargs="?", help="input image (default: a procedural scene's first frame)")
    ap.add_argument("--checkpoint", help="pipeline directory or bundle (default: the shipped model)")
    ap.add_argument("--seconds", type=float, default=6.0, help="seconds measured per mode (default: 6)")
    ap.add_argument("--drag", type=parse_drag, help="x,y,dx,dy (default: the liveliest pixel by 6,-3)")
    ap.add_argument("--seed", type=int, default=0, help="scene, sampler and renderer seed")
    ap.add_argument("--modes", default="learned_renderer,splat_preview",
                    help="comma-separated: learned_renderer, splat_preview")
    args = ap.parse_args()

    from gid_jax.interact.browser import find_chromium

    chromium = find_chromium()
    if chromium is None:
        ap.error("needs Chromium on PATH (apt-get install -y chromium)")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    load_before = os.getloadavg()[0]
    image, sv, sessions = build_sessions(args)
    unknown = sorted(set(modes) - set(sessions))
    if unknown:
        ap.error(f"--modes: unknown {unknown}; choose from {sorted(sessions)}")
    drag = args.drag or (*map(float, liveliest_pixel(sv)), 6.0, -3.0)
    result = {
        "checkpoint": args.checkpoint or "pretrained:small",
        "image_size": {"width": int(image.shape[1]), "height": int(image.shape[0])},
        "device": device(), "scene_fps": sessions[modes[0]].fps, "drag": list(drag),
    }
    for mode in modes:
        started = time.perf_counter()
        result[mode] = measure(sessions[mode], drag, args.seconds, chromium)
        result[mode]["wall_s"] = round(time.perf_counter() - started, 1)
    result["load_average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
