"""Procedural oscillation videos with exact ground-truth motion.

Photographic backgrounds (sky, distant land, water) and static rigid objects (rocks, fences,
walls, buildings) stay still; trees, bushes, flowers, grass, cloth, flags and candle flames move
by image-space modal superposition (damped oscillators driven by random wind) whose frequencies
and amplitudes follow each object's visible size and thickness, at real-footage magnitudes
(mean motion ~1-3.6 px at 256x160, scaling with the frame height). Frames are rendered by exact
backward mapping with occlusion and written as mp4 + npz ground truth.
"""

from data_pipelines.synth.dataset import (
    SynthVideo,
    generate_video,
    load_ground_truth,
    synthesize,
    video_seed,
    write_example,
)

__all__ = ["SynthVideo", "generate_video", "write_example", "load_ground_truth", "synthesize",
           "video_seed"]
