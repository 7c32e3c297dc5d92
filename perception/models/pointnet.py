"""PointNet (Qi et al., CVPR 2017) on whole point sets: classification, part segmentation, and what the
network learned — its critical point set and its upper-bound shape.

The networks (the paper's Fig. 2, with the official code's choices where the paper is silent):

- :class:`TNet`: a mini-PointNet that predicts a k×k transform: shared MLP 64-128-1024, max over the
  points, FC 512-256 (every layer BatchNorm + ReLU), then a linear layer to k·k numbers initialised to
  zero (weights and bias), added to the identity, so that every T-Net starts as ``I`` exactly.
- :class:`PointNetFeatures`: input T-Net (3×3) → shared MLP 64-64 → feature T-Net (64×64, optional) →
  shared MLP 64-128-1024 → max over the points (the global feature). Every shared layer
  (:class:`SharedMLP`, the paper's 1×1 convolutions) is Linear + BatchNorm + ReLU, the 1024-wide last
  one included (as in the official code), so the global feature is non-negative.
- :class:`PointNetClassifier`: the global feature → FC 512-256 (BatchNorm + ReLU) → dropout 0.3 (the
  paper's keep ratio 0.7) → FC k.
- :class:`PointNetPartSegmenter`: per point, the 64-d local feature (after the feature transform),
  the 1024-d global feature and the shape's one-hot category → shared MLP 512-256-128 → dropout →
  num_parts logits.

Transforms act on row vectors, as in the official code: a point set ``P`` (N, 3) becomes ``P @ A``.
:func:`orthogonality_loss` is the paper's regulariser ``‖I − A Aᵀ‖²_F`` for the feature transform.

**What PointNet learned** (the paper's Sec. 4.3 and Fig. 7; Theorem 2). The global feature is
``u = max_i h(x_i)`` channel by channel, so

- the *critical point set* ``C_S`` — the points that win the max in at least one channel, at most 1024
  of them — alone gives the same ``u`` (:func:`critical_point_indices`); and
- the *upper-bound shape* ``N_S`` — every point ``x`` of space with ``h(x) ≤ u`` in every channel — may
  be added to the shape without changing ``u`` (:func:`upper_bound_mask`).

Both hold exactly for ``h`` the per-point network *with the T-Nets' transforms held fixed* (they are
themselves functions of the whole set: another subset or superset would in general predict other
transforms). Here they are held at those the shape itself gives (``transforms_from``).
:func:`critical_point_indices` can also add the points that win the T-Nets' own max-pools
(``with_transforms=True``): that larger subset gives the same transforms, the same global feature and
the same logits through the unmodified network.

All of this is exact in eval mode only: in training mode BatchNorm normalises with the batch's
statistics, so one point's features depend on every other point of the batch. (Training needs at least
two sets in a batch, for the T-Nets' fully connected BatchNorm.)

Numerics: every per-point layer is one matrix product over the flattened (B·N, C) points, and the 3×3
input transform is three broadcast multiply-adds, so a point's features round the same whatever other
points share the pass; the identities above then hold to the bit on the CPU (tested), except where a
pass holds only a handful of points (MKL's small-matrix paths, below about 6 rows), where they hold to
float32 rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "PointNetClassifier",
    "PointNetFeatures",
    "PointNetOutput",
    "PointNetPartSegmenter",
    "SharedMLP",
    "TNet",
    "critical_point_indices",
    "orthogonality_loss",
    "upper_bound_mask",
]


class SharedMLP(nn.Sequential):
    """The paper's shared MLP (its 1×1 convolutions): the same ``Linear`` (no bias: the BatchNorm's
    shift plays its part) + ``BatchNorm1d`` + ReLU for each width, applied to every point of
    (B, N, C_in) features → (B, N, channels[-1]).

    The points are flattened to one (B·N, C) matrix, so each layer is one matrix product (no layout
    copies; about twice as fast on the CPU here as ``Conv1d`` on (B, C, N)), BatchNorm's training
    statistics are taken over every point of the batch, and a point's result does not depend on how
    many other points share the product (oneDNN's 1×1 convolution rounds a point's features
    differently for another N), which keeps the critical-set identities exact to the bit.
    """

    def __init__(self, in_channels: int, channels: Sequence[int]) -> None:
        layers: list[nn.Module] = []
        for c_out in channels:
            layers += [
                nn.Linear(in_channels, c_out, bias=False),
                nn.BatchNorm1d(c_out),
                nn.ReLU(inplace=True),
            ]
            in_channels = c_out
        super().__init__(*layers)
        self.out_channels = int(in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return super().forward(x.reshape(b * n, c)).view(b, n, self.out_channels)


def fc_stack(in_channels: int, channels: Sequence[int]) -> nn.Sequential:
    """Fully connected layers on (B, C) features: for each width ``Linear`` + ``BatchNorm1d`` + ReLU."""
    layers: list[nn.Module] = []
    for c_out in channels:
        layers += [nn.Linear(in_channels, c_out, bias=False), nn.BatchNorm1d(c_out), nn.ReLU(inplace=True)]
        in_channels = c_out
    return nn.Sequential(*layers)


def _pool(x: torch.Tensor) -> torch.Tensor:
    """(B, N, C) → the max over the N points (B, C) (``amax``: several times faster than ``max`` with
    indices; the winners are found only when asked for, by :func:`argmax_points`)."""
    if x.shape[1] == 0:
        raise ValueError("PointNet needs at least one point per set")
    return x.amax(dim=1)


def argmax_points(features: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
    """(B, N, C) per-point features and their (B, C) max over the points → (B, C) int64, for each
    channel the first point that attains the max."""
    with torch.no_grad():
        return (features == pooled.unsqueeze(1)).to(torch.uint8).argmax(dim=1)


class TNet(nn.Module):
    """The transform network: (B, N, in_channels) per-point features → a (B, k, k) transform.

    Shared MLP ``channels`` (64-128-1024) over the points, the max over the points, FC ``fc_channels``
    (512-256), then a linear layer to k·k numbers whose weights and bias start at zero; the output is
    the identity plus that layer's, so an untrained T-Net is the identity exactly.

    Args:
        k: the size of the transform (3 for the input transform, 64 for the feature transform).
        in_channels: the channels it sees (the input T-Net may see normals or attributes too).
        channels, fc_channels: the widths of the shared MLP and of the fully connected layers.
    """

    def __init__(
        self,
        k: int,
        in_channels: int,
        channels: Sequence[int] = (64, 128, 1024),
        fc_channels: Sequence[int] = (512, 256),
    ) -> None:
        super().__init__()
        if k < 1 or in_channels < 1 or not channels or not fc_channels:
            raise ValueError(f"TNet needs k, in_channels >= 1 and layer widths (k={k}, in={in_channels})")
        self.k = int(k)
        self.in_channels = int(in_channels)
        self.mlp = SharedMLP(in_channels, channels)
        self.fc = fc_stack(channels[-1], fc_channels)
        self.transform = nn.Linear(fc_channels[-1], k * k)
        nn.init.zeros_(self.transform.weight)
        nn.init.zeros_(self.transform.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, in_channels) → (B, k, k)."""
        return self.transform_and_indices(x, indices=False)[0]

    def transform_and_indices(
        self, x: torch.Tensor, indices: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The (B, k, k) transform and (``indices``) the (B, channels[-1]) int64 index of the point
        that wins each channel of the T-Net's own max-pool (the points this transform depends on)."""
        per_point = self.mlp(x)
        pooled = _pool(per_point)
        delta = self.transform(self.fc(pooled)).view(-1, self.k, self.k)
        eye = torch.eye(self.k, dtype=delta.dtype, device=delta.device)
        return eye + delta, argmax_points(per_point, pooled) if indices else None


@dataclass
class PointNetOutput:
    """What :class:`PointNetFeatures` computes for a batch of B sets of N points.

    Attributes:
        local_features: (B, N, 64) per-point features after the feature transform (the part
            segmenter's local input).
        global_feature: (B, 1024) the max over the points of the per-point final features.
        point_features: (B, N, 1024) the per-point final features ``h(x_i)`` (the tensor the network
            computed, held by reference: drop the output to free it).
        input_transform: (B, 3, 3) the transform applied to x, y, z (and normals); None without an
            input T-Net.
        feature_transform: (B, 64, 64) the transform applied to the local features; None without a
            feature T-Net.
        transform_indices: where asked for (``transform_indices=True``), per T-Net run in this pass
            (input, then feature) the (B, 1024) int64 index of the first point that wins each channel
            of its max-pool; else empty.
    """

    local_features: torch.Tensor
    global_feature: torch.Tensor
    point_features: torch.Tensor
    input_transform: torch.Tensor | None
    feature_transform: torch.Tensor | None
    transform_indices: tuple[torch.Tensor, ...] = ()

    @cached_property
    def critical_indices(self) -> torch.Tensor:
        """(B, 1024) int64: for each channel of the global feature the index of the first point that
        attains the max (computed on first access); the critical point set is their union."""
        return argmax_points(self.point_features, self.global_feature)


class PointNetFeatures(nn.Module):
    """PointNet's feature network: (B, N, C) point sets → per-point and global features.

    Input channels: x, y, z, then optional extras. The input T-Net sees all C channels and predicts a
    3×3 transform ``A``; x, y, z become ``xyz @ A``. With ``normals=True`` channels 3–5 are normals
    nx, ny, nz and are multiplied by the same ``A`` (exact where ``A`` is a rotation, which is what a
    learnt pose normalisation approximates; a general linear map would carry normals by ``A⁻ᵀ``).
    Every other extra channel passes through untransformed.

    Args:
        in_channels: C ≥ 3.
        input_transform: use the input T-Net.
        feature_transform: use the feature T-Net (64×64 on the local features).
        normals: channels 3–5 are normals, rotated with x, y, z (needs C ≥ 6).
        local_channels: the shared MLP before the feature transform (64-64).
        global_channels: the shared MLP after it (64-128-1024); its last width is the global feature's.
        tnet_channels, tnet_fc_channels: the T-Nets' widths (64-128-1024 and 512-256).
    """

    def __init__(
        self,
        in_channels: int = 3,
        input_transform: bool = True,
        feature_transform: bool = True,
        normals: bool = False,
        local_channels: Sequence[int] = (64, 64),
        global_channels: Sequence[int] = (64, 128, 1024),
        tnet_channels: Sequence[int] = (64, 128, 1024),
        tnet_fc_channels: Sequence[int] = (512, 256),
    ) -> None:
        super().__init__()
        if in_channels < 3:
            raise ValueError(f"in_channels must be >= 3 (x, y, z, ...), got {in_channels}")
        if normals and in_channels < 6:
            raise ValueError(
                f"normals=True needs channels 3-5 to be normals (in_channels >= 6), got {in_channels}"
            )
        if not local_channels or not global_channels:
            raise ValueError("local_channels and global_channels must name at least one width each")
        self.in_channels = int(in_channels)
        self.normals = bool(normals)
        self.local_channels = int(local_channels[-1])
        self.out_channels = int(global_channels[-1])
        self.input_tnet = TNet(3, in_channels, tnet_channels, tnet_fc_channels) if input_transform else None
        self.local_mlp = SharedMLP(in_channels, local_channels)
        self.feature_tnet = (
            TNet(self.local_channels, self.local_channels, tnet_channels, tnet_fc_channels)
            if feature_transform
            else None
        )
        self.global_mlp = SharedMLP(self.local_channels, global_channels)

    def forward(
        self,
        points: torch.Tensor,
        *,
        transforms_from: PointNetOutput | None = None,
        transform_indices: bool = False,
    ) -> PointNetOutput:
        """Encode a batch of point sets.

        Args:
            points: (B, N, C) float32, x, y, z (the shape's frame, unit sphere) then extras.
            transforms_from: take the input and feature transforms of this earlier output (broadcast
                over the batch where it holds one set) instead of predicting them: the per-point
                network ``h`` with the T-Nets held fixed (for critical and upper-bound points).
            transform_indices: also find the points that win the T-Nets' max-pools.

        Returns:
            :class:`PointNetOutput`.
        """
        if points.ndim != 3 or points.shape[2] != self.in_channels:
            raise ValueError(f"points must be (B, N, {self.in_channels}), got {tuple(points.shape)}")
        tnet_indices: list[torch.Tensor] = []
        x = points
        input_transform = None
        if self.input_tnet is not None:
            if transforms_from is not None:
                input_transform = _given(transforms_from.input_transform, "input", len(points))
            else:
                input_transform, indices = self.input_tnet.transform_and_indices(x, transform_indices)
                tnet_indices += [] if indices is None else [indices]
            x = self._apply_input_transform(points, input_transform)
        x = self.local_mlp(x)  # (B, N, 64)
        feature_transform = None
        if self.feature_tnet is not None:
            if transforms_from is not None:
                feature_transform = _given(transforms_from.feature_transform, "feature", len(points))
            else:
                feature_transform, indices = self.feature_tnet.transform_and_indices(x, transform_indices)
                tnet_indices += [] if indices is None else [indices]
            x = torch.bmm(x, feature_transform)
        local = x
        final = self.global_mlp(local)  # (B, N, 1024)
        global_feature = _pool(final)
        return PointNetOutput(
            local_features=local,
            global_feature=global_feature,
            input_transform=input_transform,
            feature_transform=feature_transform,
            point_features=final,
            transform_indices=tuple(tnet_indices),
        )

    def _apply_input_transform(self, points: torch.Tensor, transform: torch.Tensor) -> torch.Tensor:
        """(B, N, C) with x, y, z (and normals) multiplied by the (B, 3, 3) transform on the right."""
        parts = [_times_3x3(points[..., :3], transform)]
        rest = 3
        if self.normals:
            parts.append(_times_3x3(points[..., 3:6], transform))
            rest = 6
        if points.shape[2] > rest:
            parts.append(points[..., rest:])
        return torch.cat(parts, dim=2) if len(parts) > 1 else parts[0]


def _times_3x3(vectors: torch.Tensor, transform: torch.Tensor) -> torch.Tensor:
    """(B, N, 3) row vectors times a (B, 3, 3) transform, as three broadcast multiply-adds: a batched
    matrix product with K = 3 rounds a point differently depending on how many points share it
    (MKL's small-matrix paths), and the critical-set identities should hold to the bit."""
    out = vectors[..., 0:1] * transform[:, None, 0]
    out = out + vectors[..., 1:2] * transform[:, None, 1]
    return out + vectors[..., 2:3] * transform[:, None, 2]


def _given(transform: torch.Tensor | None, name: str, batch: int) -> torch.Tensor:
    """A fixed transform from an earlier output, broadcast to ``batch`` sets where it holds one."""
    if transform is None:
        raise ValueError(f"transforms_from has no {name} transform but this network has a {name} T-Net")
    if len(transform) == batch:
        return transform
    if len(transform) == 1:
        return transform.expand(batch, -1, -1)
    raise ValueError(f"transforms_from holds {len(transform)} {name} transforms for a batch of {batch}")


def _head(
    body: Callable[[int, Sequence[int]], nn.Module],
    in_channels: int,
    channels: Sequence[int],
    dropout: float,
    num_outputs: int,
) -> nn.Sequential:
    """A network's head: ``body`` (:func:`fc_stack` or :class:`SharedMLP`) of widths ``channels`` →
    dropout ``dropout`` → a linear layer to ``num_outputs``."""
    return nn.Sequential(
        body(in_channels, channels),
        nn.Dropout(dropout),
        nn.Linear(channels[-1] if channels else in_channels, num_outputs),
    )


class PointNetClassifier(nn.Module):
    """PointNet classification network: (B, N, C) point sets → (B, num_classes) logits.

    The global feature of :class:`PointNetFeatures` → FC 512-256 (BatchNorm + ReLU) → dropout
    ``dropout`` → FC ``num_classes``. In eval mode the logits are the same for any order of the N points
    (a max over per-point functions), and one set's logits never depend on another set of the batch.

    Args:
        num_classes: k (ModelNet40: 40).
        in_channels, input_transform, feature_transform, normals: see :class:`PointNetFeatures`.
        dropout: the drop probability before the last layer (the paper's keep ratio 0.7).
        head_channels: the hidden FC widths (512-256).
        local_channels, global_channels, tnet_channels, tnet_fc_channels: the feature network's widths
            (:class:`PointNetFeatures`).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        input_transform: bool = True,
        feature_transform: bool = True,
        dropout: float = 0.3,
        normals: bool = False,
        head_channels: Sequence[int] = (512, 256),
        local_channels: Sequence[int] = (64, 64),
        global_channels: Sequence[int] = (64, 128, 1024),
        tnet_channels: Sequence[int] = (64, 128, 1024),
        tnet_fc_channels: Sequence[int] = (512, 256),
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        widths = (local_channels, global_channels, tnet_channels, tnet_fc_channels)
        self.features = PointNetFeatures(in_channels, input_transform, feature_transform, normals, *widths)
        self.head = _head(fc_stack, self.features.out_channels, head_channels, dropout, num_classes)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """(B, N, C) float32 point sets → (B, num_classes) logits."""
        return self.forward_with_aux(points)[0]

    def forward_with_aux(self, points: torch.Tensor) -> tuple[torch.Tensor, PointNetOutput]:
        """The logits and the :class:`PointNetOutput` behind them (its ``feature_transform`` for
        :func:`orthogonality_loss`, its ``critical_indices`` for :func:`critical_point_indices`)."""
        out = self.features(points)
        return self.head(out.global_feature), out

    def classify(self, global_feature: torch.Tensor) -> torch.Tensor:
        """(B, 1024) global features → (B, num_classes) logits (the head alone)."""
        return self.head(global_feature)


class PointNetPartSegmenter(nn.Module):
    """PointNet part-segmentation network: (B, N, C) point sets and their categories → per-point part
    logits (B, N, num_parts).

    Per point, ``[local feature (64), global feature (1024), one-hot category (num_categories)]`` →
    shared MLP 512-256-128 (Linear + BatchNorm + ReLU per point) → dropout ``dropout`` → a linear
    layer to ``num_parts``. The category conditions the network, as in the paper's part-segmentation model; the
    logits cover every part of the taxonomy (mask those of other categories to score a shape, e.g. with
    :meth:`~perception.structures.shapes.PartTaxonomy.part_mask`). In eval mode a permutation of the
    points permutes the outputs the same way.

    Args:
        num_parts: P (ShapeNet-part: 50).
        num_categories: K (ShapeNet-part: 16).
        in_channels, input_transform, feature_transform, normals: see :class:`PointNetFeatures`.
        dropout: the drop probability before the last layer.
        head_channels: the shared MLP widths (512-256-128).
        local_channels, global_channels, tnet_channels, tnet_fc_channels: the feature network's widths
            (:class:`PointNetFeatures`).
    """

    def __init__(
        self,
        num_parts: int,
        num_categories: int,
        in_channels: int = 3,
        input_transform: bool = True,
        feature_transform: bool = True,
        dropout: float = 0.2,
        normals: bool = False,
        head_channels: Sequence[int] = (512, 256, 128),
        local_channels: Sequence[int] = (64, 64),
        global_channels: Sequence[int] = (64, 128, 1024),
        tnet_channels: Sequence[int] = (64, 128, 1024),
        tnet_fc_channels: Sequence[int] = (512, 256),
    ) -> None:
        super().__init__()
        if num_parts < 1 or num_categories < 1:
            raise ValueError(f"num_parts and num_categories must be >= 1, got {num_parts}, {num_categories}")
        self.num_parts = int(num_parts)
        self.num_categories = int(num_categories)
        widths = (local_channels, global_channels, tnet_channels, tnet_fc_channels)
        self.features = PointNetFeatures(in_channels, input_transform, feature_transform, normals, *widths)
        width = self.features.local_channels + self.features.out_channels + num_categories
        self.head = _head(SharedMLP, width, head_channels, dropout, num_parts)

    def forward(self, points: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        """(B, N, C) float32 point sets and (B,) int64 category indices → (B, N, num_parts) logits."""
        return self.forward_with_aux(points, category)[0]

    def forward_with_aux(
        self, points: torch.Tensor, category: torch.Tensor
    ) -> tuple[torch.Tensor, PointNetOutput]:
        """The per-point logits and the :class:`PointNetOutput` behind them."""
        if category.shape != (len(points),):
            raise ValueError(f"category must be ({len(points)},) int64, got {tuple(category.shape)}")
        out = self.features(points)
        n = points.shape[1]
        one_hot = F.one_hot(category.long(), self.num_categories).to(points.dtype)
        x = torch.cat(
            [
                out.local_features,
                out.global_feature.unsqueeze(1).expand(-1, n, -1),
                one_hot.unsqueeze(1).expand(-1, n, -1),
            ],
            dim=2,
        )
        return self.head(x), out


def orthogonality_loss(transform: torch.Tensor) -> torch.Tensor:
    """The paper's regulariser ``‖I − A Aᵀ‖²_F`` of (B, k, k) transforms, the mean over the batch.

    Zero exactly for orthogonal ``A``. The official TensorFlow code computes ``tf.nn.l2_loss``, which is
    half of this (``Σ x² / 2``); the task multiplies the result by its weight (the paper's 0.001).
    """
    if transform.ndim != 3 or transform.shape[1] != transform.shape[2]:
        raise ValueError(f"transform must be (B, k, k), got {tuple(transform.shape)}")
    eye = torch.eye(transform.shape[1], dtype=transform.dtype, device=transform.device)
    residual = eye - torch.bmm(transform, transform.transpose(1, 2))
    return residual.pow(2).sum(dim=(1, 2)).mean()


# ---------------------------------------------------------------------------------- what it learned


def _feature_network(model: nn.Module) -> PointNetFeatures:
    if isinstance(model, PointNetFeatures):
        return model
    found = getattr(model, "features", None)
    if isinstance(found, PointNetFeatures):
        return found
    raise TypeError(
        f"expected a PointNetFeatures or a network with one as .features, got {type(model).__name__}"
    )


def _eval_features(model: nn.Module) -> PointNetFeatures:
    features = _feature_network(model)
    if features.training:
        raise ValueError(
            "critical and upper-bound points need the network in eval mode (model.eval()): in training "
            "mode BatchNorm mixes the points of the batch"
        )
    return features


def _as_batch(points: torch.Tensor) -> torch.Tensor:
    return points.unsqueeze(0) if points.ndim == 2 else points


def critical_point_indices(
    source: PointNetOutput | nn.Module,
    points: torch.Tensor | None = None,
    *,
    with_transforms: bool = False,
) -> list[torch.Tensor]:
    """The critical point set ``C_S`` of each shape: the sorted unique indices of its points that win
    the global max-pool in at least one channel (at most 1024 per shape; the paper's Fig. 7).

    The global feature of ``points[C_S]`` with the shape's transforms held fixed
    (``transforms_from``) is the shape's global feature exactly, and so are the classifier's logits.

    Args:
        source: a :class:`PointNetOutput` (e.g. the ``aux`` of ``forward_with_aux``), or a network
            (:class:`PointNetFeatures`, :class:`PointNetClassifier`, :class:`PointNetPartSegmenter`),
            in eval mode, run on ``points`` without gradients.
        points: (B, N, C) or one (N, C) set; with a network only.
        with_transforms: add the points that win the T-Nets' own max-pools: the unmodified network
            run on that subset predicts the same transforms, global feature and logits. Needs the
            T-Nets' indices: a network, or an output computed with ``transform_indices=True``.

    Returns:
        B (N_c,) int64 tensors, each sorted, on the source's device.
    """
    if isinstance(source, PointNetOutput):
        if points is not None:
            raise ValueError("give points with a network, not with a PointNetOutput")
        out = source
    else:
        if points is None:
            raise ValueError("a network needs the points to find their critical set")
        features = _eval_features(source)
        with torch.no_grad():
            out = features(_as_batch(points), transform_indices=with_transforms)
    indices = [out.critical_indices]
    if with_transforms:
        expected = (out.input_transform is not None) + (out.feature_transform is not None)
        if len(out.transform_indices) != expected:
            raise ValueError(
                "this output has no T-Net indices: compute it with transform_indices=True (and no "
                "transforms_from), or pass the network and the points"
            )
        indices += list(out.transform_indices)
    joined = torch.cat(indices, dim=1)
    return [torch.unique(row, sorted=True) for row in joined]


def upper_bound_mask(
    model: nn.Module, points: torch.Tensor, candidates: torch.Tensor, chunk: int = 8192
) -> torch.Tensor:
    """Which candidate points lie in the shape's upper-bound shape ``N_S``: those whose per-point
    final feature is ≤ the shape's global feature in every channel, so that adding any of them (or all)
    to the shape leaves its global feature — and its logits — unchanged (the paper's Fig. 7).

    The candidates' features are computed with the input and feature transforms the shape itself
    gives (the T-Nets held fixed; see the module docstring). The network must be in eval mode; it is
    run without gradients.

    Args:
        model: a :class:`PointNetFeatures` or a network with one as ``.features``.
        points: (N, C) one shape (or (1, N, C)).
        candidates: (M, C) points of space to test, e.g. a dense grid in the unit cube; (M, 3) where
            C > 3 gets zeros in the extra channels.
        chunk: candidates per forward pass (memory: chunk × 1024 floats).

    Returns:
        (M,) bool.
    """
    features = _eval_features(model)
    shape = _as_batch(points)
    if len(shape) != 1:
        raise ValueError(f"upper_bound_mask takes one shape, got a batch of {len(shape)}")
    if candidates.ndim != 2 or candidates.shape[1] not in (3, features.in_channels):
        raise ValueError(
            f"candidates must be (M, 3) or (M, {features.in_channels}), got {tuple(candidates.shape)}"
        )
    candidates = candidates.to(shape.dtype)
    if candidates.shape[1] < features.in_channels:
        candidates = F.pad(candidates, (0, features.in_channels - candidates.shape[1]))
    masks = []
    with torch.no_grad():
        reference = features(shape)
        bound = reference.global_feature[0]
        for start in range(0, len(candidates), chunk):
            part = candidates[start : start + chunk].unsqueeze(0)
            h = features(part, transforms_from=reference).point_features[0]
            masks.append((h <= bound).all(dim=1))
    if not masks:
        return torch.zeros(0, dtype=torch.bool, device=candidates.device)
    return torch.cat(masks)
