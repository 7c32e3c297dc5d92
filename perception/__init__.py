"""perception: 3D LiDAR perception with PyTorch Lightning.

Readers turn dataset files into frames (``perception.data``), geometry lives in
``perception.geometry``; see README.md and DESIGN.md for the layout.
"""

__version__ = "0.1.0"
