"""The physics test kit on the core force-field model, in float32 and float64."""

import pytest
import torch
from ase.build import bulk

from compscope.data import AtomicGraph, load_graphs
from compscope.models import build_model
from compscope.testing import (
    assert_e3_equivariant,
    assert_e3_equivariant_pbc,
    assert_forces_are_gradients,
    assert_stress_is_strain_derivative,
    check_potential,
)

DTYPES = [torch.float32, torch.float64]


def _model(dtype, species=(1, 6, 8), r_max=4.0, isolated_e0=True):
    torch.manual_seed(0)
    m = build_model(preset="tiny", species=list(species), r_max=r_max, scale=0.5, isolated_e0=isolated_e0)
    # random non-trivial per-element scales and shifts so that they are exercised too
    with torch.no_grad():
        m.element_scale.copy_(torch.rand(len(species)) + 0.5)
        m.element_shift.copy_(torch.randn(len(species)))
    return m.to(dtype)


@pytest.mark.parametrize("isolated_e0", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
def test_kit_on_core_model(dtype, ethanol_xyz, isolated_e0):
    model = _model(dtype, isolated_e0=isolated_e0)
    graphs = [g.to(dtype=dtype) for g in load_graphs(ethanol_xyz, 4.0, index=":3")]
    check_potential(model, graphs, z_pair=(6, 8))


@pytest.mark.parametrize("dtype", DTYPES)
def test_kit_on_shipped_config_architecture(dtype, ethanol_xyz):
    """configs/forcefield/ethanol.yaml's architecture (l <= 3 harmonics, l <= 2 product intermediates, correlation
    3) at a tiny width: every physics check, through the fused kernels (the CPU default)."""
    torch.manual_seed(0)
    model = build_model(preset="tiny", species=[1, 6, 8], r_max=4.0, max_ell=3, product_l_max=2, correlation=3,
                        scale=0.5).to(dtype)
    assert model.fused_kernels
    graphs = [g.to(dtype=dtype) for g in load_graphs(ethanol_xyz, 4.0, index=":2")]
    check_potential(model, graphs, z_pair=(6, 8))


@pytest.mark.parametrize("dtype", DTYPES)
def test_periodic_stress_and_equivariance(dtype):
    atoms = bulk("C", "diamond", a=3.57)
    atoms.rattle(0.05, seed=3)
    model = _model(dtype, species=(6,), r_max=3.0)
    g = AtomicGraph.from_atoms(atoms, 3.0, energy_key=None, forces_key=None, dtype=dtype)
    assert_e3_equivariant_pbc(model, g)
    if dtype == torch.float64:
        assert_stress_is_strain_derivative(model, g)
        assert_forces_are_gradients(model, g)


def test_kit_catches_a_broken_model(ethanol_xyz):
    """The kit must fail on a model that is not equivariant (a test that cannot fail is no test)."""
    model = _model(torch.float64)

    class Broken(torch.nn.Module):
        def forward(self, graph, compute_forces=True, compute_stress=False):
            out = model(graph, compute_forces, compute_stress)
            out["energy"] = out["energy"] + graph.positions[:, 0].sum() * 1e-3  # depends on absolute x
            return out

    g = load_graphs(ethanol_xyz, 4.0, index=":1")[0]
    with pytest.raises(AssertionError):
        assert_e3_equivariant(Broken(), g)

    class WrongForces(torch.nn.Module):
        def forward(self, graph, compute_forces=True, compute_stress=False):
            out = model(graph, compute_forces, compute_stress)
            out["forces"] = out["forces"] * 1.01
            return out

    with pytest.raises(AssertionError, match="finite-difference"):
        assert_forces_are_gradients(WrongForces(), g)


def test_unknown_element_message(ethanol_xyz):
    from compscope.models import UnknownElementError

    model = _model(torch.float64, species=(1, 6))
    g = load_graphs(ethanol_xyz, 4.0, index=":1")[0]
    with pytest.raises(UnknownElementError, match=r"elements \[8\] are unknown"):
        model(g)


def test_presets_build():
    from compscope.models import PRESETS

    for name in PRESETS:
        m = build_model(preset=name, species=[1, 6, 8])
        assert sum(p.numel() for p in m.parameters()) > 0


@pytest.mark.parametrize("dtype", DTYPES)
def test_isolated_atom_energy_is_exactly_e0(dtype):
    """With ``isolated_e0`` (the default) an atom without neighbours has exactly its E0 and no force, whatever
    the weights; without it the network's one-body term (plus the shift) comes on top."""
    from ase import Atoms

    e0 = [-13.6, -1029.8, -2041.9]
    for isolated_e0 in (True, False):
        torch.manual_seed(1)
        m = build_model(preset="tiny", species=[1, 6, 8], r_max=4.0, atomic_energies=e0, isolated_e0=isolated_e0,
                        shift=-2.0)  # a shift, switched off for an atom alone
        m = m.to(dtype)
        for z, ref in zip((1, 6, 8), e0):
            g = AtomicGraph.from_atoms(Atoms(numbers=[z], positions=[[0.0, 0.0, 0.0]]), cutoff=4.0).to(dtype=dtype)
            out = {k: v.detach() for k, v in m(g).items()}
            assert torch.count_nonzero(out["forces"]) == 0
            gap = abs(float(out["energy"][0]) - ref)
            assert (gap < (1e-12 if dtype == torch.float64 else 1e-6)) if isolated_e0 else (gap > 1e-3)
