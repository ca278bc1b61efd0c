"""Predicted motion of a model on real photographs (no ground truth): prints one JSON object with
each photo's mean amplitude per seed and, with --figure, draws the photo beside its amplitude
map A = Σ_{k≥1}|S_k| (seed 0 and the mean over seeds).

    python benchmarks/real_photos.py --figure docs/images/real_photos.png   # the shipped model
    python benchmarks/real_photos.py --checkpoint runs/demo/pipeline photo1.jpg photo2.png

Without photos it uses the repository's real ones: the first frame of OpenCV's tree.avi
(tests/data) and three of the Debian wallpaper crops in data_pipelines/synth/photos.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from gid_jax.atomic import atomic_path

REPO = Path(__file__).resolve().parents[1]
PHOTOS = [REPO / "data_pipelines/synth/photos" / f"{n}.jpg" for n in ("bg_summer", "tex_facade", "bg_water")]
VIDEO = REPO / "tests/data/tree.avi"


def default_images() -> dict:
    from data_pipelines.video_io import read_video

    images = {"tree.avi (frame 0)": read_video(VIDEO)[0][0]}
    images.update({p.stem: str(p) for p in PHOTOS})
    return images


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("photos", nargs="*", help="image files (default: the repository's real photos)")
    ap.add_argument("--checkpoint", default="", help="pipeline directory or bundle (default: the shipped model)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--figure", default="", help="write the figure here (PNG)")
    args = ap.parse_args(argv)
    for p in args.photos:
        if not Path(p).is_file():
            ap.error(f"{p}: no such file")
    from gid_jax.eval.learning import amplitude_map
    from gid_jax.pipeline import Pipeline

    pipe = Pipeline.load(args.checkpoint) if args.checkpoint else Pipeline.pretrained()
    sources = {Path(p).name: p for p in args.photos} or default_images()
    images = {name: pipe.prepare_image(src) for name, src in sources.items()}
    stack = np.stack(list(images.values()))
    maps = np.stack([[amplitude_map(sv) for sv in pipe.predict_spectral_volumes(stack, seed)]
                     for seed in range(args.seeds)], axis=1)          # (photos, seeds, H, W)
    print(json.dumps({"checkpoint": args.checkpoint or "pretrained:small",
                      "photos": {name: {"mean_amplitude_px_per_seed": [round(float(m.mean()), 3) for m in ms]}
                                 for name, ms in zip(images, maps)}}, indent=2))
    if args.figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(len(images), 3, figsize=(7.8, 1.9 * len(images)), squeeze=False)
        for row, (name, image), ms in zip(axes, images.items(), maps):
            vmax = max(float(np.percentile(ms, 99.5)), 1e-3)
            row[0].imshow(np.clip(image, 0, 1))
            row[0].set_title(name, fontsize=8)
            for ax, (label, amp) in zip(row[1:], (("seed 0", ms[0]), (f"mean of {len(ms)} seeds", ms.mean(0)))):
                im = ax.imshow(amp, cmap="inferno", vmin=0, vmax=vmax)
                ax.set_title(f"predicted A (px), {label}", fontsize=8)
            for ax in row:
                ax.set_xticks([]), ax.set_yticks([])
            fig.colorbar(im, ax=list(row), fraction=0.02, pad=0.01)
        out = Path(args.figure)
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out, ".png") as tmp:
            fig.savefig(tmp, dpi=110)


if __name__ == "__main__":
    main()
