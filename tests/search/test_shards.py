"""Ray shards: 2 local workers give results identical to the unsharded index."""

from __future__ import annotations

import pytest

from compscope.search import FingerprintMismatchError, FingerprintSpec, QueryError

from ._data import library_records, queries


@pytest.fixture(scope="module")
def sharded(index_path, tmp_path_factory):
    import ray

    from compscope.search import ShardedIndex, split_index

    paths = split_index(index_path, tmp_path_factory.mktemp("shards"), 2)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    idx = ShardedIndex(paths, actor_cpus=1)
    yield idx, paths
    idx.close()
    ray.shutdown()


@pytest.mark.slow
def test_sharded_equals_unsharded(sharded, index):
    sh, paths = sharded
    assert len(sh) == len(index) and len(paths) == 2
    for q in queries()[:8]:
        a, b = sh.top_k(q, 25), index.top_k(q, 25)
        assert a.ids == b.ids and list(a.scores) == list(b.scores)
        a, b = sh.similarity(q, 0.3), index.similarity(q, 0.3)
        assert a.ids == b.ids and list(a.scores) == list(b.scores)
        a, b = sh.top_k(q, 5, metric="tversky", a=0.8, b=0.2, filters={"mw": (200, 350)}), \
            index.top_k(q, 5, metric="tversky", a=0.8, b=0.2, filters={"mw": (200, 350)})
        assert a.ids == b.ids
    for sma in ("c1ccncc1", "[CX3](=O)[NX3]", "c[Cl,Br,I]"):
        for off, lim in ((0, 10), (10, 25), (0, 500)):
            a, b = sh.substructure(sma, offset=off, limit=lim), index.substructure(sma, offset=off, limit=lim)
            assert a.ids == b.ids and a.next_offset == b.next_offset
        assert sh.substructure(sma, count=True).count == index.substructure(sma, count=True).count
    smi, mid = library_records()[77]
    assert sh.exact(smi).ids == [mid] == index.exact(smi).ids


def test_sharded_errors(sharded, index_path, tmp_path):
    from compscope.search import ShardedIndex, build_index, split_index

    sh, paths = sharded
    with pytest.raises(QueryError, match="invalid SMILES"):
        sh.top_k("C1CC", 3)
    with pytest.raises(QueryError, match="out of range"):
        sh.top_k("CCO", 10**9)
    with pytest.raises(QueryError, match="invalid"):
        sh.substructure("C1CC(")
    assert sh.top_k("CCO", 2).ids == sh.top_k("CCO", 2).ids  # still serving
    recs = library_records()[:50]
    (tmp_path / "m.smi").write_text("".join(f"{s} {i}\n" for s, i in recs))
    build_index(tmp_path / "m.smi", tmp_path / "other.csi", FingerprintSpec("morgan", 3, 1024), n_jobs=1)
    other = split_index(tmp_path / "other.csi", tmp_path / "o", 1)
    with pytest.raises(FingerprintMismatchError, match="shard"):
        ShardedIndex([paths[0], *other])
