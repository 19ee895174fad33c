"""The planner of the sample-wise engine: which samples share one joint call.

The samples are sorted by lattice size ``T_b * (U_b + 1)`` (largest first, so that the peak is
reached by the first group and later groups reuse its memory), and consecutive samples are grouped
while the group's working memory fits ``max_chunk_bytes``. A group is evaluated in one joint call on
``[n, T_g, U_g + 1]`` nodes, padded only to the group's own maxima ``T_g = max T_b`` and
``U_g = max U_b``; its working memory is estimated as

    n * T_g * (U_g + 1) * bytes_per_node,   bytes_per_node = 2 * V * itemsize(logits)

(the logits, whose gradient the core op writes over them, plus the gradient the joint's backward
produces from them; the fused output layer has its own ``bytes_per_node``). A sample larger than the
budget runs alone, cut by :func:`split_lattice` into tiles of whole time rows (or runs of nodes within
a row) that each fit the budget; ``max_chunk_bytes=1`` therefore means strictly one sample at a time.

Default budget (``max_chunk_bytes=None``): on CUDA, 1/8 of the device's free memory, at most 2 GiB
(the GPU is saturated well before that); on the CPU a fixed :data:`CPU_DEFAULT_BYTES` (grouping
buys the CPU little, its kernels are already parallel inside one sample).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch

__all__ = ["Group", "plan_groups", "split_lattice", "default_budget", "CPU_DEFAULT_BYTES", "CUDA_FREE_FRACTION",
           "CUDA_MAX_BYTES"]

CPU_DEFAULT_BYTES = 80 * 2 ** 20
CUDA_FREE_FRACTION = 1 / 8
CUDA_MAX_BYTES = 2 * 2 ** 30


@dataclass(frozen=True)
class Group:
    """One joint call: ``samples`` (batch indices, largest lattice first), padded to ``T`` x ``U1``."""

    samples: List[int]
    T: int
    U1: int

    @property
    def nodes(self) -> int:
        return len(self.samples) * self.T * self.U1


def default_budget(device: torch.device) -> int:
    """The default ``max_chunk_bytes`` for ``device`` (see the module docstring)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(min(free * CUDA_FREE_FRACTION, CUDA_MAX_BYTES))
    return CPU_DEFAULT_BYTES


def plan_groups(T: Sequence[int], U: Sequence[int], bytes_per_node: int, max_chunk_bytes: Optional[int]) -> List[Group]:
    """Group the samples with lengths ``T`` (frames) and ``U`` (labels) under ``max_chunk_bytes``.

    ``max_chunk_bytes=None`` or ``float('inf')`` puts every sample in one group. Every sample lies in
    exactly one group; the groups' sizes never exceed the budget except for a single sample that
    alone exceeds it.
    """
    if len(T) != len(U):
        raise ValueError(f"T has {len(T)} entries but U has {len(U)}")
    if max_chunk_bytes is not None and not max_chunk_bytes > 0:
        raise ValueError(f"max_chunk_bytes must be a positive number of bytes or None, got {max_chunk_bytes!r}")
    order = sorted(range(len(T)), key=lambda b: (-T[b] * (U[b] + 1), b))
    groups: List[Group] = []
    cur: List[int] = []
    gT = gU1 = 0
    for b in order:
        nT, nU1 = max(gT, T[b]), max(gU1, U[b] + 1)
        fits = max_chunk_bytes is None or (len(cur) + 1) * nT * nU1 * bytes_per_node <= max_chunk_bytes
        if cur and not fits:
            groups.append(Group(cur, gT, gU1))
            cur, nT, nU1 = [], T[b], U[b] + 1
        cur.append(b)
        gT, gU1 = nT, nU1
    if cur:
        groups.append(Group(cur, gT, gU1))
    return groups


def split_lattice(T: int, U1: int, node_bytes: int, budget: int):
    """Tiles ``(t0, t1, u0, u1)`` of a ``T x U1`` lattice of ``node_bytes`` per node under ``budget``:
    blocks of whole time rows when one row fits, else runs of nodes within each row; the tiles are
    balanced (equal sizes up to one row or node)."""
    row = U1 * node_bytes
    if row <= budget:
        rows = min(T, max(1, budget // row))
        n = -(-T // rows)
        rows = -(-T // n)
        return [(t0, min(T, t0 + rows), 0, U1) for t0 in range(0, T, rows)]
    cols = max(1, budget // node_bytes)
    n = -(-U1 // cols)
    cols = -(-U1 // n)
    return [(t, t + 1, u0, min(U1, u0 + cols)) for t in range(T) for u0 in range(0, U1, cols)]
