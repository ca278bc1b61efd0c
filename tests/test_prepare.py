"""Preprocessing: videos → TFDS spectral-volume / renderer-pair datasets (data_pipelines/prepare.py,
clip_cache.py, beam_writer.py, dataset_format.py).

One module-scoped `prepare` run on procedural videos with known motion (+ a static one, a shaking
one and a corrupt file) backs most tests; the resume test makes its own small run.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
tfds = pytest.importorskip("tensorflow_datasets")

from data_pipelines import clip_cache as C  # noqa: E402
from data_pipelines import dataset_format as F  # noqa: E402
from data_pipelines import prepare as P  # noqa: E402
from data_pipelines.synth import generate_video, load_ground_truth, synthesize, write_example  # noqa: E402
from gid_jax import motion  # noqa: E402
from gid_jax.config import load_config  # noqa: E402
from gid_jax.motion import FrequencyNormalizer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIZE = (64, 40)
NUM_VIDEO_FRAMES = 40


def _closed(traj, cfg) -> np.ndarray:
    """What the data recipe transforms: the trajectory with its loop closed (close_loops on)."""
    return np.asarray(motion.close_loop(np.asarray(traj, np.float32), cfg.num_freqs), np.float64)


def tiny_config(**overrides):
    cfg = load_config("configs/prepare.py:tiny")
    for k, v in overrides.items():
        setattr(cfg, k, v)
    return cfg


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    videos = tmp_path_factory.mktemp("videos")
    # seed 6: three scenes whose mean motion (0.02-0.06 px at 64x40) clears the tiny threshold.
    moving = synthesize(videos, 3, size=SIZE, num_frames=NUM_VIDEO_FRAMES, fps=30.0, seed=6,
                        progress=False)
    write_example(generate_video(3, size=SIZE, num_frames=NUM_VIDEO_FRAMES, static_prob=1.0),
                  videos, "static")
    write_example(generate_video(5, size=SIZE, num_frames=NUM_VIDEO_FRAMES, camera_shake_prob=1.0),
                  videos, "shaky")
    (videos / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    shutil.copy(moving[0], videos / "short.mp4")  # made too short below
    _truncate_frames(videos / "short.mp4", 12)
    out = tmp_path_factory.mktemp("out")
    # test_fraction 0.3 puts some of these paths in the test split (checked below).
    # close_loops off: at 64x40 the flow of these 0.02-0.06 px motions is mostly noise, which a
    # loop closure's fit amplifies (measured on synth_00000: relative error of k=0..3 against
    # the closed truth 1.97, correlation 0.28, against 0.64-0.80 / 0.74-0.79 raw); the
    # closure's plumbing is checked by the motion_source='auto' test below.
    cfg = tiny_config(test_fraction=0.3, close_loops=False)
    result = P.prepare(videos, out, cfg, progress=False)
    return dict(videos=videos, out=out, cfg=cfg, result=result, moving=moving)


def _truncate_frames(path: Path, n: int):
    from data_pipelines.video_io import load_clip, write_video

    clip = load_clip(path, max_frames=n)
    path.unlink()
    write_video(path, clip.frames, clip.fps)


def _read(path, split):
    return list(tfds.as_numpy(tfds.builder_from_directory(path).as_dataset(split=split)))


def test_prepare_writes_readable_datasets_and_reports_bad_files(prepared):
    r, cfg = prepared["result"], prepared["cfg"]
    skipped = dict(r.skipped)
    assert set(skipped) == {"corrupt.mp4", "short.mp4"}, r.skipped
    assert "corrupt" in skipped["corrupt.mp4"] and "too short" in skipped["short.mp4"]
    assert sum(r.videos.values()) == 5
    splits = {C.split_of(v, 0.3) for v in ("synth_00000.mp4", "synth_00001.mp4", "synth_00002.mp4",
                                            "static.mp4", "shaky.mp4")}
    h, w, k = cfg.height, cfg.width, cfg.num_freqs
    spectral = tfds.builder_from_directory(r.dataset_dirs["spectral"])
    assert set(spectral.info.splits.keys()) <= set(F.SPLITS)
    total = 0
    for split, n in r.examples.items():
        if n == 0:
            continue
        examples = _read(r.dataset_dirs["spectral"], split)
        assert len(examples) == n
        total += n
        for ex in examples:
            assert ex["image"].shape == (h, w, 3) and ex["image"].dtype == np.uint8
            assert ex["spectral_volume"].shape == (k, h, w, 4)
            assert ex["spectral_volume"].dtype == np.float16
            assert ex["mean_motion"].shape == (h, w)
            assert ex["video"].decode() in {"synth_00000.mp4", "synth_00001.mp4", "synth_00002.mp4"}
        pairs = _read(r.dataset_dirs["pairs"], split)
        assert len(pairs) == r.pairs[split] == n * cfg.pairs_per_clip
        for ex in pairs:
            assert ex["flow"].shape == (h, w, 2) and ex["target_image"].shape == (h, w, 3)
            assert 1 <= ex["target_frame"] < cfg.num_frames
    assert total == 6  # start frames 0 and 10 of each moving video: 40 frames, T=30, stride 10
    assert {s for s, n in r.examples.items() if n} <= splits
    # Statistics of the train split, loadable by the normaliser.
    norm = FrequencyNormalizer.load(r.normalization_path)
    assert norm.num_freqs == k and norm.num_examples == r.examples["train"]
    assert np.all(norm.scales > 0)
    # Re-running is a no-op.
    again = P.prepare(prepared["videos"], prepared["out"], cfg, progress=False)
    assert again.already_prepared and again.examples == r.examples


def test_filters_drop_static_and_camera_motion(prepared):
    import json

    report = json.loads(Path(prepared["result"].report_path).read_text())
    drops = {v["video"]: [c["drop"] for c in v["clips"]] for v in report["videos"]}
    assert drops["static.mp4"] == ["static", "static"]
    assert drops["shaky.mp4"] == ["camera_motion", "camera_motion"]
    for name in ("synth_00000.mp4", "synth_00001.mp4", "synth_00002.mp4"):
        assert drops[name] == [None, None]
    assert prepared["result"].dropped == {"camera_motion": 2, "static": 2}


def test_clip_filter_thresholds_on_synthetic_maps():
    s = dict(camera_motion_threshold_px=1.0, camera_motion_fraction=0.95, static_threshold_px=1.0)
    w = np.full((40, 64), 1.5, np.float32)
    assert C.clip_filter(w, s) == "camera_motion"          # everything moves > 1 px
    w[:, :4] = 0.0                                          # 6.25% still: not camera motion
    assert C.clip_filter(w, s) is None
    assert C.clip_filter(np.full((40, 64), 0.5, np.float32), s) == "static"
    sparse = np.zeros((40, 64), np.float32)
    sparse[:10] = 8.0                                       # a quarter moves a lot: mean 2 px
    assert C.clip_filter(sparse, s) is None


def _prepared_examples(r):
    got = {}
    for split, n in r.examples.items():
        if n:
            ds = tfds.builder_from_directory(r.dataset_dirs["spectral"]).as_dataset(split=split)
            for ex in tfds.as_numpy(ds.map(lambda e: dict(e, sv=F.decode_spectral_volume(e)))):
                got[(ex["video"].decode(), int(ex["start_frame"]))] = ex
    return got


def test_spectral_volumes_match_ground_truth(prepared):
    """Start-frame-0 clips vs the generator's exact trajectories (numpy rfft reference).

    At 64x40 the scenes move only 0.1-0.5 px (mean W ~0.15 px on moving pixels) and the frames
    are H.264-compressed, so every flow backend underestimates the motion (measured, opencv_brox:
    relative error of the k=0..3 coefficients on moving pixels 0.64-0.80 here, correlation
    0.74-0.79; 0.27-0.51 for the same scenes at 128x80). A zero prediction scores exactly 1.0
    (correlation undefined/0) and a sign error ~2 (correlation < 0), so rel < 0.95 with
    correlation > 0.5 checks that real, correctly oriented, correctly placed motion comes out;
    the plumbing itself is checked exactly in the next test.
    """
    r, cfg = prepared["result"], prepared["cfg"]
    got = _prepared_examples(r)
    for mp4 in prepared["moving"]:
        ex = got[(mp4.name, 0)]
        traj = load_ground_truth(mp4.with_suffix(".npz"))["trajectories"][:cfg.num_frames]
        gt = np.fft.rfft(traj.astype(np.float64), axis=0)[:cfg.num_freqs]
        gt = np.concatenate([gt.real, gt.imag], axis=-1)
        sv = ex["sv"]
        assert sv.dtype == np.float32 and sv.shape == gt.shape
        moving = np.linalg.norm(traj[1:], axis=-1).mean(0) > 0.1
        assert moving.sum() > 20
        a, b = sv[:4][:, moving].ravel(), gt[:4][:, moving].ravel()
        rel = np.linalg.norm(a - b) / np.linalg.norm(b)
        corr = float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
        print(f"{mp4.name}: relative error k=0..3 on moving pixels {rel:.3f}, correlation {corr:.3f}")
        assert rel < 0.95 and corr > 0.5, (rel, corr)


def test_spectral_volume_is_fft_of_long_range_flow(prepared):
    """A later start frame: the stored volume is exactly rfft of the flow I_s → I_{s+t}."""
    from data_pipelines.video_io import load_clip
    from gid_jax.flow import estimate_flow_batch

    r, cfg = prepared["result"], prepared["cfg"]
    ex = _prepared_examples(r)[("synth_00001.mp4", 10)]
    frames = load_clip(prepared["videos"] / "synth_00001.mp4", fps=cfg.fps,
                       size=(cfg.width, cfg.height)).frames[10:10 + cfg.num_frames]
    flows = estimate_flow_batch(frames[0], frames[1:], backend=cfg.flow_backend)
    traj = np.concatenate([np.zeros_like(flows[:1]), flows]).astype(np.float64)
    ref = np.fft.rfft(traj, axis=0)[:cfg.num_freqs]
    ref = np.concatenate([ref.real, ref.imag], axis=-1)
    np.testing.assert_allclose(ex["sv"], ref, rtol=2e-3, atol=2e-3)  # float16 storage
    np.testing.assert_array_equal(ex["image"], np.round(frames[0] * 255).astype(np.uint8))
    w = np.linalg.norm(traj[1:], axis=-1).mean(0)
    np.testing.assert_allclose(ex["mean_motion"], w, rtol=1e-4, atol=1e-5)


def test_resume_after_killed_run_reuses_finished_videos(tmp_path):
    videos = tmp_path / "videos"
    synthesize(videos, 3, size=SIZE, num_frames=32, fps=30.0, seed=6, progress=False)
    out = tmp_path / "out"
    # About resuming, not filtering: keep every clip.
    cfg = tiny_config(test_fraction=0.0, static_threshold_px=0.0, camera_motion_fraction=1.0)
    settings = P._settings(cfg)
    sources = C.source_elements(str(videos), settings)
    cache = out / "cache"
    # "Killed" run: the first video finished, the second died mid-write (stray temp file),
    # TFDS left an incomplete dataset folder behind.
    first = C.ensure_cache(sources[0], settings, str(cache))
    assert first["status"] == "ok"
    done_npz, done_json = cache / f"{sources[0]['key']}.npz", cache / f"{sources[0]['key']}.json"
    old = (done_npz.stat().st_mtime_ns, done_json.stat().st_mtime_ns)
    (cache / f".{sources[1]['key']}.npz.tmp-deadbeef").write_bytes(b"half")
    stray = out / F.DATASET_NAME / "spectral" / "incomplete.abc123.1.0.0"
    stray.mkdir(parents=True)
    (stray / "gid_motion-train.tfrecord-00000-of-00001").write_bytes(b"half")

    result = P.prepare(videos, out, cfg, progress=False)
    assert (done_npz.stat().st_mtime_ns, done_json.stat().st_mtime_ns) == old  # not recomputed
    assert all((cache / f"{s['key']}.json").exists() for s in sources)
    assert not list(cache.glob(".*tmp-*")) and not stray.exists()
    assert result.videos["train"] == 3 and result.skipped == []
    assert len(_read(result.dataset_dirs["spectral"], "train")) == result.examples["train"] == 3

    again = P.prepare(videos, out, cfg, progress=False)
    assert again.already_prepared
    with pytest.raises(ValueError, match="different settings"):
        P.prepare(videos, out, tiny_config(test_fraction=0.0, num_freqs=4), progress=False)


@pytest.mark.parametrize("encoding", F.SV_ENCODINGS)
def test_encodings_round_trip_in_numpy_and_tf(encoding):
    rng = np.random.default_rng(0)
    # Spectral-volume-like data: magnitudes decaying with frequency over four decades.
    sv = (rng.standard_normal((8, 6, 5, 4)) * np.geomspace(30, 0.003, 8)[:, None, None, None]).astype(np.float32)
    data, scale = F.encode_spectral_volume(sv, encoding)
    dec_np = F.decode_spectral_volume_np(data, scale)
    dec_tf = F.decode_spectral_volume({"spectral_volume": tf.constant(data),
                                       "spectral_scale": tf.constant(scale)}).numpy()
    np.testing.assert_allclose(dec_tf, dec_np, rtol=1e-6, atol=1e-12)
    err = F.encoding_error(sv[None], encoding, num_frames=30)
    bound = {"float32": 0.0, "float16": 1e-3, "int8_sqrt": 2e-2}[encoding]
    assert err["coef_rel_l2_worst_freq"] <= bound, err


def test_numpy_codec_is_bit_identical_to_the_formula_it_delegates_to():
    """The int8_sqrt codec and `encoding_error` call `gid_jax.motion.frequency_(de)normalize`;
    on random data over seven decades (zeros included) the bytes equal the formula written out,
    sign(S)·sqrt(|S|/s_k) and sign(q)·q·q·s_k, so the prepared datasets did not change."""
    rng = np.random.default_rng(12)
    bits = {np.float32: np.uint32, np.float64: np.uint64}
    for _ in range(20):
        k = int(rng.integers(1, 9))
        sv = (rng.standard_normal((k, 7, 5, 4)) * 10.0 ** rng.uniform(-4, 3, (k, 1, 1, 1))).astype(np.float32)
        sv[0, :2] = 0.0
        data, scale = F.encode_spectral_volume(sv, "int8_sqrt")
        want_scale = np.abs(sv).reshape(k, -1).max(axis=1).astype(np.float32)
        want_scale = np.where(want_scale > 0, want_scale, 1.0).astype(np.float32)
        x = np.sign(sv) * np.sqrt(np.abs(sv) / want_scale[:, None, None, None])
        np.testing.assert_array_equal(data, np.clip(np.round(x * 127.0), -127, 127).astype(np.int8))
        q = data.astype(np.float32) / np.float32(127.0)
        want = np.sign(q) * q * q * scale[:, None, None, None]
        got = F.decode_spectral_volume_np(data, scale)
        assert got.dtype == want.dtype == np.float32
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
        for dtype in (np.float32, np.float64):      # the transform itself, numpy in and out
            v, s = sv.astype(dtype), want_scale.astype(dtype)
            direct = np.sign(v) * np.sqrt(np.abs(v) / s[:, None, None, None])
            ours = F._normalize(v, s)
            assert isinstance(ours, np.ndarray) and ours.dtype == dtype
            np.testing.assert_array_equal(ours.view(bits[dtype]), direct.view(bits[dtype]))


def test_local_atomic_writes_create_folders_and_leave_no_temporaries(tmp_path):
    from data_pipelines import storage

    path = str(tmp_path / "a" / "b" / "x.json")
    storage.write_json(path, {"v": 1})
    storage.write_atomic(path, b'{"v": 2}')
    assert json.loads(Path(path).read_text()) == {"v": 2}
    with pytest.raises(TypeError):
        storage.write_atomic(path, "not bytes")
    assert json.loads(Path(path).read_text()) == {"v": 2}      # the old file survives a failure
    assert os.listdir(tmp_path / "a" / "b") == ["x.json"]


def test_bad_input_gives_one_line_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        P.prepare(tmp_path / "missing", tmp_path / "out", tiny_config(), progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no videos found"):
        P.prepare(tmp_path / "empty", tmp_path / "out", tiny_config(), progress=False)
    with pytest.raises(ValueError, match="sv_encoding"):
        P.prepare(tmp_path / "empty", tmp_path / "out", tiny_config(sv_encoding="bf16"), progress=False)


def test_split_is_deterministic_and_near_ten_percent():
    names = [f"dir/video_{i:04d}.mp4" for i in range(4000)]
    test = [n for n in names if C.split_of(n, 0.1) == "test"]
    assert 0.08 < len(test) / len(names) < 0.12
    assert test == [n for n in names if C.split_of(n, 0.1) == "test"]


def test_ground_truth_motion_source_stores_the_exact_motion(tmp_path):
    """motion_source='ground_truth': the spectra are the rfft of the generator's own trajectories,
    resized like the frames (128x80 → 64x40: INTER_AREA at an exact factor 2 is the 2x2 block
    mean, and displacements halve), from frame 0 only. Reference: numpy, float16 storage. With
    close_loops off, the paper's transform of the raw trajectory."""
    videos = tmp_path / "videos"
    moving = synthesize(videos, 2, size=(128, 80), num_frames=32, fps=30.0, seed=6, progress=False)
    cfg = tiny_config(motion_source="ground_truth", static_threshold_px=0.0, test_fraction=0.0,
                      close_loops=False)
    r = P.prepare(videos, tmp_path / "out", cfg, progress=False)
    got = _prepared_examples(r)
    assert sorted(got) == sorted((p.name, 0) for p in moving)   # start frame 0 only
    for mp4 in moving:
        traj = load_ground_truth(mp4.with_suffix(".npz"))["trajectories"][:cfg.num_frames]
        small = traj.astype(np.float64).reshape(cfg.num_frames, 40, 2, 64, 2, 2).mean((2, 4)) / 2
        gt = np.fft.rfft(small, axis=0)[:cfg.num_freqs]
        gt = np.concatenate([gt.real, gt.imag], axis=-1)
        np.testing.assert_allclose(got[(mp4.name, 0)]["sv"], gt, rtol=2e-3, atol=2e-3 * np.abs(gt).max())


def test_auto_motion_source_mixes_exact_motion_and_flow(tmp_path):
    """motion_source='auto': a clip with its NAME.npz gets the exact motion, one without (real
    footage) optical flow, in one run; the report says which."""
    videos = tmp_path / "videos"
    exact, flowed = synthesize(videos, 2, size=SIZE, num_frames=32, fps=30.0, seed=6, progress=False)
    truth = load_ground_truth(flowed.with_suffix(".npz"))["trajectories"][:30]
    flowed.with_suffix(".npz").unlink()
    cfg = tiny_config(motion_source="auto", static_threshold_px=0.0, test_fraction=0.0)
    r = P.prepare(videos, tmp_path / "out", cfg, progress=False)
    got = _prepared_examples(r)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert {v["video"]: v["motion"] for v in report["videos"]} == {exact.name: "ground_truth",
                                                                   flowed.name: "flow"}
    exact_traj = load_ground_truth(exact.with_suffix(".npz"))["trajectories"][:30]
    gt = np.fft.rfft(_closed(exact_traj, cfg), axis=0)[:cfg.num_freqs]
    np.testing.assert_allclose(got[(exact.name, 0)]["sv"], np.concatenate([gt.real, gt.imag], -1),
                               rtol=2e-3, atol=2e-3 * np.abs(gt).max())
    gt = np.fft.rfft(_closed(truth, cfg), axis=0)[:cfg.num_freqs]
    flow_error = np.abs(got[(flowed.name, 0)]["sv"] - np.concatenate([gt.real, gt.imag], -1)).max()
    assert flow_error > 1e-2 * np.abs(gt).max()      # measured by flow, not copied from the truth


def test_ground_truth_motion_source_needs_the_npz(tmp_path):
    videos = tmp_path / "videos"
    synthesize(videos, 1, size=SIZE, num_frames=32, fps=30.0, seed=6, progress=False)
    next(videos.glob("*.npz")).unlink()
    with pytest.raises(ValueError, match=r"synth_00000\.mp4: motion_source='ground_truth' needs"):
        P.prepare(videos, tmp_path / "out", tiny_config(motion_source="ground_truth"), progress=False)
    with pytest.raises(ValueError, match="motion_source must be one of"):
        P.prepare(videos, tmp_path / "out", tiny_config(motion_source="exact"), progress=False)


def _write_frame_folder(folder: Path, frames: np.ndarray, numbers):
    import cv2

    folder.mkdir(parents=True)
    for n in numbers:
        rgb = np.round(frames[n] * 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"{n:04d}.png"), rgb[..., ::-1])


def test_frame_gaps_of_numbered_names():
    names = [f"f_{i:04d}.png" for i in range(31) if i != 17]
    assert C.frame_gaps(names) == [(17, [17])]
    assert C.frame_gaps([f"{i}.png" for i in range(0, 20, 2)]) == []          # every 2nd frame
    assert C.frame_gaps([f"{i}.png" for i in (0, 2, 4, 10, 12)]) == [(3, [6, 8])]
    assert C.frame_gaps(["a.png", "b.png"]) == [] and C.frame_gaps(["x1.png", "y3.png"]) == []


def test_frame_folder_with_a_missing_frame_is_split_at_the_gap(tmp_path, caplog):
    """0000..0040 without 0035: 35 + 5 continuous frames. The clip from frame 10 (T=30) would
    span the gap, so only the one from frame 0 is made; log, report and summary name the gap."""
    video = generate_video(6, size=SIZE, num_frames=41)
    _write_frame_folder(tmp_path / "videos" / "frames", video.frames, [n for n in range(41) if n != 35])
    cfg = tiny_config(test_fraction=0.0, static_threshold_px=0.0, camera_motion_fraction=1.0)
    with caplog.at_level("WARNING"):
        r = P.prepare(tmp_path / "videos", tmp_path / "out", cfg, progress=False)
    report = json.loads(Path(r.report_path).read_text())
    (entry,) = report["videos"]
    assert entry["video"] == "frames" and entry["missing_frames"] == [35]
    assert [c["start"] for c in entry["clips"]] == [0]
    assert r.gaps == [("frames", [35])] and "frames: missing frame 35" in P.summary(r)
    warned = [m for m in caplog.messages if "missing frame" in m]
    assert len(warned) == 1 and str(tmp_path / "videos" / "frames") in warned[0] and "35" in warned[0]
    got = _prepared_examples(r)
    assert sorted(got) == [("frames", 0)]


def test_truncated_cache_file_is_recomputed(tmp_path, caplog):
    videos = tmp_path / "videos"
    synthesize(videos, 2, size=SIZE, num_frames=32, fps=30.0, seed=6, progress=False)
    out = tmp_path / "out"
    cfg = tiny_config(test_fraction=0.0, static_threshold_px=0.0, camera_motion_fraction=1.0)
    settings = P._settings(cfg)
    sources = C.source_elements(str(videos), settings)
    assert C.ensure_cache(sources[0], settings, str(out / "cache"))["status"] == "ok"
    npz = out / "cache" / f"{sources[0]['key']}.npz"
    data = npz.read_bytes()
    npz.write_bytes(data[:len(data) // 2])        # e.g. a full disk during a copy of OUT
    with caplog.at_level("WARNING"):
        r = P.prepare(videos, out, cfg, progress=False)
    assert r.examples["train"] == 2 and r.skipped == []
    warned = [m for m in caplog.messages if str(npz) in m]
    assert len(warned) == 1 and "damaged" in warned[0]
    assert set(C.load_cache(str(npz))) >= {"sv", "images", "start_frames"}


def test_unknown_flow_backend_is_refused_before_anything_is_written(tmp_path):
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "a.mp4").write_bytes(b"not a video")
    with pytest.raises(ValueError, match=r"flow_backend must be .*opencv_brox.*got 'nosuch'") as err:
        P.prepare(tmp_path / "videos", tmp_path / "out", tiny_config(flow_backend="nosuch"), progress=False)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_cli_prints_its_summary_once_without_beam_info(tmp_path):
    import subprocess
    import sys

    videos, out = tmp_path / "videos", tmp_path / "out"
    synthesize(videos, 1, size=SIZE, num_frames=32, fps=30.0, seed=6, progress=False)
    run = subprocess.run(
        [sys.executable, "-m", "gid_jax.cli", "prepare", "--videos", str(videos), "--out", str(out),
         "--config", "configs/prepare.py:tiny", "--config.test_fraction=0",
         "--config.static_threshold_px=0", "--config.camera_motion_fraction=1.0", "--config.num_workers=1",
         "--config.direct_running_mode=multi_processing"],
        capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count(f"prepared {out} in ") == 1, run.stdout
    for chatter in ("INFO:apache_beam", "Pipeline_options", "Control channel established"):  # workers' INFO
        assert chatter not in run.stderr, run.stderr[-3000:]
    for chatter in ("Downloading and preparing dataset", "downloaded and prepared"):  # TFDS's prints
        assert chatter not in run.stdout + run.stderr, run.stdout


def test_tfds_dataset_lines_print_only_when_verbose(tmp_path, capsys):
    """The builder's TFDS "Downloading and preparing" / "downloaded and prepared" lines (stdout,
    once per dataset config) show with `gid prepare --verbose` only."""
    from data_pipelines.beam_writer import builder_class

    settings = P._settings(tiny_config())
    for verbose in (False, True):
        builder = builder_class()(settings=settings, elements=[], data_dir=str(tmp_path),
                                  config="pairs", verbose=verbose)
        builder._log_download_bytes()
        builder._log_download_done()
        out = capsys.readouterr().out
        assert ("Downloading and preparing dataset" in out) is verbose, out
        assert ("downloaded and prepared" in out) is verbose, out
