"""Radial spline tables (inference): the table against the radial network, energies/forces/stress of a model with
tables against the network (float64 and float32), forces = -grad E and stress = strain derivative with tables,
the generated kernels against the generic reference kernels, NaN propagation, cutoff, rebuild on new weights."""

import numpy as np
import pytest
import torch
from ase.io import read

from compscope.data import AtomicGraph
from compscope.data import keys as K
from compscope.models import block_evaluate, build_model
from compscope.nn import RadialTable
from compscope.nn import _radial_table as RT
from compscope.testing import assert_forces_are_gradients, assert_stress_is_strain_derivative

from ..conftest import FIXTURES

R_MAX = 4.0


def _model(dtype, max_ell=1):
    torch.manual_seed(0)
    m = build_model(preset="tiny", species=[1, 8], r_max=R_MAX, avg_num_neighbors=25.0, max_ell=max_ell)
    return m.to(dtype).eval()


def _graph(dtype, reps=(1, 1, 1)):
    atoms = read(FIXTURES / "water" / "water_test_4.extxyz", 0).repeat(reps)
    return AtomicGraph.from_atoms(atoms, R_MAX, energy_key=None, forces_key=None, dtype=dtype)


def _run(model, g, intervals):
    model.radial_table_intervals = intervals
    out = model(g, compute_forces=True, compute_stress=True)
    return {k: v.detach().double() for k, v in out.items()}


def test_table_matches_network():
    m = _model(torch.float64)
    inter = m.interactions[1]
    errs = []
    for n in (128, 256, 512):
        t = inter.radial_table(m.radial, m.cutoff, n, torch.float64)
        errs.append(t.max_rel_error)
        r = np.linspace(0.3, R_MAX - 1e-9, 3001)
        ref = inter.radial_mlp(m.radial(torch.as_tensor(r)))
        ref = ref.detach().numpy() / inter.avg_num_neighbors
        got = t.evaluate(r)
        assert np.abs(got - ref).max() <= 2 * t.max_rel_error * np.abs(ref).max() + 1e-15
    assert errs[-1] < 1e-7
    assert errs[0] / errs[1] > 10 and errs[1] / errs[2] > 10  # 4th order: ~16x per halving
    # exactly zero at and beyond the cutoff, as the network
    assert np.all(t.evaluate(np.array([R_MAX, R_MAX + 0.1, 9.0])) == 0.0)


@pytest.mark.parametrize("max_ell", [1, 2], ids=["l1", "l2"])
def test_model_float64_table_equals_network(max_ell):
    m = _model(torch.float64, max_ell)
    g = _graph(torch.float64)
    ref, tab = _run(m, g, None), _run(m, g, 1024)
    for key, rtol in ((K.ENERGY, 1e-9), (K.FORCES, 1e-6), (K.STRESS, 1e-6), (K.NODE_ENERGY, 1e-9)):
        scale = float(ref[key].abs().max())
        assert float((tab[key] - ref[key]).abs().max()) <= rtol * scale, key


def test_model_float32_table_within_round_off():
    """float32 with tables is as close to the float64 network as float32 with the network (round-off)."""
    g64, g32 = _graph(torch.float64), _graph(torch.float32)
    ref = _run(_model(torch.float64, 2), g64, None)
    m32 = _model(torch.float32, 2)
    net, tab = _run(m32, g32, None), _run(m32, g32, 1024)
    for key in (K.ENERGY, K.FORCES, K.STRESS):
        err_net = float((net[key] - ref[key]).abs().max())
        err_tab = float((tab[key] - ref[key]).abs().max())
        scale = float(ref[key].abs().max())
        assert err_tab <= 3 * err_net + 1e-6 * scale, (key, err_tab, err_net)


def test_forces_and_stress_are_derivatives_with_table():
    m = _model(torch.float64, 2)
    m.radial_table_intervals = 512
    g = _graph(torch.float64)
    assert_forces_are_gradients(m, g)
    assert_stress_is_strain_derivative(m, g)


def test_generated_kernels_equal_generic():
    m = _model(torch.float64, 2)
    g = _graph(torch.float64)
    m.radial_table_intervals = 256
    tables = m.radial_tables(torch.float64)
    gen = torch.Generator().manual_seed(1)
    for inter, table in zip(m.interactions, tables):
        cg = inter.tp.sparse_cg()
        n, e = g.num_nodes, g.num_edges
        x = torch.randn(n, cg.d1, inter.tp.mul, generator=gen, dtype=torch.float64)
        y = torch.randn(e, cg.d2, generator=gen, dtype=torch.float64)
        r = torch.rand(e, generator=gen, dtype=torch.float64) * (R_MAX + 0.5)  # some beyond the cutoff
        send, recv = g.edge_index[0], g.edge_index[1]
        grad = torch.randn(n, cg.k, inter.tp.mul, generator=gen, dtype=torch.float64)
        out = [RT._tab_forward(x, y, r, table, send, recv, n, cg, generated=flag) for flag in (False, True)]
        assert torch.allclose(out[0], out[1], rtol=1e-12, atol=1e-13)
        back = [RT._tab_backward(grad, x, y, r, table, send, recv, cg, generated=flag) for flag in (False, True)]
        for a, b in zip(*back):
            assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)
        assert float(back[1][2][r >= R_MAX].abs().max()) == 0.0  # no length gradient beyond the cutoff
        # the backward without d/dx (first layer: x is the species embedding) gives the same d/dy and d/dr
        nox = RT._tab_backward(grad, x, y, r, table, send, recv, cg, need_gx=False)
        assert float(nox[0].abs().max()) == 0.0
        for a, b in zip(back[0][1:], nox[1:]):
            assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)


def test_nan_propagates_and_training_uses_network():
    m = _model(torch.float32, 2)
    g = _graph(torch.float32)
    m.radial_table_intervals = 256
    bad = g.positions.clone()
    bad[0, 0] = float("nan")
    out = m(g.with_positions(bad))
    assert torch.isnan(out[K.ENERGY]).all()
    # training=True differentiates through the network, not the table: parameter gradients reach the radial MLP
    out = m(g, compute_forces=True, training=True)
    (out[K.FORCES].square().sum() + out[K.ENERGY].sum()).backward()
    w = m.interactions[0].radial_mlp.weights[0]
    assert w.grad is not None and float(w.grad.abs().max()) > 0


def test_table_rebuilt_when_weights_change():
    m = _model(torch.float64, 1)
    g = _graph(torch.float64)
    m.radial_table_intervals = 1024
    first = m.radial_tables(torch.float64)
    assert m.radial_tables(torch.float64) is first  # kept while nothing changes
    before = _run(m, g, None)
    with torch.no_grad():
        m.interactions[0].radial_mlp.weights[0].mul_(1.5)
    after = _run(m, g, 1024)
    assert m.radial_tables(torch.float64) is not first
    net = _run(m, g, None)
    scale = float(net[K.FORCES].abs().max())
    assert float((after[K.FORCES] - net[K.FORCES]).abs().max()) <= 1e-5 * scale
    assert float((before[K.FORCES] - net[K.FORCES]).abs().max()) > 1e-3 * scale  # the change mattered


def test_blocks_with_tables_equal_whole_box():
    m = _model(torch.float64, 2)
    m.radial_table_intervals = 256
    g = _graph(torch.float64)
    whole = _run(m, g, 256)
    out = block_evaluate(m, g.positions, g.atomic_numbers, g.cell[0], g.pbc[0], max_evaluated=200,
                         compute_stress=True)
    scale = float(whole[K.FORCES].abs().max())
    assert float((out[K.FORCES].double() - whole[K.FORCES]).abs().max()) <= 1e-10 * scale
    assert abs(float(out[K.ENERGY][0]) - float(whole[K.ENERGY][0])) <= 1e-9 * abs(float(whole[K.ENERGY][0]))


def test_bad_table_size():
    m = _model(torch.float64, 1)
    m.radial_table_intervals = 0
    with pytest.raises(ValueError, match="radial_table_intervals"):
        m(_graph(torch.float64))
    with pytest.raises(ValueError, match="n_intervals"):
        RadialTable(m.radial, m.interactions[0].radial_mlp, R_MAX, n_intervals=0)


def test_node_blocks_equal_whole():
    """The tabulated path's node-wise steps in blocks of atoms: the same energies, forces and stress."""
    m = _model(torch.float64, 2)
    g = _graph(torch.float64, reps=(2, 1, 1))
    m.node_chunk_size = None
    whole = _run(m, g, 256)
    m.node_chunk_size = 7  # blocks of 7 atoms (the last one shorter)
    blocks = _run(m, g, 256)
    for key in (K.ENERGY, K.FORCES, K.STRESS, K.NODE_ENERGY):
        scale = float(whole[key].abs().max())
        assert float((blocks[key] - whole[key]).abs().max()) <= 1e-12 * scale, key
