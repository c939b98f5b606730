"""Equivariant linear maps on irreps features, optionally with weights per chemical element."""

from __future__ import annotations

import torch
from e3nn import o3
from torch import nn

__all__ = ["ElementLinear"]


class ElementLinear(nn.Module):
    """An equivariant linear map, with separate weights per chemical element when ``num_elements > 1``.

    For every irrep type (e.g. ``1o``) the input channels of that type are stacked to ``(N, M, d)`` and mixed by
    one weight ``(M, num_elements, O)``: a single matmul gives every element's output, and the atom's own element
    is picked by a one-hot product. Weights are standard normal with e3nn's ``1/sqrt(fan_in)`` path normalisation
    (fan-in ``M`` per element), so the output scale matches an ``e3nn.o3.Linear`` per element. Output irreps
    whose type has no input channel are zero.

    Shapes:
        x (N, irreps_in.dim), species (N,) element index -> (N, irreps_out.dim)
    """

    def __init__(self, irreps_in, irreps_out, num_elements: int):
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        self.irreps_out = o3.Irreps(irreps_out)
        self.num_elements = int(num_elements)
        types = sorted({ir for _, ir in self.irreps_out})
        # (dim, 1/sqrt(fan-in)) per irrep type; the norm is a Python float so traces keep the dtype
        self.types: list[tuple[int, float]] = []
        self.weights = nn.ParameterList()
        out_pos: dict = {}  # irrep type -> index into self.types
        for t in types:
            m_in = sum(mul for mul, ir in self.irreps_in if ir == t)
            m_out = sum(mul for mul, ir in self.irreps_out if ir == t)
            if m_in == 0:
                continue
            out_pos[t] = len(self.types)
            self.types.append((t.dim, m_in ** -0.5))
            self.weights.append(nn.Parameter(torch.randn(m_in, self.num_elements * m_out)))
        # input pieces (torch.split: its backward is one cat, where narrow would zero-fill a full gradient per piece)
        self.in_sizes = [mul * ir.dim for mul, ir in self.irreps_in]
        self.in_dims = [ir.dim for _, ir in self.irreps_in]
        kept = [t for t in types if t in out_pos]  # in the order of self.types
        self.type_pieces = [[i for i, (_, ir) in enumerate(self.irreps_in) if ir == t] for t in kept]
        # output assembly: each output block is (type index, piece index within that type) or (-1, mul * dim) zeros
        self.out_muls: list[list[int]] = [[] for _ in self.types]
        self.out_blocks: list[tuple[int, int]] = []
        for mul, ir in self.irreps_out:
            if ir in out_pos:
                ti = out_pos[ir]
                self.out_blocks.append((ti, len(self.out_muls[ti])))
                self.out_muls[ti].append(mul)
            else:
                self.out_blocks.append((-1, mul * ir.dim))

    def _onehot(self, species: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
        if self.num_elements == 1:
            return None
        if species is None:
            raise ValueError("an element-dependent linear map needs the species index (N,)")
        return torch.nn.functional.one_hot(species, self.num_elements).to(dtype)  # (N, E)

    def _mix(self, xt: torch.Tensor, ti: int, onehot: torch.Tensor | None) -> torch.Tensor:
        """(N, d, M) inputs of type ``ti`` -> (N, O, d) outputs."""
        n, d, _ = xt.shape
        w = self.weights[ti]
        y = xt.reshape(n * d, w.shape[0]) @ w  # (N * d, E * O)
        if onehot is not None:
            y = (y.view(n, d, self.num_elements, -1) * onehot.view(n, 1, self.num_elements, 1)).sum(2)
        return (y.view(n, d, -1) * self.types[ti][1]).transpose(1, 2)  # (N, O, d)

    def _assemble(self, outs: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
        n = like.shape[0]
        split = [o.split(m, dim=1) if len(m) > 1 else (o,) for o, m in zip(outs, self.out_muls)]
        pieces = []
        for ti, j in self.out_blocks:
            if ti < 0:
                pieces.append(like.new_zeros((n, j)))
            else:
                pieces.append(split[ti][j].reshape(n, -1))
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)  # (N, irreps_out.dim)

    def forward(self, x: torch.Tensor, species: torch.Tensor | None = None) -> torch.Tensor:
        n = x.shape[0]
        onehot = self._onehot(species, x.dtype)
        chunks = x.split(self.in_sizes, dim=1) if len(self.in_sizes) > 1 else (x,)
        outs = []
        for ti, pieces in enumerate(self.type_pieces):
            d = self.types[ti][0]
            parts = [chunks[i].view(n, -1, d) for i in pieces]
            xt = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)  # (N, M, d)
            outs.append(self._mix(xt.transpose(1, 2), ti, onehot))
        return self._assemble(outs, x)

    def forward_channels(self, z: torch.Tensor, species: torch.Tensor | None = None) -> torch.Tensor:
        """The same map on component-major input (N, K, u): every input irrep has multiplicity ``u`` and ``K``
        runs over the irreps of ``irreps_in`` in order (as :class:`ChannelwiseTensorProduct` produces them), so
        no layout change to e3nn's order is needed. Returns e3nn layout (N, irreps_out.dim)."""
        onehot = self._onehot(species, z.dtype)
        chunks = z.split(self.in_dims, dim=1)  # (N, d_i, u) each
        outs = []
        for ti, pieces in enumerate(self.type_pieces):
            parts = [chunks[i] for i in pieces]
            xt = parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)  # (N, d, M)
            outs.append(self._mix(xt, ti, onehot))
        return self._assemble(outs, z)
