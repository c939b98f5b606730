"""Higher body order from channel-wise products of the atomic basis.

MACE (Batatia et al. 2022, eq. 10) forms symmetric products :math:`B = A \\otimes \\dots \\otimes A` up to a
correlation order :math:`\\nu` with element-dependent weights, using generalised Clebsch-Gordan coefficients. We use
an equivalent construction built from e3nn's tensor products: iterated channel-wise ("uuu") products
:math:`B^{(\\nu)} = B^{(\\nu-1)} \\otimes A` (each keeps every irrep up to ``l_max``), then an element-dependent
linear map of :math:`[B^{(1)}, \\dots, B^{(\\nu)}]` to the output irreps. Each :math:`B^{(\\nu)}` carries
:math:`(\\nu+1)`-body information per channel, as in MACE.
"""

from __future__ import annotations

import torch
from e3nn import o3
from torch import nn


def _uuu_product(irreps1: o3.Irreps, irreps2: o3.Irreps, l_max: int, mul: int):
    out, instructions = [], []
    for i, (_, ir1) in enumerate(irreps1):
        for j, (_, ir2) in enumerate(irreps2):
            for ir_out in ir1 * ir2:
                if ir_out.l <= l_max:
                    instructions.append((i, j, len(out), "uuu", True))
                    out.append((mul, ir_out))
    out = o3.Irreps(out)
    sorted_out, perm, _ = out.sort()
    instructions = [(i, j, perm[k], mode, w) for i, j, k, mode, w in instructions]
    tp = o3.TensorProduct(irreps1, irreps2, sorted_out, instructions, internal_weights=True, shared_weights=True)
    # merge repeated irreps with a linear map so the next product stays small
    simplified = sorted_out.simplify()
    merged = o3.Irreps([(mul, ir) for _, ir in simplified])
    return tp, o3.Linear(sorted_out, merged), merged


class ProductBasis(nn.Module):
    """Correlation-order-``correlation`` products of the atomic basis with element-dependent mixing.

    Args:
        irreps_a: irreps of the atomic basis ``A``; every irrep must have the same multiplicity.
        irreps_out: irreps of the output node features.
        num_elements: number of chemical elements (one-hot size).
        correlation: body order minus one (1 = linear in ``A``, MACE uses 3).
        l_max: largest ``l`` kept in intermediate products.

    Shapes:
        a (N, irreps_a.dim), node_attrs (N, num_elements) one-hot -> (N, irreps_out.dim)
    """

    def __init__(self, irreps_a, irreps_out, num_elements: int, correlation: int = 3, l_max: int = 2):
        super().__init__()
        irreps_a = o3.Irreps(irreps_a)
        muls = {mul for mul, _ in irreps_a}
        if len(muls) != 1:
            raise ValueError(f"ProductBasis needs equal multiplicities, got {irreps_a}")
        mul = muls.pop()
        self.products = nn.ModuleList()
        self.mixers = nn.ModuleList()
        current = irreps_a
        collected = [irreps_a]
        for _ in range(correlation - 1):
            tp, mix, current = _uuu_product(current, irreps_a, l_max, mul)
            self.products.append(tp)
            self.mixers.append(mix)
            collected.append(current)
        self.irreps_cat = o3.Irreps(sum((list(c) for c in collected), []))
        self.elementwise = o3.FullyConnectedTensorProduct(
            self.irreps_cat, o3.Irreps(f"{num_elements}x0e"), o3.Irreps(irreps_out)
        )

    def forward(self, a: torch.Tensor, node_attrs: torch.Tensor) -> torch.Tensor:
        feats = [a]
        b = a
        for tp, mix in zip(self.products, self.mixers):
            b = mix(tp(b, a))  # (N, merged.dim)
            feats.append(b)
        return self.elementwise(torch.cat(feats, dim=-1), node_attrs)  # (N, irreps_out.dim)
