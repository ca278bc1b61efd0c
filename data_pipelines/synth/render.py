"""Rendering deformed layers by backward mapping, and exact ground-truth trajectories.

Layer l at frame t maps a rest point p to p + D_l(t,p) + c(t), with D_l = sum_m q_m(t) Phi_m
(bilinear in the mode grids) and c(t) the global camera-shake translation. An output pixel q
shows the rest point solving p + D_l(t,p) = q - c(t), found by the contraction
p <- q - c(t) - D_l(t,p) (the scene builder keeps |grad D_l| <= 0.7 at every frame). Frame 0,
which defines the ground truth, is solved exactly (bilinear refinement to 2e-4 px); later frames
start from a linear prediction of the previous solutions and stop at FRAME_TOL (cv2.remap's
1/32-px sampling). Layers are composited back to front with premultiplied alpha over the static
background; layers without modes (rigid objects) are sampled once. From COARSE_HEIGHT up, frames
t > 0 solve the inverse on every other pixel (the mode fields, hence p(q), are smooth on that
scale) and interpolate it, which keeps their rendering within a few hundredths of a pixel of the
exact motion at a quarter of the cost; the ground truth never depends on it.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

FAST_TOL = 0.05      # px: stop the cv2.remap (1/32-px quantised) iterations here
EXACT_TOL = 2e-4     # px: then refine with exact bilinear sampling until the update is this small
FRAME_TOL = 0.05     # px: frames t > 0 (warm-started) stop here, without the exact refinement
FRAME_ITERS = 20
MAX_ITERS = 60
COARSE_HEIGHT = 120  # frames at least this high solve frames t > 0 on a half-resolution grid


def bilinear(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Exact bilinear sample of `img` `(h,w,C)` at float coords (border replicated) → `x.shape+(C,)`."""
    h, w = img.shape[:2]
    flat = img.reshape(h * w, -1)
    xs = np.clip(np.asarray(x, np.float32).ravel(), 0, w - 1)
    ys = np.clip(np.asarray(y, np.float32).ravel(), 0, h - 1)
    x0 = np.minimum(xs.astype(np.int64), max(w - 2, 0))
    y0 = np.minimum(ys.astype(np.int64), max(h - 2, 0))
    fx = (xs - x0)[:, None]
    fy = (ys - y0)[:, None]
    i = y0 * w + x0
    dx = 1 if w > 1 else 0
    dy = w if h > 1 else 0
    out = (flat[i] * (1 - fx) * (1 - fy) + flat[i + dx] * fx * (1 - fy)
           + flat[i + dy] * (1 - fx) * fy + flat[i + dx + dy] * fx * fy)
    return out.reshape(np.shape(x) + (flat.shape[1],)).astype(np.float32)


@dataclasses.dataclass
class _Prepared:
    index: int                      # 1-based layer id (visible_layer value)
    modes: np.ndarray               # global mode indices
    box: tuple                      # (y0, y1, x0, x1): frame pixels the layer can cover
    reach: np.ndarray               # (bh, bw) 1 where within the layer's reach, else 0
    off: np.ndarray                 # (bh, bw) 0 within reach, -1e5 outside
    qx: np.ndarray                  # (bh, bw) box pixels' x in field-crop coords (without shake)
    qy: np.ndarray
    field_shape: tuple              # (hf, wf)
    fields: np.ndarray              # (M_l, 2*hf*wf) mode grids on the crop, planar (x plane, y plane)
    rgba: np.ndarray                # (hf, wf, 4) premultiplied rest texture on the crop
    near: np.ndarray                # (hf, wf) 1 within 2 px of the texture's support
    half: tuple | None = None       # (fields/2 on every other node, its shape, half-res queries)
    reach2: np.ndarray | None = None  # (bh, bw, 2) reach in both channels
    off2: np.ndarray | None = None    # (bh, bw, 2) off in the x channel


def prepare(layers, fields: list, q: np.ndarray, shake: np.ndarray, width: int, height: int,
            pad: int, max_disp=None) -> list:
    """Crops each layer to the pixels it can reach: content at rest point p shows at p + D + c,
    so only pixels within max|D + c| of the texture's support are ever covered. `max_disp[i]`
    (layer i's largest |D| over the clip) is used when given, else a bound from the modes."""
    out = []
    cmax = float(np.abs(shake).max()) if len(shake) else 0.0
    for i, layer in enumerate(layers, start=1):
        support = layer.rgba[..., 3] > 1e-4
        ys, xs = np.nonzero(support)
        if len(xs) == 0:
            continue
        modes = np.asarray(layer.modes, np.int64)
        if max_disp is not None and i in max_disp:
            dmax = float(max_disp[i])
        else:
            dmax = sum(float(np.abs(q[:, m]).max()) * float(np.linalg.norm(fields[m][ys, xs], axis=-1).max())
                       for m in modes)
        r = int(np.ceil(dmax + cmax)) + 2
        x0, x1 = max(xs.min() - r, pad), min(xs.max() + r + 1, pad + width)
        y0, y1 = max(ys.min() - r, pad), min(ys.max() + r + 1, pad + height)
        if x0 >= x1 or y0 >= y1:
            continue
        fx0, fy0 = max(x0 - r, 0), max(y0 - r, 0)
        fx1, fy1 = min(x1 + r, support.shape[1]), min(y1 + r, support.shape[0])
        hf, wf = fy1 - fy0, fx1 - fx0
        crop = support[fy0:fy1, fx0:fx1].astype(np.uint8)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        reach = cv2.dilate(crop, kernel)[y0 - fy0:y1 - fy0, x0 - fx0:x1 - fx0]
        if not reach.any():
            continue
        near = cv2.dilate(crop, np.ones((5, 5), np.uint8)).astype(np.float32)
        if len(modes):
            stack = np.stack([fields[m][fy0:fy1, fx0:fx1].transpose(2, 0, 1) for m in modes]).reshape(len(modes), -1)
        else:
            stack = np.zeros((0, hf * wf * 2), np.float32)
        gx, gy = np.meshgrid(np.arange(x0 - fx0, x1 - fx0, dtype=np.float32),
                             np.arange(y0 - fy0, y1 - fy0, dtype=np.float32))
        half = None
        if height >= COARSE_HEIGHT and len(modes):
            sub = stack.reshape(len(modes), 2, hf, wf)[:, :, ::2, ::2]
            # half-res nodes sit at box offsets 0.5 + 2i, where cv2.resize(fx=2) puts source pixel i
            hx, hy = np.meshgrid(np.arange((x1 - x0) // 2 + 1, dtype=np.float32) * 2 + 0.5 + float(x0 - fx0),
                                 np.arange((y1 - y0) // 2 + 1, dtype=np.float32) * 2 + 0.5 + float(y0 - fy0))
            half = (np.ascontiguousarray(0.5 * sub.reshape(len(modes), -1), np.float32), sub.shape[2:],
                    (0.5 * hx).astype(np.float32), (0.5 * hy).astype(np.float32))
        out.append(_Prepared(i, modes, (y0 - pad, y1 - pad, x0 - pad, x1 - pad),
                             reach.astype(np.float32), (reach.astype(np.float32) - 1) * 1e5, gx, gy, (hf, wf),
                             np.ascontiguousarray(stack, np.float32),
                             np.ascontiguousarray(layer.rgba[fy0:fy1, fx0:fx1]), near, half,
                             np.repeat(reach.astype(np.float32)[..., None], 2, -1),
                             np.stack([(reach.astype(np.float32) - 1) * 1e5, np.zeros(reach.shape, np.float32)], -1)))
    return out


def _invert(D: np.ndarray, near: np.ndarray, qx: np.ndarray, qy: np.ndarray, start=None,
            exact: bool = True):
    """Solves p + D(p) = q (D `(2,hf,wf)` planar, sampled bilinearly) by fixed-point iteration:
    fast cv2.remap iterations (single-channel remaps: cv2 has no fast 2-channel path), then
    (if `exact`) exact bilinear ones on the points that land near the layer's texture. `start`
    (a prediction from the previous frames) is the initial guess when given."""
    px, py = (qx, qy) if start is None else start
    iters, delta = 0, 0.0
    tol, cap = (FAST_TOL, MAX_ITERS) if exact else (FRAME_TOL, FRAME_ITERS)
    Dx, Dy = D[0], D[1]
    while iters < cap:
        nx = qx - cv2.remap(Dx, px, py, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        ny = qy - cv2.remap(Dy, px, py, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        delta = max(cv2.norm(nx, px, cv2.NORM_INF), cv2.norm(ny, py, cv2.NORM_INF))
        px, py = nx, ny
        iters += 1
        if delta < tol:
            break
    if not exact:
        return px, py, iters, delta
    sel = cv2.remap(near, px, py, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0) > 0
    if not sel.any():
        return px, py, iters, delta
    sx, sy, tx, ty = px[sel], py[sel], qx[sel], qy[sel]
    D = np.stack([Dx, Dy], -1)
    for _ in range(MAX_ITERS):
        d = bilinear(D, sx, sy)
        nx, ny = tx - d[:, 0], ty - d[:, 1]
        delta = float(max(np.abs(nx - sx).max(), np.abs(ny - sy).max()))
        sx, sy = nx, ny
        iters += 1
        if delta < EXACT_TOL:
            break
    px, py = px.copy(), py.copy()
    px[sel], py[sel] = sx, sy
    return px, py, iters, delta


def render(background: np.ndarray, prepared: list, q: np.ndarray, shake: np.ndarray,
           width: int, height: int, pad: int):
    """Frames `(T,H,W,3)`, visible-layer maps `(T,H,W)` and trajectories `(T,H,W,2)`."""
    T = q.shape[0]
    frames = np.zeros((T, height, width, 3), np.float32)
    visible = np.zeros((T, height, width), np.int16)
    gx, gy = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    p0, prev, still = {}, {}, {}
    stats = {"max_iterations": 0, "max_residual_px": 0.0, "max_frame_residual_px": 0.0}
    q32 = q.astype(np.float32)
    for t in range(T):
        c = shake[t]
        moved = bool(np.any(c != 0))
        frame = frames[t]
        if moved:
            frame[:] = cv2.remap(background, gx + np.float32(pad - c[0]), gy + np.float32(pad - c[1]),
                                 cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        else:
            frame[:] = background[pad:pad + height, pad:pad + width]
        vis = visible[t]
        for L in prepared:
            hf, wf = L.field_shape
            y0, y1, x0, x1 = L.box
            if not len(L.modes) and L.index in still and not moved:
                rgba, px, py = still[L.index]                  # rigid layer, no shake: as before
            else:
                qx, qy = (L.qx - np.float32(c[0]), L.qy - np.float32(c[1])) if moved else (L.qx, L.qy)
                qt = q32[t, L.modes]
                start = prev.get(L.index)
                if start is not None and len(start) == 4:          # linear prediction from t-1, t-2
                    start = (cv2.addWeighted(start[0], 2.0, start[2], -1.0, 0.0),
                             cv2.addWeighted(start[1], 2.0, start[3], -1.0, 0.0))
                elif start is not None:
                    start = start[:2]
                sol = None
                if not (len(L.modes) and qt.any()):
                    px, py, iters, res = qx, qy, 0, 0.0
                elif L.half is not None:                          # half-resolution solve
                    fh, (hh, wh), hx, hy = L.half
                    if moved:
                        hx, hy = hx - np.float32(c[0] / 2), hy - np.float32(c[1] / 2)
                    ux, uy, iters, res = _invert((qt @ fh).reshape(2, hh, wh), None, hx, hy, start, exact=False)
                    sol = (ux, uy)
                    if t == 0:                                    # frame 0 (the ground truth): exact
                        D = (qt @ L.fields).reshape(2, hf, wf)
                        px, py, iters, res = _invert(D, L.near, qx, qy, None, exact=True)
                    else:                                         # interpolate the solution
                        bh, bw = qx.shape
                        px = cv2.resize(cv2.merge(sol), None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR)[:bh, :bw]
                        py = None
                else:
                    D = (qt @ L.fields).reshape(2, hf, wf)
                    px, py, iters, res = _invert(D, L.near, qx, qy, start, exact=(t == 0))
                    sol = (px, py)
                if sol is not None:
                    last = prev.get(L.index)
                    prev[L.index] = sol if last is None else (sol[0], sol[1], last[0], last[1])
                stats["max_iterations"] = max(stats["max_iterations"], iters)
                key = "max_residual_px" if t == 0 else "max_frame_residual_px"
                stats[key] = max(stats[key], res)
                # pixels out of the layer's reach sample far outside the texture (alpha 0)
                if py is None:                                    # (x, y) map of half-res coords
                    rgba = cv2.remap(L.rgba, cv2.multiply(px, L.reach2, scale=2.0) + L.off2, None,
                                     cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
                else:
                    rgba = cv2.remap(L.rgba, px * L.reach + L.off, py, cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_CONSTANT, borderValue=0)
                a = cv2.extractChannel(rgba, 3)
                rgba = (cv2.cvtColor(1.0 - a, cv2.COLOR_GRAY2BGR), cv2.cvtColor(rgba, cv2.COLOR_BGRA2BGR),
                        (a >= 0.5) * np.int16(L.index))
                if not len(L.modes):
                    still[L.index] = (rgba, px, py)
            # over-compositing with cv2 on the frame's box (numpy is slow on strided channels);
            # layers come in depth order, so the front-most covering layer has the largest index
            inv, rgb, cover = rgba
            region = frame[y0:y1, x0:x1]
            cv2.multiply(region, inv, dst=region)
            cv2.add(region, rgb, dst=region)
            v = vis[y0:y1, x0:x1]
            cv2.max(v, cover, dst=v)
            if t == 0:
                p0[L.index] = (px, py)
    np.clip(frames, 0, 1, out=frames)

    # Ground truth: each frame-0 pixel follows the rest point of its front-most layer.
    traj = np.zeros((T, height * width, 2), np.float32)
    traj[:] = (shake - shake[0])[:, None, :].astype(np.float32)
    vis0 = visible[0]
    idx = np.arange(height * width).reshape(height, width)
    for L in prepared:
        if not len(L.modes):
            continue
        y0, y1, x0, x1 = L.box
        sel = vis0[y0:y1, x0:x1] == L.index
        if not sel.any():
            continue
        px, py = p0[L.index]
        hf, wf = L.field_shape
        grids = L.fields.reshape(len(L.modes), 2, hf, wf).transpose(2, 3, 0, 1).reshape(hf, wf, -1)
        phi = bilinear(grids, px[sel], py[sel]).reshape(-1, len(L.modes), 2)      # (N, M_l, 2)
        dq = (q[:, L.modes] - q[0, L.modes]).astype(np.float32)                  # (T, M_l)
        disp = dq @ phi.transpose(1, 0, 2).reshape(len(L.modes), -1)              # (T, N*2)
        traj[:, idx[y0:y1, x0:x1][sel]] += disp.reshape(T, -1, 2)
    traj = traj.reshape(T, height, width, 2)
    traj[0] = 0.0
    return frames, visible, traj, stats
