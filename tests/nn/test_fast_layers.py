"""The dense channel-wise tensor product and the element linear map equal their e3nn references."""

from __future__ import annotations

import pytest
import torch
from e3nn import o3
from e3nn.util.test import assert_equivariant

from compscope.nn import ChannelwiseTensorProduct, ElementLinear
from compscope.nn._interaction import _tp_out_irreps

SH = o3.Irreps.spherical_harmonics(2)


def _float64(build):
    """e3nn reference built in float64 (its CG buffers are rounded when built in float32 and cast later)."""
    prev = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return build()
    finally:
        torch.set_default_dtype(prev)


def _uuu_instructions(irreps: o3.Irreps, l_max: int):
    out, ins = [], []
    mul = irreps[0].mul
    for i, (_, ir1) in enumerate(irreps):
        for j, (_, ir2) in enumerate(irreps):
            for ir in ir1 * ir2:
                if ir.l <= l_max:
                    ins.append((i, j, len(out), "uuu", True))
                    out.append((mul, ir))
    out, perm, _ = o3.Irreps(out).sort()
    return out, [(i, j, perm[k], m, w) for i, j, k, m, w in ins]


@pytest.mark.parametrize("node", ["6x0e", "6x0e+6x1o", "3x0e+3x1o+3x2e"])
def test_uvu_matches_e3nn(node):
    torch.manual_seed(0)
    mid, ins = _tp_out_irreps(o3.Irreps(node), SH, o3.Irreps("1x0e+1x1o+1x2e"))
    ref = _float64(lambda: o3.TensorProduct(node, SH, mid, ins, shared_weights=False, internal_weights=False))
    fast = ChannelwiseTensorProduct(node, SH, mid, ins).double()
    assert fast.weight_numel == ref.weight_numel
    x, y = torch.randn(11, o3.Irreps(node).dim, dtype=torch.float64), torch.randn(11, SH.dim, dtype=torch.float64)
    w = torch.randn(11, ref.weight_numel, dtype=torch.float64)
    assert torch.allclose(fast(x, y, w), ref(x, y, w), atol=1e-12)


def test_uuu_matches_e3nn_and_raw_products_sum():
    torch.manual_seed(1)
    a = o3.Irreps("4x0e+4x1o+4x2e")
    out, ins = _uuu_instructions(a, 1)
    ref = _float64(lambda: o3.TensorProduct(a, a, out, ins, internal_weights=True, shared_weights=True))
    fast = ChannelwiseTensorProduct(a, a, out, ins, shared_weights=True).double()
    fast.weight.data.copy_(ref.weight.data)
    x, y = torch.randn(7, a.dim, dtype=torch.float64), torch.randn(7, a.dim, dtype=torch.float64)
    assert torch.allclose(fast(x, y), ref(x, y), atol=1e-12)
    # raw products summed over samples, then mapped back, equal the sum of the outputs (what Interaction relies on)
    raw = fast.product(fast.to_channels(x), fast.to_channels(y, second=True)).sum(0, keepdim=True)
    assert torch.allclose(fast.from_channels(raw)[0], fast(x, y).sum(0), atol=1e-12)


def test_tensor_product_rejects_unsupported_modes():
    with pytest.raises(ValueError, match="uvu"):
        ChannelwiseTensorProduct("2x0e", "1x0e", "2x0e", [(0, 0, 0, "uvw", True)])
    with pytest.raises(ValueError, match="multiplicity"):
        ChannelwiseTensorProduct("2x0e+3x1o", SH, "2x0e", [(0, 0, 0, "uvu", True)])


def test_cg_stays_exact_through_dtype_casts():
    mid, ins = _tp_out_irreps(o3.Irreps("2x0e+2x1o"), SH, o3.Irreps("1x0e+1x1o+1x2e"))
    tp = ChannelwiseTensorProduct("2x0e+2x1o", SH, mid, ins)  # built in float32
    tp = tp.double()
    assert tp.cg.dtype == torch.float64 and torch.equal(tp.cg, tp._cg64)
    assert tp.float().cg.dtype == torch.float32


def test_element_linear_equals_e3nn_linear():
    torch.manual_seed(2)
    irreps_in, irreps_out = o3.Irreps("3x0e+2x1o+3x0e+2x2e"), o3.Irreps("4x1o+2x0e+3x2e+2x1e")
    ref = o3.Linear(irreps_in, irreps_out).double()
    ours = ElementLinear(irreps_in, irreps_out, 1).double()
    # copy e3nn's per-instruction weights (in_mul, out_mul) into our stacked per-type blocks
    kept = [ir for ir in sorted({ir for _, ir in irreps_out}) if any(i == ir for _, i in irreps_in)]
    row = {i: sum(m for m, ir2 in irreps_in[:i] if ir2 == ir) for i, (_, ir) in enumerate(irreps_in)}
    col = {i: sum(m for m, ir2 in irreps_out[:i] if ir2 == ir) for i, (_, ir) in enumerate(irreps_out)}
    off = 0
    for ins in ref.instructions:
        n = ins.path_shape[0] * ins.path_shape[1]
        block = ref.weight.detach()[off: off + n].view(ins.path_shape)
        off += n
        ti = kept.index(irreps_in[ins.i_in].ir)
        r, c = row[ins.i_in], col[ins.i_out]
        ours.weights[ti].data[r: r + block.shape[0], c: c + block.shape[1]] = block
    x = torch.randn(9, irreps_in.dim, dtype=torch.float64)
    assert torch.allclose(ours(x), ref(x), atol=1e-12)  # 1e (no input of that type) is zero in both


def test_element_linear_uses_each_atoms_own_weights_and_is_equivariant():
    torch.manual_seed(3)
    irreps = o3.Irreps("3x0e+2x1o")
    lin = ElementLinear(irreps, irreps, 3).double()
    x = torch.randn(6, irreps.dim, dtype=torch.float64)
    species = torch.tensor([0, 1, 2, 2, 1, 0])
    out = lin(x, species)
    for e in range(3):
        single = ElementLinear(irreps, irreps, 1).double()
        for w1, w3 in zip(single.weights, lin.weights):
            w1.data.copy_(w3.detach().view(w3.shape[0], 3, -1)[:, e])
        mask = species == e
        assert torch.allclose(out[mask], single(x[mask]), atol=1e-12)
    assert_equivariant(lambda t: lin(t, species), irreps_in=[irreps], irreps_out=[irreps],
                       args_in=[x], tolerance=1e-9)


def test_traced_layers_keep_float64_after_a_float32_build():
    """Constants derived from shapes must not become float32 tensors in a TorchScript trace."""
    irreps = o3.Irreps("4x0e+4x1o")
    lin = ElementLinear(irreps, irreps, 3).double()  # built in float32, cast afterwards
    x = torch.randn(5, irreps.dim, dtype=torch.float64, requires_grad=True)
    species = torch.tensor([0, 1, 2, 0, 1])
    traced = torch.jit.trace(lin, (x, species), check_trace=False)
    g1 = torch.autograd.grad(lin(x, species).square().sum(), x)[0]
    g2 = torch.autograd.grad(traced(x, species).square().sum(), x)[0]
    assert torch.equal(g1, g2)


def test_gate_equals_e3nn_gate():
    from e3nn import nn as enn

    from compscope.nn import gate_for

    irreps_out = o3.Irreps("4x0e+3x1o+2x2e")
    irreps_in, gate = gate_for(irreps_out)
    scalars, gated = o3.Irreps("4x0e"), o3.Irreps("3x1o+2x2e")
    ref = enn.Gate(scalars, [torch.nn.functional.silu], o3.Irreps("5x0e"), [torch.sigmoid], gated)
    assert ref.irreps_in.simplify() == irreps_in.simplify() and gate.irreps_out == ref.irreps_out
    x = torch.randn(6, irreps_in.dim, dtype=torch.float64)
    assert torch.allclose(gate(x), ref(x), atol=1e-6)  # e3nn's normalisation constants are float32
    assert_equivariant(gate, irreps_in=[irreps_in], irreps_out=[gate.irreps_out], args_in=[x], tolerance=1e-9)


def test_scalar_mlp_keeps_unit_scale_and_maps_zero_to_zero():
    from compscope.nn import ScalarMLP

    torch.manual_seed(4)
    mlp = ScalarMLP([8, 64, 64, 100]).double()
    y = mlp(torch.randn(4000, 8, dtype=torch.float64))
    assert 0.6 < float(y.detach().square().mean()) < 1.6
    assert torch.equal(mlp(torch.zeros(3, 8, dtype=torch.float64)), torch.zeros(3, 100, dtype=torch.float64))
