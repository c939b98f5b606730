"""Internal-coordinate flow: Z-matrix round trips, the exact volume factor against a brute-force Jacobian, the
flow's log-density (change of variables, sampling), training and checkpoints."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from compscope.errors import CompscopeError
from compscope.integrations.openmm_systems import ALANINE_DIPEPTIDE_PDB
from compscope.sampling import ALA2_PHI, ALA2_PSI, dihedral_angles
from compscope.sampling._icflow import ALA2_ZMATRIX, ICFlow, ZMatrix, load_ic_flow, train_ic_flow

pytest.importorskip("zuko")

TINY = ((0, -1, -1, -1), (1, 0, -1, -1), (2, 1, 0, -1), (3, 2, 1, 0), (4, 1, 2, 3))  # a branched 5-atom chain


def _pdb() -> torch.Tensor:
    rows = [ln for ln in ALANINE_DIPEPTIDE_PDB.read_text().splitlines() if ln.startswith(("ATOM", "HETATM"))]
    return torch.tensor([[float(r[30:38]), float(r[38:46]), float(r[46:54])] for r in rows], dtype=torch.float64)


def _frames(n=64, seed=0, sd=0.05):
    g = torch.Generator().manual_seed(seed)
    x = _pdb()
    return x + sd * torch.randn(n, *x.shape, generator=g, dtype=torch.float64)


def _rot(seed):
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q * torch.sign(torch.linalg.det(q))  # proper rotation


def test_zmatrix_round_trip_invariance_and_ala2_dihedrals():
    zm = ZMatrix()
    x = _frames()
    z = zm.to_internal(x)
    assert z.shape == (64, 60)
    np.testing.assert_allclose(z[:, 41], dihedral_angles(x, ALA2_PHI), atol=1e-12)  # phi, psi are ICs
    np.testing.assert_allclose(z[:, 42], dihedral_angles(x, ALA2_PSI), atol=1e-12)
    z2 = zm.to_internal(zm.to_cartesian(z))
    np.testing.assert_allclose(z2, z, atol=1e-9)
    # invariant under rotations and translations; a reflection flips every dihedral (chirality)
    xr = x @ _rot(1).T + torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)
    np.testing.assert_allclose(zm.to_internal(xr), z, atol=1e-9)
    zm_ = zm.to_internal(x * torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))
    np.testing.assert_allclose(zm_[:, 41:], -z[:, 41:], atol=1e-9)
    # the Cartesian frame rebuilt from z is the original one up to a rigid motion (pairwise distances equal)
    np.testing.assert_allclose(torch.cdist(zm.to_cartesian(z), zm.to_cartesian(z)), torch.cdist(x, x), atol=1e-9)


@pytest.mark.parametrize("rows", [TINY, ALA2_ZMATRIX], ids=["tiny", "ala2"])
def test_log_volume_against_the_brute_force_jacobian(rows):
    """dx = dt dR J(z) dz: det of the 3n x 3n Jacobian of (translation, rotation at identity, z) -> x."""
    zm = ZMatrix(rows)
    if rows is TINY:
        g = torch.Generator().manual_seed(0)
        z = torch.cat([1.0 + torch.rand(4, generator=g), 0.5 + 2.0 * torch.rand(3, generator=g),
                       -3.0 + 6.0 * torch.rand(2, generator=g)]).double()
    else:
        z = zm.to_internal(_frames(1, seed=3))[0]
    x0 = zm.to_cartesian(z[None])[0]  # (n, 3)
    jz = torch.autograd.functional.jacobian(lambda zz: zm.to_cartesian(zz[None])[0].reshape(-1), z)  # (3n, 3n-6)
    trans = torch.eye(3, dtype=torch.float64).repeat(zm.n_atoms, 1)  # d x / d t
    rot = torch.stack([torch.cross(torch.eye(3, dtype=torch.float64)[k].expand_as(x0), x0, dim=-1).reshape(-1)
                       for k in range(3)], 1)  # d (exp([w]x) x) / d w at w = 0
    m = torch.cat([trans, rot, jz], 1)
    assert torch.linalg.slogdet(m)[1].item() == pytest.approx(zm.log_volume(z[None]).item(), abs=1e-8)


def test_zmatrix_bad_input():
    with pytest.raises(CompscopeError, match="partners"):
        ZMatrix(((0, -1, -1, -1), (1, 0, -1, -1), (2, 1, 0, -1), (3, 4, 1, 0), (4, 1, 2, 3)))
    with pytest.raises(CompscopeError, match="every atom once"):
        ZMatrix(((0, -1, -1, -1), (1, 0, -1, -1), (1, 0, 1, -1)))
    with pytest.raises(CompscopeError, match="do not fit"):
        ZMatrix().to_internal(torch.zeros(2, 21, 3, dtype=torch.float64))


def test_ic_flow_density_is_normalised_and_consistent(tmp_path):
    torch.manual_seed(0)
    x = _frames(256)
    flow = ICFlow.from_data(x, transforms=2, hidden=(32,), bins=4)
    with torch.no_grad():
        xs, lq = flow.sample(64)
        lq2 = flow.log_prob(xs)
    assert xs.shape == (64, 22, 3) and torch.isfinite(lq).all()
    np.testing.assert_allclose(lq2, lq, atol=1e-3)  # sampling and density evaluation agree
    with torch.no_grad():
        np.testing.assert_allclose(flow.log_prob(xs @ _rot(2).T + 0.7), lq2, atol=1e-6)  # rigid-motion invariant
        # change of variables by hand: the flow's box density, the box scaling, the Z-matrix volume factor
        z = flow.zmatrix.to_internal(xs)
        by_hand = (flow.flow().log_prob(((z - flow.z_mean) / flow.z_scale).float()).double()
                   - torch.log(flow.z_scale).sum() - flow.zmatrix.log_volume(z))
        np.testing.assert_allclose(lq2, by_hand, atol=1e-6)
        far = xs.clone()
        far[0, 1] += 50.0  # a bond far outside the box: zero density, not a wrapped-around one
        assert flow.log_prob(far)[0] == -math.inf


def test_train_ic_flow_resumes_and_loads(tmp_path):
    x = _frames(400, sd=0.03)
    r1 = train_ic_flow(x[:300], x[300:], tmp_path / "run", steps=20, batch_size=64, eval_every=10,
                       transforms=2, hidden=(32,), bins=4)
    assert [h["step"] for h in r1["history"]] == [10, 20] and r1["history"][-1]["val_nll"] < r1["history"][0]["val_nll"]
    r2 = train_ic_flow(x[:300], x[300:], tmp_path / "run", steps=30, batch_size=64, eval_every=10,
                       transforms=2, hidden=(32,), bins=4)
    assert [h["step"] for h in r2["history"]] == [10, 20, 30]  # resumed, not restarted
    flow = load_ic_flow(tmp_path / "run")
    with torch.no_grad():
        assert torch.isfinite(flow.log_prob(x[300:])).all()
    (tmp_path / "junk.pt").write_bytes(b"no")
    with pytest.raises(CompscopeError, match="junk.pt"):
        load_ic_flow(tmp_path / "junk.pt")
