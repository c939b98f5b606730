"""Batches of molecules as flat tensors with fully-connected edges inside each molecule."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

NUM_TYPES = 5  # H, C, N, O, F
ATOMIC_NUMBERS = torch.tensor([1, 6, 7, 8, 9])


def fully_connected_edges(n_atoms: torch.Tensor) -> torch.Tensor:
    """All ordered pairs ``i != j`` inside each molecule.

    Args:
        n_atoms: ``(G,)`` atoms per molecule (atoms stored molecule after molecule).

    Returns:
        ``(2, E)`` edge index ``[sender, receiver]``, ``E = sum n (n - 1)``.
    """
    dev = n_atoms.device
    ptr = torch.cumsum(n_atoms, 0) - n_atoms  # (G,) first atom of each molecule
    batch = torch.repeat_interleave(torch.arange(len(n_atoms), device=dev), n_atoms)  # (N,)
    partners = n_atoms[batch]  # (N,) incl. self
    snd = torch.repeat_interleave(torch.arange(len(batch), device=dev), partners)  # (E + N,)
    start = torch.cumsum(partners, 0) - partners
    offs = torch.arange(len(snd), device=dev) - torch.repeat_interleave(start, partners)
    rcv = ptr[batch[snd]] + offs
    keep = snd != rcv
    return torch.stack([snd[keep], rcv[keep]])


def scatter_mean(x: torch.Tensor, batch: torch.Tensor, num_graphs: int) -> torch.Tensor:
    """Mean of rows of ``x`` ``(N, D)`` per molecule -> ``(G, D)``."""
    s = torch.zeros((num_graphs, x.shape[1]), dtype=x.dtype, device=x.device).index_add(0, batch, x)
    n = torch.zeros(num_graphs, dtype=x.dtype, device=x.device).index_add(
        0, batch, torch.ones_like(batch, dtype=x.dtype))
    return s / n.clamp(min=1)[:, None]


def remove_mean(x: torch.Tensor, batch: torch.Tensor, num_graphs: int) -> torch.Tensor:
    """Subtract each molecule's centre (of geometry, as EDM) from its positions ``(N, 3)``."""
    return x - scatter_mean(x, batch, num_graphs)[batch]


def com_free_noise(batch: torch.Tensor, num_graphs: int, like: torch.Tensor) -> torch.Tensor:
    """Standard normal noise ``(N, 3)`` projected onto the zero-centre-of-mass subspace (EDM eq. 8)."""
    return remove_mean(torch.randn((len(batch), 3), dtype=like.dtype, device=like.device), batch, num_graphs)


@dataclass
class MolBatch:
    """A batch of molecules.

    Attributes:
        x: ``(N, 3)`` positions, Å. types: ``(N,)`` element index (H, C, N, O, F). batch: ``(N,)`` molecule id.
        n_atoms: ``(G,)``. edge_index: ``(2, E)`` all intra-molecular pairs. context: ``(G, C)`` or None
        (normalised conditioning properties).
    """

    x: torch.Tensor
    types: torch.Tensor
    batch: torch.Tensor
    n_atoms: torch.Tensor
    edge_index: torch.Tensor
    context: torch.Tensor | None = None

    @property
    def num_graphs(self) -> int:
        return int(self.n_atoms.numel())

    def to(self, device) -> MolBatch:
        c = None if self.context is None else self.context.to(device)
        return replace(self, x=self.x.to(device), types=self.types.to(device), batch=self.batch.to(device),
                       n_atoms=self.n_atoms.to(device), edge_index=self.edge_index.to(device), context=c)

    @staticmethod
    def from_sizes(n_atoms: torch.Tensor, x: torch.Tensor | None = None, types: torch.Tensor | None = None,
                   context: torch.Tensor | None = None, dtype=torch.float32) -> MolBatch:
        n_atoms = torch.as_tensor(n_atoms, dtype=torch.long)
        n = int(n_atoms.sum())
        batch = torch.repeat_interleave(torch.arange(len(n_atoms)), n_atoms)
        x = torch.zeros(n, 3, dtype=dtype) if x is None else x
        types = torch.zeros(n, dtype=torch.long) if types is None else types
        return MolBatch(x, types, batch, n_atoms, fully_connected_edges(n_atoms), context)

    def split(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per-molecule ``(positions (n, 3), types (n,))`` on CPU."""
        xs = torch.split(self.x.detach().cpu(), self.n_atoms.tolist())
        ts = torch.split(self.types.detach().cpu(), self.n_atoms.tolist())
        return list(zip(xs, ts))


def collate(molecules: list[tuple[torch.Tensor, torch.Tensor]], context: torch.Tensor | None = None,
            dtype=torch.float32) -> MolBatch:
    """Batch ``(positions (n, 3), types (n,))`` molecules; positions are centred per molecule."""
    n_atoms = torch.tensor([len(t) for _, t in molecules], dtype=torch.long)
    x = torch.cat([torch.as_tensor(p) for p, _ in molecules]).to(dtype)
    types = torch.cat([torch.as_tensor(t) for _, t in molecules]).long()
    b = MolBatch.from_sizes(n_atoms, x, types, context, dtype)
    b.x = remove_mean(b.x, b.batch, b.num_graphs)
    return b
