"""Substructure search against a brute-force RDKit HasSubstructMatch scan; paging, count, time limits."""

from __future__ import annotations

import pytest

from compscope.search import QueryError

from ._data import library_records

QUERIES = ["c1ccccc1", "c1ccncc1", "[CX3](=O)[NX3]", "C(=O)[OX2H1]", "c1ccsc1", "S(=O)(=O)N", "[#7;R]",
           "[r5]", "C1CCNCC1", "c[Cl,Br,I]", "[NX3;H2]", "O=C(N)c1ccccc1"]


@pytest.fixture(scope="module")
def brute(rdkit_mols):
    from rdkit import Chem

    ids = [i for _, i in library_records()]
    out = {}
    for q in QUERIES:
        qm = Chem.MolFromSmiles(q) or Chem.MolFromSmarts(q)
        out[q] = {ids[j] for j, m in enumerate(rdkit_mols) if m.HasSubstructMatch(qm)}
    return out


@pytest.fixture(scope="module")
def partly_hot(index_path):
    """The fixture index with only its first 1000 rows kept as parsed molecules (the rest from SMILES)."""
    from compscope.search import SearchIndex

    return SearchIndex.open(index_path, hot_rows=1000)


@pytest.mark.parametrize("hot", ["all", "1000"])
@pytest.mark.parametrize("q", QUERIES)
def test_hits_equal_brute_force(index, partly_hot, brute, q, hot):
    index = index if hot == "all" else partly_hot
    r = index.substructure(q, count=True, time_limit=60)
    assert not r.partial and r.count == len(brute[q])
    hits, offset = [], 0
    while True:
        page = index.substructure(q, offset=offset, limit=500, time_limit=60, n_threads=1 + (hot == "1000"))
        hits += page.ids
        if page.next_offset is None:
            break
        offset = page.next_offset
    assert len(hits) == len(set(hits)) and set(hits) == brute[q]


def test_paging_is_consistent(index):
    full = index.substructure("c1ccncc1", limit=1000).ids
    pages = [index.substructure("c1ccncc1", offset=o, limit=37).ids for o in range(0, len(full), 37)]
    assert [x for p in pages for x in p] == full
    first = index.substructure("c1ccncc1", limit=10)
    assert first.next_offset == 10 and first.stats["verified"] < 60, "first hits come without a full scan"


def test_time_limit_gives_partial_result(index):
    # a SMARTS with no screening power and recursion: a full scan cannot finish in 5 ms
    slow = "[$(*~*~*~*~*~*~*~*),$(*1~*~*~*~*~*1)]~[!#1]~[!#1]~[!#1]~[!#1]~[!#1]"
    r = index.substructure(slow, count=True, time_limit=0.005)
    assert r.partial and r.elapsed_ms < 2000
    r = index.substructure(slow, limit=3000, time_limit=0.005)
    assert r.partial


def test_bad_substructure_queries(index):
    for q, msg in [("", "empty"), ("C1CC(", "invalid"), ("[C;X9$(", "invalid"), ("   ", "empty")]:
        with pytest.raises(QueryError, match=msg):
            index.substructure(q)
    with pytest.raises(QueryError, match="limit=1000000000 is out of range"):
        index.substructure("c1ccccc1", limit=10**9)
    with pytest.raises(QueryError, match="offset"):
        index.substructure("c1ccccc1", offset=-1)
    with pytest.raises(QueryError, match="time_limit"):
        index.substructure("c1ccccc1", time_limit=0)
    with pytest.raises(QueryError, match="syntax"):
        index.substructure("c1ccccc1", syntax="inchi")


def test_exact_match(index):
    from rdkit import Chem

    s, i = library_records()[42]
    kek = Chem.MolToSmiles(Chem.MolFromSmiles(s), kekuleSmiles=True)  # another spelling of the same molecule
    assert index.exact(kek).ids == [i]
    key = Chem.MolToInchiKey(Chem.MolFromSmiles(s))
    assert index.exact(key).ids == [i]
    assert index.exact(s, by="inchikey").ids == [i]
    assert index.exact("C1CCCCCCCCCCCCCCCCCC1").ids == []
    with pytest.raises(QueryError, match="invalid SMILES"):
        index.exact("C1CC")
    with pytest.raises(QueryError, match="by must be"):
        index.exact(s, by="formula")


@pytest.mark.parametrize("q", ["c1ccc2[nH]ccc2c1", "C1CCNCC1", "[#6]~[#7]", "*"])
def test_column_screen_equals_row_screen(index, q):
    """The bit-sliced screen returns exactly the rows of the row-by-row pattern + count screen, in order."""
    import numpy as np

    from compscope.search import _kernels as K
    from compscope.search import substructure_query
    from compscope.search._index import _query_pattern
    from compscope.search._screens import query_requirements

    pattern = np.asarray(index.arrays["pattern"])
    cols, freq = index.pattern_columns
    assert cols.shape == (2048, (len(index) + 63) // 64)
    assert np.array_equal(freq, np.unpackbits(pattern.view(np.uint8), axis=1, bitorder="little").sum(0))
    qmol = substructure_query(q)
    qpat = _query_pattern(qmol)
    feat = np.asarray(index.arrays["molfeat"])
    qfeat = query_requirements(qmol, list(index.header["molfeat"]))
    qbits = np.flatnonzero(np.unpackbits(qpat.view(np.uint8), bitorder="little"))
    qbits = qbits[np.argsort(freq[qbits], kind="stable")].astype(np.int64)
    n = len(index)
    mask = np.zeros(n, np.bool_)
    mask[::3] = True
    for use_mask in (False, True):
        rows = np.empty(n, np.int64)
        k_row, _ = K.substructure_screen(pattern, qpat, 0, n, mask, use_mask, rows, feat, qfeat, True)
        for n_col_bits in (0, 1, 6, len(qbits)):  # rows checked row-wise after this many rarest columns
            got, word = [], 0
            while word < cols.shape[1]:  # small output blocks: the scan resumes at the right word
                buf = np.empty(64 + 37, np.int64)
                k, word = K.substructure_screen_columns(cols, qbits, n, word, cols.shape[1], mask, use_mask, buf,
                                                        feat, qfeat, True, pattern, qpat, n_col_bits)
                got.extend(buf[:k].tolist())
            assert got == rows[:k_row].tolist(), n_col_bits
