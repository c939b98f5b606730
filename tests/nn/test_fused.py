"""The fused CPU kernels compute the same function, first and second derivatives as the dense products."""

from __future__ import annotations

import math

import pytest
import torch
from e3nn import o3

from compscope.data import AtomicGraph
from compscope.models import build_model
from compscope.nn import ChannelwiseTensorProduct, scatter_sum
from compscope.nn._fused import fused_edge_product, fused_node_product
from compscope.nn._interaction import _tp_out_irreps

from .test_fast_layers import _uuu_instructions

SH = o3.Irreps.spherical_harmonics(2)


def _edge_case(node: str, dtype=torch.float64, n=7, e=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    mid, ins = _tp_out_irreps(o3.Irreps(node), SH, o3.Irreps("1x0e+1x1o+1x2e"))
    tp = ChannelwiseTensorProduct(node, SH, mid, ins).to(dtype)
    x = torch.randn(n, tp.d1, tp.mul, dtype=dtype, generator=g)
    y = torch.randn(e, SH.dim, dtype=dtype, generator=g)
    w = torch.randn(e, tp.weight_numel, dtype=dtype, generator=g)
    edge_index = torch.randint(0, n, (2, e), generator=g)
    return tp, x, y, w, edge_index


def _dense_edge(tp, x, y, w, edge_index):
    return scatter_sum(tp.product(x[edge_index[0]], y, w), edge_index[1], x.shape[0])


def _fused_edge(tp, x, y, w, edge_index):
    return fused_edge_product(x, y, w.view(w.shape[0], tp.num_paths, tp.mul), edge_index, x.shape[0],
                              tp.sparse_cg())


@pytest.mark.parametrize("node", ["6x0e", "6x0e+6x1o", "3x0e+3x1o+3x2e"])
def test_fused_edge_product_equals_dense_values_and_gradients(node):
    tp, x, y, w, ei = _edge_case(node)
    inputs = [t.clone().requires_grad_(True) for t in (x, y, w)]
    ref = _dense_edge(tp, *inputs, ei)
    cot = torch.randn_like(ref)
    g_ref = torch.autograd.grad((ref * cot).sum(), inputs)
    inputs2 = [t.clone().requires_grad_(True) for t in (x, y, w)]
    out = _fused_edge(tp, *inputs2, ei)
    g_out = torch.autograd.grad((out * cot).sum(), inputs2)
    assert torch.allclose(out, ref, atol=1e-12)
    for a, b in zip(g_out, g_ref):
        assert torch.allclose(a, b, atol=1e-11)


@pytest.mark.parametrize("check", ["gradcheck", "gradgradcheck"])
def test_fused_kernels_pass_gradcheck(check):
    """First and second derivatives (force losses differentiate forces) through both kernels are exact."""
    run = getattr(torch.autograd, check)
    tp, x, y, w, ei = _edge_case("2x0e+2x1o", n=4, e=9)
    w = w.view(w.shape[0], tp.num_paths, tp.mul)
    cg = tp.sparse_cg()
    inputs = tuple(t.clone().requires_grad_(True) for t in (x, y, w))
    assert run(lambda a, b, c: fused_edge_product(a, b, c, ei, 4, cg, scale=0.7), inputs)

    a = o3.Irreps("2x0e+2x1o+2x2e")
    out, ins = _uuu_instructions(a, 1)
    tp2 = ChannelwiseTensorProduct(a, a, out, ins, shared_weights=True).double()
    xs = torch.randn(5, tp2.d1, 2, dtype=torch.float64, requires_grad=True)
    ys = torch.randn(5, tp2.d2, 2, dtype=torch.float64, requires_grad=True)
    ws = torch.randn(tp2.num_paths, 2, dtype=torch.float64, requires_grad=True)
    assert run(lambda p, q, r: fused_node_product(p, q, r, tp2.sparse_cg()), (xs, ys, ws))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_node_product_equals_dense(dtype):
    torch.manual_seed(3)
    a = o3.Irreps("4x0e+4x1o+4x2e")
    out, ins = _uuu_instructions(a, 2)
    tp = ChannelwiseTensorProduct(a, a, out, ins, shared_weights=True).to(dtype)
    x = torch.randn(9, tp.d1, 4, dtype=dtype, requires_grad=True)
    y = torch.randn(9, tp.d2, 4, dtype=dtype, requires_grad=True)
    ref = tp.product(x, y)
    got = fused_node_product(x, y, tp.weight.view(tp.num_paths, tp.mul), tp.sparse_cg())
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert torch.allclose(got, ref, atol=tol)
    cot = torch.randn_like(ref)
    g_ref = torch.autograd.grad((ref * cot).sum(), [x, y, tp.weight])
    g_got = torch.autograd.grad((got * cot).sum(), [x, y, tp.weight])
    for p, q in zip(g_got, g_ref):
        assert torch.allclose(p, q, atol=10 * tol)


def test_fused_kernels_propagate_nan():
    """The stability monitors detect blow-ups through NaN forces: fast math must not drop them."""
    tp, x, y, w, ei = _edge_case("4x0e+4x1o")
    x[ei[0, 0], 0, 0] = math.nan
    out = _fused_edge(tp, x, y, w, ei)
    assert torch.isnan(out[ei[1, 0]]).any()


def _ethanol_graph(dtype):
    from ase.build import molecule

    atoms = [molecule("CH3CH2OH") for _ in range(3)]
    for k, a in enumerate(atoms):
        a.rattle(0.05, seed=k)
    from compscope.data._graph import graphs_from_atoms

    return AtomicGraph.collate(graphs_from_atoms(atoms, cutoff=5.0)).to(dtype=dtype)


def _force_loss_grads(model, graph, fused: bool):
    model.fused_kernels = fused
    model.zero_grad()
    out = model(graph, training=True)
    loss = out["energy"].pow(2).sum() * 1e-3 + out["forces"].pow(2).sum()
    loss.backward()
    return out, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_model_fused_kernels_equal_dense_path_including_force_loss_gradients(dtype):
    """Fused kernels and dense contractions give the same energies, forces and parameter gradients of a force
    loss (second derivatives through the kernels)."""
    torch.manual_seed(0)
    model = build_model(name="EquivariantPotential", preset="tiny", species=[1, 6, 8]).to(dtype)
    graph = _ethanol_graph(dtype)
    dense, g_dense = _force_loss_grads(model, graph, fused=False)
    fused, g_fused = _force_loss_grads(model, graph, fused=True)
    tol = 1e-9 if dtype == torch.float64 else 1e-4
    assert torch.allclose(fused["energy"], dense["energy"], atol=tol, rtol=tol)
    assert torch.allclose(fused["forces"], dense["forces"], atol=tol, rtol=tol)
    assert g_dense.keys() == g_fused.keys() and len(g_dense) > 10
    for name in g_dense:
        scale = float(g_dense[name].abs().max()) + 1e-12
        assert float((g_fused[name] - g_dense[name]).abs().max()) <= 10 * tol * max(1.0, scale), name


def _periodic_graph(dtype):
    from ase.build import molecule

    from compscope.data._graph import graphs_from_atoms

    atoms = molecule("CH3CH2OH")
    atoms.set_cell([5.0, 5.5, 6.0])
    atoms.pbc = True
    atoms.rattle(0.05, seed=1)
    return AtomicGraph.collate(graphs_from_atoms([atoms], cutoff=5.0)).to(dtype=dtype)


def test_edge_pairs_match_reverse_edges_with_periodic_images():
    from compscope.nn._fused import edge_pairs

    graph = _periodic_graph(torch.float64)
    assert bool((graph.cell_shifts != 0).any())  # images are part of the test
    rep, widx = edge_pairs(graph.edge_index, graph.cell_shifts)
    assert 2 * len(rep) >= graph.edge_index.shape[1] > len(rep)
    lengths = graph.edge_vectors().norm(dim=-1)
    assert torch.equal(lengths, lengths[rep][widx])  # bitwise: reverse edges have exactly the same length
    # a list without reverse edges cannot be paired
    assert edge_pairs(graph.edge_index[:, :1], graph.cell_shifts[:1]) is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_periodic_model_fused_equals_dense(dtype):
    torch.manual_seed(1)
    model = build_model(name="EquivariantPotential", preset="tiny", species=[1, 6, 8]).to(dtype)
    graph = _periodic_graph(dtype)
    model.fused_kernels = False
    dense = model(graph, compute_stress=True)
    model.fused_kernels = True
    fused = model(graph, compute_stress=True)
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    for key in ("energy", "forces", "stress"):
        assert torch.allclose(fused[key], dense[key].detach(), atol=tol, rtol=tol), key


def test_float32_model_total_energy_is_accumulated_in_float64():
    """A float32 model adds its E0s in float64: totals of ~1e6 eV keep sub-meV precision (float32 alone: ~0.1 eV)."""
    import copy

    torch.manual_seed(2)
    model64 = build_model(name="EquivariantPotential", preset="tiny", species=[1, 6, 8],
                          atomic_energies=[-1.0e5 - 0.123456, -2.0e5 - 0.654321, -3.0e5 - 0.111111]).double()
    model32 = copy.deepcopy(model64).float()
    e64 = model64(_ethanol_graph(torch.float64))["energy"].detach()
    out32 = {k: v.detach() for k, v in model32(_ethanol_graph(torch.float32)).items()}
    assert out32["energy"].dtype == torch.float64 and out32["forces"].dtype == torch.float32
    assert abs(float(e64[0])) > 1e6
    assert float((out32["energy"] - e64).abs().max()) < 1e-3
    # a package saved in float64 and loaded as float32 keeps the exact E0s
    state = model64.state_dict()
    fresh = build_model(name="EquivariantPotential", preset="tiny", species=[1, 6, 8],
                        atomic_energies=[-1.0e5 - 0.123456, -2.0e5 - 0.654321, -3.0e5 - 0.111111]).double()
    fresh.load_state_dict(state)
    assert torch.equal(fresh.float()._e0_64, model64._e0_64)


def test_threaded_kernels_equal_single_thread(monkeypatch):
    """With several torch threads the kernels split edges/nodes over threads (private scatter buffers)."""
    from compscope.nn import _fused

    torch.manual_seed(4)
    model = build_model(name="EquivariantPotential", preset="tiny", species=[1, 6, 8]).double()
    graph = _periodic_graph(torch.float64)
    prev = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = model(graph, compute_stress=True)
        monkeypatch.setattr(_fused, "_MIN_ITEMS", {"edges": 8, "nodes": 2})
        torch.set_num_threads(3)
        assert _fused._n_threads(graph.edge_index.shape[1], "edges", 0) == 3
        many = model(graph, compute_stress=True)
    finally:
        torch.set_num_threads(prev)
    for key in ("energy", "forces", "stress"):
        assert torch.allclose(many[key], one[key], atol=1e-12, rtol=1e-12), key


def test_threaded_kernels_work_in_a_forked_child(monkeypatch):
    """A forked process (multiprocessing's default on Linux) must not wait on the parent's pool threads."""
    import multiprocessing as mp

    from compscope.nn import _fused

    monkeypatch.setattr(_fused, "_MIN_ITEMS", {"edges": 8, "nodes": 2})
    prev = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        tp, x, y, w, ei = _edge_case("4x0e+4x1o")
        expected = _fused_edge(tp, x, y, w, ei)  # starts the pool in the parent
        ctx = mp.get_context("fork")
        with ctx.Pool(1) as pool:
            got = pool.apply_async(_fused_edge, (tp, x, y, w, ei)).get(timeout=60)
    finally:
        torch.set_num_threads(prev)
    assert torch.allclose(got, expected)


@pytest.mark.parametrize("present", [(True, True, True), (True, True, False), (False, True, True),
                                     (True, False, False)])
def test_fused_node_second_order_equals_generic_kernels(present):
    """The one-pass second-order node kernel equals the derivatives assembled from the first-order kernels, also
    when some incoming gradients are absent (forces: no gradient flows into the path weights' slot)."""
    from compscope.nn._fused import _node_backward, _node_forward, _node_second_order

    a = o3.Irreps("3x0e+3x1o+3x2e")
    out, ins = _uuu_instructions(a, 2)
    tp = ChannelwiseTensorProduct(a, a, out, ins, shared_weights=True).double()
    cg = tp.sparse_cg()
    g = torch.Generator().manual_seed(0)
    x, y = (torch.randn(7, d, 3, dtype=torch.float64, generator=g) for d in (tp.d1, tp.d2))
    w = torch.randn(tp.num_paths, 3, dtype=torch.float64, generator=g)
    grad = torch.randn(7, cg.k, 3, dtype=torch.float64, generator=g)
    gg = [torch.randn(t.shape, dtype=torch.float64, generator=g) if keep else None
          for t, keep in zip((x, y, w), present)]
    fused = _node_second_order(grad, x, y, w, *gg, cg)
    generic = second_order_reference(lambda p, q, r: _node_forward(p, q, r, cg),
                                     lambda h, p, q, r: _node_backward(h, p, q, r, cg), grad, x, y, w, *gg)
    for f, r in zip(fused, generic):
        torch.testing.assert_close(f, r if r is not None else torch.zeros_like(f), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("present", [(True, True, True), (False, True, True), (True, False, True),
                                     (True, True, False)])
def test_fused_edge_second_order_equals_generic_kernels(present):
    """The one-pass second-order edge kernel equals the derivatives assembled from the first-order kernels, with
    reverse edges sharing weight rows (widx) and with absent incoming gradients (first layer: none reaches x)."""
    from compscope.nn._fused import _edge_backward, _edge_forward, _edge_second_order

    tp, x, y, w, ei = _edge_case("3x0e+3x1o+3x2e", n=6, e=20, seed=3)
    ei = torch.cat([ei, ei.flip(0)], dim=1)  # every edge and its reverse
    y = torch.cat([y, y], dim=0)
    w = w.view(w.shape[0], tp.num_paths, tp.mul)
    widx = torch.cat([torch.arange(20), torch.arange(20)])
    send, recv, cg = ei[0].contiguous(), ei[1].contiguous(), tp.sparse_cg()
    g = torch.Generator().manual_seed(1)
    grad = torch.randn(6, cg.k, tp.mul, dtype=torch.float64, generator=g)
    gg = [torch.randn(t.shape, dtype=torch.float64, generator=g) if keep else None
          for t, keep in zip((x, y, w), present)]
    fused = _edge_second_order(grad, x, y, w, *gg, widx, send, recv, cg, 0.7)
    generic = second_order_reference(lambda a, b, c: _edge_forward(a, b, c, widx, send, recv, 6, cg, 0.7),
                                     lambda h, a, b, c: _edge_backward(h, a, b, c, widx, send, recv, cg, 0.7),
                                     grad, x, y, w, *gg)
    for f, r in zip(fused, generic):
        torch.testing.assert_close(f, r if r is not None else torch.zeros_like(f), rtol=1e-11, atol=1e-11)


def second_order_reference(forward, backward, grad, x, y, w, ggx, ggy, ggw):
    """Derivatives of ``<ggx, Bx> + <ggy, By> + <ggw, Bw>`` where ``(Bx, By, Bw) = backward(grad, x, y, w)`` is the
    gradient of the trilinear form ``<grad, forward(x, y, w)>``.

    Multilinearity makes every term the same kernels with substituted arguments: the derivative with respect to
    ``grad`` is ``forward(ggx, y, w) + forward(x, ggy, w) + forward(x, y, ggw)``, and e.g. the one with respect to
    ``x`` is the x-gradient of ``<grad, forward(x, ggy, w)> + <grad, forward(x, y, ggw)>``."""
    d_grad = dx = dy = dw = None

    def add(acc, v):
        return v if acc is None else acc + v

    if ggx is not None:
        d_grad = add(d_grad, forward(ggx, y, w))
        _, gy_, gw_ = backward(grad, ggx, y, w)
        dy, dw = add(dy, gy_), add(dw, gw_)
    if ggy is not None:
        d_grad = add(d_grad, forward(x, ggy, w))
        gx_, _, gw_ = backward(grad, x, ggy, w)
        dx, dw = add(dx, gx_), add(dw, gw_)
    if ggw is not None:
        d_grad = add(d_grad, forward(x, y, ggw))
        gx_, gy_, _ = backward(grad, x, y, ggw)
        dx, dy = add(dx, gx_), add(dy, gy_)
    return d_grad, dx, dy, dw
