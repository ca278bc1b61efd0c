"""Motion VAE, denoising U-Net (+ frequency attention), image encoder, sharding annotations.

Tiny configs; every model is built once and each jitted function compiled once per module
(fixtures below); paper configs only through ``nnx.eval_shape`` / ``jax.eval_shape``.
"""

import importlib.util
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

ROOT = Path(__file__).resolve().parents[1]


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


models_cfg = _load("models_config", ROOT / "gid_jax" / "configs" / "models.py")
model_sizes = _load("model_sizes_bench", ROOT / "benchmarks" / "model_sizes.py")

from gid_jax.models import sharding  # noqa: E402
from gid_jax.models.image_encoder import ImageEncoder  # noqa: E402
from gid_jax.models.layers import ResBlock  # noqa: E402
from gid_jax.models.unet import (FREQ_ATTN, MotionDenoiser, UNet, frozen_filter,  # noqa: E402
                                 load_stage1, trainable_filter)
from gid_jax.models.vae import LatentStats, MotionVAE, vae_loss  # noqa: E402
from gid_jax.models.vae import gradient_loss as _gradient_loss  # noqa: E402
from gid_jax.models.vae import kl_loss as _kl_loss  # noqa: E402

_vae_loss = vae_loss

CFG = models_cfg.get_config("tiny")
H, W = CFG.image_size
K = CFG.num_freqs
B = 2
F = 2 ** (len(CFG.vae.channel_multipliers) - 1)
h, w = H // F, W // F


def _rngs(seed):
    # 'rbg' keys: far fewer small XLA compiles for eager parameter initialisation on CPU
    return nnx.Rngs(jax.random.key(seed, impl="rbg"))


def _paths(state):
    return {p for p, _ in nnx.to_flat_state(state)}


def _perturb_zero_params(model, seed, exclude_freq_attn=False):
    """Fill every all-zero parameter (zero-init convs/projections, biases) with small noise."""
    state = nnx.state(model, nnx.Param)
    flat = []
    for i, (path, var) in enumerate(nnx.to_flat_state(state)):
        v = np.asarray(var.get_value())
        if not np.any(v) and not (exclude_freq_attn and FREQ_ATTN in path):
            rng = np.random.default_rng(seed + i)
            var = var.replace(jnp.asarray(0.05 * rng.standard_normal(v.shape), jnp.float32))
        flat.append((path, var))
    nnx.update(model, nnx.from_flat_state(flat))


# ------------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def inputs():
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    return dict(
        x=jax.random.normal(k1, (B, H, W, 4)),
        z=jax.random.normal(k2, (B * K, h, w, 4)),
        image=jax.random.uniform(k3, (B, H, W, 3), minval=-1.0, maxval=1.0),
        t=jnp.array([10, 500]),                       # per image, repeated over K inside
    )


@pytest.fixture(scope="module")
def models():
    """Tiny VAE; stage-1 denoiser with 'trained-like' (zero-inits perturbed) weights; stage-2
    denoiser holding those stage-1 weights (frequency attention at its zero initialisation)."""
    vae = MotionVAE.from_config(CFG.vae, rngs=_rngs(0))
    d1 = MotionDenoiser.from_config(CFG, rngs=_rngs(1))
    _perturb_zero_params(d1, 100)
    d2 = MotionDenoiser.from_config(CFG, frequency_attention=True, rngs=_rngs(2))
    load_stage1(d2, d1)
    return dict(vae=vae, d1=d1, d2=d2)


def _denoiser_fwd(graphdef):
    @jax.jit
    def fwd(state, z, t, image, drop):
        return nnx.merge(graphdef, state)(z, t, None, image, drop_image=drop)
    return fwd


@pytest.fixture(scope="module")
def fns(models):
    vae_g, _ = nnx.split(models["vae"])

    def vae_objective(state, x, key):
        recon, mean, logvar = nnx.merge(vae_g, state)(x, key)
        loss, terms = vae_loss(recon, x, mean, logvar, gradient_scales=CFG.vae.gradient_scales)
        return loss, (recon, mean, logvar)

    g1, _ = nnx.split(models["d1"])
    g2, _ = nnx.split(models["d2"])

    def den_objective(state, z, t, image):
        eps = nnx.merge(g2, state)(z, t, None, image)
        return jnp.mean(jnp.square(eps - 0.3 * z)), eps

    return dict(
        vae_grad=jax.jit(jax.value_and_grad(vae_objective, has_aux=True)),
        fwd1=_denoiser_fwd(g1),
        fwd2=_denoiser_fwd(g2),
        grad2=jax.jit(jax.value_and_grad(den_objective, has_aux=True)),
    )


# ----------------------------------------------------------------------------------------- VAE

def test_vae_shapes_losses_and_gradients(models, fns, inputs):
    vae = models["vae"]
    assert vae.downsample_factor == F
    (loss, (recon, mean, logvar)), grads = fns["vae_grad"](nnx.state(vae), inputs["x"],
                                                            jax.random.key(1))
    assert recon.shape == (B, H, W, 4) and recon.dtype == jnp.float32
    assert mean.shape == logvar.shape == (B, h, w, CFG.vae.latent_channels)
    assert np.isfinite(float(loss))
    for path, g in nnx.to_flat_state(nnx.state(grads, nnx.Param)):
        assert np.any(np.asarray(g.get_value()) != 0), f"zero gradient for VAE param {path}"


def _np_gradient_loss(r, scales):
    total = 0.0
    for s in range(scales):
        f = 2 ** s
        n, hh, ww, c = r.shape
        rs = np.zeros((n, hh // f, ww // f, c))
        for i in range(hh // f):
            for j in range(ww // f):
                rs[:, i, j] = r[:, i * f:(i + 1) * f, j * f:(j + 1) * f].mean(axis=(1, 2))
        gx = np.abs(np.diff(rs, axis=2)).mean()
        gy = np.abs(np.diff(rs, axis=1)).mean()
        total += gx + gy
    return total


def test_vae_loss_functions_against_numpy():
    gradient_loss = jax.jit(_gradient_loss, static_argnums=2)
    kl_loss, vae_loss = jax.jit(_kl_loss), jax.jit(_vae_loss)
    rng = np.random.default_rng(0)
    pred = rng.standard_normal((2, 16, 24, 3))
    target = rng.standard_normal((2, 16, 24, 3))
    ref = _np_gradient_loss(pred - target, 4)
    got = gradient_loss(jnp.asarray(pred, jnp.float32), jnp.asarray(target, jnp.float32), 4)
    np.testing.assert_allclose(float(got), ref, rtol=1e-5)
    # a known array: a ramp of slope 1 along x has |dx| = 2**s at scale s (pooling keeps the ramp)
    ramp = np.broadcast_to(np.arange(16.0)[None, None, :, None], (1, 8, 16, 1))
    got = gradient_loss(jnp.asarray(ramp, jnp.float32), jnp.zeros((1, 8, 16, 1)), 3)
    np.testing.assert_allclose(float(got), 1 + 2 + 4, rtol=1e-6)
    # KL of N(mu, sigma^2) against N(0, 1), closed form; summed over elements, mean over batch
    mu = rng.standard_normal((3, 4, 5, 4))
    logvar = 0.5 * rng.standard_normal((3, 4, 5, 4))
    sigma = np.exp(0.5 * logvar)
    kl_ref = np.sum(np.log(1 / sigma) + (sigma ** 2 + mu ** 2) / 2 - 0.5) / 3
    np.testing.assert_allclose(float(kl_loss(jnp.asarray(mu), jnp.asarray(logvar))), kl_ref,
                               rtol=1e-5)
    total, terms = vae_loss(jnp.asarray(pred), jnp.asarray(target), jnp.asarray(mu),
                            jnp.asarray(logvar))
    l1_ref = np.abs(pred - target).mean()
    np.testing.assert_allclose(float(terms["l1"]), l1_ref, rtol=1e-5)
    # The LDM objective (sums of L1 and KL over an example's elements) divided by the element
    # count E = 16*24*3: the KL enters as its per-example sum over E, not as the raw sum.
    elements = 16 * 24 * 3
    np.testing.assert_allclose(float(total), l1_ref + 0.2 * _np_gradient_loss(pred - target, 4)
                               + 1e-6 * kl_ref / elements, rtol=1e-5)
    ldm_objective = np.abs(pred - target).sum() / 2 + 1e-6 * kl_ref
    total_no_grad, _ = _vae_loss(jnp.asarray(pred), jnp.asarray(target), jnp.asarray(mu),
                                 jnp.asarray(logvar), gradient_weight=0.0)
    np.testing.assert_allclose(float(total_no_grad) * elements, ldm_objective, rtol=1e-5)


def test_latent_whitening_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    lat = rng.normal([1.0, -2.0, 0.5, 3.0], [0.5, 2.0, 1.0, 0.1], size=(6, 5, 7, 4))
    stats = LatentStats(4)
    for chunk in np.array_split(lat, 4):          # streaming == one pass
        stats.update(chunk)
    flat = lat.reshape(-1, 4)
    np.testing.assert_allclose(stats.mean, flat.mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats.std, flat.std(0), rtol=1e-5)
    zw = np.asarray(stats.whiten(jnp.asarray(lat, jnp.float32)))
    np.testing.assert_allclose(zw.reshape(-1, 4).mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(zw.reshape(-1, 4).std(0), 1, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(stats.unwhiten(jnp.asarray(zw))), lat, rtol=1e-5,
                               atol=1e-5)
    stats.save(str(tmp_path / "latent_stats.json"))
    loaded = LatentStats.load(str(tmp_path / "latent_stats.json"))
    assert loaded.count == stats.count
    np.testing.assert_array_equal(loaded.mean, stats.mean)
    np.testing.assert_array_equal(loaded.std, stats.std)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        LatentStats.load(str(tmp_path / "missing.json"))


# ------------------------------------------------------------------------- U-Net and encoder

def test_denoiser_shapes_and_errors(models, fns, inputs):
    d1 = models["d1"]
    eps = fns["fwd1"](nnx.state(d1), inputs["z"], inputs["t"], inputs["image"], None)
    assert eps.shape == (B * K, h, w, 4) and eps.dtype == jnp.float32
    assert np.all(np.isfinite(np.asarray(eps)))
    with pytest.raises(ValueError, match="image_features"):
        d1.unet(inputs["z"], inputs["t"], None, jnp.zeros((B, h + 1, w, 16)))
    with pytest.raises(ValueError, match="not a multiple"):
        d1.unet(inputs["z"][:-1], 3, None, jnp.zeros((B, h, w, 16)))
    # drop_image = zero features (the CFG null condition)
    drop = jnp.array([True, False])
    eps_drop = fns["fwd1"](nnx.state(d1), inputs["z"], inputs["t"], inputs["image"], drop)
    np.testing.assert_array_equal(np.asarray(eps_drop[K:]), np.asarray(eps[K:]))
    assert not np.allclose(np.asarray(eps_drop[:K]), np.asarray(eps[:K]))


def test_stage2_with_stage1_weights_is_exactly_stage1(models, fns, inputs):
    args = (inputs["z"], inputs["t"], inputs["image"], None)
    e1 = fns["fwd1"](nnx.state(models["d1"]), *args)
    e2 = fns["fwd2"](nnx.state(models["d2"]), *args)
    assert np.any(np.asarray(e1) != 0)
    np.testing.assert_array_equal(np.asarray(e1), np.asarray(e2))


def test_frequency_attention_mixes_across_k_only_in_stage2(models, fns, inputs):
    d2 = nnx.clone(models["d2"])
    _perturb_zero_params(d2, 7)                # frequency-attention output projections != 0
    z2 = inputs["z"].at[0].add(1.0)             # change slice k=0 of image 0 only
    for name, state in (("fwd1", nnx.state(models["d1"])), ("fwd2", nnx.state(d2))):
        a = np.asarray(fns[name](state, inputs["z"], inputs["t"], inputs["image"], None))
        b = np.asarray(fns[name](state, z2, inputs["t"], inputs["image"], None))
        assert not np.allclose(a[0], b[0])
        np.testing.assert_array_equal(a[K:], b[K:])   # the other image is never affected
        other_slices_changed = np.abs(a[1:K] - b[1:K]).max(axis=(1, 2, 3))
        if name == "fwd1":
            assert np.all(other_slices_changed == 0)
        else:
            assert np.all(other_slices_changed > 1e-6), other_slices_changed


def test_gradients_reach_every_parameter(models, fns, inputs):
    args = (inputs["z"], inputs["t"], inputs["image"])
    # at the stage-2 start: the zero-init frequency-attention output projections get gradients,
    # their q/k/v (behind the zero projection) get none, all stage-1 parameters do
    _, grads = fns["grad2"](nnx.state(models["d2"]), *args)
    for path, g in nnx.to_flat_state(nnx.state(grads, nnx.Param)):
        nonzero = np.any(np.asarray(g.get_value()) != 0)
        if FREQ_ATTN in path and "qkv" in path:
            assert not nonzero, path
        elif FREQ_ATTN in path and "norm" in path:
            pass                                   # also behind the zero projection
        else:
            assert nonzero, f"zero gradient for {path}"
    # once every zero-init is perturbed, every parameter receives a gradient
    d2 = nnx.clone(models["d2"])
    _perturb_zero_params(d2, 11)
    _, grads = fns["grad2"](nnx.state(d2), *args)
    zero = [p for p, g in nnx.to_flat_state(nnx.state(grads, nnx.Param))
            if not np.any(np.asarray(g.get_value()) != 0)]
    assert not zero, zero


def test_stage_filters_and_frozen_optimizer(models, fns, inputs):
    d1, d2 = models["d1"], models["d2"]
    stage1_paths = _paths(nnx.state(d1, nnx.Param))
    assert _paths(nnx.state(d2, frozen_filter(2))) == stage1_paths
    new = _paths(nnx.state(d2, trainable_filter(2)))
    assert new and all(FREQ_ATTN in p for p in new)
    assert new | stage1_paths == _paths(nnx.state(d2, nnx.Param)) and not new & stage1_paths
    assert _paths(nnx.state(d1, trainable_filter(1))) == stage1_paths
    # an optimizer restricted to the stage-2 filter changes only frequency attention
    model = nnx.clone(d2)
    opt = nnx.Optimizer(model, optax.sgd(0.1), wrt=trainable_filter(2))
    _, grads = fns["grad2"](nnx.state(model), inputs["z"], inputs["t"], inputs["image"])
    before = {p: np.asarray(v.get_value()) for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    opt.update(model, nnx.state(grads, trainable_filter(2)))
    for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        changed = not np.array_equal(before[p], np.asarray(v.get_value()))
        if p in stage1_paths:
            assert not changed, p
    assert any(not np.array_equal(before[p], np.asarray(v.get_value()))
               for p, v in nnx.to_flat_state(nnx.state(model, trainable_filter(2))))


def test_bfloat16_compute_with_float32_params(models, inputs):
    # same parameter tree, bf16 compute: abstract bf16 modules merged with the float32 states
    g2, _ = nnx.split(nnx.eval_shape(lambda: MotionDenoiser.from_config(
        CFG, frequency_attention=True, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))))
    d2 = nnx.merge(g2, nnx.state(models["d2"]))
    gv, _ = nnx.split(nnx.eval_shape(lambda: MotionVAE.from_config(
        CFG.vae, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))))
    vae = nnx.merge(gv, nnx.state(models["vae"]))
    for m in (d2, vae):
        dtypes = {v.get_value().dtype for _, v in nnx.to_flat_state(nnx.state(m, nnx.Param))}
        assert dtypes == {jnp.dtype(jnp.float32)}
    g, s = nnx.split(d2)
    eps = jax.jit(lambda s, z, t, im: nnx.merge(g, s)(z, t, None, im))(
        s, inputs["z"], inputs["t"], inputs["image"])
    assert eps.dtype == jnp.float32 and np.all(np.isfinite(np.asarray(eps)))
    assert np.abs(np.asarray(eps)).max() > 0
    gv, sv = nnx.split(vae)
    recon, mean, _ = jax.jit(lambda s, x: nnx.merge(gv, s)(x))(sv, inputs["x"])
    assert recon.dtype == jnp.float32 and np.all(np.isfinite(np.asarray(recon)))
    assert mean.shape == (B, h, w, 4)
    # conv activations really run in bfloat16
    hidden = jax.eval_shape(lambda s, x: nnx.merge(gv, s).encoder.conv_in(x), sv, inputs["x"])
    assert hidden.dtype == jnp.bfloat16


# --------------------------------------------------------------------- paper configs, abstract

def test_paper_shapes_without_allocating():
    cfg = models_cfg.get_config("paper")
    (Hp, Wp), Kp = cfg.image_size, cfg.num_freqs
    vae = nnx.eval_shape(lambda: MotionVAE.from_config(cfg.vae, rngs=nnx.Rngs(0)))
    den = nnx.eval_shape(lambda: MotionDenoiser.from_config(cfg, frequency_attention=True,
                                                            rngs=nnx.Rngs(0)))
    assert vae.downsample_factor == 4
    for m in (vae, den):
        for _, v in nnx.to_flat_state(nnx.state(m, nnx.Param)):
            assert isinstance(v.get_value(), jax.ShapeDtypeStruct)
            assert v.get_value().dtype == jnp.float32
    gv, sv = nnx.split(vae)
    mean, logvar = jax.eval_shape(lambda s, x: nnx.merge(gv, s).encode(x), sv,
                                  jax.ShapeDtypeStruct((1, Hp, Wp, 4), jnp.float32))
    assert mean.shape == (1, 40, 64, 4)
    gd, sd = nnx.split(den)
    eps = jax.eval_shape(lambda s, z, im: nnx.merge(gd, s)(z, jnp.zeros((1,)), None, im), sd,
                         jax.ShapeDtypeStruct((Kp, 40, 64, 4), jnp.float32),
                         jax.ShapeDtypeStruct((1, Hp, Wp, 3), jnp.float32))
    assert eps.shape == (16, 40, 64, 4) and eps.dtype == jnp.float32


def test_unet_matches_analytic_ldm_count():
    """Our stage-1 U-Net = the LDM openaimodel U-Net + the frequency-embedding MLP, exactly;
    the paper-size one is within 15 % of the LDM reference."""
    for variant in ("tiny", "paper"):
        cfg = models_cfg.get_config(variant)
        unet = nnx.eval_shape(lambda: UNet.from_config(cfg.unet, rngs=nnx.Rngs(0)))
        n = model_sizes.count_params(unet)
        n_freq_embed = model_sizes.count_params(unet.freq_embed)
        n_spatial = sum(int(np.prod(v.shape)) for path, v in nnx.to_flat_state(nnx.state(unet, nnx.Param))
                        if "spatial_proj" in path)   # the "every_block" image conditioning
        assert (n_spatial > 0) == (cfg.unet.image_conditioning == "every_block")
        ref = model_sizes.ldm_reference_for(cfg.unet)
        assert n - n_freq_embed - n_spatial == ref, (variant, n, n_freq_embed, ref)
        assert abs(n / ref - 1) < 0.15
    assert 2e8 < ref < 3e8                          # paper: ~241.5 M


def test_every_block_image_conditioning():
    """``every_block`` only adds a 1x1 `spatial_proj` to each ResBlock ("input" = the paper's model,
    same paths otherwise), and the image then reaches the output even with the input-concat
    weights of the features zeroed; the pooling is numpy's block mean."""
    from gid_jax.models.unet import _pool

    cfg = models_cfg.get_config("tiny").unet
    built = {}
    for mode in ("input", "every_block"):
        c = cfg.copy_and_resolve_references()
        c.image_conditioning = mode
        built[mode] = UNet.from_config(c, rngs=_rngs(3))
    paths = {m: _paths(nnx.state(u, nnx.Param)) for m, u in built.items()}
    extra = paths["every_block"] - paths["input"]
    assert paths["input"] < paths["every_block"] and all("spatial_proj" in p for p in extra)
    n_res = sum(isinstance(m, ResBlock) for _, m in built["every_block"].iter_modules())
    assert len(extra) == 2 * n_res                       # kernel + bias in every ResBlock
    with pytest.raises(ValueError, match="image_conditioning"):
        UNet(image_conditioning="everywhere", rngs=_rngs(0))

    unet = built["every_block"]
    _perturb_zero_params(unet, 7)
    kernel = unet.conv_in.kernel.get_value()
    unet.conv_in.kernel.set_value(kernel.at[:, :, cfg.latent_channels:, :].set(0.0))
    z = jax.random.normal(jax.random.key(1), (B * K, h, w, 4))
    feats = jax.random.normal(jax.random.key(2), (B, h, w, cfg.image_feature_channels))
    out = unet(z, jnp.array([10, 500]), None, feats)
    out_null = unet(z, jnp.array([10, 500]), None, jnp.zeros_like(feats))
    assert float(jnp.max(jnp.abs(out - out_null))) > 1e-3

    x = np.random.default_rng(0).standard_normal((2, 8, 12, 3)).astype(np.float32)
    np.testing.assert_allclose(_pool(jnp.asarray(x), 4), x.reshape(2, 2, 4, 3, 4, 3).mean((2, 4)),
                               rtol=1e-6, atol=1e-6)


def test_image_encoder_downsamples_to_latent_resolution():
    enc = nnx.eval_shape(lambda: ImageEncoder.from_config(CFG, rngs=nnx.Rngs(0)))
    g, s = nnx.split(enc)
    out = jax.eval_shape(lambda s, x: nnx.merge(g, s)(x), s,
                         jax.ShapeDtypeStruct((3, H, W, 3), jnp.float32))
    assert out.shape == (3, h, w, CFG.image_encoder.out_channels)


def test_logical_axis_annotations():
    cfg = models_cfg.get_config("paper")
    den = nnx.eval_shape(lambda: MotionDenoiser.from_config(cfg, frequency_attention=True,
                                                            rngs=nnx.Rngs(0)))
    vae = nnx.eval_shape(lambda: MotionVAE.from_config(cfg.vae, rngs=nnx.Rngs(0)))
    known = {name for name, _ in sharding.LOGICAL_AXIS_RULES}
    for m in (den, vae):
        for path, v in nnx.to_flat_state(nnx.state(m, nnx.Param)):
            names = v.get_metadata().get("out_sharding")
            assert names is not None and len(names) == len(v.get_value().shape), path
            assert set(names) - {None} <= known, (path, names)
            if path[-1] == "kernel" and math.prod(v.get_value().shape) >= 2 ** 16:
                assert sum(n is not None for n in names) == 2, (path, names)
    mid = den.unet.mid.res1.conv1.kernel
    assert mid.get_metadata()["out_sharding"] == (None, None, "conv_in", "conv_out")
    mesh = jax.sharding.AbstractMesh((1, 8, 2), ("data", "fsdp", "tensor"))
    specs = nnx.to_flat_state(sharding.tree_specs(nnx.state(den, nnx.Param), mesh))
    specs = dict(specs)
    P = jax.sharding.PartitionSpec
    assert specs[("unet", "mid", "res1", "conv1", "kernel")] == P(None, None, "fsdp", "tensor")
    # 20 input channels are not divisible by fsdp=8: replicated on that dimension
    assert specs[("unet", "conv_in", "kernel")] == P(None, None, None, "tensor")
