"""Per-molecule work of an index build: parse, canonicalise, fingerprint, properties.

This module is what the build worker processes import, so it stays light (RDKit + numpy only).
"""

from __future__ import annotations

import hashlib
import re

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


molecule_properties = properties  # the public name (``compscope.search.molecule_properties``)

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


_FORMULA = re.compile(r"([A-Z][a-z]?)(\d*)")
_PATTERNS: dict[str, object] = {}


def _pattern(smarts: str):
    p = _PATTERNS.get(smarts)
    if p is None:
        from rdkit import Chem

        p = _PATTERNS[smarts] = Chem.MolFromSmarts(smarts)
    return p


def _symbol_columns() -> dict[str, int]:
    from rdkit import Chem

    pt = Chem.GetPeriodicTable()
    return {pt.GetElementSymbol(z): c for z, c in ELEMENT_COLUMN.items()}


_SYMBOL_COLUMN: dict[str, int] = {}


def _merge_systems(items) -> list[tuple[int, int]]:
    """``(atoms, cycle rank)`` of each group of ``(atoms, bonds)`` items that share atoms (a connected part)."""
    groups: list[tuple[set, set]] = []
    for atoms, bonds in items:
        atoms, bonds = set(atoms), set(bonds)
        keep = []
        for g in groups:
            if g[0].isdisjoint(atoms):
                keep.append(g)
            else:
                atoms |= g[0]
                bonds |= g[1]
        keep.append((atoms, bonds))
        groups = keep
    return [(len(a), len(b) - len(a) + 1) for a, b in groups]


def mol_features(mol, smiles: str | None = None) -> list[int]:
    """The :data:`MOLFEAT` of one sanitised molecule (uncapped).

    ``aromatic_system_atoms``: atoms of the largest component of the ring bonds whose two atoms are aromatic.
    ``smiles``: the SMILES the molecule was parsed from; radicals come only from bracket atoms, so without ``[``
    the per-atom radical check is skipped.

    Computed from a few C++ calls per molecule (molecular formula, aromatic-atom matches, ring info) instead of
    Python loops over atoms and bonds: ring bonds are the union of the ring info's bond rings (RDKit's ring-bond
    flag means "in a perceived ring"), bond k of a ring joins its atoms k and k+1, and a connected part of the
    ring bonds is a union of rings that share atoms. ``tests/search/test_build.py`` checks equality with the
    per-atom/per-bond loop.
    """
    if not _SYMBOL_COLUMN:
        _SYMBOL_COLUMN.update(_symbol_columns())
    from rdkit.Chem import rdMolDescriptors

    f = [0] * len(MOLFEAT)
    n = mol.GetNumAtoms()
    f[1] = n
    known = 0
    for sym, cnt in _FORMULA.findall(rdMolDescriptors.CalcMolFormula(mol)):
        c = _SYMBOL_COLUMN.get(sym)
        if c is not None:
            k = int(cnt) if cnt else 1
            f[c] = k
            known += k
    f[OTHER_COLUMN] = n - known  # other elements, explicit H atoms and dummy atoms
    arom = mol.GetSubstructMatches(_pattern("a"), uniquify=False, maxMatches=1 << 30)
    f[4] = len(arom)
    if arom:
        f[18] = len(mol.GetSubstructMatches(_pattern("n"), uniquify=False, maxMatches=1 << 30))
    if (smiles is None or "[" in smiles) and any(a.GetNumRadicalElectrons() for a in mol.GetAtoms()):
        f[0] |= FLAG_RADICAL
    ri = mol.GetRingInfo()
    arings = ri.AtomRings()
    if arings:
        brings = ri.BondRings()
        f[2] = len(set().union(*arings))
        f[3] = len(set().union(*brings))
        systems = _merge_systems(zip(arings, brings))
        f[5] = max(a for a, _ in systems)
        f[6] = max(r for _, r in systems)
        if arom:
            aset = {a[0] for a in arom}
            items = []
            for ar, br in zip(arings, brings):
                if aset.issuperset(ar):  # a ring of aromatic atoms: all its bonds qualify
                    items.append((ar, br))
                    continue
                m = len(ar)
                for k in range(m):
                    a, b = ar[k], ar[(k + 1) % m]
                    if a in aset and b in aset:
                        items.append(((a, b), (br[k],)))
            if items:
                f[17] = max(a for a, _ in _merge_systems(items))
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
            feats.append(mol_features(mol, smi))
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
