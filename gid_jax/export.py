"""`gid export --workdir PIPELINE_DIR --out BUNDLE`: a pipeline directory (its training runs'
Orbax checkpoints) → a self-contained inference bundle. The format itself, writing and reading,
is gid_jax/bundle.py; this module only adds loading the training runs (`Pipeline.from_runs`)
and the command line. The pipeline is imported when exporting, not here: `gid` imports this
module to register the command, for every command.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from gid_jax.bundle import (BundleError, bundle_size, check_target,  # noqa: F401 - re-exported
                            flat_params, is_bundle, load_exported, read_manifest, write_bundle)

log = logging.getLogger(__name__)


def export_bundle(workdir: str | os.PathLike, out: str | os.PathLike, *, chunk_frames: int = 16,
                  platforms: tuple[str, ...] | None = None, overwrite: bool = False,
                  provenance: dict | None = None) -> Path:
    """Writes the inference bundle of the pipeline directory `workdir` to `out` (see
    gid_jax/bundle.py). `provenance` (JSON-able: how the model was made, e.g. commit, data
    recipe, metrics) is stored in the manifest under that key."""
    from gid_jax.pipeline import PIPELINE_FILE, Pipeline

    workdir, out = Path(workdir), Path(out)
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
    check_target(out, overwrite)
    if is_bundle(workdir):
        raise ValueError(f"{workdir}: is already an exported bundle; export a pipeline directory")
    pipe = Pipeline.load(workdir)               # clear errors for a missing/invalid pipeline dir
    spec = json.loads((workdir / PIPELINE_FILE).read_text())
    ldm_dir, renderer_dir = (workdir / spec[key] for key in ("ldm", "renderer"))
    source = {"pipeline": str(workdir.absolute()), "ldm": str(ldm_dir.absolute()),
              "renderer": str(renderer_dir.absolute())}
    write_bundle(out, pipe, ldm_dir / "config.json", renderer_dir / "config.json", source=source,
                 chunk_frames=chunk_frames, platforms=platforms, overwrite=overwrite,
                 provenance=provenance)
    log.info("exported %s → %s (%.1f MB)", workdir, out, bundle_size(out) / 1e6)
    return out


def load_bundle(path: str | os.PathLike):
    """`Pipeline.from_bundle(path)`, under its old name."""
    from gid_jax.pipeline import Pipeline

    return Pipeline.from_bundle(path)


# ----------------------------------------------------------------------------- command line

def _cmd_export(args) -> None:
    platforms = tuple(p.strip() for p in args.platforms.split(",")) if args.platforms else None
    out = export_bundle(args.workdir, args.out, chunk_frames=args.chunk_frames, platforms=platforms,
                        overwrite=args.overwrite)
    manifest = read_manifest(out)
    print(f"bundle → {out} ({bundle_size(out) / 1e6:.1f} MB; image {manifest['image_size'][1]}x"
          f"{manifest['image_size'][0]}, K={manifest['num_freqs']}; exported "
          f"{', '.join(manifest['exported'])} for {', '.join(manifest['exported']['decode']['platforms'])})")


def add_export_command(sub) -> None:
    """Registers `gid export`."""
    p = sub.add_parser(
        "export", help="write a self-contained inference bundle",
        description="Export a pipeline directory (pipeline.json naming the LDM and renderer "
        "training runs; `gid quickstart` writes WORKDIR/pipeline) into a bundle: EMA weights as "
        ".npz, configs, normalisation/latent statistics, a manifest with versions and SHA-256 "
        "checksums, and StableHLO (jax.export) functions for one DDIM step, the VAE decode and one "
        "renderer chunk. `gid animate --checkpoint BUNDLE` and Pipeline.load(BUNDLE) read it "
        "without the training code. The bundle is written to a temporary directory and renamed "
        "into place.")
    p.add_argument("--workdir", required=True, help="pipeline directory to export")
    p.add_argument("--out", required=True, help="bundle directory to write")
    p.add_argument("--chunk-frames", type=int, default=16,
                   help="frames per exported renderer call (default: 16)")
    p.add_argument("--platforms", help="comma-separated jax.export platforms, e.g. cpu,cuda "
                   "(default: the current backend)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle at --out")
    p.set_defaults(run=_cmd_export)


__all__ = ["BundleError", "export_bundle", "load_bundle", "load_exported", "read_manifest",
           "is_bundle", "flat_params", "bundle_size", "add_export_command"]
