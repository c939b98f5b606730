"""Learned-flux finite volumes: consistency for any weights, conservation, base scheme = WENO5, order, mirror
equivariance, gradients through the unrolled solver, bad input."""

import numpy as np
import pytest
import torch

from compscope.errors import CompscopeError
from compscope.pde import (
    EquationMismatchError,
    LearnedFluxFV,
    NonFiniteInputError,
    ResolutionError,
    RolloutDivergedError,
    consistency_basis,
    forcing_cell_average,
    get_equation,
    weno_solve,
)
from compscope.pde._learned_fv import _UX_BASE, _UXX_BASE, mirror_faces

from .test_classical import _burgers_exact_cell_avg, _order

L = 16.0
FORCING = ("A", "omega", "phi", "l")


def _randomise(model: LearnedFluxFV, seed: int = 0, scale: float = 0.3) -> LearnedFluxFV:
    """Random weights everywhere, the output layer included (an untrained model has it at zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.net.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


def _draw(name: str, nx: int, seed: int = 0):
    eq = get_equation(name)
    p = eq.sample(np.random.default_rng(seed))
    u0 = forcing_cell_average(p, eq.L, nx, 0.0)
    cond = np.array([[float(p["alpha"]), float(p["beta"]), float(p["gamma"])]])
    return eq, p, u0, cond


def _poly_cell_averages(coef: np.ndarray, nx: int, dx: float) -> np.ndarray:
    """Exact cell averages of the polynomial sum_p coef[p] x^p over the cells [i dx, (i + 1) dx]."""
    P = np.polynomial.polynomial.Polynomial(coef).integ()
    edges = np.arange(nx + 1) * dx
    return (P(edges[1:]) - P(edges[:-1])) / dx


def test_constraint_basis_is_orthonormal_and_classical_stencils_are_consistent():
    for d, order in ((0, 0), (0, 1), (0, 2), (1, 1), (1, 3), (2, 2), (2, 4)):
        A, b, N = consistency_basis(d, order)
        assert N.shape == (6, 5 - order)
        np.testing.assert_allclose(A @ N, 0.0, atol=1e-13)
        np.testing.assert_allclose(N.T @ N, np.eye(5 - order), atol=1e-13)
    np.testing.assert_allclose(consistency_basis(1, 4)[0] @ _UX_BASE, consistency_basis(1, 4)[1], atol=1e-13)
    np.testing.assert_allclose(consistency_basis(2, 3)[0] @ _UXX_BASE, consistency_basis(2, 3)[1], atol=1e-13)
    with pytest.raises(ValueError, match="derivative"):
        consistency_basis(2, 1)


@pytest.mark.parametrize("order", [0, 1, 2])
def test_face_quantities_exact_for_polynomials_whatever_the_weights(order):
    nx, dx = 40, L / 40
    model = _randomise(LearnedFluxFV("E3", nx, order=order, hidden=8), seed=order, scale=1.0)
    assert set(model.heads) == {"minus", "plus", "ux", "uxx"}
    rng = np.random.default_rng(order)
    cond = torch.tensor([[1.3, 0.2, 0.7]], dtype=torch.float64)
    faces = np.arange(2, nx - 3)  # stencils that do not wrap around the periodic boundary
    xf = (faces + 1) * dx
    for degree, exact in ((order, True), (order + 1, False)):
        coef = rng.normal(size=degree + 1)
        u = torch.tensor(_poly_cell_averages(coef, nx, dx))[None]
        with torch.no_grad():
            q = {k: v[0, faces].numpy() for k, v in model.face_quantities(u, cond).items()}
        P = np.polynomial.polynomial.Polynomial(coef)
        errs = {"minus": q["minus"] - P(xf), "plus": q["plus"] - P(xf)}
        if degree >= 1 and exact:
            errs["ux"] = q["ux"] - P.deriv(1)(xf)
        if degree >= 2 and exact:
            errs["uxx"] = q["uxx"] - P.deriv(2)(xf)
        worst = max(np.abs(e).max() for e in errs.values())
        if exact:
            assert worst < 1e-9, errs
        else:  # one degree more is not exact: the weights do move the values
            assert worst > 1e-4, errs
    # the derivatives keep degree max(order, d + 1): u_x quadratics, u_xx cubics
    coef = rng.normal(size=4)
    P = np.polynomial.polynomial.Polynomial(coef)
    with torch.no_grad():
        q2 = model.face_quantities(torch.tensor(_poly_cell_averages(coef[:3], nx, dx))[None], cond)
        q3 = model.face_quantities(torch.tensor(_poly_cell_averages(coef, nx, dx))[None], cond)
    np.testing.assert_allclose(q2["ux"][0, faces].numpy(), P.cutdeg(2).deriv(1)(xf), atol=1e-9)
    np.testing.assert_allclose(q3["uxx"][0, faces].numpy(), P.deriv(2)(xf), atol=1e-9)


@pytest.mark.parametrize("name,nx", [("E1", 40), ("E2", 25), ("E3", 50), ("E3-authors", 40)])
def test_zero_corrections_are_the_weno5_solver_exactly(name, nx):
    eq, p, u0, cond = _draw(name, nx, seed=3)
    times = eq.times[:40]
    ref, _ = weno_solve(u0, times, p["alpha"], p["beta"], p["gamma"], eq.L, p["A"], p["omega"], p["phi"], p["l"])
    model = LearnedFluxFV(name, nx, hidden=8)  # untrained: the output layer is zero
    with torch.no_grad():
        out = model.solve(u0, times, cond, {k: p[k][None] for k in FORCING})[0].numpy()
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-13)


def test_mass_conserved_to_round_off_with_random_weights():
    eq, p, u0, cond = _draw("E2", 40, seed=1)
    model = _randomise(LearnedFluxFV("E2", 40, hidden=8), scale=0.1)
    with torch.no_grad():  # without forcing, and with the (zero-mean) forcing
        free = model.solve(u0, eq.times[:60], cond)[0].numpy()
        forced = model.solve(u0, eq.times[:60], cond, {k: p[k][None] for k in FORCING})[0].numpy()
    assert np.abs(free - free[:1]).max() > 1e-3  # the solution moves ...
    for u in (free, forced):
        mass = u.sum(-1) * eq.L / 40
        assert np.abs(mass - mass[0]).max() < 1e-12, mass  # ... its mass does not


def test_base_scheme_fifth_order_on_smooth_burgers():
    hs, errs = [], []
    for nx in (32, 64, 128):
        h = L / nx
        model = LearnedFluxFV("E1", nx, hidden=4)
        with torch.no_grad():
            u = model.solve(_burgers_exact_cell_avg(nx, 0.0), [0.0, 2.0], [[1.0, 0.0, 0.0]],
                            dt_max=0.3 * h ** (5 / 3))[0, -1].numpy()
        hs.append(h)
        errs.append(np.abs(u - _burgers_exact_cell_avg(nx, 2.0)).max())
    assert _order(hs, errs) > 4.5, errs


def test_mirror_equivariance_where_the_equation_has_it():
    nx = 40
    u = torch.tensor(_draw("E2", nx, seed=2)[2])[None]
    cond = torch.tensor([[1.0, 0.1, 0.0]], dtype=torch.float64)
    mirrored = lambda v: -v.flip(-1)  # noqa: E731  u(x) -> -u(L - x)
    with torch.no_grad():
        sym = _randomise(LearnedFluxFV("E2", nx, hidden=8), scale=0.5)
        assert sym.mirror
        np.testing.assert_allclose(mirror_faces(mirror_faces(u)), u)
        r, rm = sym.rhs(u, torch.zeros(1), cond), sym.rhs(mirrored(u), torch.zeros(1), cond)
        np.testing.assert_allclose(rm.numpy(), mirrored(r).numpy(), atol=1e-12)
        a = sym.solve(u, [0.0, 0.3, 0.6], cond)
        b = sym.solve(mirrored(u), [0.0, 0.3, 0.6], cond)
        np.testing.assert_allclose(b.numpy(), mirrored(a).numpy(), atol=1e-11)
        # the same weights without the symmetrisation are not equivariant (the test can fail)
        plain = LearnedFluxFV("E2", nx, hidden=8, mirror=False)
        plain.load_state_dict(sym.state_dict())
        r, rm = plain.rhs(u, torch.zeros(1), cond), plain.rhs(mirrored(u), torch.zeros(1), cond)
        assert (rm - mirrored(r)).abs().max() > 1e-3
    assert not LearnedFluxFV("E3", nx).mirror
    with pytest.raises(CompscopeError, match="no mirror symmetry"):
        LearnedFluxFV("E3", nx, mirror=True)


def test_gradient_through_the_unrolled_solver_matches_finite_differences():
    torch.manual_seed(0)
    nx = 8
    model = _randomise(LearnedFluxFV("E2", nx, hidden=3, layers=1), seed=4, scale=0.2)
    x = (np.arange(nx) + 0.5) * L / nx
    u0 = torch.tensor(np.sin(2 * np.pi * x / L) + 0.3 * np.cos(4 * np.pi * x / L))[None]
    cond = torch.tensor([[1.0, 0.1, 0.0]], dtype=torch.float64)
    forcing = {"A": np.array([[0.3]]), "omega": np.array([[0.2]]), "phi": np.array([[0.5]]), "l": np.array([[1.0]])}
    times = [0.0, 0.05, 0.1, 0.15]  # output steps shorter than the stability step: dt does not depend on u
    w = model.net.out.weight

    def loss(weight, u_init):
        with torch.no_grad():
            w.copy_(weight)
        return (model.solve(u_init, times, cond, forcing)[:, 1:] ** 2).sum()

    w0 = w.detach().clone()
    u_init = u0.clone().requires_grad_(True)
    out = (model.solve(u_init, times, cond, forcing)[:, 1:] ** 2).sum()
    gw, gu = torch.autograd.grad(out, [w, u_init])
    eps = 1e-6
    for idx in [(0, 0, 0), (1, 2, 0), (3, 1, 0)]:
        d = torch.zeros_like(w0)
        d[idx] = eps
        with torch.no_grad():
            fd = (loss(w0 + d, u0) - loss(w0 - d, u0)) / (2 * eps)
        assert abs(float(gw[idx]) - float(fd)) < 1e-6 * max(1.0, abs(float(fd))), (idx, gw[idx], fd)
    with torch.no_grad():
        w.copy_(w0)
        for i in (0, 5):
            d = torch.zeros_like(u0)
            d[0, i] = eps
            fd = (loss(w0, u0 + d) - loss(w0, u0 - d)) / (2 * eps)
            assert abs(float(gu[0, i]) - float(fd)) < 1e-6 * max(1.0, abs(float(fd))), (i, gu[0, i], fd)


def test_bad_input_gives_clear_errors():
    with pytest.raises(ResolutionError, match="coarser than the 6-cell stencil"):
        LearnedFluxFV("E1", 5)
    with pytest.raises(CompscopeError, match="not a periodic combined equation"):
        LearnedFluxFV("WE1", 40)
    model = LearnedFluxFV("E1", 40, hidden=4)
    u0 = np.zeros(40)
    u0[7] = np.nan
    with pytest.raises(NonFiniteInputError, match="initial condition"):
        model.solve(u0, [0.0, 0.1], [[1.0, 0.0, 0.0]])
    with pytest.raises(NonFiniteInputError, match="coefficients"):
        model.solve(np.zeros(40), [0.0, 0.1], [[np.nan, 0.0, 0.0]])
    with pytest.raises(EquationMismatchError, match=r"E1 at nx=40.*E2 at nx=50") as err:
        model.check("E2", 50)
    assert "E1 nx=40" in err.value.hint
    with pytest.raises(EquationMismatchError, match="nx=40.*nx=50"):
        model.solve(np.zeros(50), [0.0, 0.1], [[1.0, 0.0, 0.0]])
    model.check("e1", 40)  # the same equation and grid pass
    blow = _randomise(LearnedFluxFV("E1", 40, hidden=4), scale=30.0)
    with pytest.raises(RolloutDivergedError), torch.no_grad():
        blow.solve(np.sin(np.arange(40.0)), np.linspace(0, 4, 50), [[1.0, 0.0, 0.0]])


@pytest.mark.parametrize("name,nx,layers", [("E1", 25, 2), ("E2", 40, 1), ("E3", 40, 3)])
def test_compiled_rollout_matches_the_torch_solver(name, nx, layers):
    from compscope.pde import FastLearnedFV

    eq, p, u0, cond = _draw(name, nx, seed=5)
    model = _randomise(LearnedFluxFV(name, nx, hidden=6, layers=layers), seed=1, scale=0.05)
    times = eq.times[:30]
    with torch.no_grad():
        ref = model.solve(u0, times, cond, {k: p[k][None] for k in FORCING})[0].numpy()
    fast = FastLearnedFV(model)
    args = [p[k][None] for k in FORCING]
    out = fast.solve(u0[None], times, cond, *args)[0]
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-11)
    np.testing.assert_allclose(fast.solve(np.stack([u0, u0]), times, np.repeat(cond, 2, 0),
                                          *[np.repeat(a, 2, 0) for a in args], parallel=False)[1], ref, atol=1e-11)
    assert np.abs(ref - ref[:1]).max() > 1e-3
    base = LearnedFluxFV(name, nx, hidden=6)  # untrained: the WENO5 solver
    w, _ = weno_solve(u0, times, p["alpha"], p["beta"], p["gamma"], eq.L, p["A"], p["omega"], p["phi"], p["l"])
    np.testing.assert_allclose(FastLearnedFV(base).solve(u0[None], times, cond, *args)[0], w, rtol=0, atol=1e-13)
    with pytest.raises(EquationMismatchError):
        fast.solve(np.zeros((1, nx + 5)), times, cond)
