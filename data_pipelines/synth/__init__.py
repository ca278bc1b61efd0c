"""Procedural oscillation videos with exact ground-truth motion.

Scenes of plants/branches with leaves and flowers, grass, candle flames and hanging cloth are
deformed by image-space modal superposition (damped oscillators driven by random wind), rendered
by exact backward mapping with occlusion, and written as mp4 + npz ground truth.
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
