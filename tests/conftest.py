"""Shared fixtures: the real sample data shipped in tests/data (see tests/data/README.md), and
``one_torch_thread`` for modules that pin torch to one thread.

The files are part of the repository, so a missing one is an error, never a skip.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TEST_DATA = REPO / "tests" / "data"
KITTI_ROOT = TEST_DATA / "kitti"
WAYMO_RECORD = TEST_DATA / "waymo" / "val_one_frame_labels_only.tfrecord"


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(
            f"{what} missing at {path}: it ships with the repository (tests/data/README.md); "
            "restore it with `git checkout -- tests/data`"
        )
    return path


@pytest.fixture(scope="session")
def kitti_root() -> Path:
    """KITTI-layout root with the three real frames 000000-000002 (no ImageSets: every scan is a frame)."""
    for sub, ext in (("velodyne", "bin"), ("label_2", "txt"), ("calib", "txt"), ("image_2", "png")):
        for frame_id in ("000000", "000001", "000002"):
            _require(KITTI_ROOT / "training" / sub / f"{frame_id}.{ext}", "real KITTI sample frame file")
    return KITTI_ROOT


@pytest.fixture(scope="session")
def waymo_record() -> Path:
    """The real one-frame Waymo v1 record (labels and calibrations; range images stripped)."""
    return _require(WAYMO_RECORD, "real Waymo sample record")


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Torch on one thread for a whole module, then the thread count it had; a module asks for it with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
