"""Sample-quality metrics for 3D molecules, computed exactly as EDM does (Hoogeboom et al. 2022, App. C).

* **atom stability**: fraction of atoms whose summed bond orders equal their valence (H 1, C 4, N 3, O 2, F 1);
* **molecule stability**: fraction of molecules whose atoms are all stable;
* **validity**: fraction of molecules that RDKit sanitises (bonds from the same distance rule; the SMILES of
  the largest fragment is kept, EDM's ``compute_validity``);
* **uniqueness**: distinct valid SMILES / valid; ``valid_unique`` = validity x uniqueness;
* **novelty**: unique SMILES not among the training SMILES / unique;
* **connected validity** (not in EDM): valid and a single fragment, so disconnected clouds do not count.

Bond orders are computed for all pairs of a padded, size-sorted chunk at once (NumPy); only the RDKit step
loops (one sanitisation per molecule, a second only for disconnected ones).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from ._bonds import ELEMENTS, thresholds_pm, valence_array

log = logging.getLogger(__name__)

Molecule = tuple[np.ndarray, np.ndarray]  # positions (n, 3) Å, element indices (n,) into ELEMENTS


def pad_molecules(molecules: Sequence[Molecule]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pad a list of molecules.

    Returns:
        positions ``(B, N, 3)`` float64, types ``(B, N)`` int64 (0 where padded), mask ``(B, N)`` bool.
    """
    n_max = max((len(t) for _, t in molecules), default=0)
    b = len(molecules)
    pos = np.zeros((b, n_max, 3))
    typ = np.zeros((b, n_max), dtype=np.int64)
    mask = np.zeros((b, n_max), dtype=bool)
    for i, (x, t) in enumerate(molecules):
        n = len(t)
        pos[i, :n] = np.asarray(x, dtype=np.float64)
        typ[i, :n] = np.asarray(t)
        mask[i, :n] = True
    return pos, typ, mask


def bond_orders(pos: np.ndarray, types: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """EDM bond orders for every pair.

    Args:
        pos: ``(B, N, 3)`` Å. types: ``(B, N)`` element indices. mask: ``(B, N)`` real atoms.

    Returns:
        ``(B, N, N)`` int8 orders 0-3, zero on the diagonal and for padded atoms.
    """
    # (dx^2 + dy^2) + dz^2 coordinate by coordinate: the same float64 operations, in the same order, as
    # ``(diff**2).sum(-1)`` over a (B, N, N, 3) difference array, without building that array
    d2 = np.zeros(pos.shape[:2] + pos.shape[1:2])
    for k in range(pos.shape[-1]):
        dk = pos[:, :, None, k] - pos[:, None, :, k]
        d2 += dk * dk
    dist_pm = 100.0 * np.sqrt(d2)  # (B, N, N)
    thr = thresholds_pm()  # (3, 5, 5)
    pair = (types[:, :, None], types[:, None, :])
    t1, t2, t3 = thr[0][pair], thr[1][pair], thr[2][pair]  # (B, N, N) each
    order = (dist_pm < t1) * (1 + (dist_pm < t2) * (1 + (dist_pm < t3).astype(np.int8)))
    valid = mask[:, :, None] & mask[:, None, :]
    valid &= ~np.eye(pos.shape[1], dtype=bool)[None]
    return (order * valid).astype(np.int8)


def stability(types: np.ndarray, mask: np.ndarray, orders: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-atom stability ``(B, N)`` (False on padding) and per-molecule stability ``(B,)``."""
    nbonds = orders.sum(-1)  # (B, N)
    stable = (nbonds == valence_array()[types]) & mask
    return stable, (stable | ~mask).all(-1)


_BOND_TYPES = None
_ATOMS = None


def to_rdkit(types: np.ndarray, orders: np.ndarray):
    """An RDKit ``RWMol`` (unsanitised) from element indices ``(n,)`` and a bond-order matrix ``(n, n)``."""
    global _BOND_TYPES, _ATOMS
    from rdkit import Chem

    if _BOND_TYPES is None:
        _BOND_TYPES = [None, Chem.BondType.SINGLE, Chem.BondType.DOUBLE, Chem.BondType.TRIPLE]
        _ATOMS = [Chem.Atom(e) for e in ELEMENTS]  # AddAtom copies, so one prototype per element
    mol = Chem.RWMol()
    for t in np.asarray(types).tolist():
        mol.AddAtom(_ATOMS[t])
    orders = np.asarray(orders)
    ii, jj = np.nonzero(orders)  # row-major, so the i < j pairs come in the same order as np.triu's
    upper = ii < jj
    ii, jj = ii[upper], jj[upper]
    for i, j, k in zip(ii.tolist(), jj.tolist(), orders[ii, jj].tolist()):
        mol.AddBond(i, j, _BOND_TYPES[k])
    return mol


def _smiles(mol) -> str | None:
    from rdkit import Chem

    try:
        Chem.SanitizeMol(mol)
    except ValueError:  # RDKit's MolSanitizeException derives from ValueError
        return None
    return Chem.MolToSmiles(mol)


def rdkit_smiles(types: np.ndarray, orders: np.ndarray) -> tuple[str | None, bool]:
    """EDM validity for one molecule: SMILES of the largest fragment (or None) and whether it is connected.

    A connected molecule is its own largest fragment, so its SMILES is reused instead of sanitising and
    writing a copy again (same string; checked on all 130,831 QM9 molecules and on perturbed ones).
    """
    from rdkit import Chem

    mol = to_rdkit(types, orders)
    smi = _smiles(mol)
    if smi is None:
        return None, False
    frag_atoms = Chem.GetMolFrags(mol)
    if len(frag_atoms) <= 1:
        return smi, True
    frags = Chem.GetMolFrags(mol, asMols=True, sanitizeFrags=False)
    largest = max(frags, default=mol, key=lambda m: m.GetNumAtoms())
    return _smiles(largest), False


@dataclass
class MoleculeReport:
    """Per-molecule results of :func:`analyse`: lists aligned with the input order."""

    n_atoms: np.ndarray  # (M,)
    atom_stable: np.ndarray  # (M,) number of stable atoms
    mol_stable: np.ndarray  # (M,) bool
    smiles: list  # largest-fragment SMILES or None
    connected: np.ndarray  # (M,) bool


@dataclass
class Metrics:
    n_molecules: int
    atom_stability: float
    molecule_stability: float
    validity: float
    uniqueness: float
    valid_unique: float
    novelty: float | None
    connected_validity: float

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        nov = "n/a (no training SMILES given)" if self.novelty is None else f"{100 * self.novelty:.1f} %"
        return (
            f"{self.n_molecules} molecules: atom stable {100 * self.atom_stability:.1f} %, "
            f"mol stable {100 * self.molecule_stability:.1f} %, valid {100 * self.validity:.1f} %, "
            f"valid&unique {100 * self.valid_unique:.1f} %, novel {nov}, "
            f"connected valid {100 * self.connected_validity:.1f} %"
        )


def analyse(molecules: Sequence[Molecule], chunk: int = 4096, rdkit: bool = True) -> MoleculeReport:
    """Stability and RDKit validity of each molecule (positions in Å, element indices into H, C, N, O, F)."""
    from rdkit.rdBase import BlockLogs

    m = len(molecules)
    n_at = np.array([len(t) for _, t in molecules], dtype=np.int64)
    st_at = np.zeros(m, dtype=np.int64)
    st_mol = np.zeros(m, dtype=bool)
    conn = np.zeros(m if rdkit else 0, dtype=bool)
    smiles: list = [None] * m if rdkit else []
    _quiet = BlockLogs()  # noqa: F841 - RDKit prints one line per invalid molecule otherwise
    # chunks of similar size pad little (per-pair results do not depend on the padding); results go back
    # to the input order
    by_size = np.argsort(n_at, kind="stable")
    for s in range(0, m, chunk):
        idx = by_size[s:s + chunk]
        pos, typ, mask = pad_molecules([molecules[i] for i in idx.tolist()])
        orders = bond_orders(pos, typ, mask)
        atom_ok, mol_ok = stability(typ, mask, orders)
        st_at[idx] = atom_ok.sum(1)
        st_mol[idx] = mol_ok
        if rdkit:
            for b, (i, n) in enumerate(zip(idx.tolist(), n_at[idx].tolist())):
                smiles[i], conn[i] = rdkit_smiles(typ[b, :n], orders[b, :n, :n])
    return MoleculeReport(n_at, st_at, st_mol, smiles, conn)


def summarise(report: MoleculeReport, train_smiles: Iterable[str] | None = None) -> Metrics:
    """EDM's aggregate numbers from a :class:`MoleculeReport`."""
    m = len(report.mol_stable)
    if m == 0:
        raise ValueError("no molecules to evaluate: pass at least one molecule")
    valid = [s for s in report.smiles if s is not None]
    unique = set(valid)
    novelty = None
    if train_smiles is not None and unique:
        train = train_smiles if isinstance(train_smiles, (set, frozenset)) else set(train_smiles)
        novelty = sum(s not in train for s in unique) / len(unique)
    validity = len(valid) / m if report.smiles else 0.0
    uniq = len(unique) / len(valid) if valid else 0.0
    return Metrics(
        n_molecules=m,
        atom_stability=float(report.atom_stable.sum() / max(report.n_atoms.sum(), 1)),
        molecule_stability=float(report.mol_stable.mean()),
        validity=validity,
        uniqueness=uniq,
        valid_unique=validity * uniq,
        novelty=novelty,
        connected_validity=float(report.connected.mean()) if len(report.connected) else 0.0,
    )


def evaluate(molecules: Sequence[Molecule], train_smiles: Iterable[str] | None = None) -> Metrics:
    """All EDM metrics for a list of ``(positions (n, 3) Å, element indices (n,))`` molecules."""
    return summarise(analyse(molecules), train_smiles)


def training_smiles(molecules: Sequence[Molecule]) -> set[str]:
    """Reference SMILES for novelty, made as EDM does: our bond rule + RDKit on the training molecules."""
    return {s for s in analyse(molecules).smiles if s is not None}
