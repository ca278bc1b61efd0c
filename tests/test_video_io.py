"""Video ingestion: decoding, fps resampling, resize/crop, folders of frames, errors, batch mode.

Every synthetic frame carries its own index as 8 black/white blocks (one bit each, most
significant first), which survives lossy codecs, so a test can tell exactly which source frame
ended up at which output position.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from PIL import Image

from data_pipelines import video_io
from data_pipelines.video_io import (Clip, VideoError, VideoNotFoundError, iter_video_sources,
                                     load_clip, load_clips, load_image, read_video, write_video)

W, H = 64, 32  # 8 blocks of 8x32 pixels


def index_frames(n: int, width: int = W, height: int = H) -> np.ndarray:
    """(n, H, W, 3) uint8 frames; frame i shows i in binary as 8 vertical black/white blocks."""
    frames = np.zeros((n, height, width, 3), np.uint8)
    block = width // 8
    for i in range(n):
        for bit in range(8):
            if (i >> (7 - bit)) & 1:
                frames[i, :, bit * block:(bit + 1) * block] = 255
    return frames


def decode_indices(frames: np.ndarray) -> list[int]:
    """Inverse of `index_frames` for float frames in [0, 1]."""
    t, _, width, _ = frames.shape
    block = width // 8
    out = []
    for f in frames:
        bits = [f[4:-4, b * block + 2:(b + 1) * block - 2].mean() > 0.5 for b in range(8)]
        out.append(int(sum(int(v) << (7 - k) for k, v in enumerate(bits))))
    return out


def write_with(path: Path, codec: str, frames: np.ndarray, fps: float, options=None) -> Path:
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        if options:
            stream.options = options
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_gif(path: Path, frames: np.ndarray, durations_ms) -> Path:
    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=durations_ms, loop=0)
    return path


def write_folder(folder: Path, frames: np.ndarray, pattern: str = "frame_{}.png",
                 start: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / pattern.format(i + start)), np.ascontiguousarray(f[..., ::-1]))
    return folder


def has_encoder(name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
        return True
    except Exception:
        return False


# ------------------------------------------------------------------------------------------------
# Video files


def test_mp4_frames_fps_and_content(tmp_path):
    path = write_video(tmp_path / "clip.mp4", index_frames(20), fps=24)
    clip = load_clip(path)
    assert isinstance(clip, Clip)
    assert clip.frames.dtype == np.float32 and clip.frames.shape == (20, H, W, 3)
    assert 0.0 <= clip.frames.min() and clip.frames.max() <= 1.0
    assert clip.fps == pytest.approx(24.0)
    assert clip.source == str(path)
    assert decode_indices(clip.frames) == list(range(20))


def test_read_video_keeps_its_contract(tmp_path):
    path = write_video(tmp_path / "clip.mp4", index_frames(6), fps=30)
    frames, fps = read_video(path)
    assert frames.shape == (6, H, W, 3) and frames.dtype == np.float32
    assert fps == pytest.approx(30.0)
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        read_video(tmp_path / "nope.mp4")


def test_resample_60_to_30_keeps_every_other_frame(tmp_path):
    path = write_video(tmp_path / "fast.mp4", index_frames(60), fps=60)
    clip = load_clip(path, fps=30)
    assert clip.fps == 30.0
    assert decode_indices(clip.frames) == list(range(0, 60, 2))


def test_resample_15_to_30_duplicates_frames(tmp_path):
    path = write_video(tmp_path / "slow.mp4", index_frames(15), fps=15)
    clip = load_clip(path, fps=30)
    assert decode_indices(clip.frames) == [i // 2 for i in range(30)]


def test_resample_29_97_to_30_shows_the_frame_on_screen(tmp_path):
    path = write_video(tmp_path / "ntsc.mp4", index_frames(40), fps=30000 / 1001)
    plain = load_clip(path)
    assert plain.fps == pytest.approx(30000 / 1001)
    idx = decode_indices(load_clip(path, fps=30).frames)
    expected = [min(int(i / 30 * 30000 / 1001 + 1e-9), 39) for i in range(len(idx))]
    assert idx == expected and len(idx) in (40, 41)


def test_max_frames_stops_decoding_early(tmp_path, monkeypatch):
    path = write_video(tmp_path / "long.mp4", index_frames(120), fps=60)
    calls = []
    original = video_io._frame_array
    monkeypatch.setattr(video_io, "_frame_array", lambda f: calls.append(1) or original(f))
    clip = load_clip(path, fps=30, max_frames=5)
    assert decode_indices(clip.frames) == [0, 2, 4, 6, 8]
    assert len(calls) <= 12  # 9 needed (+1 look-ahead); nowhere near 120


def test_constant_rate_gif_fps_from_frame_durations(tmp_path):
    path = write_gif(tmp_path / "anim.gif", index_frames(10), 40)  # 40 ms per frame = 25 fps
    clip = load_clip(path)
    assert clip.fps == pytest.approx(25.0)
    assert decode_indices(clip.frames) == list(range(10))
    assert decode_indices(load_clip(path, fps=50).frames) == [i // 2 for i in range(20)]


def test_variable_rate_gif_uses_real_timestamps(tmp_path):
    # frames start at 0, 0.1, 0.2 (held for 0.3 s), 0.5, and the clip ends at 0.6 s; each output
    # time shows the frame on screen then (frame 2 through 0.2-0.5 s)
    path = write_gif(tmp_path / "vfr.gif", index_frames(4), [100, 100, 300, 100])
    clip = load_clip(path, fps=10)
    assert decode_indices(clip.frames) == [0, 1, 2, 2, 2, 3]
    assert decode_indices(load_clip(path, fps=20).frames) == [0, 0, 1, 1, 2, 2, 2, 2, 2, 2, 3, 3]
    native = load_clip(path)
    assert len(native) == 4 and native.fps == pytest.approx(4 / 0.6)


@pytest.mark.parametrize("ext,codec,options", [
    ("webm", "libvpx-vp9", {"deadline": "realtime", "cpu-used": "8", "crf": "10", "b": "0"}),
    ("webm", "libvpx", {"deadline": "realtime", "cpu-used": "8", "crf": "4", "b": "2M"}),
    ("mkv", "libx264", {"crf": "10"}),
    ("mov", "libx264", {"crf": "10"}),
    ("avi", "mpeg4", {"qscale": "2"}),
])
def test_other_containers(tmp_path, ext, codec, options):
    if not has_encoder(codec):
        pytest.skip(f"this PyAV build has no {codec} encoder")
    path = write_with(tmp_path / f"clip_{codec}.{ext}", codec, index_frames(12), 24, options)
    clip = load_clip(path)
    assert clip.fps == pytest.approx(24.0, rel=1e-3)
    assert decode_indices(clip.frames) == list(range(12))


# ------------------------------------------------------------------------------------------------
# Folders of frames


def test_folder_natural_sort_and_fps(tmp_path):
    folder = write_folder(tmp_path / "frames", index_frames(12), "frame_{}.png")
    clip = load_clip(folder, fps=24)
    assert clip.fps == 24.0 and len(clip) == 12
    assert decode_indices(clip.frames) == list(range(12))  # frame_2 before frame_10
    with pytest.raises(VideoError, match=r"frames.*fps="):
        load_clip(folder)


def test_folder_jpg_and_mixed_case_extensions(tmp_path):
    folder = tmp_path / "jpgs"
    folder.mkdir()
    for i, f in enumerate(index_frames(5)):
        name = f"img{i:03d}.{'JPG' if i % 2 else 'jpeg'}"
        ok, data = cv2.imencode(".jpg", np.ascontiguousarray(f[..., ::-1]),
                                [cv2.IMWRITE_JPEG_QUALITY, 95])
        assert ok
        (folder / name).write_bytes(data.tobytes())
    (folder / "notes.txt").write_text("ignored")
    clip = load_clip(folder, fps=10)
    assert decode_indices(clip.frames) == list(range(5))


def test_folder_resampled_from_folder_fps(tmp_path):
    folder = write_folder(tmp_path / "f", index_frames(5))
    clip = load_clip(folder, fps=20, folder_fps=10)
    assert clip.fps == 20.0
    assert decode_indices(clip.frames) == [i // 2 for i in range(10)]


def test_rgba_grey_and_16bit_frames_become_rgb_float(tmp_path):
    rgba = tmp_path / "rgba"
    rgba.mkdir()
    bgra = np.zeros((8, 8, 4), np.uint8)
    bgra[...] = (50, 100, 200, 128)  # B, G, R, A
    for i in range(2):
        cv2.imwrite(str(rgba / f"{i}.png"), bgra)
    clip = load_clip(rgba, fps=10)
    assert clip.frames.shape == (2, 8, 8, 3)
    np.testing.assert_allclose(clip.frames[0, 0, 0], np.array([200, 100, 50]) / 255.0, atol=1e-6)

    grey = tmp_path / "grey"
    grey.mkdir()
    for i in range(2):
        cv2.imwrite(str(grey / f"{i}.png"), np.full((8, 8), 77, np.uint8))
    clip = load_clip(grey, fps=10)
    assert clip.frames.shape == (2, 8, 8, 3)
    np.testing.assert_allclose(clip.frames[1], 77 / 255.0, atol=1e-6)

    deep = tmp_path / "deep"
    deep.mkdir()
    for i in range(2):
        cv2.imwrite(str(deep / f"{i}.png"), np.full((8, 8, 3), 40000, np.uint16))
    clip = load_clip(deep, fps=10)
    assert clip.frames.dtype == np.float32
    np.testing.assert_allclose(clip.frames, 40000 / 65535.0, atol=1e-6)


def test_rgba_gif_and_grey_video(tmp_path):
    frames = index_frames(4)
    images = [Image.fromarray(np.dstack([f, np.full(f.shape[:2], 255, np.uint8)]), "RGBA")
              for f in frames]
    images[0].save(tmp_path / "rgba.gif", save_all=True, append_images=images[1:], duration=50)
    clip = load_clip(tmp_path / "rgba.gif")
    assert clip.frames.shape == (4, H, W, 3) and decode_indices(clip.frames) == [0, 1, 2, 3]

    path = tmp_path / "grey.mkv"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = W, H, "gray"
        for f in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(f[..., 0]), format="gray")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    clip = load_clip(path)
    assert clip.frames.shape == (4, H, W, 3)
    assert decode_indices(clip.frames) == [0, 1, 2, 3]
    np.testing.assert_allclose(clip.frames[..., 0], clip.frames[..., 2], atol=2 / 255)


# ------------------------------------------------------------------------------------------------
# Resize + centre crop


def _marker_box(frame: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(frame.mean(axis=-1) > 0.5)
    return xs.min(), xs.max() + 1, ys.min(), ys.max() + 1


def test_resize_covers_then_centre_crops(tmp_path):
    # 320x240 → 256x160: scale 0.8 (to cover the width) → 256x192, then crop 16 rows top+bottom.
    src = np.zeros((2, 240, 320, 3), np.uint8)
    src[:, 120:160, 160:200] = 255  # marker: x 160..200, y 120..160
    folder = write_folder(tmp_path / "big", src)
    clip = load_clip(folder, fps=30, size=(256, 160))
    assert clip.frames.shape == (2, 160, 256, 3) and clip.size == (256, 160)
    x0, x1, y0, y1 = _marker_box(clip.frames[0])
    assert abs(x0 - 128) <= 1 and abs(x1 - 160) <= 1  # 0.8 * x
    assert abs(y0 - 80) <= 1 and abs(y1 - 112) <= 1  # 0.8 * y - 16

    # a portrait source cropped to landscape: the crop is in y, centred
    tall = np.zeros((2, 200, 100, 3), np.uint8)
    tall[:, 95:105, 45:55] = 255  # centred marker stays centred
    clip = load_clip(write_folder(tmp_path / "tall", tall), fps=30, size=(50, 20))
    x0, x1, y0, y1 = _marker_box(clip.frames[0])
    assert (x0 + x1) / 2 == pytest.approx(25, abs=1) and (y0 + y1) / 2 == pytest.approx(10, abs=1)


def test_resize_upscales_and_handles_video(tmp_path):
    small = np.zeros((2, 48, 64, 3), np.uint8)
    small[:, 20:28, 28:36] = 255  # centred marker
    clip = load_clip(write_folder(tmp_path / "small", small), fps=30, size=(128, 128))
    assert clip.frames.shape == (2, 128, 128, 3)
    assert 0.0 <= clip.frames.min() and clip.frames.max() <= 1.0  # cubic overshoot clipped
    x0, x1, y0, y1 = _marker_box(clip.frames[0])
    assert (x0 + x1) / 2 == pytest.approx(64, abs=1.5)
    assert (y0 + y1) / 2 == pytest.approx(64, abs=1.5)

    path = write_video(tmp_path / "v.mp4", index_frames(6, 128, 64), fps=30)
    clip = load_clip(path, size=(64, 32))
    assert clip.frames.shape == (6, 32, 64, 3)
    assert decode_indices(clip.frames) == list(range(6))


# ------------------------------------------------------------------------------------------------
# Errors: one line, naming the file


def _one_line(err: pytest.ExceptionInfo, name: str) -> str:
    msg = str(err.value)
    assert name in msg and "\n" not in msg
    assert isinstance(err.value, ValueError)
    return msg


def test_missing_file(tmp_path):
    with pytest.raises(VideoError) as err:
        load_clip(tmp_path / "absent.mp4")
    assert isinstance(err.value, (VideoNotFoundError, FileNotFoundError))
    assert "no such" in _one_line(err, "absent.mp4")


def test_random_bytes_and_empty_file(tmp_path):
    bad = tmp_path / "noise.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(VideoError) as err:
        load_clip(bad)
    assert "corrupt" in _one_line(err, "noise.mp4")
    (tmp_path / "empty.mov").write_bytes(b"")
    with pytest.raises(VideoError) as err:
        load_clip(tmp_path / "empty.mov")
    _one_line(err, "empty.mov")


def test_truncated_mp4(tmp_path):
    path = write_video(tmp_path / "whole.mp4", index_frames(30), fps=30)
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # moov atom (at the end) lost
    with pytest.raises(VideoError) as err:
        load_clip(cut)
    _one_line(err, "cut.mp4")

    fast = tmp_path / "fast.mp4"
    with av.open(str(fast), mode="w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for f in index_frames(30):
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = fast.read_bytes()
    cut2 = tmp_path / "cut_faststart.mp4"
    cut2.write_bytes(data[: len(data) * 2 // 3])  # index intact, media data cut short
    with pytest.raises(VideoError) as err:
        load_clip(cut2)
    _one_line(err, "cut_faststart.mp4")


def test_no_video_stream(tmp_path):
    path = tmp_path / "audio_only.mkv"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16",
                                           layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(VideoError) as err:
        load_clip(path)
    assert "no video stream" in _one_line(err, "audio_only.mkv")


def test_too_short_gives_the_count(tmp_path):
    path = write_video(tmp_path / "short.mp4", index_frames(5), fps=30)
    with pytest.raises(VideoError) as err:
        load_clip(path, min_frames=10)
    msg = _one_line(err, "short.mp4")
    assert "5" in msg and "10" in msg
    with pytest.raises(VideoError) as err:  # 5 frames at 30 fps → 2 or 3 at 10 fps
        load_clip(path, fps=10, min_frames=4)
    assert "only 2" in _one_line(err, "short.mp4")
    assert len(load_clip(path, min_frames=5)) == 5


def test_empty_folder_and_unsupported_extension(tmp_path):
    empty = tmp_path / "nothing_here"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images")
    with pytest.raises(VideoError) as err:
        load_clip(empty, fps=30)
    assert "no frame images" in _one_line(err, "nothing_here")

    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    with pytest.raises(VideoError) as err:
        load_clip(txt)
    assert "unsupported" in _one_line(err, "notes.txt")


def test_undecodable_image_in_folder(tmp_path):
    folder = write_folder(tmp_path / "broken", index_frames(4))
    (folder / "frame_2.png").write_bytes(b"definitely not a png")
    with pytest.raises(VideoError) as err:
        load_clip(folder, fps=30)
    msg = _one_line(err, "frame_2.png")
    assert "broken" in msg


def test_mismatched_frame_sizes_in_folder(tmp_path):
    folder = write_folder(tmp_path / "mixed", index_frames(2))
    cv2.imwrite(str(folder / "frame_2.png"), np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(VideoError) as err:
        load_clip(folder, fps=30)
    _one_line(err, "mixed")
    assert load_clip(folder, fps=30, size=(32, 16)).frames.shape == (3, 16, 32, 3)


# ------------------------------------------------------------------------------------------------
# Batch mode


def test_iter_video_sources(tmp_path):
    write_video(tmp_path / "b10.mp4", index_frames(2), fps=30)
    write_video(tmp_path / "b9.mp4", index_frames(2), fps=30)
    (tmp_path / "sub").mkdir()
    write_gif(tmp_path / "sub" / "a.GIF", index_frames(2), 40)
    write_folder(tmp_path / "sub" / "frames", index_frames(3))
    write_folder(tmp_path / "single", index_frames(1))  # one image: not a frame folder
    write_folder(tmp_path / "sub" / "frames" / "nested", index_frames(2))
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".b.mp4.tmp123.mp4").write_bytes(b"")  # a write_video temporary
    found = iter_video_sources(tmp_path)
    rel = [p.relative_to(tmp_path).as_posix() for p in found]
    assert rel == ["b9.mp4", "b10.mp4", "sub/a.GIF", "sub/frames", "sub/frames/nested"]
    assert iter_video_sources(tmp_path / "b9.mp4") == [tmp_path / "b9.mp4"]
    with pytest.raises(VideoError, match="missing_root"):
        iter_video_sources(tmp_path / "missing_root")


def test_load_clips_skip_and_report(tmp_path, caplog):
    good1 = write_video(tmp_path / "a_good.mp4", index_frames(8), fps=30)
    bad = tmp_path / "b_bad.mp4"
    bad.write_bytes(b"\x00garbage" * 100)
    folder = write_folder(tmp_path / "c_frames", index_frames(8))
    with caplog.at_level(logging.WARNING, logger="data_pipelines.video_io"):
        results = list(load_clips(iter_video_sources(tmp_path), fps=30, size=(32, 16)))
    assert [p.name for p, _ in results] == ["a_good.mp4", "b_bad.mp4", "c_frames"]
    assert isinstance(results[0][1], Clip) and results[0][1].frames.shape == (8, 16, 32, 3)
    assert isinstance(results[1][1], VideoError) and "b_bad.mp4" in str(results[1][1])
    assert isinstance(results[2][1], Clip) and len(results[2][1]) == 8
    assert any("b_bad.mp4" in r.getMessage() for r in caplog.records)

    # a directory works directly too
    assert [p.name for p, _ in load_clips(tmp_path, fps=30)] == [p.name for p, _ in results]

    gen = load_clips([good1, bad, folder], fps=30, on_error="raise")
    assert isinstance(next(gen)[1], Clip)
    with pytest.raises(VideoError, match="b_bad.mp4"):
        next(gen)
    with pytest.raises(ValueError, match="on_error"):
        list(load_clips([good1], on_error="ignore"))


def test_real_footage_tree_avi():
    """Real video (OpenCV's tree.avi: 320x240 Cinepak at 15 fps) through the training path."""
    # The AVI declares 15 fps but stores only 68 frames over 29.6 s (the rest are dropped-frame
    # chunks): first frame at 0 s, the second at 0.733337 s, the third at 1.133 s.
    path = Path(__file__).parent / "data" / "tree.avi"
    raw = load_clip(path)
    assert raw.size == (320, 240) and len(raw) == 68
    assert raw.fps == pytest.approx(68 / 29.6, rel=0.01)
    clip = load_clip(path, fps=30.0, size=(256, 160), max_frames=40)
    assert clip.frames.shape == (40, 160, 256, 3) and clip.fps == 30.0
    # the first frame stays on screen until the second starts at 0.733337 s (just after 22/30 s)
    assert np.abs(clip.frames[0] - clip.frames[22]).max() < 1e-6
    assert np.abs(clip.frames[0] - clip.frames[23]).mean() > 1e-3
    assert 0.05 < clip.frames.mean() < 0.95


def test_load_image_names_a_header_over_opencvs_pixel_limit(tmp_path):
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    huge = tmp_path / "huge.png"       # a tiny file whose header claims 60000 x 60000 pixels
    huge.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    with pytest.raises(ValueError, match=r"huge.png: cannot read image \(OpenCV: .*CV_IO_MAX_IMAGE_PIXELS"):
        load_image(huge)
