"""Reading metric inputs given as mappings or objects, NumPy arrays or tensors (KITTI and Waymo metrics)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["as_numpy", "field"]


def field(obj: Any, *keys: str) -> Any:
    """The first of ``keys`` that ``obj`` (mapping or object) has and is not None, else None."""
    for key in keys:
        value = obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)
        if value is not None:
            return value
    return None


def as_numpy(value: Any) -> np.ndarray:
    """``value`` as a NumPy array (tensors detached and moved to the CPU)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value)
