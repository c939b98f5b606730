"""Error types of the search engine; every message says what to do about it."""

from __future__ import annotations

from compscope.errors import CompscopeError


class SearchError(CompscopeError, ValueError):
    """Base class: bad input to the search engine (maps to HTTP 4xx in the REST API)."""


class QueryError(SearchError):
    """The query itself is unusable: invalid/empty SMILES or SMARTS, bad k/limit, bad filter."""


class IndexFormatError(SearchError):
    """The index path is not a (complete) compscope search index: foreign, truncated or from a newer version."""


class FingerprintMismatchError(SearchError):
    """A query (or a shard) uses fingerprint settings other than those the index was built with."""


class InputFileError(SearchError):
    """The molecule file given to ``build``/``append`` is not a SMILES/CSV file we can read."""


class BuildInterrupted(CompscopeError):
    """A build/append was stopped by SIGTERM or SIGINT (Ctrl-C); its workers are stopped and every finished chunk
    is kept in the checkpoint. ``exit_code`` is the shell's ``128 + signal number`` (143 for SIGTERM, 130 for
    Ctrl-C)."""

    def __init__(self, *args: object, signum: int, hint: str | None = None) -> None:
        super().__init__(*args, hint=hint)
        self.signum = signum
        self.exit_code = 128 + signum
