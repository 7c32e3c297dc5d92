"""Speed of :class:`perception.models.PointNetClassifier` beside the most used PyTorch PointNet, CPU.

The peer is ``PointNetCls(k=40, feature_transform=True)`` from fxia22/pointnet.pytorch
(``pointnet/model.py``, MIT). It has no package on PyPI, so it is timed from a local copy of its
source: ``python tools/benchmark.py pointnet --peer /path/to/pointnet.pytorch`` loads
``pointnet/model.py`` from that folder by path (the repository, or the ``pointnet`` folder itself).
Nothing is imported from it unless the option is given; without it ours is timed alone and the table
says that the peer was not given.

Both networks see the same 32 sets of 1024 points (float32, uniform in [-1, 1]³), each in its own
layout: ours (B, N, 3), the peer (B, 3, N) channels-first (transposed once, before timing). At
``torch.set_num_threads(2)``:

- **eval forward**: eval mode, no gradients, ms a batch.
- **train step**: train mode, ``zero_grad``, forward, loss, backward (no optimizer step), ms a batch.
  The loss is each project's own: ours cross-entropy + 0.001 · :func:`orthogonality_loss` of the
  feature transform (``‖I − AAᵀ‖²_F``); the peer ``nll_loss`` of its log-softmax + 0.001 ·
  ``feature_transform_regularizer`` (the mean of ``‖AAᵀ − I‖_F``, not squared), as its
  ``utils/train_classification.py`` trains it.

The models take turns within each repeat (:func:`~benchmarks.timing.time_in_turns`); the rows give
the best and the median of the repeats and each model's median time over ours (``vs_ours``: the
peer's row is peer / ours). The reduced-width model of ``configs/pointnet_cls_synthetic.yaml`` (its
``init_args``, read from the file) is timed in the same turns, for reference.

**Parameter counts differ by ~2.5 k (0.07 %), for two reasons, both in the peer's code.** (1) Its
``PointNetfeat`` has one shared layer (64) before the feature transform and two (128-1024) after it,
where the paper (and ours) has 64-64 and 64-128-1024: it lacks two 64×64 layers (+ their BatchNorm),
8,448 parameters and ~2 % of the per-point multiply-adds. (2) Every ``Conv1d``/``Linear`` it puts
before a BatchNorm keeps its bias (redundant with BatchNorm's shift; ours has none): 5,952
parameters. Net, ours has 2,496 more. The peer also has no ReLU after its last shared layer (its
global feature can be negative) and drops out before its second FC's BatchNorm rather than before the
last layer; neither changes the parameter count or the cost noticeably.
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import cast

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from benchmarks import REPO
from benchmarks.timing import time_in_turns

__all__ = ["bench_pointnet", "import_peer", "reduced_config"]

CONFIG = REPO / "configs" / "pointnet_cls_synthetic.yaml"
REGULARISER_WEIGHT = 0.001  # both projects' (the paper's) weight of the feature-transform regulariser


def import_peer(path: str | Path) -> ModuleType:
    """fxia22/pointnet.pytorch's ``pointnet/model.py``, loaded by path from a local copy (the
    repository, the folder holding ``pointnet/``, or the ``pointnet`` folder itself)."""
    root = Path(path).expanduser().resolve()
    for candidate in (root / "pointnet" / "model.py", root / "model.py"):
        if candidate.is_file():
            break
    else:
        raise SystemExit(f"no pointnet/model.py under {root} (give the pointnet.pytorch checkout)")
    spec = importlib.util.spec_from_file_location("_peer_pointnet_model", candidate)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {candidate}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reduced_config() -> dict:
    """The ``PointNetClassifier`` init_args of ``configs/pointnet_cls_synthetic.yaml``."""
    config = yaml.safe_load(CONFIG.read_text())
    return dict(config["model"]["init_args"]["model"]["init_args"])


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class _Subject:
    """One network with its input layout and its project's training loss."""

    def __init__(self, name: str, model: nn.Module, points: torch.Tensor, loss: Callable) -> None:
        self.name, self.model, self.points, self.loss = name, model, points, loss

    def forward(self) -> None:
        self.model.eval()
        with torch.no_grad():
            self.model(self.points)

    def train_step(self, labels: torch.Tensor) -> None:
        self.model.train()
        self.model.zero_grad(set_to_none=True)
        self.loss(self.model, self.points, labels).backward()


def _our_loss(model: nn.Module, points: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    from perception.models.pointnet import orthogonality_loss

    logits, aux = model.forward_with_aux(points)
    return F.cross_entropy(logits, labels) + REGULARISER_WEIGHT * orthogonality_loss(aux.feature_transform)


def _peer_loss(regulariser: Callable) -> Callable:
    def loss(model: nn.Module, points: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        log_probs, _, trans_feat = model(points)
        return F.nll_loss(log_probs, labels) + REGULARISER_WEIGHT * regulariser(trans_feat)

    return loss


def _best_and_median(times: list[float]) -> float:
    # time_in_turns reduces each model's times to one number; here both are kept (a pair).
    return cast(float, (min(times), statistics.median(times)))


def bench_pointnet(
    peer: str | Path | None = None,
    threads: int = 2,
    batch: int = 32,
    points: int = 1024,
    num_classes: int = 40,
    repeats: int = 3,
    verbose: bool = False,
) -> list[dict]:
    """One row per model (ours, the peer where ``peer`` is given, our reduced config): parameters,
    eval-forward and train-step ms a batch (best and median of ``repeats`` after one warm-up), and the
    median time over ours (module doc)."""
    from perception.models import PointNetClassifier

    peer_module = import_peer(peer) if peer is not None else None
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        x = torch.rand(batch, points, 3) * 2 - 1
        labels = torch.randint(0, num_classes, (batch,))
        subjects = [_Subject("ours", PointNetClassifier(num_classes=num_classes), x, _our_loss)]
        if peer_module is not None:
            peer_model = peer_module.PointNetCls(k=num_classes, feature_transform=True)
            loss = _peer_loss(peer_module.feature_transform_regularizer)
            subjects.append(_Subject("peer", peer_model, x.transpose(1, 2).contiguous(), loss))
        reduced = reduced_config()
        reduced_labels = labels % int(reduced["num_classes"])
        subjects.append(_Subject("ours_reduced", PointNetClassifier(**reduced), x, _our_loss))

        fwd = time_in_turns([s.forward for s in subjects], repeats, reduce=_best_and_median)
        train = time_in_turns(
            [
                lambda s=s: s.train_step(reduced_labels if s.name == "ours_reduced" else labels)
                for s in subjects
            ],
            repeats,
            reduce=_best_and_median,
        )
    finally:
        torch.set_num_threads(previous)

    fwd_pairs = cast(list[tuple[float, float]], fwd)
    train_pairs = cast(list[tuple[float, float]], train)
    descriptions = {
        "ours": f"PointNetClassifier({num_classes}), paper widths, both T-Nets",
        "peer": f"fxia22 PointNetCls(k={num_classes}, feature_transform=True)",
        "ours_reduced": f"{CONFIG.name} widths ({reduced['num_classes']} classes)",
    }
    rows = []
    for s, (fwd_best, fwd_med), (train_best, train_med) in zip(subjects, fwd_pairs, train_pairs, strict=True):
        rows.append(
            {
                "model": s.name,
                "what": descriptions[s.name],
                "params": _params(s.model),
                "eval_fwd_best_ms": fwd_best * 1e3,
                "eval_fwd_median_ms": fwd_med * 1e3,
                "eval_fwd_vs_ours": fwd_med / fwd_pairs[0][1],
                "train_step_best_ms": train_best * 1e3,
                "train_step_median_ms": train_med * 1e3,
                "train_step_vs_ours": train_med / train_pairs[0][1],
            }
        )
    if peer_module is None:
        rows.insert(1, {"model": "peer", "what": "not given (--peer /path/to/pointnet.pytorch)"})
    if verbose:
        print(f"batch {batch} × {points} points, float32, {threads} threads, best/median of {repeats}")
        for row in rows:
            print(row)
    return rows


def _main() -> None:  # pragma: no cover - manual use
    t0 = time.perf_counter()
    bench_pointnet(sys.argv[1] if len(sys.argv) > 1 else None, verbose=True)
    print(f"{time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":  # pragma: no cover
    _main()
