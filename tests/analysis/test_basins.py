"""Basins on the Ramachandran torus, dihedral angles, first visits and entries."""

import math

import numpy as np
import pytest
import torch

from compscope.analysis import (
    ALANINE_DIPEPTIDE_BASINS,
    ALANINE_DIPEPTIDE_PHI,
    ALANINE_DIPEPTIDE_PSI,
    AnalysisInputError,
    Basin,
    backbone_dihedrals,
    basin_entries,
    basin_indicator,
    basin_labels,
    basin_populations,
    dihedral_angles,
    first_visit_times,
    in_interval,
)
from compscope.integrations.openmm_systems import ALANINE_PHI, ALANINE_PSI


def test_alanine_dihedral_atoms_match_the_openmm_system():
    assert ALANINE_DIPEPTIDE_PHI == ALANINE_PHI and ALANINE_DIPEPTIDE_PSI == ALANINE_PSI


def test_sampling_names_still_work():
    from compscope.sampling import ALA2_PHI, ALA2_PSI, SamplingInputError
    from compscope.sampling import dihedral_angles as sampling_dihedrals

    assert (ALA2_PHI, ALA2_PSI) == (ALANINE_DIPEPTIDE_PHI, ALANINE_DIPEPTIDE_PSI)
    x = np.random.default_rng(0).standard_normal((5, 22, 3))
    np.testing.assert_allclose(sampling_dihedrals(x, ALA2_PHI), dihedral_angles(x, ALA2_PHI))
    with pytest.raises(SamplingInputError):
        sampling_dihedrals(x, (0, 1, 2, 99))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dihedral_of_a_rotated_frame_and_gradient(dtype):
    ang = torch.linspace(-3.0, 3.0, 7, dtype=torch.float64)
    x = torch.zeros(7, 4, 3, dtype=torch.float64)
    x[:, 0] = torch.tensor([1.0, 0, 0])
    x[:, 2] = torch.tensor([0, 1.0, 0])
    x[:, 3] = torch.stack([torch.cos(ang), torch.ones(7), -torch.sin(ang)], -1)  # rotate l about the j-k axis
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    q = q * torch.linalg.det(q)  # a proper rotation keeps the sign of the dihedral
    y = (x @ q.T + 1.5).to(dtype).requires_grad_(True)
    d = dihedral_angles(y, (0, 1, 2, 3))
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(d.double(), ang, atol=tol, rtol=0)
    d.sum().backward()
    assert torch.isfinite(y.grad).all()
    phi, psi = backbone_dihedrals(np.random.default_rng(1).standard_normal((3, 22, 3)))
    assert phi.shape == psi.shape == (3,)


def test_intervals_wrap_and_partition_the_torus():
    assert in_interval([2.5, -3.0, -0.1, 0.0, 1.0], (2.2, 0.0)).tolist() == [True, True, True, False, False]
    g = np.linspace(-math.pi, math.pi, 181)[:-1]
    phi, psi = (a.ravel() for a in np.meshgrid(g, g))
    lab = basin_labels(phi, psi)
    assert (lab >= 0).all()  # every point is in exactly one of the three basins
    counts = sum(b.contains(phi, psi).astype(int) for b in ALANINE_DIPEPTIDE_BASINS)
    assert (counts == 1).all()
    assert basin_indicator([-1.5, 1.0, 2.5, -3.1, 2.19]).tolist() == [0, 1, 0, 0, 1]
    assert basin_labels([-3.1, -1.4, 1.0], [3.0, -0.5, -1.0]).tolist() == [0, 1, 2]


def test_first_visits_entries_populations():
    lab = np.array([[0, 0, 2, 2, 0, 2, 1], [1, 1, 1, 1, 1, 1, 1]])
    t = first_visit_times(lab, 3, dt=0.5)
    np.testing.assert_array_equal(t, [[0.0, 3.0, 1.0], [np.inf, 0.0, np.inf]])
    assert basin_entries(lab, 2).tolist() == [2, 0]
    np.testing.assert_allclose(basin_populations(lab, 3), [3 / 14, 8 / 14, 3 / 14])


def test_bad_input():
    with pytest.raises(AnalysisInputError, match="NaN"):
        basin_indicator([np.nan])
    with pytest.raises(AnalysisInputError, match="psi"):
        Basin("x", psi=(0, 1)).contains([0.0])
    with pytest.raises(AnalysisInputError, match="out of range"):
        dihedral_angles(np.zeros((1, 3, 3)), (0, 1, 2, 3))
    with pytest.raises(AnalysisInputError, match="shape"):
        basin_labels([0.0, 1.0], [0.0])


def test_weighted_populations_equal_repeated_frames():
    rng = np.random.default_rng(4)
    lab = rng.integers(-1, 3, (2, 50))  # -1: in no basin
    counts = rng.integers(0, 5, lab.shape)
    rep = np.repeat(lab.ravel(), counts.ravel())
    np.testing.assert_allclose(basin_populations(lab, 3, weights=counts), basin_populations(rep, 3), atol=1e-14)
    np.testing.assert_allclose(basin_populations(lab, 3, weights=np.ones(lab.shape)), basin_populations(lab, 3))
    with pytest.raises(AnalysisInputError, match="weights"):
        basin_populations(lab, 3, weights=-counts)
    with pytest.raises(AnalysisInputError, match="weights"):
        basin_populations(lab, 3, weights=np.ones(7))
