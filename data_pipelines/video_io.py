"""Video files in and out: the one place that talks to the codec library (PyAV).

Reading training data
---------------------
`load_clip` turns one *source* — a video file (mp4, mov, webm, mkv, avi, m4v, gif) or a folder of
numbered frames (png, jpg, jpeg, bmp) — into a `Clip`: float32 RGB frames `(T, H, W, 3)` in [0, 1]
at a known, constant frame rate, optionally resampled in time (`fps=`) and resized + centre-cropped
to the training resolution (`size=(W, H)`). Frames are decoded one at a time, so `max_frames` stops
decoding early and a long video never sits in memory as a whole.

Temporal resampling **picks frames, never blends them**: output frame i shows the source frame on
screen at time `i / fps` (the last one whose presentation timestamp is at or before it).
Blending two neighbouring frames would create double-exposure "ghosts" that an optical-flow
estimator reads as spurious half-way motion, corrupting the motion trajectories we learn from.
Real timestamps (pts × time_base) are used when the container has them, so variable-frame-rate
sources such as GIFs (per-frame delays) keep their true timing.

`iter_video_sources(root)` lists every source under a directory and `load_clips(...)` loads many of
them, either skipping bad ones (yielding the error so it can be reported) or failing loudly.

Every problem with an input becomes one `VideoError` (a `ValueError`) whose one-line message names
the file and what is wrong.
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator, Literal

import av
import cv2
import numpy as np

from gid_jax.atomic import atomic_path

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".mov", ".m4v", ".webm", ".mkv", ".avi", ".gif")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
MIN_IMAGE_SIDE = 8              # smaller stills carry no scene to animate
MAX_IMAGE_PIXELS = 1 << 27      # 134 MP: larger is a mistake (or a decompression bomb)


class VideoError(ValueError):
    """A video source that cannot be used; the message names the file and the problem."""


class VideoNotFoundError(VideoError, FileNotFoundError):
    """The source does not exist (also a `FileNotFoundError`, for callers that catch that)."""


@dataclass
class Clip:
    """Decoded frames: float32 `(T, H, W, 3)` in [0, 1] at constant `fps`, and the `source` path."""

    frames: np.ndarray
    fps: float
    source: str

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the frames."""
        return int(self.frames.shape[2]), int(self.frames.shape[1])


# ----------------------------------------------------------------------------------------------
# Writing


def _to_uint8(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype == np.uint8:
        return frames
    return (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float, crf: int = 16) -> Path:
    """Writes `(T,H,W,3)` frames (float in [0,1] or uint8) as an H.264 mp4, atomically.

    The file is encoded under a temporary name and renamed at the end, so an interrupted run
    never leaves a truncated video behind. H.264 with yuv420p needs even width and height.
    """
    path = Path(path)
    frames = _to_uint8(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{path}: frames must have shape (T,H,W,3), got {frames.shape}")
    _, height, width, _ = frames.shape
    if height % 2 or width % 2:
        raise ValueError(f"{path}: H.264 needs even frame sizes, got {width}x{height}")
    with atomic_path(path, ".mp4") as tmp, av.open(str(tmp), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "medium"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


# ----------------------------------------------------------------------------------------------
# Reading: public API


def read_video(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """Decodes every frame of a video file → (`(T,H,W,3)` float32 in [0,1], fps).

    Raises `VideoNotFoundError` (a `FileNotFoundError`) for a missing file and `VideoError`
    (a `ValueError`) for anything else wrong with it.
    """
    path = Path(path)
    if not path.is_file():
        raise VideoNotFoundError(f"{path}: no such video file")
    clip = load_clip(path)
    return clip.frames, clip.fps


def load_clip(path: str | os.PathLike, fps: float | None = None,
              size: tuple[int, int] | None = None, max_frames: int | None = None,
              min_frames: int = 1, folder_fps: float | None = None) -> Clip:
    """Loads a video file or a folder of frames as a `Clip`.

    Args:
      path: a video file (see `VIDEO_EXTENSIONS`) or a folder of images (`IMAGE_EXTENSIONS`,
        ordered by natural sort of their names: frame_2 before frame_10).
      fps: output frame rate. For a video, frames are resampled to it by the frame on screen at each time (no
        blending; see the module docstring); None keeps every decoded frame and reports the
        source's own rate. For a folder it is required (unless `folder_fps` is given) and is the
        rate the frames were captured at.
      size: (width, height) to resize to: scaled (aspect kept) to cover it, then centre-cropped.
        INTER_AREA when shrinking, INTER_CUBIC when enlarging. None keeps the source size.
      max_frames: keep at most this many output frames; decoding stops as soon as they exist.
      min_frames: fewer output frames than this raises `VideoError` (with the count).
      folder_fps: for folders only, the capture rate of the frames when it differs from `fps`
        (the frames are then resampled from `folder_fps` to `fps`).

    Raises:
      VideoError: missing/unreadable/corrupt source, no video stream, unsupported extension,
        empty folder, undecodable image, inconsistent frame sizes, or too few frames.
    """
    path = Path(path)
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames!r}")
    if max_frames is not None and min_frames > max_frames:
        raise ValueError(f"min_frames ({min_frames}) exceeds max_frames ({max_frames})")
    if size is not None:
        size = (int(size[0]), int(size[1]))
        if size[0] < 1 or size[1] < 1:
            raise ValueError(f"size must be a positive (width, height), got {size!r}")

    if not path.exists():
        raise VideoNotFoundError(f"{path}: no such file or folder")
    if path.is_dir():
        src_fps = folder_fps if folder_fps is not None else fps
        if src_fps is None:
            raise VideoError(f"{path}: a folder of frames has no frame rate of its own; "
                             f"pass fps= (or folder_fps=)")
        if not (math.isfinite(src_fps) and src_fps > 0):
            raise ValueError(f"folder_fps must be a positive number, got {src_fps!r}")
        timed, native_fps, state = _folder_frames(path, float(src_fps)), float(src_fps), None
    elif path.suffix.lower() in VIDEO_EXTENSIONS:
        state = _DecodeState()
        timed, native_fps = _video_frames(path, state), None
    else:
        raise VideoError(f"{path}: unsupported file type '{path.suffix}' (expected a folder of "
                         f"frames or one of {', '.join(VIDEO_EXTENSIONS)})")

    out: list[np.ndarray] = []
    first_shape = None
    source = _drop_times(timed) if fps is None else _resample_on_screen(timed, float(fps))
    try:
        last_raw = last_out = None
        for frame in source:
            if frame is last_raw:  # a duplicate from upsampling in time: reuse the work
                out.append(last_out)
                if max_frames is not None and len(out) >= max_frames:
                    break
                continue
            last_raw = frame
            if size is not None:
                frame = _cover_crop(frame, size)
            elif first_shape is None:
                first_shape = frame.shape
            elif frame.shape != first_shape:
                raise VideoError(f"{path}: frame {len(out)} is {frame.shape[1]}x{frame.shape[0]} "
                                 f"but earlier frames are {first_shape[1]}x{first_shape[0]}; "
                                 f"pass size= to resize them all")
            last_out = _to_float(frame)
            out.append(last_out)
            if max_frames is not None and len(out) >= max_frames:
                break
    finally:
        source.close()  # stops decoding and closes the container right away
        timed.close()

    if len(out) < max(min_frames, 1):
        what = "no frames" if not out else f"only {len(out)} frame{'s' * (len(out) != 1)}"
        rate = f" at {fps:g} fps" if fps is not None else ""
        raise VideoError(f"{path}: too short: {what}{rate}, need at least {max(min_frames, 1)}")
    if fps is None:
        fps_out = native_fps if native_fps is not None else state.native_fps(path)
    else:
        fps_out = float(fps)
    return Clip(frames=np.stack(out), fps=float(fps_out), source=str(path))


def iter_video_sources(root: str | os.PathLike) -> list[Path]:
    """Every video file and frame folder under `root` (recursively), naturally sorted.

    A folder is a frame folder if it directly holds at least two image files. Hidden files and
    folders (name starting with '.') are skipped, which also skips `write_video`'s temporaries.
    `root` itself may be a video file or a frame folder.
    """
    root = Path(root)
    if not root.exists():
        raise VideoNotFoundError(f"{root}: no such file or folder")
    if root.is_file():
        if root.suffix.lower() not in VIDEO_EXTENSIONS:
            raise VideoError(f"{root}: unsupported file type '{root.suffix}'")
        return [root]
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        here = Path(dirpath)
        visible = [f for f in filenames if not f.startswith(".")]
        if sum(f.lower().endswith(IMAGE_EXTENSIONS) for f in visible) >= 2:
            found.append(here)
        found.extend(here / f for f in visible if f.lower().endswith(VIDEO_EXTENSIONS))
    return sorted(found, key=lambda p: [_natural_key(part) for part in p.parts])


def load_clips(paths: Iterable[str | os.PathLike] | str | os.PathLike, fps: float | None = None,
               size: tuple[int, int] | None = None, max_frames: int | None = None,
               min_frames: int = 1, folder_fps: float | None = None,
               on_error: Literal["skip", "raise"] = "skip",
               ) -> Iterator[tuple[Path, Clip | VideoError]]:
    """Loads many sources lazily, yielding `(path, Clip)` — or `(path, VideoError)` for a bad one.

    `paths` is a list of sources, or a single directory (expanded with `iter_video_sources`).
    on_error="skip": a bad source is logged as a warning and yielded with its `VideoError`, so the
    caller can report it, and loading goes on. on_error="raise": the first `VideoError` is raised.
    Errors that are not about the input (bugs, out of memory) always propagate.
    """
    if on_error not in ("skip", "raise"):
        raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
    if isinstance(paths, (str, os.PathLike)):
        paths = iter_video_sources(paths) if Path(paths).is_dir() else [Path(paths)]
    for p in paths:
        p = Path(p)
        try:
            clip = load_clip(p, fps=fps, size=size, max_frames=max_frames,
                             min_frames=min_frames, folder_fps=folder_fps)
        except VideoError as err:
            if on_error == "raise":
                raise
            log.warning("skipping video source: %s", err)
            yield p, err
        else:
            yield p, clip


# ----------------------------------------------------------------------------------------------
# Internals


def _natural_key(name: str) -> list:
    """'frame_10.png' → ['frame_', 10, '.png'] so digits compare as numbers."""
    return [(0, int(tok), tok) if tok.isdigit() else (1, tok.lower(), tok)
            for tok in re.split(r"(\d+)", name) if tok != ""]


def _to_float(frame: np.ndarray) -> np.ndarray:
    if frame.dtype == np.uint8:
        return frame.astype(np.float32) * np.float32(1.0 / 255.0)
    if frame.dtype == np.uint16:
        return frame.astype(np.float32) * np.float32(1.0 / 65535.0)
    return np.clip(frame.astype(np.float32), 0.0, 1.0)


def cover_size(w: int, h: int, size: tuple[int, int]) -> tuple[int, int]:
    """(width, height) a (w, h) frame is scaled to (aspect kept) so that it covers `size`=(W, H)."""
    out_w, out_h = size
    scale = max(out_w / w, out_h / h)
    return max(out_w, int(round(w * scale))), max(out_h, int(round(h * scale)))


def _cover_crop(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scales `frame` (aspect kept) so it covers `size`=(W, H), then centre-crops to it."""
    out_w, out_h = size
    h, w = frame.shape[:2]
    if (w, h) == (out_w, out_h):
        return frame
    new_w, new_h = cover_size(w, h, size)
    if (new_w, new_h) != (w, h):
        interp = cv2.INTER_AREA if max(out_w / w, out_h / h) < 1.0 else cv2.INTER_CUBIC
        frame = cv2.resize(frame, (new_w, new_h), interpolation=interp)
    x0, y0 = (new_w - out_w) // 2, (new_h - out_h) // 2
    return np.ascontiguousarray(frame[y0:y0 + out_h, x0:x0 + out_w])


def _to_rgb(img: np.ndarray) -> np.ndarray:
    """cv2's grey / BGR / BGRA (uint8 or uint16, or float) → RGB, same dtype. Alpha is dropped."""
    if img.ndim == 2:
        img = img[:, :, None]
    channels = img.shape[2]
    if channels == 1:
        return np.repeat(img, 3, axis=2)
    if channels == 2:  # grey + alpha
        return np.repeat(img[:, :, :1], 3, axis=2)
    return np.ascontiguousarray(img[:, :, 2::-1])  # BGR(A) → RGB


def _read_image(path: Path, folder: Path) -> np.ndarray:
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        reason = err.strerror or err
        raise VideoError(f"{folder}: cannot read frame {path.name} ({reason})") from None
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise VideoError(f"{folder}: cannot decode frame image {path.name} "
                         f"(corrupt or not an image)")
    if img.dtype not in (np.uint8, np.uint16, np.float32):
        img = img.astype(np.float32)
    return _to_rgb(img)


def _folder_frames(folder: Path, fps: float) -> Iterator[tuple[float, float | None, np.ndarray]]:
    """Yields (time, duration, RGB image) for the images in `folder`, in natural order."""
    names = sorted((f.name for f in folder.iterdir()
                    if f.is_file() and not f.name.startswith(".")
                    and f.suffix.lower() in IMAGE_EXTENSIONS), key=_natural_key)
    if not names:
        raise VideoError(f"{folder}: folder holds no frame images "
                         f"({', '.join(IMAGE_EXTENSIONS)})")
    for i, name in enumerate(names):
        yield i / fps, 1.0 / fps, _read_image(folder / name, folder)


class _DecodeState:
    """What decoding a video learned: rates and timestamps, for the native-fps estimate."""

    def __init__(self):
        self.stream_rate: float | None = None
        self.first_time: float | None = None
        self.last_end: float | None = None
        self.count = 0

    def native_fps(self, path: Path) -> float:
        measured = None
        if self.count >= 2 and self.last_end is not None and self.last_end > self.first_time:
            measured = self.count / (self.last_end - self.first_time)
        rate = self.stream_rate
        if rate and (measured is None or abs(rate - measured) <= 0.01 * measured):
            return rate  # the container's exact rational rate (e.g. 30000/1001)
        if measured is not None:
            return measured  # GIFs and other variable-rate sources: mean rate from timestamps
        if rate:
            return rate
        raise VideoError(f"{path}: cannot tell the frame rate; pass fps=")


def _frame_array(frame: av.VideoFrame) -> np.ndarray:
    """Any pixel format → RGB uint8, or uint16 for sources with more than 8 bits per channel."""
    try:
        deep = max(c.bits for c in frame.format.components) > 8
    except (AttributeError, ValueError):
        deep = False
    if deep:
        return frame.to_ndarray(format="rgb48le")
    return frame.to_ndarray(format="rgb24")


def _video_frames(path: Path, state: _DecodeState,
                  ) -> Iterator[tuple[float, float | None, np.ndarray]]:
    """Yields (time in s from the first frame, duration in s or None, RGB array), lazily."""
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as err:
        raise VideoError(f"{path}: cannot open video, file is unreadable or corrupt "
                         f"({_ffmpeg_reason(err)})") from None
    except OSError as err:
        raise VideoError(f"{path}: cannot open video ({err.strerror or err})") from None
    finished = False
    decoded = 0
    with container:
        if not container.streams.video:
            raise VideoError(f"{path}: file has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate
        state.stream_rate = float(rate) if rate and float(rate) > 0 else None
        time_base = stream.time_base
        fallback_dt = 1.0 / state.stream_rate if state.stream_rate else None
        prev_t = None
        try:
            for frame in container.decode(stream):
                if frame.pts is not None and time_base is not None:
                    t = float(frame.pts * time_base)
                elif prev_t is not None and fallback_dt is not None:
                    t = prev_t + fallback_dt
                else:
                    t = float(decoded * fallback_dt) if fallback_dt else float(decoded)
                if prev_t is not None and t < prev_t:  # broken, non-monotonic timestamps
                    t = prev_t
                dur = None
                if getattr(frame, "duration", None) and time_base is not None:
                    dur = float(frame.duration * time_base)
                if state.first_time is None:
                    state.first_time = t
                state.count += 1
                state.last_end = t + (dur if dur else (fallback_dt or 0.0))
                prev_t = t
                decoded += 1
                yield t - state.first_time, dur, _frame_array(frame)
            finished = True
        except av.error.FFmpegError as err:
            raise VideoError(f"{path}: corrupt video, decoding failed after {decoded} frames "
                             f"({_ffmpeg_reason(err)})") from None
        # Frame counts can't tell truncation: AVIs list dropped-frame chunks that decode to nothing
        # (tests/data/tree.avi lists 444 and holds 68). The time covered by the decoded frames can.
        if finished and decoded and stream.duration and time_base is not None:
            listed = float(stream.duration * time_base)
            covered = state.last_end - state.first_time
            if covered < listed - max(2 * (fallback_dt or 0.0), 0.02 * listed):
                raise VideoError(f"{path}: truncated or corrupt video, the container lists "
                                 f"{listed:.2f} s but the decodable frames cover {covered:.2f} s")


def _ffmpeg_reason(err: Exception) -> str:
    return getattr(err, "strerror", None) or str(err)


def _drop_times(timed: Iterator[tuple[float, float | None, np.ndarray]]) -> Iterator[np.ndarray]:
    for _, _, frame in timed:
        yield frame


def _resample_on_screen(timed: Iterator[tuple[float, float | None, np.ndarray]], fps: float,
                        ) -> Iterator[np.ndarray]:
    """Constant-rate output at `fps`: for each t_i = i/fps, the source frame on screen at t_i.

    That is the last source frame starting at or before t_i, so a frame held for long (GIF
    delays, AVIs with dropped frames) repeats for exactly as long as it is shown. Streaming (one
    source frame of look-behind). The source lasts until the end of its last frame (timestamp +
    duration), so e.g. 15 → 30 fps duplicates every frame, including the last, and 60 → 30 fps
    keeps frames 0, 2, 4, ...
    """
    eps = 1e-6 / fps
    i = 0
    prev_t = prev_frame = None
    deltas: list[float] = []
    last_dur = None
    for t, dur, frame in timed:
        if prev_frame is not None:
            if t > prev_t:
                deltas.append(t - prev_t)
            while i / fps < t - eps:  # output times before this frame starts show the previous one
                yield prev_frame
                i += 1
        prev_t, prev_frame, last_dur = t, frame, dur
    if prev_frame is None:
        return
    if not last_dur:
        last_dur = float(np.median(deltas)) if deltas else 1.0 / fps
    end = prev_t + last_dur
    while i / fps < end - eps:
        yield prev_frame
        i += 1


def load_image(image, size: tuple[int, int] | None = None) -> np.ndarray:
    """A still image → float32 RGB `(H, W, 3)` in [0, 1], optionally resized to cover `size`
    = (W, H) and centre-cropped (any aspect ratio works; only a side under MIN_IMAGE_SIDE or
    more than MAX_IMAGE_PIXELS is rejected).

    `image` is a file path (png/jpg/bmp/...; grey, RGBA, 16-bit all fine: alpha is dropped) or an
    array `(H, W)`, `(H, W, 1|3|4)` in RGB order, uint8/uint16 or float in [0, 1].
    """
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such image file")
        try:   # OpenCV raises (not returns None) for a header over its pixel limit
            data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        except cv2.error as err:   # e.g. a header claiming more than CV_IO_MAX_IMAGE_PIXELS
            detail = str(err).strip().splitlines()[-1].partition("error: ")[2] or str(err).strip()
            raise ValueError(f"{path}: cannot read image (OpenCV: {detail})") from None
        if data is None:
            raise ValueError(f"{path}: cannot read image (corrupt or not an image)")
        rgb = _to_rgb(data)
    else:
        rgb = np.asarray(image)
        if rgb.ndim == 2:
            rgb = rgb[:, :, None]
        if rgb.ndim != 3 or rgb.shape[2] not in (1, 3, 4) or min(rgb.shape[:2]) < 1:
            raise ValueError(f"image must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {rgb.shape}")
        rgb = np.repeat(rgb, 3, axis=2) if rgb.shape[2] == 1 else rgb[:, :, :3]
    height, width = rgb.shape[:2]
    where = image if isinstance(image, (str, os.PathLike)) else "image"
    if min(height, width) < MIN_IMAGE_SIDE or height * width > MAX_IMAGE_PIXELS:
        raise ValueError(f"{where}: image is {width}x{height} pixels; need at least "
                         f"{MIN_IMAGE_SIDE} on each side and at most {MAX_IMAGE_PIXELS} in all")
    frame = _to_float(np.ascontiguousarray(rgb))
    return frame if size is None else _cover_crop(frame, tuple(size))


def write_gif(path: str | os.PathLike, frames: np.ndarray, fps: float) -> Path:
    """Writes `(T,H,W,3)` frames as a looping GIF (for reports and web pages), atomically."""
    from PIL import Image

    path = Path(path)
    images = [Image.fromarray(f) for f in _to_uint8(frames)]
    with atomic_path(path, ".gif") as tmp:
        images[0].save(tmp, save_all=True, append_images=images[1:], loop=0,
                       duration=max(1, round(1000.0 / fps)))
    return path
