"""Procedural scenes: a static photographic background plus depth-ordered RGBA object layers:
moving plants (trees, limbs, small stems with leaves and flowers, grass), cloth, candle flames,
and static rigid objects (rocks, fences, walls, buildings, poles, furniture), each with its modes.

Everything is drawn on a padded canvas (the frame plus a margin of `pad` pixels on every side),
so layers that extend past the frame edge (grass, branches, camera shake) bring real content in.
Object sizes are in units of the frame height, so a scene at 64x40 is the 256x160 one scaled.
"""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np

from data_pipelines.synth import photos
from data_pipelines.synth import plants as PL
from data_pipelines.synth import props as PR
from data_pipelines.synth.dynamics import ModeSpec
from data_pipelines.synth.noise import fractal_noise, hsv
from data_pipelines.synth.paint import Painter

MOVING_KINDS = ("plant", "grass", "candle", "cloth")
KINDS = MOVING_KINDS + PR.RIGID_KINDS


@dataclasses.dataclass
class Layer:
    name: str
    obj: int                 # owning object index (-1: none)
    rgba: np.ndarray         # (Hc,Wc,4) premultiplied rest texture
    modes: list              # global mode indices deforming this layer
    depth: float             # painter order (small = far)


class SceneBuilder:
    def __init__(self, rng: np.random.Generator, width: int, height: int, pad: int):
        self.rng, self.W, self.H, self.P = rng, width, height, pad
        self.Wc, self.Hc = width + 2 * pad, height + 2 * pad
        xs = np.arange(self.Wc, dtype=np.float32)
        ys = np.arange(self.Hc, dtype=np.float32)
        self.X, self.Y = np.meshgrid(xs, ys)
        self.S = height / 160.0                          # size scale relative to 256x160
        self.background: np.ndarray | None = None
        self.layers: list[Layer] = []
        self.modes: list[ModeSpec] = []
        self.fields: list[np.ndarray] = []
        self.objects: list[dict] = []
        self.targets: dict[tuple[int, str], float] = {}  # (obj, group) -> std of modal coords
        self.hint_x: float | None = None                 # canvas x of the least covered area

    # -- bookkeeping ---------------------------------------------------------------------
    @contextlib.contextmanager
    def scope(self):
        """A child random stream for one object: how many numbers an object draws may depend on
        the frame size (blade counts, noise grids), the scene composition then does not."""
        parent = self.rng
        self.rng = np.random.default_rng(int(parent.integers(2 ** 63)))
        try:
            yield
        finally:
            self.rng = parent

    def add(self, fn, *args, **kwargs):
        with self.scope():
            return fn(self, *args, **kwargs)

    def moving_cover(self) -> tuple[np.ndarray, float]:
        """Frame mask covered (alpha >= 0.5) by layers that move, and the summed area of their
        bounding boxes in frames (what rendering costs: overlapping plants are paid for twice)."""
        P = self.P
        cover = np.zeros((self.H, self.W), bool)
        area = 0.0
        for layer in self.layers:
            if layer.modes:
                m = layer.rgba[P:P + self.H, P:P + self.W, 3] >= 0.5
                cover |= m
                rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
                if len(rows):
                    area += (rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1) / m.size
        return cover, area

    def place_x(self, default: float) -> float:
        """Where a filler object should stand: the free area picked by the composer, if any."""
        return float(default if self.hint_x is None else self.hint_x)

    def new_object(self, kind: str, **params) -> int:
        self.objects.append({"kind": kind, **params})
        return len(self.objects) - 1

    def add_mode(self, obj: int, field: np.ndarray, freq: float, damping: float, group: str,
                 source: str = "wind", gain: float = 1.0, delay: float = 0.0, kind: str = "") -> int:
        self.modes.append(ModeSpec(float(freq), float(damping), source, obj, group, float(gain),
                                   float(delay), kind))
        self.fields.append(field.astype(np.float32))
        return len(self.modes) - 1

    def add_layer(self, obj: int, part: str, painter: Painter, modes: list, depth: float):
        name = f"{self.objects[obj]['kind']}{obj}/{part}" if obj >= 0 else part
        self.layers.append(Layer(name, obj, painter.rgba(), list(modes), float(depth)))

    def photo(self, kind: str, scale: float, angle: float = 0.0) -> np.ndarray:
        """A canvas-size photo texture of `kind`; `scale` = px per photo px at 256x160."""
        return photos.patch(self.rng, kind, self.Hc, self.Wc, scale * self.S, angle)


# -- backgrounds -----------------------------------------------------------------------------

def outdoor_background(b: SceneBuilder) -> tuple[dict, float]:
    """A landscape/sky photo, sometimes with a static ground strip (pebbles, deck, boards) in
    front; returns its description and the ground line (canvas y) objects stand on."""
    rng, P, H = b.rng, b.P, b.H
    img, desc = photos.background(rng, b.Hc, b.Wc)
    ground_y = rng.uniform(0.6, 0.85) * H + P
    if rng.random() < 0.5:
        kind = str(rng.choice(["tex_gravel", "tex_planks", "tex_wood"]))
        tex = b.photo(kind, rng.uniform(0.4, 1.0))
        tint = hsv(rng.uniform(0.05, 0.12), rng.uniform(0.1, 0.5), 1.0) * rng.uniform(0.6, 1.0)
        tex = photos.colour_jitter(rng, tex * tint[None, None], 0.5)
        edge = ground_y + fractal_noise(rng, 1, b.Wc, rng.uniform(10, 40) * b.S, octaves=3)[0] * 0.04 * H
        depth = np.clip((b.Y - edge[None, :]) / max(b.Hc - ground_y, 1.0), 0, 1)[..., None]
        strip = tex * (0.7 + 0.45 * depth)
        a = np.clip(b.Y - edge[None, :] + 0.5, 0, 1)[..., None]
        img = img * (1 - a) + strip * a
        desc["ground"] = kind
    desc.update(setting="outdoor", ground_y=float(ground_y - P))
    b.background = np.clip(img, 0, 1).astype(np.float32)
    return desc, ground_y


def indoor_background(b: SceneBuilder):
    """A plastered/wallpapered wall (photo grain), often a window onto a landscape photo, and a
    wooden floor; returns the description, floor line and window box (or None)."""
    rng, P, W, H, S = b.rng, b.P, b.W, b.H, b.S
    wall = hsv(rng.uniform(0.0, 1.0), rng.uniform(0.05, 0.35), rng.uniform(0.45, 0.85))
    grain = photos.detail(b.photo(str(rng.choice(["stone", "wood", "facade"])), rng.uniform(0.8, 2.0)),
                          rng.uniform(0.08, 0.25))
    img = wall[None, None] * grain * np.ones((b.Hc, b.Wc, 1), np.float32)
    if rng.random() < 0.4:                                         # wallpaper stripes
        stripe = 0.5 + 0.5 * np.cos(2 * np.pi * b.X / (rng.uniform(8, 24) * S))
        img = img * (1 - rng.uniform(0.05, 0.15) * stripe)[..., None]
    light = np.exp(-((b.X - rng.uniform(0, b.Wc)) ** 2 + (b.Y - rng.uniform(0, b.Hc)) ** 2)
                   / (2 * (rng.uniform(0.5, 1.2) * b.Wc) ** 2))
    img = img * (0.65 + 0.45 * light)[..., None]
    floor_y = rng.uniform(0.72, 0.92) * H + P
    desc = {"setting": "indoor", "ground_y": float(floor_y - P)}
    window = None
    if rng.random() < 0.75:
        ww, wh = rng.uniform(0.3, 0.55) * W, rng.uniform(0.4, 0.6) * H
        wx, wy = rng.uniform(0.05, 0.95) * (W - ww) + P, rng.uniform(0.05, 0.2) * H + P
        x0, y0, x1, y1 = int(wx), int(wy), int(wx + ww), int(wy + wh)
        view, vdesc = photos.background(rng, y1 - y0, x1 - x0, photos.WINDOW_VIEWS)
        img[y0:y1, x0:x1] = np.clip(view * rng.uniform(1.0, 1.2), 0, 1)
        frame = hsv(rng.uniform(0.05, 0.1), rng.uniform(0.0, 0.5), rng.uniform(0.3, 0.95))
        t = max(1, int(round(rng.uniform(0.012, 0.025) * H)))
        for sl in ((slice(y0 - t, y0 + t), slice(x0 - t, x1 + t)), (slice(y1 - t, y1 + t), slice(x0 - t, x1 + t)),
                   (slice(y0 - t, y1 + t), slice(x0 - t, x0 + t)), (slice(y0 - t, y1 + t), slice(x1 - t, x1 + t)),
                   (slice(y0, y1), slice((x0 + x1) // 2 - max(1, t // 2), (x0 + x1) // 2 + max(1, t // 2)))):
            img[sl] = frame
        window = (x0, y0, x1, y1)
        desc["window"] = {"box": [x0 - P, y0 - P, x1 - x0, y1 - y0], **vdesc}
    wood = hsv(rng.uniform(0.04, 0.1), rng.uniform(0.3, 0.7), rng.uniform(0.25, 0.5))
    floor = wood[None, None] * photos.detail(b.photo("wood", rng.uniform(0.4, 0.9), np.pi / 2), 1.0)
    img = np.where((b.Y >= floor_y)[..., None], floor, img)
    img[np.abs(b.Y - floor_y) < 1.0 * S + 0.5] *= 0.6
    b.background = np.clip(img, 0, 1).astype(np.float32)
    return desc, floor_y, window


# -- composition -----------------------------------------------------------------------------

THEMES = ("tree", "limbs", "garden", "meadow", "flags")
# Moving things added after a theme's main objects until they cover the drawn target fraction
# of the frame (real clips are framed around what moves): (name, probability).
FILLERS = {
    "tree": (("bush", 0.35), ("limb", 0.3), ("stem", 0.2), ("grass", 0.15)),
    "limbs": (("limb", 0.6), ("bush", 0.25), ("stem", 0.15)),
    "garden": (("bush", 0.45), ("stem", 0.4), ("grass", 0.05), ("tree", 0.1)),
    "meadow": (("stem", 0.45), ("bush", 0.4), ("grass", 0.15)),
    "flags": (("flag", 0.3), ("bush", 0.3), ("tree", 0.2), ("laundry", 0.2)),
    "indoor": (("potplant", 0.55), ("curtain", 0.25), ("laundry", 0.2)),
}


def _add_moving(b: SceneBuilder, name: str, wind: float, ground_y: float, top_y: float | None = None):
    rng, P, W, H = b.rng, b.P, b.W, b.H
    d = float(rng.uniform(0.1, 0.95))
    if name in ("tree", "limb", "bush"):
        b.add(PL.add_tree, ground_y, wind, d, name)
    elif name == "stem":
        b.add(PL.add_stem, ground_y, wind, d)
    elif name == "grass":
        b.add(PL.add_grass, ground_y, wind, float(rng.uniform(0.7, 1.0)), foreground=bool(rng.random() < 0.4))
    elif name == "flag":
        b.add(PR.add_flag, ground_y, wind, d)
    elif name == "laundry":
        b.add(PR.add_cloth, "laundry", wind, d)
    elif name == "curtain":
        b.add(PR.add_cloth, "curtain", wind, d, y0=P + float(rng.uniform(0.0, 0.1)) * H,
              height=float(rng.uniform(0.6, 0.85)) * H)
    elif name == "potplant":
        x = b.place_x(float(rng.uniform(0.05, 0.95)) * W + P)
        root_y = b.add(PR.add_pot, x, top_y + float(rng.uniform(0.0, 0.03)) * H, d + 2e-3)
        b.add(PL.add_tree, top_y, wind, d, "bush", root=(x, root_y))


def _fill(b: SceneBuilder, theme: str, wind: float, ground_y: float, top_y=None, lo=0.45, hi=0.8):
    """Adds fillers where the frame is least covered by moving things until they cover a random
    target fraction (or their boxes add up to 2.5 frames: overlap costs render time)."""
    rng = b.rng
    target = float(rng.uniform(lo, hi))
    names, probs = zip(*FILLERS[theme])
    for _ in range(8):
        cover, area = b.moving_cover()
        if cover.mean() >= target or area > 2.5:
            break
        col = np.convolve(cover.mean(0), np.ones(max(3, b.W // 8)) / max(3, b.W // 8), mode="same")
        free = np.flatnonzero(col <= np.quantile(col, 0.25))
        b.hint_x = float(free[int(rng.integers(len(free)))] + b.P + rng.normal(0, 0.03 * b.W))
        _add_moving(b, str(rng.choice(names, p=probs)), wind, ground_y, top_y)
        b.hint_x = None
    return target


def _outdoor(b: SceneBuilder, wind: float) -> dict:
    rng = b.rng
    with b.scope():
        desc, ground_y = outdoor_background(b)
    theme = str(rng.choice(THEMES, p=[0.3, 0.2, 0.22, 0.13, 0.15]))
    desc["theme"] = theme
    # static rigid things (rocks, fences, walls, buildings), so not everything in a picture moves
    if rng.random() < (0.3 if theme != "meadow" else 0.15):
        b.add(PR.add_building, ground_y, float(rng.uniform(0.0, 0.05)))
    if rng.random() < 0.2:
        b.add(PR.add_wall, ground_y, float(rng.uniform(0.3, 0.7)))
    if rng.random() < 0.25:
        b.add(PR.add_fence, ground_y, float(rng.uniform(0.3, 0.7)))
    for _ in range(int(rng.integers(0, 4)) if rng.random() < 0.65 else 0):
        b.add(PR.add_rock, ground_y, float(rng.uniform(0.2, 0.98)))
    main = {"tree": ["tree"], "limbs": ["limb"] * int(rng.integers(1, 3)), "garden": ["bush", "stem", "stem"],
            "meadow": ["grass", "grass", "stem"], "flags": ["flag"] * int(rng.integers(1, 3))}[theme]
    for name in main:
        _add_moving(b, name, wind, ground_y)
    if theme == "meadow":
        b.add(PL.add_grass, ground_y, wind, float(rng.uniform(0.85, 1.0)), foreground=True)
    elif rng.random() < 0.4:
        b.add(PL.add_grass, ground_y, wind, float(rng.uniform(0.7, 1.0)), foreground=bool(rng.random() < 0.3))
    desc["moving_target"] = _fill(b, theme, wind, ground_y)
    if rng.random() < 0.08:                                        # garden candle / lantern
        b.add(PR.add_candle, ground_y + float(rng.uniform(0.0, 0.2)) * b.H, wind, float(rng.uniform(0.3, 0.9)))
    return desc


def _indoor(b: SceneBuilder, wind: float) -> dict:
    rng, P, W, H = b.rng, b.P, b.W, b.H
    with b.scope():
        desc, floor_y, window = indoor_background(b)
    top_y = floor_y
    if rng.random() < 0.7:
        top_y = float(rng.uniform(0.55, 0.8)) * H + P
        b.add(PR.add_table, top_y, 0.2)
    if window is not None:
        x0, y0, x1, y1 = window
        for s in ([0, 1] if rng.random() < 0.7 else [int(rng.integers(2))]):
            cw = float(rng.uniform(0.45, 0.75)) * (x1 - x0)
            cx = x0 - 0.25 * cw if s == 0 else x1 - 0.75 * cw
            b.add(PR.add_cloth, "curtain", wind, float(rng.uniform(0.6, 0.9)), x0=cx,
                  y0=y0 - float(rng.uniform(0.03, 0.08)) * H,
                  width=cw, height=min(floor_y, b.Hc - P) - y0 + float(rng.uniform(-0.2, 0.05)) * H)
    for _ in range(int(rng.integers(0, 4)) if rng.random() < 0.8 else 0):
        b.add(PR.add_candle, top_y, wind, float(rng.uniform(0.3, 0.95)))
    desc["moving_target"] = _fill(b, "indoor", wind, floor_y, top_y, 0.35, 0.7)
    return desc


def build_scene(b: SceneBuilder, wind: float) -> dict:
    """Random setting, background and objects; fills `b` and returns the scene description."""
    desc = _outdoor(b, wind) if b.rng.random() < 0.75 else _indoor(b, wind)
    b.layers.sort(key=lambda l: l.depth)
    return desc
