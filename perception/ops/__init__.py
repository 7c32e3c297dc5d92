"""Geometric ops on points, grids and boxes (``hilbert``: space-filling-curve serialization, ...).

Submodules are imported explicitly (``from perception.ops import hilbert``); nothing is loaded here.
"""
