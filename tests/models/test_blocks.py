"""Atom-chunked (blocked) evaluation: blocks of atoms with their halo give the same energies, forces and stress as
the whole periodic box at once (float64 to round-off, float32 to its precision), for blocks bigger and smaller
than the halo, cubic, triclinic and slab cells; MD with blocks follows the same trajectory; bad input is refused."""

import numpy as np
import pytest
import torch
from ase.io import read

from compscope.data import AtomicGraph
from compscope.data import keys as K
from compscope.md import MDInputError, simulate, wrap_positions
from compscope.models import (
    BlockError,
    BlockPlan,
    auto_block_atoms,
    block_evaluate,
    build_model,
    bytes_per_evaluated_atom,
    plan_blocks,
)

from ..conftest import FIXTURES

WATER = FIXTURES / "water" / "water_test_4.extxyz"
R_MAX = 3.0  # two layers: halo 6 Å, about half the 12.44 Å cell


def _model(dtype, **kw):
    torch.manual_seed(0)
    return build_model(preset="tiny", species=[1, 8], r_max=R_MAX, avg_num_neighbors=15.0, scale=0.3,
                       atomic_energies=[-13.6, -432.0], **kw).to(dtype).eval()


def _whole(model, atoms, dtype):
    g = AtomicGraph.from_atoms(atoms, R_MAX, energy_key=None, forces_key=None, stress_key=None, dtype=dtype)
    out = model(g, compute_forces=True, compute_stress=True)
    return g, {k: v.detach() for k, v in out.items()}


def _blocked(model, g, grid, stats=None):
    return block_evaluate(model, g.positions, g.atomic_numbers, g.cell[0], g.pbc[0], plan=BlockPlan(grid),
                          compute_stress=True, stats=stats)


def _triclinic():
    atoms = read(WATER, 0)
    cell = atoms.cell.array.copy()
    cell[1] += 0.25 * cell[0]
    cell[2] += 0.15 * cell[0] - 0.2 * cell[1]
    atoms.set_cell(cell, scale_atoms=True)
    return atoms


@pytest.mark.parametrize("cell", ["cubic", "triclinic"])
def test_blocks_equal_whole_box_float64(cell):
    atoms = read(WATER, 0) if cell == "cubic" else _triclinic()
    model = _model(torch.float64)
    g, ref = _whole(model, atoms, torch.float64)
    f_scale = float(ref[K.FORCES].abs().max())
    s_scale = float(ref[K.STRESS].abs().max())
    # one block (the halo wraps around the cell), uneven grids, and blocks of ~3 Å, half the 6 Å halo
    for grid in [(1, 1, 1), (2, 1, 1), (3, 2, 2), (4, 4, 4)]:
        stats = {}
        out = _blocked(model, g, grid, stats)
        assert 0 < stats["blocks"] <= int(np.prod(grid))  # empty blocks (none of 64 of ~3 Å) are skipped
        assert float((out[K.FORCES] - ref[K.FORCES]).abs().max()) <= 1e-12 * f_scale, grid
        assert abs(float(out[K.ENERGY][0] - ref[K.ENERGY][0])) <= 1e-12 * abs(float(ref[K.ENERGY][0])), grid
        assert float((out[K.STRESS] - ref[K.STRESS]).abs().max()) <= 1e-11 * s_scale, grid
        assert torch.allclose(out[K.NODE_ENERGY], ref[K.NODE_ENERGY], rtol=0, atol=1e-10)
    # the forces are not trivially equal: a wrong halo (one layer's reach) changes them
    thin = _model(torch.float64)
    thin.__class__ = type("OneLayerClaim", (type(thin),), {"receptive_field": property(lambda self: self.cutoff)})
    bad = _blocked(thin, g, (3, 2, 2))
    assert float((bad[K.FORCES] - ref[K.FORCES]).abs().max()) > 1e-4 * f_scale


def test_blocks_float32_and_slab():
    model = _model(torch.float32)
    g, ref = _whole(model, read(WATER, 0), torch.float32)
    out = _blocked(model, g, (2, 2, 3))
    assert float((out[K.FORCES] - ref[K.FORCES]).abs().max()) <= 2e-5 * float(ref[K.FORCES].abs().max())
    assert abs(float(out[K.ENERGY][0] - ref[K.ENERGY][0])) <= 1e-6 * abs(float(ref[K.ENERGY][0]))
    # a slab: periodic in x and y only; blocks cut x and y, the whole z range is in every block
    atoms = read(WATER, 0)
    atoms.pbc = (True, True, False)
    model64 = _model(torch.float64)
    g, ref = _whole(model64, atoms, torch.float64)
    out = _blocked(model64, g, (3, 2, 1))
    assert float((out[K.FORCES] - ref[K.FORCES]).abs().max()) <= 1e-12 * float(ref[K.FORCES].abs().max())


def test_plan_and_budget():
    atoms = read(WATER, 0).repeat((4, 4, 4))  # 12,288 atoms, 49.8 Å
    cell, pbc = atoms.cell.array, atoms.pbc
    plan = plan_blocks(cell, pbc, len(atoms), halo=6.0, max_evaluated=6000)
    width = 49.78 / np.asarray(plan.grid)
    assert plan.num_blocks > 1 and np.all(len(atoms) / atoms.get_volume() * np.prod(width + 12.0) <= 6000)
    assert plan_blocks(cell, pbc, len(atoms), 6.0, 10**7).grid == (1, 1, 1)
    small = build_model(preset="small", species=[1, 8], r_max=5.0)
    per_atom = bytes_per_evaluated_atom(small, torch.float32)
    assert 1e5 < per_atom < 3e5  # measured: 126 kB/atom for one float32 force call
    assert bytes_per_evaluated_atom(small, torch.float64) == 2 * per_atom
    assert auto_block_atoms(small, 192, 1927.0, torch.float32) is None  # fits: no blocks
    n = auto_block_atoms(small, 10**6, 1e7, torch.float32, memory_gib=4.0)
    per_block_atom = bytes_per_evaluated_atom(small, torch.float32, density=0.1, blocked=True)
    assert per_block_atom < per_atom and n is not None and n * per_block_atom <= 4 * 2**30
    with pytest.raises(BlockError):
        auto_block_atoms(small, 10, 100.0, memory_gib=0)


def test_md_with_blocks_follows_the_same_trajectory():
    model = _model(torch.float64)
    atoms = read(WATER, 0)
    kw = dict(steps=3, dt=0.5, integrator="langevin", seed=3, check_inputs=False, supercell=(2, 1, 1))
    ref = simulate(model, atoms, atom_chunk=None, **kw)
    blk = simulate(model, atoms, atom_chunk=900, **kw)
    assert blk.state.graph.num_edges == 0  # no neighbour list of the whole box
    # blocked MD wraps positions into the cell at every call, the Verlet-list path at its rebuilds
    assert torch.allclose(wrap_positions(blk.state.graph), wrap_positions(ref.state.graph), rtol=0, atol=1e-10)
    assert torch.allclose(blk.state.forces, ref.state.forces, rtol=0, atol=1e-9)
    assert abs(float(blk.state.energy[0] - ref.state.energy[0])) < 1e-9


def test_bad_input():
    model = _model(torch.float64)
    mol = read(WATER, 0)
    mol.pbc = False
    g = AtomicGraph.from_atoms(mol, R_MAX, energy_key=None, forces_key=None, stress_key=None)
    with pytest.raises(BlockError, match="periodic"):
        block_evaluate(model, g.positions, g.atomic_numbers, g.cell[0], g.pbc[0], max_evaluated=100)
    with pytest.raises(MDInputError, match="atom_chunk"):
        simulate(model, read(WATER, 0), steps=1, atom_chunk=0, check_inputs=False)
    with pytest.raises(MDInputError, match="atom_chunk"):
        simulate(model, read(WATER, 0), steps=1, atom_chunk="many", check_inputs=False)


def test_blocks_of_a_pair_potential_through_its_forward():
    """A potential without the layer-pruned path (an analytic pair potential: receptive field = its cutoff) goes
    through ``forward`` on the block graph, still exact."""
    from ase.build import bulk

    from compscope.md.potentials import LennardJones

    lj = LennardJones(epsilon=0.0104, sigma=3.4, cutoff=6.5, r_on=5.5, atomic_numbers=[18])
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(3)
    atoms.rattle(0.05, seed=1)
    g = AtomicGraph.from_atoms(atoms, 6.5, energy_key=None, forces_key=None, stress_key=None)
    ref = {k: v.detach() for k, v in lj(g, compute_forces=True, compute_stress=True).items()}
    out = _blocked(lj, g, (2, 2, 1))
    assert float((out[K.FORCES] - ref[K.FORCES]).abs().max()) <= 1e-12 * float(ref[K.FORCES].abs().max())
    assert abs(float(out[K.ENERGY][0] - ref[K.ENERGY][0])) <= 1e-12 * abs(float(ref[K.ENERGY][0]))
    assert float((out[K.STRESS] - ref[K.STRESS]).abs().max()) <= 1e-12 * float(ref[K.STRESS].abs().max())


def test_blocked_md_keeps_the_stability_monitors():
    """Blocked MD keeps no neighbour list of the box; the monitor still finds the bonds and the closest pair."""
    from compscope.md import StabilityMonitor

    model = _model(torch.float64)
    mon = StabilityMonitor(min_distance=1.2, check_every=1)  # O-H bonds are ~1 Å: caught at once
    res = simulate(model, read(WATER, 0), steps=2, atom_chunk=900, monitor=mon, check_inputs=False)
    assert res.block_atoms == 900 and mon.bonds.shape[0] == 128  # 64 waters, two O-H bonds each
    assert res.violations and res.violations[0].reason == "min_distance"


def test_blocked_npt_follows_the_same_volume():
    """The barostat's stress comes from the blocks too: NPT with and without blocks gives the same cell."""
    from compscope.md import StochasticCellRescaling

    model = _model(torch.float64)
    atoms = read(WATER, 0)

    def run(chunk):
        integ = StochasticCellRescaling(dt=0.5, temperature=300.0, pressure=1.0, tau_p=20.0, compressibility=4.5e-5,
                                        every=1, seed=4)
        return simulate(model, atoms, steps=2, integrator=integ, atom_chunk=chunk, check_inputs=False)

    ref, blk = run(None), run(900)
    assert not torch.equal(ref.state.graph.cell, torch.as_tensor(atoms.cell.array).unsqueeze(0))  # it moved
    assert torch.allclose(blk.state.graph.cell, ref.state.graph.cell, rtol=1e-12, atol=0)
    assert torch.allclose(blk.state.forces, ref.state.forces, rtol=0, atol=1e-9)
