"""``AtomicGraph``: one or many atomic structures as one concatenated graph.

A batch of G structures is a single graph with N atoms and E edges; ``batch`` maps atoms to their
structure. Single structures are batches with G = 1, so all code paths are batched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import torch

from . import _keys as K
from ._labels import DataFormatError, extract_labels
from ._neighbors import neighbor_list


@dataclass
class AtomicGraph:
    """A batch of atomic structures with a radius graph.

    Shapes:
        positions: (N, 3) Å; atomic_numbers: (N,); batch: (N,); edge_index: (2, E);
        cell_shifts: (E, 3); cell: (G, 3, 3) rows are lattice vectors; pbc: (G, 3);
        energy: (G,) eV; forces: (N, 3) eV/Å; stress: (G, 3, 3) eV/Å^3; charges: (N,).

    Notes:
        ``energy``, ``forces``, ``stress`` hold *reference* labels when present (from data files);
        model predictions are returned separately as dictionaries keyed by :mod:`compscope.data.keys`.
    """

    positions: torch.Tensor
    atomic_numbers: torch.Tensor
    edge_index: torch.Tensor
    cell_shifts: torch.Tensor
    batch: torch.Tensor
    cell: torch.Tensor
    pbc: torch.Tensor
    energy: torch.Tensor | None = None
    forces: torch.Tensor | None = None
    stress: torch.Tensor | None = None
    charges: torch.Tensor | None = None
    weight: torch.Tensor | None = None
    cutoff: float = 0.0
    info: list[dict[str, Any]] | None = None  # per-graph free-form metadata (config_type, ...)

    # ------------------------------------------------------------------------------------------
    @property
    def num_graphs(self) -> int:
        return int(self.cell.shape[0])

    @property
    def num_atoms(self) -> torch.Tensor:  # (G,)
        return torch.bincount(self.batch, minlength=self.num_graphs)

    @property
    def num_nodes(self) -> int:
        return int(self.positions.shape[0])

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])

    def edge_vectors(self, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Edge vectors ``r[receiver] - r[sender] + shift @ cell``, shape (E, 3).

        ``positions`` may be given to differentiate through a tensor that requires grad.
        """
        pos = self.positions if positions is None else positions
        send, recv = self.edge_index
        if self.cell.shape[0] == 1:  # one structure: no (E, 3, 3) copy of its cell
            offsets = self.cell_shifts.to(pos.dtype) @ self.cell[0].to(pos.dtype)
        else:
            cell_per_edge = self.cell[self.batch[send]]  # (E, 3, 3)
            offsets = torch.einsum("ei,eij->ej", self.cell_shifts.to(pos.dtype), cell_per_edge.to(pos.dtype))
        return pos[recv] - pos[send] + offsets

    # ------------------------------------------------------------------------------------------
    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> AtomicGraph:
        """Move tensors to ``device``; floating tensors (not integer ones) to ``dtype``."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, torch.Tensor):
                if dtype is not None and v.is_floating_point():
                    v = v.to(device=device, dtype=dtype)
                else:
                    v = v.to(device=device)
            out[f.name] = v
        return AtomicGraph(**out)

    def with_positions(self, positions: torch.Tensor) -> AtomicGraph:
        """A shallow copy with new positions (same edges; caller keeps them within the cutoff)."""
        return replace(self, positions=positions)

    # ------------------------------------------------------------------------------------------
    @classmethod
    def from_atoms(
        cls,
        atoms,
        cutoff: float,
        energy_key: str | None = "energy",
        forces_key: str | None = "forces",
        stress_key: str | None = "stress",
        dtype: torch.dtype = torch.float64,
        require_labels: bool = False,
        source: str = "",
    ) -> AtomicGraph:
        """Build a single-structure graph from an :class:`ase.Atoms`.

        Labels are read from ``atoms.info`` / ``atoms.arrays`` under the given keys, or from an attached
        single-point calculator when the key is ``"energy"``/``"forces"``/``"stress"``.
        """
        pos = np.asarray(atoms.get_positions(), dtype=np.float64)
        where = f"{source}: " if source else ""
        if not np.all(np.isfinite(pos)):
            raise DataFormatError(f"{where}positions contain NaN/inf", hint="fix or drop this frame")
        pbc = np.asarray(atoms.get_pbc(), dtype=bool)
        cell = np.asarray(atoms.get_cell().array, dtype=np.float64)
        if pbc.any() and abs(np.linalg.det(cell)) < 1e-12:
            raise DataFormatError(f"{where}periodic structure without a valid cell (its volume is zero)",
                                  hint="give the frame a Lattice=\"...\" with three independent vectors, or set "
                                       "pbc=\"F F F\"")
        edge_index, shifts = neighbor_list(pos, cutoff, cell=cell, pbc=pbc)
        labels = extract_labels(atoms, energy_key, forces_key, stress_key, require=require_labels, where=where)
        g = cls(
            positions=torch.as_tensor(pos, dtype=dtype),
            atomic_numbers=torch.as_tensor(atoms.get_atomic_numbers(), dtype=torch.long),
            edge_index=torch.as_tensor(edge_index, dtype=torch.long),
            cell_shifts=torch.as_tensor(shifts, dtype=dtype),
            batch=torch.zeros(len(atoms), dtype=torch.long),
            cell=torch.as_tensor(cell, dtype=dtype).unsqueeze(0),
            pbc=torch.as_tensor(pbc).unsqueeze(0),
            cutoff=float(cutoff),
            info=[{k: v for k, v in atoms.info.items() if isinstance(v, (str, int, float))}],
        )
        if labels.get(K.ENERGY) is not None:
            g.energy = torch.tensor([labels[K.ENERGY]], dtype=dtype)
        if labels.get(K.FORCES) is not None:
            g.forces = torch.as_tensor(labels[K.FORCES], dtype=dtype)
        if labels.get(K.STRESS) is not None:
            g.stress = torch.as_tensor(labels[K.STRESS], dtype=dtype).unsqueeze(0)
        if "initial_charges" in atoms.arrays:
            g.charges = torch.as_tensor(atoms.arrays["initial_charges"], dtype=dtype)
        return g

    def to_atoms(self) -> list:
        """Convert back to a list of :class:`ase.Atoms` (labels attached as single-point results)."""
        from ase import Atoms
        from ase.calculators.singlepoint import SinglePointCalculator

        out = []
        for g, (lo, hi) in enumerate(self._node_slices()):
            atoms = Atoms(
                numbers=self.atomic_numbers[lo:hi].cpu().numpy(),
                positions=self.positions[lo:hi].detach().cpu().numpy(),
                cell=self.cell[g].detach().cpu().numpy(),
                pbc=self.pbc[g].cpu().numpy(),
            )
            if self.info is not None:
                atoms.info.update(self.info[g])
            res = {}
            if self.energy is not None:
                res["energy"] = float(self.energy[g])
            if self.forces is not None:
                res["forces"] = self.forces[lo:hi].detach().cpu().numpy()
            if res:
                atoms.calc = SinglePointCalculator(atoms, **res)
            out.append(atoms)
        return out

    def _node_slices(self) -> list[tuple[int, int]]:
        counts = self.num_atoms.tolist()
        starts = np.concatenate([[0], np.cumsum(counts)]).astype(int)
        return [(int(starts[g]), int(starts[g + 1])) for g in range(len(counts))]

    # ------------------------------------------------------------------------------------------
    @staticmethod
    def collate(graphs: Sequence[AtomicGraph]) -> AtomicGraph:
        """Concatenate graphs (each may itself be a batch) into one batch."""
        if len(graphs) == 0:
            raise ValueError("cannot collate an empty list of graphs")
        node_offset = 0
        graph_offset = 0
        edge_index, batch = [], []
        for g in graphs:
            edge_index.append(g.edge_index + node_offset)
            batch.append(g.batch + graph_offset)
            node_offset += g.num_nodes
            graph_offset += g.num_graphs

        def cat(name: str) -> torch.Tensor | None:
            vals = [getattr(g, name) for g in graphs]
            if any(v is None for v in vals):
                return None
            return torch.cat(vals, dim=0)

        info: list[dict[str, Any]] | None = None
        if all(g.info is not None for g in graphs):
            info = [d for g in graphs for d in g.info]  # type: ignore[union-attr]
        return AtomicGraph(
            positions=torch.cat([g.positions for g in graphs]),
            atomic_numbers=torch.cat([g.atomic_numbers for g in graphs]),
            edge_index=torch.cat(edge_index, dim=1),
            cell_shifts=torch.cat([g.cell_shifts for g in graphs]),
            batch=torch.cat(batch),
            cell=torch.cat([g.cell for g in graphs]),
            pbc=torch.cat([g.pbc for g in graphs]),
            energy=cat("energy"),
            forces=cat("forces"),
            stress=cat("stress"),
            charges=cat("charges"),
            weight=cat("weight"),
            cutoff=graphs[0].cutoff,
            info=info,
        )

    def split(self) -> list[AtomicGraph]:
        """Undo :meth:`collate`: one graph per structure."""
        out = []
        edge_graph = self.batch[self.edge_index[0]]
        for g, (lo, hi) in enumerate(self._node_slices()):
            emask = edge_graph == g

            def sl(t: torch.Tensor | None, per_atom: bool, g=g, lo=lo, hi=hi) -> torch.Tensor | None:
                if t is None:
                    return None
                return t[lo:hi] if per_atom else t[g : g + 1]

            out.append(
                AtomicGraph(
                    positions=self.positions[lo:hi],
                    atomic_numbers=self.atomic_numbers[lo:hi],
                    edge_index=self.edge_index[:, emask] - lo,
                    cell_shifts=self.cell_shifts[emask],
                    batch=torch.zeros(hi - lo, dtype=torch.long, device=self.batch.device),
                    cell=self.cell[g : g + 1],
                    pbc=self.pbc[g : g + 1],
                    energy=sl(self.energy, False),
                    forces=sl(self.forces, True),
                    stress=sl(self.stress, False),
                    charges=sl(self.charges, True),
                    weight=sl(self.weight, False),
                    cutoff=self.cutoff,
                    info=None if self.info is None else [self.info[g]],
                )
            )
        return out

    def rebuild_edges(self, cutoff: float | None = None) -> AtomicGraph:
        """Recompute the neighbour list at the current positions (e.g. during MD)."""
        cutoff = self.cutoff if cutoff is None else cutoff
        parts = []
        for g, (lo, hi) in enumerate(self._node_slices()):
            ei, sh = neighbor_list(
                self.positions[lo:hi].detach().cpu().double().numpy(),
                cutoff,
                cell=self.cell[g].detach().cpu().double().numpy(),
                pbc=self.pbc[g].cpu().numpy(),
            )
            parts.append((torch.as_tensor(ei) + lo, torch.as_tensor(sh)))
        dev, dt = self.positions.device, self.positions.dtype
        return replace(
            self,
            edge_index=torch.cat([p[0] for p in parts], dim=1).to(dev),
            cell_shifts=torch.cat([p[1] for p in parts]).to(device=dev, dtype=dt),
            cutoff=cutoff,
        )


def graphs_from_atoms(atoms_list, cutoff: float, source: str = "", **kwargs) -> list[AtomicGraph]:
    """:meth:`AtomicGraph.from_atoms` over a list; errors name ``source`` and the frame index."""
    return [
        AtomicGraph.from_atoms(a, cutoff, source=f"{source} frame {i}".strip(), **kwargs)
        for i, a in enumerate(atoms_list)
    ]
