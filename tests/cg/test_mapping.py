"""CG maps and force maps: presets, bad input, the harmonic-chain mean force, constrained-H aggregation vs FD."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from compscope.cg import CGMap, CGMappingError, com_map, map_from_spec, slice_map
from compscope.errors import CompscopeError
from compscope.integrations.openmm_systems import ALANINE_DIPEPTIDE_PDB

PDB = ALANINE_DIPEPTIDE_PDB.read_text()


def _pdb(rows):
    """PDB text of atoms ``(name, element, x, y, z)`` in one residue."""
    return "\n".join(f"ATOM  {k + 1:5d} {name:<4s} MOL A   1    {x:8.3f}{y:8.3f}{z:8.3f}  1.00  0.00          {el:>2s}"
                     for k, (name, el, x, y, z) in enumerate(rows)) + "\nEND\n"


def test_backbone_preset_is_cgnets_five_atoms_with_their_hydrogens():
    m = slice_map(PDB, "backbone")
    assert m.bead_names == ["ACE1:C", "ALA2:N", "ALA2:CA", "ALA2:C", "NME3:N"]
    assert m.bead_z == [6, 7, 6, 6, 7]
    assert np.flatnonzero(m.coord_weights.sum(0)).tolist() == [1, 6, 7, 9, 16]
    # force map: H(N) -> N, HA -> CA, H(NME) -> N(NME); the C atoms carry no hydrogen
    rows = [np.flatnonzero(r).tolist() for r in m.force_weights]
    assert rows == [[1], [6, 11], [7, 12], [9], [16, 18]]
    assert np.allclose(m.force_weights @ m.coord_weights.T, np.eye(5))
    unconstrained = slice_map(PDB, "backbone", constraints=None)
    assert np.array_equal(unconstrained.force_weights, unconstrained.coord_weights)


def test_selections_by_names_indices_and_com():
    assert slice_map(PDB, "ca").bead_names == ["ALA2:CA"]
    assert slice_map(PDB, ["CA", "CB"]).bead_names == ["ALA2:CA", "ALA2:CB"]
    m = slice_map(PDB, [7, 8])
    assert m.bead_names == ["ALA2:CA", "ALA2:CB"]
    # CB carries three hydrogens
    assert np.flatnonzero(m.force_weights[1]).tolist() == [8, 13, 14, 15]
    c = com_map(PDB, [[0, 3, 4, 5], [8, 13, 14, 15]])
    x = np.random.default_rng(0).normal(size=(3, 22, 3))
    masses = np.array([12.011, 1.008, 1.008, 1.008])
    np.testing.assert_allclose(c.map_positions(x)[:, 0], (x[:, [0, 3, 4, 5]] * masses[:, None]).sum(1) / masses.sum(),
                               rtol=1e-4)
    np.testing.assert_allclose(c.map_forces(x)[:, 1], x[:, [8, 13, 14, 15]].sum(1))
    assert map_from_spec(PDB, {"com": [[0, 3, 4, 5]]}).kind == "com"
    again = CGMap.from_dict(m.to_dict())
    assert np.array_equal(again.force_weights, m.force_weights) and again.bead_names == m.bead_names


@pytest.mark.parametrize("selection, match", [
    (["CA", "XX"], "does not have"),
    ([0, 99], "not in the molecule"),
    ([3, 3], "repeat"),
    ([], "no atoms"),
    ("sidechain", "unknown mapping"),
])
def test_bad_selections(selection, match):
    with pytest.raises(CGMappingError, match=match) as err:
        slice_map(PDB, selection)
    assert isinstance(err.value, CompscopeError)


def test_com_bad_input():
    with pytest.raises(CGMappingError, match="bead 1 has no atoms"):
        com_map(PDB, [[0, 3, 4, 5], []])
    with pytest.raises(CGMappingError, match="more than one bead"):
        com_map(PDB, [[0, 3], [3, 4]])
    # HH31 (atom 3) constrained to CH3 (atom 0) but put into another bead
    with pytest.raises(CGMappingError, match="not in the same bead"):
        com_map(PDB, [[0, 4, 5], [3]])
    with pytest.raises(CGMappingError, match="do not fit"):
        slice_map(PDB, "backbone").map_forces(np.zeros((2, 21, 3)))


def test_slice_map_of_harmonic_chain_gives_the_mean_force():
    """Chain 0-1-2-3-4 of zero-length springs k; beads 0, 2, 4. Integrating out 1 and 3 leaves springs k/2 between
    neighbouring beads: the mapped forces regressed on the bead coordinates recover -(k/2) L X."""
    k, kT, n = 3.0, 0.7, 200_000
    rng = np.random.default_rng(1)
    bonds = rng.normal(scale=np.sqrt(kT / k), size=(n, 4, 3))  # exact Boltzmann samples of the bond vectors
    x = np.concatenate([np.zeros((n, 1, 3)), np.cumsum(bonds, axis=1)], axis=1)  # (n, 5, 3)
    x += rng.normal(scale=2.0, size=(n, 1, 3))  # free translation: spread the chain's position
    f = np.zeros_like(x)
    for i in range(4):  # f_i = -dU/dx_i with U = k/2 sum |x_{i+1} - x_i|^2
        d = x[:, i + 1] - x[:, i]
        f[:, i] += k * d
        f[:, i + 1] -= k * d
    pdb = _pdb([(f"C{i}", "C", 1.5 * i, 0.0, 0.0) for i in range(5)])
    m = slice_map(pdb, [0, 2, 4], constraints=None)
    X, F = m.map_positions(x), m.map_forces(f)
    # least squares F_I = sum_J A_IJ X_J per Cartesian component (pooled over x, y, z)
    Xm = X.transpose(0, 2, 1).reshape(-1, 3)
    Fm = F.transpose(0, 2, 1).reshape(-1, 3)
    A = np.linalg.lstsq(Xm, Fm, rcond=None)[0].T
    lap = np.array([[1, -1, 0], [-1, 2, -1], [0, -1, 1]], float)
    np.testing.assert_allclose(A, -(k / 2) * lap, atol=0.03)


def test_constrained_hydrogen_aggregation_matches_fd_of_mapped_free_energy():
    """Heavy atom A with a hydrogen H rigidly bonded (length d), heavy atom B; beads A and B (slice map).

    U = U_AB(|B - A|) + U_HB(|B - H|); H is uniform on the sphere around A (a bond-length constraint has a constant
    mass-metric determinant). The mapped free energy W(R) = U_AB(R) - kT ln <exp(-U_HB/kT)>_sphere, so the mean
    force on bead A along the axis is +dW/dR and on B -dW/dR. The aggregated force map (f_A + f_H) gives it; f_A alone
    does not."""
    kT, d = 0.6, 1.0
    uab = (lambda r: 2.0 * (r - 2.5) ** 2, lambda r: 4.0 * (r - 2.5))  # (U, dU/dr)
    uhb = (lambda r: 3.0 * np.exp(-r), lambda r: -3.0 * np.exp(-r))
    pdb = _pdb([("CA", "C", 0, 0, 0), ("HA", "H", 0, 0, 1.0), ("N", "N", 0, 0, 2.5)])
    m = slice_map(pdb, ["CA", "N"])
    assert np.flatnonzero(m.force_weights[0]).tolist() == [0, 1]
    u, wu = np.polynomial.legendre.leggauss(96)  # cos(theta) nodes
    phis = np.linspace(0, 2 * np.pi, 16, endpoint=False)

    def W(R):
        r = np.sqrt(R**2 + d**2 - 2 * R * d * u)
        return uab[0](R) - kT * np.log(0.5 * (wu * np.exp(-uhb[0](r) / kT)).sum())

    for R in (2.0, 2.6, 3.3):
        # frames over the sphere of H, weighted by quadrature x Boltzmann factor
        uu, pp = np.meshgrid(u, phis, indexing="ij")
        ww = np.meshgrid(wu, phis, indexing="ij")[0]
        s = np.sqrt(1 - uu**2)
        H = d * np.stack([s * np.cos(pp), s * np.sin(pp), uu], -1).reshape(-1, 3)
        B = np.array([0, 0, R])
        rhb = np.linalg.norm(B - H, axis=1)
        w = (ww.reshape(-1) * np.exp(-uhb[0](rhb) / kT))
        w /= w.sum()
        f = np.zeros((len(H), 3, 3))
        f[:, 0, 2] = uab[1](R)  # -dU_AB/dA_z = +U'_AB(R)
        f[:, 2, 2] = -uab[1](R)
        fhb = -uhb[1](rhb)[:, None] * (H - B) / rhb[:, None]  # force on H
        f[:, 1] += fhb
        f[:, 2] -= fhb
        F = np.einsum("t,tIk->Ik", w, m.map_forces(f))  # conditional mean of the mapped forces
        h = 1e-5
        dW = (W(R + h) - W(R - h)) / (2 * h)
        np.testing.assert_allclose(F[0], [0, 0, dW], atol=1e-8)
        np.testing.assert_allclose(F[1], [0, 0, -dW], atol=1e-8)
        plain = np.einsum("t,tk->k", w, f[:, 0])  # the heavy atom alone misses the hydrogen's share
        assert abs(plain[2] - dW) > 1e-3


def test_optimised_force_map_of_harmonic_chain_is_the_noise_free_mean_force():
    """Chain 0-1-2-3-4 of springs k, beads 0, 2, 4, atoms 1 and 3 free. Given the beads, atom 1 is Gaussian around
    the midpoint of beads 0 and 2; f_0 + f_1 / 2 = (k/2)(X_2 - X_0) is the mean force with no noise at all. The fit
    finds these weights (1/2 of each neighbouring free atom, up to sampling error: the fit minimises the mean
    squared force, whose mean-force part the free groups cannot change), keeps the mean force and removes the
    noise."""
    from compscope.cg import optimised_force_map

    k, kT, n = 3.0, 0.7, 20_000
    rng = np.random.default_rng(2)
    x = np.concatenate([np.zeros((n, 1, 3)), np.cumsum(rng.normal(scale=np.sqrt(kT / k), size=(n, 4, 3)), 1)], 1)
    f = np.zeros_like(x)
    for i in range(4):
        d = x[:, i + 1] - x[:, i]
        f[:, i] += k * d
        f[:, i + 1] -= k * d
    pdb = _pdb([(f"C{i}", "C", 1.5 * i, 0.0, 0.0) for i in range(5)])
    m = slice_map(pdb, [0, 2, 4], constraints=None)
    opt, info = optimised_force_map(pdb, m, f[: n // 2])  # fitted on half, checked on the other half
    assert info["groups"] == [[1], [3]]
    np.testing.assert_allclose(info["weights"], [[0.5, 0], [0.5, 0.5], [0, 0.5]], atol=0.03)
    X, F = opt.map_positions(x[n // 2:]), opt.map_forces(f[n // 2:])
    lap = np.array([[1, -1, 0], [-1, 2, -1], [0, -1, 1]], float)
    mean_force = -(k / 2) * np.einsum("IJ,tJk->tIk", lap, X)
    noise_plain = np.sqrt(((m.map_forces(f[n // 2:]) - mean_force) ** 2).mean())
    noise_opt = np.sqrt(((F - mean_force) ** 2).mean())
    assert noise_opt < 0.05 * noise_plain  # plain slice map: sqrt(k kT / 2) per component
    np.testing.assert_allclose(opt.force_weights @ opt.coord_weights.T, np.eye(3), atol=1e-12)


def test_optimised_force_map_moves_constrained_hydrogens_with_their_heavy_atom(tmp_path):
    """On alanine dipeptide's backbone map the free groups are the two methyls, CB with its hydrogens and the two
    carbonyl oxygens; a hydrogen always carries its heavy atom's weight (a constraint force cancels), bead atoms keep
    theirs, and on reference forces the mapped-force noise goes down."""
    import h5py

    from compscope.cg import free_groups, map_reference, optimised_force_map, read_pdb_atoms

    atoms = read_pdb_atoms(PDB)
    m = slice_map(PDB, "backbone")
    groups = free_groups(PDB, m)
    assert sorted(sorted(atoms[i].name for i in g) for g in groups) == sorted(
        [["CH3", "HH31", "HH32", "HH33"]] * 2 + [["CB", "HB1", "HB2", "HB3"], ["O"], ["O"]])
    ref = Path(__file__).parents[1] / "fixtures" / "cg" / "ala2_obc_4x100.h5"
    with h5py.File(ref, "r") as f:
        forces = np.concatenate([f["replicas"][r]["forces"][:] for r in sorted(f["replicas"])])
    opt, info = optimised_force_map(PDB, m, forces)
    for g in groups:
        assert np.allclose(opt.force_weights[:, g], opt.force_weights[:, g[:1]])
    bead_cols = np.flatnonzero(m.force_weights.sum(0))
    np.testing.assert_array_equal(opt.force_weights[:, bead_cols], m.force_weights[:, bead_cols])
    assert sum(a**2 for a in info["rms_after"]) < 0.8 * sum(b**2 for b in info["rms_before"])
    # through map_reference: fitted on the given frames only, recorded in the file and the summary
    out = map_reference(ref, "backbone", tmp_path / "cg.h5", force_map="optimised", fit_frames=np.arange(200))
    assert out["force_map"] == "optimised" and out["force_map_fit_frames"] == 200
    with h5py.File(tmp_path / "cg.h5", "r") as f:
        assert f.attrs["force_map"] == "optimised"
    with pytest.raises(CompscopeError, match="force_map"):
        map_reference(ref, "backbone", tmp_path / "bad.h5", force_map="best")
