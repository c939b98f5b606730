"""Query parsing: SMILES/SMARTS/fingerprints, property filters and limits, each with a clear error."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from ._errors import QueryError

MAX_K = 10_000  # largest top-k / page size the engine accepts
MAX_QUERY_CHARS = 2_000
INCHIKEY_RE = re.compile(r"^[A-Z]{14}-[A-Z]{10}-[A-Z]$")


def check_count(name: str, value: int, lo: int = 1, hi: int = MAX_K) -> int:
    """Validate k/limit/offset-like integers (``k=10**9`` gets a clear error, not an allocation)."""
    try:
        v = int(value)
    except (TypeError, ValueError) as exc:
        raise QueryError(f"{name} must be an integer, got {value!r}") from exc
    if v < lo or v > hi:
        raise QueryError(f"{name}={v} is out of range: use {lo} <= {name} <= {hi} (page with offset for more)")
    return v


def _check_text(text: Any, what: str) -> str:
    if not isinstance(text, str):
        raise QueryError(f"{what} query must be a string, got {type(text).__name__}")
    text = text.strip()
    if not text:
        raise QueryError(f"empty {what}: pass a molecule such as 'c1ccccc1'")
    if len(text) > MAX_QUERY_CHARS:
        raise QueryError(f"{what} of {len(text)} characters is too long (max {MAX_QUERY_CHARS})")
    return text


def mol_from_smiles(text: Any):
    """Sanitised RDKit molecule from SMILES, or :class:`QueryError` naming the problem."""
    from rdkit import Chem, RDLogger

    if isinstance(text, Chem.Mol):
        return text
    text = _check_text(text, "SMILES")
    RDLogger.DisableLog("rdApp.*")
    try:
        mol = Chem.MolFromSmiles(text)
    except Exception:  # noqa: BLE001
        mol = None
    if mol is None or mol.GetNumAtoms() == 0:
        raise QueryError(f"invalid SMILES {text[:80]!r}: RDKit cannot parse it; check brackets, ring closures "
                         "and valences (e.g. 'c1ccccc1O')")
    return mol


def substructure_query(text: Any, syntax: str = "auto"):
    """Query molecule for substructure search from SMARTS or SMILES.

    ``syntax="auto"`` reads the text as SMILES when it parses as SMILES, else as SMARTS; text with ``*`` atoms
    is read as SMARTS (a wildcard: a SMILES dummy atom would match only dummy atoms).
    """
    from rdkit import Chem, RDLogger

    if isinstance(text, Chem.Mol):
        return text
    if syntax not in ("auto", "smiles", "smarts"):
        raise QueryError(f"syntax must be auto, smiles or smarts, got {syntax!r}")
    text = _check_text(text, "SMARTS" if syntax == "smarts" else "SMILES/SMARTS")
    RDLogger.DisableLog("rdApp.*")
    mol = None
    if syntax == "smiles" or (syntax == "auto" and "*" not in text):
        try:
            mol = Chem.MolFromSmiles(text)
        except Exception:  # noqa: BLE001
            mol = None
    if mol is None and syntax in ("auto", "smarts"):
        try:
            mol = Chem.MolFromSmarts(text)
        except Exception:  # noqa: BLE001
            mol = None
    if mol is None or mol.GetNumAtoms() == 0:
        raise QueryError(f"invalid {'SMARTS' if syntax == 'smarts' else 'SMILES/SMARTS'} {text[:80]!r}: RDKit "
                         "cannot parse it; check brackets and ring closures (e.g. 'C(=O)[OX2H1]')")
    return mol


def parse_filters(filters: Any, names: list[str]) -> dict[str, tuple[float, float]]:
    """Normalise property filters to ``{name: (lo, hi)}``.

    Accepts a dict ``{"mw": (200, 400), "hbd": [None, 2]}`` or strings ``"mw=200..400"``,
    ``"hbd=..2"`` (a list of them, or one string separated by commas/semicolons).
    """
    if not filters:
        return {}
    if isinstance(filters, str):
        filters = [f for f in re.split(r"[;,]", filters) if f.strip()]
    if isinstance(filters, (list, tuple)):
        d = {}
        for f in filters:
            m = re.fullmatch(r"\s*(\w+)\s*=\s*([-+\d.eE]*)\s*\.\.\s*([-+\d.eE]*)\s*", str(f))
            if not m:
                raise QueryError(f"bad filter {f!r}: write name=lo..hi, e.g. mw=200..400 or hbd=..2")
            d[m.group(1)] = (m.group(2) or None, m.group(3) or None)
        filters = d
    if not isinstance(filters, dict):
        raise QueryError("filters must be a mapping name -> [lo, hi] or strings like 'mw=200..400'")
    out = {}
    for name, rng in filters.items():
        if name not in names:
            have = ", ".join(names) if names else "none (index built without properties)"
            raise QueryError(f"unknown property {name!r} in filter; available: {have}")
        try:
            lo, hi = rng
            lo = -np.inf if lo is None else float(lo)
            hi = np.inf if hi is None else float(hi)
        except (TypeError, ValueError) as exc:
            raise QueryError(f"filter {name}: give [lo, hi] numbers (null for open), got {rng!r}") from exc
        if np.isnan(lo) or np.isnan(hi) or lo > hi:
            raise QueryError(f"filter {name}: lower bound {lo} is above upper bound {hi}")
        out[name] = (lo, hi)
    return out
