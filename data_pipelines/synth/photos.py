"""Real photographs for the procedural scenes: static backgrounds and colour/detail textures.

The crops ship inside the package (`photos/*.jpg`, see `photos/CREDITS.md`), so generation works
offline. Backgrounds are sky, distant land, water, fog, piers and decks: things that do not move.
Textures (leaves, grass, bark, petals, wood, pebbles, a facade) only colour layers whose motion the
scene builder decides, so what a surface looks like matches how it moves.
"""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np

PHOTO_DIR = Path(__file__).resolve().parent / "photos"

BACKGROUNDS = ("bg_storm", "bg_evening", "bg_evening_sky", "bg_kite_sky", "bg_summer", "bg_darkest",
               "bg_cold", "bg_water")
# Indoor window views: the brighter outdoor backgrounds.
WINDOW_VIEWS = ("bg_storm", "bg_evening_sky", "bg_kite_sky", "bg_summer", "bg_water")
TEXTURES = {
    "leaf": ("tex_blinds", "tex_leaf_drops", "tex_moss", "tex_meadow"),
    "autumn": ("tex_autumn",),
    "grass": ("tex_meadow", "tex_dune_grass"),
    "bark": ("tex_bark", "tex_wood"),
    "wood": ("tex_wood", "tex_planks"),
    "stone": ("tex_gravel", "tex_facade"),
    "facade": ("tex_facade", "tex_gravel"),
    "petal": ("tex_petals", "tex_yellow"),
    "warm": ("tex_petals", "tex_yellow"),
}


@functools.lru_cache(maxsize=None)
def load(name: str) -> np.ndarray:
    """RGB float32 `(h,w,3)` in [0,1] of the shipped crop `name` (read once per process)."""
    path = PHOTO_DIR / f"{name}.jpg"
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"photo crop {path} is missing (regenerate with photos/make_crops.py)")
    out = cv2.cvtColor(img, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
    out.setflags(write=False)
    return out


def colour_jitter(rng: np.random.Generator, img: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """Brightness, contrast, saturation, white balance and gamma jitter of a photo."""
    k = float(strength)
    mean = img.mean(axis=(0, 1), keepdims=True)
    grey = img.mean(axis=-1, keepdims=True)
    sat = 1.0 + k * rng.uniform(-0.25, 0.2)
    out = grey + (img - grey) * sat
    out = mean.mean() + (out - mean.mean()) * (1.0 + k * rng.uniform(-0.2, 0.2))
    out = out * (1.0 + k * rng.uniform(-0.2, 0.15)) * (1.0 + k * rng.uniform(-0.05, 0.05, 3)).astype(np.float32)
    out = np.clip(out, 0.0, 1.0) ** (1.0 + k * rng.uniform(-0.15, 0.15))
    return out.astype(np.float32)


def background(rng: np.random.Generator, height: int, width: int, names=BACKGROUNDS):
    """A random crop (scale, position, flip) of a background photo resized to `(height,width)`,
    colour-jittered; returns the image and its description."""
    name = str(names[int(rng.integers(len(names)))])
    img = load(name)
    ph, pw = img.shape[:2]
    aspect = width / height
    scale = rng.uniform(0.55, 1.0)                   # fraction of the photo the crop spans
    cw = min(pw * scale, ph * scale * aspect)
    ch = cw / aspect
    x0 = rng.uniform(0, pw - cw)
    y0 = rng.uniform(0, ph - ch)
    flip = bool(rng.random() < 0.5)
    out = _warp(img, width, height, (x0 + cw / 2, y0 + ch / 2), width / cw, 0.0, flip)
    out = colour_jitter(rng, out)
    return out, {"photo": name, "crop": [float(x0), float(y0), float(cw), float(ch)], "flip": flip}


def _warp(img, width, height, centre, scale, angle, flip, interp=cv2.INTER_LINEAR):
    """Output pixel o shows source pixel centre + R(angle) (o - o_c) / scale (mirrored if flip)."""
    src, centre = img, np.asarray(centre, np.float64)
    if scale < 0.6:                                   # shrinking: area-downsample first (no aliasing)
        f = scale / 0.6
        h, w = img.shape[:2]
        nw, nh = max(2, int(round(w * f))), max(2, int(round(h * f)))
        src = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)
        centre = (centre + 0.5) * np.array([nw / w, nh / h]) - 0.5
        scale = scale * w / nw
    c, s = np.cos(angle) / scale, np.sin(angle) / scale
    fx = -1.0 if flip else 1.0
    ox, oy = (width - 1) / 2.0, (height - 1) / 2.0
    m = np.array([[c * fx, -s, 0.0], [s * fx, c, 0.0]], np.float64)
    m[:, 2] = centre - m[:, :2] @ np.array([ox, oy])
    return cv2.warpAffine(src, m, (width, height), flags=interp | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REFLECT_101)


def patch(rng: np.random.Generator, kind_or_name: str, height: int, width: int, scale: float,
          angle: float = 0.0) -> np.ndarray:
    """A `(height,width,3)` texture: a photo of `kind_or_name` (a TEXTURES kind or a crop name)
    magnified by `scale` (output px per photo px), rotated by `angle` (radians, so that a
    texture's vertical grain follows e.g. a branch), at a random position and mirror."""
    names = TEXTURES.get(kind_or_name, (kind_or_name,))
    img = load(str(names[int(rng.integers(len(names)))]))
    ph, pw = img.shape[:2]
    centre = (rng.uniform(0.3, 0.7) * pw, rng.uniform(0.3, 0.7) * ph)
    return _warp(img, width, height, centre, float(scale), float(angle), bool(rng.random() < 0.5))


def detail(rgb: np.ndarray, contrast: float = 1.0) -> np.ndarray:
    """Luminance of a texture normalised to mean 1, contrast scaled: `(h,w,1)` multiplier."""
    lum = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    lum = lum / max(float(lum.mean()), 1e-3)
    return np.clip(1.0 + contrast * (lum - 1.0), 0.2, 2.5)[..., None].astype(np.float32)
