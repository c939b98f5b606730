"""The CG potential (prior + equivariant network): physics test kit, float32/float64, packages, batch errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from compscope.cg import fit_prior, load_cg
from compscope.data import keys as K
from compscope.errors import ConfigError
from compscope.models import CGPotential, build_model, dihedral_angles
from compscope.models.artifacts import load_model, save_package
from compscope.testing import (
    assert_batch_consistent,
    assert_e3_equivariant,
    assert_forces_are_gradients,
    random_rotation,
)

NET = {"r_max": 6.0, "hidden_irreps": "8x0e+8x1o", "num_interactions": 2, "correlation": 2, "radial_hidden": [16],
       "num_bessel": 6, "avg_num_neighbors": 4.0}


@pytest.fixture(scope="module")
def frames(cg_file):
    return np.concatenate(load_cg(cg_file).positions)


def _model(frames, dtype, net=NET, dihedrals=True):
    torch.manual_seed(0)
    prior = fit_prior(frames, 300.0, dihedrals=dihedrals)
    return build_model("CGPotential", bead_z=[6, 7, 6, 6, 7], prior=prior, net=net, energy_scale=0.0259).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cg_potential_is_equivariant_and_batches(frames, dtype):
    """Without dihedral terms the model is E(3)-invariant (the kit's rotations, reflections, translations)."""
    model = _model(frames, dtype, dihedrals=False)
    x = torch.as_tensor(frames[:3], dtype=dtype)
    graph = model.make_graph(x)
    assert graph.num_edges > 0
    assert_e3_equivariant(model, graph)
    assert_batch_consistent(model, [model.make_graph(x[i:i + 1]) for i in range(3)])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_dihedral_prior_is_rotation_invariant_but_chiral(frames, dtype):
    """The dihedral prior's sine terms tell L- from D-alanine: energies are invariant under rotations and
    translations and forces rotate with the frame, but a mirror image has another energy."""
    model = _model(frames, dtype, dihedrals=True)
    x = torch.as_tensor(frames[:3], dtype=dtype)
    e, f = model.energy_forces(x)
    gen = torch.Generator().manual_seed(0)
    tol = 1e-9 if dtype == torch.float64 else 2e-4
    for _ in range(3):
        rot = random_rotation(gen).to(dtype)
        e2, f2 = model.energy_forces(x @ rot.T + torch.randn(3, generator=gen).to(dtype))
        torch.testing.assert_close(e2, e, atol=tol * max(1.0, float(e.abs().max())), rtol=0)
        torch.testing.assert_close(f2, f @ rot.T, atol=tol * max(1.0, float(f.abs().max())), rtol=0)
    e_mirror, _ = model.energy_forces(-x)
    assert float((e_mirror - e).abs().max()) > 1e-3


def test_cg_forces_are_minus_gradient_float64(frames):
    model = _model(frames, torch.float64)
    assert_forces_are_gradients(model, model.make_graph(torch.as_tensor(frames[:2])), n_atoms=5)
    prior_only = _model(frames, torch.float64, net=None)
    assert prior_only.net is None
    assert_forces_are_gradients(prior_only, prior_only.make_graph(torch.as_tensor(frames[:2])), n_atoms=5)


def test_dihedral_convention_matches_reference(frames, cg_file):
    d = load_cg(cg_file)
    phi = dihedral_angles(torch.as_tensor(np.concatenate(d.positions)), torch.tensor([[0, 1, 2, 3], [1, 2, 3, 4]]))
    # the backbone beads are the atoms of phi and psi: the same angles as the reference's
    np.testing.assert_allclose(phi[:, 0].numpy(), np.concatenate(d.phi), atol=1e-9)
    np.testing.assert_allclose(phi[:, 1].numpy(), np.concatenate(d.psi), atol=1e-9)


def test_package_round_trip_and_whole_molecules(frames, tmp_path):
    model = _model(frames, torch.float64)
    path = save_package(model, tmp_path / "cg.pt")
    again = load_model(path)
    x = torch.as_tensor(frames[:4])
    e0, f0 = model.energy_forces(x)
    e1, f1 = again.energy_forces(x)
    torch.testing.assert_close(e0, e1)
    torch.testing.assert_close(f0, f1)
    g = model.make_graph(x)
    out = model(g)
    assert out[K.FORCES].shape == (20, 3)
    with pytest.raises(ConfigError, match="whole molecules"):
        from dataclasses import replace

        model(replace(g, batch=torch.zeros(20, dtype=torch.long), cell=g.cell[:1], pbc=g.pbc[:1]))
    with pytest.raises(ConfigError, match="must be"):
        model.make_graph(x[:, :4])
    with pytest.raises(ConfigError, match="species"):
        CGPotential([6, 7], net={**NET, "species": [1, 2]})


def _feature_model(frames, dtype, activation="tanh", net=None):
    from compscope.cg import feature_net_kwargs

    torch.manual_seed(1)
    prior = fit_prior(frames, 300.0, dihedrals=True)
    feat = feature_net_kwargs(frames, {"hidden": [16, 8], "activation": activation})
    return build_model("CGPotential", bead_z=[6, 7, 6, 6, 7], prior=prior, net=net, energy_scale=0.0259,
                       feature_net=feat).to(dtype)


@pytest.mark.parametrize("activation", ["tanh", "silu"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_kernel_equals_autograd(frames, dtype, activation):
    """Prior + CGnet-style MLP: the fused kernel's energies and analytic forces equal autograd's, in both dtypes;
    the graph path (forward on a radius graph) gives the same energies."""
    model = _feature_model(frames, dtype, activation)
    x = torch.as_tensor(frames[::7][:64], dtype=dtype)
    model.fused_kernels = False
    e_ref, f_ref = model.energy_forces(x)
    model.fused_kernels = True
    e, f = model.energy_forces(x)
    tol = {torch.float64: 1e-10, torch.float32: 2e-4}[dtype]
    assert e.dtype == f.dtype == dtype and f.shape == x.shape
    assert torch.allclose(e, e_ref, atol=tol, rtol=tol) and torch.allclose(f, f_ref, atol=tol, rtol=tol)
    assert float(f_ref.abs().max()) > 0.1  # not trivially zero
    out = model(model.make_graph(x))
    assert torch.allclose(out[K.ENERGY], e_ref, atol=tol, rtol=tol)
    # the packed weights follow a weight change (no stale cache)
    with torch.no_grad():
        model.feature_net.mlp[-1].bias += 1.0
    assert torch.allclose(model.energy_forces(x)[0], e + 0.0259, atol=tol, rtol=tol)


def test_feature_net_is_rotation_invariant_but_chiral(frames):
    model = _feature_model(frames, torch.float64)
    model.prior = type(model.prior)(5)  # the network alone
    x = torch.as_tensor(frames[:4], dtype=torch.float64)
    e = model.energy_forces(x)[0]
    rot = random_rotation(torch.Generator().manual_seed(0))
    assert torch.allclose(model.energy_forces(x @ rot.T + 1.5)[0], e, atol=1e-10)
    assert not torch.allclose(model.energy_forces(-x)[0], e, atol=1e-4)  # mirror image: other energy
    assert_forces_are_gradients(model, model.make_graph(x[:2]))


def _no_fused_steps(*args, **kwargs):
    return None


@pytest.mark.parametrize("integrator", ["langevin", "nve"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("activation", ["tanh", "silu"])
def test_fused_md_steps_follow_the_step_by_step_trajectory(frames, dtype, integrator, activation, monkeypatch,
                                                           tmp_path):
    """The compiled multi-step loop (CGPotential.dense_md_steps) gives the trajectory of simulate_dense's
    one-step-at-a-time path: same integrator arithmetic, same thermostat draws (its generator ends in the same
    state, so a resume continues identically), same saved frames."""
    from ase import Atoms

    from compscope.md import read_h5_observables, simulate_dense

    model = _feature_model(frames, dtype, activation)
    starts = [Atoms(numbers=model.atomic_numbers, positions=frames[i * 37]) for i in range(6)]
    kw = dict(steps=120, dt=4.0, replicas=6, traj_every=40, integrator=integrator, temperature=300.0, seed=3)
    calls = []
    hook = type(model).dense_md_steps

    def counting(self, *a, **k):
        out = hook(self, *a, **k)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(type(model), "dense_md_steps", counting)
    fused = simulate_dense(model, starts, out=tmp_path / "fused", **kw)
    assert calls and all(calls)  # the compiled loop ran every chunk
    monkeypatch.setattr(type(model), "dense_md_steps", _no_fused_steps)
    plain = simulate_dense(model, starts, out=tmp_path / "plain", **kw)
    tol = {torch.float64: 1e-9, torch.float32: 2e-3}[dtype]
    for a, b in ((fused.state.positions, plain.state.positions), (fused.state.momenta, plain.state.momenta),
                 (fused.state.forces, plain.state.forces), (fused.state.energy, plain.state.energy)):
        assert a.dtype == dtype and torch.allclose(a, b, atol=tol, rtol=tol)
    assert float((fused.state.positions - torch.as_tensor(np.concatenate([s.positions for s in starts]),
                                                          dtype=dtype)).abs().max()) > 0.05  # it moved
    ha, hb = read_h5_observables(tmp_path / "fused" / "trajectory.h5"), read_h5_observables(
        tmp_path / "plain" / "trajectory.h5")
    assert np.array_equal(ha["step"], hb["step"])
    assert np.allclose(ha["positions"], hb["positions"], atol=tol, rtol=tol)


def test_fused_md_steps_keep_stopped_replicas_still_and_decline_what_they_do_not_cover(frames):
    """A stopped replica (inactive, zero momenta) neither moves nor feels forces; the loop declines a model
    without an MLP and batches above fused_md_max_replicas, and leaves its inputs untouched."""
    from ase import units

    model = _feature_model(frames, torch.float64)
    x = torch.as_tensor(frames[:3], dtype=torch.float64).clone()
    e0, f = model.energy_forces(x)
    p = torch.randn(3, 5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    p[1] = 0.0
    act = torch.tensor([True, False, True]).view(3, 1, 1)
    masses = torch.full((3, 5, 1), 12.0, dtype=torch.float64)
    before = (x.clone(), p.clone(), f.clone())
    out = model.dense_md_steps(x, p, torch.where(act, f, 0.0), act, dt=2.0 * units.fs, masses=masses, steps=25,
                               langevin=True, c1=0.9, sigma=torch.full_like(masses, 0.3),
                               noise=torch.randn(25, 3, 5, 3, dtype=torch.float64))
    x1, p1, f1, e1 = out
    assert torch.equal(x1[1], x[1]) and torch.equal(p1[1], p[1]) and torch.equal(f1[1], torch.zeros_like(f1[1]))
    assert float((x1[0] - x[0]).abs().max()) > 1e-3
    assert torch.allclose(e1, model.energy_forces(x1)[0], atol=1e-10)  # the energies of the final positions
    assert all(torch.equal(a, b) for a, b in zip((x, p, f), before))  # inputs untouched
    model.fused_md_max_replicas = 2
    assert model.dense_md_steps(x, p, f, act, dt=1.0, masses=masses, steps=3) is None
    prior_only = _model(frames, torch.float64, net=None)
    assert prior_only.dense_md_steps(x, p, f, act, dt=1.0, masses=masses, steps=3) is None


def test_model_files_from_before_the_2d_term_still_load(frames, tmp_path):
    """A package whose state has no cmap buffers (written before the 2-D prior term existed) loads into a prior
    without that term; a prior that has the term still refuses a state that lacks its values."""
    model = _feature_model(frames, torch.float64)
    state = {k: v for k, v in model.state_dict().items() if ".cmap" not in k}
    again = _feature_model(frames, torch.float64)
    again.load_state_dict(state)  # strict: every other key present
    x = torch.as_tensor(frames[:3])
    torch.testing.assert_close(again.energy_forces(x)[0], model.energy_forces(x)[0])
    with_term = CGPotential([6, 7, 6, 6, 7], prior={**fit_prior(frames, 300.0), "cmap": [[0, 1, 2, 3, 1, 2, 3, 4]],
                                                    "cmap_modes": [[1, 0]], "cmap_cos": [[0.1]], "cmap_sin": [[0.0]]})
    bare = {k: v for k, v in with_term.state_dict().items() if ".cmap" not in k}
    with pytest.raises(RuntimeError, match="cmap"):
        with_term.load_state_dict(bare)


def test_fused_md_steps_refuse_noise_of_the_wrong_shape(frames):
    """Langevin draws must be one (B, n, 3) array per step: a short noise array is refused, not read past its end."""
    model = _feature_model(frames, torch.float64)
    x = torch.as_tensor(frames[:2], dtype=torch.float64).clone()
    e, f = model.energy_forces(x)
    masses = torch.full((2, 5, 1), 12.0, dtype=torch.float64)
    with pytest.raises(ConfigError, match="noise of shape"):
        model.dense_md_steps(x, torch.zeros_like(x), f, torch.ones(2, 1, 1, dtype=torch.bool), dt=0.1, masses=masses,
                             steps=5, langevin=True, c1=0.9, sigma=torch.ones_like(masses),
                             noise=torch.zeros(4, 2, 5, 3, dtype=torch.float64))
