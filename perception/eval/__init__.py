"""Evaluation metrics, each a ``torchmetrics.Metric`` and a command line (``python -m perception.eval.kitti``).

Submodules are imported on use (``from perception.eval.kitti import KittiAP``), so that running one as
``python -m`` does not import it twice.
"""
