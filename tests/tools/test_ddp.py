"""DDP gives the single-process answers: for each task family a 2-process (gloo, CPU) fit through
``torchrun`` ends with one checkpoint; its final validation's metrics and written files equal a
single-process validation of that checkpoint over the same data (an odd number of samples, one a
batch, so a padding sampler would count a duplicate)."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
import yaml

from perception.data.occupancy import SYNTHETIC_OCCUPANCY
from perception.data.synthetic import write_dataset
from perception.data.synthetic.writer import write_dataset as write_occupancy_dataset

REPO = Path(__file__).resolve().parents[2]
TRAIN = str(REPO / "tools" / "train.py")
GRID = "{height: 32, width: 32, pixels_per_meter: 1.0, ego_col: 16, ego_row: 24}"


@dataclass
class Family:
    config: str
    writer: dict  # the writer callback, output paths relative to the run's folder ("{out}")
    files: str  # glob of the per-sample files (or the one file) the writer writes, under {out}
    args: list[str] = field(default_factory=list)
    name: str = "task"  # the CSV logger's name


FAMILIES = {
    "detection": Family(
        "pvt_synthetic.yaml",
        {"class_path": "perception.tasks.writers.KittiResultWriter",
         "init_args": {"output_dir": "{out}/pred", "on_validation": True}},
        "pred/*.txt",
        ["--data.root", "{data}", "--data.database", "null", "--data.val_split", "val7",
         "--data.batch_size", "2", "--data.val_batch_size", "1", "--data.num_workers", "0"],
        name="detection",
    ),
    "classification": Family(
        "pointnet_cls_synthetic.yaml",
        {"class_path": "perception.tasks.shape_writers.ClassificationCsvWriter",
         "init_args": {"path": "{out}/pred.csv", "on_validation": True}},
        "pred.csv",
        ["--data.init_args.num_train", "32", "--data.init_args.num_val", "7", "--data.init_args.num_points", "128",
         "--data.init_args.batch_size", "8", "--data.init_args.val_batch_size", "1",
         "--data.init_args.num_workers", "0"],
    ),
    "segmentation": Family(
        "p2p_seg_synthetic.yaml",
        {"class_path": "perception.tasks.writers.SemanticKittiLabelWriter",
         "init_args": {"output_dir": "{out}/pred", "on_validation": True}},
        "pred/sequences/*/predictions/*.label",
        ["--data.init_args.root", "{data}", "--data.init_args.num_workers", "0",
         "--data.init_args.batch_size", "2", "--data.init_args.val_batch_size", "1",
         "--data.init_args.synthetic",
         '{"frames": 9, "sequences": 3, "seed": 5, "num_beams": 4, "azimuth_step_deg": 2.0}',
         "--model.init_args.backbone.init_args.channels", "[8,16]",
         "--model.init_args.backbone.init_args.enc_blocks", "[1,1]",
         "--model.init_args.backbone.init_args.strides", "[2]",
         "--model.init_args.backbone.init_args.dec_blocks", "[1]",
         "--model.init_args.backbone.init_args.out_channels", "8",
         "--model.init_args.backbone.init_args.grid_size", "0.5"],
    ),
    "occupancy": Family(
        "bev_occupancy_synthetic.yaml",
        {"class_path": "perception.tasks.writers.OccupancyGridWriter", "init_args": {"output_dir": "{out}/pred"}},
        "pred/*",
        ["--data.init_args.root", "{data}", "--data.init_args.num_workers", "0",
         "--data.init_args.batch_size", "2", "--data.init_args.val_batch_size", "1",
         "--model.init_args.model.init_args.grid", GRID, "--data.init_args.grid", GRID,
         "--model.init_args.model.init_args.num_waypoints", "2", "--data.init_args.waypoint_times", "[0.5, 1.0]",
         "--model.init_args.model.init_args.pillar_channels", "[8]",
         "--model.init_args.model.init_args.bev_channels", "[8, 16]",
         "--model.init_args.model.init_args.bev_blocks", "[1, 1]", "--data.init_args.max_points", "2000"],
    ),
}  # fmt: skip


def _make_data(family: str, data: Path) -> None:
    if family == "detection":
        write_dataset(data, frames=40, seed=5)
        val = (data / "ImageSets" / "val.txt").read_text().split()
        (data / "ImageSets" / "val7.txt").write_text("\n".join(val[:7]) + "\n")
    elif family == "occupancy":
        config = replace(SYNTHETIC_OCCUPANCY, num_beams=8)
        write_occupancy_dataset(
            data, frames=60, sequences=2, config=config, val_fraction=0.5
        )  # 4 val samples


def _run(family: Family, tmp: Path, out: Path, subcommand: str, processes: int, *extra: str) -> None:
    overlay = out / "writer.yaml"
    out.mkdir(parents=True, exist_ok=True)
    writer = yaml.safe_load(yaml.safe_dump(family.writer).replace("{out}", str(out)))
    overlay.write_text(yaml.safe_dump({"trainer": {"callbacks": [writer]}}))
    args = [a.replace("{data}", str(tmp / "data")) for a in family.args]
    cli = [TRAIN, subcommand, "--config", family.config, "--config", str(overlay), *args,
           "--trainer.accelerator", "cpu", "--trainer.logger.init_args.save_dir", str(out),
           "--trainer.default_root_dir", str(out), *extra]  # fmt: skip
    if processes > 1:
        launch = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={processes}",
        ]
        cli += ["--trainer.devices", str(processes), "--trainer.strategy", "ddp"]
    else:
        launch, cli = [sys.executable], [*cli, "--trainer.devices", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*launch, *cli], timeout=900, capture_output=True, text=True, cwd=tmp, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]


def _final_validation(metrics_csv: Path) -> dict[str, float]:
    with open(metrics_csv) as f:
        rows = [r for r in csv.DictReader(f) if r.get("val/loss")]
    return {k: float(v) for k, v in rows[-1].items() if k.startswith("val/") and v != ""}


def _files(root: Path, pattern: str) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.glob(pattern)) if p.is_file()}


@pytest.mark.slow
@pytest.mark.parametrize("family_name", list(FAMILIES))
def test_two_process_ddp_gives_the_single_process_metrics_files_and_one_checkpoint(family_name, tmp_path):
    family = FAMILIES[family_name]
    _make_data(family_name, tmp_path / "data")
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    _run(family, tmp_path, ddp, "fit", 2, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
         "--trainer.num_sanity_val_steps", "0")  # fmt: skip
    version = ddp / family.name / "version_0"
    checkpoints = sorted(p.name for p in (version / "checkpoints").iterdir())
    assert checkpoints == ["best.ckpt", "last.ckpt"], checkpoints
    assert not (ddp / family.name / "version_1").exists()  # rank 1 logged nothing of its own

    _run(family, tmp_path, single, "validate", 1, "--ckpt_path", str(version / "checkpoints" / "last.ckpt"))
    want = _final_validation(single / family.name / "version_0" / "metrics.csv")
    got = _final_validation(version / "metrics.csv")
    assert len(want) > 1 and want.keys() == got.keys()
    # val/loss, a mean over samples, changes with a duplicated or missing sample; the metrics of two
    # steps' training are informative for segmentation and occupancy (AP and accuracy may still be 0)
    informative = [
        k for k, v in want.items() if k != "val/loss" and v not in (0.0, 100.0) and not math.isnan(v)
    ]
    assert want["val/loss"] > 0 and (informative or family_name in ("detection", "classification")), want
    for key, value in want.items():
        assert math.isclose(got[key], value, rel_tol=1e-6, abs_tol=1e-9), (key, got[key], value)

    written, expected = _files(ddp, family.files), _files(single, family.files)
    assert written and written == expected  # complete, each sample once, in the single-process order
    if family_name == "detection":
        val = (tmp_path / "data" / "ImageSets" / "val7.txt").read_text().split()
        assert sorted(Path(k).stem for k in written) == sorted(val)
    if family_name == "classification":
        ids = [line.split(",")[0] for line in expected["pred.csv"].decode().splitlines()[1:]]
        assert len(ids) == len(set(ids)) == 7
    if family_name == "occupancy":
        frames = expected["pred/frames.txt"].decode().split()
        assert len(frames) == len(set(frames)), frames
