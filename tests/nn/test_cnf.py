"""The shared continuous-flow core: ODE solver orders, divergences of a linear field, the quadrature of the exact
divergence against a brute-force Jacobian, straight paths, Kabsch, Hungarian permutations and the equivariant OT
alignment of base draws to data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from compscope.nn import (
    align_permutation,
    divergence_exact,
    divergence_hutchinson,
    equivariant_ot,
    integrate_divergence,
    kabsch,
    ode_solve,
    quadrature_nodes,
    straight_path,
    time_grid,
)


def _orthogonal(d, gen, proper=False):
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    if proper and torch.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


@pytest.mark.parametrize("method,order", [("euler", 1), ("rk4", 4)])
def test_ode_solve_order_on_a_linear_system(method, order):
    # d(x, a)/dt = (A x, tr A) on a tuple state: x(1) = expm(A) x0, a(1) = tr A
    gen = torch.Generator().manual_seed(0)
    a_mat = 0.5 * torch.randn(3, 3, generator=gen, dtype=torch.float64)
    x0 = torch.randn(2, 3, generator=gen, dtype=torch.float64)
    exact = x0 @ torch.linalg.matrix_exp(a_mat).T

    def f(t, s):
        return s[0] @ a_mat.T, torch.full((2,), float(torch.trace(a_mat)), dtype=torch.float64)

    errs = []
    for n in (8, 16):
        x, acc = ode_solve(f, (x0, torch.zeros(2, dtype=torch.float64)), time_grid(n, dtype=torch.float64), method)
        errs.append((x - exact).abs().max().item())
        assert acc == pytest.approx(torch.trace(a_mat).repeat(2), abs=1e-12)
    assert math.log2(errs[0] / errs[1]) == pytest.approx(order, abs=0.3)
    # backwards over a float grid returns to the start (RK4 to its error)
    x1 = ode_solve(lambda t, s: s @ a_mat.T, exact, [1.0 - k / 40 for k in range(41)], "rk4")
    assert (x1 - x0).abs().max() < (1e-6 if method == "rk4" else 1.0)


def test_time_grid_and_straight_path():
    g = time_grid(4, power=2.0, dtype=torch.float64)
    assert torch.equal(g, torch.linspace(0, 1, 5, dtype=torch.float64) ** 0.5)
    back = time_grid(2, 1.0, 0.0, dtype=torch.float64)
    assert torch.allclose(back, torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64))
    x0, x1 = torch.zeros(2, 3), torch.ones(2, 3)
    xt, u = straight_path(x0, x1, torch.tensor([[0.25], [1.0]]))
    assert torch.equal(xt[0], torch.full((3,), 0.25)) and torch.equal(xt[1], x1[1]) and torch.equal(u, x1 - x0)


def test_divergences_of_a_linear_field():
    gen = torch.Generator().manual_seed(1)
    a_mat = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    x = torch.randn(4, 3, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    v = (x.reshape(4, 6) @ a_mat.T).reshape(4, 3, 2)
    assert torch.allclose(divergence_exact(v, x), torch.trace(a_mat).repeat(4))
    est = torch.stack([divergence_hutchinson(v, x, torch.randint(0, 2, x.shape, generator=gen).double() * 2 - 1)
                       for _ in range(4000)]).mean(0)
    assert torch.allclose(est, torch.trace(a_mat).repeat(4), atol=0.3)


def _tiny_field(dtype):
    gen = torch.Generator().manual_seed(3)
    w1 = torch.randn(4, 4, generator=gen, dtype=torch.float64).to(dtype)
    w2 = 0.7 * torch.randn(4, 4, generator=gen, dtype=torch.float64).to(dtype)

    def field(t, x):  # nonlinear and time-dependent, rows independent: x (batch, 2, 2)
        y = x.reshape(len(x), 4)
        return (torch.tanh(y @ w1) * (1 + float(t)) + math.sin(3 * float(t)) * (y @ w2)).reshape(x.shape)

    return field


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 2e-6), (torch.float32, 2e-4)])
def test_integrate_divergence_matches_the_log_det_of_the_flow_map(dtype, tol):
    # int_0^1 div v dt of the quadrature = log |det d x(1) / d x(0)| of the flow map (brute-force Jacobian of a fine
    # RK4 solve in float64); the path's end agrees with RK4; reverse walks back with the opposite sign
    field64, field = _tiny_field(torch.float64), _tiny_field(dtype)
    x0 = torch.randn(5, 2, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    grid = time_grid(400, dtype=torch.float64)
    log_det = torch.stack([torch.linalg.slogdet(torch.autograd.functional.jacobian(
        lambda y: ode_solve(field64, y[None], grid, "rk4")[0].reshape(4), x).reshape(4, 4))[1] for x in x0])
    x1_ref = ode_solve(field64, x0, grid, "rk4")
    errors = {}
    for nodes in (1, 3, 12):
        x1, a = integrate_divergence(field, x0.to(dtype), 40, nodes, panels=2)
        assert x1.dtype == a.dtype == dtype and not a.requires_grad
        torch.testing.assert_close(x1.double(), x1_ref, rtol=0, atol=10 * tol)
        errors[nodes] = (a.double() - log_det).abs().max().item()
    assert errors[12] < tol and errors[1] > 100 * tol, errors  # the quadrature error is real and vanishes
    back, a_back = integrate_divergence(field, x1_ref.to(dtype), 40, 12, panels=2, reverse=True)
    torch.testing.assert_close(back.double(), x0, rtol=0, atol=10 * tol)
    torch.testing.assert_close(a_back.double(), -log_det, rtol=0, atol=tol)
    # a custom divergence is used at every node (here: twice the exact one)
    _, a2 = integrate_divergence(field, x0.to(dtype), 40, 12, panels=2,
                                 divergence=lambda v, x: 2 * divergence_exact(v, x))
    torch.testing.assert_close(a2.double(), 2 * log_det, rtol=0, atol=2 * tol)


def test_quadrature_nodes_integrate_polynomials_and_refuse_bad_counts():
    t, w = quadrature_nodes(3, 4)
    assert len(t) == len(w) == 12 and np.all(np.diff(t) > 0) and 0 < t[0] and t[-1] < 1
    for k in range(6):  # 3 Gauss nodes per panel: exact to degree 5 on every panel
        assert (w * t**k).sum() == pytest.approx(1 / (k + 1), abs=1e-13)
    for bad in ((0, 1), (2, 0), (1.5, 1)):
        with pytest.raises(ValueError, match="positive integers"):
            quadrature_nodes(*bad)


@pytest.mark.parametrize("proper", [False, True])
def test_kabsch_recovers_an_orthogonal_map(proper):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(5, 7, 3, generator=gen, dtype=torch.float64)
    x = x - x.mean(1, keepdim=True)
    r = torch.stack([_orthogonal(3, gen, proper) for _ in range(5)])
    got = kabsch(x, x @ r, proper=proper)
    assert torch.allclose(got, r, atol=1e-10)
    if proper:  # a reflection is refused: the best rotation has det +1
        refl = torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))
        assert torch.allclose(torch.linalg.det(kabsch(x, x @ refl, proper=True)), torch.ones(5, dtype=torch.float64))


def test_align_permutation_recovers_a_permutation():
    gen = torch.Generator().manual_seed(3)
    y = torch.randn(4, 9, 3, generator=gen, dtype=torch.float64)
    perms = torch.stack([torch.randperm(9, generator=gen) for _ in range(4)])
    x = torch.gather(y, 1, perms[..., None].expand_as(y)) + 1e-3 * torch.randn(4, 9, 3, generator=gen,
                                                                                 dtype=torch.float64)
    p = align_permutation(x, y)
    assert torch.allclose(torch.gather(x, 1, p[..., None].expand_as(x)), y, atol=1e-2)


def test_equivariant_ot_pairs_and_aligns_base_draws():
    gen = torch.Generator().manual_seed(4)
    b, n, d = 12, 5, 3
    x1 = torch.randn(b, n, d, generator=gen, dtype=torch.float64) * torch.tensor([3.0, 1.0, 0.3], dtype=torch.float64)
    x0 = torch.randn(b, n, d, generator=gen, dtype=torch.float64)
    x1, x0 = x1 - x1.mean(1, keepdim=True), x0 - x0.mean(1, keepdim=True)
    out = equivariant_ot(x0, x1)
    assert out.shape == x0.shape and out.mean(1).abs().max() < 1e-12

    def invariant(z):  # sorted pair distances: unchanged by permutations and orthogonal maps
        return torch.sort(torch.cdist(z, z).reshape(len(z), -1), dim=1).values

    # every output is an orthogonal/permuted copy of a distinct base draw (a pairing, no draw used twice)
    match = torch.cdist(invariant(out), invariant(x0)) < 1e-8
    assert match.sum(1).min() >= 1 and match.any(0).sum() == b
    cost = ((out - x1) ** 2).sum((1, 2)).mean()
    plain = ((x0 - x1) ** 2).sum((1, 2)).mean()
    only_ot = ((equivariant_ot(x0, x1, permute=False, rotate=False) - x1) ** 2).sum((1, 2)).mean()
    assert cost < only_ot < plain
