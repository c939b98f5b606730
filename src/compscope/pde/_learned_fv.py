"""Learned-flux finite volumes for E1-E3 (Bar-Sinai et al., PNAS 2019): WENO5 + SSP-RK3 with learned stencils.

The time stepper is :mod:`._weno`'s, written in torch: SSP-RK3 on the flux form
``du_i/dt = -(F_{i+1/2} - F_{i-1/2}) / dx + <delta>_i`` with the exact cell averages of the forcing and the same
adaptive step (advective, diffusive and dispersive limits, landing on the output times), per trajectory. The face
flux is ``F = alpha G(u^-, u^+) - beta u_x + gamma u_xx`` (G the exact Godunov flux of u^2/2). Every face quantity
is a linear combination of the six cell averages ``s = (u_{i-2}, ..., u_{i+3})`` around face ``i + 1/2``:

    q = (c_base(s) + N z(s)) . s / dx^d,

where ``c_base`` is the classical coefficient vector (WENO5-Z's nonlinear one for u^- and, on the reversed
stencil, u^+; the fourth-order stencils of :mod:`._weno` for u_x and u_xx), ``N`` (6, 5 - order) an orthonormal
basis of the null space of the polynomial-consistency constraints (Bar-Sinai's constraint layer: the moments of
``x^p``, ``p <= order``, over the six cells map to the exact face value / derivative) and ``z`` the output of a
small 1D convolutional network of the local solution and the PDE coefficients. Whatever the weights, a face
quantity is exact for polynomials up to ``order`` (WENO5's weights keep degree 2, so ``order <= 2`` for the face
values; the derivatives u_x and u_xx keep degree ``max(order, d + 1)``, at least first-order accurate); the
last layer starts at zero, so an untrained model *is* the WENO5 scheme (to round-off of the same
operations, tested against the numba solver). The flux form makes mass conservation exact for any weights; on
reflection-symmetric settings (E1, E2: ``u(t, x) -> -u(t, L - x)``) the flux is symmetrised,
``F = (F(u) + R F(M u)) / 2``, so the learned scheme is mirror-equivariant by construction.

Two networks (``net=``): ``"conv"`` (:class:`StencilNet`, a periodic 1D CNN whose receptive field grows with its
layers; ~14k multiply-adds per face at hidden 32, 3 layers, doubled by the symmetrisation) and ``"face"``
(:class:`FaceNet`, the small one: a per-face MLP of the six cell averages *normalised per stencil*,
``(s - mean s) / std s``, plus the PDE coefficients; a few hundred multiply-adds per face). Normalised inputs make
the coefficients invariant under ``u -> a u + b`` (as WENO's weights are), and the mirror needs no second flux
evaluation: the right state at a face is the left state of the mirrored stencil ``-R s``, computed by the same
network, and the derivative corrections are (anti)symmetrised between the two evaluations, so the scheme is
exactly mirror-equivariant at the price of two MLP evaluations per face and no second WENO/Godunov pass.

Why torch (not JAX): the model trains with the project's shared trainer (:func:`compscope.train.fit`, Lightning:
resumable runs, time budget, checkpoints, metrics) and autograd through the unrolled SSP-RK3 steps is all the
training needs; the fixed WENO/Godunov parts run in float64 on CPU, where the scheme is a few small tensor ops.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from compscope.errors import CompscopeError

from ._equations import ResolutionError, get_equation
from ._weno import forcing_tables, weno5z_face

__all__ = ["STENCIL", "consistency_basis", "StencilNet", "FaceNet", "LearnedFluxFV", "Forcing",
           "NonFiniteInputError", "mirror_faces", "normalised_stencils", "NORM_EPS"]

STENCIL = 6  # cells i-2 .. i+3 around face i + 1/2
_OFFSETS = np.arange(-2, 4)  # cell offsets relative to cell i; cell i + o spans [o - 1, o] (units of dx), face at 0
# the classical derivative stencils of _weno.weno_rhs as coefficient vectors on the 6 cells (dx = 1; tests)
_UX_BASE = np.array([0.0, 1.0, -15.0, 15.0, -1.0, 0.0]) / 12.0
_UXX_BASE = np.array([-1.0, 7.0, -6.0, -6.0, 7.0, -1.0]) / 8.0


class NonFiniteInputError(CompscopeError, ValueError):
    """An initial condition (or coefficient) given to the learned solver holds NaN or inf."""


def consistency_basis(derivative: int, order: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The polynomial-consistency constraints of a face quantity on the 6-cell stencil (units dx = 1).

    Coefficients ``c`` (6,) reproduce the ``derivative``-th derivative at the face exactly for every polynomial of
    degree ``<= order`` when ``A c = b``, with ``A[p, j]`` the average of ``x^p`` over cell j and
    ``b[p] = d^derivative x^p / dx^derivative`` at 0.

    Returns:
        (A (order + 1, 6), b (order + 1,), N (6, 5 - order)): N an orthonormal basis of the null space of A.
    """
    if not 0 <= order <= STENCIL - 2:
        raise ValueError(f"consistency order {order}: must be in 0..{STENCIL - 2} (a 6-cell stencil keeps "
                         "at least one free coefficient)")
    if derivative > order:
        raise ValueError(f"consistency order {order} < derivative {derivative}: the constraint cannot pin the "
                         "derivative")
    p = np.arange(order + 1)[:, None]
    a, b_ = _OFFSETS[None, :] - 1.0, _OFFSETS[None, :].astype(float)
    A = (b_ ** (p + 1) - a ** (p + 1)) / (p + 1)  # (order + 1, 6) cell averages of x^p
    b = np.zeros(order + 1)
    b[derivative] = math.factorial(derivative)
    _, s, vt = np.linalg.svd(A)
    N = vt[len(s):].T  # (6, 5 - order)
    return A, b, N


def mirror_faces(f: torch.Tensor) -> torch.Tensor:
    """Face values (..., n) of a mirrored field (cells reversed) back on the original faces: face i + 1/2 of
    ``u`` is face ``n - 2 - i`` + 1/2 of ``-u[::-1]``."""
    return torch.roll(f.flip(-1), -1, dims=-1)


def _godunov_burgers(ul, ur):
    """Exact Godunov flux of u^2/2 (as _weno._godunov_burgers)."""
    zero = torch.zeros_like(ul)
    rare = torch.where(ul > 0.0, 0.5 * ul * ul, torch.where(ur < 0.0, 0.5 * ur * ur, zero))
    return torch.where(ul <= ur, rare, 0.5 * torch.maximum(ul * ul, ur * ur))


class StencilNet(nn.Module):
    """Local, translation-equivariant 1D CNN: cell averages (B, n) + coefficients (B, P) -> (B, n_out, n) per face.

    The first layer sees exactly the 6-cell stencil of each face (kernel 6 on the periodically padded field), the
    next ``layers - 1`` convolutions (kernel ``kernel``, periodic) widen the receptive field by ``kernel - 1``
    cells each. The output layer starts at zero (zero corrections: the base scheme).
    """

    def __init__(self, n_params: int, n_out: int, hidden: int = 16, layers: int = 2, kernel: int = 3) -> None:
        super().__init__()
        if layers < 1 or hidden < 1 or kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"StencilNet: layers={layers}, hidden={hidden} must be >= 1 and kernel={kernel} odd")
        self.first = nn.Conv1d(1 + n_params, hidden, STENCIL)
        self.hidden = nn.ModuleList(nn.Conv1d(hidden, hidden, kernel, padding=kernel // 2, padding_mode="circular")
                                    for _ in range(layers - 1))
        self.out = nn.Conv1d(hidden, n_out, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, u: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        B, n = u.shape
        pad = torch.cat([u[:, -2:], u, u[:, :3]], dim=-1)  # (B, n + 5): pad[j .. j + 5] = u[j - 2 .. j + 3]
        x = torch.cat([pad[:, None], cond[:, :, None].expand(B, cond.shape[1], n + 5)], dim=1)
        h = torch.tanh(self.first(x))  # (B, H, n): one column per face
        for conv in self.hidden:
            h = torch.tanh(conv(h))
        return self.out(h)


NORM_EPS = 1e-3  # floor of the per-stencil standard deviation (units of u): flat stencils give ~zero inputs


def normalised_stencils(S: torch.Tensor) -> torch.Tensor:
    """Stencils S (..., 6) -> ``(S - mean) / sqrt(var + NORM_EPS^2)`` per stencil (the :class:`FaceNet` input)."""
    d = S - S.mean(-1, keepdim=True)
    return d / torch.sqrt((d * d).mean(-1, keepdim=True) + NORM_EPS * NORM_EPS)


class FaceNet(nn.Module):
    """Small per-face MLP shared by all faces: normalised stencil (B, n, 6) + coefficients (B, P) -> (B, n, n_out).

    ``layers`` layers of width ``hidden`` with ``activation`` (``"relu"``, the cheap one at inference, or
    ``"tanh"``; the first sees the 6 normalised cell averages, the coefficients enter as a per-trajectory shift of
    its bias, free per face), then a linear output layer that starts at zero.
    Multiply-adds per evaluation: ``6 H + (layers - 1) H^2 + H n_out`` (:meth:`macs`).
    """

    ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu}

    def __init__(self, n_params: int, n_out: int, hidden: int = 16, layers: int = 2,
                 activation: str = "relu") -> None:
        super().__init__()
        if layers < 1 or hidden < 1:
            raise ValueError(f"FaceNet: layers={layers} and hidden={hidden} must be >= 1")
        if activation not in self.ACTIVATIONS:
            raise ValueError(f"FaceNet: activation={activation!r} is not one of {sorted(self.ACTIVATIONS)}")
        self.activation = activation
        self.act = self.ACTIVATIONS[activation]
        self.first = nn.Linear(STENCIL, hidden)
        self.cond = nn.Linear(n_params, hidden, bias=False)
        self.hidden = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers - 1))
        self.out = nn.Linear(hidden, n_out)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def macs(self) -> int:
        H = self.first.out_features
        return STENCIL * H + len(self.hidden) * H * H + H * self.out.out_features

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.act(self.first(x) + self.cond(cond)[:, None, :])
        for lin in self.hidden:
            h = self.act(lin(h))
        return self.out(h)


class Forcing:
    """Exact cell averages of the forcing sines of a batch on a grid: ``sum_j sin(w_j t + phi_j) fc_j +
    cos(w_j t + phi_j) fs_j`` (the tables of :func:`._weno.forcing_tables`). ``None`` params: no forcing."""

    def __init__(self, params: dict | None, L: float, nx: int, batch: int, dtype=torch.float64, device=None):
        self.empty = params is None or np.asarray(params["A"]).size == 0
        if self.empty:
            return
        A, om, ph, l_ = (np.asarray(params[k], dtype=np.float64).reshape(batch, -1) for k in ("A", "omega", "phi", "l"))
        tabs = [forcing_tables(A[b], l_[b], float(L), nx) for b in range(batch)]
        self.fc = torch.tensor(np.stack([t[0] for t in tabs]), dtype=dtype, device=device)  # (B, m, n)
        self.fs = torch.tensor(np.stack([t[1] for t in tabs]), dtype=dtype, device=device)
        self.omega = torch.tensor(om, dtype=dtype, device=device)  # (B, m)
        self.phi = torch.tensor(ph, dtype=dtype, device=device)

    def add_to(self, out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``out`` (B, n) plus the forcing at times t (B,), wave by wave (the numba solver's order of sums)."""
        if self.empty:
            return out
        arg = self.omega * t[:, None] + self.phi  # (B, m)
        st, ct = torch.sin(arg), torch.cos(arg)
        for j in range(self.fc.shape[1]):
            out = out + (st[:, j, None] * self.fc[:, j] + ct[:, j, None] * self.fs[:, j])
        return out


class LearnedFluxFV(nn.Module):
    """The learned-flux finite-volume solver of one equation (E1-E3) at one resolution.

    Args:
        equation: ``E1``, ``E2``, ``E3`` or their ``-authors`` variants (periodic combined equation).
        nx: cells (at least the 6-cell stencil).
        net: ``"conv"`` (:class:`StencilNet`) or ``"face"`` (:class:`FaceNet`, the small per-face MLP of the
            normalised stencil).
        hidden, layers, kernel: the network (``kernel``: ``"conv"`` only).
        activation: of the face net (``"relu"`` or ``"tanh"``; the conv net uses tanh).
        order: polynomial consistency of every learned face quantity (0..2; Bar-Sinai use 1).
        mirror: symmetrise the flux under ``u -> -u(L - x)`` (default: where the equation has the symmetry;
            refused where it has not).
        learn_values, learn_viscous, learn_dispersive: which face quantities get learned corrections (default:
            the values always, u_x where beta can be nonzero, u_xx where gamma can).
        cfl: safety factor of the step (as :func:`compscope.pde.weno_solve`).
    """

    def __init__(self, equation: str, nx: int, hidden: int = 16, layers: int = 2, kernel: int = 3, order: int = 1,
                 mirror: bool | None = None, learn_values: bool = True, learn_viscous: bool | None = None,
                 learn_dispersive: bool | None = None, cfl: float = 0.4, net: str = "conv",
                 activation: str = "relu") -> None:
        super().__init__()
        eq = get_equation(equation)
        if eq.family != "combined":
            raise CompscopeError(f"learned finite volumes: {eq.name} is not a periodic combined equation",
                                 hint="use E1, E2, E3 or their -authors variants")
        if int(nx) < STENCIL:
            raise ResolutionError(f"learned finite volumes: nx={nx} is coarser than the {STENCIL}-cell stencil",
                                  hint=f"use nx >= {STENCIL} (the benchmark uses 25-100)")
        if not 0 <= order <= 2:
            raise CompscopeError(f"learned finite volumes: order={order} must be 0, 1 or 2",
                                 hint="WENO5's nonlinear weights are exact for quadratics only: order <= 2")
        if net not in ("conv", "face"):
            raise CompscopeError(f"learned finite volumes: net={net!r} is not a network of this solver",
                                 hint="use net='face' (small per-face MLP) or net='conv' (stencil CNN)")
        if net == "face" and activation not in FaceNet.ACTIVATIONS:
            raise CompscopeError(f"learned finite volumes: activation={activation!r} is not available",
                                 hint=f"use one of {sorted(FaceNet.ACTIVATIONS)} (relu is the cheap one)")
        symmetric = bool(eq.reflection_symmetric)
        if mirror and not symmetric:
            raise CompscopeError(f"learned finite volumes: {eq.name} has no mirror symmetry u -> -u(L - x)",
                                 hint="the dispersion gamma u_xxx changes sign under it; leave mirror unset")
        self.equation, self.nx, self.L, self.cfl = eq.name, int(nx), float(eq.L), float(cfl)
        self.dx = self.L / self.nx
        self.mirror = symmetric if mirror is None else bool(mirror)
        self.n_params = len(eq.param_names)
        learn_viscous = eq.beta[1] > 0 if learn_viscous is None else bool(learn_viscous)
        learn_dispersive = eq.gamma[1] > 0 if learn_dispersive is None else bool(learn_dispersive)
        self.register_buffer("N_value", torch.tensor(consistency_basis(0, order)[2]))
        # a derivative d keeps exactness up to degree max(order, d + 1): at least first-order accurate
        self.register_buffer("N_ux", torch.tensor(consistency_basis(1, max(order, 2))[2]))
        self.register_buffer("N_uxx", torch.tensor(consistency_basis(2, max(order, 3))[2]))
        # output channels of each learned face quantity: its null-space width
        width = {"minus": STENCIL - 1 - order, "plus": STENCIL - 1 - order, "ux": STENCIL - 1 - max(order, 2),
                 "uxx": STENCIL - 1 - max(order, 3)}
        self.kind = net
        # the face net on a mirror-symmetric setting: one evaluation on s, one on -R s; "minus" serves both states
        self.shared = net == "face" and self.mirror
        self.heads: dict[str, slice] = {}
        start = 0
        for name, on in (("minus", learn_values), ("plus", learn_values and not self.shared),
                         ("ux", learn_viscous), ("uxx", learn_dispersive)):
            if on:
                self.heads[name] = slice(start, start + width[name])
                start += width[name]
        if not start:
            self.net = None
        elif net == "face":
            self.net = FaceNet(self.n_params, start, hidden, layers, activation)
        else:
            self.net = StencilNet(self.n_params, start, hidden, layers, kernel)
        self.config = {"equation": self.equation, "nx": self.nx, "net": net, "activation": activation,
                       "hidden": hidden, "layers": layers,
                       "kernel": kernel, "order": order, "mirror": self.mirror, "learn_values": learn_values,
                       "learn_viscous": learn_viscous, "learn_dispersive": learn_dispersive, "cfl": cfl}
        self.double()

    # ---- checks ---------------------------------------------------------------------------------------------
    def check(self, equation: str | None = None, nx: int | None = None) -> None:
        """Raise :class:`~compscope.pde.EquationMismatchError` when asked to run on another equation or grid."""
        from ._evaluate import check_trained_for

        check_trained_for(self, "learned finite-volume", "train-fv", equation, nx)

    def macs_per_face(self) -> int:
        """Multiply-adds of the network and the null-space corrections per face and right-hand side (the
        WENO5-Z/Godunov part, common with the classical solver, not counted)."""
        if self.net is None:
            return 0
        corr = sum(STENCIL * (s.stop - s.start) for s in self.heads.values())
        if self.kind == "face":
            evals = 2 if self.shared else 1
            return evals * (self.net.macs() + corr) + 3 * STENCIL  # + the normalisation
        net = self.net
        H = net.first.out_channels
        K = net.hidden[0].kernel_size[0] if len(net.hidden) else 1
        macs = STENCIL * H + len(net.hidden) * H * H * K + H * net.out.out_channels + corr
        return macs * (2 if self.mirror else 1)

    # ---- spatial operator -----------------------------------------------------------------------------------
    def _face_net_quantities(self, S, cond, ul, ur, ux, uxx):
        """The :class:`FaceNet` corrections (module docstring): on mirror-symmetric settings the right state is
        the left state of the mirrored stencil, u_x antisymmetrised and u_xx symmetrised between s and -R s."""
        dx, h = self.dx, self.heads
        x = normalised_stencils(S)
        z = self.net(x, cond)  # (B, n, n_out)
        Sr = S.flip(-1)

        def corr(zz, name, N, stencil):
            return ((zz[..., h[name]] @ N.T) * stencil).sum(-1)

        if not self.shared:
            if "minus" in h:
                ul = ul + corr(z, "minus", self.N_value, S)
                ur = ur + corr(z, "plus", self.N_value, Sr)
            if "ux" in h:
                ux = ux + corr(z, "ux", self.N_ux, S) / dx
            if "uxx" in h:
                uxx = uxx + corr(z, "uxx", self.N_uxx, S) / (dx * dx)
            return {"minus": ul, "plus": ur, "ux": ux, "uxx": uxx}
        zr = self.net(-x.flip(-1), cond)  # the mirrored stencil -R s
        if "minus" in h:
            ul = ul + corr(z, "minus", self.N_value, S)
            ur = ur + corr(zr, "minus", self.N_value, Sr)
        if "ux" in h:
            ux = ux + 0.5 * (corr(z, "ux", self.N_ux, S) - corr(zr, "ux", self.N_ux, Sr)) / dx
        if "uxx" in h:
            uxx = uxx + 0.5 * (corr(z, "uxx", self.N_uxx, S) + corr(zr, "uxx", self.N_uxx, Sr)) / (dx * dx)
        return {"minus": ul, "plus": ur, "ux": ux, "uxx": uxx}

    def face_quantities(self, u: torch.Tensor, cond: torch.Tensor) -> dict[str, torch.Tensor]:
        """The face states u^-, u^+ and derivatives u_x, u_xx at the faces i + 1/2, each (B, n), from the cell
        averages u (B, n) and coefficients cond (B, 3): base stencils plus the network's null-space corrections."""
        dx = self.dx
        pad = torch.cat([u[:, -2:], u, u[:, :3]], dim=-1)
        S = pad.unfold(-1, STENCIL, 1)  # (B, n, 6): u_{i-2} .. u_{i+3} around face i + 1/2
        im2, im1, c, ip1, ip2, ip3 = S.unbind(-1)
        h = self.heads
        ul = weno5z_face(im2, im1, c, ip1, ip2)
        ur = weno5z_face(ip3, ip2, ip1, c, im1)  # on the reversed stencil
        ux = (15.0 * (ip1 - c) - (ip2 - im1)) / (12.0 * dx)  # the base stencils, as _weno.weno_rhs
        uxx = (-im2 + 7.0 * im1 - 6.0 * c - 6.0 * ip1 + 7.0 * ip2 - ip3) / (8.0 * dx * dx)
        if self.net is not None and self.kind == "face":
            return self._face_net_quantities(S, cond, ul, ur, ux, uxx)
        z = self.net(u, cond).transpose(1, 2) if self.net is not None else None  # (B, n, n_out)
        if z is not None:  # corrections in the null space of the consistency constraints: c = c_base + N z
            if "minus" in h:
                ul = ul + ((z[..., h["minus"]] @ self.N_value.T) * S).sum(-1)
                ur = ur + ((z[..., h["plus"]] @ self.N_value.T) * S.flip(-1)).sum(-1)
            if "ux" in h:
                ux = ux + ((z[..., h["ux"]] @ self.N_ux.T) * S).sum(-1) / dx
            if "uxx" in h:
                uxx = uxx + ((z[..., h["uxx"]] @ self.N_uxx.T) * S).sum(-1) / (dx * dx)
        return {"minus": ul, "plus": ur, "ux": ux, "uxx": uxx}

    def _faces(self, u: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Face fluxes F_{i+1/2} (B, n) of the cell averages u (B, n), without symmetrisation."""
        q = self.face_quantities(u, cond)
        alpha, beta, gamma = (cond[:, j, None] for j in range(3))
        f = alpha * _godunov_burgers(q["minus"], q["plus"])
        f = f - beta * q["ux"]
        return f + gamma * q["uxx"]

    def fluxes(self, u: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Face fluxes (B, n), symmetrised under the mirror where the equation has it (the face net is
        equivariant by construction)."""
        if not self.mirror or self.kind == "face":
            return self._faces(u, cond)
        both = self._faces(torch.cat([u, -u.flip(-1)]), torch.cat([cond, cond]))
        f, g = both.chunk(2)
        return 0.5 * (f + mirror_faces(g))

    def rhs(self, u: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, forcing: Forcing | None = None):
        """du/dt (B, n) of the cell averages at times t (B,)."""
        f = self.fluxes(u, cond)
        out = -(f - torch.roll(f, 1, dims=-1)) / self.dx
        return out if forcing is None else forcing.add_to(out, t)

    def stable_dt(self, u: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """The step of :func:`._weno._stable_dt` per trajectory (B,), from the detached state."""
        umax = u.detach().abs().amax(-1)
        alpha, beta, gamma = cond[:, 0].abs(), cond[:, 1], cond[:, 2]
        dx = self.dx
        rate = alpha * umax / dx + 5.4 * beta / (2.5 * dx * dx) + 4.61 * gamma / (1.7 * dx ** 3)
        return self.cfl / torch.clamp(rate, min=1e-12)

    def advance(self, u, t, t_end, cond, forcing=None, dt_max: float = math.inf):
        """SSP-RK3 from times t (B,) to t_end (a float or (B,)) with the WENO5 solver's adaptive step, per
        trajectory (a trajectory that has arrived waits, unchanged, for the others)."""
        t_end = torch.as_tensor(t_end, dtype=t.dtype).expand_as(t)
        tol = 1e-12 * torch.clamp(t_end.abs(), min=1.0)
        active = t < t_end - tol
        while bool(active.any()):
            dt = torch.clamp(torch.minimum(self.stable_dt(u, cond), t_end - t), max=dt_max)
            dt = torch.where(active, dt, torch.zeros_like(dt))
            d = dt[:, None]
            u1 = u + d * self.rhs(u, t, cond, forcing)
            u2 = 0.75 * u + 0.25 * (u1 + d * self.rhs(u1, t + dt, cond, forcing))
            u3 = u / 3.0 + 2.0 / 3.0 * (u2 + d * self.rhs(u2, t + 0.5 * dt, cond, forcing))
            u = torch.where(active[:, None], u3, u)
            t = torch.where(active, t + dt, t)
            active = t < t_end - tol
        return u

    def solve(self, u0, times, cond, forcing: Forcing | dict | None = None, dt_max: float = math.inf,
              check_finite: bool = True) -> torch.Tensor:
        """Trajectories (B, nt, n) from the cell averages u0 (B, n) at ``times[0]``, stored at ``times`` (nt,).

        ``cond`` (B, 3) are (alpha, beta, gamma); ``forcing`` a :class:`Forcing` or the draws' dict (A, omega, phi,
        l, each (B, n_waves)). Raises :class:`NonFiniteInputError` for a non-finite u0 or cond and
        :class:`~compscope.pde.RolloutDivergedError` at the first non-finite output step.
        """
        from ._metrics import RolloutDivergedError

        u = torch.as_tensor(u0, dtype=torch.float64)
        u = u[None] if u.ndim == 1 else u
        cond = torch.as_tensor(cond, dtype=torch.float64).reshape(u.shape[0], -1)
        if u.shape[-1] != self.nx:
            self.check(self.equation, u.shape[-1])
        if not bool(torch.isfinite(u).all()):
            b = int(torch.nonzero(~torch.isfinite(u).all(-1))[0])
            raise NonFiniteInputError(f"learned finite volumes: the initial condition of trajectory {b} holds "
                                      "NaN/inf", hint="the solver needs finite initial cell averages")
        if not bool(torch.isfinite(cond).all()):
            raise NonFiniteInputError("learned finite volumes: the PDE coefficients hold NaN/inf",
                                      hint="pass finite (alpha, beta, gamma) per trajectory")
        if not isinstance(forcing, Forcing):
            forcing = Forcing(forcing, self.L, self.nx, u.shape[0])
        times = [float(v) for v in np.asarray(times, dtype=np.float64)]
        out = [u]
        t = torch.full((u.shape[0],), times[0], dtype=torch.float64)
        for m in range(1, len(times)):
            u = self.advance(u, t, times[m], cond, forcing, dt_max)
            t = torch.full_like(t, times[m])
            if check_finite and not bool(torch.isfinite(u).all()):
                b = int(torch.nonzero(~torch.isfinite(u).all(-1))[0])
                raise RolloutDivergedError(step=m, trajectory=b)
            out.append(u)
        return torch.stack(out, 1)
