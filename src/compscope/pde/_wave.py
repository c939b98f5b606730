"""Wave equation u_tt = c^2 u_xx on [xmin, xmax] with Robin-type boundaries a u + b du/dn = 0 (WE1-WE3).

Two solvers:

* :func:`wave_exact`: the exact solution by eigenfunction expansion. The Sturm-Liouville problem
  X'' = -k^2 X with the boundary conditions has eigenfunctions X(xi) = b_l k cos(k xi) + a_l sin(k xi),
  xi = x - xmin, whose wave numbers solve (a_l a_r - b_l b_r k^2) sin(kL) + k (a_r b_l + a_l b_r) cos(kL) = 0;
  u(x, t) = sum_n X_n(x) [p_n cos(c k_n t) + q_n sin(c k_n t) / (c k_n)]. Used as the reference data.
* :class:`ChebyshevWaveSolver`: Chebyshev collocation in space (boundary rows eliminated so the boundary
  values follow from the interior ones) and, the semi-discrete system being linear and autonomous, an exact
  propagator exp(M dt) in time, so a trajectory costs nt small batched matrix products.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.linalg import expm
from scipy.optimize import brentq

from ._equations import chebyshev_grid

__all__ = ["wave_exact", "wave_eigen", "cheb_diff_matrix", "ChebyshevWaveSolver", "gaussian_pulse"]


def gaussian_pulse(x: np.ndarray, start: float, c: float) -> tuple[np.ndarray, np.ndarray]:
    """Initial displacement exp(-(x - s)^2) and velocity c u_x (a pulse moving left, as the authors' code)."""
    u = np.exp(-((x - start) ** 2))
    return u, -2.0 * c * (x - start) * u


@lru_cache(maxsize=8)
def _gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(n)


def _char(k, L, al, bl, ar, br):
    return (al * ar - bl * br * k * k) * np.sinc(k * L / np.pi) * L + (ar * bl + al * br) * np.cos(k * L)


def wave_eigen(L: float, al: float, bl: float, ar: float, br: float, kmax: float) -> np.ndarray:
    """Wave numbers k_n in (0, kmax] of the boundary-value problem (plus 0 when both ends are Neumann)."""
    dk = np.pi / L / 16.0
    grid = (np.arange(int(kmax / dk) + 2) + 0.37) * dk
    h = _char(grid, L, al, bl, ar, br)
    roots = [brentq(_char, grid[i], grid[i + 1], args=(L, al, bl, ar, br), xtol=1e-14)
             for i in np.nonzero(h[:-1] * h[1:] < 0)[0]]
    if al == 0.0 and ar == 0.0:  # pure Neumann: the constant mode
        roots = [0.0, *roots]
    return np.asarray(roots)


def _modes(x, xmin, k, al, bl):
    xi = x[..., None] - xmin
    X = bl * k * np.cos(k * xi) + al * np.sin(k * xi)  # (..., n_modes)
    return np.where(k == 0.0, 1.0, X)


def wave_exact(x: np.ndarray, times: np.ndarray, start: float, c: float, xmin: float, xmax: float,
               al: float, bl: float, ar: float, br: float, kmax: float = 14.0, n_quad: int = 400) -> np.ndarray:
    """Exact solution for a Gaussian pulse, evaluated at points ``x`` (nx,) and ``times`` (nt,) -> (nt, nx).

    The modal sum is truncated at ``kmax`` (the pulse spectrum is exp(-k^2/4), below 1e-15 at k = 12).
    """
    L = xmax - xmin
    k = wave_eigen(L, al, bl, ar, br, kmax)  # (M,)
    xq, wq = _gauss_legendre(n_quad)
    xq = xmin + (xq + 1.0) * 0.5 * L
    wq = wq * 0.5 * L
    Xq = _modes(xq, xmin, k, al, bl)  # (Q, M)
    u0, v0 = gaussian_pulse(xq, start, c)
    norm = wq @ (Xq * Xq)
    p = (wq * u0) @ Xq / norm  # (M,)
    q = (wq * v0) @ Xq / norm
    w = c * k
    t = np.asarray(times)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        sinc_t = np.where(w == 0.0, t, np.sin(w * t) / np.where(w == 0.0, 1.0, w))
    coef = p * np.cos(w * t) + q * sinc_t  # (nt, M)
    return coef @ _modes(np.asarray(x), xmin, k, al, bl).T  # (nt, nx)


def cheb_diff_matrix(x: np.ndarray) -> np.ndarray:
    """Chebyshev differentiation matrix on Gauss-Lobatto points ``x`` (increasing, any interval)."""
    n = x.size
    c = np.ones(n)
    c[0] = c[-1] = 2.0
    c *= (-1.0) ** np.arange(n)
    dx = x[:, None] - x[None, :] + np.eye(n)
    D = np.outer(c, 1.0 / c) / dx
    D -= np.diag(D.sum(axis=1))  # negative-sum trick for the diagonal
    return D


class ChebyshevWaveSolver:
    """Chebyshev collocation with an exact-in-time propagator for one grid and one boundary condition.

    Args:
        nx: Chebyshev-Gauss-Lobatto points, endpoints included.
        dt: output step.
        c: wave speed.
        xmin, xmax: domain.
        al, bl, ar, br: boundary coefficients (a u + b du/dn = 0 with the outward normal).

    Shapes:
        :meth:`solve` takes u0, v0 of shape (B, nx) and returns (B, nt, nx).
    """

    def __init__(self, nx: int, dt: float, c: float = 2.0, xmin: float = -8.0, xmax: float = 8.0,
                 al: float = 1.0, bl: float = 0.0, ar: float = 1.0, br: float = 0.0) -> None:
        self.x = chebyshev_grid(xmin, xmax, nx)  # (nx,)
        D = cheb_diff_matrix(self.x)
        n = nx
        # boundary values from interior values: rows of a_l u_0 - b_l (Du)_0 = 0, a_r u_N + b_r (Du)_N = 0
        lhs = np.array([[al - bl * D[0, 0], -bl * D[0, -1]],
                        [br * D[-1, 0], ar + br * D[-1, -1]]])
        rhs = np.stack([bl * D[0, 1:-1], -br * D[-1, 1:-1]])  # (2, n-2)
        P = np.zeros((n, n - 2))
        P[1:-1] = np.eye(n - 2)
        P[[0, -1]] = np.linalg.solve(lhs, rhs)
        self.P = P  # (nx, nx-2): full field from interior values
        A = c * c * (D @ D @ P)[1:-1]  # (m, m)
        m = n - 2
        M = np.zeros((2 * m, 2 * m))
        M[:m, m:] = np.eye(m)
        M[m:, :m] = A
        self.prop = expm(M * dt)  # (2m, 2m)
        self.m = m

    def solve(self, u0: np.ndarray, v0: np.ndarray, nt: int) -> np.ndarray:
        u0 = np.atleast_2d(u0)
        v0 = np.atleast_2d(v0)
        y = np.concatenate([u0[:, 1:-1], v0[:, 1:-1]], axis=1).T  # (2m, B)
        out = np.empty((u0.shape[0], nt, self.P.shape[0]))
        for j in range(nt):
            out[:, j] = (self.P @ y[: self.m]).T
            y = self.prop @ y
        return out
