import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.neighborlist import neighbor_list as ase_nl

from compscope.data import AtomicGraph, neighbor_list


def _pairs(i, j, S):
    return sorted(zip(i.tolist(), j.tolist(), map(tuple, np.asarray(S).astype(int).tolist())))


def _compare(atoms, cutoff):
    ei, shifts = neighbor_list(atoms.positions, cutoff, cell=atoms.cell.array, pbc=atoms.pbc)
    i, j, S = ase_nl("ijS", atoms, cutoff)
    assert _pairs(ei[0], ei[1], shifts) == _pairs(i, j, S)
    # our vector convention: r[recv] - r[send] + S @ cell
    vec = atoms.positions[ei[1]] - atoms.positions[ei[0]] + shifts @ atoms.cell.array
    assert np.all(np.linalg.norm(vec, axis=1) < cutoff)
    return ei


def test_molecule_matches_ase():
    _compare(molecule("CH3CH2OH"), 2.0)


def test_triclinic_cell_matches_ase():
    rng = np.random.default_rng(0)
    cell = np.array([[5.0, 0.0, 0.0], [1.7, 4.6, 0.0], [-0.9, 1.3, 5.4]])
    atoms = Atoms("Si8", positions=rng.uniform(0, 4, (8, 3)), cell=cell, pbc=True)
    _compare(atoms, 3.5)


def test_cutoff_larger_than_cell():
    atoms = bulk("Cu", "fcc", a=3.6)  # one atom, cell vectors ~2.5 Å
    atoms.rattle(0.05, seed=1)
    ei = _compare(atoms, 6.0)
    assert ei.shape[1] > 50  # many periodic images of the same atom


def test_mixed_pbc():
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.pbc = [True, True, False]
    _compare(atoms, 4.0)


def test_nan_and_bad_cutoff():
    with pytest.raises(ValueError, match="NaN"):
        neighbor_list(np.array([[0, 0, 0], [np.nan, 0, 0]]), 2.0)
    with pytest.raises(ValueError, match="cutoff"):
        neighbor_list(np.zeros((2, 3)), 0.0)


def test_graph_from_periodic_atoms():
    atoms = bulk("Cu", "fcc", a=3.6) * (2, 2, 2)
    g = AtomicGraph.from_atoms(atoms, 3.0, energy_key=None, forces_key=None)
    assert g.num_edges == 8 * 12  # fcc: 12 nearest neighbours at 2.55 Å
    assert np.allclose(g.edge_vectors().norm(dim=-1).numpy(), 3.6 / np.sqrt(2))


def test_receiver_order_equals_lexsort():
    """Big lists are ordered by an O(E) counting sort: the same permutation as np.lexsort (ties kept)."""
    from compscope.data._nl_sort import receiver_order

    rng = np.random.default_rng(0)
    send, recv = rng.integers(0, 300, 20000), rng.integers(0, 300, 20000)  # many (send, recv) ties
    assert np.array_equal(receiver_order(send, recv, 300), np.lexsort((send, recv)))
    # a box with more than 4096 edges takes that path: sorted by receiver, then sender
    pos = rng.uniform(0, 12.0, (400, 3))
    ei, shifts = neighbor_list(pos, 4.0, np.eye(3) * 12.0, True)
    assert ei.shape[1] > 4096
    key = ei[1] * 400 + ei[0]
    assert np.all(np.diff(key) >= 0)
