"""Parameter counts and forward activation memory of every motion model, tiny and paper configs.

    python benchmarks/model_sizes.py [--variants tiny,paper] [--markdown docs/model_sizes.md]

Prints one JSON object, then a Markdown table (also written to ``--markdown``).

* Parameter counts come from ``nnx.eval_shape`` (the paper models are never allocated).
* Activation memory is XLA's ``temp_size_in_bytes`` from ``compile().memory_analysis()`` of a jitted
  float32 **inference forward pass** compiled for the CPU backend at batch 1 (parameters and inputs
  are arguments, so they are not included; the number is the scratch XLA plans for intermediates,
  which on CPU reuses buffers aggressively — a lower bound for training, where activations are kept
  for the backward pass). Units: VAE = one frequency slice (encode + decode); image encoder = one
  image; U-Net = one image's K slices (B=1, B*K=K), stage 1 and stage 2.
* Reference: :func:`ldm_unet_param_count` counts, analytically from the architecture description,
  the parameters of the original LDM ``openaimodel`` U-Net (ADM ResBlocks without scale-shift norm,
  conv resampling, attention blocks = GroupNorm + 1x1 qkv conv + 1x1 proj, time embedding MLP
  C -> 4C -> 4C, zero output conv) for the paper's settings: model_channels 128, channel_mult
  (1, 4, 8), num_res_blocks 2, in 20 / out 4 channels, num_head_channels 32. The paper's "attention
  resolutions 32, 16, 8" read the ADM way against the 64-wide latent are downsampling factors
  ds = 64/32, 64/16, 64/8 = 2, 4, 8, i.e. levels 1 and 2 (ds 8 does not exist with 3 levels) plus
  the middle block — our config's ``attention_levels``. The count with attention at every level
  (ds 1, 2, 4) is printed too; the two differ by < 0.3 %.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from gid_jax.configs.models import get_config  # noqa: E402
from gid_jax.models.image_encoder import ImageEncoder  # noqa: E402
from gid_jax.models.unet import FREQ_ATTN, UNet  # noqa: E402
from gid_jax.models.vae import MotionVAE  # noqa: E402


# ------------------------------------------------------------------ analytic LDM reference count

def ldm_unet_param_count(in_channels=20, out_channels=4, model_channels=128,
                         channel_mult=(1, 4, 8), num_res_blocks=2, attention_ds=(2, 4),
                         use_scale_shift_norm=False):
    """Parameters of the LDM ``openaimodel.UNetModel`` (no class/context conditioning).

    Written from the architecture description: ResBlock = GN(in) + conv3(in,out) + Linear(emb,
    out or 2*out) + GN(out) + conv3(out,out) + conv1(in,out) if in != out; AttentionBlock =
    GN(c) + conv1(c,3c) + conv1(c,c); Downsample/Upsample = conv3(c,c); middle = Res, Attn, Res.
    Head count does not change the count.
    """
    def conv(cin, cout, k):
        return k * k * cin * cout + cout

    def lin(cin, cout):
        return cin * cout + cout

    def gn(c):
        return 2 * c

    emb = 4 * model_channels

    def res(cin, cout):
        n = gn(cin) + conv(cin, cout, 3) + lin(emb, (2 if use_scale_shift_norm else 1) * cout)
        n += gn(cout) + conv(cout, cout, 3)
        return n + (conv(cin, cout, 1) if cin != cout else 0)

    def attn(c):
        return gn(c) + conv(c, 3 * c, 1) + conv(c, c, 1)

    total = lin(model_channels, emb) + lin(emb, emb)           # time_embed
    total += conv(in_channels, model_channels, 3)              # input_blocks[0]
    ch, chans, ds = model_channels, [model_channels], 1
    for level, mult in enumerate(channel_mult):
        for _ in range(num_res_blocks):
            total += res(ch, mult * model_channels)
            ch = mult * model_channels
            if ds in attention_ds:
                total += attn(ch)
            chans.append(ch)
        if level != len(channel_mult) - 1:
            total += conv(ch, ch, 3)                           # Downsample
            chans.append(ch)
            ds *= 2
    total += res(ch, ch) + attn(ch) + res(ch, ch)              # middle_block
    for level, mult in list(enumerate(channel_mult))[::-1]:
        for i in range(num_res_blocks + 1):
            total += res(ch + chans.pop(), model_channels * mult)
            ch = model_channels * mult
            if ds in attention_ds:
                total += attn(ch)
            if level and i == num_res_blocks:
                total += conv(ch, ch, 3)                       # Upsample
                ds //= 2
    total += gn(ch) + conv(model_channels, out_channels, 3)    # out
    return total


def ldm_reference_for(unet_cfg, attention_ds=None):
    """The LDM count for a ``configs/models.py`` ``unet`` block (attention levels -> ds = 2**l)."""
    if attention_ds is None:
        attention_ds = tuple(2 ** level for level in unet_cfg.attention_levels)
    return ldm_unet_param_count(
        in_channels=unet_cfg.latent_channels + unet_cfg.image_feature_channels,
        out_channels=unet_cfg.latent_channels, model_channels=unet_cfg.base_channels,
        channel_mult=tuple(unet_cfg.channel_multipliers),
        num_res_blocks=unet_cfg.num_res_blocks, attention_ds=tuple(attention_ds))


# -------------------------------------------------------------------------------- measurements

def count_params(abstract_model, filt=nnx.Param) -> int:
    return int(sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(abstract_model, filt))))


def forward_temp_bytes(abstract_model, call, *inputs) -> int:
    """XLA temp bytes of ``call(model, *inputs)`` compiled for CPU with abstract arguments."""
    graphdef, state = nnx.split(abstract_model)

    def fwd(state, *xs):
        return call(nnx.merge(graphdef, state), *xs)

    compiled = jax.jit(fwd).lower(state, *inputs).compile()
    mem = compiled.memory_analysis()
    return int(mem.temp_size_in_bytes) if mem is not None else -1


def measure(variant: str, memory: bool = True) -> list[dict]:
    cfg = get_config(variant)
    H, W = cfg.image_size
    K = cfg.num_freqs
    f = 2 ** (len(cfg.vae.channel_multipliers) - 1)
    h, w = H // f, W // f
    sds = jax.ShapeDtypeStruct
    rows = []

    def row(name, model, unit, call, inputs, extra=None):
        t0 = time.time()
        r = {"variant": variant, "model": name, "params": count_params(model), "unit": unit}
        if memory:
            r["activation_bytes"] = forward_temp_bytes(model, call, *inputs)
        r.update(extra or {})
        r["seconds"] = round(time.time() - t0, 1)
        rows.append(r)
        print(f"# {variant} {name}: {r}", file=sys.stderr, flush=True)

    vae = nnx.eval_shape(lambda: MotionVAE.from_config(cfg.vae, rngs=nnx.Rngs(0)))
    row("vae", vae, f"1 slice {H}x{W}x4", lambda m, x: m(x)[0], [sds((1, H, W, 4), jnp.float32)])
    enc = nnx.eval_shape(lambda: ImageEncoder.from_config(cfg, rngs=nnx.Rngs(0)))
    row("image_encoder", enc, f"1 image {H}x{W}x3", lambda m, x: m(x),
        [sds((1, H, W, 3), jnp.float32)])
    ref = ldm_reference_for(cfg.unet)
    ref_all = ldm_reference_for(cfg.unet, tuple(2 ** i for i in
                                                range(len(cfg.unet.channel_multipliers))))
    unet_inputs = [sds((K, h, w, 4), jnp.float32), sds((K,), jnp.int32),
                   sds((K,), jnp.int32), sds((1, h, w, cfg.unet.image_feature_channels),
                                            jnp.float32)]
    for stage in (1, 2):
        unet = nnx.eval_shape(lambda: UNet.from_config(cfg.unet, frequency_attention=stage == 2,
                                                       rngs=nnx.Rngs(0)))
        n = count_params(unet)
        extra = {"ldm_reference_params": ref, "ratio_to_ldm": round(n / ref, 4),
                 "ldm_reference_params_attention_all_levels": ref_all}
        if stage == 2:
            extra["freq_attention_params"] = count_params(
                unet, nnx.All(nnx.Param, nnx.PathContains(FREQ_ATTN)))
        row(f"unet_stage{stage}", unet, f"1 image x K={K} slices {h}x{w}x4",
            lambda m, z, t, k, fe: m(z, t, k, fe), unet_inputs, extra)
    return rows


def markdown(rows) -> str:
    lines = ["| variant | model | parameters | activation memory (forward, batch 1) | unit | "
             "LDM reference / ratio |",
             "|---|---|---:|---:|---|---|"]
    for r in rows:
        mem = r.get("activation_bytes")
        mem_s = "—" if mem is None or mem < 0 else f"{mem / 2**20:,.1f} MiB"
        ref = (f"{r['ldm_reference_params']:,} / {r['ratio_to_ldm']:.3f}"
               if "ldm_reference_params" in r else "")
        if "freq_attention_params" in r:
            ref += f" (freq. attention: {r['freq_attention_params']:,})"
        lines.append(f"| {r['variant']} | {r['model']} | {r['params']:,} | {mem_s} | {r['unit']} "
                     f"| {ref} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--variants", default="tiny,paper")
    p.add_argument("--markdown", default="", help="also write the Markdown table to this file")
    p.add_argument("--no-memory", action="store_true", help="parameter counts only (no compiles)")
    args = p.parse_args(argv)
    rows = []
    for v in args.variants.split(","):
        rows += measure(v.strip(), memory=not args.no_memory)
    print(json.dumps({"backend": jax.default_backend(), "rows": rows}, indent=1))
    table = markdown(rows)
    print(table)
    if args.markdown:
        header = ("# Model sizes\n\nGenerated by `python benchmarks/model_sizes.py --markdown "
                  "docs/model_sizes.md`; see the script's docstring for what is measured. "
                  "Activation memory = XLA CPU `temp_size_in_bytes` of a jitted float32 inference "
                  "forward at batch 1 (parameters excluded). LDM reference = analytic parameter "
                  "count of the original LDM openaimodel U-Net with the paper's settings "
                  "(attention at ds 2, 4 + middle); ours adds the frequency-embedding MLP "
                  "(and, in stage 2, the frequency attention).\n\n")
        os.makedirs(os.path.dirname(os.path.abspath(args.markdown)), exist_ok=True)
        with open(args.markdown, "w") as fh:
            fh.write(header + table + "\n")


if __name__ == "__main__":
    main()
