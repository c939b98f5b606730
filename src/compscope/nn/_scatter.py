"""Scatter reductions over an index (no torch_scatter dependency)."""

from __future__ import annotations

import torch


def scatter_sum(src: torch.Tensor, index: torch.Tensor, dim_size: int) -> torch.Tensor:
    """Sum rows of ``src`` (M, ...) into ``dim_size`` bins given by ``index`` (M,)."""
    out = src.new_zeros((dim_size,) + tuple(src.shape[1:]))
    return out.index_add(0, index, src)
