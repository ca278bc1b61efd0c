"""Stage 5 (beyond the paper): consistency distillation of the motion LDM into a 1-4 step sampler.

The student starts as a copy of the teacher (a finished LDM stage-2 run) and learns the map
f(z_t, t) → x0 that is constant along the teacher's guided probability-flow ODE (latent
consistency distillation, Luo et al. 2023, after Song et al. 2023):

    z_hi  = α_hi x0 + σ_hi ε                          a training latent, noised to t_hi
    ẑ_lo  = DDIM step of the teacher from t_hi to t_lo, with classifier-free guidance w
    loss  = ‖ f_θ(z_hi, t_hi) − sg[f_θ(ẑ_lo, t_lo)] ‖²,   f(z, t) = (z − σ_t ε_θ(z, t)) / α_t

over `distill.num_intervals` intervals of the training schedule. The target uses the student's own
current weights without gradient (no EMA target, as in improved consistency training). Guidance
is distilled in, so the student samples with one UNet call per step and no null pass
(`gid_jax.diffusion.consistency_sample`). Like stage 2 the VAE stays frozen; the whole denoiser
(image encoder, U-Net, frequency attention) trains.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from gid_jax.diffusion import predict_x0
from gid_jax.diffusion.samplers import ddim_step
from gid_jax.models.ldm import MotionLDM
from gid_jax.train.ldm_task import LDMTask, resolve_config  # noqa: F401 - get_task calls it
from gid_jax.train.motion_data import finish_batch
from gid_jax.train.task import compute_dtype


class ConsistencyDistiller(nnx.Module):
    """The trained `student` and the frozen `teacher`, two MotionLDMs of the same config.
    Parameter paths `student/...` and `teacher/...`; both start from the teacher run
    (`train.init_from` with `strip_prefix`)."""

    def __init__(self, student: MotionLDM, teacher: MotionLDM):
        self.student = student
        self.teacher = teacher


class DistillTask(LDMTask):
    def __init__(self, config):
        if int(config.stage) != 2:
            raise ValueError(f"distill: the teacher must be an LDM stage-2 run (stage 2), got stage "
                             f"{config.stage}")
        super().__init__(config)
        self.name = "distill"
        self.trainable = nnx.All(nnx.Param, nnx.PathContains("student"),
                                 nnx.PathContains("denoiser"))
        d = config.distill
        if int(d.num_intervals) < 1 or not np.isfinite(float(d.guidance_weight)):
            raise ValueError(f"config.distill: need num_intervals >= 1 and a finite guidance_weight, "
                             f"got {d.num_intervals}, {d.guidance_weight}")
        # t_0 = N-1 > t_1 > ... > t_M = 0: the teacher's DDIM grid the student is made consistent on
        self.grid = jnp.asarray(self.schedule.sampling_steps(int(d.num_intervals) + 1), jnp.int32)

    def create_model(self, config, rngs):
        def ldm():
            return MotionLDM(config.model, num_freqs=len(self.freq_scales), stage=2,
                             freq_scales=self.freq_scales, diffusion=config.diffusion,
                             dtype=compute_dtype(config), rngs=rngs)
        return ConsistencyDistiller(ldm(), ldm())

    def loss_fn(self, model, batch, rng):
        batch = finish_batch(self.config, batch)
        sv, image = batch["spectral_volume"], batch["image"] * 2.0 - 1.0
        b, k = sv.shape[:2]
        n_key, enc_key, noise_key = jax.random.split(rng, 3)
        teacher, student = model.teacher, model.student
        x0 = jax.lax.stop_gradient(teacher.encode(sv.reshape((b * k,) + sv.shape[2:]), enc_key))
        n = jax.random.randint(n_key, (b,), 0, len(self.grid) - 1)
        t_hi, t_lo = (jnp.repeat(self.grid[n + i], k) for i in (0, 1))
        noise = jax.random.normal(noise_key, x0.shape, x0.dtype)
        z_hi = self.schedule.add_noise(x0, noise, t_hi)

        abar = jnp.asarray(self.schedule.alphas_cumprod, jnp.float32)
        w = float(self.config.distill.guidance_weight)
        eps = teacher.denoiser.guided_eps(z_hi, t_hi, teacher.denoiser.encode_image(image), w)
        a_hi, a_lo = (abar[t].reshape((-1, 1, 1, 1)) for t in (t_hi, t_lo))
        x0_teacher = predict_x0(z_hi, eps, a_hi)
        z_lo = jax.lax.stop_gradient(ddim_step(z_hi, eps, a_hi, a_lo))   # η = 0: the ODE's step

        student_features = student.denoiser.encode_image(image)

        def f(z, t, a):
            return predict_x0(z, student.denoiser.eps(z, t, student_features), a)

        pred = f(z_hi, t_hi, a_hi)
        target = jax.lax.stop_gradient(f(z_lo, t_lo, a_lo))
        loss = jnp.mean(jnp.square(pred - target))
        return loss, {"teacher_step_x0_change": jnp.mean(jnp.square(x0_teacher - x0))}


def make_distill_task(config) -> DistillTask:
    return DistillTask(config)
