"""Test data of the search area: the committed MOSES fixture (3000 molecules) and 20 queries."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "search"
LIBRARY = FIXTURES / "moses_3k.smi.gz"  # first 3000 SMILES of MOSES train, ids M00000...
QUERIES = FIXTURES / "queries.smi"  # 20 SMILES sampled (seed 0) from MOSES test


def library_records() -> list[tuple[str, str]]:
    with gzip.open(LIBRARY, "rt") as fh:
        next(fh)
        return [tuple(ln.split()) for ln in fh]


def queries() -> list[str]:
    return QUERIES.read_text().split()


def assert_same_index(run: Path, ref: Path) -> None:
    """Two index folders are the same build: equal headers, the same files, equal arrays (dtype included) and
    equal bytes of every other file."""
    assert json.loads((run / "header.json").read_text()) == json.loads((ref / "header.json").read_text())
    names = sorted(f.name for f in ref.iterdir())
    assert sorted(f.name for f in run.iterdir()) == names
    for name in names:
        if name.endswith(".npy"):
            a, b = np.load(run / name), np.load(ref / name)
            assert a.dtype == b.dtype and np.array_equal(a, b), name
        else:
            assert (run / name).read_bytes() == (ref / name).read_bytes(), name
