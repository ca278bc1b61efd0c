"""ResNet image encoder: I0 in [-1, 1] -> 16-channel features at latent resolution (docs/method.md §4.2).

The paper says only "a standard ResNet encoder" producing 16 channels that are concatenated with the
noisy latent; depth and widths are NOT RECOVERED (config ``image_encoder``). Ours is a
pre-activation ResNet with GroupNorm (batch statistics are awkward with per-device batches):

    stem conv3x3 (3 -> base) -> for each of log2(f) stages: Downsample (stride-2 conv),
    blocks_per_stage x ResBlock (channels doubled by the first) -> GN-SiLU-conv1x1 (-> 16)

``f`` is the VAE's downsampling factor, so a (B, 160, 256, 3) image gives (B, 40, 64, 16).
It is trained jointly with the U-Net (its features are computed once per image, not per slice).
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from gid_jax.models.layers import Downsample, Norm, ResBlock, check_sizes, conv

__all__ = ["ImageEncoder"]


class ImageEncoder(nnx.Module):
    """``(B, H, W, 3)`` in [-1, 1] -> ``(B, H/f, W/f, out_channels)`` float32."""

    def __init__(self, out_channels: int = 16, base_channels: int = 64, blocks_per_stage: int = 2,
                 downsample_factor: int = 4, *, dtype=jnp.float32, rngs: nnx.Rngs):
        check_sizes("ImageEncoder", out_channels=out_channels, base_channels=base_channels,
                    blocks_per_stage=blocks_per_stage)
        n_down = downsample_factor.bit_length() - 1
        if downsample_factor < 1 or 2 ** n_down != downsample_factor:
            raise ValueError(f"ImageEncoder: downsample_factor must be a power of 2, got "
                             f"{downsample_factor}")
        self.downsample_factor = downsample_factor
        self.stem = conv(3, base_channels, 3, dtype=dtype, rngs=rngs)
        downs, stages = [], []
        ch = base_channels
        for _ in range(n_down):
            downs.append(Downsample(ch, dtype=dtype, rngs=rngs))
            blocks = []
            for _ in range(blocks_per_stage):
                blocks.append(ResBlock(ch, 2 * ch if not blocks else ch, dtype=dtype, rngs=rngs))
                ch = blocks[-1].conv2.out_features
            stages.append(nnx.List(blocks))
        self.downs = nnx.List(downs)
        self.stages = nnx.List(stages)
        self.norm_out = Norm(ch, rngs=rngs)
        self.conv_out = conv(ch, out_channels, 1, dtype=dtype, rngs=rngs)

    @classmethod
    def from_config(cls, model_cfg, *, dtype=jnp.float32, rngs: nnx.Rngs) -> "ImageEncoder":
        """Build from the whole ``configs/models.py`` config (the factor comes from its ``vae``)."""
        c = model_cfg.image_encoder
        f = 2 ** (len(model_cfg.vae.channel_multipliers) - 1)
        return cls(c.out_channels, c.base_channels, c.blocks_per_stage, f, dtype=dtype, rngs=rngs)

    def __call__(self, image):
        if image.ndim != 4 or image.shape[-1] != 3:
            raise ValueError(f"ImageEncoder: expected (B, H, W, 3) images, got {tuple(image.shape)}")
        f = self.downsample_factor
        if image.shape[1] % f or image.shape[2] % f:
            raise ValueError(f"ImageEncoder: height and width {image.shape[1:3]} must be divisible "
                             f"by {f}")
        h = self.stem(image)
        for down, blocks in zip(self.downs, self.stages):
            h = down(h)
            for block in blocks:
                h = block(h)
        return self.conv_out(self.norm_out(h)).astype(jnp.float32)
