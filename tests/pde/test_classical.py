"""Classical solvers: convergence orders fitted from refinement studies, exact solutions."""

import numpy as np
import pytest

from compscope.pde import (
    ChebyshevWaveSolver,
    chebyshev_grid,
    gaussian_pulse,
    periodic_grid,
    spectral_solve,
    wave_eigen,
    wave_exact,
    weno_solve,
    weno_solve_batch,
)

L = 16.0


def _order(h, err):
    return np.polyfit(np.log(h), np.log(err), 1)[0]


def _burgers_exact_cell_avg(nx, t, a=0.5, b=0.3):
    """Cell averages of the smooth inviscid Burgers solution u = u0(x - u t), u0 = a + b sin(2 pi x / L)."""
    h = L / nx
    xq, wq = np.polynomial.legendre.leggauss(10)
    x = periodic_grid(L, nx)[:, None] + 0.5 * h * xq[None, :]
    k = 2 * np.pi / L
    u = a + b * np.sin(k * x)
    for _ in range(100):  # Newton on g(u) = u - u0(x - u t)
        g = u - a - b * np.sin(k * (x - u * t))
        dg = 1 + b * k * t * np.cos(k * (x - u * t))
        u = u - g / dg
    return (u * wq).sum(1) / 2


def test_weno5_fifth_order_in_space_on_smooth_burgers():
    hs, errs = [], []
    for nx in (32, 64, 128):
        h = L / nx
        u0 = _burgers_exact_cell_avg(nx, 0.0)
        u, _ = weno_solve(u0, np.array([0.0, 2.0]), 1.0, 0.0, 0.0, L, dt_max=0.3 * h ** (5 / 3))
        hs.append(h)
        errs.append(np.abs(u[-1] - _burgers_exact_cell_avg(nx, 2.0)).max())
    assert _order(hs, errs) > 4.5, errs


def test_ssp_rk3_third_order_in_time():
    # time error isolated against the same semi-discretisation at a tiny step (Richardson-style)
    nx = 32
    x = periodic_grid(L, nx)
    u0 = np.sin(2 * np.pi * 2 * x / L) + 0.5 * np.cos(2 * np.pi * x / L)
    T = np.array([0.0, 2.0])
    ref, _ = weno_solve(u0, T, 0.0, 0.5, 0.5, L, cfl=1e9, dt_max=1e-3)
    dts, errs = [0.2, 0.1, 0.05], []
    for dt in dts:
        u, n = weno_solve(u0, T, 0.0, 0.5, 0.5, L, cfl=1e9, dt_max=dt)
        assert n == round(2.0 / dt)
        errs.append(np.abs(u[-1] - ref[-1]).max())
    assert 2.7 < _order(dts, errs) < 3.3, errs


@pytest.mark.parametrize("beta,gamma", [(0.2, 0.0), (0.0, 0.5), (0.1, 0.3)])
def test_linear_modes_exact_and_weno_fourth_order(beta, gamma):
    k = 2 * np.pi * 2 / L
    T = np.linspace(0.0, 1.0, 3)
    hs, errs = [], []
    for nx in (16, 32, 64):
        x = periodic_grid(L, nx)
        exact = np.exp(-beta * k * k) * np.sin(k * x + gamma * k**3)
        us = spectral_solve(np.sin(k * x)[None], T, 0.0, beta, gamma, L, cell_average=False)[0, -1]
        np.testing.assert_allclose(us, exact, atol=1e-12)  # exact up to round-off
        avg = np.sinc(k * (L / nx) / (2 * np.pi))
        uw, _ = weno_solve(avg * np.sin(k * x), T, 0.0, beta, gamma, L)
        hs.append(L / nx)
        errs.append(np.abs(uw[-1] - avg * exact).max())
    assert _order(hs, errs) > 3.6, errs


def test_weno_conserves_mass_without_forcing():
    u0 = _burgers_exact_cell_avg(64, 0.0)
    u, _ = weno_solve(u0, np.linspace(0, 12.0, 5), 1.0, 0.05, 0.2, L)  # past the inviscid shock time
    np.testing.assert_allclose(u.mean(1), u0.mean(), atol=1e-12)
    assert np.isfinite(u).all()


def test_spectral_exponential_convergence_viscous_burgers():
    T = np.array([0.0, 1.0])
    x_ref = periodic_grid(L, 256)
    ref = spectral_solve((0.5 * np.sin(2 * np.pi * x_ref / L))[None], T, 1.0, 0.2, 0.0, L, dt_max=0.005,
                         cell_average=False)
    errs = []
    for nx in (16, 32, 64):
        x = periodic_grid(L, nx)
        u = spectral_solve((0.5 * np.sin(2 * np.pi * x / L))[None], T, 1.0, 0.2, 0.0, L, dt_max=0.005,
                           cell_average=False)
        errs.append(np.abs(u[0, -1] - _spectral_interp(ref[0, -1], nx)).max())
    # error drops by orders of magnitude at each doubling (exponential, not algebraic)
    assert errs[1] < 1e-2 * errs[0] and errs[2] < 1e-8, errs


def _spectral_interp(u_fine, nx):
    """Trigonometric interpolation of fine cell-centre values onto the coarse cell centres."""
    n = u_fine.size
    uh = np.fft.rfft(u_fine)
    k = np.fft.rfftfreq(n, d=1.0 / n)
    xc = (np.arange(nx) + 0.5) / nx
    xf0 = 0.5 / n
    vals = uh[None, :] * np.exp(2j * np.pi * k[None, :] * (xc[:, None] - xf0))
    w = np.where((k == 0) | (k == n // 2), 1.0, 2.0)
    return (vals * w).real.sum(1) / n


def test_wave_modal_solution_matches_dalembert_before_reflection():
    # far from the boundaries the exact solution is the left-moving pulse exp(-(x + c t - s)^2)
    x = np.linspace(-5, 5, 41)
    T = np.array([0.0, 0.5, 1.0])
    for bc in [(1, 0, 1, 0), (0, 1, 0, 1), (0.6, 0.8, 1.0, 0.0)]:
        u = wave_exact(x, T, 1.0, 2.0, -8.0, 8.0, *bc)
        np.testing.assert_allclose(u, np.exp(-((x[None] + 2.0 * T[:, None] - 1.0) ** 2)), atol=1e-6)


def test_wave_eigenvalues_dirichlet_neumann_mixed():
    k = np.pi / 16.0
    np.testing.assert_allclose(wave_eigen(16.0, 1, 0, 1, 0, 1.0), k * np.arange(1, 6), atol=1e-12)
    np.testing.assert_allclose(wave_eigen(16.0, 0, 1, 0, 1, 1.0), k * np.arange(0, 6), atol=1e-12)
    np.testing.assert_allclose(wave_eigen(16.0, 1, 0, 0, 1, 1.0), k * (np.arange(0, 5) + 0.5), atol=1e-12)


@pytest.mark.parametrize("bc", [(1, 0, 1, 0), (0, 1, 0, 1), (1, 0, 0, 1), (0.6, 0.8, 0.3, 0.95)])
def test_chebyshev_eigenmode_exact(bc):
    al, bl, ar, br = bc
    kn = wave_eigen(16.0, al, bl, ar, br, 1.0)
    kn = kn[kn > 0][1]
    x = chebyshev_grid(-8, 8, 40)
    X = bl * kn * np.cos(kn * (x + 8)) + al * np.sin(kn * (x + 8))
    solver = ChebyshevWaveSolver(40, 0.4, 2.0, -8, 8, *bc)
    u = solver.solve(X, 0 * X, 250)[0]
    exact = np.cos(2.0 * kn * 0.4 * np.arange(250))[:, None] * X[None]
    np.testing.assert_allclose(u, exact, atol=1e-8 * np.abs(X).max())


@pytest.mark.parametrize("bc", [(1, 0, 1, 0), (0, 1, 0, 1), (0.6, 0.8, 0.3, 0.95)])
def test_chebyshev_spectral_convergence_to_exact(bc):
    T = np.linspace(0, 100, 250)
    errs = []
    for nx in (30, 40, 50, 60):
        x = chebyshev_grid(-8, 8, nx)
        u0, v0 = gaussian_pulse(x, 1.3, 2.0)
        u = ChebyshevWaveSolver(nx, T[1], 2.0, -8, 8, *bc).solve(u0, v0, 250)[0]
        errs.append(np.abs(u - wave_exact(x, T, 1.3, 2.0, -8, 8, *bc)).max())
    slope = np.polyfit([30, 40, 50, 60], np.log(errs), 1)[0]
    assert slope < -0.25 and errs[-1] < 1e-5, errs  # log-error linear in nx: exponential convergence


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_classical_solvers_stop_and_report_the_step_when_they_blow_up():
    # a Courant number of 50 is unstable: every classical solver must raise, naming the output step
    x = periodic_grid(L, 32)
    u0 = np.sin(2 * np.pi * x / L)
    T = np.linspace(0.0, 400.0, 3)
    with pytest.raises(FloatingPointError, match=r"non-finite before output step [12]\b"):
        weno_solve(u0, T, 1.0, 1.0, 0.0, L, cfl=50.0)
    z = np.zeros((2, 1))
    with pytest.raises(FloatingPointError, match=r"trajectory 0 became non-finite before output step"):
        weno_solve_batch(np.stack([u0, u0]), T, [1.0, 1.0], [1.0, 1.0], [0.0, 0.0], L, z, z, z, z + 1, cfl=50.0)
    with pytest.raises(FloatingPointError, match=r"non-finite at output step [12]\b"):
        spectral_solve(u0[None], T, 1.0, 0.0, 0.0, L, cfl=50.0)
