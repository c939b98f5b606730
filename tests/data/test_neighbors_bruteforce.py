"""Neighbour lists against a brute-force O(N^2 x images) reference: periodic, skewed cells, cutoffs beyond half the
cell (several images of one pair), mixed periodicity and a liquid-water frame."""

import itertools

import numpy as np
import pytest
from ase.io import read

from compscope.data import neighbor_list

from ..conftest import FIXTURES


def brute_force(positions, cutoff, cell, pbc):
    """Every (sender, receiver, shift) with |r_recv - r_send + shift @ cell| < cutoff, by trying all images."""
    cell = np.asarray(cell, dtype=float)
    pbc = np.asarray(pbc, dtype=bool)
    # images needed along a: the cutoff over the distance between lattice planes (|a . b x c| / |b x c|)
    if pbc.any():
        heights = abs(np.linalg.det(cell)) / np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)
        reach = np.where(pbc, np.ceil(cutoff / heights).astype(int) + 1, 0)
    else:
        reach = np.zeros(3, dtype=int)
    out = set()
    for shift in itertools.product(*(range(-r, r + 1) for r in reach)):
        s = np.array(shift, dtype=float)
        d = positions[None, :, :] - positions[:, None, :] + s @ cell  # (send, recv, 3)
        send, recv = np.nonzero(np.linalg.norm(d, axis=-1) < cutoff)
        for i, j in zip(send.tolist(), recv.tolist()):
            if i != j or any(shift):
                out.add((i, j, shift))
    return out


def _check(positions, cutoff, cell, pbc, min_images: int | None = None):
    ei, shifts = neighbor_list(positions, cutoff, cell=cell, pbc=pbc)
    got = {(int(i), int(j), tuple(int(v) for v in s)) for i, j, s in zip(ei[0], ei[1], shifts)}
    assert len(got) == ei.shape[1], "duplicate edges"
    want = brute_force(positions, cutoff, cell, pbc)
    assert got == want, f"missing {sorted(want - got)[:5]}, extra {sorted(got - want)[:5]}"
    assert np.all(np.diff(ei[1]) >= 0), "edges must be sorted by receiver"
    if min_images is not None:  # the same (sender, receiver) pair through several images
        pairs, counts = np.unique(ei.T, axis=0, return_counts=True)
        assert counts.max() >= min_images
    return ei


def _random(n, cell, seed):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, (n, 3)) @ np.asarray(cell)


ORTHO = np.diag([5.0, 6.5, 8.0])
SKEWED = np.array([[6.0, 0.0, 0.0], [4.1, 5.2, 0.0], [-2.7, 3.1, 5.6]])  # strongly sheared (angles far from 90)


@pytest.mark.parametrize("cell", [ORTHO, SKEWED], ids=["orthorhombic", "skewed"])
@pytest.mark.parametrize("cutoff", [2.4, 4.5, 7.0], ids=lambda c: f"rc{c}")
def test_matches_brute_force(cell, cutoff):
    pos = _random(14, cell, seed=int(cutoff * 10))
    # beyond the shortest lattice vector every atom sees its own images (i, i, +S) and (i, i, -S): all listed
    many = cutoff > np.linalg.norm(cell, axis=1).min()
    _check(pos, cutoff, cell, True, min_images=2 if many else None)


def test_positions_outside_the_cell():
    """Unwrapped positions (MD between neighbour-list rebuilds) give the same neighbours, with other shifts."""
    pos = _random(10, SKEWED, seed=1)
    moved = pos + np.array([2, -1, 3]) @ SKEWED  # whole lattice vectors away
    moved[3] -= SKEWED[0] * 2
    _check(moved, 4.0, SKEWED, True)


def test_mixed_periodicity_and_molecule():
    pos = _random(12, SKEWED, seed=2)
    _check(pos, 5.0, SKEWED, [True, False, True])
    _check(pos, 3.0, np.zeros((3, 3)), False)


def test_single_atom_sees_its_own_images():
    cell = np.array([[2.0, 0.0, 0.0], [1.0, 1.8, 0.0], [0.3, 0.4, 2.1]])
    ei = _check(np.zeros((1, 3)), 4.3, cell, True)
    assert ei.shape[1] > 20 and (ei == 0).all()


def test_liquid_water_frame():
    """A 192-atom water frame at the benchmark's cutoff and at one above half the 12.44 Å cell."""
    atoms = read(FIXTURES / "water" / "water_test_4.extxyz", 0)
    for cutoff in (5.0, 6.6):
        ei = _check(atoms.positions, cutoff, atoms.cell.array, atoms.pbc)
        assert 40 < ei.shape[1] / len(atoms) < 140
