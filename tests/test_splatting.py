"""Forward warping (splatting): against a direct numpy loop, closed forms, stability, gradients."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gid_jax.models.splatting import average_splat, softmax_splat, splat, sum_splat

B, H, W, C = 2, 7, 9, 3

# Compiled once per module and reused (float32 shapes; float64 gets its own trace in one test).
softmax_j = jax.jit(softmax_splat)
average_j = jax.jit(average_splat)
sum_j = jax.jit(sum_splat)


def reference_splat(feat, flow, z=None, mode="sum"):
    """Direct loop in float64: every source pixel, its 4 corners, accumulate."""
    feat = np.asarray(feat, np.float64)
    flow = np.asarray(flow, np.float64)
    b_, h, w, c = feat.shape
    num = np.zeros((b_, h, w, c))
    den = np.zeros((b_, h, w, 1))
    for b in range(b_):
        for i in range(h):
            for j in range(w):
                x = j + flow[b, i, j, 0]
                y = i + flow[b, i, j, 1]
                x0, y0 = math.floor(x), math.floor(y)
                e = 1.0 if z is None else math.exp(float(z[b, i, j, 0]))
                for xi in (x0, x0 + 1):
                    for yi in (y0, y0 + 1):
                        if not (0 <= xi < w and 0 <= yi < h):
                            continue
                        k = max(0.0, 1 - abs(x - xi)) * max(0.0, 1 - abs(y - yi))
                        num[b, yi, xi] += k * e * feat[b, i, j]
                        den[b, yi, xi] += k * e
    if mode == "sum":
        return num
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(0)
    feat = rng.normal(size=(B, H, W, C)).astype(np.float32)
    # Fractional flows of a few pixels: many sources land partly or wholly outside the image.
    flow = (rng.normal(size=(B, H, W, 2)) * 2.5).astype(np.float32)
    flow[0, 0, 0] = (-20.0, 3.3)  # far outside
    flow[1, 3, 4] = (4.6, 0.25)  # straddles the right border
    z = rng.normal(size=(B, H, W, 1)).astype(np.float32) * 2
    return feat, flow, z


def test_matches_numpy_reference(inputs):
    feat, flow, z = inputs
    np.testing.assert_allclose(sum_j(feat, flow), reference_splat(feat, flow), atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(
        average_j(feat, flow), reference_splat(feat, flow, mode="avg"), atol=2e-5, rtol=1e-5
    )
    np.testing.assert_allclose(
        softmax_j(feat, flow, z), reference_splat(feat, flow, z, mode="avg"), atol=2e-5, rtol=1e-5
    )
    # The generic entry point with explicit weights (exp(z)) agrees with the log-weight path.
    ez = np.exp(z)
    np.testing.assert_allclose(
        jax.jit(splat, static_argnums=3)(feat, flow, ez, True),
        softmax_j(feat, flow, z), atol=2e-5, rtol=1e-5,
    )
    np.testing.assert_allclose(
        jax.jit(splat, static_argnums=3)(feat, flow, ez, False),
        reference_splat(feat, flow, z, mode="sum"), atol=2e-5, rtol=1e-5,
    )
    # Some targets get nothing: the normalised output is exactly 0 there.
    assert (np.asarray(average_j(feat, flow)) == 0).any()


def test_integer_translation_is_exact_shift():
    rng = np.random.default_rng(1)
    img = rng.uniform(size=(B, H, W, C)).astype(np.float32)
    dx, dy = 2, -1
    flow = np.broadcast_to(np.array([dx, dy], np.float32), (B, H, W, 2))
    z = rng.normal(size=(B, H, W, 1)).astype(np.float32)
    expected = np.zeros_like(img)
    expected[:, : H + dy, dx:] = img[:, -dy:, : W - dx]
    for out in (sum_j(img, flow), average_j(img, flow), softmax_j(img, flow, z)):
        np.testing.assert_array_equal(np.asarray(out), expected)


def test_half_pixel_shift_closed_form():
    # A delta splits 50/50 between the two neighbours of x + 0.5.
    img = np.zeros((1, H, W, 1), np.float32)
    img[0, 3, 4, 0] = 1.0
    flow = np.broadcast_to(np.array([0.5, 0.0], np.float32), (1, H, W, 2))
    out = np.asarray(sum_j(img, flow))[0, ..., 0]
    expected = np.zeros((H, W), np.float32)
    expected[3, 4] = expected[3, 5] = 0.5
    np.testing.assert_allclose(out, expected, atol=1e-7)
    # Diagonal half shift: four quarters.
    flow = np.broadcast_to(np.array([0.5, 0.5], np.float32), (1, H, W, 2))
    out = np.asarray(sum_j(img, flow))[0, ..., 0]
    expected = np.zeros((H, W), np.float32)
    expected[3:5, 4:6] = 0.25
    np.testing.assert_allclose(out, expected, atol=1e-7)


def test_constant_image_stays_constant_under_fractional_shift():
    img = np.full((B, H, W, C), 0.7, np.float32)
    z = np.random.default_rng(2).normal(size=(B, H, W, 1)).astype(np.float32)
    # (0.3, -0.6): every target receives something, borders only partially.
    flow = np.broadcast_to(np.array([0.3, -0.6], np.float32), (B, H, W, 2))
    for out in (average_j(img, flow), softmax_j(img, flow, z)):
        np.testing.assert_allclose(out, 0.7, rtol=1e-6)
    # The plain sum is not normalised: inside it stays 0.7 (kernel weights sum to 1); the left
    # column only gets the 0.7 share of its own pixels, the bottom row the 0.4 share.
    out = np.asarray(sum_j(img, flow))
    np.testing.assert_allclose(out[:, : H - 1, 1:], 0.7, rtol=1e-6)
    np.testing.assert_allclose(out[:, : H - 1, 0], 0.7 * 0.7, rtol=1e-6)
    np.testing.assert_allclose(out[:, H - 1, 1:], 0.7 * 0.4, rtol=1e-6)
    # (1.5, 0.25): column 0 is vacated (zero), the rest stays constant.
    flow = np.broadcast_to(np.array([1.5, 0.25], np.float32), (B, H, W, 2))
    for out in (average_j(img, flow), softmax_j(img, flow, z)):
        out = np.asarray(out)
        assert np.all(out[:, :, 0] == 0)
        np.testing.assert_allclose(out[:, :, 1:], 0.7, rtol=1e-6)


def test_flow_entirely_outside_gives_zeros():
    img = np.ones((B, H, W, C), np.float32)
    z = np.zeros((B, H, W, 1), np.float32)
    for flow_val in ((W + 5.5, 0.0), (0.0, -H - 0.25), (1e30, -1e30), (np.inf, 0.0)):
        flow = np.broadcast_to(np.array(flow_val, np.float32), (B, H, W, 2))
        for out in (sum_j(img, flow), average_j(img, flow), softmax_j(img, flow, z)):
            assert np.all(np.asarray(out) == 0), flow_val
        g = jax.grad(lambda f, fl, zz: softmax_j(f, fl, zz).sum(), argnums=(0, 1, 2))(img, flow, z)
        assert all(np.isfinite(np.asarray(x)).all() for x in g)


def test_z_shift_invariance_and_large_z(inputs):
    feat, flow, z = inputs
    z = np.round(z * 64) / 64  # so that z + shift is exact in float32
    base = np.asarray(softmax_j(feat, flow, z))
    np.testing.assert_allclose(softmax_j(feat, flow, z + 37.5), base, atol=1e-5)
    # Per-image shifts of different sizes.
    shift = np.array([-60.0, 80.0], np.float32)[:, None, None, None]
    np.testing.assert_allclose(softmax_j(feat, flow, z + shift), base, atol=1e-5)
    # Z around 1000 (exp would overflow float32 by far): quarter steps are exact in float32.
    zq = np.round(z * 4) / 4  # steps of 1/4 are exact at 1000 in float32
    big = np.asarray(softmax_j(feat, flow, zq + 1000.0))
    assert np.isfinite(big).all()
    np.testing.assert_allclose(big, softmax_j(feat, flow, zq), atol=1e-5)
    # Huge spread of Z within one image: low-Z regions are neither lost nor NaN.
    zs = np.where(np.arange(W)[None, None, :, None] < W // 2, 0.0, 500.0).astype(np.float32)
    zs = np.broadcast_to(zs, (B, H, W, 1))
    np.testing.assert_allclose(
        softmax_j(feat, flow, zs), reference_splat(feat, flow, zs - 500.0, mode="avg"), atol=2e-5
    )


def test_larger_z_dominates_where_sources_collide():
    # Two sources land on the same target pixel (3, 4): one from (3, 2) moved +2, one stays.
    feat = np.zeros((1, H, W, 1), np.float32)
    feat[0, 3, 2, 0] = 1.0  # foreground
    feat[0, 3, 4, 0] = -1.0  # background
    flow = np.zeros((1, H, W, 2), np.float32)
    flow[0, 3, 2, 0] = 2.0
    prev = None
    for dz in (0.0, 1.0, 3.0, 10.0, 100.0):
        z = np.zeros((1, H, W, 1), np.float32)
        z[0, 3, 2, 0] = dz
        v = float(softmax_j(feat, flow, z)[0, 3, 4, 0])
        np.testing.assert_allclose(v, math.tanh(dz / 2), atol=1e-6)  # (e^dz - 1) / (e^dz + 1)
        if prev is not None:
            assert v > prev or v == 1.0
        prev = v
    assert prev == 1.0
    # And the other way round: the background wins if it has the larger Z.
    z = np.zeros((1, H, W, 1), np.float32)
    z[0, 3, 4, 0] = 50.0
    assert float(softmax_j(feat, flow, z)[0, 3, 4, 0]) == -1.0


def test_gradients_match_finite_differences_float64():
    rng = np.random.default_rng(3)
    b, h, w, c = 1, 5, 6, 2
    feat = rng.normal(size=(b, h, w, c))
    # Generic flows (far from integers), some of them partly outside the image.
    flow = rng.uniform(-1.8, 1.8, size=(b, h, w, 2))
    flow = np.where(np.abs(flow - np.round(flow)) < 0.1, flow + 0.25, flow)
    z = rng.normal(size=(b, h, w, 1))
    proj = rng.normal(size=(b, h, w, c))
    with jax.enable_x64(True):
        args = [jnp.asarray(a, jnp.float64) for a in (feat, flow, z)]
        pj = jnp.asarray(proj, jnp.float64)
        losses = {
            "softmax": lambda f, fl, zz: jnp.sum(softmax_splat(f, fl, zz) * pj),
            "average": lambda f, fl, zz: jnp.sum(average_splat(f, fl) * pj),
            "sum": lambda f, fl, zz: jnp.sum(sum_splat(f, fl) * pj),
        }
        eps = 1e-6
        for name, loss in losses.items():
            loss = jax.jit(loss)
            grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(*args)
            assert all(g.dtype == jnp.float64 for g in grads)
            for k in range(3):
                g = np.asarray(grads[k])
                assert np.isfinite(g).all(), (name, k)
                a0 = np.asarray(args[k])
                fd = np.zeros_like(a0)
                it = np.nditer(a0, flags=["multi_index"])
                for _ in it:
                    idx = it.multi_index
                    ap, am = a0.copy(), a0.copy()
                    ap[idx] += eps
                    am[idx] -= eps
                    lp = loss(*[jnp.asarray(ap) if i == k else args[i] for i in range(3)])
                    lm = loss(*[jnp.asarray(am) if i == k else args[i] for i in range(3)])
                    fd[idx] = (float(lp) - float(lm)) / (2 * eps)
                np.testing.assert_allclose(g, fd, atol=1e-6, rtol=1e-5, err_msg=f"{name} arg{k}")
    assert jnp.ones(1).dtype == jnp.float32  # x64 did not leak


def test_gradients_finite_at_integer_flow_and_empty_targets():
    rng = np.random.default_rng(4)
    feat = rng.normal(size=(B, H, W, C)).astype(np.float32)
    flow = np.round(rng.normal(size=(B, H, W, 2)) * 2).astype(np.float32)  # integer flows
    z = rng.normal(size=(B, H, W, 1)).astype(np.float32) * 30
    for fn in (
        lambda f, fl, zz: softmax_splat(f, fl, zz),
        lambda f, fl, zz: average_splat(f, fl),
        lambda f, fl, zz: sum_splat(f, fl),
    ):
        g = jax.grad(lambda *a: jnp.sum(fn(*a) ** 2), argnums=(0, 1, 2))(feat, flow, z)
        assert all(np.isfinite(np.asarray(x)).all() for x in g)


def test_vmap_jit_and_bf16(inputs):
    feat, flow, z = inputs
    feats = np.stack([feat, feat[::-1]])
    flows = np.stack([flow, flow * 0.5])
    zs = np.stack([z, -z])
    out = jax.jit(jax.vmap(softmax_splat))(feats, flows, zs)
    for i in range(2):
        np.testing.assert_allclose(out[i], softmax_j(feats[i], flows[i], zs[i]), atol=1e-6)
    # bf16 features with float32 flow: output keeps the feature dtype, values close.
    fb = jnp.asarray(feat, jnp.bfloat16)
    for fn, args in ((softmax_j, (flow, z)), (average_j, (flow,)), (sum_j, (flow,))):
        o = fn(fb, *args)
        assert o.dtype == jnp.bfloat16
        ref = fn(jnp.asarray(fb, jnp.float32), *args)
        np.testing.assert_allclose(np.asarray(o, np.float32), ref, atol=3e-2, rtol=1e-2)


def test_bad_shapes_give_clear_errors():
    feat = np.zeros((B, H, W, C), np.float32)
    with pytest.raises(ValueError, match="flow must be"):
        softmax_splat(feat, np.zeros((B, H, W + 1, 2), np.float32), np.zeros((B, H, W, 1)))
    with pytest.raises(ValueError, match="z"):
        softmax_splat(feat, np.zeros((B, H, W, 2), np.float32), np.zeros((B, H, W, 2)))
    with pytest.raises(ValueError, match="feat must be"):
        sum_splat(feat[0], np.zeros((H, W, 2), np.float32))
