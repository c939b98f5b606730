"""compscope.search: a chemical-space search engine.

Similarity (Tanimoto / Dice / Tversky, threshold and exact top-k with BitBound pruning, numba popcount
kernels), substructure (pattern-fingerprint and count screens, bulk verification in RDKit's C++
SubstructLibrary, paging, CPU-time limits, count mode; ``substructure_query`` reads a query the way it does),
exact match (canonical SMILES / InChIKey) and property filters on a memory-mapped ``.csi`` index;
a FastAPI REST app with a web page (JSME structure editor, highlighted matches, CSV/SDF export);
Ray shards with an exact scatter-gather merge.

Importing this package does not import torch, RDKit, numba or Ray; those load on first use.
"""

from __future__ import annotations

from typing import Any

from ._errors import (
    BuildInterrupted,
    FingerprintMismatchError,
    IndexFormatError,
    InputFileError,
    QueryError,
    SearchError,
)
from ._fingerprints import FingerprintSpec

__all__ = [
    "SearchError", "QueryError", "BuildInterrupted", "IndexFormatError", "FingerprintMismatchError", "InputFileError",
    "FingerprintSpec", "SearchIndex", "SearchResult", "build_index", "append_index", "BuildReport",
    "ShardedIndex", "split_index", "create_app", "serve", "PROPERTIES", "Fingerprinter", "substructure_query",
    "EDITOR", "find_editor", "install_editor", "mol_features", "molecule_properties", "pattern_fingerprints",
]

_LAZY = {
    "SearchIndex": "._index", "SearchResult": "._index", "build_index": "._build", "append_index": "._build",
    "BuildReport": "._build", "ShardedIndex": "._shards", "split_index": "._shards", "create_app": "._api",
    "serve": "._api", "PROPERTIES": "._molecules", "Fingerprinter": "._fingerprints",
    "EDITOR": "._editor", "find_editor": "._editor", "install_editor": "._editor",
    "substructure_query": "._query", "mol_features": "._molecules", "molecule_properties": "._molecules",
    "pattern_fingerprints": "._fingerprints",
}


def __getattr__(name: str) -> Any:  # lazy re-exports keep `import compscope.search` light
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
