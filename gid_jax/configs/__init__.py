"""Run configurations (`configs/NAME.py:VARIANT` in `gid_jax.config.load_config`): one file per
stage, each with a `get_config(variant)`; they ship with the package."""
