"""Scale-out on Ray: an index split into shards held by Ray actors, scatter-gather, exact merges.

Every hit carries the key ``(popcount, global row)``; shards keep the global rows of the full index,
so merged results are *identical* to the unsharded index:

- top-k: each shard returns its own top-k; the union contains the global top-k, re-sorted by
  (score desc, row asc) -- the same total order the single-index kernel uses;
- threshold: the union of shard hits, same order;
- substructure: each shard returns its first ``offset + limit`` hits in key order; the global first
  ``offset + limit`` are among them, merged by key;
- count: the sum of shard counts.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ._build import _assemble
from ._errors import QueryError, SearchError
from ._fingerprints import FingerprintSpec
from ._format import open_arrays, read_header, unpack_strings, write_index
from ._index import QueryFingerprinter, SearchIndex, SearchResult
from ._query import MAX_K, check_count, substructure_query
from ._verify import HOT_ROWS

log = logging.getLogger(__name__)


def split_index(index: str | Path, out_dir: str | Path, n_shards: int, overwrite: bool = False) -> list[Path]:
    """Split an index into ``n_shards`` shard indexes ``out_dir/shard_000.csi`` ... (row i -> shard i % n).

    Shards keep the global row numbers of the full index, which makes shard merges exact.
    """
    if not 1 <= n_shards <= 4096:
        raise QueryError(f"n_shards must be in 1..4096, got {n_shards}")
    index = Path(index)
    hdr = read_header(index)
    a = open_arrays(index, hdr)
    spec = FingerprintSpec.from_dict(hdr["fingerprint"])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    smiles = unpack_strings(a["smiles_blob"], a["smiles_off"])
    ids = unpack_strings(a["ids_blob"], a["ids_off"])
    ik = None
    if "inchikey_pos" in a:
        ik = np.empty(len(smiles), "S27")
        ik[a["inchikey_pos"]] = a["inchikey_sorted"]
    paths = []
    for s in range(n_shards):
        sel = np.nonzero(a["rows"] % n_shards == s)[0]
        data: dict[str, Any] = {"smiles": [smiles[i] for i in sel], "ids": [ids[i] for i in sel],
                                "fps": np.asarray(a["fps"][sel]), "lines": np.asarray(a["lines"][sel])}
        if ik is not None:
            data["inchikey"] = ik[sel]
        if "pattern" in a:
            data["pattern"] = np.asarray(a["pattern"][sel])
        if "molfeat" in a:
            data["molfeat"] = np.asarray(a["molfeat"][sel])
        if "props" in a:
            data["props"] = np.asarray(a["props"][sel])
        arrays, header = _assemble(spec, data, np.asarray(a["rows"][sel]))
        if "molfeat" in data:
            header["molfeat"] = hdr.get("molfeat", [])
        header.update({"sources": hdr.get("sources", []), "shard": {"index": s, "of": n_shards, "parent": str(index)}})
        p = out_dir / f"shard_{s:03d}.csi"
        write_index(p, arrays, header, overwrite=overwrite)
        paths.append(p)
    return paths


def _merge(parts: list[SearchResult], kind: str, order_by_score: bool) -> SearchResult:
    """Concatenate shard results and sort them into the single-index order."""
    keys = np.concatenate([p.keys for p in parts]) if parts else np.zeros((0, 2), np.int64)
    ids = [x for p in parts for x in p.ids]
    smiles = [x for p in parts for x in p.smiles]
    scores = np.concatenate([p.scores for p in parts]) if order_by_score else None
    if order_by_score:
        order = np.lexsort((keys[:, 1], -scores))  # score desc, global row asc
    else:
        order = np.lexsort((keys[:, 1], keys[:, 0]))  # index order: popcount, global row
    props = {}
    if parts and parts[0].properties:
        props = {k: np.concatenate([p.properties[k] for p in parts])[order] for k in parts[0].properties}
    return SearchResult(
        kind=kind, positions=np.full(len(order), -1, np.int64), keys=keys[order],
        ids=[ids[i] for i in order], smiles=[smiles[i] for i in order],
        scores=scores[order] if scores is not None else None, properties=props,
        partial=any(p.partial for p in parts), elapsed_ms=max((p.elapsed_ms for p in parts), default=0.0),
    )


def _slice(r: SearchResult, start: int, stop: int) -> SearchResult:
    sl = slice(start, stop)
    r.positions, r.keys, r.ids, r.smiles = r.positions[sl], r.keys[sl], r.ids[sl], r.smiles[sl]
    if r.scores is not None:
        r.scores = r.scores[sl]
    r.properties = {k: v[sl] for k, v in r.properties.items()}
    return r


class ShardedIndex:
    """The :class:`SearchIndex` query API over shards held by Ray actors.

    Args:
        shards: shard index paths (from :func:`split_index`).
        actor_cpus: CPUs Ray reserves per shard actor.
        in_memory: load shard arrays into RAM instead of memory-mapping them.
        hot_rows: leading rows kept as parsed molecules for substructure verification, over all shards (each
            shard keeps its share: the shards' first rows together are about the unsharded index's first rows).

    Ray must be initialised (``ray.init(...)``) or it is started locally on first use.
    """

    def __init__(self, shards: list[str | Path], actor_cpus: float = 1.0, in_memory: bool = False,
                 hot_rows: int = HOT_ROWS):
        import ray

        if not shards:
            raise QueryError("no shards given; create them with split_index(index, out_dir, n_shards)")
        headers = [read_header(Path(p)) for p in shards]
        self.spec = FingerprintSpec.from_dict(headers[0]["fingerprint"])
        for p, h in zip(shards, headers):
            self.spec.check_same(FingerprintSpec.from_dict(h["fingerprint"]), what=f"shard {p}")
        self.property_names = list(headers[0].get("properties", []))
        self.n = sum(int(h["n"]) for h in headers)
        self.paths = [Path(p) for p in shards]
        if not ray.is_initialized():
            ray.init(include_dashboard=False, log_to_driver=False)
        actor = ray.remote(num_cpus=actor_cpus)(_ShardActor)
        per_shard = -(-int(hot_rows) // len(self.paths))
        self.actors = [actor.remote(str(p), in_memory, per_shard) for p in self.paths]
        ray.get([a.ready.remote() for a in self.actors])
        self._queries = QueryFingerprinter(self.spec)

    def __len__(self) -> int:
        return self.n

    def _gather(self, method: str, *args, **kw) -> list[SearchResult]:
        import ray

        try:
            return ray.get([getattr(a, method).remote(*args, **kw) for a in self.actors])
        except ray.exceptions.RayTaskError as exc:  # re-raise a shard's SearchError as itself
            if isinstance(getattr(exc, "cause", None), SearchError):
                raise exc.cause from None
            raise

    def _fp(self, query, fingerprint=None) -> np.ndarray:
        """Fingerprint once on the driver: bad SMILES fail here, before any scatter."""
        return self._queries(query, fingerprint)

    def similarity(self, query: Any, threshold: float = 0.7, metric: str = "tanimoto", *, a: float = 0.5,
                   b: float = 0.5, filters=None, max_results: int | None = None, fingerprint=None) -> SearchResult:
        """Same as :meth:`SearchIndex.similarity`, scattered over the shards."""
        q = self._fp(query, fingerprint)
        parts = self._gather("similarity", q, threshold, metric, a=a, b=b, filters=filters)
        r = _merge(parts, "similarity", True)
        r.stats = {"n_total": len(r)}
        if max_results is not None:
            r = _slice(r, 0, check_count("max_results", max_results, 1, 10**7))
        return r

    def top_k(self, query: Any, k: int = 10, metric: str = "tanimoto", *, a: float = 0.5, b: float = 0.5,
              threshold: float = 0.0, filters=None, fingerprint=None) -> SearchResult:
        """Same as :meth:`SearchIndex.top_k`: exact global top-k from per-shard top-k lists."""
        k = check_count("k", k, 1, MAX_K)
        q = self._fp(query, fingerprint)
        parts = self._gather("top_k", q, k, metric, a=a, b=b, threshold=threshold, filters=filters)
        return _slice(_merge(parts, "topk", True), 0, k)

    def similarity_batch(self, queries: list, **kw) -> list[SearchResult]:
        return [self.similarity(q, **kw) for q in queries]

    def top_k_batch(self, queries: list, **kw) -> list[SearchResult]:
        return [self.top_k(q, **kw) for q in queries]

    def substructure(self, query: Any, *, syntax: str = "auto", offset: int = 0, limit: int = 100,
                     time_limit: float = 10.0, count: bool = False, filters=None, n_threads: int = 1
                     ) -> SearchResult:
        """Same as :meth:`SearchIndex.substructure`; shards search in parallel, each within the time limit
        (CPU seconds) and each verifying its candidates in RDKit's C++ matcher on ``n_threads`` threads."""
        offset = check_count("offset", offset, 0, 10**7)
        limit = check_count("limit", limit, 1, MAX_K)
        if not isinstance(query, str):
            raise QueryError("sharded substructure queries must be SMARTS/SMILES strings")
        substructure_query(query, syntax)  # validate on the driver
        if count:
            parts = self._gather("substructure", query, syntax=syntax, limit=1, time_limit=time_limit, count=True,
                                 filters=filters, n_threads=n_threads)
            r = _merge(parts, "count", False)
            r.count = sum(p.count or 0 for p in parts)
            return r
        want = offset + limit
        parts = self._gather("substructure", query, syntax=syntax, offset=0, limit=check_count("offset + limit", want),
                             time_limit=time_limit, filters=filters, n_threads=n_threads)
        r = _merge(parts, "substructure", False)
        more = len(r) > want or any(p.next_offset is not None for p in parts)
        r = _slice(r, offset, want)
        r.next_offset = want if more else None
        r.stats = {k: sum(p.stats.get(k, 0) for p in parts) for k in ("screen_candidates", "verified", "cpu_ms")}
        return r

    def exact(self, query: str, by: str = "smiles") -> SearchResult:
        """Same as :meth:`SearchIndex.exact`."""
        return _merge(self._gather("exact", query, by=by), "exact", False)

    def close(self) -> None:
        """Stop the shard actors."""
        import ray

        for a in self.actors:
            ray.kill(a)
        self.actors = []


class _ShardActor:
    """Holds one shard (wrapped by ``ray.remote`` in :class:`ShardedIndex`)."""

    def __init__(self, path: str, in_memory: bool, hot_rows: int = HOT_ROWS):
        self.index = SearchIndex.open(path, in_memory=in_memory, hot_rows=hot_rows)

    def ready(self) -> int:
        return len(self.index)

    def similarity(self, *args, **kw) -> SearchResult:
        return self.index.similarity(*args, **kw)

    def top_k(self, *args, **kw) -> SearchResult:
        return self.index.top_k(*args, **kw)

    def substructure(self, *args, **kw) -> SearchResult:
        return self.index.substructure(*args, **kw)

    def exact(self, *args, **kw) -> SearchResult:
        return self.index.exact(*args, **kw)
