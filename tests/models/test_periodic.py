"""Periodic force fields: stress = (1/V) dE/d(strain) by finite differences in orthorhombic and triclinic cells,
supercells are extensive, cutoffs beyond half the cell (several images of a pair) agree with a supercell that needs
no such images, float32 against float64."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.io import read

from compscope.data import AtomicGraph
from compscope.data import keys as K
from compscope.models import build_model
from compscope.testing import (
    assert_e3_equivariant_pbc,
    assert_forces_are_gradients,
    assert_stress_is_strain_derivative,
    assert_supercell_extensive,
)

from ..conftest import FIXTURES

R_MAX = 4.0
CELLS = {
    "orthorhombic": np.diag([4.6, 5.3, 6.1]),
    "triclinic": np.array([[5.2, 0.0, 0.0], [2.3, 4.7, 0.0], [-1.4, 1.9, 5.0]]),
}


def _model(dtype):
    torch.manual_seed(0)
    m = build_model(preset="tiny", species=[1, 8], r_max=R_MAX, scale=0.5, atomic_energies=[-13.6, -432.0])
    with torch.no_grad():  # non-trivial per-element scales and shifts
        m.element_scale.copy_(torch.tensor([0.8, 1.3]))
        m.element_shift.copy_(torch.tensor([-0.2, 0.4]))
    return m.to(dtype).eval()


def _water_like(cell, seed=0, n_mol=4):
    """n_mol H2O-ish triples at random, atoms at least 0.9 Å apart (minimum image), in ``cell``."""
    rng = np.random.default_rng(seed)
    inv = np.linalg.inv(cell)
    pos = []
    while len(pos) < 3 * n_mol:
        p = rng.uniform(0, 1, 3) @ cell
        ok = True
        for q in pos:
            d = p - q
            d -= np.round(d @ inv) @ cell
            ok &= np.linalg.norm(d) > 0.9
        if ok:
            pos.append(p)
    return Atoms("OH2" * n_mol, positions=np.array(pos), cell=cell, pbc=True)


@pytest.mark.parametrize("kind", list(CELLS))
def test_stress_is_strain_derivative(kind):
    """Float64 finite differences of E under the nine strain components; R_MAX = 4 Å exceeds half these cells."""
    model = _model(torch.float64)
    atoms = _water_like(CELLS[kind])
    g = AtomicGraph.from_atoms(atoms, R_MAX, energy_key=None, forces_key=None, dtype=torch.float64)
    assert_stress_is_strain_derivative(model, g)
    assert_forces_are_gradients(model, g, n_atoms=2)
    assert_e3_equivariant_pbc(model, g)
    stress = model(g, compute_stress=True)[K.STRESS][0].detach()
    assert float(stress.abs().max()) > 1e-4  # a test on a zero stress would prove nothing


def test_stress_check_catches_a_wrong_stress():
    model = _model(torch.float64)

    class Wrong(torch.nn.Module):
        cutoff = R_MAX

        def forward(self, graph, compute_forces=True, compute_stress=False):
            out = model(graph, compute_forces, compute_stress)
            if compute_stress:
                out[K.STRESS] = out[K.STRESS] * 1.02
            return out

    g = AtomicGraph.from_atoms(_water_like(CELLS["triclinic"]), R_MAX, energy_key=None, forces_key=None,
                               dtype=torch.float64)
    with pytest.raises(AssertionError, match="stress"):
        assert_stress_is_strain_derivative(Wrong(), g)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("kind", list(CELLS))
def test_supercell_is_extensive(kind, dtype):
    assert_supercell_extensive(_model(dtype), _water_like(CELLS[kind], seed=1), repeats=(2, 1, 3), dtype=dtype)


def test_cutoff_beyond_half_the_cell_matches_a_big_enough_supercell():
    """A 4 Å cutoff in a cell whose planes are 2.9 Å apart: the small cell's energy per copy equals a 3x3x3
    supercell's, in which no pair needs more than its nearest image."""
    cell = np.array([[3.0, 0.0, 0.0], [1.1, 3.2, 0.0], [0.4, -0.6, 3.1]])
    atoms = _water_like(cell, seed=2, n_mol=1)
    model = _model(torch.float64)
    small = AtomicGraph.from_atoms(atoms, R_MAX, energy_key=None, forces_key=None, dtype=torch.float64)
    pairs = small.edge_index.T.tolist()
    assert max(pairs.count(p) for p in pairs) > 1  # the same pair through several images
    assert_supercell_extensive(model, atoms, repeats=(3, 3, 3))


def test_float32_stress_matches_float64():
    atoms = read(FIXTURES / "water" / "water_test_4.extxyz", 0)
    out = {}
    for dtype in (torch.float32, torch.float64):
        g = AtomicGraph.from_atoms(atoms, R_MAX, energy_key=None, forces_key=None, dtype=dtype)
        out[dtype] = {k: v.detach().double() for k, v in _model(dtype)(g, compute_stress=True).items()}
    s32, s64 = out[torch.float32][K.STRESS], out[torch.float64][K.STRESS]
    assert float((s32 - s64).abs().max()) <= 1e-4 * float(s64.abs().max())
    f32, f64 = out[torch.float32][K.FORCES], out[torch.float64][K.FORCES]
    assert float((f32 - f64).abs().max()) <= 1e-4 * float(f64.abs().max())
    # the float64-accumulated total keeps sub-meV accuracy on ~ -3e4 eV even in float32
    assert abs(float(out[torch.float32][K.ENERGY] - out[torch.float64][K.ENERGY])) < 5e-3
