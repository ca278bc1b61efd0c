"""gid-jax: Generative Image Dynamics in JAX/Flax.

From one still image, predict a spectral volume (per-pixel Fourier coefficients of oscillating
motion) and render it into looping video or an interactive scene. See README.md for a tour.
"""

__version__ = "0.1.0"


def __getattr__(name):
    """`gid_jax.Pipeline` without importing JAX and the models at `import gid_jax`."""
    if name == "Pipeline":
        from gid_jax.pipeline import Pipeline

        return Pipeline
    raise AttributeError(f"module 'gid_jax' has no attribute {name!r}")
