"""Optical flow: backends behind one function, Middlebury ``.flo`` I/O, colour-wheel rendering.

    flow = estimate_flow(i0, i1)            # (H, W, 2): i0(p) ≈ i1(p + flow(p)), x then y
    flows = estimate_flow_batch(i0, frames) # one start frame to many frames
"""

from gid_jax.flow.backends import (
    DEFAULT_BACKEND,
    available_backends,
    estimate_flow,
    estimate_flow_batch,
)
from gid_jax.flow.io import read_flo, write_flo
from gid_jax.flow.tvl1 import TVL1Config, tvl1_flow, tvl1_flow_batch
from gid_jax.flow.visualize import flow_to_color, make_color_wheel

__all__ = [
    "DEFAULT_BACKEND",
    "TVL1Config",
    "available_backends",
    "estimate_flow",
    "estimate_flow_batch",
    "flow_to_color",
    "make_color_wheel",
    "read_flo",
    "tvl1_flow",
    "tvl1_flow_batch",
    "write_flo",
]
