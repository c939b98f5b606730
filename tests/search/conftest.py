"""Shared fixtures: one index built from the committed MOSES fixture (3000 molecules) per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from ._data import LIBRARY, library_records


@pytest.fixture(scope="session")
def index_path(tmp_path_factory) -> Path:
    from compscope.search import build_index

    out = tmp_path_factory.mktemp("search") / "lib.csi"
    build_index(LIBRARY, out, n_jobs=1, chunk_size=1000)
    return out


@pytest.fixture(scope="session")
def index(index_path):
    from compscope.search import SearchIndex

    return SearchIndex.open(index_path)


@pytest.fixture(scope="session")
def rdkit_mols():
    from rdkit import Chem

    return [Chem.MolFromSmiles(s) for s, _ in library_records()]
