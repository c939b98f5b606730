"""Exact EGNN update divergence by forward mode (compscope.nn.egnn_update_divergence) against the brute-force
Jacobian (torch.autograd.functional.jacobian), float32 and float64, over the layer options and chunkings; the
sampling field's divergence and a flow's log q against the autograd loop."""

import pytest
import torch

from compscope.nn import EGNN, divergence_exact, egnn_update_divergence

TOL = {torch.float32: dict(rtol=2e-4, atol=2e-3), torch.float64: dict(rtol=1e-10, atol=1e-9)}


def _pairs(n):
    snd, rcv = (~torch.eye(n, dtype=torch.bool)).nonzero(as_tuple=True)
    return torch.stack([snd, rcv])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n,d,layers,attention,tanh,z", [
    (5, 3, 1, True, True, 1.0),   # one layer: first and last at once
    (6, 2, 3, True, True, 1.0),   # 2D (DW4-like)
    (7, 3, 3, False, False, 3.0),  # no gate, unbounded steps, normalised sum
    (4, 3, 2, True, False, 1.0),
])
def test_update_divergence_matches_brute_force_jacobian(dtype, n, d, layers, attention, tanh, z):
    torch.manual_seed(n + layers)
    net = EGNN(3, hidden=8, num_layers=layers, attention=attention, tanh=tanh, normalization_factor=z).to(dtype)
    for layer in net.layers:  # non-trivial coordinate updates (EDM starts them near zero)
        torch.nn.init.normal_(layer.phi_x[-1].weight, std=0.3)
    h, x = torch.randn(3, n, 3, dtype=dtype), torch.randn(3, n, d, dtype=dtype)
    ei = _pairs(n)
    for max_elements in (1, 10_000, 1 << 20):  # one tangent per chunk, a few, all at once
        moved, div = egnn_update_divergence(net, h, x, max_elements=max_elements)
        for b in range(len(x)):
            jac = torch.autograd.functional.jacobian(lambda y, hb=h[b]: net(hb, y, ei)[1] - y, x[b])
            torch.testing.assert_close(div[b], torch.einsum("iaia->", jac), **TOL[dtype])
            torch.testing.assert_close(moved[b], net(h[b], x[b], ei)[1], **TOL[dtype])


def test_update_divergence_sees_weight_changes_and_zero_update():
    net = EGNN(2, hidden=8, num_layers=2).double()
    for layer in net.layers:
        torch.nn.init.zeros_(layer.phi_x[-1].weight)
    h, x = torch.randn(2, 5, 2, dtype=torch.float64), torch.randn(2, 5, 3, dtype=torch.float64)
    moved, div = egnn_update_divergence(net, h, x)
    assert torch.equal(div, torch.zeros(2, dtype=torch.float64)) and torch.allclose(moved, x)
    with torch.no_grad():
        net.layers[1].phi_x[-1].weight.normal_()
    assert egnn_update_divergence(net, h, x)[1].abs().min() > 1e-6


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("types", [None, [0, 1, 2, 1, 0, 3]])
def test_field_divergence_and_log_q_match_the_autograd_loop(dtype, types):
    from compscope.sampling import EquivariantCNF

    torch.manual_seed(1)
    flow = EquivariantCNF(6, 3, hidden=8, num_layers=3, n_steps=3, init_gain=0.5, atom_types=types,
                          div_nodes=3).to(dtype)
    x = torch.randn(4, 6, 3, dtype=dtype)
    x = x - x.mean(1, keepdim=True)
    v, div = flow.field.velocity_and_divergence(0.4, x)
    torch.testing.assert_close(v, flow.field(0.4, x), **TOL[dtype])
    for b in range(len(x)):  # the centred field's brute-force Jacobian, one draw at a time
        jac = torch.autograd.functional.jacobian(lambda y: flow.field(0.4, y[None])[0], x[b])  # noqa: B023
        torch.testing.assert_close(div[b], torch.einsum("iaia->", jac), **TOL[dtype])
    xg = x.clone().requires_grad_(True)
    torch.testing.assert_close(div, divergence_exact(flow.field(0.4, xg), xg).detach(), **TOL[dtype])
    # log q through the quadrature and through the augmented RK4, new divergence vs the autograd loop
    for nodes in (3, None):
        new = flow.log_prob(x, div_nodes=nodes)
        flow.div_method = "autograd"
        old = flow.log_prob(x, div_nodes=nodes)
        flow.div_method = "egnn"
        torch.testing.assert_close(new, old, **TOL[dtype])
