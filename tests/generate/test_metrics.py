"""EDM metrics: bond rule, stability, validity; real QM9 must reproduce EDM's published data row."""

import time

import numpy as np
import pytest

from compscope.generate import metrics
from compscope.generate._bonds import thresholds_pm


def _pair(a, b, d):
    pos = np.array([[[0.0, 0, 0], [d, 0, 0]]])
    return int(metrics.bond_orders(pos, np.array([[a, b]]), np.ones((1, 2), bool))[0, 0, 1])


def test_bond_order_rule_matches_edm_tables():
    H, C, N, O, F = range(5)
    assert _pair(C, C, 1.54) == 1 and _pair(C, C, 1.33) == 2 and _pair(C, C, 1.20) == 3
    assert _pair(C, C, 1.64) == 0  # 154 + 10 pm margin, strict <
    assert _pair(C, C, 1.6399) == 1
    assert _pair(C, O, 1.22) == 2 and _pair(C, O, 1.15) == 3
    assert _pair(N, O, 1.20) == 2  # no N-O triple bond in the tables
    assert _pair(C, H, 1.09) == 1 and _pair(H, H, 0.84) == 0 and _pair(H, H, 0.83) == 1
    assert _pair(C, F, 1.20) == 1  # single only
    t = thresholds_pm()
    assert np.allclose(t, t.transpose(0, 2, 1))


def test_stability_and_validity_on_textbook_molecules():
    # ethene C=C 1.33, C-H 1.09 with proper geometry, and a broken copy with one H moved away
    c = 1.33 / 2
    ethene = (np.array([[-c, 0, 0], [c, 0, 0], [-1.23, 0.93, 0], [-1.23, -0.93, 0], [1.23, 0.93, 0],
                        [1.23, -0.93, 0]]), np.array([1, 1, 0, 0, 0, 0]))
    broken = (ethene[0].copy(), ethene[1])
    broken[0][5] = [6.0, 6.0, 6.0]
    m = metrics.evaluate([ethene, broken, ethene])
    assert m.molecule_stability == pytest.approx(2 / 3)
    assert m.atom_stability == pytest.approx(16 / 18)  # broken: lone H and its carbon are unstable
    # the broken copy still sanitises (a vinyl radical + a lone H): valid, but not connected
    assert m.validity == pytest.approx(1.0)
    assert m.connected_validity == pytest.approx(2 / 3)
    rep = metrics.analyse([ethene, broken])
    assert rep.smiles[0] == "[H]C([H])=C([H])[H]" and rep.connected[0]  # explicit H, as EDM's SMILES
    assert rep.smiles[1] != rep.smiles[0] and not rep.connected[1]
    assert m.uniqueness == pytest.approx(2 / 3)


def test_novelty_and_uniqueness_counts():
    c = 1.33 / 2
    ethene = (np.array([[-c, 0, 0], [c, 0, 0], [-1.23, 0.93, 0], [-1.23, -0.93, 0], [1.23, 0.93, 0],
                        [1.23, -0.93, 0]]), np.array([1, 1, 0, 0, 0, 0]))
    water = (np.array([[0.0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]]), np.array([3, 0, 0]))
    m = metrics.evaluate([ethene, ethene, water], train_smiles={"[H]O[H]"})
    assert m.validity == 1.0 and m.uniqueness == pytest.approx(2 / 3)
    assert m.novelty == pytest.approx(0.5)  # C=C is novel, O is not
    assert "novel 50.0 %," in str(m)
    assert "novel n/a (no training SMILES given)," in str(metrics.evaluate([ethene, water]))
    with pytest.raises(ValueError, match="no molecules"):
        metrics.evaluate([])


def test_qm9_reproduces_edm_data_row(qm9, splits):
    """EDM Table 1 'Data' row: atom stable 99.0 %, mol stable 95.2 %, valid 97.7 % (+-0.5 points)."""
    rows = splits["train"][:10_000]
    mols = [(x.numpy(), t.numpy()) for x, t in qm9.molecules(rows)]
    t0 = time.perf_counter()
    m = metrics.evaluate(mols)
    seconds = time.perf_counter() - t0
    assert abs(100 * m.atom_stability - 99.0) <= 0.5, m
    assert abs(100 * m.molecule_stability - 95.2) <= 0.5, m
    assert abs(100 * m.validity - 97.7) <= 0.5, m
    assert seconds < 60, f"10,000 molecules took {seconds:.1f} s"


def test_analyse_keeps_input_order_across_size_sorted_chunks(small_molecules):
    """Chunks are formed by molecule size; per-molecule results must still come back in input order."""
    rng = np.random.default_rng(0)
    mols = list(small_molecules)
    mols += [(x + rng.normal(0, 0.3, x.shape), t) for x, t in small_molecules]  # some invalid / unstable
    x, t = small_molecules[5]
    mols.append((np.concatenate([x, x + 8.0]), np.concatenate([t, t])))  # two fragments
    h5 = 1.09 * np.array([[1.0, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1]])
    mols.append((np.vstack([np.zeros((1, 3)), h5]), np.array([1, 0, 0, 0, 0, 0])))  # CH5: RDKit refuses
    mols = [mols[i] for i in rng.permutation(len(mols))]
    rep = metrics.analyse(mols, chunk=3)
    one = [metrics.analyse([m]) for m in mols]
    assert rep.smiles == [o.smiles[0] for o in one]
    for f in ("n_atoms", "atom_stable", "mol_stable", "connected"):
        assert getattr(rep, f).tolist() == [getattr(o, f)[0] for o in one], f
    assert not rep.connected.all() and any(s is None for s in rep.smiles) and rep.mol_stable.any()
    assert len(metrics.analyse(mols, rdkit=False).smiles) == 0


def test_reference_smiles_for_novelty_are_built_and_cached(tmp_path, qm9, splits, monkeypatch):
    """EDM's retrieve_qm9_smiles: SMILES of a split via our bond rule + RDKit, cached as text."""
    from compscope.generate import _reference

    monkeypatch.setattr(_reference, "load_qm9", lambda path=None: qm9)
    ref = _reference.qm9_train_smiles(tmp_path, split="test")
    cache = tmp_path / "qm9" / "test_smiles_edm_v1.txt"
    assert cache.exists() and 12_000 < len(ref) <= 13_083
    assert _reference.qm9_train_smiles(tmp_path, split="test") == ref  # from the cache
    mols = [(x.numpy(), t.numpy()) for x, t in qm9.molecules(splits["test"][:300])]
    assert metrics.evaluate(mols, ref).novelty == 0.0
    other = [(x.numpy(), t.numpy()) for x, t in qm9.molecules(splits["train"][:300])]
    assert metrics.evaluate(other, ref).novelty > 0.9  # train and test molecules are distinct compounds


def test_molecule_grid_draws_real_molecules(small_molecules, tmp_path):
    from compscope.generate._plot import grid_entries, molecule_grid
    from compscope.generate.metrics import evaluate

    mols = list(small_molecules)
    drawn, legends = grid_entries(mols, n=6)
    assert len(drawn) == len(legends) == 6
    # QM9's first molecules: methane, ammonia, water, acetylene, HCN, formaldehyde; hydrogens implicit
    assert legends == ["C (stable)", "N (stable)", "O (stable)", "C#C (stable)", "C#N (stable)", "C=O (stable)"]
    assert [m.GetNumAtoms() for m in drawn] == [1, 1, 1, 2, 2, 2]
    png = molecule_grid(mols, tmp_path / "grid.png", evaluate(mols), n=6, title="fixture")
    assert png.stat().st_size > 5000
