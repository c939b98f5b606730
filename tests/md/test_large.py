"""Big periodic boxes: supercells (API and CLI), pruned Verlet lists, chunked messages in MD, and clear errors for
inputs that would give wrong physics."""

import json

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.io import read, write
from typer.testing import CliRunner

from compscope.cli import app
from compscope.md import MDInputError, simulate
from compscope.md._forces import ForceEvaluator
from compscope.md._runner import init_state
from compscope.models import build_model
from compscope.models.artifacts import save_package

from ..conftest import FIXTURES

WATER = FIXTURES / "water" / "water_test_4.extxyz"


@pytest.fixture(scope="module")
def water_model():
    torch.manual_seed(0)
    return build_model(preset="tiny", species=[1, 8], r_max=3.5, avg_num_neighbors=20.0, scale=0.1,
                       atomic_energies=[-13.6, -432.0]).double().eval()


def test_supercell_md_energy_is_extensive(water_model, lj, ar_crystal):
    atoms = read(WATER, 0)
    one = simulate(water_model, atoms, steps=0, integrator="nve", check_inputs=False)
    big = simulate(water_model, atoms, steps=2, integrator="langevin", supercell=(2, 1, 2), dt=0.25)
    assert big.state.graph.num_nodes == 4 * len(atoms)
    e1 = float(one.state.energy[0])
    # step 0 of the supercell run: its first frame's energy (recomputed here from the start structure)
    start = simulate(water_model, atoms, steps=0, integrator="nve", supercell=(2, 1, 2))
    assert abs(float(start.state.energy[0]) - 4 * e1) < 1e-8 * abs(4 * e1)
    assert big.n_stable == 1 and big.atom_steps_per_s > 0


def test_supercell_refuses_non_periodic(ar_cluster, lj):
    with pytest.raises(MDInputError, match="not periodic"):
        simulate(lj, ar_cluster, steps=1, supercell=(2, 2, 2))
    with pytest.raises(MDInputError, match="three positive"):
        simulate(lj, ar_cluster, steps=1, supercell=(2, 0, 1))


def test_model_without_pbc_support(ar_crystal, lj):
    class Molecular(torch.nn.Module):
        supports_pbc = False
        cutoff = lj.cutoff
        atomic_numbers = [18]

        def forward(self, graph, compute_forces=True, compute_stress=False):
            return lj(graph, compute_forces, compute_stress)

    with pytest.raises(MDInputError, match="does not support periodic") as err:
        simulate(Molecular(), ar_crystal, steps=1)
    assert "periodic" in err.value.hint


def test_overlapping_atoms_across_the_boundary(lj):
    atoms = Atoms("Ar2", positions=[[0.1, 5, 5], [9.9, 5, 5]], cell=[10, 10, 10], pbc=True)  # 0.2 Å via the image
    with pytest.raises(MDInputError, match="overlapping"):
        simulate(lj, atoms, steps=1)


def test_cell_too_thin_for_minimum_image_bonds(water_model):
    """A 1.5 Å-thin cell: the monitor's minimum-image bond lengths would be wrong, the run is refused."""
    atoms = Atoms("OH", positions=[[0, 0, 0], [0.97, 0, 0]], cell=[[1.5, 0, 0], [0, 6, 0], [0, 0, 6]], pbc=True)
    with pytest.raises(MDInputError, match="minimum-image") as err:
        simulate(water_model, atoms, steps=1, check_inputs=False)
    assert "supercell" in err.value.hint


def test_pruned_and_chunked_forces_match(water_model):
    """The Verlet list (cutoff + skin) pruned to the cutoff, and messages in chunks, give the same forces."""
    atoms = read(WATER, 1)
    ref, _ = init_state(water_model, [atoms], skin=0.0)
    water_model.edge_chunk_size = 1500
    try:
        state, evaluate = init_state(water_model, [atoms], skin=0.8)
    finally:
        water_model.edge_chunk_size = None
    assert isinstance(evaluate, ForceEvaluator) and evaluate.prune
    assert state.graph.num_edges > evaluate.pruned(state.graph).num_edges  # the skin's edges are there
    assert torch.allclose(state.forces, ref.forces, atol=1e-10, rtol=0)
    assert torch.allclose(state.energy, ref.energy, atol=1e-9, rtol=0)


def test_cli_supercell(water_model, tmp_path):
    model = tmp_path / "m.pt"
    save_package(water_model, model)
    start = tmp_path / "w.extxyz"
    write(start, read(WATER, 0))
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["md", "run", str(model), str(start), "--supercell", "2", "1", "1", "--steps", "4",
                                 "--dt", "0.25", "--traj-every", "2", "--out", str(out), "--no-progress", "--no-plots",
                                 "--no-extxyz", "--edge-chunk", "3000"])
    assert r.exit_code == 0, r.output
    assert "atom-steps/s" in r.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["atoms"] == 384 and summary["peak_rss_gib"] > 0
    import h5py

    with h5py.File(out / "trajectory.h5") as f:
        assert f["particles/all/position/value"].shape == (3, 384, 3)
    r = CliRunner().invoke(app, ["md", "run", str(model), str(start), "--edge-chunk", "x", "--out", str(out)])
    assert r.exit_code != 0 and "--edge-chunk" in r.output
    r = CliRunner().invoke(app, ["md", "run", str(model), str(start), "--atom-chunk", "0", "--out", str(out)])
    assert r.exit_code != 0 and "--atom-chunk" in r.output
    # blocks of atoms with their halo (exact): no neighbour list of the whole box, the grid in the summary
    blk = tmp_path / "blk"
    r = CliRunner().invoke(app, ["md", "run", str(model), str(start), "--supercell", "2", "1", "1", "--steps", "2",
                                 "--dt", "0.25", "--out", str(blk), "--no-progress", "--no-plots", "--no-extxyz",
                                 "--atom-chunk", "900"])
    assert r.exit_code == 0, r.output
    blocks = json.loads((blk / "summary.json").read_text())["blocks"]["0"]
    assert blocks["blocks"] > 1 and blocks["max_block_atoms"] < 384 + 900
    assert np.isfinite(summary["atom_steps_per_s"])


def test_spatial_order_gives_the_same_forces(water_model):
    """A box evaluated with its atoms in spatial (Morton) order: the same forces (in the atoms' own order),
    energy and stress, before and after a neighbour-list rebuild."""
    from compscope.md._forces import spatial_order

    atoms = read(WATER, 0).repeat((2, 2, 1))
    state, plain = init_state(water_model, [atoms], skin=0.3)
    assert not plain.sorts(state.graph)  # below the default size
    ordered = ForceEvaluator(water_model, skin=0.3, sort_min_atoms=1)
    assert not ordered.sorts(state.graph)  # float64 runs keep their order (bit-for-bit as before) ...
    ordered.sort_dtypes = (torch.float64,)  # ... here it is switched on to compare at float64 precision
    perm = spatial_order(state.positions, state.graph.cell[0], 3.8)
    assert sorted(perm.tolist()) == list(range(len(atoms))) and not torch.equal(perm, torch.arange(len(atoms)))
    gen = torch.Generator().manual_seed(0)
    for step in range(2):
        plain.compute_stress = ordered.compute_stress = True
        a, b = plain(state), ordered(state)
        assert b.graph.num_edges == 0 and ordered.rebuilds == step + 1
        assert torch.allclose(a.forces, b.forces, atol=1e-10, rtol=0)
        assert torch.allclose(a.energy, b.energy, atol=1e-9, rtol=0)
        assert torch.allclose(a.thermostat["stress"], b.thermostat["stress"], atol=1e-10, rtol=0)
        moved = b.positions + 0.2 * torch.randn(b.positions.shape, generator=gen, dtype=b.positions.dtype)
        state = b.replace(graph=b.graph.with_positions(moved))  # beyond half the skin: both rebuild
