"""Reading and writing generated molecules: SDF (with EDM bonds) and multi-frame xyz."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from compscope.errors import CompscopeError

from ._bonds import ELEMENTS
from .metrics import Molecule, bond_orders, pad_molecules, to_rdkit


class MoleculeFileError(CompscopeError, ValueError):
    """A molecule file that cannot be read; the message says what to fix."""


def write_xyz(molecules: Sequence[Molecule], path: str | Path, comments: Sequence[str] | None = None) -> Path:
    """Multi-frame xyz (Å)."""
    path = Path(path)
    lines = []
    for i, (x, t) in enumerate(molecules):
        lines.append(str(len(t)))
        lines.append(comments[i] if comments else f"generated {i}")
        for p, e in zip(np.asarray(x), np.asarray(t)):
            lines.append(f"{ELEMENTS[int(e)]} {p[0]:.6f} {p[1]:.6f} {p[2]:.6f}")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_sdf(molecules: Sequence[Molecule], path: str | Path, properties: dict[str, Sequence] | None = None) -> Path:
    """SDF with 3D coordinates and EDM's distance-based bonds (also for molecules RDKit cannot sanitise)."""
    from rdkit import Chem
    from rdkit.Geometry import Point3D

    path = Path(path)
    with Chem.SDWriter(str(path)) as w:
        w.SetKekulize(False)
        for i, (x, t) in enumerate(molecules):
            pos, typ, mask = pad_molecules([(x, t)])
            mol = to_rdkit(typ[0], bond_orders(pos, typ, mask)[0])
            mol.UpdatePropertyCache(strict=False)
            conf = Chem.Conformer(len(t))
            for k, p in enumerate(np.asarray(x, dtype=float)):
                conf.SetAtomPosition(k, Point3D(*p))
            mol.AddConformer(conf, assignId=True)
            m = mol.GetMol()
            m.SetProp("_Name", f"generated_{i}")
            for key, vals in (properties or {}).items():
                m.SetProp(key, str(vals[i]))
            w.write(m)
    return path


def _types(symbols: Sequence[str], where: str) -> np.ndarray:
    bad = sorted({s for s in symbols if s not in ELEMENTS})
    if bad:
        raise MoleculeFileError(f"{where}: elements {bad} are not QM9 elements {ELEMENTS}; the EDM metrics only "
                                "cover H, C, N, O, F")
    return np.array([ELEMENTS.index(s) for s in symbols], dtype=np.int64)


def read_molecules(path: str | Path) -> list[Molecule]:
    """Read ``.sdf`` or ``.xyz`` (multi-frame) into ``(positions (n, 3) Å, element indices (n,))``.

    Bonds stored in an SDF are ignored: the metrics re-derive them from distances, as EDM does.
    """
    path = Path(path)
    if not path.exists():
        raise MoleculeFileError(f"{path} not found; pass the .sdf or .xyz written by `compscope generate sample`")
    suffix = path.suffix.lower()
    out: list[Molecule] = []
    if suffix == ".sdf":
        from rdkit import Chem

        if not path.read_text(errors="replace").strip():
            raise MoleculeFileError(f"{path} contains no molecules")
        try:
            supplier = Chem.SDMolSupplier(str(path), sanitize=False, removeHs=False)
        except OSError as e:
            raise MoleculeFileError(f"{path}: RDKit cannot open it as SDF ({e})") from None
        for i, mol in enumerate(supplier):
            if mol is None or mol.GetNumConformers() == 0:
                raise MoleculeFileError(f"{path}: record {i + 1} is not a valid MOL block (check the counts line "
                                        "and atom block; every record must end with $$$$)")
            syms = [a.GetSymbol() for a in mol.GetAtoms()]
            out.append((mol.GetConformer().GetPositions(), _types(syms, f"{path} record {i + 1}")))
    elif suffix == ".xyz":
        lines = path.read_text().splitlines()
        i = 0
        while i < len(lines):
            if not lines[i].strip():
                i += 1
                continue
            try:
                n = int(lines[i].split()[0])
                block = [ln.split() for ln in lines[i + 2:i + 2 + n]]
                if len(block) != n or any(len(b) < 4 for b in block):
                    raise ValueError
                pos = np.array([[float(v) for v in b[1:4]] for b in block])
            except (ValueError, IndexError):
                raise MoleculeFileError(f"{path}: malformed xyz frame starting at line {i + 1}; each frame is "
                                        "'N', a comment line, then N lines 'Element x y z'") from None
            out.append((pos, _types([b[0] for b in block], f"{path} line {i + 1}")))
            i += 2 + n
    else:
        raise MoleculeFileError(f"{path}: unknown extension {suffix!r}; use .sdf or .xyz")
    if not out:
        raise MoleculeFileError(f"{path} contains no molecules")
    return out
