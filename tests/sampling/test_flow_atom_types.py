"""E(n) flow with atom types (molecules): invariances that remain, identity of atoms, chirality folding."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from compscope.errors import CompscopeError
from compscope.sampling import dihedral_angles
from compscope.sampling._flow import EquivariantCNF, fold_chirality


def _orth(seed, det):
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q * (det * torch.sign(torch.linalg.det(q)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_typed_flow_is_O3_invariant_but_tells_atoms_apart(dtype):
    torch.manual_seed(0)
    flow = EquivariantCNF(5, 3, hidden=16, num_layers=2, n_steps=3, init_gain=0.5,
                          atom_types=[0, 1, 2, 3, 4]).to(dtype)
    x = torch.randn(4, 5, 3, dtype=dtype)
    lq = flow.log_prob(x)
    tol = 1e-4 if dtype == torch.float32 else 1e-9
    for det in (1.0, -1.0):  # rotations and reflections
        np.testing.assert_allclose(flow.log_prob(x @ _orth(3, det).to(dtype).T + 1.5).detach(), lq.detach(),
                                   atol=tol, rtol=tol)
    swapped = flow.log_prob(x[:, [1, 0, 2, 3, 4]])  # distinguishable atoms: a permutation changes the density
    assert (swapped - lq).abs().max() > 100 * tol
    same = EquivariantCNF(5, 3, hidden=16, num_layers=2, n_steps=3, init_gain=0.5, atom_types=[0, 0, 1, 1, 1])
    same = same.to(dtype)
    np.testing.assert_allclose(same.log_prob(x[:, [1, 0, 2, 3, 4]]).detach(), same.log_prob(x).detach(),
                               atol=tol, rtol=tol)  # same type: still permutation-invariant
    with pytest.raises(CompscopeError, match="atom_types"):
        EquivariantCNF(5, 3, atom_types=[0, 1])


def test_fold_chirality_mirrors_the_wrong_enantiomer():
    torch.manual_seed(1)
    x = torch.randn(200, 4, 3, dtype=torch.float64)
    lq = torch.randn(200, dtype=torch.float64)
    chi = dihedral_angles(x, (0, 1, 2, 3))
    xf, lqf, frac = fold_chirality(x, lq, (0, 1, 2, 3), -1.0)
    assert frac == pytest.approx(float((chi > 0).double().mean()))
    assert (dihedral_angles(xf, (0, 1, 2, 3)) <= 0).all()
    np.testing.assert_allclose(lqf, lq + math.log(2.0))
    keep = chi <= 0
    np.testing.assert_array_equal(xf[keep], x[keep])  # the right-handed ones are untouched
    np.testing.assert_allclose(torch.cdist(xf, xf), torch.cdist(x, x), atol=1e-12)  # a mirror image, no distortion


def test_draw_alanine_dipeptide_samples_are_all_L():
    pytest.importorskip("openmm")
    from compscope.sampling import draw_samples
    from compscope.sampling._draw import ALA2_L_IMPROPER

    flow = EquivariantCNF(22, 3, hidden=8, num_layers=1, n_steps=1, atom_types=list(range(22))).double()
    res = draw_samples(flow, "ala2", 16, batch_size=8, seed=0)
    assert 0.0 < res["mirrored_fraction"] < 1.0 and np.isfinite(res["log_q"]).all()
    chi = dihedral_angles(res["positions"], ALA2_L_IMPROPER[0])
    assert (np.sign(chi) == ALA2_L_IMPROPER[1]).all()
