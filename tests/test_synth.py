"""The procedural oscillation generator: its ground-truth motion checked against its own rendered
frames (independent numpy bilinear warp), modal spectra, scene variety, real-world motion
statistics, image-dependent motion (static rigid things, thin parts moving more), the shipped
photographs, files and validation."""

import json
import os

import av
import cv2
import numpy as np
import pytest

from data_pipelines.synth import generate_video, load_ground_truth, synthesize, write_example
from data_pipelines.synth import photos
from data_pipelines.synth.props import RIGID_KINDS

W, H, T = 96, 64, 32
SEEDS = range(10)


@pytest.fixture(scope="module")
def videos():
    return {s: generate_video(s, size=(W, H), num_frames=T) for s in SEEDS}


def sample_bilinear(img, x, y):
    """Plain numpy bilinear sample of (H,W,C) at float coords inside the image."""
    x0 = np.clip(np.floor(x).astype(int), 0, img.shape[1] - 2)
    y0 = np.clip(np.floor(y).astype(int), 0, img.shape[0] - 2)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    return (img[y0, x0] * (1 - fx) * (1 - fy) + img[y0, x0 + 1] * fx * (1 - fy)
            + img[y0 + 1, x0] * (1 - fx) * fy + img[y0 + 1, x0 + 1] * fx * fy)


def eroded_layer_masks(vis, layers):
    k = np.ones((5, 5), np.uint8)
    return {l: cv2.erode((vis == l).astype(np.uint8), k, borderValue=0).astype(bool) for l in layers}


def warp_errors(v, t, perturb=((0.0, 0.0), (0.3, 0.0), (0.0, 0.3))):
    """Mean |frame_t(q0 + F_t(q0) + e) - frame_0(q0)| for the GT motion and perturbed offsets e,
    on moving pixels visible on the same layer, away from layer edges, in both frames; plus
    the zero-motion error |frame_t - frame_0| there, and the number of such pixels."""
    gy, gx = np.mgrid[0:H, 0:W].astype(np.float64)
    F = v.trajectories[t].astype(np.float64)
    tx, ty = gx + F[..., 0], gy + F[..., 1]
    inside = (tx >= 1) & (tx <= W - 2) & (ty >= 1) & (ty <= H - 2)
    vis0, vist = v.visible_layer[0], v.visible_layer[t]
    layers = np.unique(vis0)
    m0, mt = eroded_layer_masks(vis0, layers), eroded_layer_masks(vist, layers)
    rx = np.clip(np.round(tx).astype(int), 0, W - 1)
    ry = np.clip(np.round(ty).astype(int), 0, H - 1)
    ok = np.zeros((H, W), bool)
    for l in layers:
        ok |= (vis0 == l) & m0[l] & mt[l][ry, rx]
    moving = ok & inside & (np.linalg.norm(F, axis=-1) > 0.5)
    frame_t = v.frames[t].astype(np.float64)
    errs = [np.abs(sample_bilinear(frame_t, tx + ex, ty + ey) - v.frames[0])[moving].sum()
            for ex, ey in perturb]
    zero = np.abs(v.frames[t] - v.frames[0])[moving].sum()
    return np.array(errs), zero, 3 * int(moving.sum())


def test_ground_truth_motion_reproduces_rendered_frames(videos):
    errs, zero, n = 0.0, 0.0, 0
    for s, v in videos.items():
        for t in (T // 3, 2 * T // 3, T - 1):
            e, z, k = warp_errors(v, t)
            errs, zero, n = errs + e, zero + z, n + k
    assert n > 1500, n
    errs, zero = errs / n, zero / n
    # Frame t sampled at q0+F is a bilinear resample of frame t, whose pixels are themselves
    # bilinear samples of the same rest texture: that double interpolation of procedural
    # textures with pixel-sharp detail (leaf edges inside a leafy layer, thin blades) leaves
    # ~0.5-1% mean error at this size; zero motion (sub-pixel to few-pixel moves) is ~3x worse.
    assert errs[0] < 0.012, (errs, zero)
    assert errs[0] < 0.4 * zero, (errs, zero)
    # The GT is the best warp: moving the sampling point by 0.3 px makes things worse.
    assert errs[0] < 0.9 * errs[1:].min(), (errs, zero)


def test_shapes_dtypes_and_first_frame(videos):
    v = videos[0]
    assert v.frames.shape == (T, H, W, 3) and v.frames.dtype == np.float32
    assert v.frames.min() >= 0.0 and v.frames.max() <= 1.0
    assert v.trajectories.shape == (T, H, W, 2) and v.trajectories.dtype == np.float32
    assert v.visible_layer.shape == (T, H, W) and v.visible_layer.dtype == np.int16
    assert v.mode_frequencies.dtype == np.float32 and v.mode_frequencies.ndim == 1
    assert v.fps == 30.0
    for v in videos.values():
        assert np.all(v.trajectories[0] == 0.0)
        assert np.isfinite(v.trajectories).all()
        json.dumps(v.scene)
        assert v.visible_layer.max() <= len(v.scene["layers"])


def test_determinism_and_variety(videos):
    again = generate_video(3, size=(W, H), num_frames=T)
    np.testing.assert_array_equal(again.frames, videos[3].frames)
    np.testing.assert_array_equal(again.trajectories, videos[3].trajectories)
    assert again.scene == videos[3].scene
    assert np.abs(videos[3].frames[0] - videos[4].frames[0]).mean() > 0.05
    kinds = set()
    for s in range(16):                       # scene descriptions only: tiny, two frames
        kinds |= {o["kind"] for o in generate_video(s, size=(32, 32), num_frames=2).scene["objects"]}
    assert {"plant", "grass", "candle", "cloth"} <= kinds
    assert len(kinds & set(RIGID_KINDS)) >= 3, kinds


def test_scene_composition_does_not_depend_on_size():
    # Same seed, same picture at any size: sizes and motion scale with the frame height.
    for seed in (0, 5):
        a = generate_video(seed, size=(64, 40), num_frames=2).scene
        b = generate_video(seed, size=(128, 80), num_frames=2).scene
        assert a.get("theme") == b.get("theme") and a.get("photo") == b.get("photo")
        assert [o["kind"] for o in a["objects"]][:4] == [o["kind"] for o in b["objects"]][:4]


def test_frequencies_and_magnitudes_plausible(videos):
    p99 = []
    for v in videos.values():
        f = v.mode_frequencies
        assert len(f) > 0 and f.min() >= 0.15 and f.max() <= 9.0
        mag = np.linalg.norm(v.trajectories, axis=-1)
        assert mag.max() < 0.3 * H              # a few pixels, never wild
        p99.append(np.percentile(mag, 99))
    # Scenes range from near-calm to windy; most show sub-pixel-to-pixels motion.
    assert max(p99) > 0.5 and np.median(p99) > 0.05


def test_static_and_camera_shake():
    still = generate_video(5, size=(W, H), num_frames=12, static_prob=1.0)
    assert still.scene["static"] and np.all(still.trajectories == 0)
    np.testing.assert_allclose(still.frames[-1], still.frames[0], atol=1e-6)
    calm = generate_video(5, size=(W, H), num_frames=12)
    shaky = generate_video(5, size=(W, H), num_frames=12, camera_shake_prob=1.0)
    np.testing.assert_allclose(calm.frames[0], shaky.frames[0], atol=1e-4)  # same scene, shake starts at 0
    bg = shaky.visible_layer[0] == 0
    assert bg.any() and np.all(calm.trajectories[:, bg] == 0)
    assert np.abs(shaky.trajectories[:, bg]).max() > 0.3
    # Background motion is one global translation.
    np.testing.assert_allclose(np.ptp(shaky.trajectories[:, bg], axis=1), 0, atol=1e-6)


def test_motion_spectrum_peaks_at_scene_modes():
    hits, total = 0, 0
    for seed in range(6):
        v = generate_video(seed, size=(W, H), num_frames=150)
        F = v.trajectories
        power = (np.abs(np.fft.rfft(F - F.mean(0), axis=0)) ** 2).sum(-1)      # (76,H,W)
        energy = power.sum(0)
        if energy.max() < 1.0:
            continue
        y, x = np.unravel_index(np.argmax(energy), energy.shape)
        layer = v.scene["layers"][int(v.visible_layer[0, y, x]) - 1]
        modes = [m["freq_hz"] for m in v.scene["objects"][layer["object"]]["modes"]]
        freqs = np.fft.rfftfreq(150, 1 / v.fps)
        peak = freqs[1 + np.argmax(power[1:, y, x])]
        total += 1
        hits += min(abs(peak - f) for f in modes) <= max(0.25, 0.15 * peak)
    assert total >= 3 and hits >= total - 1, (hits, total)


def test_write_example_roundtrip(tmp_path, videos):
    v = videos[1]
    mp4, npz = write_example(v, tmp_path, "clip")
    with av.open(str(mp4)) as c:
        decoded = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)]) / 255.0
    assert decoded.shape == v.frames.shape
    assert np.abs(decoded - v.frames).mean() < 0.03
    gt = load_ground_truth(npz)
    np.testing.assert_array_equal(gt["trajectories"], v.trajectories)
    np.testing.assert_array_equal(gt["visible_layer"], v.visible_layer[0])
    np.testing.assert_array_equal(gt["mode_frequencies"], v.mode_frequencies)
    assert gt["fps"] == v.fps and gt["scene"] == v.scene
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]
    bad = tmp_path / "bad.npz"
    np.savez_compressed(bad, trajectories=v.trajectories)
    with pytest.raises(ValueError, match="bad.npz.*visible_layer"):
        load_ground_truth(bad)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="junk.npz"):
        load_ground_truth(tmp_path / "junk.npz")


def test_synthesize_resumable_and_validates(tmp_path):
    out = tmp_path / "ds"
    paths = synthesize(out, 2, size=(32, 32), num_frames=6, seed=7, progress=False)
    assert [p.name for p in paths] == ["synth_00000.mp4", "synth_00001.mp4"]
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert len(stamps) == 4
    (out / "synth_00001.npz").unlink()
    synthesize(out, 2, size=(32, 32), num_frames=6, seed=7, progress=False)
    assert (out / "synth_00000.mp4").stat().st_mtime_ns == stamps["synth_00000.mp4"]
    assert (out / "synth_00000.npz").stat().st_mtime_ns == stamps["synth_00000.npz"]
    assert (out / "synth_00001.npz").is_file()
    a, b = (load_ground_truth(out / f"synth_0000{i}.npz")["scene"]["seed"] for i in (0, 1))
    assert a != b

    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    cases = [
        (dict(size=(33, 32)), "even"), (dict(size=(0, 32)), "at least"),
        (dict(num_frames=1), "num_frames"), (dict(fps=0.0), "fps"),
        (dict(num_videos=0), "num_videos"), (dict(static_prob=1.5), "static_prob"),
        (dict(camera_shake_prob=-0.1), "camera_shake_prob"),
        (dict(out_dir=blocker / "sub"), "file.txt"),
    ]
    for kw, msg in cases:
        args = dict(out_dir=tmp_path / "v", num_videos=1, size=(32, 32), num_frames=4, progress=False)
        args.update(kw)
        with pytest.raises(ValueError, match=msg) as info:
            synthesize(**args)
        assert "\n" not in str(info.value)


def mean_motion(v):
    """W(p) = mean over t = 1..T-1 of |F_t(p)| (px), as the data filters of the paper use it."""
    return np.linalg.norm(v.trajectories[1:], axis=-1).mean(0)


def test_real_world_motion_statistics_at_256x160():
    # Real footage of trees and flags at 256x160 moves 1.1-3.6 px on average, the top 20% of
    # pixels more than 2 px. The paper drops clips with mean W < 1 px (static) and clips where
    # >= 95% of the pixels have W > 1 px (camera motion).
    means, p80, passed = [], [], 0
    for seed in range(4):
        W_ = mean_motion(generate_video(seed, size=(256, 160), num_frames=150))
        means.append(W_.mean())
        p80.append(np.percentile(W_, 80))
        passed += bool(W_.mean() >= 1.0 and (W_ > 1.0).mean() < 0.95)
        assert W_.max() > 4.0                    # leaf tips, flag ends move several px
        assert (W_ == 0).mean() > 0.1            # sky, ground, rigid objects stay still
    assert passed >= 3, (means, p80)
    assert 1.1 <= np.median(means) <= 3.6, means
    assert np.median(p80) > 2.0, p80


def test_motion_scales_with_image_size():
    small = [mean_motion(generate_video(s, size=(64, 40), num_frames=40)).mean() for s in range(4)]
    large = [mean_motion(generate_video(s, size=(128, 80), num_frames=40)).mean() for s in range(4)]
    ratio = np.median(np.array(large) / np.array(small))
    assert 1.4 < ratio < 2.8, (small, large)


def test_static_things_stay_exactly_still_and_moving_things_move(videos):
    rigid_px = moving_px = 0
    for v in videos.values():
        W_ = mean_motion(v)
        vis = v.visible_layer[0]
        layers = v.scene["layers"]
        still = vis == 0                                            # the background photo
        for i, layer in enumerate(layers, start=1):
            obj = v.scene["objects"][layer["object"]]
            m = vis == i
            if layer["num_modes"] == 0:                             # rocks, fences, walls, poles ...
                still |= m
                rigid_px += int(m.sum()) if obj["kind"] in RIGID_KINDS else 0
            elif m.any():
                assert obj["kind"] in ("plant", "grass", "cloth", "candle")
                moving_px += int(m.sum())
                if m.sum() >= 20:                                   # (not just a flag's hoist)
                    assert (W_[m] > 0).mean() > 0.5, layer          # plants, cloth, flames move
        assert np.all(v.trajectories[:, still] == 0)
    assert rigid_px > 500 and moving_px > 5000, (rigid_px, moving_px)


def _axis_position(v, obj):
    """Pixels' position s along an object's root -> tip axis (0 at the root, 1 at the tip)."""
    root, tip = np.array(obj["root"]), np.array(obj["tip"])
    gy, gx = np.mgrid[0:v.frames.shape[1], 0:v.frames.shape[2]]
    axis = tip - root
    return ((gx - root[0]) * axis[0] + (gy - root[1]) * axis[1]) / max(float(axis @ axis), 1e-9)


def test_thin_parts_and_tips_move_more_than_bases(videos):
    tips = total = 0
    for v in videos.values():
        W_ = mean_motion(v)
        vis = v.visible_layer[0]
        for i, layer in enumerate(v.scene["layers"], start=1):
            obj = v.scene["objects"][layer["object"]]
            m = vis == i
            if obj["kind"] == "plant":
                s = _axis_position(v, obj)
            elif obj["kind"] == "grass":
                gy = np.mgrid[0:vis.shape[0], 0:vis.shape[1]][0]
                s = (obj["base_y"] - gy) / obj["blade_height"]
            else:
                continue
            base, top = m & (s < 0.3), m & (s > 0.7)
            if base.sum() < 10 or top.sum() < 10:
                continue
            total += 1
            tips += W_[top].mean() > W_[base].mean()
    assert total >= 8 and tips >= 0.85 * total, (tips, total)


def test_size_sets_frequency():
    # Thick trunks sway slower than their thinner, shorter branches; leaf clusters jiggle faster.
    checked = 0
    for seed in range(8):
        for obj in generate_video(seed, size=(32, 32), num_frames=2).scene["objects"]:
            if obj["kind"] != "plant" or obj.get("variant") == "stem":
                continue
            f = {(m["group"], m["type"]): m["freq_hz"] for m in obj["modes"]}
            trunk = f[("trunk", "trunk_bend1")]
            branches = [hz for (g, t), hz in f.items() if g.startswith("branch")]
            twigs = [hz for (g, t), hz in f.items() if t == "cluster_jiggle"]
            assert np.median(branches) > trunk and min(twigs) > trunk, obj["variant"]
            checked += 1
    assert checked >= 5


def test_photographs_are_shipped_and_used(videos):
    names = sorted(p.stem for p in photos.PHOTO_DIR.glob("*.jpg"))
    credits = (photos.PHOTO_DIR / "CREDITS.md").read_text()
    total = 0
    for n in names:
        img = photos.load(n)
        assert img.shape[0] <= 320 and img.shape[1] <= 512 and img.std() > 0.02, n
        assert f"{n}.jpg" in credits, n
        total += (photos.PHOTO_DIR / f"{n}.jpg").stat().st_size
    assert total < 3e6 and set(photos.BACKGROUNDS) <= set(names)
    assert all(set(v) <= set(names) for v in photos.TEXTURES.values())
    # A background is a (jittered) crop of its photo, not a procedural gradient.
    img, desc = photos.background(np.random.default_rng(0), 80, 128)
    x0, y0, cw, ch = desc["crop"]
    ref = cv2.resize(photos.load(desc["photo"])[int(y0):int(y0 + ch), int(x0):int(x0 + cw)], (128, 80))
    if desc["flip"]:
        ref = ref[:, ::-1]
    assert np.corrcoef(img.mean(-1).ravel(), ref.mean(-1).ravel())[0, 1] > 0.9
    detail = []
    for v in videos.values():
        assert v.scene.get("photo", v.scene.get("window", {}).get("photo")) in photos.BACKGROUNDS + (None,)
        f, bg = v.frames[0], v.visible_layer[0] == 0
        bg = cv2.erode(bg.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        if bg.sum() > 200:
            detail.append(np.abs(f - cv2.GaussianBlur(f, (0, 0), 1.5)).mean(-1)[bg].mean())
    assert np.median(detail) > 0.006, detail


def test_wind_seed_redraws_only_the_wind():
    base = generate_video(7, size=(64, 40), num_frames=30)
    other = generate_video(7, size=(64, 40), num_frames=30, wind_seed=1)
    again = generate_video(7, size=(64, 40), num_frames=30, wind_seed=1)
    np.testing.assert_array_equal(other.trajectories, again.trajectories)      # deterministic
    assert not np.allclose(base.trajectories, other.trajectories, atol=1e-3)   # other gusts
    for key in ("wind_strength", "kinds", "theme", "photo"):                   # the same scene
        assert base.scene.get(key) == other.scene.get(key)
    assert [o["kind"] for o in base.scene["objects"]] == [o["kind"] for o in other.scene["objects"]]
    np.testing.assert_allclose(base.mode_frequencies, other.mode_frequencies)
    # the same things move: moving masks (motion std > 5% of the max) overlap
    moving = [np.linalg.norm(v.trajectories.std(0), axis=-1) for v in (base, other)]
    masks = [m > 0.05 * m.max() for m in moving]
    assert (masks[0] & masks[1]).sum() / (masks[0] | masks[1]).sum() > 0.7
