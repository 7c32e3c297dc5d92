"""Benchmarks of the ``perception`` package against peers, kept out of the installed library.

One module per subject (``geometry``, ``hilbert``, ``iou``, ``voxelize``, ``sparse``, ``detector``,
``kitti_metric``, ``waymo_metric``, ``waymo_conversion``, ``synthetic``) plus the shared ``timing``
helpers. Run them through ``python tools/benchmark.py`` (or one alone, from the repository root, with
``python -m benchmarks.<name>``). Nothing in ``perception/`` imports this package.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
"""The repository root (the benchmarks run from a checkout; the real KITTI scans are in ``tests/data/kitti``)."""
