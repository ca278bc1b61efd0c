"""The default model that ships inside the package: `Pipeline.pretrained()`, and what `gid
animate` / `gid interact` use when `--checkpoint` is left out.

A shipped model is an inference bundle (`gid_jax/bundle.py`) in `gid_jax/pretrained/NAME/`; its
manifest's `provenance` records the config, the commit and the data recipe it was trained with.
`python -m gid_jax.pretrained.retrain` rebuilds it (see that module).
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_MODEL = "small"
_ROOT = Path(__file__).resolve().parent


def available() -> list[str]:
    """Names of the shipped models (folders holding a bundle manifest)."""
    return sorted(p.name for p in _ROOT.iterdir() if (p / "manifest.json").is_file())


def bundle_path(name: str = DEFAULT_MODEL) -> Path:
    """The bundle folder of shipped model `name`; a clear error when it is not installed."""
    path = _ROOT / name
    if not (path / "manifest.json").is_file():
        have = ", ".join(available()) or "none"
        raise FileNotFoundError(
            f"{path}: no shipped model {name!r} in this installation (shipped: {have}); retrain it "
            "with `python -m gid_jax.pretrained.retrain` or pass --checkpoint")
    return path
