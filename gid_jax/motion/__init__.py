"""Motion mathematics: spectral volumes, normalisation, loop constraint, modal dynamics.

Pure jax.numpy, jit-able and batched over leading axes; no model code lives here.
"""

from gid_jax.motion.looping import loop_loss, loop_seam, seam_ratios
from gid_jax.motion.modal import (DAMPING_ALPHA, DAMPING_BETA, initial_modal_state,
                                  mode_angular_frequencies, simulate_modal, stable_substeps)
from gid_jax.motion.normalization import (FrequencyNormalizer, frequency_denormalize,
                                          frequency_normalize)
from gid_jax.motion.spectral import (NUM_FRAMES, NUM_FREQS, amplitude, close_loop,
                                     complex_coefficients, fourier_basis, frame_times, scale_amplitude,
                                     to_spectral_volume, to_trajectories)

__all__ = [
    "DAMPING_ALPHA", "DAMPING_BETA", "NUM_FRAMES", "NUM_FREQS", "FrequencyNormalizer", "amplitude", "close_loop",
    "complex_coefficients", "fourier_basis", "frame_times", "frequency_denormalize",
    "frequency_normalize", "initial_modal_state", "loop_loss",
    "loop_seam", "mode_angular_frequencies", "scale_amplitude", "seam_ratios", "simulate_modal",
    "stable_substeps", "to_spectral_volume", "to_trajectories",
]
