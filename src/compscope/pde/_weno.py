"""WENO5 finite-volume solver with SSP-RK3 for the combined equation (E1-E3), compiled with numba.

Semi-discretisation of ``u_t + d/dx [alpha u^2/2 - beta u_x + gamma u_xx] = delta(t, x)`` on periodic cell
averages:

* convective flux: fifth-order WENO-Z reconstruction (Borges et al. 2008, Eqs. 2.4-2.9 of Jiang & Shu 1996
  for the smoothness indicators) of the two face states and the exact Godunov flux of the convex Burgers flux;
* viscous flux ``-beta u_x`` at faces: fourth-order stencil for cell averages;
* dispersive flux ``gamma u_xx`` at faces: fourth-order stencil for cell averages (from the 7-point
  third derivative of the primitive function);
* forcing: exact cell average (the sines are integrated analytically over each cell);
* time: the three-stage third-order strong-stability-preserving Runge-Kutta (Shu & Osher 1988) with a step
  from the advective, diffusive and dispersive stability limits, clipped to land exactly on output times.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["weno_solve", "weno_solve_batch", "weno_rhs", "forcing_tables"]

_EPS = 1e-40


def weno5z_face(a, b, c, d, e):
    """Value at the right face of cell c from the cell averages a, b, c, d, e (left-biased).

    Plain arithmetic, so the same function serves numba (compiled below as ``_weno5z``) and torch tensors
    (the learned finite-volume solver)."""
    q0 = (2.0 * a - 7.0 * b + 11.0 * c) / 6.0
    q1 = (-b + 5.0 * c + 2.0 * d) / 6.0
    q2 = (2.0 * c + 5.0 * d - e) / 6.0
    b0 = 13.0 / 12.0 * (a - 2.0 * b + c) ** 2 + 0.25 * (a - 4.0 * b + 3.0 * c) ** 2
    b1 = 13.0 / 12.0 * (b - 2.0 * c + d) ** 2 + 0.25 * (b - d) ** 2
    b2 = 13.0 / 12.0 * (c - 2.0 * d + e) ** 2 + 0.25 * (3.0 * c - 4.0 * d + e) ** 2
    tau = abs(b0 - b2)
    w0 = 0.1 * (1.0 + (tau / (b0 + _EPS)) ** 2)
    w1 = 0.6 * (1.0 + (tau / (b1 + _EPS)) ** 2)
    w2 = 0.3 * (1.0 + (tau / (b2 + _EPS)) ** 2)
    s = w0 + w1 + w2
    return (w0 * q0 + w1 * q1 + w2 * q2) / s


_weno5z = njit(cache=True, inline="always")(weno5z_face)


@njit(cache=True, inline="always")
def _godunov_burgers(ul, ur):
    """Exact Godunov flux of f(u) = u^2 / 2."""
    if ul <= ur:
        if ul > 0.0:
            return 0.5 * ul * ul
        if ur < 0.0:
            return 0.5 * ur * ur
        return 0.0
    return 0.5 * max(ul * ul, ur * ur)


@njit(cache=True)
def weno_rhs(u, t, alpha, beta, gamma, dx, omega, phi, fc, fs, pad, flux, out):
    """du/dt of the cell averages ``u`` (nx,) at time ``t``; ``pad`` (nx + 6,) and ``flux`` (nx,) are scratch,
    the result goes to ``out``.

    The forcing's cell average is ``sum_j sin(omega_j t + phi_j) fc[j] + cos(omega_j t + phi_j) fs[j]`` with the
    time-independent ``fc``/``fs`` (n_waves, nx) of :func:`forcing_tables`: two sines per wave and stage instead
    of one per wave and cell."""
    n = u.shape[0]
    for i in range(n):  # periodic ghost cells: pad[i + 3] = u[i]
        pad[i + 3] = u[i]
    for g in range(3):
        pad[g] = u[n - 3 + g]
        pad[n + 3 + g] = u[g]
    for i in range(n):  # face i + 1/2
        im2, im1, c, ip1, ip2, ip3 = pad[i + 1], pad[i + 2], pad[i + 3], pad[i + 4], pad[i + 5], pad[i + 6]
        f = 0.0
        if alpha != 0.0:
            ul = _weno5z(im2, im1, c, ip1, ip2)
            ur = _weno5z(ip3, ip2, ip1, c, im1)
            f = alpha * _godunov_burgers(ul, ur)
        if beta != 0.0:
            ux = (15.0 * (ip1 - c) - (ip2 - im1)) / (12.0 * dx)
            f -= beta * ux
        if gamma != 0.0:
            uxx = (-im2 + 7.0 * im1 - 6.0 * c - 6.0 * ip1 + 7.0 * ip2 - ip3) / (8.0 * dx * dx)
            f += gamma * uxx
        flux[i] = f
    flux_divergence(flux, dx, t, omega, phi, fc, fs, out)


@njit(cache=True, inline="always")
def flux_divergence(flux, dx, t, omega, phi, fc, fs, out):
    """``out = -(flux[i] - flux[i-1]) / dx`` (periodic) plus the forcing's cell average at time ``t``."""
    n = flux.shape[0]
    out[0] = -(flux[0] - flux[n - 1]) / dx
    for i in range(1, n):
        out[i] = -(flux[i] - flux[i - 1]) / dx
    for j in range(fc.shape[0]):
        st = np.sin(omega[j] * t + phi[j])
        ct = np.cos(omega[j] * t + phi[j])
        for i in range(n):
            out[i] += st * fc[j, i] + ct * fs[j, i]


@njit(cache=True)
def forcing_tables(A, l, L, n):
    """(fc, fs), each (n_waves, n): ``A_j sinc_j cos(k_j x_i)`` and ``A_j sinc_j sin(k_j x_i)`` on the cell centres,
    where ``sinc_j = sin(k_j dx / 2) / (k_j dx / 2)`` turns point values into exact cell averages."""
    dx = L / n
    m = A.shape[0]
    fc = np.empty((m, n))
    fs = np.empty((m, n))
    for j in range(m):
        k = 2.0 * np.pi * l[j] / L
        z = 0.5 * k * dx
        damp = np.sin(z) / z if z != 0.0 else 1.0
        for i in range(n):
            x = (i + 0.5) * dx
            fc[j, i] = A[j] * damp * np.cos(k * x)
            fs[j, i] = A[j] * damp * np.sin(k * x)
    return fc, fs


@njit(cache=True)
def _stable_dt(u, alpha, beta, gamma, dx, cfl):
    umax = 0.0
    for i in range(u.shape[0]):
        umax = max(umax, abs(u[i]))
    rate = abs(alpha) * umax / dx + 5.4 * beta / (2.5 * dx * dx) + 4.61 * gamma / (1.7 * dx ** 3)
    return cfl / max(rate, 1e-12)


@njit(cache=True)
def _solve_one(u0, times, alpha, beta, gamma, L, A, omega, phi, l, cfl, dt_max, out):
    n = u0.shape[0]
    dx = L / n
    fc, fs = forcing_tables(A, l, L, n)
    u = u0.copy()
    u1 = np.empty(n)
    u2 = np.empty(n)
    r = np.empty(n)
    flux = np.empty(n)
    pad = np.empty(n + 6)
    out[0, :] = u
    t = times[0]
    nsteps = 0
    for m in range(1, times.shape[0]):
        while t < times[m] - 1e-12 * max(1.0, abs(times[m])):
            dt = min(_stable_dt(u, alpha, beta, gamma, dx, cfl), dt_max, times[m] - t)
            weno_rhs(u, t, alpha, beta, gamma, dx, omega, phi, fc, fs, pad, flux, r)
            for i in range(n):
                u1[i] = u[i] + dt * r[i]
            weno_rhs(u1, t + dt, alpha, beta, gamma, dx, omega, phi, fc, fs, pad, flux, r)
            for i in range(n):
                u2[i] = 0.75 * u[i] + 0.25 * (u1[i] + dt * r[i])
            weno_rhs(u2, t + 0.5 * dt, alpha, beta, gamma, dx, omega, phi, fc, fs, pad, flux, r)
            for i in range(n):
                u[i] = u[i] / 3.0 + 2.0 / 3.0 * (u2[i] + dt * r[i])
            t += dt
            nsteps += 1
            if not np.isfinite(u[0]):
                return -m
        t = times[m]
        out[m, :] = u
    return nsteps


def weno_solve(u0, times, alpha=1.0, beta=0.0, gamma=0.0, L=16.0, A=None, omega=None, phi=None, l=None,
               cfl=0.4, dt_max=np.inf):
    """Solve one trajectory of the combined equation with WENO5 + SSP-RK3.

    Args:
        u0: initial cell averages, shape (nx,).
        times: output times, shape (nt,), increasing, ``times[0]`` the initial time.
        alpha, beta, gamma: PDE coefficients.
        L: periodic domain length.
        A, omega, phi, l: forcing sines, each shape (n_waves,); None means no forcing.
        cfl: safety factor on the stability limit.
        dt_max: upper bound on the time step (used by the time-order test).

    Returns:
        (u, nsteps): cell averages of shape (nt, nx) and the number of RK steps taken.

    Raises:
        FloatingPointError: if the solution became non-finite (reports the output step).
    """
    u0 = np.ascontiguousarray(u0, dtype=np.float64)
    times = np.ascontiguousarray(times, dtype=np.float64)
    z = np.zeros(0)
    A, omega, phi, l = (z, z, z, z) if A is None else (np.asarray(v, dtype=np.float64) for v in (A, omega, phi, l))
    out = np.empty((times.shape[0], u0.shape[0]))
    nsteps = _solve_one(u0, times, float(alpha), float(beta), float(gamma), float(L), A, omega, phi, l,
                        float(cfl), float(dt_max), out)
    if nsteps < 0:
        raise FloatingPointError(f"WENO5 solution became non-finite before output step {-nsteps}; "
                                 "lower cfl or check the coefficients")
    return out, nsteps


@njit(cache=True, parallel=True)
def _solve_batch(u0, times, alpha, beta, gamma, L, A, omega, phi, l, cfl, out):
    status = np.zeros(u0.shape[0], dtype=np.int64)
    for b in prange(u0.shape[0]):
        status[b] = _solve_one(u0[b], times, alpha[b], beta[b], gamma[b], L, A[b], omega[b], phi[b], l[b],
                               cfl, np.inf, out[b])
    return status


def weno_solve_batch(u0, times, alpha, beta, gamma, L, A, omega, phi, l, cfl=0.4):
    """Batched :func:`weno_solve`, parallel over trajectories (numba ``prange``).

    Shapes: u0 (B, nx); alpha, beta, gamma (B,); A, omega, phi, l (B, n_waves). Returns (B, nt, nx).
    """
    u0 = np.ascontiguousarray(u0, dtype=np.float64)
    B = u0.shape[0]
    f = [np.ascontiguousarray(np.broadcast_to(np.asarray(v, dtype=np.float64), (B,))) for v in (alpha, beta, gamma)]
    g = [np.ascontiguousarray(v, dtype=np.float64) for v in (A, omega, phi, l)]
    times = np.ascontiguousarray(times, dtype=np.float64)
    out = np.empty((B, times.shape[0], u0.shape[1]))
    status = _solve_batch(u0, times, *f, float(L), *g, float(cfl), out)
    if (status < 0).any():
        b = int(np.argmax(status < 0))
        raise FloatingPointError(f"WENO5 trajectory {b} became non-finite before output step {-status[b]}")
    return out
