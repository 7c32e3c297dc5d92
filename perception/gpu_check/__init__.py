"""The one-shot GPU check: every op and one training step of every model family, CPU against GPU.

``python tools/gpu_check.py [--quick]`` (docs/gpu_check.md is the manual). Each check builds its
inputs once on the CPU with a fixed seed and runs on the CPU; where CUDA is available the same inputs
and the same weights (the same ``state_dict``) are copied to the GPU and run there, and the outputs are
compared output by output with a rule and a tolerance stated per output (:mod:`.compare`), float32
with TF32 off. Then the Waymo detector is timed on Waymo-sized frames (:mod:`.speed`).

- :mod:`.ops`: Hilbert codes and serialization, hard and dynamic voxelization, sparse convolution
  (our CPU kernels against spconv's CUDA kernels), rotated IoU and NMS, RoI point pooling, and the PVT
  encoder's segment attention.
- :mod:`.models`: ``train/<config>`` and ``infer/<config>`` for the detection, segmentation, occupancy
  and shape configs.
- :mod:`.runner`: running, the report table and the JSON.

Without a GPU the CPU half runs and the verdict says so (:data:`~.runner.NO_GPU`). For testing the
check itself, the second device may be the CPU (``Options(second="cpu")``): the second run then takes
the pure-torch code paths a GPU would, and ``perturb`` breaks its outputs on purpose.
"""

from perception.gpu_check.compare import Comparison, KeptBoxes, Rule, compare_outputs, perturb_outputs
from perception.gpu_check.core import CheckSpec, Options
from perception.gpu_check.runner import (
    NO_GPU,
    CheckResult,
    Report,
    all_checks,
    environment,
    format_environment,
    format_report,
    run_checks,
    select_checks,
    write_json,
)

__all__ = [
    "NO_GPU",
    "CheckResult",
    "CheckSpec",
    "Comparison",
    "KeptBoxes",
    "Options",
    "Report",
    "Rule",
    "all_checks",
    "compare_outputs",
    "environment",
    "format_environment",
    "format_report",
    "perturb_outputs",
    "run_checks",
    "select_checks",
    "write_json",
]
