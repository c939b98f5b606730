"""compscope.search: a chemical-space search engine.

Similarity (Tanimoto / Dice / Tversky, threshold and exact top-k with BitBound pruning, numba popcount
kernels), substructure (RDKit with a pattern-fingerprint screen, paging, time limits, count mode),
exact match (canonical SMILES / InChIKey) and property filters on a memory-mapped ``.csi`` index;
a FastAPI REST app with a web page (JSME structure editor, highlighted matches, CSV/SDF export);
Ray shards with an exact scatter-gather merge.

Importing this package does not import torch, RDKit, numba or Ray; those load on first use.
"""

from __future__ import annotations

from typing import Any

from ._errors import FingerprintMismatchError, IndexFormatError, InputFileError, QueryError, SearchError
from ._fingerprints import FingerprintSpec

__all__ = [
    "SearchError", "QueryError", "IndexFormatError", "FingerprintMismatchError", "InputFileError",
    "FingerprintSpec", "SearchIndex", "SearchResult", "build_index", "append_index", "BuildReport",
    "ShardedIndex", "split_index", "create_app", "serve", "PROPERTIES", "Fingerprinter",
    "EDITOR", "find_editor", "install_editor",
]

_LAZY = {
    "SearchIndex": "._index", "SearchResult": "._index", "build_index": "._build", "append_index": "._build",
    "BuildReport": "._build", "ShardedIndex": "._shards", "split_index": "._shards", "create_app": "._api",
    "serve": "._api", "PROPERTIES": "._molecules", "Fingerprinter": "._fingerprints",
    "EDITOR": "._editor", "find_editor": "._editor", "install_editor": "._editor",
}


def __getattr__(name: str) -> Any:  # lazy re-exports keep `import compscope.search` light
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
