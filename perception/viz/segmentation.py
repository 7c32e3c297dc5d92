"""Colours of semantic segmentation: SemanticKITTI's official colour map and per-class palettes.

- :data:`SEMANTIC_KITTI_COLOURS`: raw label id → RGB (0–255), the ``color_map`` of semantic-kitti-api's
  ``config/semantic-kitti.yaml``. The file stores **BGR** (its ``color_map: # bgr``, for OpenCV); the
  values here are reversed to RGB, so car (raw 10, ``[245, 150, 100]`` in the file) is
  ``(100, 150, 245)``, a light blue, as the official visualiser shows it.
- :func:`class_palette`: (K + 1, 3) RGB in [0, 1] of a
  :class:`~perception.structures.segmentation.LabelMap`'s training ids: id ``i`` ≥ 1 takes the colour of
  its ``learning_map_inv`` raw id (a raw id the official map lacks: a stable ``tab20`` colour from the
  class name); id 0 (ignored) is :data:`IGNORED_COLOUR`.
- :data:`ERROR_COLOURS`: correct / wrong / ignored, for colouring points by prediction error.

This module imports neither datasets nor torch (a label map is only read through its attributes), so
the viewer can use it without loading the data layer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, NDArray

from perception.viz.scene import class_colour

if TYPE_CHECKING:
    from perception.structures.segmentation import LabelMap

__all__ = [
    "ERROR_COLOURS",
    "IGNORED_COLOUR",
    "SEMANTIC_KITTI_COLOURS",
    "class_palette",
    "error_codes",
    "raw_colours",
]

# semantic-kitti-api config/semantic-kitti.yaml, color_map (BGR there), reversed here to RGB.
_SK_COLOR_MAP_BGR: dict[int, tuple[int, int, int]] = {
    0: (0, 0, 0), 1: (0, 0, 255), 10: (245, 150, 100), 11: (245, 230, 100), 13: (250, 80, 100),
    15: (150, 60, 30), 16: (255, 0, 0), 18: (180, 30, 80), 20: (255, 0, 0), 30: (30, 30, 255),
    31: (200, 40, 255), 32: (90, 30, 150), 40: (255, 0, 255), 44: (255, 150, 255), 48: (75, 0, 75),
    49: (75, 0, 175), 50: (0, 200, 255), 51: (50, 120, 255), 52: (0, 150, 255), 60: (170, 255, 150),
    70: (0, 175, 0), 71: (0, 60, 135), 72: (80, 240, 150), 80: (150, 240, 255), 81: (0, 0, 255),
    99: (255, 255, 50), 252: (245, 150, 100), 253: (200, 40, 255), 254: (30, 30, 255),
    255: (90, 30, 150), 256: (255, 0, 0), 257: (250, 80, 100), 258: (180, 30, 80), 259: (255, 0, 0),
}  # fmt: skip

SEMANTIC_KITTI_COLOURS: dict[int, tuple[int, int, int]] = {
    raw: (r, g, b) for raw, (b, g, r) in _SK_COLOR_MAP_BGR.items()
}
"""SemanticKITTI raw label id → (r, g, b) in 0–255: the official ``color_map``, converted from its BGR."""

IGNORED_COLOUR: tuple[float, float, float] = (0.5, 0.5, 0.5)
"""RGB in [0, 1] of ignored points (training id 0: unlabeled, outlier, other-structure, ...): mid grey,
visible on the white bird's-eye plot and on the black Open3D background alike."""

ERROR_COLOURS: dict[str, tuple[float, float, float]] = {
    "correct": (0.15, 0.8, 0.25),
    "wrong": (0.9, 0.1, 0.1),
    "ignored": IGNORED_COLOUR,
}
"""RGB in [0, 1] of points by prediction error: the prediction equals the ground truth (green), differs
from it (red), or the ground truth is ignored so the point is not scored (grey)."""


def _unit(rgb: Sequence[int]) -> tuple[float, float, float]:
    r, g, b = (float(c) / 255.0 for c in rgb)
    return r, g, b


def raw_colours(raw: ArrayLike, colour_map: Mapping[int, Sequence[int]] | None = None) -> NDArray[np.float64]:
    """(N, 3) RGB in [0, 1] of (N,) raw ``.label`` words (the low 16 bits are the semantic id).

    Args:
        raw: raw label ids or full uint32 label words.
        colour_map: raw id → RGB in 0–255 (default :data:`SEMANTIC_KITTI_COLOURS`); ids it lacks are
            :data:`IGNORED_COLOUR`.
    """
    table = SEMANTIC_KITTI_COLOURS if colour_map is None else colour_map
    semantic = np.asarray(raw).astype(np.int64).reshape(-1) & 0xFFFF
    lut = np.tile(np.asarray(IGNORED_COLOUR), (1 << 16, 1))
    for key, rgb in table.items():
        lut[int(key)] = _unit(rgb)
    return lut[semantic]


def class_palette(
    label_map: LabelMap, colour_map: Mapping[int, Sequence[int]] | None = None
) -> NDArray[np.float64]:
    """(K + 1, 3) RGB in [0, 1] of a class map's training ids 0..K.

    Row ``i`` ≥ 1 is the colour of ``label_map.learning_map_inv[i]`` in ``colour_map`` (default
    :data:`SEMANTIC_KITTI_COLOURS`), or, for a raw id it lacks, a stable ``tab20`` colour of the class
    name; row 0 (ignored) is :data:`IGNORED_COLOUR`.
    """
    table = SEMANTIC_KITTI_COLOURS if colour_map is None else colour_map
    k = len(label_map.class_names)
    palette = np.empty((k + 1, 3), dtype=np.float64)
    palette[0] = IGNORED_COLOUR
    for i in range(1, k + 1):
        raw = int(label_map.learning_map_inv[i])
        palette[i] = _unit(table[raw]) if raw in table else class_colour(label_map.class_names[i - 1])
    return palette


def error_codes(labels: ArrayLike, predictions: ArrayLike, ignore_label: int = 0) -> NDArray[np.int64]:
    """(N,) per point: 0 correct, 1 wrong, 2 ignored (ground truth ``ignore_label`` or negative).

    Raises:
        ValueError: the arrays differ in length.
    """
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    predictions = np.asarray(predictions).astype(np.int64).reshape(-1)
    if labels.shape != predictions.shape:
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels")
    codes = np.where(labels == predictions, 0, 1)
    codes[(labels == ignore_label) | (labels < 0)] = 2
    return codes
