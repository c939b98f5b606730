"""`SearchIndex`: a memory-mapped ``.csi`` index and every query on it."""

from __future__ import annotations

import concurrent.futures as cf
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import _kernels as K
from ._errors import QueryError
from ._fingerprints import Fingerprinter, FingerprintSpec, as_query_fingerprint
from ._format import open_arrays, read_header, unpack_strings
from ._molecules import FLAG_RADICAL, smiles_hash
from ._query import INCHIKEY_RE, MAX_K, check_count, mol_from_smiles, parse_filters, substructure_query
from ._screens import query_requirements
from ._verify import HOT_ROWS, MolStore, match_parameters

log = logging.getLogger(__name__)
_SCAN_ROWS = 1 << 17  # rows screened between two looks at the clock
_MAX_BLOCK = 1 << 16  # most candidates verified in one C++ call
_REQUIRED = ("fps", "fold", "bins", "rows", "smiles_blob", "smiles_off", "ids_blob", "ids_off", "smiles_hash",
             "smiles_hash_pos")


@dataclass
class SearchResult:
    """Hits of one query, best first (similarity) or in index order (substructure, exact).

    Attributes:
        kind: ``similarity`` | ``topk`` | ``substructure`` | ``exact`` | ``count``.
        positions: (H,) int64 rows of the index (internal; ``keys`` are stable across shards).
        keys: (H, 2) int64 ``(popcount, global row)`` per hit, the order used to merge shards.
        ids, smiles: molecule ids and canonical SMILES.
        scores: (H,) float32 similarity scores (None for substructure/exact).
        properties: name -> (H,) float32.
        partial: True if a time limit stopped the search before it finished.
        count: number of matches (count mode), else None.
        next_offset: offset of the next page of substructure hits, None if there is none.
    """

    kind: str
    positions: np.ndarray
    keys: np.ndarray
    ids: list[str]
    smiles: list[str]
    scores: np.ndarray | None = None
    properties: dict[str, np.ndarray] = field(default_factory=dict)
    partial: bool = False
    count: int | None = None
    next_offset: int | None = None
    elapsed_ms: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (used by the CLI and the REST API)."""
        hits = []
        for i in range(len(self.ids)):
            h: dict[str, Any] = {"id": self.ids[i], "smiles": self.smiles[i]}
            if self.scores is not None:
                h["score"] = round(float(self.scores[i]), 6)
            for k, v in self.properties.items():
                h[k] = round(float(v[i]), 3)
            hits.append(h)
        return {"kind": self.kind, "n_hits": len(hits), "hits": hits, "partial": self.partial,
                "count": self.count, "next_offset": self.next_offset, "elapsed_ms": round(self.elapsed_ms, 3),
                "stats": self.stats}


class QueryFingerprinter:
    """Fingerprints queries under an index's settings, one lazily built :class:`Fingerprinter` per index.

    A query is a SMILES, an RDKit Mol or a fingerprint; ``fingerprint`` (the settings the caller believes the index
    uses) is checked so that a mismatch raises :class:`FingerprintMismatchError` instead of comparing unlike bits.
    """

    def __init__(self, spec: FingerprintSpec):
        self.spec = spec
        self._fper: Fingerprinter | None = None

    def __call__(self, query: Any, fingerprint: FingerprintSpec | dict | None = None) -> np.ndarray:
        if fingerprint is not None:
            fs = FingerprintSpec.from_dict(fingerprint) if isinstance(fingerprint, dict) else fingerprint
            self.spec.check_same(fs)
        if isinstance(query, str) or type(query).__name__ == "Mol":
            if self._fper is None:
                self._fper = Fingerprinter(self.spec)
            return self._fper.packed([mol_from_smiles(query)])[0]
        return as_query_fingerprint(query, self.spec)


class SearchIndex:
    """A chemical-space index: similarity (threshold, top-k), substructure, exact match, filters.

    Open with :meth:`open`; build with :func:`compscope.search.build_index`.

    Examples:
        >>> idx = SearchIndex.open("lib.csi")  # doctest: +SKIP
        >>> idx.top_k("c1ccccc1C(=O)N", k=5).ids  # doctest: +SKIP
    """

    def __init__(self, path: str | Path, in_memory: bool = False, hot_rows: int = HOT_ROWS, pickled: bool = True):
        self.path = Path(path)
        self.hot_rows = int(hot_rows)
        self.pickled = bool(pickled)
        self.header = read_header(self.path)
        self.arrays = open_arrays(self.path, self.header, in_memory=in_memory)
        self.spec = FingerprintSpec.from_dict(self.header["fingerprint"])
        self.n = int(self.header["n"])
        self.property_names: list[str] = list(self.header.get("properties", []))
        a = self.arrays
        missing = [k for k in _REQUIRED if k not in a]
        if missing:
            from ._errors import IndexFormatError

            raise IndexFormatError(f"index {self.path} lacks arrays {missing} (older or foreign format); rebuild it "
                                   "with `compscope search build`")
        self.fps, self.bins, self.rows = a["fps"], a["bins"], a["rows"]  # (N, W), (nbits+2,), (N,)
        self.fold = a["fold"]  # (N, F) uint64: folded fingerprints (the per-row similarity bound)
        if (self.fps.shape != (self.n, self.spec.nwords) or self.bins.shape != (self.spec.nbits + 2,)
                or self.fold.shape != (self.n, K.fold_width(self.spec.nwords))):
            from ._errors import IndexFormatError

            raise IndexFormatError(f"index {self.path}: array shapes do not match its fingerprint settings; rebuild")
        self._queries = QueryFingerprinter(self.spec)
        self._molstore: MolStore | None = None
        self._pattern_cols: tuple[np.ndarray, np.ndarray] | None = None
        self._cols_lock = threading.Lock()
        self._popcnt = np.repeat(np.arange(self.spec.nbits + 1), np.diff(self.bins))  # (N,) lazily small

    @classmethod
    def open(cls, path: str | Path, in_memory: bool = False, hot_rows: int = HOT_ROWS,
             pickled: bool = True) -> SearchIndex:
        """Open an index (memory-mapped: O(1) load; ``in_memory=True`` reads the arrays into RAM).

        ``hot_rows``: leading rows kept as parsed molecules for substructure verification (~8 kB each, built on
        the first substructure query; 0 for none; see ``_verify.py``). ``pickled``: keep every molecule as an
        RDKit binary pickle for verification (~300 bytes each; a one-off ~35 µs per molecule on the first
        substructure query, then ~40 % cheaper verifications; ``False`` for one-shot processes such as the CLI).
        """
        return cls(path, in_memory=in_memory, hot_rows=hot_rows, pickled=pickled)

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return f"SearchIndex({str(self.path)!r}, n={self.n}, fingerprint={self.spec.to_dict()})"

    # ------------------------------------------------------------------ records
    def _records(self, pos: np.ndarray, kind: str, scores=None, **kw) -> SearchResult:
        pos = np.asarray(pos, dtype=np.int64)
        a = self.arrays
        props = {}
        if "props" in a and len(pos):
            p = np.asarray(a["props"][pos])  # (H, P)
            props = {n: p[:, j] for j, n in enumerate(self.property_names)}
        elif "props" in a:
            props = {n: np.zeros(0, np.float32) for n in self.property_names}
        return SearchResult(
            kind=kind, positions=pos, keys=np.stack([self._popcnt[pos], self.rows[pos]], axis=1),
            ids=unpack_strings(a["ids_blob"], a["ids_off"], pos),
            smiles=unpack_strings(a["smiles_blob"], a["smiles_off"], pos),
            scores=scores, properties=props, **kw,
        )

    def inchikeys(self, pos) -> list[str]:
        """InChIKeys of index rows (requires an index built with InChIKeys)."""
        a = self.arrays
        if "inchikey_pos" not in a:
            raise QueryError("this index was built without InChIKeys (--no-inchikey); rebuild to use them")
        inv = np.empty(self.n, np.int64)
        inv[a["inchikey_pos"]] = np.arange(self.n)
        return [a["inchikey_sorted"][inv[p]].decode() for p in np.asarray(pos)]

    # ------------------------------------------------------------------ helpers
    def _mask(self, filters) -> np.ndarray | None:
        f = parse_filters(filters, self.property_names)
        if not f:
            return None
        props = self.arrays["props"]
        mask = np.ones(self.n, dtype=np.bool_)
        for name, (lo, hi) in f.items():
            col = props[:, self.property_names.index(name)]
            mask &= (col >= lo) & (col <= hi)
        return mask

    def query_fingerprint(self, query: Any, fingerprint: FingerprintSpec | dict | None = None) -> np.ndarray:
        """Packed (W,) uint64 fingerprint of a SMILES / RDKit Mol / fingerprint query.

        ``fingerprint``: the settings the caller believes the index uses; a mismatch raises
        :class:`FingerprintMismatchError` instead of silently comparing unlike bits.
        """
        return self._queries(query, fingerprint)

    @staticmethod
    def _metric(metric: str, a: float, b: float) -> tuple[int, np.float32, np.float32]:
        if metric not in K.METRICS:
            raise QueryError(f"unknown metric {metric!r}; choose one of {', '.join(K.METRICS)}")
        if metric == "tversky" and (a < 0 or b < 0 or a + b == 0):
            raise QueryError(f"Tversky weights must be >= 0 and not both 0, got a={a}, b={b}")
        return K.METRICS[metric], np.float32(a), np.float32(b)

    # ------------------------------------------------------------------ similarity
    def similarity(self, query: Any, threshold: float = 0.7, metric: str = "tanimoto", *, a: float = 0.5,
                   b: float = 0.5, filters=None, max_results: int | None = None,
                   fingerprint: FingerprintSpec | dict | None = None) -> SearchResult:
        """All molecules with similarity >= ``threshold`` (Tanimoto, Dice or Tversky(a, b)), best first.

        Args:
            query: SMILES, RDKit Mol, RDKit bit vector or packed fingerprint.
            threshold: in (0, 1].
            metric: ``tanimoto`` | ``dice`` | ``tversky`` (a weighs query-only bits, b database-only bits).
            filters: property ranges, e.g. ``{"mw": (200, 400)}`` or ``"mw=200..400,hbd=..2"``.
            max_results: keep only the best this many (the count of all hits is in ``stats``).
        """
        t0 = time.perf_counter()
        try:
            thr = float(threshold)
        except (TypeError, ValueError) as exc:
            raise QueryError(f"threshold must be a number in (0, 1], got {threshold!r}") from exc
        if not 0.0 < thr <= 1.0:
            raise QueryError(f"threshold must be in (0, 1], got {threshold}")
        m, fa, fb = self._metric(metric, a, b)
        q = self.query_fingerprint(query, fingerprint)
        mask = self._mask(filters)
        qc = int(K.popcounts(q[None, :])[0])
        qlev = K.query_levels(q, self.fold.shape[1])  # (L, F) uint64
        pos, sc = K.threshold_search(self.fps, self.fold, self.bins, q, qlev, qc, m, fa, fb, np.float32(thr),
                                     mask if mask is not None else np.zeros(0, np.bool_), mask is not None)
        order = np.lexsort((self.rows[pos], -sc))
        n_all = len(order)
        if max_results is not None:
            order = order[: check_count("max_results", max_results, 1, 10**7)]
        res = self._records(pos[order], "similarity", sc[order])
        res.stats = {"n_total": n_all, "query_popcount": qc}
        res.elapsed_ms = (time.perf_counter() - t0) * 1e3
        return res

    def top_k(self, query: Any, k: int = 10, metric: str = "tanimoto", *, a: float = 0.5, b: float = 0.5,
              threshold: float = 0.0, filters=None, fingerprint: FingerprintSpec | dict | None = None
              ) -> SearchResult:
        """Exact k most similar molecules (ties broken by input order) with BitBound early stopping."""
        t0 = time.perf_counter()
        k = check_count("k", k, 1, MAX_K)
        m, fa, fb = self._metric(metric, a, b)
        q = self.query_fingerprint(query, fingerprint)
        mask = self._mask(filters)
        qc = int(K.popcounts(q[None, :])[0])
        qlev = K.query_levels(q, self.fold.shape[1])  # (L, F) uint64
        pos, sc, rw = K.topk_search(self.fps, self.fold, self.bins, self.rows, q, qlev, qc, m, fa, fb, k,
                                    np.float32(threshold), mask if mask is not None else np.zeros(0, np.bool_),
                                    mask is not None)
        order = np.lexsort((rw, -sc))  # best first: score desc, global row asc
        pos, sc = pos[order], sc[order]
        res = self._records(pos, "topk", sc)
        res.stats = {"query_popcount": qc}
        res.elapsed_ms = (time.perf_counter() - t0) * 1e3
        return res

    def similarity_batch(self, queries: list, n_threads: int = 1, **kw) -> list[SearchResult]:
        """:meth:`similarity` for many queries; the kernels release the GIL, so threads run in parallel."""
        return self._batch(self.similarity, queries, n_threads, kw)

    def top_k_batch(self, queries: list, n_threads: int = 1, **kw) -> list[SearchResult]:
        """:meth:`top_k` for many queries (threads run in parallel)."""
        return self._batch(self.top_k, queries, n_threads, kw)

    @staticmethod
    def _batch(fn, queries, n_threads, kw):
        if isinstance(queries, np.ndarray) and queries.ndim == 2:
            queries = list(queries)
        if n_threads <= 1:
            return [fn(q, **kw) for q in queries]
        with cf.ThreadPoolExecutor(n_threads) as ex:
            return list(ex.map(lambda q: fn(q, **kw), queries))

    # ------------------------------------------------------------------ substructure
    @property
    def molstore(self) -> MolStore:
        """The index's molecules for RDKit's C++ matcher (built on first use, shared by all queries)."""
        if self._molstore is None:
            special = None
            names = list(self.header.get("molfeat", []))
            if "molfeat" in self.arrays and names and names[0] == "flags":
                special = np.nonzero(np.asarray(self.arrays["molfeat"][:, 0]) & FLAG_RADICAL)[0]
            self._molstore = MolStore(self.arrays["smiles_blob"], self.arrays["smiles_off"], special,
                                      hot_rows=self.hot_rows, pickled=self.pickled)
        return self._molstore

    @property
    def pattern_columns(self) -> tuple[np.ndarray, np.ndarray]:
        """Bit-sliced pattern fingerprints ``(2048, ceil(N / 64))`` uint64 and each bit's row count (the
        substructure screen's input; built on first use, ~1 s and 256 MB per 1M molecules, shared by all queries)."""
        if self._pattern_cols is None:
            with self._cols_lock:
                if self._pattern_cols is None:
                    self._pattern_cols = K.transpose_bits(np.asarray(self.arrays["pattern"]))
        return self._pattern_cols

    def substructure(self, query: Any, *, syntax: str = "auto", offset: int = 0, limit: int = 100,
                     time_limit: float = 10.0, count: bool = False, filters=None, n_threads: int = 1,
                     screens: bool = True, _hits_out: list | None = None) -> SearchResult:
        """Substructure search: numba screens, then bulk verification in RDKit's C++ ``SubstructLibrary``.

        Hits come in index order (popcount, input order). Returns hits ``offset .. offset + limit`` as soon
        as they are found; ``count=True`` counts every match instead (no hits returned). The screen reads the
        bit-sliced pattern fingerprints (:attr:`pattern_columns`) 64 rows at a time, rarest query bit first, and
        alternates with verification in blocks, so the first hits never wait for a whole-database screen.

        ``time_limit`` is CPU seconds (per thread when ``n_threads > 1``), so a loaded machine does not cut off
        work that an idle one finishes; when it is used up first, the hits so far come back with
        ``partial=True``. ``n_threads`` threads verify each block of candidates in parallel. ``screens=False``
        leaves only the pattern-fingerprint screen (to measure what the count screens of ``_screens.py`` add).
        """
        t0 = time.perf_counter()
        offset = check_count("offset", offset, 0, 10**7)
        limit = check_count("limit", limit, 1, MAX_K)
        n_threads = check_count("n_threads", n_threads, 1, 256)
        try:
            time_limit = float(time_limit)
        except (TypeError, ValueError) as exc:
            raise QueryError(f"time_limit must be seconds, got {time_limit!r}") from exc
        if not 0 < time_limit <= 600:  # also rejects NaN
            raise QueryError(f"time_limit must be in (0, 600] seconds, got {time_limit}")
        if "pattern" not in self.arrays:
            raise QueryError("this index was built without pattern fingerprints (--no-pattern); rebuild it")
        store = self.molstore
        hybrid = isinstance(query, str) and "^" in query  # hybridisation primitives need sanitised molecules
        store.holder(hybrid)  # the one-off holder and column builds are not the query's CPU time
        cols, freq = self.pattern_columns
        pattern = np.asarray(self.arrays["pattern"])  # rows, for the candidates the rarest columns leave
        c0 = time.thread_time()
        qmol = substructure_query(query, syntax)
        qpat = _query_pattern(qmol)
        qbits = np.flatnonzero(np.unpackbits(qpat.view(np.uint8), bitorder="little"))
        qbits = qbits[np.argsort(freq[qbits], kind="stable")].astype(np.int64)  # rarest first
        feat = self.arrays.get("molfeat")
        feat = None if feat is None else np.asarray(feat)  # a plain array view: numba dispatches memmaps slowly
        feat_names = list(self.header.get("molfeat", []))
        use_feat = feat is not None and len(feat_names) == feat.shape[1] and screens
        qfeat = query_requirements(qmol, feat_names) if use_feat else np.zeros(0, np.uint8)
        if not use_feat:
            feat = np.zeros((0, 0), np.uint8)
        mask = self._mask(filters)
        want = None if count else offset + limit
        params = match_parameters()
        m_arr = mask if mask is not None else np.zeros(0, np.bool_)
        hits: list[np.ndarray] = []
        n_hits, start, screened, verified, partial = 0, 0, 0, 0, False
        # first block: the hits wanted and a quarter more (the screens pass ~97 % hits on ring systems), so a first
        # page of 100 usually takes one C++ call; at most 256, so the clock is looked at soon; counts start at 64
        worker_cpu, verify_cpu = 0.0, 0.0
        block = 64 if want is None else int(min(256, max(64, want + want // 4)))

        def cpu_used() -> float:
            return time.thread_time() - c0 + worker_cpu / n_threads

        n_words, word = cols.shape[1], 0
        while word < n_words:
            if cpu_used() > time_limit:
                partial = True
                break
            buf = np.empty(block + 64, np.int64)
            nfound, word = K.substructure_screen_columns(cols, qbits, self.n, word,
                                                         min(n_words, word + _SCAN_ROWS // 64), m_arr,
                                                         mask is not None, buf, feat, qfeat, use_feat, pattern,
                                                         qpat, K.SCREEN_COLUMN_BITS)
            start = min(self.n, 64 * word)
            screened += nfound
            if nfound == 0:
                continue
            got, cpu_main, cpu_workers, n_done = store.verify(
                qmol, params, buf[:nfound], None if want is None else want - n_hits, n_threads, hybrid)
            worker_cpu += cpu_workers
            verify_cpu += cpu_main + cpu_workers / n_threads
            verified += n_done
            hits.append(got)
            n_hits += len(got)
            if want is not None and n_hits >= want:
                break
            # next block: at most 4x larger, and small enough to check the clock again within the time left
            left = time_limit - cpu_used()
            per = verify_cpu / max(verified, 1)
            block = int(min(4 * block, _MAX_BLOCK, max(64, left / max(per, 1e-7) / 2)))
        if partial and start >= self.n:
            partial = False  # the last block finished the scan exactly at the limit
        allhits = np.concatenate(hits) if hits else np.zeros(0, np.int64)
        stats = {"screen_candidates": screened, "verified": verified, "rows_screened": start,
                 "cpu_ms": cpu_used() * 1e3}
        if count:
            res = self._records(np.zeros(0, np.int64), "count", None, partial=partial, count=int(n_hits))
            if _hits_out is not None:
                _hits_out.append(allhits)
        else:
            page = allhits[offset : offset + limit]
            more = want is not None and n_hits >= want  # stopped early: more hits may follow
            res = self._records(page, "substructure", None, partial=partial,
                                next_offset=offset + limit if more else None)
        res.stats = stats
        res.elapsed_ms = (time.perf_counter() - t0) * 1e3
        return res

    def substructure_rows(self, query: Any, **kw) -> tuple[np.ndarray, SearchResult]:
        """Every hit of a substructure query as global input rows (ascending), with the count result
        (``partial``, ``stats``); keyword arguments as for :meth:`substructure` in count mode."""
        out: list[np.ndarray] = []
        res = self.substructure(query, count=True, _hits_out=out, **kw)
        return np.sort(np.asarray(self.rows[out[0]], np.int64)), res

    # ------------------------------------------------------------------ exact
    def exact(self, query: str, by: str = "smiles") -> SearchResult:
        """Exact match by canonical SMILES (``by="smiles"``) or by InChIKey (``by="inchikey"``).

        A query that looks like an InChIKey is looked up as one.
        """
        from rdkit import Chem

        t0 = time.perf_counter()
        if by not in ("smiles", "inchikey"):
            raise QueryError(f"by must be 'smiles' or 'inchikey', got {by!r}")
        a = self.arrays
        if isinstance(query, str) and INCHIKEY_RE.match(query.strip()):
            by, key = "inchikey", query.strip()
        else:
            mol = mol_from_smiles(query)
            key = Chem.MolToInchiKey(mol) if by == "inchikey" else Chem.MolToSmiles(mol)
        if by == "inchikey":
            if "inchikey_sorted" not in a:
                raise QueryError("this index was built without InChIKeys (--no-inchikey); search by='smiles'")
            ks = a["inchikey_sorted"]
            kb = key.encode()
            lo, hi = np.searchsorted(ks, kb, "left"), np.searchsorted(ks, kb, "right")
            pos = np.sort(a["inchikey_pos"][lo:hi])
        else:
            h = smiles_hash(key)
            hs = a["smiles_hash"]
            lo, hi = np.searchsorted(hs, h, "left"), np.searchsorted(hs, h, "right")
            cand = np.sort(a["smiles_hash_pos"][lo:hi])
            pos = np.asarray([p for p, s in zip(cand, unpack_strings(a["smiles_blob"], a["smiles_off"], cand))
                              if s == key], dtype=np.int64)
        res = self._records(pos, "exact", None)
        res.stats = {"by": by, "key": key}
        res.elapsed_ms = (time.perf_counter() - t0) * 1e3
        return res


def _query_pattern(qmol) -> np.ndarray:
    """Pattern fingerprint of a query molecule (SMARTS or SMILES), packed (32,) uint64."""
    from rdkit import Chem

    from ._fingerprints import PATTERN_BITS, _pack_ebvs

    q = Chem.Mol(qmol)
    try:
        q.UpdatePropertyCache(strict=False)
        Chem.FastFindRings(q)
    except Exception:  # noqa: BLE001 - query features RDKit cannot perceive just weaken the screen
        pass
    fp = Chem.PatternFingerprint(q, PATTERN_BITS)
    return _pack_ebvs([fp], PATTERN_BITS // 64)[0]
