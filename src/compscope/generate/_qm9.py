"""QM9 for generative modelling: conversion from ``qm9pack``, a cached tensor file, EDM's splits and units.

The ``qm9pack`` package ships QM9 as CSV (130,831 molecules: the 133,885 GDB-9 molecules minus the 3,054
that failed the consistency check of Ramakrishnan et al. 2014). We parse it once into
``<data_dir>/qm9/qm9_generate_v1.pt`` and reuse that file.

Splits follow EDM (Hoogeboom et al. 2022), which inherits them from Cormorant (Anderson et al. 2019):
the included molecule indices (0-based GDB-9 ids, sorted ascending) are permuted with
``np.random.seed(0); np.random.permutation(130831)`` and cut into 100,000 train / 17,748 valid /
13,083 test (``Ntest = int(0.1 * Nmols)``, valid the rest). The train split keeps the permuted order.
For property-conditional runs EDM permutes the train split with ``np.random.seed(42)``: the first half
(``qm9_first_half``) trains the property classifiers, the second half (``qm9_second_half``) the generator.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

CACHE_NAME = "qm9_generate_v1.pt"
N_GDB9 = 133_885
N_QM9 = 130_831
N_TRAIN = 100_000
N_TEST = int(0.1 * N_QM9)  # 13,083
N_VALID = N_QM9 - N_TRAIN - N_TEST  # 17,748

ATOM_DECODER = ("H", "C", "N", "O", "F")
ATOMIC_NUMBERS = (1, 6, 7, 8, 9)
_SYMBOL_TO_INDEX = {s: i for i, s in enumerate(ATOM_DECODER)}

HARTREE_TO_EV = 27.2114  # EDM's constant (qm9/data/prepare/qm9.py), kept for exact comparability
HARTREE_TO_MEV = HARTREE_TO_EV * 1000.0

# property name -> (qm9pack column, factor, unit as EDM reports it)
PROPERTIES: dict[str, tuple[str, float, str]] = {
    "alpha": ("Polarizability_bohr3", 1.0, "Bohr^3"),
    "gap": ("HOMO_LUMO_gap_au", HARTREE_TO_MEV, "meV"),
    "homo": ("HOMO_au", HARTREE_TO_MEV, "meV"),
    "lumo": ("LUMO_au", HARTREE_TO_MEV, "meV"),
    "mu": ("Dipole_debye", 1.0, "D"),
    "Cv": ("Heatcapacity_Cv_cal_mol_K", 1.0, "cal/(mol K)"),
    "r2": ("R2_bohr2", 1.0, "Bohr^2"),
    "zpve": ("ZPVE_au", HARTREE_TO_MEV, "meV"),
    "U0": ("InternalEnergy_0K_au", HARTREE_TO_EV, "eV"),
    "U": ("InternalEnergy_298K_au", HARTREE_TO_EV, "eV"),
    "H": ("Enthalphy_298K_au", HARTREE_TO_EV, "eV"),
    "G": ("GibbsFreeEnergy_298K_au", HARTREE_TO_EV, "eV"),
}


def check_property(name: str) -> str:
    """Return ``name`` if it is a known QM9 property, else raise with the list of valid names."""
    if name not in PROPERTIES:
        raise ValueError(
            f"unknown QM9 property {name!r}; choose one of {sorted(PROPERTIES)} "
            "(EDM conditions on alpha, gap, homo, lumo, mu, Cv)"
        )
    return name


@dataclass
class QM9:
    """All 130,831 QM9 molecules in flat tensors, ordered by GDB-9 index.

    Attributes:
        positions: ``(N_atoms_total, 3)`` float64, Å, as in the QM9 xyz files.
        types: ``(N_atoms_total,)`` int64 index into ``ATOM_DECODER`` (H, C, N, O, F).
        ptr: ``(M + 1,)`` int64 offsets: molecule ``m`` owns atoms ``ptr[m]:ptr[m+1]``.
        gdb_index: ``(M,)`` int64 0-based GDB-9 id (``dsgdb9nsd_{id+1:06d}``).
        smiles: ``M`` SMILES strings from the QM9 release (GDB-9 SMILES).
        properties: name -> ``(M,)`` float64 in EDM's units (see ``PROPERTIES``).
    """

    positions: torch.Tensor
    types: torch.Tensor
    ptr: torch.Tensor
    gdb_index: torch.Tensor
    smiles: list[str]
    properties: dict[str, torch.Tensor]

    def __len__(self) -> int:
        return int(self.gdb_index.numel())

    @property
    def num_atoms(self) -> torch.Tensor:  # (M,)
        return self.ptr[1:] - self.ptr[:-1]

    def molecule(self, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions ``(n, 3)`` and type indices ``(n,)`` of molecule ``m``."""
        a, b = int(self.ptr[m]), int(self.ptr[m + 1])
        return self.positions[a:b], self.types[a:b]

    def molecules(self, rows) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [self.molecule(int(m)) for m in rows]


def _qm9pack_folder() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "QM9 comes from the `qm9pack` package: `pip install qm9pack` (or `pip install compscope[generate]`)"
        )
    # qm9pack's own get_data() needs pkg_resources; we read its CSV files directly.
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _parse_floats(strings) -> np.ndarray:
    joined = ",".join(strings).replace("[", "").replace("]", "")
    return np.array(joined.split(","), dtype=np.float64)


def convert_qm9pack() -> QM9:
    """Parse the ``qm9pack`` CSV files into a :class:`QM9` (about 10 s)."""
    import pandas as pd

    folder = _qm9pack_folder()
    cols = ["Index", "SMILES", "N_atoms", "Elements", "XYZ_Ang"] + [c for c, _, _ in PROPERTIES.values()]
    parts = [pd.read_csv(folder / f"qm9_part{i}.csv", usecols=cols) for i in (1, 2, 3)]
    df = pd.concat(parts, ignore_index=True).sort_values("Index", kind="stable").reset_index(drop=True)
    if len(df) != N_QM9:
        raise ValueError(f"qm9pack gave {len(df)} molecules, expected {N_QM9}: reinstall qm9pack>=1.0")
    n_atoms = df["N_atoms"].to_numpy(np.int64)
    pos = _parse_floats(df["XYZ_Ang"]).reshape(-1, 3)
    sym = ",".join(df["Elements"]).replace("[", "").replace("]", "").replace("'", "").split(",")
    types = np.array([_SYMBOL_TO_INDEX[s.strip()] for s in sym], dtype=np.int64)
    if pos.shape[0] != n_atoms.sum() or types.shape[0] != n_atoms.sum():
        raise ValueError("qm9pack: atom counts disagree with coordinates; the installed CSV files are corrupt")
    ptr = np.concatenate([[0], np.cumsum(n_atoms)])
    props = {
        name: torch.from_numpy(df[col].to_numpy(np.float64) * factor) for name, (col, factor, _) in PROPERTIES.items()
    }
    return QM9(
        positions=torch.from_numpy(pos),
        types=torch.from_numpy(types),
        ptr=torch.from_numpy(ptr),
        gdb_index=torch.from_numpy(df["Index"].to_numpy(np.int64) - 1),
        smiles=df["SMILES"].tolist(),
        properties=props,
    )


def load_qm9(path: str | os.PathLike | None = None, rebuild: bool = False) -> QM9:
    """Load QM9 from the cached tensor file, converting from ``qm9pack`` the first time.

    Args:
        path: data directory (default: ``compscope.data.data_dir()``); the cache is ``<path>/qm9/``.
        rebuild: convert again even if the cache exists.
    """
    from compscope.data import data_dir

    cache = data_dir(path) / "qm9" / CACHE_NAME
    if cache.exists() and not rebuild:
        d = torch.load(cache, weights_only=False)
        return QM9(**d)
    log.info("converting qm9pack CSV -> %s (once)", cache)
    q = convert_qm9pack()
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".tmp{os.getpid()}")
        torch.save(q.__dict__, tmp)
        os.replace(tmp, cache)
    except OSError as e:  # read-only data dir: still usable, just not cached
        log.warning("could not cache QM9 at %s (%s); set COMPSCOPE_DATA to a writable directory", cache, e)
    return q


def edm_splits(gdb_index: torch.Tensor | np.ndarray | None = None) -> dict[str, np.ndarray]:
    """EDM/Cormorant QM9 splits as row indices into the GDB-9-sorted :class:`QM9` tensors.

    Also returns ``first_half`` / ``second_half``: EDM's seed-42 halves of train used by conditional runs
    (``second_half`` trains the generator, ``first_half`` the property classifier).
    """
    rng = np.random.RandomState(0)  # == np.random.seed(0); np.random.permutation(...)
    perm = rng.permutation(N_QM9)
    train, valid, test = np.split(perm, [N_TRAIN, N_TRAIN + N_VALID])
    half = np.random.RandomState(42).permutation(N_TRAIN)
    out = {
        "train": train, "valid": valid, "test": test,
        "first_half": train[half[: N_TRAIN // 2]], "second_half": train[half[N_TRAIN // 2:]],
    }
    if gdb_index is not None:  # rows are positions in the sorted included-index list
        assert len(gdb_index) == N_QM9
    return out
