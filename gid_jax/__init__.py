"""gid-jax: Generative Image Dynamics in JAX/Flax.

From one still image, predict a spectral volume (per-pixel Fourier coefficients of oscillating
motion) and render it into looping video or an interactive scene. See README.md for a tour.
"""

__version__ = "0.1.0"
