"""The layering rule of docs/DESIGN.md, checked on what each package really loads when imported.

Every case starts a fresh interpreter, imports its modules one after another and records which
``perception.*`` modules each import pulled in (``sys.modules``); modules that share a rule share an
interpreter (the union of what they load is what matters, and each offender is named with the import
that brought it in). Ops and geometry sit at the bottom, structures above them, data and models beside
each other (neither loads the other), eval reads structures and the file formats it scores but no
dataset, transform or data module, and tasks compose models and evaluators (with what those read) but
load no dataset, data module, viewer or CLI. Benchmarks live in the top-level ``benchmarks/`` package,
never inside the library.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "perception"

OPS = ("perception.ops",)
GEOMETRY = ("perception.geometry",)
STRUCTURES = ("perception.structures",)
# the file-format modules an evaluator may read (KITTI label files, Waymo records and protos)
FILE_FORMATS = ("perception.data", "perception.data.kitti", "perception.data.io")
WAYMO_FORMATS = "perception.data.waymo"
WAYMO_NOT_FORMATS = (
    "perception.data.waymo.dataset",
    "perception.data.waymo.convert",
    "perception.data.waymo.database",
)
DATA_FORBIDDEN = (
    "perception.models",
    "perception.tasks",
    "perception.eval",
    "perception.viz",
    "perception.cli",
)

# argv: module names; prints {module: [perception.* modules its import loaded that were not loaded yet]}
_LIST_LOADED = """
import importlib, json, sys
def loaded():
    return {m for m in sys.modules if m == 'perception' or m.startswith('perception.')}
new = {}
for name in sys.argv[1:]:
    before = loaded()
    importlib.import_module(name)
    new[name] = sorted(loaded() - before)
print(json.dumps(new))
"""


def within(name: str, packages: tuple[str, ...]) -> bool:
    """Whether module ``name`` is one of ``packages`` or inside one of them."""
    return any(name == p or name.startswith(p + ".") for p in packages)


def loaded_by(modules: tuple[str, ...]) -> dict[str, list[str]]:
    """For each module, imported in turn in one fresh interpreter, the ``perception.*`` modules it added."""
    result = subprocess.run(
        [sys.executable, "-c", _LIST_LOADED, *modules],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    if result.returncode != 0:
        pytest.fail(f"importing {list(modules)} failed in a fresh interpreter:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def only(*packages: str):
    allowed = ("perception",)

    def check(name: str) -> bool:
        return name in allowed or within(name, packages)

    check.rule = f"only {', '.join(p + '*' for p in packages)}"
    return check


def never(*packages: str):
    def check(name: str) -> bool:
        return not within(name, packages)

    check.rule = f"never {', '.join(p + '*' for p in packages)}"
    return check


def eval_reads_formats(name: str) -> bool:
    if name == "perception" or within(name, OPS + GEOMETRY + STRUCTURES + ("perception.eval",)):
        return True
    if name in FILE_FORMATS:
        return True
    return within(name, (WAYMO_FORMATS,)) and not within(name, WAYMO_NOT_FORMATS)


eval_reads_formats.rule = (
    "only ops, geometry, structures, perception.eval* and the file formats "
    f"{', '.join(FILE_FORMATS)}, {WAYMO_FORMATS}* (not {', '.join(WAYMO_NOT_FORMATS)})"
)


def tasks_compose(name: str) -> bool:
    return within(name, ("perception.models", "perception.tasks")) or eval_reads_formats(name)


tasks_compose.rule = (
    f"only perception.models*, perception.tasks* and what eval may load ({eval_reads_formats.rule})"
)


def _ops_modules() -> tuple[str, ...]:
    """perception.ops and its submodules, benchmark files (``_bench*``) aside."""
    names = ["perception.ops"]
    for path in sorted((PACKAGE / "ops").iterdir()):
        stem = path.stem if path.suffix == ".py" else path.name
        if stem.startswith("_bench") or stem == "__init__" or stem == "__pycache__":
            continue
        if path.suffix == ".py" or (path / "__init__.py").is_file():
            names.append(f"perception.ops.{stem}")
    return tuple(names)


DATA_MODULES = (
    "perception.data",
    "perception.data.kitti",
    "perception.data.datasets",
    "perception.data.transforms",
    "perception.data.datamodules",
    "perception.data.waymo",
    "perception.data.waymo.dataset",
    "perception.data.waymo.convert",
    "perception.data.waymo.database",
    "perception.data.synthetic",
    "perception.data.semantickitti",
    "perception.data.segmentation",
    "perception.data.sequences",
    "perception.data.occupancy",
    "perception.data.occupancy_targets",
    "perception.data.shapes",
    "perception.data.shapes.modelnet",
    "perception.data.shapes.shapenet_part",
    "perception.data.shapes.synthetic",
    "perception.data.shapes.datamodules",
)

# (id, modules imported in turn in one fresh interpreter, the rule each loaded module must meet)
CASES = [
    ("perception.ops", _ops_modules(), only("perception.ops", "perception.geometry")),
    ("perception.geometry", ("perception.geometry",), only("perception.geometry", "perception.ops")),
    (
        "perception.structures",
        ("perception.structures",),
        only("perception.structures", "perception.geometry", "perception.ops"),
    ),
    (
        "perception.models",
        (
            "perception.models",
            "perception.models.backbones.point2point",
            "perception.models.backbones.sparse_unet",
            "perception.models.occupancy",
            "perception.models.pointnet",
        ),
        only("perception.models", "perception.ops", "perception.geometry", "perception.structures"),
    ),
    ("perception.data", DATA_MODULES, never(*DATA_FORBIDDEN)),
    (
        "perception.eval",
        (
            "perception.eval.kitti",
            "perception.eval.waymo",
            "perception.eval.localization",
            "perception.eval.detection",
            "perception.eval.base",
            "perception.eval.segmentation",
            "perception.eval.occupancy",
            "perception.eval.shapes",
        ),
        eval_reads_formats,
    ),
    (
        "perception.tasks",
        (
            "perception.tasks.segmentation",
            "perception.tasks.detection",
            "perception.tasks.occupancy",
            "perception.tasks.writers",
            "perception.tasks.classification",
            "perception.tasks.shape_writers",
        ),
        tasks_compose,
    ),
]


@pytest.mark.parametrize(("modules", "allowed"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_imports_load_only_what_the_layer_may_use(modules, allowed):
    offending = {
        module: bad
        for module, new in loaded_by(modules).items()
        if (bad := [name for name in new if not allowed(name)])
    }
    assert not offending, f"imports load modules outside their layer ({allowed.rule}): {offending}"


def test_no_benchmarks_inside_the_package():
    found = sorted(
        str(path.relative_to(REPO))
        for path in PACKAGE.rglob("*")
        if "__pycache__" not in path.parts
        and (path.name.startswith("_bench") or path.name in ("benchmarking.py", "benchmarking"))
    )
    assert not found, f"benchmarks belong in the top-level benchmarks/ package, not in perception/: {found}"
