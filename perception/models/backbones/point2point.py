"""Point2Point: a point cloud learned as a 1D sequence ordered along a space-filling curve.

Points → cells of a grid (one token per occupied cell, its points max-pooled, so the order of the
points inside a cell cannot matter) → tokens sorted by their cell's code along the curve → a U-Net
over the sequence: blocks of 1D convolution (or attention inside fixed-size patches of the
sequence) at each level; going down, the runs of tokens that share a parent cell (``code >> 3``
for a stride of 2, ``code >> 6`` for 4) are pooled into one token; going up, the parent's features are scattered back through the stored
inverse indices and concatenated with the skip. The last level-0 features are gathered back to the
points and joined with each point's own embedding, so points of one cell still get their own outputs.

Several clouds share one sequence without padding to the largest: each is a contiguous run (the
batch index is packed above the code bits), and a convolution sees zeros, not the next cloud, past a
cloud's ends; attention patches never straddle two clouds.

Orders (``order``): ``"hilbert"``, ``"hilbert-trans"``, ``"z"``, ``"z-trans"`` (PTv3's four, see
:mod:`perception.ops.hilbert`), and ``"random"``: the cells in a fixed pseudo-random order (a bijective
hash of the cell code, so still a pure function of the point set) with the same parent pooling,
for the ablation that asks how much the curve's locality is worth. A sequence of orders makes
successive blocks alternate between them (PTv3's mixing); tokens are kept in the first order and
gathered into the others.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from perception.ops.hilbert import serialize

__all__ = ["Point2PointBackbone", "SequenceOrder"]

SequenceOrder = Literal["hilbert", "hilbert-trans", "z", "z-trans", "random"]
_ORDERS = ("hilbert", "hilbert-trans", "z", "z-trans", "random")
_MAX_BITS = 16


class TokenNorm(nn.BatchNorm1d):
    """BatchNorm over the tokens of a ``(1, C, L)`` sequence; with a single token in training it
    normalises with the running statistics (one value has no variance), so tiny clouds still train."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[-1] < 2:
            return F.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
            )
        return super().forward(x)


def _mlp(c_in: int, c_out: int) -> nn.Sequential:
    """Per-token linear layer (a 1 × 1 convolution over ``(1, C, L)``), BatchNorm, ReLU."""
    return nn.Sequential(nn.Conv1d(c_in, c_out, 1, bias=False), TokenNorm(c_out), nn.ReLU(inplace=True))


def _mix64(x: torch.Tensor, bits: int) -> torch.Tensor:
    """A bijection of ``[0, 2**bits)`` onto itself that scatters neighbouring codes (the random order)."""
    mask = (1 << bits) - 1
    for mult in (0x9E3779B97F4A7C15 & mask | 1, 0xBF58476D1CE4E5B9 & mask | 1):
        x = (x * mult) & mask  # an odd multiplier is bijective mod 2**bits (int64 products wrap mod 2**64)
        x = x ^ (x >> max(1, bits // 2))  # xor-shift: bijective
    return x


def _scatter_max(x: torch.Tensor, index: torch.Tensor, size: int) -> torch.Tensor:
    """(1, C, L) → (1, C, size): the maximum over the tokens ``index`` sends to each slot."""
    out = x.new_full((1, x.shape[1], size), -math.inf)
    return out.scatter_reduce(2, index.view(1, 1, -1).expand_as(x), x, "amax")


@dataclass
class _Level:
    """The tokens of one level, in the first order.

    coords: (L, 3) int64 cell coordinates at this level (the grid's cells ``>>`` the levels' shifts);
    batch: (L,) int64 cloud of each token; perms: per order, (L,) indices putting the tokens in that
    order (None for the first order, which they are in); parent: (L,) int64 index of each token's
    parent at the next level (None at the top); centre: (L, 3) float cell centres, metres.
    """

    coords: torch.Tensor
    batch: torch.Tensor
    perms: list[torch.Tensor | None]
    centre: torch.Tensor
    parent: torch.Tensor | None = None


class SequenceConv(nn.Module):
    """A 1D convolution along the token sequence that never reaches across a cloud's ends.

    The convolution runs over the whole batch's sequence at once; the few outputs whose window
    crosses from one cloud into the next (``kernel_size - 1`` per boundary) are then computed again
    with the other cloud's tokens left out, which is zero padding each cloud on its own.
    """

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        self.pad = kernel_size // 2
        self.conv = nn.Conv1d(channels, channels, kernel_size, padding=self.pad, bias=False)

    def forward(self, x: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        """x: (1, C, L) tokens in sequence order; batch: (L,) non-decreasing cloud index. → (1, C, L)."""
        out = self.conv(x)
        pad, n = self.pad, x.shape[-1]
        if pad == 0 or n < 2 or int(batch[0]) == int(batch[-1]):
            return out
        starts = (
            torch.nonzero(batch[1:] != batch[:-1]).flatten() + 1
        )  # each cloud's first token but the first
        near = torch.cat([starts + d for d in range(-pad, pad)]).clamp(0, n - 1).unique()  # (M,)
        taps = torch.arange(-pad, pad + 1, device=x.device)
        j = near[:, None] + taps  # (M, K) the inputs of each output near a boundary
        valid = (j >= 0) & (j < n)
        j = j.clamp(0, n - 1)
        valid &= batch[j] == batch[near][:, None]
        window = x[0].index_select(1, j.flatten()).view(x.shape[1], *j.shape) * valid  # (C_in, M, K)
        exact = torch.einsum("cmk,ock->om", window, self.conv.weight)  # each cloud zero padded alone
        return out.index_copy(2, near, exact[None])


class PatchAttention(nn.Module):
    """Multi-head self-attention inside consecutive patches of ``patch_size`` tokens of one cloud.

    Each cloud's run is cut into patches from its start; its last patch may be shorter (the missing
    keys are masked), so no patch holds tokens of two clouds.
    """

    def __init__(self, channels: int, patch_size: int, heads: int) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels {channels} must be divisible by heads {heads}")
        self.patch_size, self.heads = patch_size, heads
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        """x: (1, C, L) tokens in sequence order; batch: (L,) non-decreasing cloud index. → (1, C, L)."""
        if x.shape[-1] == 0:
            return x
        return self._attend(x[0].t(), batch).t()[None]

    def _attend(self, x: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        n, c = x.shape
        p = self.patch_size
        counts = torch.bincount(batch - batch[0])
        counts = counts[counts > 0]
        starts = torch.cumsum(counts, 0) - counts
        padded = (counts + p - 1) // p * p
        pstarts = torch.cumsum(padded, 0) - padded
        run = torch.repeat_interleave(torch.arange(len(counts), device=x.device), counts)
        slot = pstarts[run] + torch.arange(n, device=x.device) - starts[run]
        total = int(padded.sum())
        h, d = self.heads, c // self.heads
        qkv = x.new_zeros((total, 3 * c))
        qkv[slot] = self.qkv(x)
        valid = torch.zeros(total, dtype=torch.bool, device=x.device)
        valid[slot] = True
        qkv = qkv.view(total // p, p, 3, h, d).permute(2, 0, 3, 1, 4)  # 3, patches, heads, p, d
        mask = valid.view(total // p, 1, 1, p)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=mask)
        out = out.transpose(1, 2).reshape(total, c)
        return self.proj(out[slot])


class SequenceBlock(nn.Module):
    """Residual block over the sequence: two convolutions (or one attention and an MLP), BatchNorm, ReLU."""

    def __init__(self, channels: int, mixer: str, kernel_size: int, patch_size: int, heads: int) -> None:
        super().__init__()
        self.mixer = mixer
        if mixer == "conv":
            self.op1 = SequenceConv(channels, kernel_size)
            self.op2 = SequenceConv(channels, kernel_size)
        elif mixer == "attention":
            self.op1 = PatchAttention(channels, patch_size, heads)
            self.op2 = None
            self.mlp = nn.Sequential(
                nn.Conv1d(channels, 2 * channels, 1),
                nn.ReLU(inplace=True),
                nn.Conv1d(2 * channels, channels, 1),
            )
        else:
            raise ValueError(f"mixer must be 'conv' or 'attention', got {mixer!r}")
        self.norm1, self.norm2 = TokenNorm(channels), TokenNorm(channels)

    def forward(self, x: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        if self.mixer == "conv":
            y = F.relu(self.norm1(self.op1(x, batch)))
            return F.relu(x + self.norm2(self.op2(y, batch)))
        x = x + self.op1(self.norm1(x), batch)
        return x + self.mlp(self.norm2(x))


class Point2PointBackbone(nn.Module):
    """Points with a batch index → per-point features, through a U-Net over the curve-ordered cells.

    Args:
        in_channels: C, the point width: x, y, z (metres, sensor frame) then attributes.
        out_channels: C', the per-point feature width returned.
        grid_size: cell size in metres (one float or one per axis). Grid coordinates are
            ``floor(xyz / grid_size)`` minus each cloud's minimum; a cloud may span at most ``2**16``
            cells per axis.
        order: a curve order or a sequence of them (blocks alternate; see the module docstring).
        channels: token width per level, finest first (``len(channels)`` levels).
        strides: how much coarser each level's cells are than the previous level's (powers of 2; one
            fewer entry than ``channels``; default all 2). LiDAR scans are surfaces in a mostly empty volume, so a
            stride of 2 merges few cells; 4 (two octree levels, ``code >> 6``) shrinks the sequence faster.
        enc_blocks, dec_blocks: blocks per level going down and coming up (``dec_blocks`` has one
            fewer entry: the coarsest level has none).
        mixer: ``"conv"`` (1D convolutions, Point2Point) or ``"attention"`` (attention in patches, PTv3-like).
        kernel_size: convolution kernel along the sequence (odd). patch_size, heads: attention's.
        positional: add an embedding of each token's cell centre (metres) at every level.

    Shapes: ``forward(points (N, C) float, batch_index (N,) int64 non-decreasing) -> (N, C')``.
    In eval mode a permutation of a cloud's points permutes its outputs the same way (cells are found
    by sorting codes, and a cell's points are max-pooled), and no cloud's outputs depend on another's.
    Empty input gives ``(0, C')``.
    """

    def __init__(
        self,
        in_channels: int = 4,
        out_channels: int = 64,
        grid_size: float | Sequence[float] = 0.1,
        order: SequenceOrder | Sequence[SequenceOrder] = "hilbert",
        channels: Sequence[int] = (32, 64, 128, 256),
        strides: Sequence[int] | None = None,
        enc_blocks: Sequence[int] = (1, 1, 2, 2),
        dec_blocks: Sequence[int] = (1, 1, 1),
        mixer: Literal["conv", "attention"] = "conv",
        kernel_size: int = 5,
        patch_size: int = 64,
        heads: int = 4,
        positional: bool = True,
    ) -> None:
        super().__init__()
        orders = (order,) if isinstance(order, str) else tuple(order)
        bad = [o for o in orders if o not in _ORDERS]
        if not orders or bad:
            raise ValueError(f"order must be one of {_ORDERS} or a sequence of them, got {order!r}")
        levels = len(channels)
        strides = (2,) * (levels - 1) if strides is None else tuple(strides)
        if len(enc_blocks) != levels or len(dec_blocks) != levels - 1 or len(strides) != levels - 1:
            raise ValueError(
                f"{levels} levels need {levels} enc_blocks, {levels - 1} dec_blocks and {levels - 1} strides, "
                f"got {list(enc_blocks)}, {list(dec_blocks)} and {list(strides)}"
            )
        if any(int(st) < 2 or int(st) & (int(st) - 1) for st in strides):
            raise ValueError(f"strides must be powers of 2 (>= 2), got {list(strides)}")
        self.shifts = tuple(int(st).bit_length() - 1 for st in strides)
        size = torch.as_tensor(grid_size, dtype=torch.float64).expand(3).clone()
        if not bool((size > 0).all()) or not bool(torch.isfinite(size).all()):
            raise ValueError(f"grid_size must be positive and finite, got {grid_size!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.orders: tuple[str, ...] = orders
        self.channels = tuple(int(c) for c in channels)
        self.register_buffer("grid_size", size.float(), persistent=False)
        self.positional = positional

        c0 = self.channels[0]
        # Inputs mix metres (tens) with attributes in [0, 1]: standardise each channel first, so that
        # reflectance is not a rounding error beside x at the first layer.
        self.point_embed = nn.Sequential(
            TokenNorm(in_channels + 3, affine=False), _mlp(in_channels + 3, c0), nn.Conv1d(c0, c0, 1)
        )
        self.cell_norm = nn.Sequential(TokenNorm(c0), nn.ReLU(inplace=True))

        def blocks(c: int, n: int) -> nn.ModuleList:
            return nn.ModuleList(SequenceBlock(c, mixer, kernel_size, patch_size, heads) for _ in range(n))

        self.pos = (
            nn.ModuleList(nn.Conv1d(3, c, 1, bias=False) for c in self.channels) if positional else None
        )
        self.enc = nn.ModuleList(blocks(c, n) for c, n in zip(self.channels, enc_blocks, strict=True))
        self.down = nn.ModuleList(
            _mlp(a, b) for a, b in zip(self.channels[:-1], self.channels[1:], strict=True)
        )
        self.up = nn.ModuleList(
            _mlp(b, a) for a, b in zip(self.channels[:-1], self.channels[1:], strict=True)
        )
        self.fuse = nn.ModuleList(_mlp(2 * c, c) for c in self.channels[:-1])
        self.dec = nn.ModuleList(blocks(c, n) for c, n in zip(self.channels[:-1], dec_blocks, strict=True))
        self.head = nn.Sequential(_mlp(2 * c0, out_channels), nn.Conv1d(out_channels, out_channels, 1))

    # ----------------------------------------------------------------------------------------------
    # serialization

    def _check(self, points: torch.Tensor, batch_index: torch.Tensor) -> None:
        if points.ndim != 2 or points.shape[1] != self.in_channels:
            raise ValueError(f"points must be (N, {self.in_channels}), got {tuple(points.shape)}")
        if batch_index.shape != (points.shape[0],):
            raise ValueError(f"batch_index must be ({points.shape[0]},), got {tuple(batch_index.shape)}")
        if points.shape[0] == 0:
            return
        bad = ~torch.isfinite(points).all(1)
        if bool(bad.any()):
            raise ValueError(f"points hold NaN or infinite values ({int(bad.sum())} of {len(points)} points)")
        if bool((batch_index[1:] < batch_index[:-1]).any()) or int(batch_index[0]) < 0:
            raise ValueError(
                "batch_index must be non-negative and non-decreasing (clouds concatenated in order)"
            )

    def _codes(self, coords: torch.Tensor, batch: torch.Tensor, bits: int, order: str) -> torch.Tensor:
        """(L,) int64 sort keys: batch above the code bits, the code (or its hash for "random") below."""
        if order == "random":
            code = _mix64(serialize(coords, "z", bits), 3 * bits)
            return code | (batch << (3 * bits))
        return serialize(coords, order, bits, batch=batch)

    def _serialize(self, points: torch.Tensor, batch_index: torch.Tensor):
        """Cells, their levels and the point → cell index."""
        size = self.grid_size.to(points.device, torch.float64)
        cells = torch.floor(points[:, :3].double() / size).long()
        nb = int(batch_index[-1]) + 1
        low = torch.full((nb, 3), torch.iinfo(torch.int64).max, dtype=torch.int64, device=points.device)
        low = low.scatter_reduce(0, batch_index[:, None].expand(-1, 3), cells, "amin")
        grid = cells - low[batch_index]
        top = int(grid.max())
        levels = len(self.channels)
        # A fixed depth: the Hilbert curve of b bits is oriented by b % 3, so a depth taken from the
        # batch's largest cloud would let one cloud change another's order.
        bits = _MAX_BITS
        if top >= 1 << bits or sum(self.shifts) >= bits:
            raise ValueError(
                f"a cloud spans {top + 1} cells of {self.grid_size.tolist()} m along an axis; at most "
                f"2**{_MAX_BITS} (are the coordinates in metres? clip far points or use a coarser grid)"
            )
        key = self._codes(grid, batch_index, bits, self.orders[0])
        cell_key, point_cell = torch.unique(key, sorted=True, return_inverse=True)
        first = torch.full((len(cell_key),), len(key), dtype=torch.int64, device=key.device)
        first = first.scatter_reduce(0, point_cell, torch.arange(len(key), device=key.device), "amin")
        coords, batch = grid[first], batch_index[first]
        lows = low.double()
        out: list[_Level] = []
        shift = 0  # octree levels above the grid
        for level in range(levels):
            lb = bits - shift
            perms = [None] + [torch.argsort(self._codes(coords, batch, lb, o)) for o in self.orders[1:]]
            centre = ((coords.double() + 0.5) * (1 << shift) + lows[batch]) * size
            lvl = _Level(coords=coords, batch=batch, perms=perms, centre=centre.float())
            out.append(lvl)
            if (
                level + 1 < levels
            ):  # parents: runs of equal code >> 3·s (unique also orders them for "random")
                s = self.shifts[level]
                shift += s
                pkey = self._codes(coords >> s, batch, lb - s, self.orders[0])
                pk, parent = torch.unique(pkey, sorted=True, return_inverse=True)
                lvl.parent = parent
                pfirst = torch.full((len(pk),), len(pkey), dtype=torch.int64, device=key.device)
                pfirst = pfirst.scatter_reduce(0, parent, torch.arange(len(pkey), device=key.device), "amin")
                coords, batch = coords[pfirst] >> s, batch[pfirst]
        return out, point_cell, first

    # ----------------------------------------------------------------------------------------------

    def _run_blocks(self, blocks: nn.ModuleList, x: torch.Tensor, lvl: _Level) -> torch.Tensor:
        """x: (1, C, L) tokens of ``lvl`` in the first order; block i runs in order ``i % len(orders)``."""
        for i, block in enumerate(blocks):
            perm = lvl.perms[i % len(lvl.perms)]
            if perm is None:
                x = block(x, lvl.batch)
            else:
                y = block(x.index_select(2, perm), lvl.batch[perm])
                x = torch.empty_like(y).index_copy_(2, perm, y)
        return x

    def forward(self, points: torch.Tensor, batch_index: torch.Tensor) -> torch.Tensor:
        """points (N, C) float, batch_index (N,) int64 non-decreasing → (N, C') per-point features."""
        self._check(points, batch_index)
        if points.shape[0] == 0:
            return points.new_zeros((0, self.out_channels))
        levels, point_cell, _ = self._serialize(points, batch_index)
        size = self.grid_size.to(points.device)
        offset = points[:, :3] / size - torch.floor(points[:, :3] / size) - 0.5  # in the cell, [-0.5, 0.5)
        # Tokens are (1, C, L): channels first, the layout convolution and BatchNorm are fastest in.
        pe = self.point_embed(torch.cat([points, offset], 1).t()[None])  # (1, C0, N)
        x = self.cell_norm(_scatter_max(pe, point_cell, len(levels[0].batch)))

        skips = []
        for i, lvl in enumerate(levels):
            if self.pos is not None:
                x = x + self.pos[i](lvl.centre.t()[None] / 10.0)
            x = self._run_blocks(self.enc[i], x, lvl)
            if i + 1 < len(levels):
                skips.append(x)
                x = _scatter_max(self.down[i](x), lvl.parent, len(levels[i + 1].batch))
        for i in range(len(levels) - 2, -1, -1):
            lvl = levels[i]
            x = self.up[i](x).index_select(2, lvl.parent)
            x = self.fuse[i](torch.cat([x, skips[i]], 1))
            x = self._run_blocks(self.dec[i], x, lvl)
        out = self.head(torch.cat([x.index_select(2, point_cell), pe], 1))
        return out[0].t()
