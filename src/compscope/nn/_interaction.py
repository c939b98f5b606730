"""Equivariant interaction: tensor-product messages weighted by a radial MLP, summed over neighbours.

Implements the atomic basis of MACE (Batatia et al., NeurIPS 2022, eq. 8):
:math:`A_{i,kLM} = \\sum_j R_{kL}(r_{ij}) Y_{LM}(\\hat r_{ij}) \\otimes h_{j,k}` with channel-wise ("uvu")
paths, followed by a linear mix of channels.
"""

from __future__ import annotations

import torch
from e3nn import o3
from torch import nn

from ._fused import fused_available, fused_edge_product
from ._linear import ElementLinear
from ._mlp import ScalarMLP
from ._radial_table import RadialTable, tabulated_edge_product
from ._scatter import scatter_sum
from ._tensor_product import ChannelwiseTensorProduct


def _tp_out_irreps(irreps_in: o3.Irreps, irreps_sh: o3.Irreps, target: o3.Irreps):
    """Channel-wise ("uvu") paths of irreps_in x irreps_sh whose output irrep occurs in ``target``."""
    keep = {ir for _, ir in target}
    out, instructions = [], []
    for i, (mul, ir_in) in enumerate(irreps_in):
        for j, (_, ir_sh) in enumerate(irreps_sh):
            for ir_out in ir_in * ir_sh:
                if ir_out in keep:
                    instructions.append((i, j, len(out), "uvu", True))
                    out.append((mul, ir_out))
    out = o3.Irreps(out)
    sorted_out, perm, _ = out.sort()
    instructions = [(i, j, perm[k], mode, w) for i, j, k, mode, w in instructions]
    return sorted_out, instructions


class Interaction(nn.Module):
    """One message-passing step producing the atomic basis ``A`` (N, irreps_out).

    Args:
        irreps_node: irreps of incoming node features ``h``.
        irreps_sh: irreps of the edge spherical harmonics ``Y``.
        irreps_out: irreps of the atomic basis after the channel mix.
        radial_dim: number of radial features per edge.
        radial_hidden: hidden widths of the radial MLP producing the tensor-product weights.
        avg_num_neighbors: normalisation of the neighbour sum.

    Shapes:
        node_feats (N, irreps_node.dim), edge_sh (E, irreps_sh.dim), edge_radial (E, radial_dim),
        edge_index (2, E) -> (N, irreps_out.dim)
    """

    def __init__(
        self,
        irreps_node: o3.Irreps,
        irreps_sh: o3.Irreps,
        irreps_out: o3.Irreps,
        radial_dim: int,
        radial_hidden: tuple[int, ...] = (64, 64),
        avg_num_neighbors: float = 1.0,
    ):
        super().__init__()
        self.irreps_node = o3.Irreps(irreps_node)
        self.irreps_out = o3.Irreps(irreps_out)
        self.linear_up = ElementLinear(self.irreps_node, self.irreps_node, 1)
        irreps_mid, instructions = _tp_out_irreps(self.irreps_node, o3.Irreps(irreps_sh), self.irreps_out)
        self.tp = ChannelwiseTensorProduct(self.irreps_node, irreps_sh, irreps_mid, instructions)
        self.radial_mlp = ScalarMLP([radial_dim, *radial_hidden, self.tp.weight_numel])
        self.linear = ElementLinear(irreps_mid, self.irreps_out, 1)
        self.avg_num_neighbors = float(avg_num_neighbors)

    def forward(
        self,
        node_feats: torch.Tensor,  # (N, irreps_node.dim)
        edge_sh: torch.Tensor,  # (E, irreps_sh.dim)
        edge_radial: torch.Tensor,  # (E, radial_dim)
        edge_index: torch.Tensor,  # (2, E)
        fused: bool = False,
        pairs: tuple[torch.Tensor, torch.Tensor] | None = None,
        chunk: int | None = None,
        n_out: int | None = None,
    ) -> torch.Tensor:
        """``fused=True`` uses the fused CPU kernel (:mod:`._fused`) when the inputs allow it;
        ``pairs`` (from :func:`~compscope.nn._fused.edge_pairs`) then shares radial weights between reverse edges.
        ``chunk`` (edges, or edge pairs with ``pairs``) evaluates the messages in chunks under activation
        checkpointing (:meth:`_chunked`): the same sum, without per-edge radial-MLP activations for all edges.
        ``n_out`` returns only the first ``n_out`` atoms' basis (every receiver must be below it; senders may be
        any atom): blocked evaluation needs fewer atoms at each deeper layer."""
        h = self.linear_up(node_feats)  # (N, irreps_node.dim)
        h = self.tp.to_channels(h)  # (N, d1, mul): the layout change happens on nodes, not edges
        n = node_feats.shape[0] if n_out is None else int(n_out)
        use_fused = fused and fused_available(h, edge_sh, edge_radial)
        # rows of the radial MLP: edge pairs on the fused path with pairs, else edges; one chunk or fewer rows
        # than a chunk is the plain path (checkpointing it would only recompute the messages in the backward)
        n_rows = pairs[0].shape[0] if (pairs is not None and use_fused) else edge_index.shape[1]
        if chunk is not None and 0 < chunk < n_rows:
            agg = self._chunked(h, edge_sh, edge_radial, edge_index, fused, pairs, int(chunk), n)
        elif use_fused:
            rep, widx = pairs if pairs is not None else (None, None)
            weights = self.radial_mlp(edge_radial if rep is None else edge_radial[rep])  # (W, weight_numel)
            w = weights.view(weights.shape[0], self.tp.num_paths, self.tp.mul)  # (W, P, mul)
            agg = fused_edge_product(h, edge_sh, w, edge_index, n, self.tp.sparse_cg(), widx,
                                     1.0 / self.avg_num_neighbors)  # (N, K, mul)
        else:
            weights = self.radial_mlp(edge_radial)  # (E, weight_numel)
            messages = self.tp.product(h[edge_index[0]], edge_sh, weights)  # (E, K, mul): gathered by sender
            agg = scatter_sum(messages, edge_index[1], n) / self.avg_num_neighbors  # (N, K, mul): by receiver
        return self.linear.forward_channels(agg)  # (N, irreps_out.dim)

    def forward_tabulated(
        self,
        node_feats: torch.Tensor,  # (N, irreps_node.dim)
        edge_sh: torch.Tensor,  # (E, irreps_sh.dim)
        lengths: torch.Tensor,  # (E,)
        edge_index: torch.Tensor,  # (2, E)
        table: RadialTable,
        n_out: int | None = None,
        const_feats: bool = False,
    ) -> torch.Tensor:
        """:meth:`forward` on the fused CPU path with the radial weights read from ``table`` (built by
        :meth:`radial_table` from this interaction's MLP and the model's radial embedding): inference only, no
        per-edge radial activations; the same result up to the table's deviation from the network.

        ``const_feats``: ``node_feats`` do not depend on positions or strain (the first layer's species
        embedding), so the backward skips their gradient (forces and stress only: the tabulated path gives no
        parameter gradients, as the radial network is a constant table here)."""
        h = self.channels_in(node_feats, const_feats)  # (N, d1, mul)
        n = node_feats.shape[0] if n_out is None else int(n_out)
        return self.linear.forward_channels(self.aggregate_tabulated(h, edge_sh, lengths, edge_index, table, n))

    def channels_in(self, node_feats: torch.Tensor, const_feats: bool = False) -> torch.Tensor:
        """The node-wise first step of :meth:`forward_tabulated`: ``linear_up`` and the channel layout (N, d1, mul)
        (detached with ``const_feats``, see there)."""
        h = self.tp.to_channels(self.linear_up(node_feats), gather_backward=True)  # (N, d1, mul)
        return h.detach() if const_feats else h

    def aggregate_tabulated(self, h: torch.Tensor, edge_sh: torch.Tensor, lengths: torch.Tensor,
                            edge_index: torch.Tensor, table: RadialTable, n: int) -> torch.Tensor:
        """The edge step of :meth:`forward_tabulated`: the neighbour sum (n, K, mul) of the channel features ``h``
        (:meth:`channels_in`); :meth:`linear`'s ``forward_channels`` of it is the atomic basis."""
        return tabulated_edge_product(h, edge_sh, lengths, table, edge_index, n, self.tp.sparse_cg())

    def radial_table(self, embedding: nn.Module, r_max: float, n_intervals: int,
                     dtype: torch.dtype) -> RadialTable:
        """A spline table of this interaction's radial weights ``MLP(embedding(r)) / avg_num_neighbors``
        (:class:`~compscope.nn._radial_table.RadialTable`), for :meth:`forward_tabulated`."""
        return RadialTable(embedding, self.radial_mlp, r_max, 1.0 / self.avg_num_neighbors, n_intervals, dtype)

    def _chunked(self, h, edge_sh, edge_radial, edge_index, fused: bool, pairs, chunk: int,
                 n: int | None = None) -> torch.Tensor:
        """The neighbour sum (N, K, mul) as a sum over chunks of edges, each under
        :func:`torch.utils.checkpoint.checkpoint`: autograd keeps only a chunk's edge indices, and recomputes the
        chunk's radial weights and messages when the forces are taken, so the memory of the per-edge
        intermediates (radial-MLP activations and weights, messages) is that of one chunk, not of all edges.

        With ``pairs`` a chunk is a range of edge pairs (both directions of a pair in the same chunk, so the shared
        radial weights stay shared). The sum is the same up to floating-point summation order."""
        from torch.utils.checkpoint import checkpoint

        n = h.shape[0] if n is None else n
        use_fused = fused and fused_available(h, edge_sh, edge_radial)
        rep, widx = pairs if (pairs is not None and use_fused) else (None, None)
        n_rows = rep.shape[0] if rep is not None else edge_index.shape[1]
        agg = None
        for lo in range(0, n_rows, chunk):
            hi = min(lo + chunk, n_rows)
            if rep is None:
                sel = torch.arange(lo, hi, device=edge_index.device)  # (C,) edges of this chunk
                rows = sel
            else:
                sel = torch.nonzero((widx >= lo) & (widx < hi)).flatten()  # (C,) edges whose pair is in range
                rows = rep[lo:hi]
            part = checkpoint(self._messages, h, edge_sh, edge_radial, edge_index, sel, rows,
                              None if widx is None else widx[sel] - lo, use_fused, n, use_reentrant=False)
            agg = part if agg is None else agg + part
        return agg if agg is not None else h.new_zeros(n, self.tp.k, self.tp.mul)

    def _messages(self, h, edge_sh, edge_radial, edge_index, sel, rows, widx, use_fused: bool, n: int):
        """Summed messages (N, K, mul) of the edges ``sel`` (radial weights of ``edge_radial[rows]``)."""
        weights = self.radial_mlp(edge_radial[rows])  # (C or C/2, weight_numel)
        ei = edge_index[:, sel]
        if use_fused:
            w = weights.view(weights.shape[0], self.tp.num_paths, self.tp.mul)
            return fused_edge_product(h, edge_sh[sel], w, ei, n, self.tp.sparse_cg(), widx,
                                      1.0 / self.avg_num_neighbors)
        messages = self.tp.product(h[ei[0]], edge_sh[sel], weights)  # (C, K, mul)
        return scatter_sum(messages, ei[1], n) / self.avg_num_neighbors
