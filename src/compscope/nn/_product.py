"""Higher body order from channel-wise products of the atomic basis.

MACE (Batatia et al. 2022, eq. 10) forms symmetric products :math:`B = A \\otimes \\dots \\otimes A` up to a
correlation order :math:`\\nu` with element-dependent weights, using generalised Clebsch-Gordan coefficients.
We use an equivalent construction built from e3nn's tensor products: iterated channel-wise ("uuu")
products :math:`B^{(\\nu)} = B^{(\\nu-1)} \\otimes A` (intermediates keep irreps up to ``l_max``), then an
element-dependent linear map of :math:`[B^{(1)}, \\dots, B^{(\\nu)}]` to the output irreps. Each
:math:`B^{(\\nu)}` carries :math:`(\\nu+1)`-body information per channel, as in MACE.
"""

from __future__ import annotations

import torch
from e3nn import o3
from torch import nn

from ._fused import fused_available, fused_node_product
from ._linear import ElementLinear
from ._tensor_product import ChannelwiseTensorProduct


def _uuu_product(irreps1: o3.Irreps, irreps2: o3.Irreps, keep, mul: int):
    out, instructions = [], []
    for i, (_, ir1) in enumerate(irreps1):
        for j, (_, ir2) in enumerate(irreps2):
            for ir_out in ir1 * ir2:
                if keep(ir_out):
                    instructions.append((i, j, len(out), "uuu", True))
                    out.append((mul, ir_out))
    out = o3.Irreps(out)
    sorted_out, perm, _ = out.sort()
    instructions = [(i, j, perm[k], mode, w) for i, j, k, mode, w in instructions]
    tp = ChannelwiseTensorProduct(irreps1, irreps2, sorted_out, instructions, shared_weights=True)
    # merge repeated irreps with a linear map so the next product stays small
    merged = o3.Irreps([(mul, ir) for _, ir in sorted_out.simplify()])
    return tp, ElementLinear(sorted_out, merged, 1), merged


class ProductBasis(nn.Module):
    """Correlation-order-``correlation`` products of the atomic basis with element-dependent mixing.

    Args:
        irreps_a: irreps of the atomic basis ``A``; every irrep must have the same multiplicity.
        irreps_out: irreps of the output node features.
        num_elements: number of chemical elements.
        correlation: body order minus one (1 = linear in ``A``, MACE uses 3).
        l_max: largest ``l`` kept in intermediate products (the last product keeps only ``irreps_out``'s).

    Shapes:
        a (N, irreps_a.dim), species (N,) element index -> (N, irreps_out.dim)
    """

    def __init__(self, irreps_a, irreps_out, num_elements: int, correlation: int = 3, l_max: int = 1):
        super().__init__()
        irreps_a = o3.Irreps(irreps_a)
        irreps_out = o3.Irreps(irreps_out)
        muls = {mul for mul, _ in irreps_a}
        if len(muls) != 1:
            raise ValueError(f"ProductBasis needs equal multiplicities, got {irreps_a}")
        mul = muls.pop()
        out_irs = {ir for _, ir in irreps_out}
        self.products = nn.ModuleList()
        self.mixers = nn.ModuleList()
        current = irreps_a
        collected = [irreps_a]
        for nu in range(2, correlation + 1):
            last = nu == correlation
            keep = (lambda ir: ir in out_irs) if last else (lambda ir: ir.l <= l_max)
            tp, mix, current = _uuu_product(current, irreps_a, keep, mul)
            self.products.append(tp)
            self.mixers.append(mix)
            collected.append(current)
        self.irreps_cat = o3.Irreps(sum((list(c) for c in collected), []))
        self.linear = ElementLinear(self.irreps_cat, irreps_out, num_elements)

    def forward(self, a: torch.Tensor, species: torch.Tensor, fused: bool = False) -> torch.Tensor:
        """``fused=True`` uses the fused CPU kernel (:mod:`._fused`) when the inputs allow it."""
        feats = [a]
        b = a
        # every product's second input is A itself: its channel layout is gathered once
        use_fused = fused and fused_available(a)
        a_ch = (self.products[0].to_channels(a, second=True, gather_backward=use_fused) if len(self.products)
                else a)  # (N, d_a, mul)
        for tp, mix in zip(self.products, self.mixers):
            x = tp.to_channels(b, gather_backward=use_fused)  # (N, d_b, mul)
            if use_fused:
                z = fused_node_product(x, a_ch, tp.weight.view(tp.num_paths, tp.mul), tp.sparse_cg())
            else:
                z = tp.product(x, a_ch)
            b = mix.forward_channels(z)  # (N, merged.dim)
            feats.append(b)
        return self.linear(torch.cat(feats, dim=-1), species)  # (N, irreps_out.dim)
