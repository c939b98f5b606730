"""Bulk substructure verification in compiled code: RDKit's C++ ``SubstructLibrary`` over the index's molecules.

The numba screens (``_kernels.py``) return blocks of candidate rows; :class:`MolStore` verifies a whole block in
one C++ call: a ``SubstructLibrary`` over a shared ``CachedTrustedSmilesMolHolder`` (the index's canonical SMILES,
parsed in C++ without re-sanitising) with its *search order* set to the candidate rows, so RDKit matches only
those rows and no Python code runs per candidate. With ``n_threads > 1`` a block is split into contiguous parts
matched on a thread pool (the C++ call releases the GIL), and each part reports the CPU time of its own thread,
so a query's CPU time can be limited however loaded the machine is.

Parsing without sanitisation gives the same atoms, bonds, aromaticity, charges, H counts and rings as the
build's sanitised molecules, but no radical electrons and no hybridisation. So rows flagged at build time as
having radicals (``molfeat`` flags), and every row for queries with the hybridisation primitive ``^``, are
matched in a second holder that sanitises (``CachedSmilesMolHolder``, about 7x slower per molecule): hit sets stay
identical to a plain ``Chem.MolFromSmiles(s).HasSubstructMatch(q)`` scan.

The holder is built once per index (about 1 µs per molecule, lazily, on the first substructure query) and shared
by all queries and threads; each query makes its own light ``SubstructLibrary`` view (a few µs), so concurrent
queries never share a search order.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time

import numpy as np


def match_parameters():
    """The matching rules of a plain ``mol.HasSubstructMatch(query)`` (chirality ignored, recursion on)."""
    from rdkit import Chem

    return Chem.SubstructMatchParameters()


class MolStore:
    """Molecules of one index for RDKit's C++ matcher.

    Args:
        blob, off: the index's canonical SMILES (``smiles_blob``, ``smiles_off``).
        special: sorted rows that must be matched on the sanitising path (molecules with radicals).
    """

    def __init__(self, blob: np.ndarray, off: np.ndarray, special: np.ndarray | None = None):
        self._blob, self._off = blob, off
        self.special = np.zeros(0, np.int64) if special is None else np.asarray(special, np.int64)
        self._holders: dict[bool, object] = {}
        self._lock = threading.Lock()
        self._pool: cf.ThreadPoolExecutor | None = None
        self._pool_size = 0

    def holder(self, sanitize: bool = False):
        """The shared trusted-SMILES holder (or, with ``sanitize``, the sanitising one), built on first use."""
        h = self._holders.get(sanitize)
        if h is None:
            with self._lock:
                h = self._holders.get(sanitize)
                if h is None:
                    from rdkit.Chem import rdSubstructLibrary as SL

                    h = SL.CachedSmilesMolHolder() if sanitize else SL.CachedTrustedSmilesMolHolder()
                    data = bytes(np.asarray(self._blob))  # one copy; the holder keeps its own strings
                    off = np.asarray(self._off).tolist()
                    add = h.AddSmiles
                    for i in range(len(off) - 1):  # once per index, not per query
                        add(data[off[i] : off[i + 1]].decode())
                    self._holders[sanitize] = h
        return h

    def _executor(self, n: int) -> cf.ThreadPoolExecutor:
        with self._lock:
            if self._pool is None or self._pool_size < n:
                if self._pool is not None:
                    self._pool.shutdown(wait=False)
                self._pool, self._pool_size = cf.ThreadPoolExecutor(n, thread_name_prefix="substruct"), n
            return self._pool

    def _match(self, qmol, params, rows: np.ndarray, max_hits: int, sanitize: bool = False
               ) -> tuple[np.ndarray, float, int]:
        """Match ``rows`` in order on this thread; returns (hit rows, thread CPU seconds, rows verified)."""
        from rdkit.Chem import rdSubstructLibrary as SL

        c0 = time.thread_time()
        lib = SL.SubstructLibrary(self.holder(sanitize))
        lib.SetSearchOrder(rows.tolist())
        got = lib.GetMatches(qmol, 0, len(rows), params, 1, max_hits)
        hits = np.fromiter(got, dtype=np.int64, count=len(got))
        n_done = len(rows)
        if max_hits > 0 and len(hits) >= max_hits:  # stopped at the last hit
            n_done = int(np.searchsorted(rows, hits[-1])) + 1
        return hits, time.thread_time() - c0, n_done

    def verify(self, qmol, params, rows: np.ndarray, max_hits: int | None = None, n_threads: int = 1,
               sanitize_all: bool = False) -> tuple[np.ndarray, float, float, int]:
        """Rows (sorted ascending) that contain ``qmol``; the first ``max_hits`` of them if given.

        ``sanitize_all``: match every row on the sanitising path (queries with hybridisation primitives).

        Returns:
            (hit rows ascending, CPU seconds of the calling thread, CPU seconds of worker threads, rows verified).
        """
        mh = -1 if max_hits is None else int(max_hits)
        if not sanitize_all and len(self.special):
            sp = np.isin(rows, self.special)
            if sp.any():  # each part's first max_hits hits contain the block's first max_hits
                h1, c1, w1, n1 = self.verify(qmol, params, rows[~sp], max_hits, n_threads)
                h2, c2, n2 = self._match(qmol, params, rows[sp], mh, sanitize=True)
                hits = np.sort(np.concatenate([h1, h2]))
                return (hits[:mh] if mh > 0 else hits), c1 + c2, w1, n1 + n2
        self.holder(sanitize_all)  # built outside the CPU accounting of worker threads
        if n_threads <= 1 or len(rows) < 2 * n_threads:
            hits, cpu, n_done = self._match(qmol, params, rows, mh, sanitize_all)
            return hits, cpu, 0.0, n_done
        parts = np.array_split(rows, n_threads)
        ex = self._executor(n_threads)
        # each part returns its own first max_hits hits: the first max_hits of the block are among them
        res = list(ex.map(lambda p: self._match(qmol, params, p, mh, sanitize_all), parts))
        hits = np.sort(np.concatenate([r[0] for r in res]))
        if mh > 0:
            hits = hits[:mh]
        return hits, 0.0, sum(r[1] for r in res), sum(r[2] for r in res)
