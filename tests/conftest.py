"""Shared fixtures: the real sample data in ../shared/data (skipped with a reason where absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def kitti_root() -> Path:
    root = SHARED_DATA / "kitti"
    if not (root / "training" / "velodyne").is_dir():
        pytest.skip(
            f"real KITTI sample frames not found at {root} (they ship beside the repo in ../shared/data)"
        )
    return root
