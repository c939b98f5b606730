"""Fourier pseudo-spectral solver for the combined equation (E1-E3), batched over trajectories.

``u_t = L u + N(u, t)`` with the linear part ``L = beta d_xx - gamma d_xxx`` diagonal in Fourier space,
``L(k) = -beta k^2 + i gamma k^3``, and ``N = -alpha (u^2/2)_x + delta(t, x)``. The linear part is integrated
exactly with an integrating factor and ``N`` with classical RK4 (the "IF-RK4" / Lawson scheme, Lawson 1967),
so the stiff diffusion and dispersion impose no step limit; the nonlinear term is dealiased with the 2/3 rule.

A learned closure (:mod:`._learned_spectral`) enters as ``flux``: a callable of the point values returning a flux
``F`` at the collocation points, added to ``N`` as ``-d_x F`` (spectral derivative, dealiased like ``N``; its
k = 0 mode is zero, so the mean is conserved whatever ``F`` is). ``flux=None`` is the classical solver.

Meant for smooth solutions (E2/E3 with enough viscosity): at a shock it rings (Gibbs), use WENO5 there.
numba has no FFT, so this solver runs on numpy's pocketfft (compiled C), batched over trajectories.
"""

from __future__ import annotations

import numpy as np

__all__ = ["spectral_solve", "points_to_cell_average"]


def points_to_cell_average(u: np.ndarray, L: float) -> np.ndarray:
    """Exact cell averages of the trigonometric interpolant of point values ``u`` (..., nx)."""
    nx = u.shape[-1]
    k = 2.0 * np.pi * np.fft.rfftfreq(nx, d=L / nx)
    return np.fft.irfft(np.fft.rfft(u, axis=-1) * np.sinc(k * (L / nx) / (2 * np.pi)), n=nx, axis=-1)


def spectral_solve(u0, times, alpha, beta, gamma, L=16.0, A=None, omega=None, phi=None, l=None,
                   cfl=0.5, dt_max=np.inf, cell_average=True, flux=None):
    """Solve a batch of trajectories with the IF-RK4 Fourier pseudo-spectral method.

    Args:
        u0: initial point values at the cell centres ``(i + 1/2) L / nx``, shape (B, nx).
        times: output times (nt,).
        alpha, beta, gamma: coefficients, scalars or shape (B,).
        A, omega, phi, l: forcing sines, shape (B, n_waves) each; None means no forcing.
        cfl: advective Courant number (the linear terms are exact).
        dt_max: cap on the step.
        cell_average: return cell averages (as the finite-volume data) instead of point values.
        flux: None, or a callable ``flux(u) -> F`` (both (B, nx) point values): the learned closure
            ``-d_x F`` added to the nonlinear term (module docstring).

    Returns:
        Array (B, nt, nx).
    """
    u0 = np.atleast_2d(np.asarray(u0, dtype=np.float64))  # (B, nx)
    B, nx = u0.shape
    dx = L / nx
    x = (np.arange(nx) + 0.5) * dx  # (nx,)
    k = 2.0 * np.pi * np.fft.rfftfreq(nx, d=dx)  # (nk,)
    col = lambda v: np.broadcast_to(np.asarray(v, dtype=np.float64), (B,))[:, None]  # noqa: E731
    alpha, beta, gamma = col(alpha), col(beta), col(gamma)  # (B, 1)
    lin = -beta * k**2 + 1j * gamma * k**3  # (B, nk)
    keep = (np.arange(k.size) < nx / 3.0)[None, :]  # 2/3 dealiasing
    forced = A is not None
    if forced:
        kw = 2.0 * np.pi * np.asarray(l, dtype=np.float64)[:, None, :] / L  # (B, 1, n)
        A_, om, ph = (np.asarray(v, dtype=np.float64)[:, None, :] for v in (A, omega, phi))

    def nonlinear(vhat, t):
        u = np.fft.irfft(vhat, n=nx, axis=-1)
        if flux is None:
            out = -alpha * 1j * k * np.fft.rfft(0.5 * u * u, axis=-1) * keep
        else:
            out = -1j * k * np.fft.rfft(alpha * (0.5 * u * u) + flux(u), axis=-1) * keep
        if forced:
            f = np.sum(A_ * np.sin(om * t + kw * x[None, :, None] + ph), axis=-1)  # (B, nx)
            out = out + np.fft.rfft(f, axis=-1)
        return out, u

    v = np.fft.rfft(u0, axis=-1)
    out = np.empty((B, len(times), nx))
    out[:, 0] = u0
    t = float(times[0])
    for m in range(1, len(times)):
        while t < times[m] - 1e-12 * max(1.0, abs(times[m])):
            n1, u = nonlinear(v, t)
            umax = float(np.max(np.abs(alpha * u)))
            dt = min(cfl * dx / max(umax, 1e-12), dt_max, times[m] - t)
            e2 = np.exp(lin * (0.5 * dt))
            e1 = e2 * e2
            n2, _ = nonlinear(e2 * (v + 0.5 * dt * n1), t + 0.5 * dt)
            n3, _ = nonlinear(e2 * v + 0.5 * dt * n2, t + 0.5 * dt)
            n4, _ = nonlinear(e1 * v + dt * e2 * n3, t + dt)
            v = e1 * v + dt / 6.0 * (e1 * n1 + 2.0 * e2 * (n2 + n3) + n4)
            t += dt
        t = float(times[m])
        out[:, m] = np.fft.irfft(v, n=nx, axis=-1)
        if not np.isfinite(out[:, m]).all():
            raise FloatingPointError(f"spectral solution became non-finite at output step {m}; the solution "
                                     "is probably not smooth (use weno_solve)")
    return points_to_cell_average(out, L) if cell_average else out
