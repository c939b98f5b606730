"""What the web page needs beyond the query endpoints: depictions with the matched atoms highlighted, hit export
as CSV or SDF, and the structure editor's static files.

Kept apart from :mod:`._api` so the REST endpoints stay one screen long; everything here is plain functions that
``create_app`` wires to routes.
"""

from __future__ import annotations

import csv
import functools
import io
import mimetypes
from pathlib import Path
from typing import Any

from ._errors import QueryError

__all__ = ["HIGHLIGHT_RGB", "HIGHLIGHT_HEX", "depict_svg", "highlight_atoms", "export_hits", "editor_file"]

HIGHLIGHT_RGB = (1.0, 140 / 255, 0.0)  # orange: readable on white and distinct from RDKit's element colours
HIGHLIGHT_HEX = "#FF8C00"
MAX_HIGHLIGHT_MATCHES = 64


def highlight_atoms(mol, query) -> tuple[list[int], list[int]]:
    """Atom and bond indices of ``mol`` covered by the substructure matches of ``query`` (a parsed query mol)."""
    atoms: set[int] = set()
    bonds: set[int] = set()
    for match in mol.GetSubstructMatches(query, uniquify=True, maxMatches=MAX_HIGHLIGHT_MATCHES, useChirality=True):
        atoms.update(match)
        for qb in query.GetBonds():
            b = mol.GetBondBetweenAtoms(match[qb.GetBeginAtomIdx()], match[qb.GetEndAtomIdx()])
            if b is not None:
                bonds.add(b.GetIdx())
    return sorted(atoms), sorted(bonds)


@functools.lru_cache(maxsize=4096)
def depict_svg(smiles: str, width: int, height: int, highlight: str | None = None, syntax: str = "auto") -> str:
    """RDKit SVG of a SMILES; with ``highlight`` (a substructure query) its matched atoms and bonds are coloured.

    A highlight query that matches nothing draws the plain molecule (a similarity hit need not contain the
    query); an invalid one raises :class:`QueryError`.
    """
    from rdkit.Chem import rdDepictor
    from rdkit.Chem.Draw import rdMolDraw2D

    from ._query import mol_from_smiles, substructure_query

    mol = mol_from_smiles(smiles)
    rdDepictor.Compute2DCoords(mol)
    atoms: list[int] = []
    bonds: list[int] = []
    if highlight:
        atoms, bonds = highlight_atoms(mol, substructure_query(highlight, syntax))
    d = rdMolDraw2D.MolDraw2DSVG(width, height)
    opts = d.drawOptions()
    opts.clearBackground = False
    opts.setHighlightColour(HIGHLIGHT_RGB)
    d.DrawMolecule(mol, highlightAtoms=atoms, highlightBonds=bonds)
    d.FinishDrawing()
    return d.GetDrawingText()


def export_hits(hits: list[dict[str, Any]], fmt: str) -> tuple[bytes, str, str]:
    """Hits (dicts with ``id``, ``smiles`` and optional ``score`` / properties) as a CSV or SDF file.

    Returns ``(content, media type, file name)``. SDF records carry 2D coordinates and every hit field as a
    data item; a SMILES RDKit cannot parse again (it came from the index, so this means a corrupt index) raises.
    """
    fmt = fmt.lower()
    if fmt not in ("csv", "sdf"):
        raise QueryError(f"export format must be csv or sdf, got {fmt!r}")
    cols: dict[str, None] = {"id": None, "smiles": None}
    for h in hits:
        cols.update(dict.fromkeys(h))
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(cols), lineterminator="\n")
        w.writeheader()
        w.writerows(hits)
        return buf.getvalue().encode(), "text/csv", "hits.csv"
    from rdkit import Chem
    from rdkit.Chem import rdDepictor

    from ._query import mol_from_smiles

    buf = io.StringIO()
    with Chem.SDWriter(buf) as w:
        for h in hits:
            mol = mol_from_smiles(h["smiles"])
            rdDepictor.Compute2DCoords(mol)
            mol.SetProp("_Name", str(h["id"]))
            for k in cols:
                if k != "id" and h.get(k) is not None:
                    mol.SetProp(k, str(h[k]))
            w.write(mol)
    return buf.getvalue().encode(), "chemical/x-mdl-sdfile", "hits.sdf"


def editor_file(root: Path | None, name: str) -> tuple[Path, str] | None:
    """The file ``name`` inside the installed editor folder ``root`` and its media type; None if absent or if
    ``name`` points outside the folder."""
    if root is None:
        return None
    root = root.resolve()
    f = (root / name).resolve()
    if root not in f.parents or not f.is_file():
        return None
    media = mimetypes.guess_type(f.name)[0] or "application/octet-stream"
    if f.parent.name == "deferredjs":  # GWT's code splits: JavaScript without an extension
        media = "text/javascript"
    return f, media
