"""Cloth (curtains, laundry, flags), candles, and static rigid objects (rocks, fences, buildings,
walls, poles, furniture).

Rigid objects are layers without modes: they occlude what is behind them and never move, so a
picture shows things that move next to things that do not. Cloth and flames move with sizes
setting their frequency (long cloth swings slowly, small flags and flames flicker faster).
"""

from __future__ import annotations

import cv2
import numpy as np

from data_pipelines.synth import modes as M
from data_pipelines.synth import photos
from data_pipelines.synth.noise import hsv, jitter_colour
from data_pipelines.synth.paint import Painter

RIGID_KINDS = ("rock", "fence", "building", "wall", "pole", "furniture")


def _detail(b, kind, scale, contrast, angle=0.0):
    return photos.detail(b.photo(kind, scale, angle), contrast)


def _box(x0, y0, x1, y1):
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)


def _shadow(b, centre, axes, strength):
    """Soft contact shadow painted into the (static) background."""
    X, Y = b.X, b.Y
    d = ((X - centre[0]) / max(axes[0], 1e-3)) ** 2 + ((Y - centre[1]) / max(axes[1], 1e-3)) ** 2
    b.background *= (1.0 - strength * np.exp(-2.0 * d))[..., None]


# -- rigid objects ---------------------------------------------------------------------------

def add_rock(b, ground_y: float, depth: float):
    rng, S, P, W, H = b.rng, b.S, b.P, b.W, b.H
    r = rng.uniform(0.05, 0.18) * H
    cx = rng.uniform(0.0, 1.0) * W + P
    bottom = min(ground_y + rng.uniform(0.05, 1.0) * (b.Hc - P - ground_y) + 0.3 * r, b.Hc - 1.0)
    flat = rng.uniform(0.5, 0.85)
    ang = np.linspace(0, 2 * np.pi, 25)[:-1]
    rad = r * (1 + 0.18 * np.sin(ang * rng.integers(2, 5) + rng.uniform(0, 6.3)) + rng.uniform(-0.08, 0.08, 24))
    pts = np.stack([cx + rad * np.cos(ang) * rng.uniform(1.0, 1.6), bottom - flat * r + flat * rad * np.sin(ang)], 1)
    pts[:, 1] = np.minimum(pts[:, 1], bottom)
    col = hsv(rng.uniform(0.05, 0.15), rng.uniform(0.05, 0.3), rng.uniform(0.35, 0.65))
    top_y = float(pts[:, 1].min())
    lx, ly = rng.uniform(-0.7, 0.7), -1.0
    shade = 0.7 + 0.45 * np.clip((lx * (b.X - cx) + ly * (b.Y - (top_y + bottom) / 2)) / (r + 1e-6), -1, 1)
    fill = col[None, None] * _detail(b, "stone", rng.uniform(0.3, 1.0), rng.uniform(0.7, 1.2)) * shade[..., None]
    _shadow(b, (cx, bottom), (1.3 * r, 0.25 * r), 0.45)
    p = Painter(b.Hc, b.Wc)
    p.polygon(pts, np.clip(fill, 0, 1))
    obj = b.new_object("rock", x=float(cx - P), bottom=float(bottom - P), radius=float(r))
    b.add_layer(obj, "rock", p, [], depth)


def add_fence(b, ground_y: float, depth: float):
    rng, S, P, W, H = b.rng, b.S, b.P, b.W, b.H
    base = min(ground_y + rng.uniform(0.0, 0.5) * (b.Hc - P - ground_y), b.Hc - P - 0.02 * H)
    h = rng.uniform(0.15, 0.35) * H
    pw = rng.uniform(0.015, 0.03) * H
    gap = rng.uniform(0.08, 0.16) * W
    xa = rng.uniform(-0.1, 0.5) * W + P
    xb = min(xa + rng.uniform(0.4, 1.2) * W, b.Wc)
    col = hsv(rng.uniform(0.05, 0.12), rng.uniform(0.1, 0.5), rng.uniform(0.3, 0.7))
    fill = np.clip(col[None, None] * _detail(b, "wood", rng.uniform(0.3, 0.8), 1.0, np.pi / 2), 0, 1)
    p = Painter(b.Hc, b.Wc)
    for yy in (base - 0.35 * h, base - 0.8 * h):
        p.polygon(_box(xa, yy - 0.4 * pw, xb, yy + 0.4 * pw), fill * 0.85)
    xs = np.arange(xa, xb, gap)
    for x in xs:
        p.polygon(np.array([[x - pw / 2, base], [x - pw / 2, base - h], [x, base - h - 0.6 * pw],
                            [x + pw / 2, base - h], [x + pw / 2, base]]), fill)
    obj = b.new_object("fence", base_y=float(base - P), height=float(h), num_posts=len(xs))
    b.add_layer(obj, "fence", p, [], depth)


def add_building(b, ground_y: float, depth: float):
    rng, S, P, W, H = b.rng, b.S, b.P, b.W, b.H
    base = ground_y - rng.uniform(-0.05, 0.12) * H
    x = rng.uniform(-0.2, 0.8) * W + P
    p = Painter(b.Hc, b.Wc)
    blocks = []
    for _ in range(int(rng.integers(1, 4))):
        bw = rng.uniform(0.15, 0.4) * W
        bh = rng.uniform(0.2, 0.55) * H
        wall = hsv(rng.uniform(0.0, 0.15), rng.uniform(0.05, 0.35), rng.uniform(0.45, 0.85))
        fill = wall[None, None] * _detail(b, "facade", rng.uniform(0.2, 0.6), rng.uniform(0.2, 0.6))
        if rng.random() < 0.4:                                   # brick courses
            course = rng.uniform(0.012, 0.02) * H
            row = np.floor((b.Y - base) / course)
            joint = (np.abs(((b.Y - base) / course) % 1.0 - 0.5) > 0.42) | \
                    (np.abs(((b.X - x + 0.5 * course * 2.2 * (row % 2)) / (2.2 * course)) % 1.0 - 0.5) > 0.45)
            fill = fill * np.where(joint, 0.75, 1.0)[..., None]
        top = base - bh
        p.polygon(_box(x, top, x + bw, base), np.clip(fill, 0, 1))
        if rng.random() < 0.6:                                   # pitched roof
            roof = hsv(rng.uniform(0.0, 0.08), rng.uniform(0.3, 0.7), rng.uniform(0.2, 0.45))
            rf = roof[None, None] * _detail(b, "stone", rng.uniform(0.3, 0.6), 0.5)
            apex = [x + bw * rng.uniform(0.3, 0.7), top - rng.uniform(0.1, 0.3) * bw]
            p.polygon(np.array([[x - 0.03 * bw, top], apex, [x + 1.03 * bw, top]]), np.clip(rf, 0, 1))
        nx, ny = int(max(1, bw // (0.09 * H))), int(max(1, bh // (0.12 * H)))
        ww, wh = 0.45 * bw / nx, 0.45 * bh / ny
        glass = hsv(rng.uniform(0.55, 0.65), rng.uniform(0.1, 0.4), rng.uniform(0.1, 0.35))
        for i in range(nx):
            for j in range(ny):
                cx, cy = x + bw * (i + 0.5) / nx, top + bh * (j + 0.5) / ny
                fw, fh = ww / 2 + 0.8 * S, wh / 2 + 0.8 * S                 # window frame
                p.polygon(_box(cx - fw, cy - fh, cx + fw, cy + fh), np.clip(wall * 1.2, 0, 1))
                p.polygon(_box(cx - ww / 2, cy - wh / 2, cx + ww / 2, cy + wh / 2), jitter_colour(rng, glass, 0.05))
        blocks.append([float(x - P), float(top - P), float(bw), float(bh)])
        x += bw * rng.uniform(0.9, 1.3)
    obj = b.new_object("building", base_y=float(base - P), blocks=blocks)
    b.add_layer(obj, "building", p, [], depth)


def add_wall(b, ground_y: float, depth: float):
    rng, S, P, W, H = b.rng, b.S, b.P, b.W, b.H
    base = min(ground_y + rng.uniform(0.1, 0.6) * (b.Hc - P - ground_y), b.Hc - P)
    h = rng.uniform(0.08, 0.22) * H
    xa = rng.uniform(-0.1, 0.4) * W + P
    xb = min(xa + rng.uniform(0.4, 1.1) * W, b.Wc)
    col = hsv(rng.uniform(0.03, 0.12), rng.uniform(0.1, 0.45), rng.uniform(0.35, 0.7))
    fill = col[None, None] * _detail(b, "stone", rng.uniform(0.4, 0.9), rng.uniform(0.6, 1.0))
    course = rng.uniform(0.025, 0.05) * H
    rows = (b.Y - base) / course
    stag = np.floor(rows) % 2 * 0.5
    joint = (np.abs(rows % 1.0 - 0.5) > 0.43) | (np.abs(((b.X - xa) / (2.0 * course) + stag) % 1.0 - 0.5) > 0.46)
    fill = fill * np.where(joint, 0.65, 1.0)[..., None]
    p = Painter(b.Hc, b.Wc)
    p.polygon(_box(xa, base - h, xb, base), np.clip(fill, 0, 1))
    p.polygon(_box(xa - 0.01 * W, base - h - 0.3 * course, xb + 0.01 * W, base - h + 0.3 * course),
              np.clip(col * 1.15, 0, 1))                                  # coping stones
    obj = b.new_object("wall", base_y=float(base - P), height=float(h), x_range=[float(xa - P), float(xb - P)])
    b.add_layer(obj, "wall", p, [], depth)


def add_pole(b, x: float, top: float, base: float, width: float, depth: float, name: str = "pole") -> int:
    rng = b.rng
    col = hsv(rng.uniform(0.0, 0.12), rng.uniform(0.0, 0.4), rng.uniform(0.2, 0.6))
    fill = np.clip(col[None, None] * _detail(b, "wood", rng.uniform(0.3, 0.6), 0.6, np.pi / 2), 0, 1)
    p = Painter(b.Hc, b.Wc)
    p.polygon(_box(x - width / 2, top, x + width / 2, base), fill)
    p.ellipse((x, top), (0.8 * width, 0.8 * width), 0, np.clip(col * 1.3, 0, 1))
    obj = b.new_object("pole", x=float(x - b.P), top=float(top - b.P), base=float(base - b.P), role=name)
    b.add_layer(obj, name, p, [], depth)
    return obj


def add_table(b, top_y: float, depth: float):
    """Indoor furniture: a table top (candles and pots stand on it) over the floor."""
    rng, S, P, W, H = b.rng, b.S, b.P, b.W, b.H
    xa = rng.uniform(-0.2, 0.3) * W + P
    xb = min(xa + rng.uniform(0.5, 1.2) * W, b.Wc)
    th = rng.uniform(0.03, 0.06) * H
    col = hsv(rng.uniform(0.04, 0.1), rng.uniform(0.3, 0.7), rng.uniform(0.2, 0.55))
    fill = np.clip(col[None, None] * _detail(b, "wood", rng.uniform(0.3, 0.7), 1.0), 0, 1)
    p = Painter(b.Hc, b.Wc)
    p.polygon(_box(xa, top_y, xb, top_y + th), fill)
    p.polygon(_box(xa, top_y + th, xb, top_y + th + 0.5 * th), fill * 0.6)
    for lx in (xa + 0.05 * (xb - xa), xb - 0.05 * (xb - xa) - th):
        p.polygon(_box(lx, top_y + th, lx + th, b.Hc), fill * 0.7)
    obj = b.new_object("furniture", item="table", top_y=float(top_y - P), x_range=[float(xa - P), float(xb - P)])
    b.add_layer(obj, "table", p, [], depth)
    return xa, xb


def add_pot(b, x: float, top_y: float, depth: float):
    """A flower pot standing on `top_y` (static), hiding the base of a house plant."""
    rng, H = b.rng, b.H
    w, h = rng.uniform(0.06, 0.11) * H, rng.uniform(0.07, 0.12) * H
    col = hsv(rng.uniform(0.0, 0.1), rng.uniform(0.3, 0.8), rng.uniform(0.3, 0.75))
    fill = np.clip(col[None, None] * _detail(b, "stone", rng.uniform(0.3, 0.7), 0.4), 0, 1)
    p = Painter(b.Hc, b.Wc)
    p.polygon(np.array([[x - w / 2, top_y - h], [x + w / 2, top_y - h], [x + 0.38 * w, top_y],
                        [x - 0.38 * w, top_y]]), fill)
    p.polygon(_box(x - 0.55 * w, top_y - h - 0.15 * h, x + 0.55 * w, top_y - h + 0.1 * h), np.clip(fill * 1.15, 0, 1))
    obj = b.new_object("furniture", item="pot", x=float(x - b.P), top_y=float(top_y - b.P))
    b.add_layer(obj, "pot", p, [], depth)
    return top_y - 0.8 * h


# -- candles ---------------------------------------------------------------------------------

def add_candle(b, surface_y: float, wind: float, depth: float, x=None):
    rng, S, P, W, H = b.rng, b.S, b.P, b.W, b.H
    cw = rng.uniform(0.05, 0.1) * H
    ch = rng.uniform(0.1, 0.35) * H
    x = rng.uniform(0.1, 0.9) * W + P if x is None else x
    ys = surface_y + rng.uniform(0.0, 0.04) * H
    hf = cw * rng.uniform(1.4, 2.4)
    wf = hf * rng.uniform(0.35, 0.5)
    obj = b.new_object("candle", x=float(x - P), base_y=float(ys - P), width=float(cw), height=float(ch),
                       flame_height=float(hf))
    body = Painter(b.Hc, b.Wc)
    wax = hsv(rng.uniform(0, 1), rng.uniform(0.0, 0.5), rng.uniform(0.7, 0.95))
    cyl = np.clip(np.cos(np.clip((b.X - x) / (cw / 2), -1, 1) * 1.2), 0.2, 1)
    wax_fill = wax[None, None] * (0.55 + 0.45 * cyl)[..., None] * _detail(b, "stone", 0.5, 0.1)
    top = ys - ch
    body.polygon(_box(x - cw / 2, top, x + cw / 2, ys), np.clip(wax_fill, 0, 1))
    body.ellipse((x, top), (cw / 2, max(1.0, 0.12 * cw)), 0, np.clip(wax * 1.1, 0, 1))
    wick_top = top - 0.35 * cw
    body.polyline(np.array([[x, top], [x + 0.03 * cw, wick_top]]), max(1.0, 0.08 * cw), np.array([0.1, 0.08, 0.05]))
    fy = wick_top - 0.45 * hf
    glow = np.exp(-((b.X - x) ** 2 + (b.Y - fy) ** 2) / (2 * (1.5 * hf) ** 2))[..., None]
    b.background = np.clip(b.background + glow * np.array([0.35, 0.22, 0.06]) * rng.uniform(0.4, 1.0), 0, 1)
    # Flame: teardrop with a warm gradient (opaque inside so its warp is exact), photo-modulated.
    base = wick_top + 0.2 * hf
    v = (base - b.Y) / hf
    vv = np.clip(v, 0, 1)
    prof = np.sqrt(np.clip(v / 0.35, 0, 1)) * np.clip(1 - vv, 0, 1) ** 0.8 / 0.75
    half = 0.5 * wf * prof
    d = np.abs(b.X - x)
    alpha = np.clip(half - d + 0.5, 0, 1) * ((v >= -0.02) & (v <= 1.02))
    rel = np.clip(d / np.maximum(half, 1e-3), 0, 1)
    core, mid, edge = np.array([1.0, 0.97, 0.85]), np.array([1.0, 0.78, 0.28]), np.array([0.95, 0.42, 0.08])
    t = np.clip(rel * 0.7 + vv * 0.6, 0, 1)[..., None]
    colour = np.where(t < 0.5, core + (mid - core) * (t / 0.5), mid + (edge - mid) * ((t - 0.5) / 0.5))
    colour = colour * _detail(b, "warm", rng.uniform(0.3, 0.6), 0.25)
    blue = np.clip(1 - v / 0.15, 0, 1)[..., None] * (rel[..., None] > 0.5) * 0.6
    colour = np.clip(colour * (1 - blue) + np.array([0.35, 0.45, 1.0]) * blue, 0, 1)
    flame = Painter(b.Hc, b.Wc)
    flame.rgb = (colour * alpha[..., None]).astype(np.float32)
    flame.alpha = alpha.astype(np.float32)
    wick = np.array([x, base])
    f0 = float(np.clip(3.5 * (12.0 * S / hf) ** 0.5, 2.0, 8.0)) * rng.uniform(0.85, 1.15)
    ids = [b.add_mode(obj, M.flame(b.X, b.Y, wick, hf, "lateral"), f0, rng.uniform(0.05, 0.2),
                      "flicker", source="flicker", kind="flame_lateral")]
    ids.append(b.add_mode(obj, M.flame(b.X, b.Y, wick, hf, "lateral2"), min(1.7 * f0, 8.5), rng.uniform(0.05, 0.2),
                          "flicker", source="flicker", gain=0.5, kind="flame_lateral2"))
    ids.append(b.add_mode(obj, M.flame(b.X, b.Y, wick, hf, "stretch"), min(f0 * rng.uniform(1.1, 1.8), 8.5),
                          rng.uniform(0.05, 0.2), "flicker", source="flicker", gain=0.6, kind="flame_stretch"))
    b.targets[(obj, "flicker")] = hf * (0.06 + 0.08 * wind ** 0.5) * rng.uniform(0.8, 1.25)
    b.add_layer(obj, "body", body, [], depth)
    b.add_layer(obj, "flame", flame, ids, depth + 1e-3)


# -- cloth -----------------------------------------------------------------------------------

def _pattern(b, x0, y0, width, height):
    rng, S = b.rng, b.S
    pattern = str(rng.choice(["stripes_v", "stripes_h", "checker", "dots", "plain"]))
    cols = [hsv(rng.uniform(0, 1), rng.uniform(0.2, 0.8), rng.uniform(0.35, 0.95)) for _ in range(3)]
    X, Y = b.X - x0, b.Y - y0
    period = rng.uniform(0.08, 0.25) * width
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
    base = cv2.GaussianBlur(np.stack(cols)[idx].astype(np.float32), (0, 0), 0.6 * S)
    weave = _detail(b, str(rng.choice(["facade", "wood", "leaf"])), rng.uniform(0.3, 0.8), rng.uniform(0.1, 0.25))
    return base * weave, pattern


def add_cloth(b, variant: str, wind: float, depth: float, x0=None, y0=None, width=None, height=None):
    """'curtain' (indoor, from a rod), 'laundry' (outdoor, from a line): pendulum + billow modes,
    slower for longer cloth; the rod/line is static."""
    rng, S, P, W, H = b.rng, b.S, b.P, b.W, b.H
    cwid = width if width is not None else rng.uniform(0.18, 0.4) * W
    chgt = height if height is not None else rng.uniform(0.35, 0.7) * H
    x0 = x0 if x0 is not None else rng.uniform(-0.05, 1.0) * (W - cwid) + P
    y0 = y0 if y0 is not None else rng.uniform(0.0, 0.25) * H + P
    fill, pattern = _pattern(b, x0, y0, cwid, chgt)
    fold_l = rng.uniform(0.08, 0.2) * cwid if variant == "curtain" else rng.uniform(0.15, 0.3) * cwid
    X = b.X - x0
    fill = fill * (0.72 + 0.28 * np.cos(2 * np.pi * X / fold_l + rng.uniform(0, 6.3)))[..., None]
    obj = b.new_object("cloth", variant=variant, x=float(x0 - P), y=float(y0 - P), width=float(cwid),
                       height=float(chgt), pattern=pattern)
    xs = np.linspace(x0, x0 + cwid, 24)
    hem = y0 + chgt + rng.uniform(0, 0.04) * H * np.sin(np.linspace(0, rng.uniform(2, 8), 24))
    painter = Painter(b.Hc, b.Wc)
    painter.polygon(np.concatenate([[[x0, y0], [x0 + cwid, y0]], np.stack([xs[::-1], hem[::-1]], 1)]),
                    np.clip(fill, 0, 1))
    rod = Painter(b.Hc, b.Wc)
    rcol = hsv(rng.uniform(0.05, 0.12), rng.uniform(0.0, 0.6), rng.uniform(0.15, 0.5))
    th = max(2.0 * S, rng.uniform(0.012, 0.025) * H) if variant == "curtain" else max(1.0, 0.006 * H)
    ext = 0.06 * W
    rod.polyline(np.array([[x0 - ext, y0], [x0 + cwid + ext, y0]]), th, rcol)
    if variant == "curtain":
        for ex in (x0 - ext, x0 + cwid + ext):
            rod.ellipse((ex, y0), (th * 0.9, th * 0.9), 0, rcol)
    fp = float(np.clip(0.55 * (100.0 * S / chgt) ** 0.5, 0.25, 1.5)) * rng.uniform(0.85, 1.15)
    zeta = rng.uniform(0.05, 0.2)
    ids = [b.add_mode(obj, M.cloth(b.X, b.Y, x0, y0, cwid, chgt, "pendulum"), fp, zeta, "sway",
                      kind="cloth_pendulum")]
    for n in (1, 2, 3):
        # a fold of half-width cwid/n shears the cloth by ~n pi/cwid per px: narrow cloth folds less
        g = 0.7 / n * min(1.0, cwid / (n * 60.0 * S))
        if g < 0.1:
            break
        f = min(fp * (1 + 0.35 * n) * rng.uniform(0.9, 1.1), 2.5)
        ids.append(b.add_mode(obj, M.cloth(b.X, b.Y, x0, y0, cwid, chgt, "billow", n, rng.uniform(0, 6.3)), f,
                              zeta * rng.uniform(0.8, 1.2), "sway", gain=g, kind=f"cloth_billow{n}"))
    b.targets[(obj, "sway")] = wind * rng.uniform(3.5, 6.0) * S * (chgt / (100.0 * S)) ** 0.5
    b.add_layer(obj, "cloth", painter, ids, depth)
    b.add_layer(obj, "rod", rod, [], depth + 1e-3)


def add_flag(b, ground_y: float, wind: float, depth: float):
    """A flag on a static pole: an outward travelling wave (two mode pairs), faster for smaller
    flags, amplitude growing from the pole to the free end."""
    rng, S, P, W, H = b.rng, b.S, b.P, b.W, b.H
    side = float(rng.choice([-1.0, 1.0]))
    px = b.place_x(rng.uniform(0.1, 0.9) * W + P)
    base = min(ground_y + rng.uniform(0.0, 0.3) * (b.Hc - P - ground_y), b.Hc - P)
    top = P + rng.uniform(0.05, 0.3) * H
    length = rng.uniform(0.3, 0.5) * W
    fh = length * rng.uniform(0.5, 0.7)
    pw = max(1.5 * S, rng.uniform(0.012, 0.02) * H)
    add_pole(b, px, top - 0.02 * H, base, pw, depth, name="flagpole")
    obj = b.new_object("cloth", variant="flag", pole_x=float(px - P), top=float(top - P), width=float(length),
                       height=float(fh))
    x0 = px if side > 0 else px - length
    fill, pattern = _pattern(b, x0, top, length, fh)
    b.objects[obj]["pattern"] = pattern
    droop = rng.uniform(0.0, 0.12) * fh
    xs = np.linspace(0, length, 16)
    upper = np.stack([px + side * xs, top + droop * (xs / length) ** 2], 1)
    lower = np.stack([px + side * xs[::-1], top + fh + droop * (xs[::-1] / length) ** 2 * 0.5], 1)
    painter = Painter(b.Hc, b.Wc)
    painter.polygon(np.concatenate([upper, lower]), np.clip(fill, 0, 1))
    f = float(np.clip(1.3 * (60.0 * S / length) ** 0.5, 0.8, 3.5)) * rng.uniform(0.85, 1.15)
    zeta = rng.uniform(0.08, 0.2)
    ids = []
    for n, g in ((1, 1.0), (2, 0.3)):
        k = 2 * np.pi * n / (length * rng.uniform(1.4, 2.2))      # longer waves shear less
        for ph, delay in ((0.0, 0.0), (-np.pi / 2, 0.25 / (n * f))):
            field = M.flag_wave(b.X, b.Y, px, top, length, fh, side, k, ph)
            ids.append(b.add_mode(obj, field, n * f * rng.uniform(0.9, 1.1), zeta, "wave", gain=g, delay=delay,
                                  kind=f"flag_wave{n}"))
    b.targets[(obj, "wave")] = wind * rng.uniform(3.0, 5.0) * S * (length / (60.0 * S)) ** 0.5
    b.add_layer(obj, "flag", painter, ids, depth + 2e-3)
