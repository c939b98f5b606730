"""The EGNN denoiser / velocity network shared by the diffusion and flow-matching generators."""

from __future__ import annotations

import torch
from torch import nn

from compscope.nn.egnn import EGNN

from ._batch import MolBatch, remove_mean


class EGNNDynamics(nn.Module):
    """EDM's ``EGNN_dynamics_QM9``: maps a noisy molecule ``(z_x, z_h)`` at time ``t`` to two outputs.

    Node inputs are ``[z_h, t, context]``; the position output is ``x_out - z_x`` projected to zero centre of
    mass, so it is E(3)-equivariant (translation-invariant, rotation/reflection-equivariant) and
    permutation-equivariant; the feature output is invariant.

    Args:
        node_features: width of ``h`` (5 one-hot element channels + 1 charge channel for QM9).
        context_features: conditioning channels per node (0 = unconditional).
        hidden, num_layers, attention, coords_range: passed to :class:`compscope.nn.egnn.EGNN`.

    Shapes:
        z_x ``(N, 3)``, z_h ``(N, node_features)``, t ``(G,)`` in [0, 1], context ``(G, C)`` ->
        ``(N, 3)`` and ``(N, node_features)``.
    """

    def __init__(self, node_features: int = 6, context_features: int = 0, hidden: int = 128,
                 num_layers: int = 6, attention: bool = True, coords_range: float = 15.0):
        super().__init__()
        self.context_features = context_features
        self.egnn = EGNN(node_features + 1 + context_features, hidden, out_features=node_features,
                         num_layers=num_layers, attention=attention, coords_range=coords_range)

    def forward(self, z_x: torch.Tensor, z_h: torch.Tensor, t: torch.Tensor, mb: MolBatch,
                context: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        feats = [z_h, t.to(z_h.dtype)[mb.batch, None]]
        if self.context_features:
            if context is None:
                raise ValueError("this model is conditional: pass a context (the property value to condition on)")
            feats.append(context.to(z_h.dtype)[mb.batch])
        h_out, x_out = self.egnn(torch.cat(feats, -1), z_x, mb.edge_index)
        vel = remove_mean(x_out - z_x, mb.batch, mb.num_graphs)  # (N, 3)
        return vel, h_out
