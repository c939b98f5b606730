"""Learned correction of the Fourier pseudo-spectral solver (E1-E3): IF-RK4 + a learned conservative closure.

The time stepper is :func:`compscope.pde.spectral_solve`'s, written in torch: the linear part
``L(k) = -beta k^2 + i gamma k^3`` integrated exactly (integrating factor), the nonlinear part with classical RK4,
2/3-rule dealiasing, the same forcing (point values of the sines), the same adaptive step (advective Courant
number on the batch's largest ``|alpha u|``, landing on the output times). The learned part is a flux ``F`` at
the collocation points, added as ``-d_x F`` to the nonlinear term (spectral derivative, dealiased like it):

    N(u) = -i k P[ alpha u^2 / 2 + F(u) ] + delta,       F = f_theta(u, alpha, beta, gamma),

with ``f_theta`` a periodic 1D CNN (:class:`ClosureNet`) of the PDE coefficients and, by default
(``inputs="highpass"``), the *high-pass part* of the point values only (the modes ``nx/6 <= |k| <= nx/2``, the
upper half of the resolved band and the undealiased top): where the solution is resolved that part is ~0, every
input is spatially constant, so is F, and its derivative vanishes: the closure acts only where the grid is too
coarse (a learned, solution-dependent spectral viscosity). With ``inputs="u"`` the network sees u itself: on E3 at
nx = 50 such a closure, trained to the same loss, made the median trajectory's error 1000x worse than the
spectral solver's (3e-7 -> 1e-3), because the noisy optimiser steps perturb the closure everywhere. Hence

* conservation to round-off whatever the weights: the correction's k = 0 mode is ``i * 0 * F_0 = 0``;
* translation equivariance under grid shifts (periodic convolutions, a spectral derivative);
* mirror equivariance on reflection-symmetric settings (E1, E2: ``u(t, x) -> -u(t, L - x)``) by the
  symmetrisation ``F = (f(u) + R f(-R u)) / 2`` (R reverses the cells; the flux is even under the mirror);
  E3's ``gamma u_xxx`` breaks it, so there it is off (and refused if asked for);
* the classical spectral solver when the network outputs zero (its last layer starts at zero, so an untrained
  model *is* the spectral solver to round-off; tested against :func:`~compscope.pde.spectral_solve`).

State and data: the solver carries point values (their rFFT); it reads and returns *cell averages* (the
finite-volume data) through the exact map between the two for a trigonometric interpolant (multiply / divide
mode k by ``sinc(k dx / 2)``, :func:`~compscope.pde.points_to_cell_average`). Training targets are exact coarse
cell averages of a fine spectral reference (:func:`interpolant_cell_averages`, equal to block averaging where
the grids nest, and defined for grids that do not nest in the reference, e.g. nx = 32 of 200) because the
benchmark scores every solver against block-averaged references: a spectrally truncated target would differ
from the score's target by the sinc filter and the aliasing of the unresolved modes.

Inference: :class:`FastLearnedSpectral` runs the same closure in numpy inside
:func:`~compscope.pde.spectral_solve` (``flux=``), batched, so learned and classical solver share one code path
and their timings compare like for like.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from compscope.errors import CompscopeError

from ._equations import ResolutionError, get_equation, periodic_grid
from ._learned_fv import NonFiniteInputError

__all__ = ["ClosureNet", "LearnedSpectral", "FastLearnedSpectral", "interpolant_cell_averages",
           "cell_averages_to_points", "spectral_forcing_points", "highpass_mask", "ACTIVATIONS"]

ACTIVATIONS = ("tanh", "silu")


def highpass_mask(nx: int) -> np.ndarray:
    """rFFT mask (nx // 2 + 1,) of the modes ``|k| >= nx / 6`` (the closure's input band)."""
    return (np.arange(nx // 2 + 1) >= nx / 6.0).astype(np.float64)


def _sinc(k: np.ndarray, dx: float) -> np.ndarray:
    """Cell-average factor of mode k on cells of width dx: sin(k dx / 2) / (k dx / 2)."""
    return np.sinc(k * dx / (2.0 * np.pi))


def interpolant_cell_averages(u: np.ndarray, L: float, nx: int) -> np.ndarray:
    """Exact cell averages on a periodic grid of ``nx`` cells of the trigonometric interpolant of the fine cell
    averages ``u`` (..., N) (the interpolant whose own cell averages on the fine grid are ``u``).

    Where ``N`` is a multiple of ``nx`` this *is* block averaging (the coarse cell is a union of fine cells);
    otherwise it is the same exact average of the fine solution's interpolant (spectrally accurate for a smooth
    fine solution). The even-N Nyquist mode is taken as the cosine through the samples.
    """
    u = np.asarray(u, dtype=np.float64)
    N = u.shape[-1]
    h, H = L / N, L / nx
    k = 2.0 * np.pi * np.fft.rfftfreq(N, d=h)  # (nk,)
    w = np.full(k.size, 2.0)
    w[0] = 1.0
    if N % 2 == 0:
        w[-1] = 1.0
    xc = periodic_grid(L, nx)  # (nx,)
    E = (w * _sinc(k, H) / _sinc(k, h))[:, None] * np.exp(1j * k[:, None] * (xc[None, :] - 0.5 * h)) / N
    return np.real(np.fft.rfft(u, axis=-1) @ E)  # (..., nx)


def cell_averages_to_points(u: np.ndarray, L: float) -> np.ndarray:
    """Point values at the cell centres of the trigonometric interpolant whose cell averages are ``u`` (..., nx):
    the inverse of :func:`~compscope.pde.points_to_cell_average`."""
    nx = u.shape[-1]
    k = 2.0 * np.pi * np.fft.rfftfreq(nx, d=L / nx)
    return np.fft.irfft(np.fft.rfft(u, axis=-1) / _sinc(k, L / nx), n=nx, axis=-1)


def spectral_forcing_points(params: dict, L: float, nx: int, t: float = 0.0) -> np.ndarray:
    """Point values (B, nx) of the forcing sines of a batch (params A, omega, phi, l: (B, n)) at the cell centres:
    the initial condition u(0, x) = delta(0, x) as the spectral solver takes it."""
    x = periodic_grid(L, nx)
    kw = 2.0 * np.pi * np.asarray(params["l"], dtype=np.float64)[:, None, :] / L
    A, om, ph = (np.asarray(params[k], dtype=np.float64)[:, None, :] for k in ("A", "omega", "phi"))
    return np.sum(A * np.sin(om * t + kw * x[None, :, None] + ph), axis=-1)


class ClosureNet(nn.Module):
    """Periodic 1D CNN: point values (B, nx) and PDE coefficients (B, P) -> a flux (B, nx).

    Input channels: ``u`` and the coefficients broadcast over the grid; ``layers`` circular convolutions of width
    ``kernel`` with ``activation`` between them; the last layer starts at zero (the closure starts at F = 0).
    """

    def __init__(self, n_params: int = 3, hidden: int = 32, layers: int = 3, kernel: int = 5,
                 activation: str = "tanh") -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation {activation!r}: use one of {ACTIVATIONS}")
        if kernel < 1 or kernel % 2 == 0 or layers < 1 or hidden < 1:
            raise ValueError(f"kernel={kernel}, layers={layers}, hidden={hidden}: need an odd kernel >= 1, "
                             "layers >= 1 and hidden >= 1")
        widths = [1 + n_params] + [hidden] * (layers - 1) + [1]
        self.convs = nn.ModuleList(nn.Conv1d(a, b, kernel, padding=kernel // 2, padding_mode="circular")
                                   for a, b in zip(widths[:-1], widths[1:], strict=True))
        nn.init.zeros_(self.convs[-1].weight)
        nn.init.zeros_(self.convs[-1].bias)
        self.act = torch.tanh if activation == "tanh" else nn.functional.silu
        self.kernel = kernel

    def forward(self, u: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = torch.cat([u[:, None, :], cond[:, :, None].expand(-1, -1, u.shape[-1])], 1)  # (B, 1 + P, nx)
        for j, conv in enumerate(self.convs):
            h = conv(h)
            if j < len(self.convs) - 1:
                h = self.act(h)
        return h[:, 0]


class LearnedSpectral(nn.Module):
    """The learned-correction pseudo-spectral solver of one equation (E1-E3) at one resolution.

    Args:
        equation: ``E1``-``E3`` or an ``-authors`` variant (periodic combined equation).
        nx: grid points (at least 8 and the network's kernel).
        hidden, layers, kernel, activation: the closure network (:class:`ClosureNet`).
        inputs: ``"highpass"`` (the modes ``|k| >= nx/6`` of u: the closure vanishes on resolved solutions) or
            ``"u"`` (the point values).
        mirror: symmetrise the flux under ``u -> -u(L - x)`` (default: where the equation has the symmetry;
            refused where it has not).
        cfl: advective Courant number of the step (the spectral solver's 0.5).
    """

    def __init__(self, equation: str, nx: int, hidden: int = 32, layers: int = 3, kernel: int = 5,
                 activation: str = "tanh", inputs: str = "highpass", mirror: bool | None = None,
                 cfl: float = 0.5) -> None:
        super().__init__()
        if inputs not in ("highpass", "u"):
            raise CompscopeError(f"inputs={inputs!r}: use 'highpass' or 'u'")
        eq = get_equation(equation)
        if eq.family != "combined":
            raise ResolutionError(f"learned spectral solver: {eq.name} is not a periodic combined equation",
                                  hint="use E1, E2, E3 or their -authors variants")
        nx = int(nx)
        if nx < max(8, kernel):
            raise ResolutionError(f"learned spectral solver: nx={nx} is too coarse",
                                  hint=f"use nx >= {max(8, kernel)} (8 points and the kernel width {kernel})")
        sym = eq.reflection_symmetric
        if mirror is None:
            mirror = sym
        if mirror and not sym:
            raise CompscopeError(f"mirror=True but {eq.name} is not mirror-symmetric (gamma u_xxx changes sign)",
                                 hint="leave mirror unset (it follows the equation)")
        if not cfl > 0:
            raise CompscopeError(f"cfl={cfl}: the Courant number must be positive", hint="the spectral solver's 0.5")
        self.equation, self.nx, self.L, self.mirror, self.cfl = eq.name, nx, float(eq.L), bool(mirror), float(cfl)
        self.inputs = inputs
        self.highpass = highpass_mask(nx) if inputs == "highpass" else None
        self.net = ClosureNet(3, hidden, layers, kernel, activation)
        self.config = {"equation": eq.name, "nx": nx, "hidden": hidden, "layers": layers, "kernel": kernel,
                       "activation": activation, "inputs": inputs, "mirror": self.mirror, "cfl": self.cfl}
        self.double()

    def check(self, equation: str | None = None, nx: int | None = None) -> None:
        """Raise :class:`~compscope.pde.EquationMismatchError` when asked to run on another equation or grid."""
        from ._evaluate import check_trained_for

        check_trained_for(self, "learned spectral", "train-spectral", equation, nx)

    def macs_per_point(self) -> int:
        """Multiply-adds of the closure per grid point and right-hand side (doubled by the mirror)."""
        macs = sum(c.in_channels * c.out_channels * c.kernel_size[0] for c in self.net.convs)
        return int(macs * (2 if self.mirror else 1))

    # ---- the closure and the right-hand side -----------------------------------------------------------
    def flux(self, u: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """The learned flux (B, nx) at the points ``u`` (B, nx), mirror-symmetrised where it applies."""
        if self.highpass is not None:
            mask = torch.tensor(self.highpass, dtype=u.dtype)
            u = torch.fft.irfft(torch.fft.rfft(u, dim=-1) * mask, n=self.nx, dim=-1)
        if not self.mirror:
            return self.net(u, cond)
        both = self.net(torch.cat([u, -u.flip(-1)]), torch.cat([cond, cond]))
        B = u.shape[0]
        return 0.5 * (both[:B] + both[B:].flip(-1))

    def _setup(self, cond: torch.Tensor, forcing: dict | None):
        dtype = cond.dtype
        cdt = torch.complex128 if dtype == torch.float64 else torch.complex64
        nx, dx = self.nx, self.L / self.nx
        k = torch.tensor(2.0 * np.pi * np.fft.rfftfreq(nx, d=dx), dtype=dtype)  # (nk,)
        alpha, beta, gamma = cond[:, 0:1], cond[:, 1:2], cond[:, 2:3]  # (B, 1)
        lin = (-beta * k**2).to(cdt) + 1j * (gamma * k**3).to(cdt)  # (B, nk)
        keep = (torch.arange(k.numel()) < nx / 3.0).to(dtype)
        ik = (1j * k).to(cdt) * keep
        sinc = torch.tensor(_sinc(k.numpy(), dx), dtype=dtype)
        f = None
        if forcing is not None and np.asarray(forcing["A"]).size:
            x = torch.tensor(periodic_grid(self.L, nx), dtype=dtype)
            A, om, ph, l_ = (torch.as_tensor(np.asarray(forcing[key], dtype=np.float64), dtype=dtype)[:, None, :]
                             for key in ("A", "omega", "phi", "l"))
            f = (A, om, 2.0 * np.pi * l_ / self.L * x[None, :, None] + ph)
        return {"alpha": alpha, "lin": lin, "ik": ik, "sinc": sinc, "forcing": f, "dx": dx, "cond": cond,
                "offset": None}

    def _nonlinear(self, vhat, t: float, s):
        u = torch.fft.irfft(vhat, n=self.nx, dim=-1)
        g = s["alpha"] * (0.5 * u * u) + self.flux(u, s["cond"])
        out = -s["ik"] * torch.fft.rfft(g, dim=-1)
        if s["forcing"] is not None:
            A, om, arg = s["forcing"]
            tb = t if s["offset"] is None else t + s["offset"]  # per-trajectory clocks (training windows)
            out = out + torch.fft.rfft(torch.sum(A * torch.sin(om * tb + arg), dim=-1), dim=-1)
        return out, u

    def _step_to(self, v, t: float, t1: float, s):
        """IF-RK4 steps from t to t1 (spectral_solve's loop; one step sequence for the whole batch)."""
        while t < t1 - 1e-12 * max(1.0, abs(t1)):
            n1, u = self._nonlinear(v, t, s)
            umax = float((s["alpha"] * u).detach().abs().max())
            dt = min(self.cfl * s["dx"] / max(umax, 1e-12), t1 - t)
            e2 = torch.exp(s["lin"] * (0.5 * dt))
            e1 = e2 * e2
            n2, _ = self._nonlinear(e2 * (v + 0.5 * dt * n1), t + 0.5 * dt, s)
            n3, _ = self._nonlinear(e2 * v + 0.5 * dt * n2, t + 0.5 * dt, s)
            n4, _ = self._nonlinear(e1 * v + dt * e2 * n3, t + dt, s)
            v = e1 * v + dt / 6.0 * (e1 * n1 + 2.0 * e2 * (n2 + n3) + n4)
            t += dt
        return v

    def advance(self, state: torch.Tensor, t0, t1, cond: torch.Tensor, forcing: dict | None) -> torch.Tensor:
        """Cell averages (B, nx) at t0 -> cell averages at t1 (differentiable; the training step). ``t0``, ``t1``
        are floats or per-trajectory (B,) tensors with one common span ``t1 - t0`` (the batch shares its steps;
        each trajectory's forcing runs on its own clock)."""
        s = self._setup(cond, forcing)
        t0 = torch.as_tensor(t0, dtype=torch.float64).reshape(-1)
        t1 = torch.as_tensor(t1, dtype=torch.float64).reshape(-1)
        span = t1 - t0
        if float((span - span[0]).abs().max()) > 1e-9 * max(1.0, float(span[0].abs())):
            raise CompscopeError("learned spectral solver: advance needs one time span for the whole batch",
                                 hint="windows of equal length (the stored times are uniform)")
        if t0.numel() > 1:
            s["offset"] = (t0 - t0[0]).to(state.dtype)[:, None, None]
        v = torch.fft.rfft(state, dim=-1) / s["sinc"]
        v = self._step_to(v, float(t0[0]), float(t1[0]), s)
        return torch.fft.irfft(v * s["sinc"], n=self.nx, dim=-1)

    def solve(self, u0: torch.Tensor, times, cond: torch.Tensor, forcing: dict | None,
              points: bool = True) -> torch.Tensor:
        """Trajectories (B, nt, nx) of cell averages from u0 (B, nx): point values (``points=True``, as
        :func:`~compscope.pde.spectral_solve` takes them) or cell averages."""
        if not torch.isfinite(u0).all() or not torch.isfinite(cond).all():
            raise NonFiniteInputError("learned spectral solver: the initial condition or the coefficients hold "
                                      "NaN or inf", hint="check the data (a diverged earlier rollout?)")
        if u0.shape[-1] != self.nx:
            self.check(nx=u0.shape[-1])
        s = self._setup(cond, forcing)
        v = torch.fft.rfft(u0, dim=-1)
        if not points:
            v = v / s["sinc"]
        times = [float(t) for t in times]
        out = [torch.fft.irfft(v * s["sinc"], n=self.nx, dim=-1)]
        for m in range(1, len(times)):
            v = self._step_to(v, times[m - 1], times[m], s)
            out.append(torch.fft.irfft(v * s["sinc"], n=self.nx, dim=-1))
        return torch.stack(out, 1)


class FastLearnedSpectral:
    """Inference of a trained :class:`LearnedSpectral` in numpy, inside :func:`~compscope.pde.spectral_solve`
    (``flux=``): the closure's convolutions as one matrix product per layer over the stacked periodic stencils,
    the coefficient channels of the first layer folded into a per-trajectory bias; batched over trajectories."""

    def __init__(self, model: LearnedSpectral) -> None:
        self.model = model
        self.mirror, self.L, self.nx, self.cfl = model.mirror, model.L, model.nx, model.cfl
        self.layers = []
        for conv in model.net.convs:
            W = conv.weight.detach().cpu().double().numpy()  # (out, in, K)
            self.layers.append((W, conv.bias.detach().cpu().double().numpy()))
        self.kernel = model.net.kernel
        pad = self.kernel // 2
        self.idx = (np.arange(self.nx)[:, None] + np.arange(self.kernel)[None, :] - pad) % self.nx  # (nx, K)
        self.silu = model.config["activation"] == "silu"
        self.highpass = model.highpass

    def _act(self, h):
        return h / (1.0 + np.exp(-h)) if self.silu else np.tanh(h)

    def _net(self, u: np.ndarray, bias0: np.ndarray) -> np.ndarray:
        """u (B, nx), bias0 (B, H0): the first layer's bias plus its coefficient channels -> flux (B, nx)."""
        W0 = self.layers[0][0][:, 0, :]  # (H0, K) weights on u
        h = u[:, self.idx] @ W0.T + bias0[:, None, :]  # (B, nx, H0)
        for W, b in self.layers[1:]:
            h = self._act(h)
            B, n, _ = h.shape
            Wm = W.transpose(2, 1, 0).reshape(-1, W.shape[0])  # (K * C, out): row j * C + c is W[:, c, j]
            h = h[:, self.idx, :].reshape(B, n, -1) @ Wm + b
        return h[..., 0]

    def solve(self, u0: np.ndarray, times, cond: np.ndarray, A=None, omega=None, phi=None, l=None) -> np.ndarray:
        """Cell averages (B, nt, nx) from point values u0 (B, nx) (spectral_solve's arguments)."""
        from ._spectral import spectral_solve

        u0 = np.atleast_2d(np.asarray(u0, dtype=np.float64))
        cond = np.atleast_2d(np.asarray(cond, dtype=np.float64))
        if not np.isfinite(u0).all() or not np.isfinite(cond).all():
            raise NonFiniteInputError("learned spectral solver: the initial condition or the coefficients hold "
                                      "NaN or inf", hint="check the data")
        if u0.shape[-1] != self.nx:
            self.model.check(nx=u0.shape[-1])
        W0, b0 = self.layers[0]
        bias0 = b0 + cond @ W0[:, 1:, :].sum(-1).T  # (B, H0): constant channels see the whole kernel
        B = u0.shape[0]
        hp, n = self.highpass, self.nx
        net = self._net if hp is None else (
            lambda u, b: self._net(np.fft.irfft(np.fft.rfft(u, axis=-1) * hp, n=n, axis=-1), b))
        if self.mirror:
            bias2 = np.concatenate([bias0, bias0])

            def flux(u):
                both = net(np.concatenate([u, -u[:, ::-1]]), bias2)
                return 0.5 * (both[:B] + both[B:, ::-1])
        else:
            def flux(u):
                return net(u, bias0)

        return spectral_solve(u0, times, cond[:, 0], cond[:, 1], cond[:, 2], self.L, A, omega, phi, l,
                              cfl=self.cfl, flux=flux)
