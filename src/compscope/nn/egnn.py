"""E(n)-equivariant graph neural network (EGNN) layers: invariant node features plus coordinate updates.

Satorras, Hoogeboom & Welling, "E(n) Equivariant Graph Neural Networks", ICML 2021, eqs. (3)-(6), with the
stabilisations of EDM (Hoogeboom et al., ICML 2022, App. B): attention-gated messages, coordinate updates
normalised by ``(|x_i - x_j| + C)`` and bounded by ``tanh(.) * coords_range`` and the initial pairwise squared
distances fed to every layer as edge attributes.

Edges follow ``compscope.data`` convention: ``edge_index = [sender, receiver]`` with shape ``(2, E)``; a message
travels from sender ``j`` to receiver ``i`` and ``x_i - x_j`` is the relative position.

Shapes:
    h: ``(N, F)`` invariant node features; x: ``(N, 3)`` positions; edge_index: ``(2, E)``;
    edge_attr: ``(E, A)`` invariant edge features.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["EGNNLayer", "EGNN"]


def _mlp(i: int, hidden: int, o: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(i, hidden), nn.SiLU(), nn.Linear(hidden, o))


def _scatter_sum(src: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    out = torch.zeros((n,) + src.shape[1:], dtype=src.dtype, device=src.device)
    return out.index_add(0, index, src)


class EGNNLayer(nn.Module):
    """One EGNN layer.

    Messages (eq. 3): ``m_ij = phi_e(h_i, h_j, |x_i - x_j|^2, a_ij)``, gated by ``sigmoid(phi_att(m_ij))``.
    Node update (eqs. 5-6): ``h_i <- h_i + phi_h(h_i, sum_j m_ij / Z)``.
    Coordinate update (eq. 4, EDM-stabilised):
    ``x_i <- x_i + sum_j (x_i - x_j) / (|x_i - x_j| + C) * tanh(phi_x(h_i, h_j, |x_i - x_j|^2, a_ij)) * r / Z``.

    Args:
        hidden: width of ``h`` and of all MLPs.
        edge_features: number of extra invariant edge attributes ``a_ij``.
        attention: gate messages with a learned sigmoid.
        tanh: bound the coordinate step with ``tanh`` times ``coords_range`` (EDM); otherwise unbounded.
        coords_range: maximum per-edge coordinate step (Å) when ``tanh``.
        norm_constant: ``C`` in the normalised direction ``(x_i - x_j) / (|x_i - x_j| + C)``.
        normalization_factor: ``Z`` dividing the sum aggregation (1 in EDM for QM9).
        update_coords: if False the layer is invariant-only (``x`` returned unchanged).

    Notes:
        The last layer of ``phi_x`` starts near zero (Xavier gain 1e-3, as EDM) so that an untrained
        network barely moves atoms; sums are over edges, so pass only the edges you want (e.g. all pairs
        within a molecule for generation).
    """

    def __init__(self, hidden: int, edge_features: int = 0, attention: bool = True, tanh: bool = True,
                 coords_range: float = 15.0, norm_constant: float = 1.0, normalization_factor: float = 1.0,
                 update_coords: bool = True):
        super().__init__()
        self.attention, self.tanh, self.update_coords = attention, tanh, update_coords
        self.coords_range, self.norm_constant = coords_range, norm_constant
        self.normalization_factor = normalization_factor
        # The first linear map of phi_e / phi_x acts on [h_i, h_j, d_ij^2, a_ij]; we apply its h_i and h_j blocks
        # per node and gather (same function, E/N times fewer multiply-adds).
        self.e_recv, self.e_send = nn.Linear(hidden, hidden), nn.Linear(hidden, hidden, bias=False)
        self.e_edge = nn.Linear(1 + edge_features, hidden, bias=False)
        self.phi_e = nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
        self.phi_att = nn.Linear(hidden, 1) if attention else None
        self.phi_h = _mlp(2 * hidden, hidden, hidden)
        if update_coords:
            self.x_recv, self.x_send = nn.Linear(hidden, hidden), nn.Linear(hidden, hidden, bias=False)
            self.x_edge = nn.Linear(1 + edge_features, hidden, bias=False)
            self.phi_x = nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                       nn.Linear(hidden, 1, bias=False))
            nn.init.xavier_uniform_(self.phi_x[-1].weight, gain=1e-3)

    def forward(self, h: torch.Tensor, x: torch.Tensor, edge_index: torch.Tensor,
                edge_attr: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        snd, rcv = edge_index[0], edge_index[1]
        n = h.shape[0]
        diff = x[rcv] - x[snd]  # (E, 3) x_i - x_j
        d2 = (diff * diff).sum(-1, keepdim=True)  # (E, 1)
        e = d2 if edge_attr is None else torch.cat([d2, edge_attr], dim=-1)  # (E, 1 + A)
        m = self.phi_e(self.e_recv(h)[rcv] + self.e_send(h)[snd] + self.e_edge(e))  # (E, F)
        if self.phi_att is not None:
            m = m * torch.sigmoid(self.phi_att(m))
        agg = _scatter_sum(m, rcv, n) / self.normalization_factor  # (N, F)
        h = h + self.phi_h(torch.cat([h, agg], dim=-1))  # (N, F)
        if self.update_coords:
            w = self.phi_x(self.x_recv(h)[rcv] + self.x_send(h)[snd] + self.x_edge(e))  # (E, 1)
            if self.tanh:
                w = torch.tanh(w) * self.coords_range
            direction = diff / (torch.sqrt(d2 + 1e-8) + self.norm_constant)  # (E, 3)
            x = x + _scatter_sum(direction * w, rcv, n) / self.normalization_factor  # (N, 3)
        return h, x


class EGNN(nn.Module):
    """A stack of :class:`EGNNLayer` with input/output embeddings of the invariant features.

    Each layer also sees the squared distances of the *input* geometry as an edge attribute (EDM).

    Args:
        in_features: input node-feature width.
        hidden: hidden width.
        out_features: output node-feature width (default ``in_features``).
        num_layers: number of EGNN layers.
        attention, tanh, norm_constant, normalization_factor: see :class:`EGNNLayer`.
        coords_range: total coordinate range, split evenly over layers (EDM: 15 / num_layers per layer).

    Returns from ``forward``: ``(h_out (N, out_features), x_out (N, 3))``.

    Examples:
        >>> import torch
        >>> net = EGNN(in_features=6, hidden=16, num_layers=2)
        >>> ei = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
        >>> h, x = net(torch.randn(3, 6), torch.randn(3, 3), ei)
        >>> h.shape, x.shape
        (torch.Size([3, 6]), torch.Size([3, 3]))
    """

    def __init__(self, in_features: int, hidden: int = 128, out_features: int | None = None,
                 num_layers: int = 4, attention: bool = True, tanh: bool = True, coords_range: float = 15.0,
                 norm_constant: float = 1.0, normalization_factor: float = 1.0):
        super().__init__()
        self.embed = nn.Linear(in_features, hidden)
        self.out = nn.Linear(hidden, out_features or in_features)
        self.layers = nn.ModuleList([
            EGNNLayer(hidden, edge_features=1, attention=attention, tanh=tanh,
                      coords_range=coords_range / num_layers, norm_constant=norm_constant,
                      normalization_factor=normalization_factor)
            for _ in range(num_layers)
        ])

    def forward(self, h: torch.Tensor, x: torch.Tensor, edge_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d0 = x[edge_index[1]] - x[edge_index[0]]
        d2_initial = (d0 * d0).sum(-1, keepdim=True)  # (E, 1)
        h = self.embed(h)  # (N, hidden)
        for layer in self.layers:
            h, x = layer(h, x, edge_index, d2_initial)
        return self.out(h), x  # (N, out), (N, 3)
