"""KittiDetectionDataset and DetectionDataModule on a tiny synthetic dataset.

DataLoader workers import this module (for :class:`ParallelNumbaTouch`), so lightning (4 s to import)
stays out of its top level: the DataModule is imported inside :func:`datamodule`.
"""

from __future__ import annotations

from pathlib import Path

import numba
import numpy as np
import pytest
import torch

from perception.data.datasets import EpochSampler, KittiDetectionDataset
from perception.data.kitti import load_frame, read_split
from perception.data.synthetic import SyntheticConfig, write_dataset
from perception.data.transforms import CameraFovFilter, GlobalRotation, RangeFilter, Transform
from perception.geometry.boxes import points_in_boxes
from perception.geometry.camera import project_points
from perception.structures import Batch, KittiRecord, Sample

CLASSES = ("Car", "Pedestrian", "Cyclist")
PCR = (0.0, -40.0, -3.0, 70.4, 40.0, 1.0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    write_dataset(root, frames=10, seed=11, config=SyntheticConfig(azimuth_step_deg=0.5))
    return root


def datamodule(**kwargs):
    from perception.data.datamodules import DetectionDataModule

    return DetectionDataModule(**kwargs)


def batches(loader) -> list[Batch]:
    return list(loader)


def assert_same_batches(a: list[Batch], b: list[Batch]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.frame_ids == y.frame_ids
        torch.testing.assert_close(x.points, y.points, rtol=0, atol=0)
        for bx, by in zip(x.boxes, y.boxes, strict=True):
            torch.testing.assert_close(bx, by, rtol=0, atol=0)


# --------------------------------------------------------------------------------------------------
# dataset


def test_dataset_samples_keep_training_classes_and_records(tiny):
    ds = KittiDetectionDataset(tiny, "train", class_names=("Car", "Cyclist"))
    assert len(ds) == len(read_split(tiny, "train"))
    for i in range(len(ds)):
        s = ds[i]
        frame = load_frame(tiny, ds.frame_ids[i])
        keep = np.isin(frame.names, ["Car", "Cyclist"])
        assert s.frame_id == frame.frame_id and s.points.shape == frame.points.shape
        np.testing.assert_array_equal(s.boxes, frame.boxes[keep])
        assert s.labels.tolist() == [("Car", "Cyclist").index(n) for n in frame.names[keep]]
        assert isinstance(s.record, KittiRecord)
        np.testing.assert_array_equal(s.record.calib.lidar_to_image_matrix, frame.calib.lidar_to_image_matrix)
        assert s.record.image_shape == frame.image_shape
        assert s.record.objects.names.tolist() == frame.names.tolist()  # every type, for evaluation
        np.testing.assert_array_equal(s.record.boxes_lidar, frame.boxes)
        np.testing.assert_array_equal(s.record.difficulty, frame.difficulty)
        assert "DontCare" not in s.record.objects.names
    assert any(
        "Van" in ds[i].record.objects.names or "Pedestrian" in ds[i].record.objects.names
        for i in range(len(ds))
    )


def test_dataset_takes_frame_ids_instead_of_a_split(tiny):
    ids = read_split(tiny, "val")[:2]
    ds = KittiDetectionDataset(tiny, "chosen", frame_ids=[ids[1], int(ids[0])])
    assert ds.frame_ids == [ids[1], ids[0]]
    np.testing.assert_array_equal(ds[0].points, load_frame(tiny, ids[1]).points)
    with pytest.raises(FileNotFoundError, match="999999"):
        KittiDetectionDataset(tiny, "chosen", frame_ids=["999999"])


def test_camera_fov_filter_keeps_the_points_in_view(tiny):
    ds = KittiDetectionDataset(tiny, "train")
    s = ds.load(0)
    out = CameraFovFilter()(s, np.random.default_rng(0))
    assert 0 < len(out.points) < len(s.points) / 2  # a 360° scan, a ~90° camera
    uv, depth = project_points(out.points[:, :3], s.record.calib.lidar_to_image_matrix)
    assert (depth > 0).all() and (uv >= 0).all() and (uv[:, 0] < 1242).all() and (uv[:, 1] < 375).all()
    np.testing.assert_array_equal(out.boxes, s.boxes)
    # Objects entirely in the image (not truncated) keep all their points.
    frame = load_frame(tiny, ds.frame_ids[0])
    whole = frame.boxes[frame.truncated == 0]
    assert len(whole) > 0
    before = np.bincount(points_in_boxes(s.points, whole) + 1, minlength=len(whole) + 1)[1:]
    after = np.bincount(points_in_boxes(out.points, whole) + 1, minlength=len(whole) + 1)[1:]
    np.testing.assert_array_equal(after, before)
    with pytest.raises(ValueError, match="KittiRecord"):
        CameraFovFilter()(Sample(frame_id="x", points=s.points), np.random.default_rng(0))


def test_record_ground_truth_evaluates_like_the_frames(tiny):
    from perception.eval.kitti import evaluate

    ds = KittiDetectionDataset(tiny, "val")
    frames = [load_frame(tiny, f) for f in ds.frame_ids]
    predictions = [
        {
            "names": f.names,
            "scores": np.linspace(1, 0.5, len(f.names)),
            "boxes_camera": f.boxes_camera,
            "bbox": f.bbox,
        }
        for f in frames
    ]
    ours = evaluate([ds[i].record.ground_truth() for i in range(len(ds))], predictions)
    np.testing.assert_array_equal(list(ours.values()), list(evaluate(frames, predictions).values()))


def test_dataset_augmentation_depends_on_seed_epoch_and_index(tiny):
    ds = KittiDetectionDataset(tiny, "train", transforms=[GlobalRotation(np.pi)], seed=4)
    a = ds[(2, 3)]
    np.testing.assert_array_equal(a.points, ds[(2, 3)].points)
    ds.set_epoch(2)
    np.testing.assert_array_equal(a.points, ds[3].points)  # integer index at the dataset's epoch
    assert not np.array_equal(a.points, ds[(1, 3)].points)
    other_seed = KittiDetectionDataset(tiny, "train", transforms=[GlobalRotation(np.pi)], seed=5)
    assert not np.array_equal(a.points, other_seed[(2, 3)].points)
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_missing_root_says_where_data_goes(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        KittiDetectionDataset(tmp_path / "nothing")
    message = str(err.value)
    assert "data/README.md" in message
    assert "python tools/make_synthetic.py --out data/synthetic --frames 2000 --seed 0" in message
    assert "KITTI" in message and "label_2" in message
    with pytest.raises(FileNotFoundError, match=r"data/README\.md"):
        datamodule(root=str(tmp_path / "nothing")).setup("fit")


def test_epoch_sampler():
    s = EpochSampler(7, seed=1)
    e0 = list(s)
    assert sorted(i for _, i in e0) == list(range(7)) and {e for e, _ in e0} == {0}
    assert list(s) == e0
    s.set_epoch(1)
    e1 = list(s)
    assert {e for e, _ in e1} == {1} and [i for _, i in e1] != [i for _, i in e0]
    assert [i for _, i in EpochSampler(5, shuffle=False)] == [0, 1, 2, 3, 4]


# --------------------------------------------------------------------------------------------------
# data module


def test_batches_have_the_batch_shapes(tiny):
    dm = datamodule(root=str(tiny), batch_size=3, database=str(tiny / "gt_database"))
    dm.prepare_data()  # builds the database from the train split
    assert (tiny / "gt_database" / "index.json").is_file()
    dm.setup("fit")
    train = batches(dm.train_dataloader())
    assert [b.batch_size for b in train] == [3, 3, 2]
    for b in train:
        assert b.points.dtype == torch.float32 and b.points.shape[1] == 4
        assert b.batch_index.shape == (b.points.shape[0],) and b.batch_index.dtype == torch.int64
        assert torch.equal(torch.bincount(b.batch_index).cumsum(0)[-1], torch.tensor(b.points.shape[0]))
        for boxes, labels, diff in zip(b.boxes, b.labels, b.difficulty, strict=True):
            assert (
                boxes.shape == (len(labels), 7) and labels.dtype == torch.int64 and diff.dtype == torch.int32
            )
            assert ((labels >= 0) & (labels < 3)).all()
            assert ((boxes[:, 0] >= 0) & (boxes[:, 0] < 70.4) & (boxes[:, 1].abs() <= 40)).all()
        xyz = b.points[:, :3]
        assert (xyz[:, 0] >= 0).all() and (xyz[:, 0] < 70.4).all() and (xyz[:, 2] < 1).all()
    # Ground-truth sampling added objects: more boxes than the frames have.
    raw = sum(len(dm.train_set.load(i).boxes) for i in range(len(dm.train_set)))
    assert sum(len(x) for b in train for x in b.boxes) > raw


def test_same_seed_and_epoch_give_identical_batches(tiny):
    def loader(epoch: int, seed: int = 0):
        dm = datamodule(root=str(tiny), batch_size=2, seed=seed)
        dm.set_epoch(epoch)
        return batches(dm.train_dataloader())

    e1 = loader(1)
    assert_same_batches(e1, loader(1))
    e2 = loader(2)
    assert sorted(f for b in e1 for f in b.frame_ids) == sorted(f for b in e2 for f in b.frame_ids)
    assert [b.frame_ids for b in e1] != [b.frame_ids for b in e2]  # a new order
    by_frame = {f: p for b in e1 for f, p in zip(b.frame_ids, b.boxes, strict=True)}
    assert any(not torch.equal(by_frame[f], p) for b in e2 for f, p in zip(b.frame_ids, b.boxes, strict=True))
    with pytest.raises(AssertionError):
        assert_same_batches(e1, loader(1, seed=1))


def test_val_has_no_augmentation(tiny):
    dm = datamodule(root=str(tiny), batch_size=2, val_batch_size=4)
    dm.setup("fit")
    first = batches(dm.val_dataloader())
    dm.set_epoch(3)
    assert_same_batches(first, batches(dm.val_dataloader()))
    ids = read_split(tiny, "val")
    assert [f for b in first for f in b.frame_ids] == ids  # in split order
    rng = np.random.default_rng(0)
    expected = RangeFilter(PCR)(CameraFovFilter()(dm.val_set.load(0), rng), rng)
    np.testing.assert_array_equal(first[0].points[: len(expected.points)].numpy(), expected.points)
    predict = batches(dm.predict_dataloader())
    assert_same_batches(first, predict)


class ParallelNumbaTouch(Transform):
    """Runs a numba ``parallel=True`` kernel inside the worker (what kills forked OpenMP workers)."""

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        total = float(_parallel_sum(sample.points[:, 0]))
        return sample.replace(frame_id=f"{sample.frame_id}:{total:.3f}")


@numba.njit(parallel=True)
def _parallel_sum(x):  # pragma: no cover - numba
    total = 0.0
    for i in numba.prange(x.shape[0]):
        total += x[i]
    return total


def test_two_workers_after_numba_parallel_in_parent_match_zero_workers(tiny):
    _parallel_sum(np.ones(1000, np.float32))  # the parent now runs numba's threading layer (OpenMP here)

    def run(workers: int) -> list[list[Batch]]:
        dm = datamodule(
            root=str(tiny),
            batch_size=2,
            num_workers=workers,
            train_transforms=[ParallelNumbaTouch(), GlobalRotation(1.0), RangeFilter(PCR)],
        )
        loader = dm.train_dataloader()
        epochs = []
        for epoch in (0, 1):  # persistent workers: the epoch must reach them through the sampler
            loader.sampler.set_epoch(epoch)
            epochs.append(batches(loader))
        return epochs

    parallel, serial = run(2), run(0)
    for a, b in zip(parallel, serial, strict=True):
        assert_same_batches(a, b)
        assert all(":" in f for x in a for f in x.frame_ids)
    assert [b.frame_ids for b in parallel[0]] != [b.frame_ids for b in parallel[1]]


def test_config_builds_transforms_from_class_paths(tiny):
    """What LightningCLI does with a YAML ``data:`` section: class_path / init_args of real classes."""
    from jsonargparse import ArgumentParser

    from perception.data.database import build_gt_database
    from perception.data.datamodules import DetectionDataModule

    build_gt_database(tiny)  # ROOT/gt_database (left as it is when up to date)
    parser = ArgumentParser()
    parser.add_class_arguments(DetectionDataModule, "data")
    transforms = [
        ("GroundTruthSampling", {"database": str(tiny / "gt_database"), "sample_counts": {"Car": 20}}),
        ("ObjectNoise", {"translation_std": [0.25, 0.25, 0.0]}),
        ("RandomFlip", {"axes": ["x", "y"]}),
        ("GlobalScaling", {"min_scale": 0.9}),
        ("RangeFilter", {"point_cloud_range": list(PCR)}),
        ("IntensityNormalize", {"clip": 1.0}),
    ]
    config = parser.parse_object(
        {
            "data": {
                "root": str(tiny),
                "batch_size": 2,
                "train_transforms": [
                    {"class_path": f"perception.data.transforms.{name}", "init_args": args}
                    for name, args in transforms
                ],
            }
        }
    )
    dm = parser.instantiate(config).data
    assert [type(t).__name__ for t in dm.train_transforms] == [name for name, _ in transforms]
    assert dm.train_transforms[2].axes == ("x", "y") and dm.train_transforms[3].min_scale == 0.9
    assert dm.train_transforms[0].sample_counts == {"Car": 20}
    assert len(batches(dm.train_dataloader())) == 4  # 8 training frames
    assert "class_path: perception.data.transforms.GroundTruthSampling" in parser.dump(config)


def test_lightning_fit_sets_the_sampler_epoch(tiny):
    import lightning as L

    class Probe(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.seen: dict[int, list[Batch]] = {}

        def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
            self.seen.setdefault(self.current_epoch, []).append(batch)
            return self.w.sum() * batch.points[:, 0].mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    probe = Probe()
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(probe, datamodule=datamodule(root=str(tiny), batch_size=3))
    for epoch in (0, 1):
        expected = datamodule(root=str(tiny), batch_size=3)
        expected.set_epoch(epoch)
        assert_same_batches(probe.seen[epoch], batches(expected.train_dataloader()))
