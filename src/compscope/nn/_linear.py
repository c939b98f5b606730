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
        in_slices = self.irreps_in.slices()
        # (dim, input blocks (start, mul), 1/sqrt(fan-in)); the norm is a Python float so traces keep the dtype
        self.types: list[tuple[int, list[tuple[int, int]], float]] = []
        self.weights = nn.ParameterList()
        out_pos: dict = {}
        for t in types:
            blocks = [(sl.start, mul) for sl, (mul, ir) in zip(in_slices, self.irreps_in) if ir == t]
            m_in = sum(mul for _, mul in blocks)
            m_out = sum(mul for mul, ir in self.irreps_out if ir == t)
            if m_in == 0:
                continue
            out_pos[t] = (len(self.types), 0)
            self.types.append((t.dim, blocks, m_in ** -0.5))
            self.weights.append(nn.Parameter(torch.randn(m_in, self.num_elements * m_out)))
        # output assembly: for each output block, (type index or -1 for zeros, channel offset, mul, dim)
        self.out_blocks: list[tuple[int, int, int, int]] = []
        offsets = {t: 0 for t in types}
        for mul, ir in self.irreps_out:
            ti = out_pos[ir][0] if ir in out_pos else -1
            self.out_blocks.append((ti, offsets[ir], mul, ir.dim))
            offsets[ir] += mul

    def forward(self, x: torch.Tensor, species: torch.Tensor | None = None) -> torch.Tensor:
        n = x.shape[0]
        per_element = self.num_elements > 1
        if per_element:
            if species is None:
                raise ValueError("an element-dependent linear map needs the species index (N,)")
            onehot = torch.nn.functional.one_hot(species, self.num_elements).to(x.dtype)  # (N, E)
        outs = []
        for (d, blocks, norm), w in zip(self.types, self.weights):
            parts = [x.narrow(1, start, mul * d).view(n, mul, d) for start, mul in blocks]
            xt = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)  # (N, M, d)
            y = xt.transpose(1, 2).reshape(n * d, w.shape[0]) @ w  # (N * d, E * O)
            if per_element:
                y = (y.view(n, d, self.num_elements, -1) * onehot.view(n, 1, self.num_elements, 1)).sum(2)
            y = y.view(n, d, -1) * norm  # (N, d, O)
            outs.append(y.transpose(1, 2))  # (N, O, d)
        pieces = []
        for ti, off, mul, d in self.out_blocks:
            if ti < 0:
                pieces.append(x.new_zeros((n, mul * d)))
            else:
                pieces.append(outs[ti].narrow(1, off, mul).reshape(n, mul * d))
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)  # (N, irreps_out.dim)
