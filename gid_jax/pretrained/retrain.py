"""Retrains the default model and installs it as the package's `small` bundle:

    python -m gid_jax.pretrained.retrain --workdir runs/small            # train + measure
    python -m gid_jax.pretrained.retrain --workdir runs/small --install  # + ship it

It is the demo's pipeline (`gid_jax.quickstart`: procedural scenes with their exact motion → VAE,
LDM stages 1 and 2, renderer → learning metrics on held-out scenes) with the `SMALL` recipe
below. Every stage checkpoints and resumes, so a long schedule can run over several sessions:
rerun the same command. `--install` exports the trained pipeline into
`gid_jax/pretrained/small/` (at most `MAX_BUNDLE_MB`), with the recipe, the commit and the
measured metrics in the manifest's `provenance`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

from gid_jax.pretrained import DEFAULT_MODEL, _ROOT

MAX_BUNDLE_MB = 25.0

# The shipped model's recipe: for now the demo's data and schedule (`training` = per-stage
# `--config.x=y` overrides of the `tiny` configs; lengthen it for a longer run).
SMALL = {
    "data": {"num_videos": 160, "num_heldout": 8, "size": [64, 40], "num_frames": 30, "seed": 0,
             "motion_source": "ground_truth"},
    "training": None,      # None: `gid_jax.quickstart.DEMO_TRAINING`
}


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=Path(__file__).parent, capture_output=True, text=True).stdout
        return out.stdout.strip() + ("-dirty" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def retrain(workdir, install: bool = False, recipe: dict = SMALL) -> dict:
    """Trains (or resumes) the recipe in `workdir`, measures it, and with `install` ships it."""
    from gid_jax.export import bundle_size, export_bundle
    from gid_jax.quickstart import DEMO_TRAINING, quickstart
    from gid_jax.train.stages import STAGES

    workdir = Path(workdir)
    data = dict(recipe["data"])
    data["size"] = tuple(data["size"])
    training = recipe["training"] or DEMO_TRAINING
    summary_path = workdir / "report" / "summary.json"
    finished = all((workdir / "runs" / name / "FINISHED").exists() for name, _, _ in STAGES)
    if not (finished and summary_path.exists()):      # else: trained and measured already
        quickstart(workdir, training=training, **data)
    summary = json.loads(summary_path.read_text())
    result = {"report": str(summary_path.with_name("report.md")),
              "learning": summary["learning"]["model"],
              "renderer": summary["renderer"]}
    if install:
        out = _ROOT / DEFAULT_MODEL
        provenance = {"commit": _commit(), "data": recipe["data"], "training": training,
                      "command": "python -m gid_jax.pretrained.retrain --workdir WORKDIR --install",
                      "heldout_metrics": summary["learning"], "renderer_metrics": summary["renderer"]}
        export_bundle(workdir / "pipeline", out, overwrite=True, platforms=("cpu",),
                      provenance=provenance)
        size_mb = bundle_size(out) / 1e6
        if size_mb > MAX_BUNDLE_MB:
            raise ValueError(f"{out}: the bundle is {size_mb:.1f} MB, over the {MAX_BUNDLE_MB:g} MB "
                             "a shipped model may take")
        result.update(installed=str(out), bundle_mb=round(size_mb, 2))
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m gid_jax.pretrained.retrain", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True,
                        help="run directory (videos, datasets, runs, report); rerun to resume")
    parser.add_argument("--install", action="store_true",
                        help=f"export the result into gid_jax/pretrained/{DEFAULT_MODEL}/")
    args = parser.parse_args(argv)
    print(json.dumps(retrain(args.workdir, args.install), indent=2))


if __name__ == "__main__":
    main()
