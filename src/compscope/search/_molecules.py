"""Per-molecule work of an index build: parse, canonicalise, fingerprint, properties.

This module is what the build worker processes import, so it stays light (RDKit + numpy only).
"""

from __future__ import annotations

import hashlib

import numpy as np

from ._fingerprints import PATTERN_BITS, Fingerprinter, FingerprintSpec, pattern_fingerprints

PROPERTIES = ("mw", "logp", "hba", "hbd", "tpsa", "rotb", "rings")
PROPERTY_HELP = {
    "mw": "average molecular weight (amu)",
    "logp": "Wildman-Crippen logP",
    "hba": "H-bond acceptors (RDKit CalcNumHBA)",
    "hbd": "H-bond donors (RDKit CalcNumHBD)",
    "tpsa": "topological polar surface area (Å^2)",
    "rotb": "rotatable bonds",
    "rings": "ring count",
}


def properties(mol) -> tuple[float, ...]:
    """The :data:`PROPERTIES` of one molecule, in that order."""
    from rdkit.Chem import rdMolDescriptors as D

    return (
        D._CalcMolWt(mol),
        D.CalcCrippenDescriptors(mol)[0],
        D.CalcNumHBA(mol),
        D.CalcNumHBD(mol),
        D.CalcTPSA(mol),
        D.CalcNumRotatableBonds(mol),
        D.CalcNumRings(mol),
    )


# per-molecule substructure-screen features (uint8 each, saturating at 255), column ``molfeat`` of the index:
# every feature except ``flags`` is a count that a substructure can only need fewer of (see _screens.py)
MOLFEAT = ("flags", "atoms", "ring_atoms", "ring_bonds", "aromatic_atoms", "ring_system_atoms", "ring_system_rank",
           "C", "N", "O", "S", "F", "Cl", "Br", "I", "P", "other", "aromatic_system_atoms", "aromatic_N")
FLAG_RADICAL = 1  # the molecule has radical electrons (verified on the sanitising path)
ELEMENT_COLUMN = {6: 7, 7: 8, 8: 9, 16: 10, 9: 11, 17: 12, 35: 13, 53: 14, 15: 15}
OTHER_COLUMN = 16


def ring_systems(n_atoms: int, ring_bonds: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``(atoms, cycle rank)`` of each connected component of the ring bonds (a fused/spiro/bridged ring system)."""
    parent = list(range(n_atoms))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in ring_bonds:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[ra] = rb
    atoms: dict[int, set] = {}
    edges: dict[int, int] = {}
    for a, b in ring_bonds:
        r = find(a)
        atoms.setdefault(r, set()).update((a, b))
        edges[r] = edges.get(r, 0) + 1
    return [(len(atoms[r]), edges[r] - len(atoms[r]) + 1) for r in atoms]


def mol_features(mol) -> list[int]:
    """The :data:`MOLFEAT` of one sanitised molecule (uncapped).

    ``aromatic_system_atoms``: atoms of the largest component of the ring bonds whose two atoms are aromatic.
    """
    f = [0] * len(MOLFEAT)
    ring_bonds, arom_bonds = [], []
    for b in mol.GetBonds():
        if b.IsInRing():
            ab = (b.GetBeginAtomIdx(), b.GetEndAtomIdx())
            ring_bonds.append(ab)
            if b.GetBeginAtom().GetIsAromatic() and b.GetEndAtom().GetIsAromatic():
                arom_bonds.append(ab)
    for a in mol.GetAtoms():
        z = a.GetAtomicNum()
        f[ELEMENT_COLUMN.get(z, OTHER_COLUMN)] += 1
        if a.GetNumRadicalElectrons():
            f[0] |= FLAG_RADICAL
        if a.GetIsAromatic():
            f[4] += 1
            f[18] += z == 7
    f[1] = mol.GetNumAtoms()
    f[2] = len({i for ab in ring_bonds for i in ab})
    f[3] = len(ring_bonds)
    systems = ring_systems(mol.GetNumAtoms(), ring_bonds)
    if systems:
        f[5] = max(a for a, _ in systems)
        f[6] = max(r for _, r in systems)
    if arom_bonds:
        f[17] = max(a for a, _ in ring_systems(mol.GetNumAtoms(), arom_bonds))
    return f


def smiles_hash(smiles: str) -> int:
    """Stable 63-bit hash of a canonical SMILES (exact-match lookup)."""
    return int.from_bytes(hashlib.blake2b(smiles.encode(), digest_size=8).digest(), "little") >> 1


def parse(smiles: str):
    """RDKit molecule or None; never raises, never logs."""
    from rdkit import Chem

    if not smiles or not smiles.strip():
        return None
    try:
        return Chem.MolFromSmiles(smiles)
    except Exception:  # noqa: BLE001 - RDKit raises odd types on odd input
        return None


def process_chunk(args: tuple) -> dict:
    """Process one chunk of records ``[(line, smiles, id), ...]`` (runs in a worker process).

    Returns a dict of arrays for the valid molecules plus the invalid records' line numbers/SMILES.
    """
    records, spec_dict, with_inchikey, with_pattern, with_props = args
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    spec = FingerprintSpec.from_dict(spec_dict)
    fper = Fingerprinter(spec)
    mols, lines, ids, smis, keys, props, feats, bad = [], [], [], [], [], [], [], []
    for line, smi, mid in records:
        mol = parse(smi)
        if mol is None or mol.GetNumAtoms() == 0:
            bad.append((line, smi[:200]))
            continue
        mols.append(mol)
        lines.append(line)
        ids.append(mid)
        smis.append(Chem.MolToSmiles(mol))
        if with_inchikey:
            try:
                keys.append(Chem.MolToInchiKey(mol) or "")
            except Exception:  # noqa: BLE001
                keys.append("")
        if with_props:
            props.append(properties(mol))
        if with_pattern:
            feats.append(mol_features(mol))
    m = len(mols)
    out = {
        "lines": np.asarray(lines, dtype=np.int64),
        "ids": ids,
        "smiles": smis,
        "fps": fper.packed(mols) if m else np.zeros((0, spec.nwords), np.uint64),
        "invalid": bad,
    }
    if with_inchikey:
        out["inchikey"] = np.asarray(keys, dtype="S27") if m else np.zeros(0, "S27")
    if with_pattern:
        out["pattern"] = pattern_fingerprints(mols) if m else np.zeros((0, PATTERN_BITS // 64), np.uint64)
        out["molfeat"] = np.minimum(np.asarray(feats, dtype=np.int64).reshape(m, len(MOLFEAT)), 255).astype(np.uint8)
    if with_props:
        out["props"] = np.asarray(props, dtype=np.float32).reshape(m, len(PROPERTIES))
    return out
