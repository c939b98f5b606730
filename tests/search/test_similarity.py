"""Similarity kernels against RDKit's bulk similarity functions and FPSim2 on the MOSES fixture."""

from __future__ import annotations

import numpy as np
import pytest

from compscope.search import FingerprintMismatchError, FingerprintSpec, QueryError

from ._data import library_records, queries


@pytest.fixture(scope="module")
def rdkit_fps(rdkit_mols):
    from rdkit.Chem import rdFingerprintGenerator

    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    return gen, [gen.GetFingerprint(m) for m in rdkit_mols]


def _ref(kind, qfp, fps, a=0.5, b=0.5):
    from rdkit import DataStructs

    if kind == "tanimoto":
        return np.asarray(DataStructs.BulkTanimotoSimilarity(qfp, fps))
    if kind == "dice":
        return np.asarray(DataStructs.BulkDiceSimilarity(qfp, fps))
    return np.asarray(DataStructs.BulkTverskySimilarity(qfp, fps, a, b))


@pytest.mark.parametrize("metric,threshold,a,b", [("tanimoto", 0.4, 0.5, 0.5), ("dice", 0.55, 0.5, 0.5),
                                                  ("tversky", 0.5, 0.9, 0.1), ("tversky", 0.5, 0.2, 0.8)])
def test_threshold_matches_rdkit(index, rdkit_fps, metric, threshold, a, b):
    from rdkit import Chem

    gen, fps = rdkit_fps
    ids = [i for _, i in library_records()]
    n_hits = 0
    for q in queries():
        ref = _ref(metric, gen.GetFingerprint(Chem.MolFromSmiles(q)), fps, a, b)
        r = index.similarity(q, threshold, metric, a=a, b=b)
        want = {ids[i]: ref[i] for i in np.nonzero(ref >= threshold - 1e-6)[0]}
        # float32 vs float64 may only disagree for scores within 1e-6 of the threshold
        got = set(r.ids)
        assert got <= set(want) and all(abs(want[i] - threshold) < 1e-6 for i in set(want) - got)
        for i, s in zip(r.ids, r.scores):
            assert s == pytest.approx(want[i], abs=1e-6)
        assert np.all(np.diff(r.scores) <= 0), "hits are sorted best first"
        n_hits += len(r)
    assert n_hits > 20, "the fixture queries must produce hits for the comparison to mean anything"


@pytest.mark.parametrize("metric", ["tanimoto", "dice"])
def test_topk_is_exact(index, rdkit_fps, metric):
    from rdkit import Chem

    gen, fps = rdkit_fps
    ids = [i for _, i in library_records()]
    for q in queries()[:10] + [library_records()[5][0]]:
        ref = _ref(metric, gen.GetFingerprint(Chem.MolFromSmiles(q)), fps).astype(np.float32)
        order = np.lexsort((np.arange(len(ref)), -ref))[:15]  # ties -> input order, as the engine
        r = index.top_k(q, k=15, metric=metric)
        assert r.ids == [ids[i] for i in order]
        np.testing.assert_allclose(r.scores, ref[order], atol=1e-6)


def test_agrees_with_fpsim2(index):
    """FPSim2's own fingerprint pipeline and C++ kernel (its pytables file layer is skipped: it costs ~20 s
    of fixed overhead even for 3000 molecules; the benchmark uses the full FPSim2 engine)."""
    from FPSim2.FPSim2lib import GenericSearch
    from FPSim2.io.chem import build_fp, load_molecule

    params = {"radius": 2, "fpSize": 2048}
    rows = [build_fp(load_molecule(s), "Morgan", params, int(i[1:])) for s, i in library_records()]
    fps = np.array(sorted(rows, key=lambda r: r[-1]), dtype=np.uint64)  # (N, 1 + 32 + 1): id, words, popcnt
    for q in queries():
        qfp = np.array(build_fp(load_molecule(q), "Morgan", params, 0), dtype=np.uint64)
        for thr in (0.3, 0.5):
            f = GenericSearch(qfp, fps, thr, 0, 0, 0, fps.shape[0])
            r = index.similarity(q, thr)
            assert {(int(i[1:]), float(s)) for i, s in zip(r.ids, r.scores)} == \
                {(int(i), float(s)) for i, s in zip(f["mol_id"], f["coeff"])}
        f = GenericSearch(qfp, fps, 0.0, 10, 0, 0, fps.shape[0])
        r = index.top_k(q, 10)
        np.testing.assert_array_equal(np.sort(r.scores), np.sort(f["coeff"])[-10:])


def test_batch_and_fingerprint_queries(index, rdkit_fps):
    from rdkit import Chem

    gen, _ = rdkit_fps
    qs = queries()[:6]
    singles = [index.top_k(q, 5) for q in qs]
    for threads in (1, 2):
        batch = index.top_k_batch(qs, n_threads=threads, k=5)
        assert [b.ids for b in batch] == [s.ids for s in singles]
    ebv = gen.GetFingerprint(Chem.MolFromSmiles(qs[0]))
    assert index.top_k(ebv, 5).ids == singles[0].ids
    packed = index.query_fingerprint(qs[0])
    assert packed.dtype == np.uint64 and packed.shape == (32,)
    assert index.similarity_batch(np.stack([packed, packed]), threshold=0.3)[1].ids == \
        index.similarity(qs[0], 0.3).ids


def test_property_filters(index):
    q = queries()[0]
    full = index.similarity(q, 0.2)
    r = index.similarity(q, 0.2, filters={"mw": (250, 350), "hbd": (None, 1)})
    expect = [i for i, mw, hbd in zip(full.ids, full.properties["mw"], full.properties["hbd"])
              if 250 <= mw <= 350 and hbd <= 1]
    assert r.ids == expect and 0 < len(expect) < len(full)
    top = index.top_k(q, 10, filters="mw=250..350, hbd=..1")
    assert top.ids == expect[:10]
    sub = index.substructure("c1ccccc1", limit=50, filters={"rings": (4, None)})
    assert len(sub) > 0 and all(x >= 4 for x in sub.properties["rings"])
    for bad, msg in [({"weight": (1, 2)}, "unknown property"), ({"mw": (400, 200)}, "above upper"),
                     ("mw>3", "bad filter"), ({"mw": "x"}, "give \\[lo, hi\\]")]:
        with pytest.raises(QueryError, match=msg):
            index.similarity(q, 0.5, filters=bad)


def test_bad_similarity_queries(index):
    for q in ["", "   ", "C1CC", "c1cccc1", "not smiles"]:
        with pytest.raises(QueryError, match="SMILES"):
            index.top_k(q, 5)
    with pytest.raises(QueryError, match="k=1000000000 is out of range"):
        index.top_k("CCO", k=10**9)
    with pytest.raises(QueryError, match="threshold"):
        index.similarity("CCO", 1.5)
    with pytest.raises(QueryError, match="unknown metric"):
        index.similarity("CCO", 0.5, metric="cosine2")
    with pytest.raises(FingerprintMismatchError, match="rebuild the index"):
        index.top_k("CCO", 5, fingerprint=FingerprintSpec("morgan", 3, 2048))
    with pytest.raises(FingerprintMismatchError, match="1024 bits"):
        from rdkit import Chem
        from rdkit.Chem import rdFingerprintGenerator

        fp = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=1024).GetFingerprint(Chem.MolFromSmiles("CCO"))
        index.top_k(fp, 5)
    with pytest.raises(FingerprintMismatchError):
        index.top_k(np.zeros(16, np.uint64), 5)


@pytest.mark.parametrize("nwords", [32, 16, 3])
def test_folded_bound_never_below_the_true_intersection(nwords):
    from compscope.search import _kernels as K

    rng = np.random.default_rng(nwords)
    nbits = nwords * 64
    def rand_fps(n, density):
        bits = (rng.random((n, nbits)) < density).astype(np.uint8)
        return np.packbits(bits, axis=1, bitorder="little").view(np.uint64)
    db, qs = rand_fps(300, 0.03), rand_fps(20, 0.05)
    f = K.fold_width(nwords)
    assert f == (4 if nwords % 4 == 0 else nwords)
    fold = K.fold_fps(db, f)
    true = np.unpackbits((db[None] & qs[:, None]).view(np.uint8), axis=-1).reshape(20, 300, -1).sum(-1)
    for qi, q in enumerate(qs):
        qlev = K.query_levels(q, f)
        bound = np.unpackbits((fold[:, None, :] & qlev[None]).view(np.uint8).reshape(300, -1), axis=1).sum(1)
        assert (bound >= true[qi]).all()
        if f == nwords:  # nothing folded: the bound is the intersection itself
            assert (bound == true[qi]).all()
