"""Index build, append, file format checks and bad input files."""

from __future__ import annotations

import gzip
import json
import shutil

import numpy as np
import pytest

from compscope.errors import ResumeError
from compscope.search import (
    BuildInterrupted,
    FingerprintSpec,
    IndexFormatError,
    InputFileError,
    SearchIndex,
    append_index,
    build_index,
)

from ._data import LIBRARY, library_records


def test_build_stores_canonical_smiles_inchikeys_and_props(index):
    from rdkit import Chem
    from rdkit.Chem import Descriptors

    recs = library_records()
    assert len(index) == len(recs) == 3000
    hit = index.exact(recs[123][0])
    assert hit.ids == [recs[123][1]]
    mol = Chem.MolFromSmiles(recs[123][0])
    assert hit.smiles == [Chem.MolToSmiles(mol)]
    assert index.inchikeys(hit.positions) == [Chem.MolToInchiKey(mol)]
    assert hit.properties["mw"][0] == pytest.approx(Descriptors.MolWt(mol), rel=1e-5)
    assert hit.properties["hbd"][0] == Chem.rdMolDescriptors.CalcNumHBD(mol)
    pop = np.unpackbits(np.asarray(index.fps).view(np.uint8), axis=1).sum(1)
    assert np.all(np.diff(pop) >= 0), "rows must be sorted by popcount"
    assert np.array_equal(np.asarray(index.bins)[pop[:5]] <= np.arange(5), np.ones(5, bool))


def test_parallel_build_equals_serial_and_reports_invalid_lines(tmp_path):
    recs = library_records()[:400]
    src = tmp_path / "mix.smi"
    lines = [f"{s} {i}" for s, i in recs]
    lines.insert(10, "C1CC bad_ring")  # line 11 (1-based)
    lines.insert(100, "Xx(C) bad_atom")  # line 101
    src.write_text("\n".join(lines) + "\n")
    r1 = build_index(src, tmp_path / "a.csi", n_jobs=1, chunk_size=100)
    r2 = build_index(src, tmp_path / "b.csi", n_jobs=2, chunk_size=100)
    assert r1.n_molecules == r2.n_molecules == 400
    assert r1.n_invalid == r2.n_invalid == 2
    assert [ln for ln, _ in r2.invalid] == [11, 101]
    assert (tmp_path / "b.csi" / "invalid.tsv").read_text().splitlines()[0].startswith("11\tC1CC")
    a, b = SearchIndex.open(tmp_path / "a.csi"), SearchIndex.open(tmp_path / "b.csi")
    assert np.array_equal(a.fps, b.fps) and np.array_equal(a.rows, b.rows)


def test_csv_columns_and_gzip(tmp_path):
    recs = library_records()[:50]
    src = tmp_path / "mols.csv.gz"
    with gzip.open(src, "wt") as fh:
        fh.write("name,weight,Structure\n")
        for s, i in recs:
            fh.write(f"{i},1.0,{s}\n")
    build_index(src, tmp_path / "c.csi", smiles_col="Structure", id_col="name", n_jobs=1)
    idx = SearchIndex.open(tmp_path / "c.csi")
    assert idx.exact(recs[7][0]).ids == [recs[7][1]]
    with pytest.raises(InputFileError, match="no column 'nope'"):
        build_index(src, tmp_path / "d.csi", smiles_col="nope", n_jobs=1)


def test_append_equals_full_build(tmp_path):
    recs = library_records()[:300]
    (tmp_path / "p1.smi").write_text("".join(f"{s} {i}\n" for s, i in recs[:200]))
    (tmp_path / "p2.smi").write_text("".join(f"{s} {i}\n" for s, i in recs[200:]) + "not_a_smiles x\n")
    (tmp_path / "all.smi").write_text("".join(f"{s} {i}\n" for s, i in recs))
    build_index(tmp_path / "p1.smi", tmp_path / "inc.csi", n_jobs=1)
    rep = append_index(tmp_path / "inc.csi", tmp_path / "p2.smi", n_jobs=1)
    assert rep.n_added == 100 and rep.n_invalid == 1 and rep.n_molecules == 300
    build_index(tmp_path / "all.smi", tmp_path / "full.csi", n_jobs=1)
    inc, full = SearchIndex.open(tmp_path / "inc.csi"), SearchIndex.open(tmp_path / "full.csi")
    assert np.array_equal(inc.fps, full.fps) and np.array_equal(inc.rows, full.rows)
    q = recs[250][0]
    assert inc.top_k(q, 5).ids == full.top_k(q, 5).ids
    assert inc.exact(q, by="inchikey").ids == [recs[250][1]]


@pytest.mark.parametrize("spec", [FingerprintSpec("fcfp", 2, 1024), FingerprintSpec("maccs"),
                                  FingerprintSpec("morgan", 3, 4096, counts=True)])
def test_fingerprint_options(tmp_path, spec):
    from rdkit import Chem, DataStructs
    from rdkit.Chem import rdFingerprintGenerator, rdMolDescriptors

    recs = library_records()[:200]
    (tmp_path / "m.smi").write_text("".join(f"{s} {i}\n" for s, i in recs))
    build_index(tmp_path / "m.smi", tmp_path / "f.csi", spec, n_jobs=1, pattern=False, inchikey=False)
    idx = SearchIndex.open(tmp_path / "f.csi")
    assert idx.spec == spec
    mols = [Chem.MolFromSmiles(s) for s, _ in recs]
    if spec.kind == "maccs":
        fps = [rdMolDescriptors.GetMACCSKeysFingerprint(m) for m in mols]
    else:
        kw = {"atomInvariantsGenerator": rdFingerprintGenerator.GetMorganFeatureAtomInvGen()} \
            if spec.kind == "fcfp" else {}
        gen = rdFingerprintGenerator.GetMorganGenerator(radius=spec.radius, fpSize=spec.nbits,
                                                        countSimulation=spec.counts, **kw)
        fps = [gen.GetFingerprint(m) for m in mols]
    ref = DataStructs.BulkTanimotoSimilarity(fps[3], fps)
    r = idx.similarity(recs[3][0], threshold=0.3)
    expect = {recs[i][1]: s for i, s in enumerate(ref) if s >= 0.3}
    assert set(r.ids) == set(expect)
    for i, s in zip(r.ids, r.scores):
        assert s == pytest.approx(expect[i], abs=1e-6)


def test_not_smiles_files_are_rejected(tmp_path):
    xyz = tmp_path / "water.xyz"
    xyz.write_text("3\nwater\nO 0 0 0\nH 0 0 1\nH 0 1 0\n" * 20)
    with pytest.raises(InputFileError, match="does not look like a SMILES file"):
        build_index(xyz, tmp_path / "x.csi", n_jobs=1)
    binary = tmp_path / "blob.smi"
    binary.write_bytes(bytes(range(256)) * 10)
    with pytest.raises(InputFileError, match="binary file"):
        build_index(binary, tmp_path / "y.csi", n_jobs=1)
    empty = tmp_path / "empty.smi"
    empty.write_text("\n\n")
    with pytest.raises(InputFileError, match="no valid SMILES"):
        build_index(empty, tmp_path / "z.csi", n_jobs=1)
    with pytest.raises(InputFileError, match="does not exist"):
        build_index(tmp_path / "missing.smi", tmp_path / "w.csi", n_jobs=1)
    bad_gz = tmp_path / "cut.smi.gz"
    data = gzip.compress("".join(f"{s} {i}\n" for s, i in library_records()).encode())
    bad_gz.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFileError, match="truncated"):
        build_index(bad_gz, tmp_path / "v.csi", n_jobs=1)


def test_existing_output_needs_overwrite(index_path, tmp_path):
    with pytest.raises(IndexFormatError, match="--overwrite"):
        build_index(LIBRARY, index_path, n_jobs=1)


def test_truncated_and_foreign_indexes(index_path, tmp_path):
    bad = tmp_path / "trunc.csi"
    shutil.copytree(index_path, bad)
    data = (bad / "fps.npy").read_bytes()
    (bad / "fps.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(IndexFormatError, match="truncated"):
        SearchIndex.open(bad)
    foreign = tmp_path / "foreign.csi"
    foreign.mkdir()
    (foreign / "header.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(IndexFormatError, match="not a compscope search index"):
        SearchIndex.open(foreign)
    f = tmp_path / "file.csi"
    f.write_bytes(b"\x89HDF\r\n")
    with pytest.raises(IndexFormatError, match="not a compscope search index"):
        SearchIndex.open(f)
    missing = tmp_path / "missing.csi"
    shutil.copytree(index_path, missing)
    (missing / "fold.npy").unlink()
    with pytest.raises(IndexFormatError, match="missing"):
        SearchIndex.open(missing)
    newer = tmp_path / "newer.csi"
    shutil.copytree(index_path, newer)
    h = json.loads((newer / "header.json").read_text())
    h["version"] = 99
    (newer / "header.json").write_text(json.dumps(h))
    with pytest.raises(IndexFormatError, match="version 99"):
        SearchIndex.open(newer)


def test_interrupted_build_resumes_from_checkpoint(tmp_path, monkeypatch):
    from compscope.search import _build

    recs = library_records()[:500]
    src = tmp_path / "m.smi"
    src.write_text("".join(f"{s} {i}\n" for s, i in recs))
    real, calls = _build.process_chunk, []

    def dies_after_three(task):  # fault injection: the 4th chunk "crashes" the build
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(task)

    monkeypatch.setattr(_build, "process_chunk", dies_after_three)
    with pytest.raises(BuildInterrupted, match="stopped by SIGINT; 3 finished chunks") as err:  # Ctrl-C: kept
        build_index(src, tmp_path / "r.csi", n_jobs=1, chunk_size=100)
    assert "--resume" in err.value.hint and err.value.exit_code == 130
    parts = sorted(p.name for p in (tmp_path / "r.csi.parts").glob("chunk_*.npz"))
    assert parts == [f"chunk_{j:07d}.npz" for j in range(3)] and not (tmp_path / "r.csi").exists()
    calls.clear()
    monkeypatch.setattr(_build, "process_chunk", lambda t: (calls.append(1), real(t))[1])
    rep = build_index(src, tmp_path / "r.csi", n_jobs=1, chunk_size=100, resume=True)
    assert len(calls) == 2, "only the two unfinished chunks are recomputed"
    assert rep.n_molecules == 500 and not (tmp_path / "r.csi.parts").exists()
    build_index(src, tmp_path / "full.csi", n_jobs=1, chunk_size=100, checkpoint=False)
    a, b = SearchIndex.open(tmp_path / "r.csi"), SearchIndex.open(tmp_path / "full.csi")
    assert np.array_equal(a.fps, b.fps) and a.top_k(recs[7][0], 5).ids == b.top_k(recs[7][0], 5).ids
    # a checkpoint from other settings is refused, not silently mixed in
    monkeypatch.setattr(_build, "process_chunk", dies_after_three)
    calls.clear()
    with pytest.raises(BuildInterrupted):
        build_index(src, tmp_path / "s.csi", n_jobs=1, chunk_size=100)
    with pytest.raises(ResumeError, match="changed settings of the interrupted build.*chunk_size: 100 -> 50"):
        build_index(src, tmp_path / "s.csi", n_jobs=1, chunk_size=50, resume=True)


def _reference_molfeat(mol) -> list[int]:
    """The ``molfeat`` row by plain per-atom/per-bond loops (the build's first implementation)."""
    from compscope.search._molecules import ELEMENT_COLUMN, FLAG_RADICAL, MOLFEAT, OTHER_COLUMN, ring_systems

    f = [0] * len(MOLFEAT)
    ring_bonds, arom_bonds = [], []
    for b in mol.GetBonds():
        if b.IsInRing():
            ab = (b.GetBeginAtomIdx(), b.GetEndAtomIdx())
            ring_bonds.append(ab)
            if b.GetBeginAtom().GetIsAromatic() and b.GetEndAtom().GetIsAromatic():
                arom_bonds.append(ab)
    for a in mol.GetAtoms():
        z = a.GetAtomicNum()
        f[ELEMENT_COLUMN.get(z, OTHER_COLUMN)] += 1
        if a.GetNumRadicalElectrons():
            f[0] |= FLAG_RADICAL
        if a.GetIsAromatic():
            f[4] += 1
            f[18] += z == 7
    f[1] = mol.GetNumAtoms()
    f[2] = len({i for ab in ring_bonds for i in ab})
    f[3] = len(ring_bonds)
    systems = ring_systems(mol.GetNumAtoms(), ring_bonds)
    if systems:
        f[5] = max(a for a, _ in systems)
        f[6] = max(r for _, r in systems)
    if arom_bonds:
        f[17] = max(a for a, _ in ring_systems(mol.GetNumAtoms(), arom_bonds))
    return f


EDGE_SMILES = ["C1CC2CCC1C2", "c1ccc2c(c1)-c1ccccc1-2", "[CH3]", "[CH2]CC", "C12C3C4C1C5C2C3C45", "C1CC11CC1",
               "[2H]C", "[H][H]", "*c1ccccc1", "c1cc2ccc3cccc4ccc(c1)c2c34", "C1CCCCCCCCCCCCCCCCCC1", "[Na+].[Cl-]",
               "O=C1C=CC(=O)C=C1", "c1ccc2c(c1)oc1ccccc12", "[se]1cccc1", "B1OB(O1)", "N#N", "C1CC2(C1)CC2",
               "[Si]1CCCC1", "C[N+](C)(C)C", "c1ccn2cccc2c1", "C1=CC2=CC=CC2=C1", "[13CH3]c1cc[nH]c1", "[O]O",
               "c1ccc2cc3ccccc3cc2c1.c1ccncc1", "C1CC2CC1C1CCCC21", "FC(F)(F)[I+][O-]", "[Cu+2].[O-]C(=O)C"]


def test_molfeat_equals_per_atom_loop():
    from rdkit import Chem

    from compscope.search._molecules import mol_features

    smiles = [s for s, _ in library_records()] + EDGE_SMILES
    for s in smiles:
        mol = Chem.MolFromSmiles(s)
        assert mol_features(mol, s) == mol_features(mol) == _reference_molfeat(mol), s


def test_build_columns_equal_plain_rdkit(index):
    """Every column of the default build equals the same feature computed by plain RDKit calls."""
    from rdkit import Chem, DataStructs
    from rdkit.Chem import rdFingerprintGenerator
    from rdkit.Chem import rdMolDescriptors as D

    from compscope.search._format import unpack_strings

    recs = library_records()
    pos = np.arange(0, len(index), 3)  # every third row keeps the test short
    a = {k: np.asarray(v)[pos] for k, v in index.arrays.items() if k in ("rows", "fps", "pattern", "molfeat", "props")}
    rows = a["rows"]  # position -> input row
    mols = [Chem.MolFromSmiles(recs[r][0]) for r in rows]
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)

    def bits(ebv, n):
        arr = np.zeros(n, np.uint8)
        DataStructs.ConvertToNumpyArray(ebv, arr)
        return np.packbits(arr, bitorder="little").view("<u8")

    full = index.arrays
    smiles = unpack_strings(full["smiles_blob"], full["smiles_off"])
    ids = unpack_strings(full["ids_blob"], full["ids_off"])
    assert [smiles[p] for p in pos] == [Chem.MolToSmiles(m) for m in mols]
    assert [ids[p] for p in pos] == [recs[r][1] for r in rows]
    assert np.array_equal(a["fps"], np.stack([bits(gen.GetFingerprint(m), 2048) for m in mols]))
    assert np.array_equal(a["pattern"], np.stack([bits(Chem.PatternFingerprint(m, 2048), 2048) for m in mols]))
    assert np.array_equal(a["molfeat"], np.minimum(np.asarray([_reference_molfeat(m) for m in mols]), 255))
    assert index.inchikeys(pos) == [Chem.MolToInchiKey(m) for m in mols]
    props = np.asarray([(D._CalcMolWt(m), D.CalcCrippenDescriptors(m)[0], D.CalcNumHBA(m), D.CalcNumHBD(m),
                         D.CalcTPSA(m), D.CalcNumRotatableBonds(m), D.CalcNumRings(m)) for m in mols], np.float32)
    assert np.array_equal(a["props"], props)
