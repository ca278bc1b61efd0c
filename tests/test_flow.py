"""Optical flow: every backend against synthetic motion with known ground truth, .flo I/O,
the colour wheel, and the batched entry point.

Synthetic pairs: a smooth random texture (sum of bicubically up-sampled noise at 3 scales, so it
has detail at every scale the pyramids use) is rendered larger than the frame; ``i1`` is sampled
from it so that ``i0(p) = i1(p + F(p))`` holds exactly for the ground-truth flow ``F``, given in
``i0``'s frame. EPEs are measured away from the border (``MARGIN``): there, part of the motion
leaves the frame and no method can be right.
"""

import os

import cv2
import numpy as np
import pytest

from gid_jax import flow as gflow
from gid_jax.flow import backends as gbackends
from gid_jax.flow import tvl1 as gtvl1

H, W = 96, 128
PAD = 24
MARGIN = 10


def _texture(seed, h=H + 2 * PAD, w=W + 2 * PAD):
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.float32)
    for cell, amp in ((4, 0.5), (8, 0.35), (16, 0.25)):
        n = rng.random((h // cell + 2, w // cell + 2, 3)).astype(np.float32)
        up = cv2.resize(n, None, fx=cell, fy=cell, interpolation=cv2.INTER_CUBIC)
        img += amp * up[:h, :w]
    return (img - img.min()) / (img.max() - img.min())


def _grid():
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    return xs, ys


def _sample(big, x, y):
    """``big`` at frame coordinates (x, y) (the frame is ``big`` cropped at PAD)."""
    out = cv2.remap(big, (x + PAD).astype(np.float32), (y + PAD).astype(np.float32),
                    cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    return np.clip(out, 0.0, 1.0)


def translation_pair(dx, dy, seed=0):
    """i1(q) = i0(q - d), so i0(p) = i1(p + d): the flow is the constant d."""
    big = _texture(seed)
    xs, ys = _grid()
    i0 = _sample(big, xs, ys)
    i1 = _sample(big, xs - dx, ys - dy)
    gt = np.broadcast_to(np.array([dx, dy], np.float32), (H, W, 2)).copy()
    return i0, i1, gt


def nonrigid_flow(amplitude=4.0):
    """A smooth field in i0's frame: a rotation-like swirl plus a shear wave, max |F| ~ amplitude."""
    xs, ys = _grid()
    u = 0.6 * amplitude * np.sin(2 * np.pi * ys / H) + 0.5 * amplitude * np.cos(2 * np.pi * xs / W)
    v = 0.6 * amplitude * np.cos(2 * np.pi * xs / W + 0.5) - 0.4 * amplitude * np.sin(np.pi * ys / H)
    return np.stack([u, v], axis=-1).astype(np.float32)


def nonrigid_pair(seed=1, amplitude=4.0):
    """i1 by backward warping with the *inverse* of F.

    We need i1(p + F(p)) = i0(p). Backward warping writes i1(q) = i0(q + G(q)), so G must be the
    inverse displacement expressed in i1's frame: q + G(q) = p where q = p + F(p), i.e.
    G(q) = -F(q + G(q)), found by fixed-point iteration (a contraction: |grad F| < 1 here).
    """
    big = _texture(seed)
    xs, ys = _grid()
    f = nonrigid_flow(amplitude)
    # F must be sampled outside the frame too, so evaluate the analytic field via remap of a
    # padded copy (edge-extended: the swirl is smooth, so this only matters at the margin).
    fpad = cv2.copyMakeBorder(f, PAD, PAD, PAD, PAD, cv2.BORDER_REPLICATE)
    gx = np.zeros((H, W), np.float32)
    gy = np.zeros((H, W), np.float32)
    for _ in range(60):
        fx = cv2.remap(fpad[..., 0], xs + gx + PAD, ys + gy + PAD, cv2.INTER_LINEAR)
        fy = cv2.remap(fpad[..., 1], xs + gx + PAD, ys + gy + PAD, cv2.INTER_LINEAR)
        gx, gy = -fx, -fy
    i0 = _sample(big, xs, ys)
    i1 = _sample(big, xs + gx, ys + gy)
    return i0, i1, f


def interior_epe(flow, gt):
    e = np.linalg.norm(flow - gt, axis=-1)
    return float(e[MARGIN:-MARGIN, MARGIN:-MARGIN].mean())


# --- ground-truth generator sanity (the tests below rely on its direction convention) ----------

def test_nonrigid_ground_truth_direction():
    i0, i1, f = nonrigid_pair()
    xs, ys = _grid()
    # i1 sampled at p + F(p) must give back i0 (up to interpolation), and -F must not.
    back = cv2.remap(i1, xs + f[..., 0], ys + f[..., 1], cv2.INTER_CUBIC)
    wrong = cv2.remap(i1, xs - f[..., 0], ys - f[..., 1], cv2.INTER_CUBIC)
    m = slice(MARGIN, -MARGIN)
    assert np.abs(back - i0)[m, m].mean() < 0.01
    assert np.abs(wrong - i0)[m, m].mean() > 5 * np.abs(back - i0)[m, m].mean()


# --- every backend recovers known motion ------------------------------------------------------
#
# Per backend: the translations, the non-rigid amplitude (max |F| ~ 1.1 * amp, strain up to
# ~0.04 * amp px/px) and EPE bounds in px for translations / the non-rigid warp. Measured interior
# EPEs at 96x128 were: jax_tvl1 0.004 / 0.05 / 0.15, opencv_brox 0.002 / 0.04 / 0.07,
# dis_medium 0.02 / 0.08 / 0.13, dis_fast 0.11 / 0.08 / 0.59, dis_ultrafast 0.13 / 0.10 / 0.66,
# farneback 0.001 / 0.05 / 0.10. Bounds: the variational/TV methods sit at 0.01-0.15 px (the floor
# is interpolation bias, plus TV staircasing on the warp), so 0.25 px (0.3 for the warp) leaves
# ~2x margin while a wrong direction, scale or axis order fails by pixels. DIS fast presets fit one
# constant vector per 8x8 patch with little (ultrafast: no) variational smoothing, so a deforming
# field costs them ~0.6 px: bounds 0.3 / 1.0. The OpenCV backends get smaller motion than the JAX
# one: at 96x128 their coarsest pyramid levels cannot follow > ~8 px (Farneback ~3 px with a 15 px
# window); at 256x160 they follow 15 px (see benchmarks/flow_backends.py).
CASES = {
    "jax_tvl1": dict(integer=(3, -2), frac=(-10.5, 6.25), amp=5.0, bound=(0.25, 0.3)),
    "opencv_brox": dict(integer=(3, -2), frac=(4.5, -2.25), amp=3.0, bound=(0.25, 0.3)),
    "opencv_dis_medium": dict(integer=(3, -2), frac=(4.5, -2.25), amp=3.0, bound=(0.25, 0.3)),
    "opencv_dis_fast": dict(integer=(3, -2), frac=(4.5, -2.25), amp=3.0, bound=(0.3, 1.0)),
    "opencv_dis_ultrafast": dict(integer=(3, -2), frac=(4.5, -2.25), amp=3.0, bound=(0.3, 1.0)),
    "opencv_farneback": dict(integer=(2, -1), frac=(2.5, -1.75), amp=2.0, bound=(0.25, 0.3)),
}


def test_every_backend_has_a_case():
    assert set(CASES) == set(gflow.available_backends())


@pytest.mark.parametrize("backend", sorted(CASES))
@pytest.mark.parametrize("kind", ["integer", "frac", "nonrigid"])
def test_backend_recovers_motion(backend, kind):
    case = CASES[backend]
    if kind == "nonrigid":
        i0, i1, gt = nonrigid_pair(seed=3, amplitude=case["amp"])
    else:
        i0, i1, gt = translation_pair(*case[kind], seed=2)
    flow = gflow.estimate_flow(i0, i1, backend=backend)
    assert flow.shape == (H, W, 2) and flow.dtype == np.float32
    epe = interior_epe(flow, gt)
    bound = case["bound"][kind == "nonrigid"]
    assert epe < bound, f"{backend} {kind}: EPE {epe:.3f} px > {bound}"
    # The flipped or axis-swapped flow is pixels off: the conventions are really being tested.
    assert interior_epe(-flow, gt) > 1.0
    assert interior_epe(flow[..., ::-1], gt) > 0.5


def test_jax_robust_to_brightness_change():
    """Exposure change + sensor noise between frames: the structure-texture data term copes."""
    i0, i1, gt = translation_pair(5.5, -3.25, seed=4)
    rng = np.random.default_rng(0)
    i1 = np.clip(1.15 * i1 + 0.05 + rng.normal(0, 0.02, i1.shape), 0, 1).astype(np.float32)
    assert interior_epe(gflow.estimate_flow(i0, i1, backend="jax_tvl1"), gt) < 0.4


def test_default_backend_is_registered():
    assert gbackends.DEFAULT_BACKEND in gflow.available_backends()
    i0, i1, gt = translation_pair(2, 1, seed=5)
    assert interior_epe(gflow.estimate_flow(i0, i1), gt) < 0.25


# --- batching ---------------------------------------------------------------------------------

def test_batch_equals_per_pair_and_vmap():
    i0, _, _ = translation_pair(0, 0, seed=6)
    frames = np.stack([translation_pair(d, -d / 2, seed=6)[1] for d in (1.0, 2.5, 4.0)])
    single = np.stack([gflow.estimate_flow(i0, f, backend="jax_tvl1") for f in frames])
    # Chunks of 2 (the last one padded): one vmapped compilation serves both calls below.
    batch = gflow.estimate_flow_batch(i0, frames, backend="jax_tvl1", chunk_size=2)
    assert batch.shape == (3, H, W, 2) and batch.dtype == np.float32
    # vmap may fuse differently from the single-pair program: equal up to float rounding.
    np.testing.assert_allclose(batch, single, atol=2e-3)
    np.testing.assert_allclose(gflow.estimate_flow_batch(i0, frames[:2], "jax_tvl1"), batch[:2],
                               atol=1e-5)
    # A numpy backend loops over the frames.
    dis = gflow.estimate_flow_batch(i0, frames, backend="opencv_dis_fast")
    np.testing.assert_array_equal(dis[1], gflow.estimate_flow(i0, frames[1], "opencv_dis_fast"))
    assert gflow.estimate_flow_batch(i0, frames[:0]).shape == (0, H, W, 2)


# --- input checking ---------------------------------------------------------------------------

def test_unknown_backend_lists_names():
    img = np.zeros((16, 16, 3), np.float32)
    with pytest.raises(ValueError, match="available: .*jax_tvl1.*opencv_dis_fast"):
        gflow.estimate_flow(img, img, backend="raft")


@pytest.mark.parametrize("bad, match", [
    (np.zeros((16, 16), np.float32), r"shape \(H, W, 3\)"),
    (np.zeros((16, 16, 4), np.float32), r"shape \(H, W, 3\)"),
    (np.zeros((16, 17, 3), np.float32), "expected"),
    (np.full((16, 16, 3), np.nan, np.float32), "NaN"),
    (np.zeros((16, 16, 3), np.uint8), "float image"),
    (np.full((16, 16, 3), 200.0, np.float32), "divided by 255"),
])
def test_bad_inputs(bad, match):
    good = np.zeros((16, 16, 3), np.float32)
    with pytest.raises(ValueError, match=match):
        gflow.estimate_flow(good, bad, backend="opencv_dis_fast")


# --- .flo I/O ---------------------------------------------------------------------------------

def test_flo_round_trip_bit_exact(tmp_path):
    rng = np.random.default_rng(0)
    f = (rng.normal(size=(7, 5, 2)) * 10).astype(np.float32)
    f[0, 0, 0] = 1e10  # Middlebury "unknown" survives
    p = tmp_path / "a.flo"
    gflow.write_flo(p, f)
    assert os.path.getsize(p) == 12 + 7 * 5 * 8
    g = gflow.read_flo(p)
    assert g.dtype == np.float32 and g.shape == (7, 5, 2)
    assert g.tobytes() == f.tobytes()
    assert [x for x in os.listdir(tmp_path)] == ["a.flo"]  # no temp file left behind


def test_flo_matches_opencv_reference(tmp_path):
    """Independent reader/writer: OpenCV's own .flo implementation."""
    rng = np.random.default_rng(1)
    f = rng.normal(size=(6, 9, 2)).astype(np.float32)
    p = str(tmp_path / "ours.flo")
    gflow.write_flo(p, f)
    np.testing.assert_array_equal(cv2.readOpticalFlow(p), f)
    q = str(tmp_path / "cv.flo")
    cv2.writeOpticalFlow(q, f)
    np.testing.assert_array_equal(gflow.read_flo(q), f)
    with open(q, "rb") as a, open(p, "rb") as b:
        assert a.read() == b.read()


def test_flo_errors(tmp_path):
    good = tmp_path / "g.flo"
    gflow.write_flo(good, np.zeros((4, 3, 2), np.float32))
    data = good.read_bytes()
    bad_magic = tmp_path / "magic.flo"
    bad_magic.write_bytes(b"ABCD" + data[4:])
    with pytest.raises(ValueError, match=r"magic.flo.*magic"):
        gflow.read_flo(bad_magic)
    trunc = tmp_path / "trunc.flo"
    trunc.write_bytes(data[:-4])
    with pytest.raises(ValueError, match=r"trunc.flo.*truncated"):
        gflow.read_flo(trunc)
    short = tmp_path / "short.flo"
    short.write_bytes(data[:6])
    with pytest.raises(ValueError, match=r"short.flo"):
        gflow.read_flo(short)
    with pytest.raises(ValueError, match="missing.flo"):
        gflow.read_flo(tmp_path / "missing.flo")
    with pytest.raises(ValueError, match=r"\(H, W, 2\)"):
        gflow.write_flo(tmp_path / "x.flo", np.zeros((4, 3), np.float32))
    # A failed write leaves an existing file intact.
    before = good.read_bytes()
    with pytest.raises(ValueError):
        gflow.write_flo(good, np.zeros((4, 3, 3), np.float32))
    assert good.read_bytes() == before


# --- colour wheel -----------------------------------------------------------------------------

def _hue(rgb):
    hsv = cv2.cvtColor(np.asarray(rgb, np.uint8).reshape(1, 1, 3), cv2.COLOR_RGB2HSV_FULL)
    return hsv[0, 0, 0] * 360.0 / 256.0


def test_color_wheel_structure():
    wheel = gflow.make_color_wheel()
    assert wheel.shape == (55, 3)  # 15 + 6 + 4 + 11 + 13 + 6
    np.testing.assert_array_equal(wheel[0], [255, 0, 0])     # red
    np.testing.assert_array_equal(wheel[15], [255, 255, 0])  # yellow
    np.testing.assert_array_equal(wheel[21], [0, 255, 0])    # green
    np.testing.assert_array_equal(wheel[25], [0, 255, 255])  # cyan
    np.testing.assert_array_equal(wheel[36], [0, 0, 255])    # blue
    np.testing.assert_array_equal(wheel[49], [255, 0, 255])  # magenta


def test_flow_to_color():
    flow = np.zeros((3, 3, 2), np.float32)
    flow[0, 0] = (1, 0)    # right
    flow[0, 1] = (0, 1)    # down
    flow[0, 2] = (-1, 0)   # left
    flow[1, 0] = (0, -1)   # up
    flow[1, 1] = (3, 0)    # beyond max: darkened
    flow[2, 2] = (np.nan, 0)
    img = gflow.flow_to_color(flow, max_magnitude=1.0)
    assert img.shape == (3, 3, 3) and img.dtype == np.uint8
    assert img[1, 2].min() >= 250                  # zero flow: white
    r = img[0, 0].astype(int)
    assert r[0] >= 250 and r[1] < 60 and r[2] < 60  # +x: red
    hue = {k: _hue(img[idx]) for k, idx in
           {"down": (0, 1), "left": (0, 2), "up": (1, 0)}.items()}
    assert 40 <= hue["down"] <= 70                  # +y: yellow (wheel entry 13.5 of 55)
    assert 170 <= hue["left"] <= 215                # -x: cyan-blue
    assert 225 <= hue["up"] <= 300                  # -y: blue-violet
    assert img[1, 1].max() <= int(0.75 * 255) + 1   # saturated, darkened
    np.testing.assert_array_equal(img[2, 2], [0, 0, 0])
    # Default max is the largest magnitude: the (3, 0) vector becomes fully saturated red.
    auto = gflow.flow_to_color(flow[:2])
    assert auto[1, 1, 0] >= 250 and auto[1, 1, 1] < 60


def test_median3x3_matches_scipy():
    """The sorting-network median used after every TV-L1 warp, against scipy's median filter."""
    from scipy.ndimage import median_filter

    x = np.random.default_rng(0).normal(size=(11, 13)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(gtvl1.median3x3(x)), median_filter(x, 3, mode="nearest"))
