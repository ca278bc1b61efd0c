"""Training stage 4: the image-based renderer (docs/method.md §6).

    gid train --config configs/renderer.py:paper --workdir RUN --config.data.dir=DATA

Data: the `pairs` dataset of `gid prepare` (`data.dir` = its output folder), read by
`data_pipelines.training_input.make_pairs_dataset`: start frame I0 and target frame I_t (float
[0, 1]), the estimated flow I0 -> I_t `(B, H, W, 2)` in pixels, and W = mean_t |F_t| of the
clip's whole motion texture `(B, H, W, 1)` (the softmax-splat weight), optionally flipped
horizontally together (flow x negated). Shuffle and flips are a pure function of `seed`; the
iterator's checkpointed state is one integer (its stream position).

Step: images to [-1, 1]; a Gaussian style vector per example drawn from the step's key (the
renderer's `noise` input; a fresh draw every step, like CoModGAN's latent); I0 and its features
are splatted by the flow and decoded to Î_t (a learned correction of the splatted I0; see
gid_jax/models/renderer.py); loss = `RendererLoss` (VGG perceptual + L1, or the
logged fallback without VGG weights) between Î_t and I_t. Logged: `loss`, the loss terms
(`perceptual` or `fallback`, `l1`), `psnr` (dB, images in [0, 1]) and `psnr_over_splat` (dB:
`psnr` minus that of I0 softmax-splatted with holes filled by I0, which is what the untrained
renderer renders; 0 at the start, positive once the learned correction helps).

The model is the bare `gid_jax.models.renderer.Renderer`, so checkpoints hold only its
parameters. The loss network (frozen VGG-16) lives in the task and enters the compiled step as
constants; it is never trained or checkpointed.
"""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from gid_jax.eval.image_metrics import psnr
from gid_jax.models.perceptual import RendererLoss
from gid_jax.models.renderer import Renderer
from gid_jax.train.task import compute_dtype

log = logging.getLogger(__name__)

BATCH_KEYS = ("image", "target_image", "flow", "mean_motion")


def _psnr(pred, target):
    """Batch-mean PSNR (dB) of images in [-1, 1], measured in [0, 1] (MSE floored for logs)."""
    return jnp.mean(psnr((pred.astype(jnp.float32) + 1) / 2, (target + 1) / 2, min_mse=1e-10))


class RendererTask:
    """The `Task` (gid_jax/train/task.py) for the renderer stage."""

    name = "renderer"

    def __init__(self, config):
        self._config = config
        # The loss network, built now (outside any trace): loads the VGG weights, or warns once
        # about the fallback. Kept as (graphdef, state of host numpy arrays): the arrays become
        # literals of the compiled step. (Captured jax Arrays would be hoisted to extra
        # arguments, which the trainer's AOT-compiled step is not called with.)
        loss = RendererLoss(config.model.renderer, dtype=compute_dtype(config))
        graphdef, state = nnx.split(loss)
        self._loss = graphdef, jax.tree.map(np.asarray, state)
        self.uses_vgg = loss.uses_vgg

    # ------------------------------------------------------------------ model
    def create_model(self, config, rngs: nnx.Rngs) -> Renderer:
        return Renderer(config.model.renderer, rngs=rngs, dtype=compute_dtype(config))

    # ------------------------------------------------------------------ loss
    def loss_module(self) -> RendererLoss:
        """The `RendererLoss` (perceptual + L1) of this task."""
        return nnx.merge(*self._loss)

    def loss_fn(self, model: Renderer, batch, rng):
        missing = [k for k in BATCH_KEYS if k not in batch]
        if missing:
            raise ValueError(f"renderer batch lacks {missing}; has {sorted(batch)}")
        image = batch["image"].astype(jnp.float32) * 2.0 - 1.0
        target = batch["target_image"].astype(jnp.float32) * 2.0 - 1.0
        flow = batch["flow"].astype(jnp.float32)
        weight = batch["mean_motion"].astype(jnp.float32)
        if weight.ndim == 3:
            weight = weight[..., None]
        noise = jax.random.normal(rng, (image.shape[0], model.style_dim), jnp.float32)
        encoded = model.encode(image)
        pred = model.synthesize(encoded, flow, weight, noise)
        loss, terms = self.loss_module()(pred, target)
        metrics = {k: v for k, v in terms.items() if k != "total"}
        metrics["psnr"] = _psnr(pred, target)
        # What the untrained renderer renders: I0 softmax-splatted, holes filled by I0.
        splat = jax.lax.stop_gradient(model.warp_image(encoded, flow, weight)[..., :3])
        metrics["psnr_over_splat"] = metrics["psnr"] - _psnr(splat, target)
        return loss, metrics

    # ------------------------------------------------------------------ data
    def create_train_iterator(self, config, *, batch_size, process_index, process_count):
        from data_pipelines.training_input import make_pairs_dataset

        data = config.data
        if not str(data.dir):
            raise ValueError("renderer training needs the prepared data: set --config.data.dir=OUT "
                             "(the output folder of `gid prepare`)")
        flip_prob = float(data.flip_prob) if bool(data.flip) else 0.0
        return make_pairs_dataset(str(data.dir), batch_size, int(config.seed),
                                  flip_prob=flip_prob, shuffle_buffer=int(data.shuffle_buffer),
                                  process_index=process_index, process_count=process_count,
                                  split=str(data.split))


def make_renderer_task(config) -> RendererTask:
    return RendererTask(config)
