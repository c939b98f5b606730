"""Provenance of ``alanine-dipeptide.pdb``: how the committed topology/coordinates were made.

Run ``python -m compscope.md.reference._build_pdb`` (needs RDKit) to regenerate it. The molecule is
ACE-ALA-NME (L-alanine) from SMILES; RDKit embeds it (ETKDG, seed 42) and relaxes it with MMFF94, then
atoms get the PDB names that OpenMM's amber14 templates expect. Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

PDB = Path(__file__).parents[2] / "integrations" / "alanine-dipeptide.pdb"  # shared: integrations.openmm_systems

# atom-map number -> (residue name, residue number, atom name)
_HEAVY = {
    1: ("ACE", 1, "CH3"), 2: ("ACE", 1, "C"), 3: ("ACE", 1, "O"),
    4: ("ALA", 2, "N"), 5: ("ALA", 2, "CA"), 6: ("ALA", 2, "CB"), 7: ("ALA", 2, "C"), 8: ("ALA", 2, "O"),
    9: ("NME", 3, "N"), 10: ("NME", 3, "CH3"),
}
# hydrogens named after their heavy atom
_HYD = {1: ["HH31", "HH32", "HH33"], 4: ["H"], 5: ["HA"], 6: ["HB1", "HB2", "HB3"], 9: ["H"],
        10: ["HH31", "HH32", "HH33"]}
SMILES = "[CH3:1][C:2](=[O:3])[NH:4][C@@H:5]([CH3:6])[C:7](=[O:8])[NH:9][CH3:10]"


def build(path: Path = PDB) -> Path:
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles(SMILES))
    AllChem.EmbedMolecule(mol, randomSeed=42)
    AllChem.MMFFOptimizeMolecule(mol, maxIters=2000)
    pos = mol.GetConformer().GetPositions()
    rows = []
    for a in mol.GetAtoms():
        m = a.GetAtomMapNum()
        if m:
            rows.append((_HEAVY[m], a.GetIdx(), a.GetSymbol()))
    for a in mol.GetAtoms():
        m = a.GetAtomMapNum()
        if m:
            hs = [n for n in a.GetNeighbors() if n.GetSymbol() == "H"]
            for name, h in zip(_HYD.get(m, []), hs):
                rows.append(((_HEAVY[m][0], _HEAVY[m][1], name), h.GetIdx(), "H"))
    rows.sort(key=lambda r: (r[0][1], r[1]))  # by residue, then RDKit order
    lines = ["REMARK   1 ACE-ALA-NME built by compscope.md.reference._build_pdb (RDKit ETKDG seed 42 + MMFF94)"]
    for k, ((res, resid, name), idx, el) in enumerate(rows, start=1):
        x, y, z = pos[idx]
        nm = f" {name:<3s}" if len(name) < 4 else name
        xyz = f"{x:8.3f}{y:8.3f}{z:8.3f}"
        lines.append(f"ATOM  {k:5d} {nm:4s} {res:3s} A{resid:4d}    {xyz}  1.00  0.00          {el:>2s}")
    lines += ["TER", "END"]
    path.write_text("\n".join(lines) + "\n")
    return path


if __name__ == "__main__":
    print(build())
