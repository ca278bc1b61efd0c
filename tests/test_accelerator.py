"""Ready for accelerators, checked on CPU: the rule table as config data, the parallelism recipes on
8 fake devices, bf16 vs float32, remat, frequency attention kept local, AOT analysis, the
accelerator benchmark's smoke mode and the trainer's compile-time bookkeeping."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gid_jax.config import load_config
from gid_jax.parallel import (LOGICAL_AXIS_RULES, batch_axes, batch_spec, create_mesh, format_rules,
                              parse_rules, rules_from_config)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import train_step  # noqa: E402


def _fake_devices_env(n: int) -> dict:
    return dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}",
                JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))


def test_rule_table_is_config_data():
    c = load_config("configs/toy.py:tiny")
    assert parse_rules(c.mesh.rules) == LOGICAL_AXIS_RULES          # the full table, in the config
    assert parse_rules(format_rules()) == LOGICAL_AXIS_RULES
    c = load_config("configs/toy.py:tiny", ["--config.mesh.rules=batch=data,embed=,conv_out=fsdp+tensor"])
    rules = dict(rules_from_config(c.mesh))
    assert rules["batch"] == "data" and rules["embed"] is None and rules["conv_out"] == ("fsdp", "tensor")
    assert rules["mlp"] == "tensor"                                  # untouched entries keep the default
    assert batch_axes(rules_from_config(c.mesh)) == ("data",)
    assert batch_axes() == ("data", "fsdp")
    with pytest.raises(ValueError, match="unknown logical axis"):
        parse_rules("embd=fsdp")
    with pytest.raises(ValueError, match="not a mesh axis"):
        parse_rules("embed=pipeline")
    with pytest.raises(ValueError, match="name=axis"):
        parse_rules("embed")
    mesh = create_mesh({"data": -1})
    assert batch_spec(mesh, rules=(("batch", None),)) == jax.sharding.PartitionSpec(None)


def test_frequency_axis_stays_on_one_device():
    """K is never sharded: a table that shards 'freq' is refused, and both attentions (spatial
    and frequency) go through jax.nn.dot_product_attention."""
    assert dict(LOGICAL_AXIS_RULES)["freq"] is None
    for bad in ("freq=data", "freq=fsdp+tensor"):
        with pytest.raises(ValueError, match="'freq' must stay unsharded"):
            parse_rules(bad)
    from gid_jax.models import layers
    from gid_jax.models.unet import UNet

    calls = []
    real = jax.nn.dot_product_attention

    def counting(q, k, v, *a, **kw):
        calls.append(q.shape)
        return real(q, k, v, *a, **kw)

    unet = nnx.eval_shape(lambda: UNet(4, 16, 16, (1, 2), 1, (1,), 8, frequency_attention=True,
                                       freq_attention_heads=2, rngs=nnx.Rngs(0)))
    g, s = nnx.split(unet)
    k, b = 4, 2
    try:
        layers.jax.nn.dot_product_attention = counting
        jax.eval_shape(lambda s, z, f: nnx.merge(g, s)(z, jnp.zeros((b * k,)), None, f), s,
                       jax.ShapeDtypeStruct((b * k, 8, 8, 4), jnp.float32),
                       jax.ShapeDtypeStruct((b, 8, 8, 16), jnp.float32))
    finally:
        layers.jax.nn.dot_product_attention = real
    freq_calls = [sh for sh in calls if sh[1] == k]          # sequence length K: frequency attention
    spatial_calls = [sh for sh in calls if sh[1] != k]
    # frequency attention in every block (2 down + 4 up) and the middle one; spatial
    # attention at level 1 (1 down + 2 up blocks) and the middle block
    assert len(freq_calls) == 7 and len(spatial_calls) == 4, calls


def test_parallel_recipes_on_eight_devices():
    """docs/parallelism.md: data parallel, FSDP, FSDP + TP each run training steps on 8 fake
    devices with the shardings the rule table promises."""
    out = subprocess.run([sys.executable, str(REPO / "tests" / "scripts" / "parallel_recipes.py")],
                         capture_output=True, text=True, env=_fake_devices_env(8), timeout=1200, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = {r["case"]: r for r in map(json.loads, filter(None, out.stdout.splitlines()))}
    assert set(rows) == {"data_parallel", "fsdp", "fsdp_tp", "ldm_freq_attn_fsdp_tp"}
    for r in rows.values():
        assert r["rule_specs_match"], r                 # live arrays placed as the table says
        assert all(np.isfinite(r["losses"])), r
    dp, fsdp, tp = rows["data_parallel"], rows["fsdp"], rows["fsdp_tp"]
    assert dp["batch_spec"]["x"] == "('data',)" and dp["sharded_leaves"] == 0
    assert fsdp["batch_spec"]["x"] == "('fsdp',)"
    assert fsdp["param_specs"]["params/l1/kernel"] == "('fsdp',)"
    assert tp["param_specs"]["params/l1/kernel"] == "('fsdp', 'tensor')"
    assert tp["param_specs"]["params/l2/kernel"] == "('tensor', 'fsdp')"
    # the same function whatever the layout (toy task: float32 reduction order only)
    np.testing.assert_allclose(dp["losses"], fsdp["losses"], rtol=1e-5)
    np.testing.assert_allclose(dp["losses"], tp["losses"], rtol=1e-5)
    ldm = rows["ldm_freq_attn_fsdp_tp"]
    assert ldm["batch_spec"]["spectral_volume"] == "('fsdp',)"
    assert ldm["param_specs"]["rest/denoiser/unet/mid/res1/conv1/kernel"] == "(None, None, 'fsdp', 'tensor')"
    assert ldm["param_specs"]["params/denoiser/unet/mid/freq_attn/attn/qkv/kernel"] == "('fsdp', 'tensor')"


def _ldm_loss_and_grads(dtype: str):
    """One tiny LDM stage-1 loss + gradients at `dtype` compute, float32 weights perturbed away
    from the zero-initialised output layers (at init the U-Net outputs exactly 0 in any dtype)."""
    from gid_jax.train import get_task

    c = train_step.stage_config("ldm", "tiny", (), tempfile.mkdtemp())
    c.train.compute_dtype = dtype
    c.diffusion.cond_dropout = 0.0
    c.saliency_loss_weight = 0.0        # the paper's loss (see the bf16 test's docstring)
    task = get_task(c.task, c)
    model = task.create_model(c, nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, task.trainable, ...)
    keys = iter(jax.random.split(jax.random.key(1), len(jax.tree.leaves(params))))
    params = jax.tree.map(lambda p: p + 0.05 * jax.random.normal(next(keys), p.shape), params)
    batch = {k: jnp.asarray(v) for k, v in train_step.synthetic_batch("ldm", c, 4).items()}

    def loss(p):
        value, _ = task.loss_fn(nnx.merge(graphdef, p, rest), batch, jax.random.key(2))
        return value

    value, grads = jax.jit(jax.value_and_grad(loss))(params)
    assert value.dtype == jnp.float32
    assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads))   # float32 master weights
    return float(value), np.concatenate([np.ravel(g) for g in jax.tree.leaves(grads)])


def test_bf16_matches_float32_ldm_step():
    """bf16 rounds to 8 significant bits (unit roundoff u = 2^-9 ~ 0.2 %). Errors of independent
    roundings grow roughly like sqrt(#ops) through the ~20 layers of the tiny U-Net, so the
    float32 loss (a mean of squares, accumulated in float32) should agree to a few u (<= 1 %)
    and the gradient vector, a product of ~2x as many rounded factors, to a few percent in
    relative L2 norm (< 5 %, cosine > 0.995). Measured: loss 0.006 %, gradients 1.2 %.
    The paper's ε-loss only: with the tiny config's auxiliary saliency loss on, the image encoder's
    gradients differ by ~30 % in bf16 (measured), one reason the tiny configs stay float32."""
    l32, g32 = _ldm_loss_and_grads("float32")
    l16, g16 = _ldm_loss_and_grads("bfloat16")
    assert abs(l16 - l32) <= 1e-2 * abs(l32), (l16, l32)
    rel = np.linalg.norm(g16 - g32) / np.linalg.norm(g32)
    cos = float(g16 @ g32 / (np.linalg.norm(g16) * np.linalg.norm(g32)))
    assert rel < 5e-2 and cos > 0.995, (rel, cos)


def test_remat_changes_memory_not_the_function():
    from gid_jax.models.unet import UNet

    z = jax.random.normal(jax.random.key(0), (4, 8, 8, 4))
    f = jax.random.normal(jax.random.key(1), (2, 8, 8, 16))
    results = {}
    for remat in ("none", "full", "convs_saveable"):
        unet = UNet(4, 16, 8, (1, 2), 1, (1,), 8, frequency_attention=True, freq_attention_heads=2,
                    remat=remat, rngs=nnx.Rngs(0))
        g, p = nnx.split(unet)
        p = jax.tree.map(lambda x: x + 0.05, p)

        def loss(p):
            return jnp.mean(nnx.merge(g, p)(z, jnp.array([1, 2, 3, 4]), None, f) ** 2)

        results[remat] = jax.jit(jax.value_and_grad(loss))(p)
    for remat in ("full", "convs_saveable"):
        np.testing.assert_allclose(results[remat][0], results["none"][0], rtol=1e-6)
        for a, b in zip(jax.tree.leaves(results[remat][1]), jax.tree.leaves(results["none"][1])):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
    with pytest.raises(ValueError, match="model.remat"):
        UNet(4, 16, 8, (1, 2), 1, (1,), 8, remat="some", rngs=nnx.Rngs(0))


def _remat_matches_none(build, loss_of):
    """Loss and gradients of ``build(remat)`` under "full" and "convs_saveable" against "none".

    Remat only changes what the backward pass keeps, so results agree to float32 reassociation
    noise: loss rtol 1e-6, gradients rtol 1e-4 / atol 1e-7 (the U-Net test's tolerances). What it
    keeps is checked on the traced residuals (the leaves of ``jax.vjp``'s backward function):
    XLA:CPU merges recomputation back into the forward pass, so CPU ``memory_analysis()`` can't."""
    results, kept = {}, {}
    for remat in ("none", "full", "convs_saveable"):
        g, p = nnx.split(build(remat))
        fn = lambda p: loss_of(nnx.merge(g, p))  # noqa: E731
        results[remat] = jax.jit(jax.value_and_grad(fn))(p)
        backward = jax.eval_shape(lambda p: jax.vjp(fn, p)[1], p)
        kept[remat] = sum(r.size * r.dtype.itemsize for r in jax.tree.leaves(backward))
    assert kept["full"] < kept["convs_saveable"] < kept["none"], kept
    for remat in ("full", "convs_saveable"):
        np.testing.assert_allclose(results[remat][0], results["none"][0], rtol=1e-6)
        for a, b in zip(jax.tree.leaves(results[remat][1]), jax.tree.leaves(results["none"][1])):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)


def test_vae_remat_changes_memory_not_the_function():
    from gid_jax.models.vae import MotionVAE, vae_loss

    cfg = load_config("configs/vae.py:tiny").model.vae
    assert cfg.remat == "none"                                       # default: unchanged behaviour
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 4))

    def build(remat):
        cfg.remat = remat
        return MotionVAE.from_config(cfg, rngs=nnx.Rngs(0))

    def loss_of(vae):
        recon, mean, logvar = vae(x, key=jax.random.key(1))
        return vae_loss(recon, x, mean, logvar, gradient_scales=2)[0]

    _remat_matches_none(build, loss_of)
    cfg.remat = "some"
    with pytest.raises(ValueError, match=r"^model\.vae\.remat must be one of .*'some'"):
        MotionVAE.from_config(cfg, rngs=nnx.Rngs(0))


def test_renderer_remat_changes_memory_not_the_function():
    from gid_jax.models.renderer import Renderer

    cfg = load_config("configs/renderer.py:tiny").model.renderer
    assert cfg.remat == "none"
    k = jax.random.split(jax.random.key(0), 4)
    image = jax.random.uniform(k[0], (2, 8, 12, 3), minval=-1.0, maxval=1.0)
    flow = 2.0 * jax.random.normal(k[1], (2, 8, 12, 2))
    weight = jnp.linalg.norm(flow, axis=-1, keepdims=True)
    noise = jax.random.normal(k[2], (2, cfg.style_dim))
    target = jax.random.uniform(k[3], (2, 8, 12, 3), minval=-1.0, maxval=1.0)

    def build(remat):
        cfg.remat = remat
        r = Renderer(cfg, rngs=nnx.Rngs(0))
        # toRGB starts at zero, which would leave most of the decoder without gradient
        for blk in r.decoder:
            kernel = blk.to_rgb.kernel
            kernel[...] = 0.1 * jax.random.normal(jax.random.key(5), kernel.shape)
        return r

    _remat_matches_none(build, lambda r: jnp.mean(jnp.abs(r(image, flow, weight, noise) - target)))
    cfg.remat = "convs"
    with pytest.raises(ValueError, match=r"^model\.renderer\.remat must be one of .*'convs'"):
        Renderer(cfg, rngs=nnx.Rngs(0))


def test_analyze_compiles_without_running():
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "train_step.py"), "--analyze",
                          "--devices", "2", "--mesh", "data=-1", "--variant", "tiny",
                          "--stages", "ldm_freq_attn"], capture_output=True, text=True,
                         env=_fake_devices_env(2), timeout=900, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.splitlines()[-1])
    (stage,) = result["stages"]
    assert result["num_devices"] == 2 and stage["stage"] == "ldm_freq_attn"
    p1, p2 = stage["points"]
    assert p2["per_device_batch"] == 2 * p1["per_device_batch"]
    assert p2["flops_per_step_per_device"] > 1.5 * p1["flops_per_step_per_device"] > 0
    assert p2["bytes_per_device"]["total"] > p1["bytes_per_device"]["total"] > 0
    fit = stage["max_per_device_batch"]
    assert fit["tpu_v5p_95gb"] >= fit["h100_80gb"] > 0
    assert (stage["remat_field"], stage["remat"]) == ("model.remat", "none")
    # Independent of the compiler: the EMA is one copy of the weights, Adam two (mu, nu) plus
    # its step counters, and data parallelism replicates all of it.
    state = stage["state_bytes"]
    params = state["params"]["global"]
    assert state["ema"]["global"] == params > 0
    assert 2 * params <= state["opt_state"]["global"] < 2 * params + 1024
    assert all(v["per_device"] == v["global"] for v in state.values())


def test_accelerator_smoke_tiny():
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "accelerator.py"), "--tiny",
                          "--stages", "ldm_freq_attn", "--steps", "2", "--ddim-steps", "20",
                          "--frames", "8", "--budget-seconds", "600"],
                         capture_output=True, text=True, env=_fake_devices_env(1), timeout=900, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout.splitlines()[-1])
    assert r["device"] and "h100" in " ".join(r["peak_bf16_flops"]).lower()
    (stage,) = r["train"]
    assert stage["stage"] == "ldm_freq_attn" and stage["step_seconds"] > 0 and stage["mfu"] is None
    assert set(r["sampling"]) == {"ddim", "default"} and r["sampling"]["ddim"]["steps"] == 20
    assert r["sampling"]["default"]["seconds_per_spectral_volume"] > 0
    assert r["rendering"]["frames_per_sec"] > 0


def test_trainer_logs_compile_and_excludes_first_step(tmp_path, caplog):
    import logging

    from gid_jax.train import train
    from gid_jax.train.metrics import read_metrics
    from gid_jax.train.toy import make_toy_task, toy_train_config
    from gid_jax.train.trainer import enable_compilation_cache

    c = toy_train_config(num_steps=4, log_every=1, batch_size=8)
    c.checkpoint.update(every_steps=100, keep_best=0)
    with caplog.at_level(logging.INFO, logger="gid_jax.train.trainer"):
        train(make_toy_task(c), c, tmp_path)
    assert sum("AOT compile of the train step" in r.getMessage() for r in caplog.records) == 1
    m = read_metrics(tmp_path)
    assert "perf/steps_per_sec" not in m[1] and m[1]["perf/first_step_seconds"] > 0
    assert m[1]["perf/compile_seconds"] > 0 and "perf/compile_seconds" not in m[2]
    assert m[4]["perf/steps_per_sec"] > 0
    # the environment's cache directory (tests/conftest.py sets one) wins over the config field
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        assert enable_compilation_cache("/elsewhere") == jax.config.jax_compilation_cache_dir
