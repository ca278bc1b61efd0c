"""Rendering deformed layers by backward mapping, and exact ground-truth trajectories.

Layer l at frame t maps a rest point p to p + D_l(t,p) + c(t), with D_l = sum_m q_m(t) Phi_m
(bilinear in the mode grids) and c(t) the global camera-shake translation. An output pixel q
shows the rest point solving p + D_l(t,p) = q - c(t), found by the contraction
p <- q - c(t) - D_l(t,p) (the scene builder keeps |grad D_l| <= 0.45). Layers are composited
back to front with premultiplied alpha over the static background.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

FAST_TOL = 0.05      # px: stop the cv2.remap (1/32-px quantised) iterations here
EXACT_TOL = 2e-4     # px: then refine with exact bilinear sampling until the update is this small
MAX_ITERS = 40


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
    pix: np.ndarray                 # flat frame-pixel indices the layer can ever cover
    qx: np.ndarray                  # (N,1) their x in field-crop coords (without shake)
    qy: np.ndarray
    field_shape: tuple              # (hf, wf)
    fields: np.ndarray              # (M_l, hf*wf*2) mode grids on the crop
    rgba: np.ndarray                # (hf, wf, 4) premultiplied rest texture on the crop
    near: np.ndarray                # (hf, wf) 1 within 2 px of the texture's support


def prepare(layers, fields: list, q: np.ndarray, shake: np.ndarray, width: int, height: int,
            pad: int) -> list:
    """Crops each layer to the pixels it can reach, from a bound on its displacement:
    content at rest point p shows at p + D + c, so only pixels within max|D + c| of the
    texture's support are ever covered."""
    out = []
    cmax = float(np.abs(shake).max()) if len(shake) else 0.0
    for i, layer in enumerate(layers, start=1):
        support = layer.rgba[..., 3] > 1e-4
        ys, xs = np.nonzero(support)
        if len(xs) == 0:
            continue
        modes = np.asarray(layer.modes, np.int64)
        disp = np.zeros(support.shape, np.float32)
        for m in modes:
            disp += float(np.abs(q[:, m]).max()) * np.linalg.norm(fields[m], axis=-1)
        r = int(np.ceil(float(disp[support].max()) + cmax)) + 2
        x0, x1 = max(xs.min() - r, pad), min(xs.max() + r + 1, pad + width)
        y0, y1 = max(ys.min() - r, pad), min(ys.max() + r + 1, pad + height)
        if x0 >= x1 or y0 >= y1:
            continue
        fx0, fy0 = max(x0 - r, 0), max(y0 - r, 0)
        fx1, fy1 = min(x1 + r, support.shape[1]), min(y1 + r, support.shape[0])
        hf, wf = fy1 - fy0, fx1 - fx0
        crop = support[fy0:fy1, fx0:fx1].astype(np.uint8)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        reach = cv2.dilate(crop, kernel)[y0 - fy0:y1 - fy0, x0 - fx0:x1 - fx0] > 0
        yy, xx = np.nonzero(reach)
        if len(yy) == 0:
            continue
        pix = (yy + y0 - pad) * width + (xx + x0 - pad)
        near = cv2.dilate(crop, np.ones((5, 5), np.uint8)).astype(np.float32)
        if len(modes):
            stack = np.stack([fields[m][fy0:fy1, fx0:fx1] for m in modes]).reshape(len(modes), -1)
        else:
            stack = np.zeros((0, hf * wf * 2), np.float32)
        out.append(_Prepared(i, modes, pix.astype(np.int64),
                             (xx + x0 - fx0).astype(np.float32)[:, None],
                             (yy + y0 - fy0).astype(np.float32)[:, None], (hf, wf),
                             np.ascontiguousarray(stack, np.float32),
                             np.ascontiguousarray(layer.rgba[fy0:fy1, fx0:fx1]), near))
    return out


def _invert(D: np.ndarray, near: np.ndarray, qx: np.ndarray, qy: np.ndarray, start=None):
    """Solves p + D(p) = q (D sampled bilinearly) by fixed-point iteration: fast cv2.remap
    iterations, then exact bilinear ones on the points that land near the layer's texture.
    `start` (the previous frame's solution) is the initial guess when given."""
    px, py = (qx.copy(), qy.copy()) if start is None else (start[0].copy(), start[1].copy())
    iters, delta = 0, 0.0
    if not D.any():
        return px, py, 0, 0.0
    while iters < MAX_ITERS:
        d = cv2.remap(D, px, py, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        nx, ny = qx - d[..., 0], qy - d[..., 1]
        delta = float(max(np.abs(nx - px).max(), np.abs(ny - py).max()))
        px, py = nx, ny
        iters += 1
        if delta < FAST_TOL:
            break
    sel = cv2.remap(near, px, py, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0) > 0
    if not sel.any():
        return px, py, iters, delta
    sx, sy, tx, ty = px[sel], py[sel], qx[sel], qy[sel]
    for _ in range(MAX_ITERS):
        d = bilinear(D, sx, sy)
        nx, ny = tx - d[:, 0], ty - d[:, 1]
        delta = float(max(np.abs(nx - sx).max(), np.abs(ny - sy).max()))
        sx, sy = nx, ny
        iters += 1
        if delta < EXACT_TOL:
            break
    px[sel], py[sel] = sx, sy
    return px, py, iters, delta


def render(background: np.ndarray, prepared: list, q: np.ndarray, shake: np.ndarray,
           width: int, height: int, pad: int):
    """Frames `(T,H,W,3)`, visible-layer maps `(T,H,W)` and trajectories `(T,H,W,2)`."""
    T = q.shape[0]
    frames = np.zeros((T, height, width, 3), np.float32)
    visible = np.zeros((T, height, width), np.int16)
    gx, gy = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    p0, prev = {}, {}
    stats = {"max_iterations": 0, "max_residual_px": 0.0}
    for t in range(T):
        c = shake[t]
        if np.any(c != 0):
            frame = cv2.remap(background, gx + np.float32(pad - c[0]), gy + np.float32(pad - c[1]),
                              cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        else:
            frame = background[pad:pad + height, pad:pad + width].copy()
        flat = frame.reshape(-1, 3)
        vis = visible[t].reshape(-1)
        for L in prepared:
            hf, wf = L.field_shape
            qx = L.qx - np.float32(c[0])
            qy = L.qy - np.float32(c[1])
            if len(L.modes):
                D = (q[t, L.modes].astype(np.float32) @ L.fields).reshape(hf, wf, 2)
            else:
                D = np.zeros((hf, wf, 2), np.float32)
            px, py, iters, res = _invert(D, L.near, qx, qy, prev.get(L.index))
            prev[L.index] = (px, py)
            stats["max_iterations"] = max(stats["max_iterations"], iters)
            stats["max_residual_px"] = max(stats["max_residual_px"], res)
            rgba = cv2.remap(L.rgba, px, py, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                             borderValue=0).reshape(-1, 4)
            a = rgba[:, 3:4]
            flat[L.pix] = flat[L.pix] * (1 - a) + rgba[:, :3]
            vis[L.pix[a[:, 0] >= 0.5]] = L.index
            if t == 0:
                p0[L.index] = (px[:, 0], py[:, 0])
        frames[t] = np.clip(frame, 0, 1)

    # Ground truth: each frame-0 pixel follows the rest point of its front-most layer.
    traj = np.zeros((T, height * width, 2), np.float32)
    traj[:] = (shake - shake[0])[:, None, :].astype(np.float32)
    vis0 = visible[0].reshape(-1)
    for L in prepared:
        if not len(L.modes):
            continue
        sel = vis0[L.pix] == L.index
        if not sel.any():
            continue
        px, py = p0[L.index]
        hf, wf = L.field_shape
        grids = L.fields.reshape(len(L.modes), hf, wf, 2).transpose(1, 2, 0, 3).reshape(hf, wf, -1)
        phi = bilinear(grids, px[sel], py[sel]).reshape(-1, len(L.modes), 2)      # (N, M_l, 2)
        dq = (q[:, L.modes] - q[0, L.modes]).astype(np.float32)                  # (T, M_l)
        traj[:, L.pix[sel]] += np.einsum("tm,nmc->tnc", dq, phi)
    traj = traj.reshape(T, height, width, 2)
    traj[0] = 0.0
    return frames, visible, traj, stats
