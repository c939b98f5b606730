"""Bulk substructure verification in compiled code: RDKit's C++ ``SubstructLibrary`` over the index's molecules.

The numba screens (``_kernels.py``) return blocks of candidate rows; :class:`MolStore` verifies a whole block in
one C++ call: a ``SubstructLibrary`` over a shared holder of the index's molecules (pickled molecules made from
the canonical SMILES parsed in C++ without re-sanitising, see below) with its *search order* set to the candidate
rows, so RDKit matches only those rows and no Python code runs per candidate. One match per molecule is asked for
(:func:`match_parameters`). With ``n_threads > 1`` a block is split into contiguous parts
matched on a thread pool (the C++ call releases the GIL), and each part reports the CPU time of its own thread,
so a query's CPU time can be limited however loaded the machine is.

Parsing without sanitisation gives the same atoms, bonds, aromaticity, charges, H counts and rings as the
build's sanitised molecules, but no radical electrons and no hybridisation. So rows flagged at build time as
having radicals (``molfeat`` flags), and every row for queries with the hybridisation primitive ``^``, are
matched in a second holder that sanitises (``CachedSmilesMolHolder``, about 7x slower per molecule): hit sets stay
identical to a plain ``Chem.MolFromSmiles(s).HasSubstructMatch(q)`` scan.

The holder is built once per index (lazily, on the first substructure query) and shared by all queries and
threads; each query makes its own light ``SubstructLibrary`` view (a few µs), so concurrent
queries never share a search order.

**Pickled molecules, hot rows.** Materialising a molecule from its SMILES costs most of a verification (about
20 µs against 7-10 µs for the match itself). So when the store is built (once per index, on the first
substructure query) every row's molecule is made once from the trusted SMILES and kept as an RDKit binary pickle
in a ``CachedMolHolder`` (about 320 bytes per molecule, 320 MB per 1M; unpickling costs about 10 µs, so a
verification costs ~17 µs instead of ~28 µs); the SMILES holder is then dropped. This one-off costs about 38 µs
per molecule (parse + pickle); ``pickled=False`` keeps the SMILES holder instead (about 1 µs per molecule).
The first ``hot_rows`` rows of the index, the ones first pages of common queries verify (hits come in index
order, small molecules first), are also kept as parsed molecules in a ``MolHolder`` (~7 µs per verification;
about 7 kB per molecule, so 32,768 rows take ~230 MB). Both are filled with the very
molecules the trusted holder makes, so matches are identical (tested against a plain RDKit scan).
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time

import numpy as np

HOT_ROWS = 1 << 15
"""Default number of leading index rows kept as parsed molecules (see the module docstring)."""


def match_parameters():
    """The matching rules of a plain ``mol.HasSubstructMatch(query)`` (chirality ignored, recursion on).

    ``maxMatches=1``, ``uniquify=False``: a hit needs one match. ``SubstructLibrary``'s defaults (``maxMatches``
    1000, uniquified) enumerate every match of every hit before moving on, which costs 2-7x more per hit for
    symmetric queries (ring systems, benzene: every automorphism of the query is a match), for the same hit set.
    """
    from rdkit import Chem

    p = Chem.SubstructMatchParameters()
    p.maxMatches = 1
    p.uniquify = False
    return p


class MolStore:
    """Molecules of one index for RDKit's C++ matcher.

    Args:
        blob, off: the index's canonical SMILES (``smiles_blob``, ``smiles_off``).
        special: sorted rows that must be matched on the sanitising path (molecules with radicals).
        hot_rows: the first rows also kept as parsed molecules (0: none).
        pickled: keep every row as a binary pickle (faster verification, ~300 bytes per molecule) instead of
            its SMILES.
    """

    def __init__(self, blob: np.ndarray, off: np.ndarray, special: np.ndarray | None = None,
                 hot_rows: int = HOT_ROWS, pickled: bool = True):
        self._blob, self._off = blob, off
        self.pickled = bool(pickled)
        self.hot_rows = max(0, min(int(hot_rows), len(off) - 1))
        self._hot = None
        self.special = np.zeros(0, np.int64) if special is None else np.asarray(special, np.int64)
        self._holders: dict[bool, object] = {}
        self._lock = threading.Lock()
        self._pool: cf.ThreadPoolExecutor | None = None
        self._pool_size = 0

    def holder(self, sanitize: bool = False):
        """The shared holder of pickled molecules (or, with ``sanitize``, the sanitising SMILES holder), built on
        first use."""
        h = self._holders.get(sanitize)
        if h is None:
            with self._lock:
                h = self._holders.get(sanitize)
                if h is None:
                    from rdkit.Chem import rdSubstructLibrary as SL

                    src = SL.CachedSmilesMolHolder() if sanitize else SL.CachedTrustedSmilesMolHolder()
                    data = bytes(np.asarray(self._blob))  # one copy; the holder keeps its own strings
                    off = np.asarray(self._off).tolist()
                    add = src.AddSmiles
                    for i in range(len(off) - 1):  # once per index, not per query
                        add(data[off[i] : off[i + 1]].decode())
                    h = src
                    if not sanitize and self.pickled:
                        h = self._pickle(src, len(off) - 1)
                    elif not sanitize and self.hot_rows:
                        self._hot = self._hot_holder(src.GetMol(i) for i in range(self.hot_rows))
                    self._holders[sanitize] = h
        return h

    def _hot_holder(self, mols):
        from rdkit.Chem import rdSubstructLibrary as SL

        hot = SL.MolHolder()
        for m in mols:
            hot.AddMol(m)
        return hot

    def _pickle(self, trusted, n: int):
        """Every row's molecule from ``trusted`` as a binary pickle (and the first ``hot_rows`` parsed)."""
        from rdkit.Chem import rdSubstructLibrary as SL

        warm, get = SL.CachedMolHolder(), trusted.GetMol
        add = warm.AddBinary
        hot = SL.MolHolder() if self.hot_rows else None
        for i in range(n):  # once per index (~35 µs per molecule: the parse and the pickle)
            m = get(i)
            add(m.ToBinary())
            if i < self.hot_rows:
                hot.AddMol(m)
        self._hot = hot
        return warm

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
        holder = self.holder(sanitize)
        n_hot = 0 if sanitize or self._hot is None else int(np.searchsorted(rows, self.hot_rows))
        parts = []
        if n_hot:  # rows are ascending: the hot rows come first
            lib = SL.SubstructLibrary(self._hot)
            lib.SetSearchOrder(rows[:n_hot].tolist())
            parts.append(lib.GetMatches(qmol, 0, n_hot, params, 1, max_hits))
        left = max_hits - len(parts[0]) if parts and max_hits > 0 else max_hits
        if n_hot < len(rows) and left != 0:
            lib = SL.SubstructLibrary(holder)
            lib.SetSearchOrder(rows[n_hot:].tolist())
            parts.append(lib.GetMatches(qmol, 0, len(rows) - n_hot, params, 1, left))
        got = [i for p in parts for i in p]
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
