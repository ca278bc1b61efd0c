"""Procedural scenes: a static textured background plus depth-ordered RGBA object layers
(plants/branches with leaves and flowers, grass, candles, hanging cloth), each with its modes.

Everything is drawn on a padded canvas (the frame plus a margin of `pad` pixels on every side),
so layers that extend past the frame edge (grass, branches, camera shake) bring real content in.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from data_pipelines.synth import modes as M
from data_pipelines.synth.dynamics import ModeSpec
from data_pipelines.synth.noise import fractal_noise, hsv, jitter_colour
from data_pipelines.synth.paint import Painter, bezier, leaf_outline, tapered_outline

KINDS = ("plant", "grass", "candle", "cloth")


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

    # -- bookkeeping ---------------------------------------------------------------------
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

    def texture(self, scale: float, aspect: float = 1.0, lo: float = 0.6, hi: float = 1.25,
                octaves: int = 4) -> np.ndarray:
        n = fractal_noise(self.rng, self.Hc, self.Wc, scale, octaves=octaves, aspect=aspect)
        return (lo + (hi - lo) * n).astype(np.float32)


# -- background ------------------------------------------------------------------------------

def draw_background(b: SceneBuilder, setting: str, ground_y: float) -> dict:
    """Static background on the canvas; returns its description."""
    rng, Hc, Wc, S = b.rng, b.Hc, b.Wc, b.S
    Y = b.Y
    img = np.zeros((Hc, Wc, 3), np.float32)
    desc = {"setting": setting, "ground_y": float(ground_y - b.P)}
    below = (Y >= ground_y)[..., None]
    if setting == "outdoor":
        overcast = rng.random() < 0.3
        top = hsv(rng.uniform(0.55, 0.63), rng.uniform(0.05, 0.15) if overcast else rng.uniform(0.35, 0.7),
                  rng.uniform(0.6, 0.95))
        horizon = np.clip(top + rng.uniform(0.15, 0.35), 0, 1) * hsv(rng.uniform(0.05, 0.15), 0.1, 1.0)
        t = np.clip(Y / max(ground_y, 1.0), 0, 1)[..., None]
        sky = top * (1 - t) + horizon * t
        clouds = fractal_noise(rng, Hc, Wc, rng.uniform(20, 60) * S, octaves=5, aspect=0.4)
        cover = np.clip((clouds - rng.uniform(0.4, 0.6)) * 4, 0, 1)[..., None] * rng.uniform(0.3, 0.9)
        sky = sky * (1 - cover) + np.clip(horizon + 0.1, 0, 1) * cover
        img[:] = sky
        # Distant tree line / hedge: silhouette with foliage texture.
        prof = fractal_noise(rng, 1, Wc, rng.uniform(15, 50) * S, octaves=4, aspect=1.0)[0]
        top_y = ground_y - (rng.uniform(0.05, 0.3) * b.H) * (0.3 + 1.4 * prof)
        tree_mask = np.clip(Y - top_y[None, :] + 0.5, 0, 1)[..., None]          # anti-aliased edge
        foliage = hsv(rng.uniform(0.2, 0.4), rng.uniform(0.35, 0.7), rng.uniform(0.2, 0.45))
        fol_tex = b.texture(rng.uniform(3, 8) * S, lo=0.5, hi=1.4, octaves=4)[..., None]
        haze = rng.uniform(0.0, 0.35)
        trees = (foliage * fol_tex) * (1 - haze) + horizon * haze
        img = img * (1 - tree_mask) + trees * tree_mask
        ground = hsv(rng.uniform(0.08, 0.3), rng.uniform(0.3, 0.7), rng.uniform(0.25, 0.55))
        gtex = b.texture(rng.uniform(4, 12) * S, aspect=0.3, lo=0.6, hi=1.3)[..., None]
        shade = (1.0 - 0.3 * np.clip((Y - ground_y) / (Hc - ground_y + 1), 0, 1))[..., None]
        img = np.where(below, ground * gtex * shade, img)
    else:
        wall = hsv(rng.uniform(0.0, 1.0), rng.uniform(0.05, 0.4), rng.uniform(0.35, 0.85))
        wtex = b.texture(rng.uniform(10, 40) * S, lo=0.85, hi=1.1, octaves=5)[..., None]
        img[:] = wall * wtex
        if rng.random() < 0.4:  # wallpaper stripes
            period = rng.uniform(8, 24) * S
            stripe = 0.5 + 0.5 * np.cos(2 * np.pi * b.X / period)
            img *= (1 - rng.uniform(0.05, 0.15) * stripe)[..., None]
        light = np.exp(-((b.X - rng.uniform(0, Wc)) ** 2 + (Y - rng.uniform(0, Hc)) ** 2)
                       / (2 * (rng.uniform(0.5, 1.2) * Wc) ** 2))
        img *= (0.65 + 0.45 * light)[..., None]
        wood = hsv(rng.uniform(0.04, 0.1), rng.uniform(0.4, 0.75), rng.uniform(0.2, 0.5))
        grain = b.texture(rng.uniform(2, 6) * S, aspect=0.08, lo=0.65, hi=1.3, octaves=3)[..., None]
        img = np.where(below, wood * grain, img)
        edge = np.abs(Y - ground_y) < 1.0 * S + 0.5
        img[edge] *= 0.6
    b.background = np.clip(img, 0, 1).astype(np.float32)
    return desc


# -- plants ----------------------------------------------------------------------------------

def add_plant(b: SceneBuilder, variant: str, ground_y: float, wind: float, depth: float):
    rng, S, P, W, H = b.rng, b.S, b.P, b.W, b.H
    if variant == "stem":
        root = np.array([rng.uniform(0.05, 0.95) * W + P,
                         min(ground_y + rng.uniform(0.0, 0.2) * (b.Hc - P - ground_y), b.Hc - P + 2)])
        length = rng.uniform(0.35, 0.8) * H
        ang = rng.normal(0, 0.18)
        direction = np.array([np.sin(ang), -np.cos(ang)])
        f1 = rng.uniform(0.4, 1.2)
        w0 = rng.uniform(1.5, 3.5) * S
        bark = hsv(rng.uniform(0.12, 0.3), rng.uniform(0.4, 0.7), rng.uniform(0.25, 0.5))
        n_twigs, n_leaves = int(rng.integers(0, 4)), int(rng.integers(6, 18))
        leaf_len = rng.uniform(0.04, 0.08) * H
    else:  # branch reaching in from a frame edge (a tree limb)
        side = rng.choice(["left", "right", "top"])
        if side == "top":
            root = np.array([rng.uniform(0.1, 0.9) * W + P, P - 0.05 * H])
            ang = rng.uniform(0.35, 1.2) * rng.choice([-1, 1])
            direction = np.array([np.sin(ang), np.cos(ang)])
        else:
            sx = -1 if side == "right" else 1
            root = np.array([P - 0.05 * W if sx > 0 else P + 1.05 * W, rng.uniform(0.0, 0.55) * H + P])
            ang = rng.uniform(-0.25, 0.45)
            direction = np.array([sx * np.cos(ang), np.sin(ang)])
        length = rng.uniform(0.45, 0.8) * min(W, 1.6 * H)
        f1 = rng.uniform(0.2, 0.8)
        w0 = rng.uniform(3.0, 6.0) * S
        bark = hsv(rng.uniform(0.04, 0.1), rng.uniform(0.25, 0.6), rng.uniform(0.2, 0.4))
        n_twigs, n_leaves = int(rng.integers(3, 8)), int(rng.integers(20, 50))
        leaf_len = rng.uniform(0.05, 0.09) * H
    tip = root + direction * length
    nrm = np.array([-direction[1], direction[0]])
    ctrl = root + direction * length * 0.5 + nrm * rng.normal(0, 0.12) * length
    centre = bezier(root, ctrl, tip, 32)
    obj = b.new_object("plant", variant=variant, root=[float(root[0] - P), float(root[1] - P)],
                       tip=[float(tip[0] - P), float(tip[1] - P)], length=float(length))

    # Stem + twigs (bark layer).
    stem = Painter(b.Hc, b.Wc)
    along = 4.0 if abs(direction[1]) > abs(direction[0]) else 0.25
    bark_fill = bark[None, None] * b.texture(rng.uniform(3, 8) * S, aspect=along, lo=0.55, hi=1.35, octaves=3)[..., None]
    light_fill = np.clip(bark_fill * 1.35, 0, 1)
    stem.polygon(tapered_outline(centre, w0, 0.35 * w0), bark_fill)
    stem.polygon(tapered_outline(centre + nrm * 0.15 * w0, 0.4 * w0, 0.12 * w0), light_fill, 0.6)
    twig_curves = []
    for _ in range(n_twigs):
        k = int(rng.integers(8, 28))
        base = centre[k]
        tang = centre[min(k + 1, 31)] - centre[k - 1]
        tang /= np.linalg.norm(tang)
        turn = rng.uniform(0.5, 1.1) * rng.choice([-1, 1])
        d = np.array([tang[0] * np.cos(turn) - tang[1] * np.sin(turn), tang[0] * np.sin(turn) + tang[1] * np.cos(turn)])
        tl = rng.uniform(0.15, 0.4) * length
        tw_tip = base + d * tl
        tw_ctrl = base + d * tl * 0.5 + np.array([-d[1], d[0]]) * rng.normal(0, 0.15) * tl
        curve = bezier(base, tw_ctrl, tw_tip, 12)
        width_here = w0 * (1 - 0.65 * k / 31)
        stem.polygon(tapered_outline(curve, 0.45 * width_here, 0.15 * width_here), bark_fill)
        twig_curves.append(curve)

    # Leaves (and a flower) in a layer above the stem.
    leaves = Painter(b.Hc, b.Wc)
    hue = rng.uniform(0.18, 0.36) if rng.random() < 0.85 else rng.uniform(0.02, 0.12)
    leaf_col = hsv(hue, rng.uniform(0.45, 0.85), rng.uniform(0.3, 0.65))
    leaf_tex = b.texture(rng.uniform(1.5, 4) * S, lo=0.75, hi=1.2, octaves=3)[..., None]
    shape = str(rng.choice(["ovate", "lanceolate", "round"]))
    curves = [centre[int(0.25 * 32):]] + twig_curves
    anchors, lengths = [], []
    for _ in range(n_leaves):
        c = curves[int(rng.integers(len(curves)))]
        k = int(rng.integers(1, len(c)))
        base = c[k]
        tang = c[k] - c[k - 1]
        theta = np.arctan2(tang[1], tang[0]) + rng.choice([-1, 1]) * rng.uniform(0.4, 1.3)
        ln = leaf_len * rng.uniform(0.7, 1.3)
        wd = ln * (0.28 if shape == "lanceolate" else rng.uniform(0.45, 0.7))
        col = jitter_colour(rng, leaf_col, 0.08)
        outline = leaf_outline(base, theta, ln, wd, shape)
        leaves.polygon(outline, col[None, None] * leaf_tex)
        half = outline[: len(outline) // 2]          # one half a bit darker: light from one side
        leaves.polygon(np.concatenate([half, [base]]), col * 0.8, 0.5)
        rib_end = base + ln * 0.85 * np.array([np.cos(theta), np.sin(theta)])
        leaves.polyline(np.stack([base, rib_end]), max(1.0, 0.6 * S), np.clip(col * 1.3, 0, 1), 0.5)
        anchors.append(base)
        lengths.append(ln)
    flower = None
    if variant == "stem" and rng.random() < 0.55:
        petal_col = hsv(rng.choice([0.0, 0.08, 0.15, 0.8, 0.9, 0.6]) + rng.normal(0, 0.02),
                        rng.uniform(0.0, 0.9), rng.uniform(0.75, 1.0))
        r = rng.uniform(0.035, 0.07) * H
        npet = int(rng.integers(5, 13))
        ph = rng.uniform(0, np.pi)
        for i in range(npet):
            a = ph + 2 * np.pi * i / npet
            c = tip + 0.55 * r * np.array([np.cos(a), np.sin(a)])
            leaves.ellipse(c, (0.55 * r, 0.22 * r), np.degrees(a), jitter_colour(rng, petal_col, 0.05)[None, None] * leaf_tex)
        leaves.ellipse(tip, (0.3 * r, 0.3 * r), 0, hsv(rng.uniform(0.08, 0.15), 0.8, rng.uniform(0.3, 0.8)))
        anchors.append(tip)
        lengths.append(r)
        flower = {"radius": float(r), "petals": npet}
    b.objects[obj].update(num_leaves=n_leaves, num_twigs=n_twigs, leaf_shape=shape, flower=flower)

    # Modes: two cantilever bending modes (beam frequency ratio (b2/b1)^2 ~ 6.27, jittered)
    # shared by stem and leaves, plus three leaf-flutter modes acting on the leaf layer only.
    zeta = rng.uniform(0.03, 0.15)
    sway = []
    for n, (f, g) in enumerate([(f1, 1.0), (min(f1 * 6.27 * rng.uniform(0.8, 1.2), 4.5), 0.3)]):
        field = M.cantilever(b.X, b.Y, root, tip, n, reach=0.35 * length)
        sway.append(b.add_mode(obj, field, f, zeta * rng.uniform(0.8, 1.3), "sway", gain=g,
                               kind=f"cantilever{n + 1}"))
    tip_std = wind * rng.uniform(1.5, 4.0) * S * (length / (0.6 * H)) ** 0.5
    b.targets[(obj, "sway")] = tip_std
    flut = []
    assign = rng.integers(0, 3, size=len(anchors))
    signs = rng.choice([-1.0, 1.0], size=len(anchors))
    for j, field in enumerate(M.flutter(b.X, b.Y, anchors, lengths, signs, assign, 3)):
        if (assign == j).any():
            flut.append(b.add_mode(obj, field, rng.uniform(1.0, 4.0), rng.uniform(0.05, 0.2), "flutter",
                                   kind="leaf_flutter"))
    b.targets[(obj, "flutter")] = wind ** 0.7 * rng.uniform(0.03, 0.08)   # radians
    b.add_layer(obj, "stem", stem, sway, depth)
    b.add_layer(obj, "leaves", leaves, sway + flut, depth + 1e-3)


# -- grass -----------------------------------------------------------------------------------

def add_grass(b: SceneBuilder, ground_y: float, wind: float, depth: float):
    rng, S, P, W, H = b.rng, b.S, b.P, b.W, b.H
    if rng.random() < 0.5:
        xa, xb = 0.0, float(b.Wc)
    else:
        span = rng.uniform(0.3, 0.7) * W
        xa = rng.uniform(0, W - span) + P
        xb = xa + span
    base_y = min(ground_y + rng.uniform(0.3, 1.0) * (b.Hc - P - ground_y) + 0.05 * H, b.Hc - 1.0)
    height = rng.uniform(0.1, 0.3) * H
    count = int((xb - xa) * rng.uniform(0.6, 1.6) / S)
    obj = b.new_object("grass", x_range=[float(xa - P), float(xb - P)], base_y=float(base_y - P),
                       blade_height=float(height), num_blades=count)
    hue = rng.uniform(0.17, 0.33)
    col = hsv(hue, rng.uniform(0.4, 0.8), rng.uniform(0.3, 0.6))
    dry = hsv(rng.uniform(0.1, 0.16), rng.uniform(0.4, 0.7), rng.uniform(0.5, 0.75))
    g = np.clip((base_y - b.Y) / height, 0, 1)[..., None]
    tex = b.texture(rng.uniform(2, 5) * S, aspect=4.0, lo=0.75, hi=1.2, octaves=3)[..., None]
    shade = (0.45 + 0.55 * g) * tex
    painter = Painter(b.Hc, b.Wc)
    lean = rng.normal(0, 0.15)
    for _ in range(count):
        bx = rng.uniform(xa, xb)
        by = base_y + rng.uniform(-0.04, 0.04) * H
        h = height * rng.uniform(0.55, 1.3)
        bend = (lean + rng.normal(0, 0.25)) * h
        tipp = np.array([bx + bend, by - h])
        ctrl = np.array([bx + 0.1 * bend, by - 0.6 * h])
        c = bezier([bx, by], ctrl, tipp, 10)
        blade_col = jitter_colour(rng, dry if rng.random() < 0.15 else col, 0.1)
        painter.polygon(tapered_outline(c, rng.uniform(1.0, 2.6) * S, 0.15), blade_col[None, None] * shade)
    fg = rng.uniform(0.5, 2.0)
    zeta = rng.uniform(0.05, 0.2)
    ids = [b.add_mode(obj, M.grass_wave(b.X, b.Y, base_y, height, 0.0, 0.0), fg, zeta, "sway",
                      kind="grass_sway")]
    lam = rng.uniform(0.5, 1.5) * W
    fw = fg * rng.uniform(0.9, 1.25)
    k = 2 * np.pi / lam
    for ph, delay in ((0.0, 0.0), (-np.pi / 2, 0.25 / fw)):
        ids.append(b.add_mode(obj, M.grass_wave(b.X, b.Y, base_y, height, k, ph), fw, zeta, "sway",
                              gain=0.8, delay=delay, kind="grass_wave"))
    b.objects[obj].update(wavelength_px=float(lam))
    b.targets[(obj, "sway")] = wind * rng.uniform(0.05, 0.12) * height
    b.add_layer(obj, "blades", painter, ids, depth)


# -- candles ---------------------------------------------------------------------------------

def add_candle(b: SceneBuilder, ground_y: float, wind: float, depth: float):
    rng, S, P, W, H = b.rng, b.S, b.P, b.W, b.H
    cw = rng.uniform(0.06, 0.12) * H
    ch = rng.uniform(0.12, 0.4) * H
    x = rng.uniform(0.1, 0.9) * W + P
    ys = min(ground_y + rng.uniform(0.05, 0.6) * (b.Hc - P - ground_y), b.Hc - P - 1)
    hf = cw * rng.uniform(1.3, 2.2)
    wf = hf * rng.uniform(0.35, 0.5)
    obj = b.new_object("candle", x=float(x - P), base_y=float(ys - P), width=float(cw),
                       height=float(ch), flame_height=float(hf))
    body = Painter(b.Hc, b.Wc)
    wax = hsv(rng.uniform(0, 1), rng.uniform(0.0, 0.5), rng.uniform(0.7, 0.95))
    cyl = np.clip(np.cos(np.clip((b.X - x) / (cw / 2), -1, 1) * 1.2), 0.2, 1)
    wax_fill = wax[None, None] * (0.55 + 0.45 * cyl)[..., None] * b.texture(4 * S, lo=0.9, hi=1.05, octaves=2)[..., None]
    top = ys - ch
    body.polygon(np.array([[x - cw / 2, top], [x + cw / 2, top], [x + cw / 2, ys], [x - cw / 2, ys]]), wax_fill)
    body.ellipse((x, top), (cw / 2, max(1.0, 0.12 * cw)), 0, np.clip(wax * 1.1, 0, 1))
    wick_top = top - 0.35 * cw
    body.polyline(np.array([[x, top], [x + 0.03 * cw, wick_top]]), max(1.0, 0.08 * cw), np.array([0.1, 0.08, 0.05]))
    # Warm static glow on the background around the flame.
    fy = wick_top - 0.45 * hf
    glow = np.exp(-((b.X - x) ** 2 + (b.Y - fy) ** 2) / (2 * (1.5 * hf) ** 2))[..., None]
    b.background = np.clip(b.background + glow * np.array([0.35, 0.22, 0.06]) * rng.uniform(0.4, 1.0), 0, 1)
    # Flame: teardrop with a warm gradient, opaque inside so its warp is exact.
    base = wick_top + 0.2 * hf
    v = (base - b.Y) / hf
    vv = np.clip(v, 0, 1)
    prof = np.sqrt(np.clip((v + 0.0) / 0.35, 0, 1)) * np.clip(1 - vv, 0, 1) ** 0.8
    prof = prof / 0.75
    half = 0.5 * wf * prof
    d = np.abs(b.X - x)
    alpha = np.clip(half - d + 0.5, 0, 1) * ((v >= -0.02) & (v <= 1.02))
    rel = np.clip(d / np.maximum(half, 1e-3), 0, 1)
    core = np.array([1.0, 0.97, 0.85]); mid = np.array([1.0, 0.78, 0.28]); edge = np.array([0.95, 0.42, 0.08])
    t = np.clip(rel * 0.7 + vv * 0.6, 0, 1)[..., None]
    colour = np.where(t < 0.5, core + (mid - core) * (t / 0.5), mid + (edge - mid) * ((t - 0.5) / 0.5))
    blue = np.clip(1 - v / 0.15, 0, 1)[..., None] * (rel[..., None] > 0.5) * 0.6
    colour = colour * (1 - blue) + np.array([0.35, 0.45, 1.0]) * blue
    flame = Painter(b.Hc, b.Wc)
    flame.rgb = (colour * alpha[..., None]).astype(np.float32)
    flame.alpha = alpha.astype(np.float32)
    wick = np.array([x, base])
    ids = [b.add_mode(obj, M.flame(b.X, b.Y, wick, hf, "lateral"), rng.uniform(2.0, 5.0), rng.uniform(0.05, 0.2),
                      "flicker", source="flicker", kind="flame_lateral")]
    ids.append(b.add_mode(obj, M.flame(b.X, b.Y, wick, hf, "lateral2"), rng.uniform(3.5, 8.0), rng.uniform(0.05, 0.2),
                          "flicker", source="flicker", gain=0.5, kind="flame_lateral2"))
    ids.append(b.add_mode(obj, M.flame(b.X, b.Y, wick, hf, "stretch"), rng.uniform(3.0, 8.0), rng.uniform(0.05, 0.2),
                          "flicker", source="flicker", gain=0.6, kind="flame_stretch"))
    b.targets[(obj, "flicker")] = hf * (0.02 + 0.06 * wind ** 0.5) * rng.uniform(0.7, 1.3)
    b.add_layer(obj, "body", body, [], depth)
    b.add_layer(obj, "flame", flame, ids, depth + 1e-3)


# -- cloth -----------------------------------------------------------------------------------

def add_cloth(b: SceneBuilder, ground_y: float, wind: float, depth: float):
    rng, S, P, W, H = b.rng, b.S, b.P, b.W, b.H
    cwid = rng.uniform(0.18, 0.45) * W
    chgt = rng.uniform(0.35, 0.75) * H
    x0 = rng.uniform(-0.05, 1.0) * (W - cwid) + P
    y0 = rng.uniform(0.0, 0.25) * H + P
    pattern = str(rng.choice(["stripes_v", "stripes_h", "checker", "dots", "plain"]))
    obj = b.new_object("cloth", x=float(x0 - P), y=float(y0 - P), width=float(cwid), height=float(chgt),
                       pattern=pattern)
    cols = [hsv(rng.uniform(0, 1), rng.uniform(0.2, 0.8), rng.uniform(0.35, 0.95)) for _ in range(3)]
    X, Y = b.X - x0, b.Y - y0
    period = rng.uniform(0.08, 0.25) * cwid
    if pattern == "stripes_v":
        idx = (np.floor(X / period) % 3).astype(int)
    elif pattern == "stripes_h":
        idx = (np.floor(Y / period) % 2).astype(int)
    elif pattern == "checker":
        idx = ((np.floor(X / period) + np.floor(Y / period)) % 2).astype(int)
    elif pattern == "dots":
        dd = (np.mod(X, period) - period / 2) ** 2 + (np.mod(Y, period) - period / 2) ** 2
        idx = (dd < (0.25 * period) ** 2).astype(int)
    else:
        idx = np.zeros(X.shape, int)
    base = np.stack(cols)[idx]
    base = cv2.GaussianBlur(base.astype(np.float32), (0, 0), 0.6 * S)
    fold_l = rng.uniform(0.1, 0.3) * cwid
    folds = 0.82 + 0.18 * np.cos(2 * np.pi * X / fold_l + rng.uniform(0, 6.3))
    weave = b.texture(rng.uniform(1.0, 2.5) * S, lo=0.85, hi=1.1, octaves=2)
    fill = base * (folds * weave)[..., None]
    xs = np.linspace(x0, x0 + cwid, 24)
    hem = y0 + chgt + rng.uniform(0, 0.04) * H * np.sin(np.linspace(0, rng.uniform(2, 8), 24))
    poly = np.concatenate([[[x0, y0], [x0 + cwid, y0]], np.stack([xs[::-1], hem[::-1]], 1)])
    painter = Painter(b.Hc, b.Wc)
    painter.polygon(poly, fill)
    rod = Painter(b.Hc, b.Wc)
    rcol = hsv(rng.uniform(0.05, 0.12), rng.uniform(0.0, 0.6), rng.uniform(0.15, 0.5))
    th = max(2.0, rng.uniform(0.015, 0.03) * H)
    ext = 0.04 * W
    rod.polyline(np.array([[x0 - ext, y0], [x0 + cwid + ext, y0]]), th, rcol)
    rod.polyline(np.array([[x0 - ext, y0 - 0.3 * th], [x0 + cwid + ext, y0 - 0.3 * th]]), max(1.0, th * 0.3),
                 np.clip(rcol * 1.6 + 0.1, 0, 1), 0.7)
    for ex in (x0 - ext, x0 + cwid + ext):
        rod.ellipse((ex, y0), (th * 0.9, th * 0.9), 0, rcol)
    fp = rng.uniform(0.3, 0.9)
    zeta = rng.uniform(0.04, 0.2)
    ids = [b.add_mode(obj, M.cloth(b.X, b.Y, x0, y0, cwid, chgt, "pendulum"), fp, zeta, "sway", kind="cloth_pendulum")]
    for n in (1, 2, 3):
        f = min(fp * (1 + 0.35 * n) * rng.uniform(0.9, 1.1), 1.8)
        ids.append(b.add_mode(obj, M.cloth(b.X, b.Y, x0, y0, cwid, chgt, "billow", n, rng.uniform(0, 6.3)), f,
                              zeta * rng.uniform(0.8, 1.2), "sway", gain=0.6 / n, kind=f"cloth_billow{n}"))
    b.targets[(obj, "sway")] = wind * rng.uniform(1.5, 4.0) * S
    b.add_layer(obj, "cloth", painter, ids, depth)
    b.add_layer(obj, "rod", rod, [], depth + 1e-3)


def build_scene(b: SceneBuilder, wind: float) -> dict:
    """Random setting and objects; fills `b` and returns the scene description."""
    rng = b.rng
    setting = "outdoor" if rng.random() < 0.6 else "indoor"
    ground_y = rng.uniform(0.55, 0.8) * b.H + b.P
    desc = draw_background(b, setting, ground_y)
    plan = []
    if setting == "outdoor":
        plan += ["plant"] * int(rng.integers(1, 5))
        plan += ["grass"] * (int(rng.integers(1, 3)) if rng.random() < 0.6 else 0)
        plan += ["cloth"] * int(rng.random() < 0.3)
        plan += ["candle"] * int(rng.random() < 0.2)     # garden candles / lanterns
    else:
        plan += ["candle"] * (int(rng.integers(1, 4)) if rng.random() < 0.85 else 0)
        plan += ["cloth"] * int(rng.random() < 0.6)
        plan += ["plant"] * int(rng.integers(0, 3))
        plan += ["grass"] * int(rng.random() < 0.15)
    if not plan:
        plan = ["plant"]
    for kind in plan:
        if kind == "plant":
            variant = "branch" if (setting == "outdoor" and rng.random() < 0.4) else "stem"
            depth = rng.uniform(0.1, 0.9)
            add_plant(b, variant, ground_y, wind, depth)
        elif kind == "grass":
            add_grass(b, ground_y, wind, rng.uniform(0.7, 1.0))
        elif kind == "candle":
            add_candle(b, ground_y, wind, rng.uniform(0.2, 0.8))
        else:
            add_cloth(b, ground_y, wind, rng.uniform(0.0, 0.5))
    b.layers.sort(key=lambda l: l.depth)
    return desc
