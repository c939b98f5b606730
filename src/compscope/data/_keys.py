"""Canonical data keys: the one place where the names of graph fields are defined.

Every tensor field of :class:`compscope.data.AtomicGraph` and every model output is named by one of
these constants; code never spells the strings itself. Shapes use N = atoms in the batch,
E = directed edges, G = graphs in the batch.
"""

from typing import Final

# --- per atom -------------------------------------------------------------------------------------
POSITIONS: Final[str] = "positions"  # (N, 3) float, Å
ATOMIC_NUMBERS: Final[str] = "atomic_numbers"  # (N,) long
FORCES: Final[str] = "forces"  # (N, 3) float, eV/Å (reference or predicted)
BATCH: Final[str] = "batch"  # (N,) long, graph index of each atom
CHARGES: Final[str] = "charges"  # (N,) float, e (optional)
VELOCITIES: Final[str] = "velocities"  # (N, 3) float, Å/(ase time unit) (optional, MD)
MASSES: Final[str] = "masses"  # (N,) float, amu (optional, MD)
NODE_ENERGY: Final[str] = "node_energy"  # (N,) float, eV (model output)

# --- per edge -------------------------------------------------------------------------------------
EDGE_INDEX: Final[str] = "edge_index"  # (2, E) long, [sender, receiver]; vector = r[receiver] - r[sender] + shift
CELL_SHIFTS: Final[str] = "cell_shifts"  # (E, 3) float, integer lattice shifts of the sender's image
EDGE_VECTORS: Final[str] = "edge_vectors"  # (E, 3) float, Å (derived)
EDGE_LENGTHS: Final[str] = "edge_lengths"  # (E,) float, Å (derived)

# --- per graph ------------------------------------------------------------------------------------
ENERGY: Final[str] = "energy"  # (G,) float, eV (reference or predicted total energy)
CELL: Final[str] = "cell"  # (G, 3, 3) float, Å, lattice vectors as rows
PBC: Final[str] = "pbc"  # (G, 3) bool
STRESS: Final[str] = "stress"  # (G, 3, 3) float, eV/Å^3, sign convention of ASE (positive = tensile)
VIRIALS: Final[str] = "virials"  # (G, 3, 3) float, eV
NUM_ATOMS: Final[str] = "num_atoms"  # (G,) long
WEIGHT: Final[str] = "weight"  # (G,) float, per-configuration loss weight (optional)

PER_ATOM_KEYS: Final[tuple[str, ...]] = (POSITIONS, ATOMIC_NUMBERS, FORCES, BATCH, CHARGES, VELOCITIES, MASSES)
PER_EDGE_KEYS: Final[tuple[str, ...]] = (EDGE_INDEX, CELL_SHIFTS)
PER_GRAPH_KEYS: Final[tuple[str, ...]] = (ENERGY, CELL, PBC, STRESS, VIRIALS, NUM_ATOMS, WEIGHT)
