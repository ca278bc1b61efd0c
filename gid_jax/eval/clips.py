"""Test clips for `gid eval`: the examples of a prepared split and the real video clips they
were cut from.

A prepared example (`data_pipelines.dataset_format`) holds the start frame I0, the measured
spectral volume, W = mean_t |F_t|, the source video's path relative to the folder `gid prepare`
read, and the start frame's index. The real clip is frames ``[start, start + num_frames)`` of
that video decoded exactly as `gid prepare` decoded it (its fps and size, from
``prepare_config.json``), so its frame 0 is I0; `RealClips` checks this, which catches a wrong
``videos_dir`` or a video changed since it was prepared. The reader uses TFDS directly, not the
training input: evaluation needs no shuffling, augmentation or normalisation, and
sees every example once, in a fixed order (sorted by video and start frame).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
import numpy as np

# I0 as stored (PNG, uint8) vs frame 0 decoded again: equal up to rounding
FIRST_FRAME_TOLERANCE = 2.0 / 255.0


@dataclass
class TestClip:
    """One prepared example; ``true_sv`` stays float16 when stored so (lossless, half the memory)."""

    index: int
    video: str
    start_frame: int
    image: np.ndarray        # (H, W, 3) float32 in [0, 1]
    true_sv: np.ndarray      # (K, H, W, 4) pixels
    mean_motion: np.ndarray  # (H, W) float32

    @property
    def name(self) -> str:
        stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in Path(self.video).stem)
        return f"{self.index:04d}-{stem[:40]}-f{self.start_frame}"


def prepared_settings(data_dir) -> dict:
    """fps, width, height, num_frames, num_freqs the folder was prepared with."""
    path = Path(data_dir) / "prepare_config.json"
    try:
        settings = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: not found (config.data_dir must be a `gid prepare` "
                                "output folder)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    missing = [k for k in ("fps", "width", "height", "num_frames") if k not in settings]
    if missing:
        raise ValueError(f"{path}: lacks {missing}")
    return settings


def _builder(data_dir, kind: str):
    import tensorflow_datasets as tfds

    from data_pipelines.dataset_format import dataset_paths

    path = dataset_paths(os.fspath(data_dir))[kind]
    if not Path(path, "dataset_info.json").is_file():
        raise FileNotFoundError(f"{path}: no prepared {kind} dataset (config.data_dir must be a "
                                "`gid prepare` output folder)")
    return tfds.builder_from_directory(path)


def _examples(data_dir, kind: str, split: str):
    import tensorflow_datasets as tfds

    builder = _builder(data_dir, kind)
    if split not in builder.info.splits:
        raise ValueError(f"config.split: {data_dir} has no split {split!r} (it has "
                         f"{sorted(builder.info.splits.keys())})")
    ds = builder.as_dataset(split=split, shuffle_files=False,
                            read_config=tfds.ReadConfig(interleave_cycle_length=1))
    return tfds.as_numpy(ds)


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def read_clips(data_dir, split: str = "test", limit: int = -1) -> list[TestClip]:
    """The split's examples sorted by (video, start frame), the first ``limit`` (-1: all)."""
    from data_pipelines.dataset_format import decode_spectral_volume_np

    rows = []
    for ex in _examples(data_dir, "spectral", split):
        sv = decode_spectral_volume_np(ex["spectral_volume"], ex["spectral_scale"])
        stored16 = ex["spectral_volume"].dtype == np.float16    # then float16 is lossless
        rows.append((_text(ex["video"]), int(ex["start_frame"]),
                     np.asarray(ex["image"], np.float32) / 255.0,
                     sv.astype(np.float16 if stored16 else np.float32),
                     np.asarray(ex["mean_motion"], np.float32)))
    if not rows:
        raise ValueError(f"config.split: {data_dir}: split {split!r} has no examples")
    rows.sort(key=lambda r: (r[0], r[1]))
    if limit is not None and int(limit) > 0:
        rows = rows[:int(limit)]
    return [TestClip(i, *r) for i, r in enumerate(rows)]


def read_pairs(data_dir, split: str = "test", limit: int = -1) -> list[dict]:
    """Renderer pairs (I0, I_t, flow I0→I_t, W) of a split, unflipped, sorted like `read_clips`."""
    rows = []
    for ex in _examples(data_dir, "pairs", split):
        rows.append(((_text(ex["video"]), int(ex["start_frame"]), int(ex["target_frame"])),
                     {"image": np.asarray(ex["image"], np.float32) / 255.0,
                      "target_image": np.asarray(ex["target_image"], np.float32) / 255.0,
                      "flow": np.asarray(ex["flow"], np.float32),
                      "mean_motion": np.asarray(ex["mean_motion"], np.float32)[..., None]}))
    rows.sort(key=lambda r: r[0])
    if limit is not None and int(limit) > 0:
        rows = rows[:int(limit)]
    return [r[1] for r in rows]


class RealClips:
    """Real frames of test clips: ``reader(clip) -> (n, H, W, 3)`` float32 in [0, 1], n =
    ``num_frames`` or fewer where the video ends sooner (at least the prepared T frames exist
    for every example). Keeps one decoded video, so iterate clips in `read_clips` order."""

    def __init__(self, videos_dir, data_dir, num_frames: int):
        self.videos_dir = Path(videos_dir)
        if not self.videos_dir.is_dir():
            raise FileNotFoundError(f"config.videos_dir: {videos_dir} is not a folder (it must be "
                                    "the folder `gid prepare --videos` read)")
        self.settings = prepared_settings(data_dir)
        prepared_t = int(self.settings["num_frames"])
        self.num_frames = prepared_t if int(num_frames) <= 0 else int(num_frames)
        self.fps = float(self.settings["fps"])
        self._video, self._frames = None, None

    def check(self, clips) -> None:
        """Fails fast (before any sampling) when a clip's video is not in ``videos_dir``."""
        for clip in clips:
            path = self.videos_dir / clip.video
            if not path.exists():
                raise FileNotFoundError(f"config.videos_dir: {path} not found (the split names "
                                        f"{clip.video!r} relative to the folder `gid prepare` read)")

    def _decode(self, video: str, need: int) -> np.ndarray:
        from data_pipelines.video_io import load_clip

        if self._video != video or len(self._frames) < need:
            path = self.videos_dir / video
            max_frames = int(self.settings.get("max_frames_per_video") or 0) or None
            if max_frames is not None:
                need = min(need, max_frames)
            clip = load_clip(path, fps=self.fps, size=(int(self.settings["width"]),
                                                       int(self.settings["height"])),
                             max_frames=max(need, 1))
            self._video, self._frames = video, clip.frames
        return self._frames

    def __call__(self, clip: TestClip) -> np.ndarray:
        frames = self._decode(clip.video, clip.start_frame + self.num_frames)
        out = frames[clip.start_frame:clip.start_frame + self.num_frames]
        if len(out) < 2:
            raise ValueError(f"{self.videos_dir / clip.video}: has {len(frames)} frames, no clip "
                             f"at start frame {clip.start_frame}")
        if out[0].shape != clip.image.shape:
            raise ValueError(f"{self.videos_dir / clip.video}: frames decode to {out[0].shape}, "
                             f"the prepared I0 is {clip.image.shape}")
        err = float(np.abs(out[0] - clip.image).mean())
        if err > FIRST_FRAME_TOLERANCE:
            raise ValueError(f"config.videos_dir: frame {clip.start_frame} of "
                             f"{self.videos_dir / clip.video} differs from the prepared I0 (mean "
                             f"|diff| {err:.3f}): not the video the data was prepared from")
        return out


def fixed_map_sv(svs=None, data_dir=None, split: str = "train",
                 limit: int = 256) -> tuple[np.ndarray, int]:
    """The image-independent motion of the fixed-map baseline and how many examples built it:
    the mean over examples of |S_k(p)| per bin and pixel, put in the Re x channel
    (`gid_jax.eval.learning.fixed_amplitude_sv`: its amplitude map and spectrum are the
    examples' means; every pixel then sways horizontally in one phase). From the spectral
    volumes ``svs`` if given, else streamed from the first ``limit`` examples of ``split`` of ``data_dir``."""
    from data_pipelines.dataset_format import decode_spectral_volume_np
    from gid_jax import motion

    def streamed():
        for i, ex in enumerate(_examples(data_dir, "spectral", split)):
            if 0 < int(limit) <= i:
                return
            yield decode_spectral_volume_np(ex["spectral_volume"], ex["spectral_scale"])

    total, count = None, 0
    for sv in (svs if svs is not None else streamed()):
        amp = np.asarray(motion.amplitude(np.asarray(sv, np.float32)), np.float64)
        total = amp if total is None else total + amp
        count += 1
    if not count:
        raise ValueError("fixed_map_sv: no examples to average")
    out = np.zeros(total.shape + (4,), np.float32)
    out[..., 0] = total / count
    return out, count
