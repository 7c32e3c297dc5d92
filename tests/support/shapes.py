"""The shape metrics' command line run in process, for the tests of what it scores."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from perception.eval.shapes import main


def run_parts_cli(gt_dir: Path, pred_dir: Path, taxonomy: Mapping[str, Any] | str, work_dir: Path) -> dict:
    """Score part-label files with ``perception.eval.shapes parts GT PRED --taxonomy SPEC --json OUT``:
    ``taxonomy`` (a spec, as ``taxonomy_spec`` gives) is written as ``work_dir/tiny.json``; asserts the
    command exits 0 and returns the metrics it saved to ``work_dir/m.json``."""
    spec = work_dir / "tiny.json"
    spec.write_text(json.dumps(taxonomy))
    out = work_dir / "m.json"
    assert main(["parts", str(gt_dir), str(pred_dir), "--taxonomy", str(spec), "--json", str(out)]) == 0
    return json.loads(out.read_text())
