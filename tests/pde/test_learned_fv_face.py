"""The small learned-FV network (``net="face"``, :class:`compscope.pde.FaceNet`): consistency of the constraint
layer whatever the weights, WENO5 with zero corrections, conservation, mirror equivariance by construction,
invariance under u -> a u + b, numba == torch, gradients, bad input."""

import numpy as np
import pytest
import torch

from compscope.errors import CompscopeError
from compscope.pde import (
    FastLearnedFV,
    LearnedFluxFV,
    NonFiniteInputError,
    forcing_cell_average,
    get_equation,
    weno_solve,
)

from .test_learned_fv import FORCING, _draw, _poly_cell_averages, _randomise

L = 16.0


def _face(name, nx, seed=0, scale=0.3, **kw):
    kw = {"net": "face", "hidden": 8, "layers": 2, **kw}
    return _randomise(LearnedFluxFV(name, nx, **kw), seed=seed, scale=scale)


@pytest.mark.parametrize("name,order", [("E3", 1), ("E2", 0), ("E2", 2)])
def test_face_net_constraint_layer_is_exact_for_polynomials(name, order):
    nx, dx = 40, L / 40
    model = _face(name, nx, seed=order, scale=1.0, order=order)
    cond = torch.tensor([[1.3, 0.2, 0.7 if name == "E3" else 0.0]], dtype=torch.float64)
    faces = np.arange(2, nx - 3)  # stencils that do not wrap around
    xf = (faces + 1) * dx
    rng = np.random.default_rng(order)
    for degree, exact in ((order, True), (order + 1, False)):
        coef = rng.normal(size=degree + 1)
        P = np.polynomial.polynomial.Polynomial(coef)
        with torch.no_grad():
            q = {k: v[0, faces].numpy() for k, v in
                 model.face_quantities(torch.tensor(_poly_cell_averages(coef, nx, dx))[None], cond).items()}
        worst = max(np.abs(q["minus"] - P(xf)).max(), np.abs(q["plus"] - P(xf)).max())
        assert (worst < 1e-9) if exact else (worst > 1e-4), (degree, worst)
    coef = rng.normal(size=4)  # derivatives: u_x exact for quadratics, u_xx for cubics, whatever the weights
    P = np.polynomial.polynomial.Polynomial(coef)
    with torch.no_grad():
        q2 = model.face_quantities(torch.tensor(_poly_cell_averages(coef[:3], nx, dx))[None], cond)
        q3 = model.face_quantities(torch.tensor(_poly_cell_averages(coef, nx, dx))[None], cond)
    np.testing.assert_allclose(q2["ux"][0, faces].numpy(), P.cutdeg(2).deriv(1)(xf), atol=1e-9)
    if name == "E3":
        np.testing.assert_allclose(q3["uxx"][0, faces].numpy(), P.deriv(2)(xf), atol=1e-8)


def test_face_net_size_and_heads():
    e1 = LearnedFluxFV("E1", 25, net="face", hidden=16, layers=2)
    assert e1.shared and set(e1.heads) == {"minus"}  # the mirror: one head serves both states
    # two evaluations of 6*16 + 16*16 + 16*4 plus 4 corrections of 6 each, plus the normalisation
    assert e1.macs_per_face() == 2 * (6 * 16 + 16 * 16 + 16 * 4 + 6 * 4) + 18
    e3 = LearnedFluxFV("E3", 25, net="face", hidden=16, layers=2)
    assert not e3.shared and set(e3.heads) == {"minus", "plus", "ux", "uxx"}
    big = LearnedFluxFV("E1", 25, hidden=32, layers=3)
    assert big.macs_per_face() > 10 * LearnedFluxFV("E1", 25, net="face", hidden=8, layers=1).macs_per_face()


@pytest.mark.parametrize("name,nx", [("E1", 25), ("E3", 40)])
def test_untrained_face_net_is_weno5_and_conserves_mass(name, nx):
    eq, p, u0, cond = _draw(name, nx, seed=3)
    times = eq.times[:30]
    ref, _ = weno_solve(u0, times, p["alpha"], p["beta"], p["gamma"], eq.L, p["A"], p["omega"], p["phi"], p["l"])
    f = {k: p[k][None] for k in FORCING}
    with torch.no_grad():
        out = LearnedFluxFV(name, nx, net="face").solve(u0, times, cond, f)[0].numpy()
        rnd = _face(name, nx, scale=0.1).solve(u0, times, cond, f)[0].numpy()
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-13)
    assert np.abs(rnd - ref).max() > 1e-4  # random weights move the solution ...
    mass = rnd.sum(-1)
    assert np.abs(mass - mass[0]).max() * eq.L / nx < 1e-12  # ... not its mass


def test_face_net_is_mirror_equivariant_and_affine_invariant():
    nx = 40
    u = torch.tensor(_draw("E2", nx, seed=2)[2])[None]
    cond = torch.tensor([[1.0, 0.1, 0.0]], dtype=torch.float64)
    model = _face("E2", nx, scale=0.5)
    assert set(model.heads) == {"minus", "ux"}
    with torch.no_grad():
        r, rm = model.rhs(u, torch.zeros(1), cond), model.rhs(-u.flip(-1), torch.zeros(1), cond)
        np.testing.assert_allclose(rm.numpy(), -r.flip(-1).numpy(), atol=1e-12)
        q, qa = model.face_quantities(u, cond), model.face_quantities(2.5 * u + 0.7, cond)
    # the coefficients depend on the stencil's shape only (up to WENO-Z's and the normalisation's epsilons)
    for k, shift in (("minus", 0.7), ("plus", 0.7), ("ux", 0.0)):
        np.testing.assert_allclose(qa[k].numpy(), 2.5 * q[k].numpy() + shift, rtol=0, atol=1e-4)
    e3 = _face("E3", nx, scale=0.5)  # no symmetry, no symmetrisation: not equivariant (the test can fail)
    cond3 = torch.tensor([[1.0, 0.1, 0.5]], dtype=torch.float64)
    with torch.no_grad():
        r, rm = e3.rhs(u, torch.zeros(1), cond3), e3.rhs(-u.flip(-1), torch.zeros(1), cond3)
    assert (rm + r.flip(-1)).abs().max() > 1e-3


@pytest.mark.parametrize("name,nx,layers,activation", [("E1", 25, 2, "relu"), ("E2", 40, 1, "tanh"),
                                                       ("E3", 25, 3, "relu")])
def test_compiled_face_net_matches_torch(name, nx, layers, activation):
    eq, p, u0, cond = _draw(name, nx, seed=5)
    model = _face(name, nx, seed=1, scale=0.05, layers=layers, hidden=6, activation=activation)
    times = eq.times[:25]
    args = [p[k][None] for k in FORCING]
    with torch.no_grad():
        ref = model.solve(u0, times, cond, {k: p[k][None] for k in FORCING})[0].numpy()
    fast = FastLearnedFV(model)
    np.testing.assert_allclose(fast.solve(u0[None], times, cond, *args)[0], ref, rtol=0, atol=1e-11)
    two = fast.solve(np.stack([u0, u0]), times, np.repeat(cond, 2, 0), *[np.repeat(a, 2, 0) for a in args],
                     parallel=False)
    np.testing.assert_allclose(two[1], ref, rtol=0, atol=1e-11)
    assert np.abs(ref - ref[:1]).max() > 1e-3
    bad = u0.copy()
    bad[3] = np.nan
    with pytest.raises(NonFiniteInputError):
        fast.solve(bad[None], times, cond, *args)


def test_face_net_gradient_matches_finite_differences():
    nx = 8
    model = _face("E2", nx, seed=4, scale=0.2, hidden=3, layers=1, activation="tanh")
    x = (np.arange(nx) + 0.5) * L / nx
    u0 = torch.tensor(np.sin(2 * np.pi * x / L) + 0.3 * np.cos(4 * np.pi * x / L))[None]
    cond = torch.tensor([[1.0, 0.1, 0.0]], dtype=torch.float64)
    times = [0.0, 0.05, 0.1]
    w = model.net.out.weight
    out = (model.solve(u0, times, cond)[:, 1:] ** 2).sum()
    (gw,) = torch.autograd.grad(out, [w])
    w0, eps = w.detach().clone(), 1e-6
    for idx in [(0, 0), (2, 1), (5, 2)]:
        vals = []
        for sgn in (1, -1):
            with torch.no_grad():
                w.copy_(w0)
                w[idx] += sgn * eps
                vals.append(float((model.solve(u0, times, cond)[:, 1:] ** 2).sum()))
        fd = (vals[0] - vals[1]) / (2 * eps)
        assert abs(float(gw[idx]) - fd) < 1e-6 * max(1.0, abs(fd)), (idx, gw[idx], fd)


def test_face_net_bad_input():
    with pytest.raises(CompscopeError, match="net='mlp'"):
        LearnedFluxFV("E1", 25, net="mlp")
    with pytest.raises(CompscopeError, match="activation='gelu'"):
        LearnedFluxFV("E1", 25, net="face", activation="gelu")
    eq = get_equation("E1")
    u0 = forcing_cell_average(eq.sample(np.random.default_rng(0)), eq.L, 25, 0.0)
    model = LearnedFluxFV("E1", 25, net="face")
    u0[4] = np.inf
    with pytest.raises(NonFiniteInputError, match="initial condition"):
        model.solve(u0, [0.0, 0.1], [[1.0, 0.0, 0.0]])


@pytest.mark.parametrize("name", ["learned_fv_e1_small.yaml", "learned_fv_e3_small.yaml"])
def test_small_configs_resolve_to_the_face_net(name):
    from pathlib import Path

    import yaml

    from compscope.pde import resolve_fv_config

    path = Path(__file__).resolve().parents[2] / "configs" / "pde" / name
    cfg = resolve_fv_config(yaml.safe_load(path.read_text()))
    assert cfg["model"]["net"] == "face" and cfg["trainer"]["budget_clock"] == "cpu"
    model = LearnedFluxFV(cfg["data"]["equation"], cfg["data"]["nx"], **cfg["model"])
    assert 500 < model.macs_per_face() < 1000  # far below the CNN's ~13,000
