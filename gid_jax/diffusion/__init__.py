"""Diffusion: noise schedules, samplers (DDIM, DPM-Solver++), classifier-free and loss guidance."""

from gid_jax.diffusion.samplers import (classifier_free_guidance, ddim_sample,
                                        dpm_solver_pp_sample, predict_x0)
from gid_jax.diffusion.schedule import NoiseSchedule

__all__ = ["NoiseSchedule", "classifier_free_guidance", "ddim_sample", "dpm_solver_pp_sample",
           "predict_x0"]
