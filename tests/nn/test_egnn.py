"""EGNN layer: E(3) equivariance (e3nn's assert_equivariant), translation and permutation, float32/float64."""

import pytest
import torch
from e3nn.util.test import assert_equivariant

from compscope.nn.egnn import EGNN, EGNNLayer


def _graph(n=7, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    ii, jj = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    keep = ii != jj
    ei = torch.stack([ii[keep], jj[keep]])
    return torch.randn(n, 5, generator=g, dtype=dtype), torch.randn(n, 3, generator=g, dtype=dtype), ei


TOL = {torch.float32: 1e-3, torch.float64: 1e-9}  # e3nn FLOAT_TOLERANCE-style


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_egnn_rotation_reflection_equivariant(dtype):
    torch.manual_seed(0)
    net = EGNN(5, hidden=16, num_layers=3).to(dtype)
    # make the coordinate updates non-trivial (EDM initialises them near zero)
    for layer in net.layers:
        torch.nn.init.normal_(layer.phi_x[-1].weight, std=0.5)
    h, x, ei = _graph(dtype=dtype)

    def f(h, x):
        return net(h, x, ei)

    assert_equivariant(f, args_in=[h, x], irreps_in=["5x0e", "1o"], irreps_out=["5x0e", "1o"],
                       tolerance=TOL[dtype])
    h2, x2 = f(h, x)
    assert (x2 - x).abs().max() > 1e-3  # coordinates really move


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_egnn_translation_and_permutation(dtype):
    torch.manual_seed(1)
    net = EGNN(5, hidden=16, num_layers=2).to(dtype)
    for layer in net.layers:
        torch.nn.init.normal_(layer.phi_x[-1].weight, std=0.5)
    h, x, ei = _graph(dtype=dtype)
    h0, x0 = net(h, x, ei)
    shift = torch.tensor([1.5, -2.0, 0.7], dtype=dtype)
    h1, x1 = net(h, x + shift, ei)
    torch.testing.assert_close(h1, h0, atol=TOL[dtype] * 10, rtol=0)
    torch.testing.assert_close(x1, x0 + shift, atol=TOL[dtype] * 10, rtol=0)
    perm = torch.randperm(len(h))
    inv = torch.argsort(perm)
    hp, xp = net(h[perm], x[perm], inv[ei])  # relabel atoms: new index of old atom i is inv[i]
    torch.testing.assert_close(hp, h0[perm], atol=TOL[dtype] * 10, rtol=0)
    torch.testing.assert_close(xp, x0[perm], atol=TOL[dtype] * 10, rtol=0)


def test_layer_without_coordinate_update_keeps_positions():
    layer = EGNNLayer(8, update_coords=False).double()
    h, x, ei = _graph()
    out_h, out_x = layer(torch.randn(7, 8, dtype=torch.float64), x, ei)
    assert torch.equal(out_x, x) and out_h.shape == (7, 8)


def test_coordinate_step_is_bounded_by_tanh_range():
    layer = EGNNLayer(8, coords_range=0.1).double()
    torch.nn.init.normal_(layer.phi_x[-1].weight, std=100.0)
    h, x, ei = _graph()
    _, x2 = layer(torch.randn(7, 8, dtype=torch.float64), x, ei)
    # each of the 6 incoming edges moves an atom by at most coords_range along a sub-unit direction
    assert (x2 - x).norm(dim=-1).max() <= 6 * 0.1 + 1e-9
