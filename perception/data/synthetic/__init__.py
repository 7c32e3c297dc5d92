"""Synthetic LiDAR: a ray-cast HDL-64E-like sensor in procedurally generated street scenes.

The project's embedded default dataset. A frame is a pure function of ``(config, seed, index)``
(and the sequence layout): ::

    from perception.data.synthetic import SyntheticConfig, generate_frame, write_dataset

    frame = generate_frame(SyntheticConfig(), seed=0, index=7)   # points (N, 4), boxes_lidar (M, 7), ...
    write_dataset("data/synthetic", frames=1000, seed=0, sequences=20, workers=2)
    write_semantickitti("data/synthetic_seg", frames=960, sequences=320)  # SemanticKITTI layout

Modules: :mod:`.config` (knobs), :mod:`.lidar` (beam pattern, return model), :mod:`.shapes`
(primitives), :mod:`.actors` (vehicles, pedestrians, cyclists, clutter), :mod:`.scene` (road,
ground, traffic, motion), :mod:`.raycast` (numba kernels), :mod:`.camera` (virtual KITTI camera),
:mod:`.generator` (one frame), :mod:`.writer` (KITTI layout on disk), :mod:`.semantic_writer` (SemanticKITTI layout), :mod:`.benchmark`.
"""

from perception.data.synthetic.config import GENERATOR_VERSION, REALISM_SWITCHES, SyntheticConfig
from perception.data.synthetic.generator import SequenceLayout, SyntheticFrame, generate_frame
from perception.data.synthetic.lidar import beam_elevations, beam_pattern
from perception.data.synthetic.semantic_writer import (
    SEMANTIC_KITTI_IDS,
    SyntheticSegmentation,
    semantic_kitti_ids,
    write_semantickitti,
)
from perception.data.synthetic.shapes import SEMANTIC_CLASSES
from perception.data.synthetic.writer import split_frames, write_dataset

__all__ = [
    "GENERATOR_VERSION",
    "REALISM_SWITCHES",
    "SEMANTIC_CLASSES",
    "SEMANTIC_KITTI_IDS",
    "SequenceLayout",
    "SyntheticConfig",
    "SyntheticFrame",
    "SyntheticSegmentation",
    "beam_elevations",
    "beam_pattern",
    "generate_frame",
    "semantic_kitti_ids",
    "split_frames",
    "write_dataset",
    "write_semantickitti",
]
