"""Plants: trees, limbs reaching in from the frame edge, small stems with leaves and flowers, grass.

Motion follows what is drawn. Every woody axis (trunk, branch, stem, blade) is a cantilever whose
frequency and tip amplitude come from its visible length and thickness (`modes.sway_frequency`,
`modes.tip_amplitude`: big/thick sways slowly and little, small/thin faster and more). A branch
rides on its trunk's modes plus its own (windowed to the branch); the foliage adds twig jiggle
of leaf clusters and leaf flutter, so tips move more than bases and leaves more than the wood
carrying them. A whole plant is one layer (render cost grows with layer area, not content).
"""

from __future__ import annotations

import numpy as np

from data_pipelines.synth import modes as M
from data_pipelines.synth import photos
from data_pipelines.synth.noise import hsv
from data_pipelines.synth.paint import (Painter, bezier, leaf_outline, leaf_outlines, tapered_outline,
                                        tapered_outlines)

N_AXIS = 32          # centreline samples of a woody axis


def _unit(v):
    v = np.asarray(v, np.float64)
    return v / max(float(np.hypot(*v)), 1e-9)


def _rotate(v, a):
    c, s = np.cos(a), np.sin(a)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def _axis(root, direction, length, bend):
    direction = _unit(direction)
    nrm = np.array([-direction[1], direction[0]])
    ctrl = root + direction * length * 0.5 + nrm * bend * length
    return bezier(root, ctrl, root + direction * length, N_AXIS)


def _at(curve, s):
    """Point and unit tangent at arc fraction s (beyond 1: continued along the tip tangent)."""
    k = float(np.clip(s, 0.0, 1.0)) * (len(curve) - 1)
    i = min(int(k), len(curve) - 2)
    tang = _unit(curve[i + 1] - curve[i])
    p = curve[i] + (k - i) * (curve[i + 1] - curve[i])
    if s > 1.0:
        p = curve[-1] + tang * (s - 1.0) * np.hypot(*(curve[-1] - curve[0]))
    return p, tang


def bark_fill(b, direction, base_col=None) -> np.ndarray:
    """Bark: a bark/wood photo's luminance detail (grain along `direction`) times a bark colour."""
    rng, S = b.rng, b.S
    col = base_col if base_col is not None else hsv(rng.uniform(0.05, 0.11), rng.uniform(0.2, 0.55),
                                                    rng.uniform(0.22, 0.45))
    angle = float(np.arctan2(direction[0], -direction[1]))       # photo's vertical grain → direction
    tex = b.photo("bark", rng.uniform(0.25, 0.5), angle)
    return np.clip(col[None, None] * photos.detail(tex, rng.uniform(0.8, 1.4)), 0, 1).astype(np.float32)


def foliage_fill(b, autumn: bool) -> np.ndarray:
    """Leaf colours straight from a leaf/foliage photo, tinted and brightness-jittered."""
    rng = b.rng
    tex = b.photo("autumn" if autumn else "leaf", rng.uniform(0.3, 0.8))
    gains = (1.0 + rng.uniform(-0.12, 0.12, 3)) * rng.uniform(0.75, 1.1)
    grey = tex.mean(-1, keepdims=True)
    tex = grey + (tex - grey) * rng.uniform(0.8, 1.2)
    return np.clip(tex * gains, 0, 1).astype(np.float32)


def _foliage(b, painter, curve, s_range, count, radius, leaf_len, fill, shape, up):
    """Leaf clusters along `curve`: a darker textured blob with leaves around and on it (drawn
    in three brightness groups, lit from above). Returns cluster centres, radii and jiggle
    directions, and the number of leaves."""
    rng = b.rng
    cents, radii, dirs, n_total = [], [], [], 0
    ang = np.linspace(0, 2 * np.pi, 17)[:-1]
    for _ in range(count):
        s = rng.uniform(*s_range)
        p, tang = _at(curve, s)
        nrm = np.array([-tang[1], tang[0]])
        c = p + nrm * rng.uniform(-0.7, 0.7) * radius + np.array([0.0, -1.0]) * up * rng.uniform(0, 0.6) * radius
        r = radius * rng.uniform(0.7, 1.3)
        wob = 1.0 + 0.22 * np.sin(ang * rng.integers(2, 5) + rng.uniform(0, 6.3)) + rng.uniform(-0.1, 0.1, 16)
        blob = c + (r * wob)[:, None] * np.stack([np.cos(ang), np.sin(ang)], 1)
        painter.polygon(blob, fill * rng.uniform(0.5, 0.72))                 # shaded inside
        n = max(int(rng.uniform(9, 17) * (r / radius) ** 2), 3)
        a = rng.uniform(0, 2 * np.pi, n)
        rr = r * np.sqrt(rng.uniform(0.05, 1.0, n))
        bases = c + rr[:, None] * np.stack([np.cos(a), np.sin(a)], 1)
        ln = leaf_len * rng.uniform(0.7, 1.3, n)
        wd = ln * (0.3 if shape == "lanceolate" else rng.uniform(0.45, 0.7, n))
        polys = leaf_outlines(bases, a + rng.normal(0, 0.6, n), ln, wd, shape)
        lit = rng.uniform(0.8, 1.15, n) * (1.0 + 0.3 * (c[1] - bases[:, 1]) / max(r, 1e-6))
        order = np.argsort(rng.random(n))                     # groups interleave in depth
        for g in np.array_split(order, 3):
            if len(g):
                painter.polygons(polys[g], fill * float(lit[g].mean()))
        n_total += n
        cents.append(c)
        radii.append(r)
        dirs.append(_unit(nrm * rng.choice([-1, 1]) + tang * rng.uniform(-0.5, 0.5) + [0, rng.uniform(-0.3, 0.3)]))
    return cents, radii, dirs, n_total


def _cantilever_modes(b, obj, root, tip, length, width, group, wind, zeta, window=None, count=2):
    """`count` bending modes of one axis (optionally windowed to its neighbourhood), frequency
    and amplitude from its size; returns mode ids."""
    rng = b.rng
    f1 = M.sway_frequency(length, width, b.S) * rng.uniform(0.85, 1.15)
    ids = []
    for n, (f, g) in enumerate([(f1, 1.0), (min(f1 * 6.27 * rng.uniform(0.8, 1.2), 6.0), 0.25)][:count]):
        field = M.cantilever(b.X, b.Y, root, tip, n, reach=0.35 * length)
        if window is not None:
            field = field * window[..., None]
        ids.append(b.add_mode(obj, field, f, zeta * rng.uniform(0.8, 1.3), group, gain=g,
                              kind=f"{group}_bend{n + 1}"))
    b.targets[(obj, group)] = wind * M.tip_amplitude(length, width, b.S) * rng.uniform(0.8, 1.2)
    return ids


def _leaf_modes(b, obj, group, cents, radii, dirs, anchors, lengths, wind, leaf_len):
    """Twig jiggle (translation, 2-3 modes) and twist (rotation, 2 modes) of leaf clusters,
    and flutter of single leaves (rotation about their bases, 2 modes); faster for smaller."""
    rng, S = b.rng, b.S
    ids = []
    if cents:
        nm = 2 if len(cents) < 6 else 3
        assign = rng.integers(0, nm, size=len(cents))
        r_mean = float(np.mean(radii))
        f = M.sway_frequency(2.5 * r_mean, 0.8 * S, S)
        for j, field in enumerate(M.clusters(b.X, b.Y, cents, radii, dirs, assign, nm)):
            if (assign == j).any():
                ids.append(b.add_mode(obj, field, f * rng.uniform(0.85, 1.2), rng.uniform(0.06, 0.15),
                                      group + "_twigs", kind="cluster_jiggle"))
        b.targets[(obj, group + "_twigs")] = wind * min(0.7 * M.tip_amplitude(2.5 * r_mean, 0.8 * S, S),
                                                        0.25 * r_mean)
        # twist: rotation about the cluster centre (weight width = radius, as flutter's 0.75 L)
        assign = rng.integers(0, 2, size=len(cents))
        signs = rng.choice([-1.0, 1.0], size=len(cents))
        ft = float(np.clip(1.6 * f, 1.5, 7.0))
        for j, field in enumerate(M.flutter(b.X, b.Y, cents, np.asarray(radii) / 0.75, signs, assign, 2)):
            if (assign == j).any():
                ids.append(b.add_mode(obj, field, ft * rng.uniform(0.85, 1.2), rng.uniform(0.05, 0.2),
                                      group + "_twist", kind="cluster_twist"))
        b.targets[(obj, group + "_twist")] = wind ** 0.5 * rng.uniform(0.03, 0.06)   # radians
    if anchors:
        assign = rng.integers(0, 2, size=len(anchors))
        signs = rng.choice([-1.0, 1.0], size=len(anchors))
        f = float(np.clip(3.2 * (5.0 * S / max(leaf_len, 0.5 * S)) ** 0.5, 1.5, 7.0))
        for j, field in enumerate(M.flutter(b.X, b.Y, anchors, lengths, signs, assign, 2)):
            if (assign == j).any():
                ids.append(b.add_mode(obj, field, f * rng.uniform(0.8, 1.25), rng.uniform(0.05, 0.2),
                                      group + "_leaves", kind="leaf_flutter"))
        b.targets[(obj, group + "_leaves")] = wind ** 0.5 * rng.uniform(0.03, 0.06)   # radians
    return ids


def add_tree(b, ground_y: float, wind: float, depth: float, variant: str = "tree", root=None):
    """A tree standing on the ground ('tree'), a bush ('bush', optionally at `root`, e.g. in a
    pot) or a limb reaching in from a frame edge ('limb'): a main axis with side branches and
    leaf clusters, all in one layer."""
    rng, S, P, W, H = b.rng, b.S, b.P, b.W, b.H
    if variant == "bush":
        if root is None:
            y = min(ground_y + rng.uniform(0.0, 0.3) * (b.Hc - P - ground_y), b.Hc - P + 2)
            root = (b.place_x(rng.uniform(0.05, 0.95) * W + P), y)
        root = np.asarray(root, np.float64)
        length = rng.uniform(0.2, 0.45) * H
        width = rng.uniform(0.015, 0.03) * H
        lean = rng.normal(0, 0.15)
        direction = np.array([np.sin(lean), -np.cos(lean)])
        n_br, s_br, s_fol = int(rng.integers(3, 7)), (0.1, 0.8), (0.3, 1.1)
    elif variant == "tree":
        base_y = b.Hc - P + 0.05 * H if rng.random() < 0.5 else ground_y + rng.uniform(0.0, 0.15) * H
        root = np.array([b.place_x(rng.uniform(0.12, 0.88) * W + P), min(base_y, b.Hc - 2.0)])
        length = rng.uniform(0.45, 0.85) * (root[1] - P)
        width = rng.uniform(0.05, 0.1) * H
        lean = rng.normal(0, 0.08)
        direction = np.array([np.sin(lean), -np.cos(lean)])
        n_br, s_br, s_fol = int(rng.integers(4, 9)), (0.3, 0.92), (0.6, 1.1)
    else:
        side = str(rng.choice(["left", "right", "top"]))
        if b.hint_x is not None:                     # reach in from the side nearest the free area
            side = "left" if b.hint_x < P + 0.35 * W else ("right" if b.hint_x > P + 0.65 * W else "top")
        if side == "top":
            root = np.array([b.place_x(rng.uniform(0.15, 0.85) * W + P), P - 0.06 * H])
            ang = rng.uniform(0.3, 1.1) * rng.choice([-1, 1])
            direction = np.array([np.sin(ang), np.cos(ang)])
        else:
            sx = 1 if side == "left" else -1
            root = np.array([P - 0.06 * W if sx > 0 else P + 1.06 * W, rng.uniform(0.0, 0.6) * H + P])
            ang = rng.uniform(-0.35, 0.45)
            direction = np.array([sx * np.cos(ang), np.sin(ang)])
        length = rng.uniform(0.6, 1.0) * min(W, 1.6 * H)
        width = rng.uniform(0.03, 0.055) * H
        n_br, s_br, s_fol = int(rng.integers(3, 7)), (0.15, 0.85), (0.25, 1.08)
    autumn = bool(rng.random() < 0.15)
    shape = str(rng.choice(["ovate", "lanceolate", "round"]))
    leaf_len = rng.uniform(0.025, 0.045) * H
    radius = rng.uniform(0.06, 0.1) * H if variant != "bush" else rng.uniform(0.045, 0.075) * H
    centre = _axis(root, direction, length, rng.normal(0, 0.08))
    tip = centre[-1]
    obj = b.new_object("plant", variant=variant, root=[float(root[0] - P), float(root[1] - P)],
                       tip=[float(tip[0] - P), float(tip[1] - P)], length=float(length), width=float(width),
                       autumn=autumn, leaf_shape=shape, num_branches=n_br)
    zeta = rng.uniform(0.04, 0.12)
    bark = bark_fill(b, direction)
    lfill = foliage_fill(b, autumn)
    # One layer for the whole plant (a layer's cost is its area, whatever it holds): the main
    # axis bends with its own modes; each side branch adds a bending mode windowed to the
    # neighbourhood of that branch and its leaves; leaf clusters jiggle, leaves flutter.
    main = _cantilever_modes(b, obj, root, tip, length, width, "trunk", wind, zeta)
    painter = Painter(b.Hc, b.Wc)
    painter.polygon(tapered_outline(centre, width, 0.3 * width), bark)
    painter.polygon(tapered_outline(centre + _unit([-direction[1], direction[0]]) * 0.2 * width, 0.35 * width,
                                    0.1 * width), np.clip(bark * 1.4, 0, 1), 0.5)
    branches = []
    for k, s in enumerate(np.sort(rng.uniform(*s_br, size=n_br))):
        base, tang = _at(centre, s)
        side = 1 if k % 2 == 0 else -1
        d = _rotate(tang, side * rng.uniform(0.5, 1.15))
        if variant != "limb":
            d = _unit(d + np.array([0.0, -0.25]))
        if variant == "tree":
            bl = rng.uniform(0.35, 0.7) * H * (1.2 - 0.5 * s)
        else:
            bl = rng.uniform(0.25, 0.55) * length if variant == "limb" else rng.uniform(0.5, 0.9) * length
        bw = max(width * (1 - 0.6 * s) * rng.uniform(0.35, 0.6), 0.8 * S)
        bc = _axis(base, d, bl, rng.normal(0, 0.12))
        painter.polygon(tapered_outline(bc, bw, 0.2 * bw), bark)
        branches.append((bc, bl, bw))
    fols = []
    n_cl = int(np.clip(length * (s_fol[1] - s_fol[0]) / radius, 2, 16))
    fols.append(_foliage(b, painter, centre, s_fol, n_cl, radius, leaf_len, lfill, shape,
                         up=1.0 if variant == "tree" else 0.3))
    for bc, bl, _ in branches:
        n_cl = int(np.clip(bl * 0.9 / radius, 2, 12))
        fols.append(_foliage(b, painter, bc, (0.35, 1.08), n_cl, radius * rng.uniform(0.8, 1.1), leaf_len,
                             lfill, shape, up=0.5))
    windows = M.branch_windows(b.X, b.Y, [bc for bc, _, _ in branches], 1.4 * radius, 2.0 * radius)
    ids = list(main)
    for k, ((bc, bl, bw), win) in enumerate(zip(branches, windows)):
        ids += _cantilever_modes(b, obj, bc[0], bc[-1], bl, bw, f"branch{k}", wind, zeta, window=win, count=1)
    fol = [sum((f[i] for f in fols), []) for i in range(3)]
    ids += _leaf_modes(b, obj, "foliage", *fol, [], [], wind, leaf_len)
    b.objects[obj].update(num_leaves=int(sum(f[3] for f in fols)), num_clusters=len(fol[0]),
                          branches=[{"root": [float(bc[0][0] - P), float(bc[0][1] - P)],
                                     "tip": [float(bc[-1][0] - P), float(bc[-1][1] - P)],
                                     "length": float(bl), "width": float(bw)} for bc, bl, bw in branches])
    b.add_layer(obj, "plant", painter, ids, depth)


def add_stem(b, ground_y: float, wind: float, depth: float, root=None):
    """A small plant: a thin stem (+ twigs) with leaves and often a flower at the tip."""
    rng, S, P, W, H = b.rng, b.S, b.P, b.W, b.H
    if root is None:
        root = np.array([b.place_x(rng.uniform(0.05, 0.95) * W + P),
                         min(ground_y + rng.uniform(0.0, 0.25) * (b.Hc - P - ground_y), b.Hc - P + 2)])
    root = np.asarray(root, np.float64)
    length = rng.uniform(0.3, 0.75) * H
    width = rng.uniform(0.012, 0.025) * H
    ang = rng.normal(0, 0.2)
    direction = np.array([np.sin(ang), -np.cos(ang)])
    centre = _axis(root, direction, length, rng.normal(0, 0.12))
    tip = centre[-1]
    obj = b.new_object("plant", variant="stem", root=[float(root[0] - P), float(root[1] - P)],
                       tip=[float(tip[0] - P), float(tip[1] - P)], length=float(length), width=float(width))
    stem = Painter(b.Hc, b.Wc)
    green = hsv(rng.uniform(0.2, 0.33), rng.uniform(0.4, 0.7), rng.uniform(0.25, 0.45))
    fill = np.clip(green[None, None] * photos.detail(b.photo("grass", rng.uniform(0.3, 0.6)), 0.5), 0, 1)
    stem.polygon(tapered_outline(centre, width, 0.35 * width), fill)
    twigs = []
    for _ in range(int(rng.integers(0, 4))):
        s = rng.uniform(0.3, 0.85)
        base, tang = _at(centre, s)
        d = _rotate(tang, rng.choice([-1, 1]) * rng.uniform(0.5, 1.1))
        tw = _axis(base, d, rng.uniform(0.15, 0.35) * length, rng.normal(0, 0.15))
        stem.polygon(tapered_outline(tw, 0.6 * width * (1 - 0.5 * s), 0.2 * width), fill)
        twigs.append(tw)
    leaves = stem                    # one layer: the stem near a leaf turns a little with it
    lfill = foliage_fill(b, bool(rng.random() < 0.1))
    shape = str(rng.choice(["ovate", "lanceolate", "round"]))
    leaf_len = rng.uniform(0.04, 0.08) * H
    anchors, lengths = [], []
    curves = [centre[N_AXIS // 4:]] + twigs
    for _ in range(int(rng.integers(10, 30))):
        c = curves[int(rng.integers(len(curves)))]
        k = int(rng.integers(1, len(c)))
        tang = c[k] - c[k - 1]
        theta = np.arctan2(tang[1], tang[0]) + rng.choice([-1, 1]) * rng.uniform(0.4, 1.3)
        ln = leaf_len * rng.uniform(0.7, 1.3)
        wd = ln * (0.28 if shape == "lanceolate" else rng.uniform(0.45, 0.7))
        outline = leaf_outline(c[k], theta, ln, wd, shape)
        leaves.polygon(outline, lfill * rng.uniform(0.8, 1.2))
        leaves.polygon(np.concatenate([outline[: len(outline) // 2], [c[k]]]), lfill * 0.7, 0.5)
        anchors.append(c[k])
        lengths.append(ln)
    flower = None
    if rng.random() < 0.6:
        r = rng.uniform(0.035, 0.07) * H
        hue = float(rng.choice([0.0, 0.08, 0.15, 0.8, 0.9, 0.6])) + rng.normal(0, 0.02)
        petal = np.clip(photos.detail(b.photo("petal", rng.uniform(0.4, 0.9)), 0.6)
                        * hsv(hue, rng.uniform(0.0, 0.9), rng.uniform(0.75, 1.0))[None, None], 0, 1)
        npet = int(rng.integers(5, 13))
        ph = rng.uniform(0, np.pi)
        for i in range(npet):
            a = ph + 2 * np.pi * i / npet
            leaves.ellipse(tip + 0.55 * r * np.array([np.cos(a), np.sin(a)]), (0.55 * r, 0.22 * r), np.degrees(a),
                           petal * rng.uniform(0.85, 1.1))
        leaves.ellipse(tip, (0.3 * r, 0.3 * r), 0, hsv(rng.uniform(0.08, 0.15), 0.8, rng.uniform(0.3, 0.8)))
        anchors.append(tip)
        lengths.append(r)
        flower = {"radius": float(r), "petals": npet}
    b.objects[obj].update(num_leaves=len(anchors), num_twigs=len(twigs), leaf_shape=shape, flower=flower)
    ids = _cantilever_modes(b, obj, root, tip, length, width, "stem", wind, rng.uniform(0.04, 0.14))
    ids += _leaf_modes(b, obj, "stem", [], [], [], anchors, lengths, wind, leaf_len)
    b.add_layer(obj, "plant", stem, ids, depth)


def add_grass(b, ground_y: float, wind: float, depth: float, foreground: bool = False):
    """A band of grass blades rooted near the ground line (or below the frame for foreground
    grass): sway ~ (height above the root)^2 with travelling waves, frequency from blade height."""
    rng, S, P, W, H = b.rng, b.S, b.P, b.W, b.H
    if foreground or rng.random() < 0.55:
        xa, xb = 0.0, float(b.Wc)
    else:
        span = rng.uniform(0.3, 0.7) * W
        xa = rng.uniform(0, W - span) + P
        xb = xa + span
    if foreground:
        base_y = b.Hc - P + rng.uniform(0.0, 0.06) * H
        height = rng.uniform(0.25, 0.5) * H
    else:
        base_y = min(ground_y + rng.uniform(0.2, 1.0) * (b.Hc - P - ground_y) + 0.04 * H, b.Hc - 1.0)
        height = rng.uniform(0.15, 0.35) * H
    blade_w = rng.uniform(1.2, 2.6) * S
    density = rng.uniform(0.9, 1.8)
    count = int((xb - xa) * density / S)
    obj = b.new_object("grass", x_range=[float(xa - P), float(xb - P)], base_y=float(base_y - P),
                       blade_height=float(height), blade_width=float(blade_w), num_blades=count)
    tex = b.photo("grass", rng.uniform(0.25, 0.6) * (height / (0.25 * H)) ** 0.5)
    tex = tex * (1.0 + rng.uniform(-0.1, 0.1, 3)) * rng.uniform(0.8, 1.1)
    g = np.clip((base_y - b.Y) / height, 0, 1)[..., None]
    fill = np.clip(tex * (0.4 + 0.6 * g), 0, 1).astype(np.float32)
    painter = Painter(b.Hc, b.Wc)
    lean = rng.normal(0, 0.15)
    bx = rng.uniform(xa, xb, count)
    by = base_y + rng.uniform(-0.04, 0.04, count) * H
    h = height * rng.uniform(0.55, 1.25, count)
    bend = (lean + rng.normal(0, 0.25, count)) * h
    t = np.linspace(0.0, 1.0, 10)[None, :]
    cx = 2 * (1 - t) * t * (0.1 * bend[:, None]) + t ** 2 * bend[:, None] + bx[:, None]   # quadratic Bezier
    cy = by[:, None] - 2 * (1 - t) * t * (0.6 * h[:, None]) - t ** 2 * h[:, None]
    blades = tapered_outlines(np.stack([cx, cy], -1), blade_w * rng.uniform(0.7, 1.3, count), 0.15)
    order = rng.permutation(count)                      # brightness groups interleave in depth
    for g in np.array_split(order, 8):
        painter.polygons(blades[g], fill * rng.uniform(0.75, 1.2))
    fg = M.sway_frequency(height, blade_w, S) * rng.uniform(0.85, 1.15)
    zeta = rng.uniform(0.05, 0.2)
    ids = [b.add_mode(obj, M.grass_wave(b.X, b.Y, base_y, height, 0.0, 0.0), fg, zeta, "sway", kind="grass_sway")]
    lam = rng.uniform(0.8, 2.0) * W
    fw = fg * rng.uniform(0.9, 1.25)
    k = 2 * np.pi / lam
    for ph, delay in ((0.0, 0.0), (-np.pi / 2, 0.25 / fw)):
        ids.append(b.add_mode(obj, M.grass_wave(b.X, b.Y, base_y, height, k, ph), fw, zeta, "sway",
                              gain=0.8, delay=delay, kind="grass_wave"))
    b.objects[obj].update(wavelength_px=float(lam))
    b.targets[(obj, "sway")] = wind * rng.uniform(0.1, 0.16) * height
    b.add_layer(obj, "blades", painter, ids, depth)
