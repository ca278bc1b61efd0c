"""Optical-flow backends built on OpenCV's main module (no opencv-contrib needed).

* ``opencv_brox``: coarse-to-fine variational flow in the style of Brox et al. (ECCV 2004) and
  Ce Liu's thesis (the method the paper used): an image pyramid, and at each level OpenCV's
  ``VariationalRefinement`` (robust Charbonnier penalties on colour *and* gradient constancy plus a
  smoothness term, solved by fixed-point iterations with warping and SOR), initialised by the
  up-sampled flow of the coarser level.
* ``opencv_dis_medium`` / ``opencv_dis_fast`` / ``opencv_dis_ultrafast``: Dense Inverse Search
  (Kroeger et al., ECCV 2016) presets; ``medium`` ends with a variational refinement.
* ``opencv_farneback``: Farnebäck's polynomial-expansion flow (2003).

All take float ``(H, W, 3)`` images in [0, 1] and return float32 ``(H, W, 2)`` flow, x then y.
"""

from __future__ import annotations

import cv2
import numpy as np


def _gray_f32(img: np.ndarray) -> np.ndarray:
    """[0,1] RGB → float32 luminance in [0, 255] (the range OpenCV's parameters assume)."""
    g = 0.299 * img[..., 0] + 0.587 * img[..., 1] + 0.114 * img[..., 2]
    return np.ascontiguousarray(255.0 * g, dtype=np.float32)


def _gray_u8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(_gray_f32(img)), 0, 255).astype(np.uint8)


def brox_flow(i0, i1, *, scale_factor=0.75, min_size=12, alpha=15.0, delta=5.0, gamma=10.0,
              fixed_point_iters=5, sor_iters=10, warps=3, presmooth_sigma=0.7) -> np.ndarray:
    g0 = _gray_f32(i0)
    g1 = _gray_f32(i1)
    if presmooth_sigma > 0:
        g0 = cv2.GaussianBlur(g0, (0, 0), presmooth_sigma)
        g1 = cv2.GaussianBlur(g1, (0, 0), presmooth_sigma)
    h, w = g0.shape
    shapes = [(h, w)]
    while True:
        nh = int(round(shapes[-1][0] * scale_factor))
        nw = int(round(shapes[-1][1] * scale_factor))
        if min(nh, nw) < min_size:
            break
        shapes.append((nh, nw))
    vr = cv2.VariationalRefinement_create()
    vr.setAlpha(alpha)
    vr.setDelta(delta)
    vr.setGamma(gamma)
    vr.setFixedPointIterations(fixed_point_iters)
    vr.setSorIterations(sor_iters)
    flow = np.zeros(shapes[-1] + (2,), np.float32)
    prev = shapes[-1]
    for lh, lw in reversed(shapes):
        if (lh, lw) != prev:
            flow = cv2.resize(flow, (lw, lh), interpolation=cv2.INTER_LINEAR)
            flow[..., 0] *= lw / prev[1]
            flow[..., 1] *= lh / prev[0]
        if (lh, lw) == (h, w):
            l0, l1 = g0, g1
        else:
            l0 = cv2.resize(g0, (lw, lh), interpolation=cv2.INTER_AREA)
            l1 = cv2.resize(g1, (lw, lh), interpolation=cv2.INTER_AREA)
        # One calc() linearises around (warps by) its initial flow once; re-warping a few times
        # per level gives Brox et al.'s nested fixed-point scheme.
        for _ in range(warps):
            flow = vr.calc(l0, l1, np.ascontiguousarray(flow))
        prev = (lh, lw)
    return flow.astype(np.float32)


def _dis(preset):
    def run(i0, i1):
        dis = cv2.DISOpticalFlow_create(preset)
        return dis.calc(_gray_u8(i0), _gray_u8(i1), None).astype(np.float32)
    return run


dis_medium_flow = _dis(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
dis_fast_flow = _dis(cv2.DISOPTICAL_FLOW_PRESET_FAST)
dis_ultrafast_flow = _dis(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)


def farneback_flow(i0, i1) -> np.ndarray:
    # 5 levels at ratio 0.5 reach ~16 px displacements; 15 px window, 5 iterations, poly n=7.
    return cv2.calcOpticalFlowFarneback(
        _gray_f32(i0), _gray_f32(i1), None, pyr_scale=0.5, levels=5, winsize=15,
        iterations=5, poly_n=7, poly_sigma=1.5, flags=cv2.OPTFLOW_FARNEBACK_GAUSSIAN,
    ).astype(np.float32)
