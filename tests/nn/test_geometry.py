"""Fused edge geometry (inference): lengths, spherical harmonics and cutoff envelope against the torch ops (e3nn),
values and gradients (positions and cell) in float64 and float32, periodic and skewed cells, NaN propagation."""

import numpy as np
import pytest
import torch
from e3nn import o3

from compscope.data import neighbor_list
from compscope.nn import PolynomialCutoff, edge_geometry

R_MAX = 3.0


def _system(dtype, seed=0):
    rng = np.random.default_rng(seed)
    cell = np.array([[6.0, 0.0, 0.0], [1.2, 5.5, 0.0], [-0.7, 0.9, 6.3]])  # skewed
    pos = rng.uniform(0, 1, (40, 3)) @ cell
    ei, shifts = neighbor_list(pos, R_MAX + 0.4, cell, True)  # some edges beyond the envelope's cutoff
    return (torch.tensor(pos, dtype=dtype), torch.tensor(cell, dtype=dtype), torch.as_tensor(ei),
            torch.tensor(shifts, dtype=dtype))


def _reference(pos, cell, ei, shifts, lmax):
    vec = pos[ei[1]] - pos[ei[0]] + shifts @ cell
    lengths = vec.norm(dim=-1)
    sh = o3.SphericalHarmonics(o3.Irreps.spherical_harmonics(lmax), normalize=True, normalization="component")
    return lengths, sh(vec), PolynomialCutoff(R_MAX, 6)(lengths)


@pytest.mark.parametrize("lmax", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_geometry_matches_torch(lmax, dtype):
    pos, cell, ei, shifts = _system(dtype)
    gen = torch.Generator().manual_seed(3)
    outs, grads = [], []
    for fn in (_reference, lambda *a: edge_geometry(*a[:2], a[3], a[2], lmax, R_MAX, 6.0)):
        p = pos.clone().requires_grad_(True)
        c = cell.clone().requires_grad_(True)
        lengths, sh, env = fn(p, c, ei, shifts, lmax)
        outs.append((lengths.detach(), sh.detach(), env.detach()))
        w = [torch.randn(t.shape, generator=gen, dtype=dtype) for t in (lengths, sh, env)]
        gen.manual_seed(3)
        loss = (lengths * w[0]).sum() + (sh * w[1]).sum() + (env * w[2]).sum()
        grads.append(torch.autograd.grad(loss, [p, c]))
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    for a, b in zip(*outs):
        assert torch.allclose(a, b, rtol=tol, atol=tol)
    for a, b in zip(*grads):
        assert float((a - b).abs().max()) <= tol * max(1.0, float(a.abs().max()))
    assert float(outs[1][2][outs[1][0] >= R_MAX].abs().max()) == 0.0


def test_geometry_gradcheck_and_nan():
    pos, cell, ei, shifts = _system(torch.float64, seed=1)
    ei, shifts = ei[:, :60], shifts[:60]
    p = pos.clone().requires_grad_(True)
    c = cell.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p, c: edge_geometry(p, c, shifts, ei, 2, R_MAX, 6.0), (p, c))
    bad = pos.clone()
    bad[int(ei[0, 0])] = float("nan")
    lengths, sh, env = edge_geometry(bad, cell, shifts, ei, 2, R_MAX, 6.0)
    assert torch.isnan(lengths[0]) and torch.isnan(sh[0, 1:]).all()
    with pytest.raises(ValueError, match="lmax"):
        edge_geometry(pos, cell, shifts, ei, 3)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_edges_within_equals_torch_pruning(dtype):
    from compscope.nn import edges_within

    pos, cell, ei, shifts = _system(dtype, seed=2)
    keep = (pos[ei[1]] - pos[ei[0]] + shifts @ cell).norm(dim=-1) < R_MAX
    assert 0 < int(keep.sum()) < ei.shape[1]
    got_ei, got_shifts = edges_within(pos, cell, ei, shifts, R_MAX)
    assert torch.equal(got_ei, ei[:, keep]) and torch.equal(got_shifts, shifts[keep])
    assert got_shifts.dtype == shifts.dtype and got_ei.dtype == ei.dtype
