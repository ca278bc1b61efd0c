"""Diffusion: noise schedules, samplers (DDIM, DPM-Solver++, UniPC, consistency), classifier-free
and loss guidance."""

from gid_jax.diffusion.samplers import (classifier_free_guidance, consistency_sample,
                                        consistency_steps, ddim_sample, dpm_solver_pp_sample,
                                        multistep_coefficients, predict_x0, unipc_sample)
from gid_jax.diffusion.schedule import GRIDS, NoiseSchedule

__all__ = ["GRIDS", "NoiseSchedule", "classifier_free_guidance", "consistency_sample",
           "consistency_steps", "ddim_sample",
           "dpm_solver_pp_sample", "multistep_coefficients", "predict_x0", "unipc_sample"]
