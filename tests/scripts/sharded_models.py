"""Run with 8 fake CPU devices: every model, with its parameters sharded over a (data=2, fsdp=2,
tensor=2) mesh by the logical-axis rules, runs under jit and matches the unsharded result.
Prints one JSON line per model: how many parameters are really split across devices."""

import json

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from gid_jax.config import load_config
from gid_jax.models.image_encoder import ImageEncoder
from gid_jax.models.renderer import Renderer
from gid_jax.models.unet import MotionDenoiser
from gid_jax.models.vae import MotionVAE
from gid_jax.parallel import create_mesh, tree_shardings

assert jax.device_count() == 8, jax.devices()
cfg = load_config("configs/models.py:tiny")
mesh = create_mesh({"data": 2, "fsdp": 2, "tensor": 2})
rng = np.random.default_rng(0)
B, H, W, K = 4, 32, 48, 4   # B divisible by the data x fsdp = 4 batch shards
image = jnp.asarray(rng.uniform(-1, 1, (B, H, W, 3)), jnp.float32)
slices = jnp.asarray(rng.normal(size=(B * K, H, W, 4)), jnp.float32)
latents = jnp.asarray(rng.normal(size=(B * K, H // 2, W // 2, 4)), jnp.float32)
flow = jnp.asarray(rng.normal(size=(B, H, W, 2)), jnp.float32)
weight = jnp.abs(flow[..., :1])
noise = jnp.asarray(rng.normal(size=(B, cfg.renderer.style_dim)), jnp.float32)
t = jnp.array([10, 500] * (B * K // 2))

cases = {
    "vae": (lambda r: MotionVAE.from_config(cfg.vae, rngs=r), lambda m, x: m(x)[0], (slices,)),
    "image_encoder": (lambda r: ImageEncoder.from_config(cfg, rngs=r), lambda m, x: m(x), (image,)),
    "denoiser_stage2": (lambda r: MotionDenoiser.from_config(cfg, frequency_attention=True, rngs=r),
                        lambda m, z, x: m(z, t, None, x), (latents, image)),
    "renderer": (lambda r: Renderer(cfg.renderer, rngs=r), lambda m, x, f, w, n: m(x, f, w, n),
                 (image, flow, weight, noise)),
}
batch = NamedSharding(mesh, PartitionSpec(("data", "fsdp")))
for name, (build, apply, inputs) in cases.items():
    graphdef, state = nnx.split(build(nnx.Rngs(0)))
    # perturb every parameter: zero-initialised layers (ADM-style outputs, frequency attention)
    # would otherwise make some outputs trivially zero and the comparison vacuous
    leaves, treedef = jax.tree.flatten(state)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    state = jax.tree.unflatten(treedef, [x + 0.02 * jax.random.normal(k, x.shape, x.dtype)
                                         for x, k in zip(leaves, keys)])
    expected = apply(nnx.merge(graphdef, state), *inputs)
    shardings = tree_shardings(state, mesh)
    state = jax.device_put(state, shardings)
    split = sum(1 for leaf in jax.tree.leaves(state)
                if leaf.addressable_shards[0].data.shape != leaf.shape)
    fn = jax.jit(lambda s, *xs: apply(nnx.merge(graphdef, s), *xs),
                 in_shardings=(shardings,) + (batch,) * len(inputs))
    out = fn(state, *(jax.device_put(x, batch) for x in inputs))
    err = float(jnp.max(jnp.abs(out - expected)))
    print(json.dumps({"model": name, "params": len(jax.tree.leaves(state)), "sharded": split,
                      "max_abs_diff": err, "output_scale": float(jnp.max(jnp.abs(expected)))}))
