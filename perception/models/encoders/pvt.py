"""PVTransformer's point-to-voxel encoder: attention, not max-pooling, aggregates a voxel's points.

PVTransformer (arXiv 2405.02811) replaces the PointNet max-pool that turns a voxel's points into one
voxel feature with attention in which the voxel's points are the keys and values. Layer counts and
widths are not public; here they are init args. The design:

1. **Point embedding.** Each point's PointPillars decoration (see
   :meth:`~perception.models.encoders.grouping.PointGroups.decorated`) goes through
   ``Linear → BatchNorm1d → ReLU`` to ``width`` channels: the point tokens ``p`` (N', width).
2. **Voxel token.** One query token per voxel, ``t0`` (V, width):

   - ``query="latent"``: a learned vector, the same for every voxel (a Perceiver-style latent);
   - ``query="residual"``: built from the voxel's own points, the max-pool of its point tokens
     (PointNet's voxel feature), so the attention layers learn a residual on top of PointNet. The
     paper reports that the latent-only variant trains unstably; this is the default.
3. **L attention layers** (pre-norm transformer decoder layers, cross-attention only):
   ``t ← t + Drop(MHA(LN(t), LN(p)))``, ``t ← t + Drop(FFN(LN(t)))``, FFN = Linear → GELU → Linear.
   Every layer has its own projections; the keys and values are always the voxel's point tokens.
4. A final LayerNorm, then an optional Linear to ``out_channels``.

**Multi-head attention over variable-size sets without padding** (:func:`segment_attention`). The
points are sorted by voxel (each voxel's points are one run of rows) and every reduction is a segment
reduction over those runs (``torch.segment_reduce``: deterministic, no atomics):

- logits per point and head ``s_ih = <q_{v(i)h}, k_ih> / sqrt(d_head)``, (N', H);
- the per-voxel max ``m_vh`` (segment max, detached: a softmax does not depend on the shift),
  ``e_ih = exp(s_ih - m_{v(i)h})``, the per-voxel sum ``Z_vh`` (segment sum),
  weights ``a_ih = e_ih / Z_{v(i)h}`` (dropout applies here);
- the output ``o_vh = Σ_{i in v} a_ih v_ih`` (segment sum), heads concatenated, projected.

Every step is a per-point map or a sum/max over a voxel's points, so the voxel feature does not
depend on the order of the points within a voxel, and no voxel sees another's points (in eval mode;
in training BatchNorm's statistics are taken over all points, as in PointNet encoders). Memory is
O(N' · width), never O(V · max points · width).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from perception.models.encoders.grouping import PointGroups, group_points
from perception.models.inference_path import fast_path
from perception.ops import segments
from perception.structures import VoxelFeatures

__all__ = ["PVTEncoder", "VoxelAttentionLayer", "segment_attention", "segment_softmax"]


def segment_softmax(logits: torch.Tensor, groups: PointGroups) -> torch.Tensor:
    """Softmax over each voxel's points, separately per column.

    Args:
        logits: (N', H) float, per point (sorted by voxel as in ``groups``) and head.
        groups: the grouping of the points.

    Returns:
        (N', H) weights in (0, 1] summing to 1 over each voxel's points, per head.
    """
    peak = groups.max(logits.detach())  # (V, H); the shift cancels, so no gradient is needed through it
    e = torch.exp(logits - groups.broadcast(peak))
    return e / groups.broadcast(groups.sum(e))


def segment_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    groups: PointGroups,
    dropout: float = 0.0,
    training: bool = False,
) -> torch.Tensor:
    """Multi-head attention of one query per voxel over that voxel's points, without padding.

    Args:
        query: (V, H, d) per voxel and head.
        key: (N', H, d) per point (sorted by voxel as in ``groups``) and head.
        value: (N', H, d_v).
        groups: the grouping of the points.
        dropout: dropout probability on the attention weights (in training).
        training: whether dropout is active.

    Returns:
        (V, H, d_v) in the values' dtype: ``Σ_{i in v} softmax_i(<q_v, k_i> / sqrt(d)) v_i`` per voxel and
        head. The softmax and the weighted sum run in at least float32 (under autocast too).
    """
    logits = (groups.broadcast(query) * key).sum(-1) / math.sqrt(query.shape[-1])  # (N', H)
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # softmax in >= float32 (AMP)
    weights = F.dropout(segment_softmax(logits, groups), dropout, training)
    return groups.sum(weights.unsqueeze(-1) * value).to(value.dtype)


class VoxelAttentionLayer(nn.Module):
    """One pre-norm cross-attention layer: voxel tokens attend to their own points' tokens.

    Args:
        width: token width D (divisible by ``num_heads``).
        num_heads: attention heads H.
        ffn_ratio: the FFN's hidden width is ``ffn_ratio * width``.
        dropout: on the attention weights and on both residual branches.
    """

    def __init__(self, width: int, num_heads: int, ffn_ratio: float = 2.0, dropout: float = 0.0) -> None:
        super().__init__()
        if width % num_heads:
            raise ValueError(f"width {width} must be divisible by num_heads {num_heads}")
        self.num_heads, self.dropout = num_heads, dropout
        self.norm_query = nn.LayerNorm(width)
        self.norm_points = nn.LayerNorm(width)
        self.to_query = nn.Linear(width, width)
        self.to_key_value = nn.Linear(width, 2 * width)
        self.proj = nn.Linear(width, width)
        hidden = round(ffn_ratio * width)
        self.norm_ffn = nn.LayerNorm(width)
        self.ffn = nn.Sequential(
            nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, width)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, tokens: torch.Tensor, points: torch.Tensor, groups: PointGroups) -> torch.Tensor:
        """Update the voxel tokens.

        Args:
            tokens: (V, D) voxel tokens.
            points: (N', D) point tokens, sorted by voxel as in ``groups``.
            groups: the grouping.

        Returns:
            (V, D) updated voxel tokens.
        """
        v, n, d = tokens.shape[0], points.shape[0], tokens.shape[1]
        h = self.num_heads
        q = self.to_query(self.norm_query(tokens)).view(v, h, d // h)
        k, val = self.to_key_value(self.norm_points(points)).view(n, 2, h, d // h).unbind(1)
        fused = (
            fast_path(self)
            and q.device.type == "cpu"
            and q.dtype == k.dtype
            and q.dtype in (torch.float32, torch.bfloat16)
        )
        if fused:  # one numba pass over the points, the same arithmetic (perception.ops.segments)
            attended = segments.segment_attention(q, k, val, groups.num_points).reshape(v, d)
        else:
            attended = segment_attention(q, k, val, groups, self.dropout, self.training).reshape(v, d)
        tokens = tokens + self.drop(self.proj(attended))
        return tokens + self.drop(self.ffn(self.norm_ffn(tokens)))


class PVTEncoder(nn.Module):
    """Points → one feature per voxel by attention over the voxel's points (PVTransformer).

    Args:
        in_channels: C, the point columns (x, y, z + attributes). The embedding sees C + 6.
        voxel_size: (3,) ``[dx, dy, dz]`` metres.
        point_cloud_range: (6,) ``[x_min, y_min, z_min, x_max, y_max, z_max]`` metres.
        width: token width D.
        depth: attention layers L (0 gives PointNet: the residual query alone).
        num_heads: heads per layer (divides ``width``).
        query: ``"residual"`` (max-pool of the voxel's point tokens) or ``"latent"`` (learned).
        ffn_ratio: FFN hidden width / D.
        dropout: attention-weight and residual dropout.
        out_channels: width of the output features (a final Linear); None keeps D.
    """

    def __init__(
        self,
        in_channels: int,
        voxel_size: Sequence[float],
        point_cloud_range: Sequence[float],
        width: int = 64,
        depth: int = 2,
        num_heads: int = 4,
        query: Literal["latent", "residual"] = "residual",
        ffn_ratio: float = 2.0,
        dropout: float = 0.0,
        out_channels: int | None = None,
    ) -> None:
        super().__init__()
        if in_channels < 3:
            raise ValueError(f"in_channels must be >= 3 (x, y, z, ...), got {in_channels}")
        if query not in ("latent", "residual"):
            raise ValueError(f"query must be 'latent' or 'residual', got {query!r}")
        if query == "latent" and depth < 1:
            raise ValueError("a latent query needs depth >= 1 (else the output ignores the points)")
        self.in_channels, self.query = in_channels, query
        self.voxel_size = tuple(float(v) for v in voxel_size)
        self.point_cloud_range = tuple(float(v) for v in point_cloud_range)
        self.embed = nn.Sequential(
            nn.Linear(in_channels + 6, width, bias=False),
            nn.BatchNorm1d(width, eps=1e-3, momentum=0.01),
            nn.ReLU(inplace=True),
        )
        self.latent = nn.Parameter(torch.randn(width) * 0.02) if query == "latent" else None
        self.layers = nn.ModuleList(
            VoxelAttentionLayer(width, num_heads, ffn_ratio, dropout) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, out_channels) if out_channels is not None else nn.Identity()
        self.out_channels = int(out_channels if out_channels is not None else width)

    def forward(
        self, points: torch.Tensor, batch_index: torch.Tensor, batch_size: int | None = None
    ) -> VoxelFeatures:
        """Encode a batch of point clouds.

        Args:
            points: (N, C) float32, x, y, z metres (lidar frame) then attributes; any device.
            batch_index: (N,) int64, each point's sample.
            batch_size: B (by default ``batch_index.max() + 1``).

        Returns:
            :class:`VoxelFeatures` with (V, out_channels) features for the V non-empty voxels.
        """
        groups = group_points(points, batch_index, self.voxel_size, self.point_cloud_range, batch_size)
        point_tokens = self.embed(groups.decorated())  # (N', D)
        if self.latent is not None:
            tokens = self.latent.expand(groups.num_voxels, -1)
        else:
            tokens = groups.max(point_tokens)
        for layer in self.layers:
            tokens = layer(tokens, point_tokens, groups)
        features = self.head(self.norm(tokens))
        return VoxelFeatures(features, groups.coords, groups.spatial_shape, groups.batch_size)
