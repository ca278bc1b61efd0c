"""Regenerates the downscaled photo crops in this folder from the Debian wallpaper packages.

    python data_pipelines/synth/photos/make_crops.py                 # apt-get download + dpkg-deb -x
    python data_pipelines/synth/photos/make_crops.py --root /tmp/debs/root/usr/share

Without --root the two packages are fetched with `apt-get download mate-backgrounds
plasma-workspace-wallpapers` and unpacked with `dpkg-deb -x` into a temporary folder. The crops
are small (<= 512x320) so the generator ships and runs offline; see CREDITS.md for authors and
licences.
"""

from __future__ import annotations

import argparse
import glob
import subprocess
import tempfile
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
MATE = "backgrounds/mate/nature/"
KDE = "wallpapers/{}/contents/images/"

# name: (source under usr/share, crop box as fractions (x0, y0, x1, y1), output (w, h))
CROPS = {
    # static backgrounds: sky, distant land and water, fog, a pier, a deck, a pebble beach
    "bg_storm": (MATE + "Storm.jpg", (0.0, 0.03, 1.0, 0.9675), (512, 320)),
    "bg_evening": (KDE.format("EveningGlow") + "2560x1600.jpg", (0, 0, 1, 1), (512, 320)),
    "bg_evening_sky": (KDE.format("EveningGlow") + "2560x1600.jpg", (0.1, 0.0, 0.7, 0.6), (512, 320)),
    "bg_kite_sky": (KDE.format("Kite") + "2560x1600.jpg", (0.0, 0.35, 0.6, 0.95), (512, 320)),
    "bg_summer": (KDE.format("summer_1am") + "2560x1600.jpg", (0, 0, 1, 1), (512, 320)),
    "bg_darkest": (KDE.format("DarkestHour") + "2560x1600.jpg", (0, 0, 1, 1), (512, 320)),
    "bg_cold": (KDE.format("ColdRipple") + "2560x1600.jpg", (0, 0, 1, 1), (512, 320)),
    "bg_water": (KDE.format("BytheWater") + "2560x1600.jpg", (0, 0, 1, 1), (512, 320)),
    # textures for moving layers: grass, leaves, foliage, bark, petals (also flame colour)
    "tex_meadow": (MATE + "GreenMeadow.jpg", (0.0, 0.2, 1.0, 1.0), (400, 256)),
    "tex_dune_grass": (MATE + "Dune.jpg", (0.0, 0.5, 1.0, 1.0), (512, 160)),
    "tex_blinds": (MATE + "Blinds.jpg", (0, 0, 1, 1), (384, 240)),
    "tex_leaf_drops": (MATE + "RainDrops.jpg", (0.05, 0.25, 0.72, 0.95), (320, 209)),
    "tex_moss": (KDE.format("OneStandsOut") + "2560x1600.jpg", (0.0, 0.0, 0.58, 0.7), (396, 320)),
    "tex_autumn": (KDE.format("FallenLeaf") + "2560x1600.jpg", (0.5, 0.28, 0.95, 0.8), (320, 231)),
    "tex_petals": (MATE + "FreshFlower.jpg", (0.35, 0.0, 1.0, 0.6), (320, 222)),
    "tex_yellow": (MATE + "YellowFlower.jpg", (0.45, 0.15, 0.85, 0.65), (320, 250)),
    # textures for static rigid things: wood, planks, pebbles, a building facade
    "tex_wood": (MATE + "Wood.jpg", (0.0, 0.38, 0.6, 0.75), (384, 177)),
    "tex_planks": (KDE.format("ColdRipple") + "2560x1600.jpg", (0.05, 0.78, 0.95, 1.0), (512, 78)),
    "tex_gravel": (KDE.format("EveningGlow") + "2560x1600.jpg", (0.45, 0.72, 1.0, 1.0), (384, 122)),
    "tex_facade": (KDE.format("Grey") + "2560x1600.jpg", (0.0, 0.55, 1.0, 1.0), (512, 144)),
}
# bark: three trunk strips of the Path forest photo (pixel columns of the 2560x1600 image)
BARK = (KDE.format("Path") + "2560x1600.jpg", [(160, 247), (347, 440), (1080, 1160)], (0, 740), (112, 320))


def fetch(tmp: Path) -> Path:
    subprocess.run(["apt-get", "download", "mate-backgrounds", "plasma-workspace-wallpapers"], cwd=tmp,
                   check=True)
    root = tmp / "root"
    for deb in glob.glob(str(tmp / "*.deb")):
        subprocess.run(["dpkg-deb", "-x", deb, str(root)], check=True)
    return root / "usr/share"


def crop(img: np.ndarray, box, size) -> np.ndarray:
    h, w = img.shape[:2]
    x0, y0, x1, y1 = (int(round(f * s)) for f, s in zip(box, (w, h, w, h)))
    return cv2.resize(img[y0:y1, x0:x1], size, interpolation=cv2.INTER_AREA)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", help="extracted usr/share of the two packages (default: download them)")
    ap.add_argument("--out", default=str(HERE))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.root) if args.root else fetch(Path(tmp))
        out = Path(args.out)
        for name, (src, box, size) in CROPS.items():
            img = cv2.imread(str(root / src), cv2.IMREAD_COLOR)
            if img is None:
                raise SystemExit(f"cannot read {root / src}")
            cv2.imwrite(str(out / f"{name}.jpg"), crop(img, box, size), [cv2.IMWRITE_JPEG_QUALITY, 90])
        src, cols, (y0, y1), size = BARK
        img = cv2.imread(str(root / src), cv2.IMREAD_COLOR)
        strips = np.concatenate([img[y0:y1, a:b] for a, b in cols], axis=1)
        cv2.imwrite(str(out / "tex_bark.jpg"), cv2.resize(strips, size, interpolation=cv2.INTER_AREA),
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
    print(f"wrote {len(CROPS) + 1} crops to {out}")


if __name__ == "__main__":
    main()
