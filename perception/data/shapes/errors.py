"""The one error the shape readers raise for bad input: :class:`ShapeFormatError` names the file and the problem."""

from __future__ import annotations

__all__ = ["ShapeFormatError"]


class ShapeFormatError(ValueError):
    """A shape file (OFF, HDF5, ShapeNet-part text, split JSON) that is absent, corrupt or inconsistent."""
