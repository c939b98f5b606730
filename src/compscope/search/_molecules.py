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
    mols, lines, ids, smis, keys, props, bad = [], [], [], [], [], [], []
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
    if with_props:
        out["props"] = np.asarray(props, dtype=np.float32).reshape(m, len(PROPERTIES))
    return out
