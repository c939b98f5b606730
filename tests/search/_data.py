"""Test data of the search area: the committed MOSES fixture (3000 molecules) and 20 queries."""

from __future__ import annotations

import gzip
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "search"
LIBRARY = FIXTURES / "moses_3k.smi.gz"  # first 3000 SMILES of MOSES train, ids M00000...
QUERIES = FIXTURES / "queries.smi"  # 20 SMILES sampled (seed 0) from MOSES test


def library_records() -> list[tuple[str, str]]:
    with gzip.open(LIBRARY, "rt") as fh:
        next(fh)
        return [tuple(ln.split()) for ln in fh]


def queries() -> list[str]:
    return QUERIES.read_text().split()
