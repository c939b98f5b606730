"""Fast inference of a trained :class:`~compscope.pde.LearnedFluxFV`: the whole scheme compiled with numba.

The torch solver is what training differentiates through; rolling out, it spends its time in the overhead of
many small tensor operations (hundreds of microseconds per RK stage at nx = 25-100). Here the same scheme - the
stencil CNN (tanh, periodic convolutions), the null-space corrections, WENO5-Z, Godunov flux, the mirror
symmetrisation, exact forcing and the adaptive SSP-RK3 of :mod:`._weno` - runs as one compiled loop per
trajectory, with the weights exported once as float64 arrays; batches run in parallel over trajectories
(``prange``), like :func:`compscope.pde.weno_solve_batch`. Agreement with the torch solver: round-off (tested).
The small per-face network (``net="face"``) has its own flux routine (:func:`_fluxes_face`): one pass gathers and
normalises the stencils and computes WENO5-Z's states, then the MLP runs on all faces at once, layer by layer
with the face index innermost (so the compiler vectorises it), on the stencils and, where the equation is
mirror-symmetric, on the mirrored stencils, and the null-space corrections are added face-wise.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ._weno import _godunov_burgers, _stable_dt, _weno5z, flux_divergence, forcing_tables

__all__ = ["FastLearnedFV", "export_weights"]


def export_weights(model) -> dict:
    """The arrays the compiled solver needs from a :class:`~compscope.pde.LearnedFluxFV` (float64, contiguous)."""
    net = model.net
    c = lambda t: np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float64)  # noqa: E731
    heads = np.full(4, -1, dtype=np.int64)  # first output channel of minus, plus, ux, uxx (-1: not learned)
    for j, name in enumerate(("minus", "plus", "ux", "uxx")):
        if name in model.heads:
            heads[j] = model.heads[name].start
    if net is not None and model.kind == "face":
        H = net.first.out_features
        w = {"kind": "face", "W1": c(net.first.weight), "b1": c(net.first.bias), "Wc": c(net.cond.weight),
             "Wh": np.ascontiguousarray(np.stack([c(m.weight) for m in net.hidden]) if len(net.hidden)
                                        else np.zeros((0, H, H))),
             "bh": np.ascontiguousarray(np.stack([c(m.bias) for m in net.hidden]) if len(net.hidden)
                                        else np.zeros((0, H))),
             "Wo": c(net.out.weight), "bo": c(net.out.bias)}
        w.update(Nv=c(model.N_value), Nx=c(model.N_ux), Nxx=c(model.N_uxx), heads=heads, shared=bool(model.shared),
                 relu=net.activation == "relu")
        return w
    if net is None:
        H = 1
        w = {"W1": np.zeros((H, 1 + model.n_params, 6)), "b1": np.zeros(H), "Wh": np.zeros((0, H, H, 1)),
             "bh": np.zeros((0, H)), "Wo": np.zeros((0, H)), "bo": np.zeros(0)}
    else:
        H = net.first.out_channels
        k = net.hidden[0].kernel_size[0] if len(net.hidden) else 1
        w = {"W1": c(net.first.weight), "b1": c(net.first.bias),
             "Wh": np.ascontiguousarray(np.stack([c(m.weight) for m in net.hidden]) if len(net.hidden)
                                        else np.zeros((0, H, H, k))),
             "bh": np.ascontiguousarray(np.stack([c(m.bias) for m in net.hidden]) if len(net.hidden)
                                        else np.zeros((0, H))),
             "Wo": c(net.out.weight[:, :, 0]), "bo": c(net.out.bias)}
    w.update(kind="conv", Nv=c(model.N_value), Nx=c(model.N_ux), Nxx=c(model.N_uxx), heads=heads,
             mirror=bool(model.mirror))
    return w


@njit(cache=True)
def _net(u, cond, W1, b1, Wh, bh, Wo, bo, h, g, z):
    """StencilNet forward for one trajectory: u (n,), cond (P,) -> z (n_out, n); h, g (H, n) scratch."""
    n = u.shape[0]
    H = W1.shape[0]
    for o in range(H):
        cb = b1[o]
        for p in range(cond.shape[0]):
            for k in range(6):
                cb += W1[o, 1 + p, k] * cond[p]
        for i in range(n):
            acc = cb
            for k in range(6):
                acc += W1[o, 0, k] * u[(i - 2 + k + n) % n]
            h[o, i] = math.tanh(acc)
    K = Wh.shape[3]
    half = K // 2
    for layer in range(Wh.shape[0]):
        for o in range(H):
            for i in range(n):
                acc = bh[layer, o]
                for c in range(H):
                    for k in range(K):
                        acc += Wh[layer, o, c, k] * h[c, (i + k - half + n) % n]
                g[o, i] = math.tanh(acc)
        for o in range(H):
            for i in range(n):
                h[o, i] = g[o, i]
    for o in range(Wo.shape[0]):
        for i in range(n):
            acc = bo[o]
            for c in range(H):
                acc += Wo[o, c] * h[c, i]
            z[o, i] = acc


@njit(cache=True)
def _corr(N, z, q0, i, s, reverse):
    """(N z[q0:q0+k, i]) . s, with the stencil s reversed for the right state."""
    out = 0.0
    for j in range(6):
        cj = 0.0
        for q in range(N.shape[1]):
            cj += N[j, q] * z[q0 + q, i]
        out += cj * (s[5 - j] if reverse else s[j])
    return out


@njit(cache=True)
def _fluxes(u, cond, dx, W1, b1, Wh, bh, Wo, bo, Nv, Nx, Nxx, heads, h, g, z, s, flux):
    n = u.shape[0]
    alpha, beta, gamma = cond[0], cond[1], cond[2]
    learned = Wo.shape[0] > 0
    if learned:
        _net(u, cond, W1, b1, Wh, bh, Wo, bo, h, g, z)
    for i in range(n):
        for j in range(6):
            s[j] = u[(i - 2 + j + n) % n]
        im2, im1, c, ip1, ip2, ip3 = s[0], s[1], s[2], s[3], s[4], s[5]
        ul = _weno5z(im2, im1, c, ip1, ip2)
        ur = _weno5z(ip3, ip2, ip1, c, im1)
        ux = (15.0 * (ip1 - c) - (ip2 - im1)) / (12.0 * dx)
        uxx = (-im2 + 7.0 * im1 - 6.0 * c - 6.0 * ip1 + 7.0 * ip2 - ip3) / (8.0 * dx * dx)
        if learned:
            if heads[0] >= 0:
                ul = ul + _corr(Nv, z, heads[0], i, s, False)
                ur = ur + _corr(Nv, z, heads[1], i, s, True)
            if heads[2] >= 0:
                ux = ux + _corr(Nx, z, heads[2], i, s, False) / dx
            if heads[3] >= 0:
                uxx = uxx + _corr(Nxx, z, heads[3], i, s, False) / (dx * dx)
        f = alpha * _godunov_burgers(ul, ur)
        f = f - beta * ux
        flux[i] = f + gamma * uxx


@njit(cache=True)
def _rhs(u, t, cond, dx, mirror, omega, phi, fc, fs, W1, b1, Wh, bh, Wo, bo, Nv, Nx, Nxx, heads, h, g, z, s,
         v, flux, flux2, out):
    n = u.shape[0]
    _fluxes(u, cond, dx, W1, b1, Wh, bh, Wo, bo, Nv, Nx, Nxx, heads, h, g, z, s, flux)
    if mirror:
        for i in range(n):
            v[i] = -u[n - 1 - i]
        _fluxes(v, cond, dx, W1, b1, Wh, bh, Wo, bo, Nv, Nx, Nxx, heads, h, g, z, s, flux2)
        for i in range(n):
            flux[i] = 0.5 * (flux[i] + flux2[(n - 2 - i + n) % n])
    flux_divergence(flux, dx, t, omega, phi, fc, fs, out)


@njit(cache=True)
def _solve_one(u0, times, cond, L, A, omega, phi, l, cfl, mirror, W1, b1, Wh, bh, Wo, bo, Nv, Nx, Nxx, heads,
               out):
    n = u0.shape[0]
    dx = L / n
    fc, fs = forcing_tables(A, l, L, n)
    H = W1.shape[0]
    h = np.empty((H, n))
    g = np.empty((H, n))
    z = np.empty((max(Wo.shape[0], 1), n))
    s = np.empty(6)
    v = np.empty(n)
    flux = np.empty(n)
    flux2 = np.empty(n)
    u = u0.copy()
    u1 = np.empty(n)
    u2 = np.empty(n)
    r = np.empty(n)
    out[0, :] = u
    t = times[0]
    for m in range(1, times.shape[0]):
        while t < times[m] - 1e-12 * max(1.0, abs(times[m])):
            dt = min(_stable_dt(u, cond[0], cond[1], cond[2], dx, cfl), times[m] - t)
            _rhs(u, t, cond, dx, mirror, omega, phi, fc, fs, W1, b1, Wh, bh, Wo, bo, Nv, Nx, Nxx, heads, h, g, z,
                 s, v, flux, flux2, r)
            for i in range(n):
                u1[i] = u[i] + dt * r[i]
            _rhs(u1, t + dt, cond, dx, mirror, omega, phi, fc, fs, W1, b1, Wh, bh, Wo, bo, Nv, Nx, Nxx, heads, h,
                 g, z, s, v, flux, flux2, r)
            for i in range(n):
                u2[i] = 0.75 * u[i] + 0.25 * (u1[i] + dt * r[i])
            _rhs(u2, t + 0.5 * dt, cond, dx, mirror, omega, phi, fc, fs, W1, b1, Wh, bh, Wo, bo, Nv, Nx, Nxx, heads,
                 h, g, z, s, v, flux, flux2, r)
            for i in range(n):
                u[i] = u[i] / 3.0 + 2.0 / 3.0 * (u2[i] + dt * r[i])
            t += dt
            if not np.isfinite(u[0]):
                return -m
        t = times[m]
        out[m, :] = u
    return 0


@njit(cache=True, parallel=True)
def _solve_batch(u0, times, cond, L, A, omega, phi, l, cfl, mirror, W1, b1, Wh, bh, Wo, bo, Nv, Nx, Nxx, heads,
                 out):
    status = np.zeros(u0.shape[0], dtype=np.int64)
    for b in prange(u0.shape[0]):
        status[b] = _solve_one(u0[b], times, cond[b], L, A[b], omega[b], phi[b], l[b], cfl, mirror, W1, b1, Wh,
                               bh, Wo, bo, Nv, Nx, Nxx, heads, out[b])
    return status


# ---- the small per-face network (net="face") ----------------------------------------------------------------
NORM_EPS2 = 1e-6  # NORM_EPS ** 2 of ._learned_fv


@njit(cache=True)
def _layer(W, b, x, out, act, relu):
    """out[o, i] = act(b[o] + sum_c W[o, c] x[c, i]) over all faces i (the face index innermost: SIMD)."""
    n = x.shape[1]
    for o in range(W.shape[0]):
        bo = b[o]
        for i in range(n):
            out[o, i] = bo
        for c in range(W.shape[1]):
            w = W[o, c]
            for i in range(n):
                out[o, i] += w * x[c, i]
        if act:
            if relu:
                for i in range(n):
                    out[o, i] = max(out[o, i], 0.0)
            else:
                for i in range(n):
                    out[o, i] = math.tanh(out[o, i])


@njit(cache=True)
def _mlp_all(X, cb, W1, Wh, bh, Wo, bo, relu, h, g, z):
    """FaceNet on the normalised stencils of all faces X (6, n) -> z (n_out, n); h, g (H, n) scratch."""
    _layer(W1, cb, X, h, True, relu)
    for layer in range(Wh.shape[0]):
        _layer(Wh[layer], bh[layer], h, g, True, relu)
        for o in range(h.shape[0]):
            for i in range(h.shape[1]):
                h[o, i] = g[o, i]
    _layer(Wo, bo, h, z, False, relu)


@njit(cache=True)
def _add_corr(N, z, q0, S, reverse, scale, out):
    """out[i] += scale * (N z[q0:q0+k, i]) . S[:, i] (the stencil reversed for reverse), all faces i."""
    n = S.shape[1]
    for j in range(6):
        src = 5 - j if reverse else j
        for q in range(N.shape[1]):
            w = N[j, q] * scale
            for i in range(n):
                out[i] += w * z[q0 + q, i] * S[src, i]


@njit(cache=True)
def _fluxes_face(u, cond, dx, shared, relu, cb, W1, Wh, bh, Wo, bo, Nv, Nx, Nxx, heads, h, g, z, zr, S, X, Xr,
                 ul, ur, ux, uxx, flux):
    """Face fluxes of the face-net scheme: WENO5-Z/base stencils per face, the network over all faces at once."""
    n = u.shape[0]
    alpha, beta, gamma = cond[0], cond[1], cond[2]
    for i in range(n):
        m = 0.0
        for j in range(6):
            v = u[(i - 2 + j + n) % n]
            S[j, i] = v
            m += v
        m /= 6.0
        var = 0.0
        for j in range(6):
            var += (S[j, i] - m) * (S[j, i] - m)
        inv = 1.0 / math.sqrt(var / 6.0 + NORM_EPS2)
        for j in range(6):
            X[j, i] = (S[j, i] - m) * inv
        im2, im1, c, ip1, ip2, ip3 = S[0, i], S[1, i], S[2, i], S[3, i], S[4, i], S[5, i]
        ul[i] = _weno5z(im2, im1, c, ip1, ip2)
        ur[i] = _weno5z(ip3, ip2, ip1, c, im1)
        ux[i] = (15.0 * (ip1 - c) - (ip2 - im1)) / (12.0 * dx)
        uxx[i] = (-im2 + 7.0 * im1 - 6.0 * c - 6.0 * ip1 + 7.0 * ip2 - ip3) / (8.0 * dx * dx)
    if Wo.shape[0] > 0:
        _mlp_all(X, cb, W1, Wh, bh, Wo, bo, relu, h, g, z)
        if shared:
            for j in range(6):
                for i in range(n):
                    Xr[j, i] = -X[5 - j, i]
            _mlp_all(Xr, cb, W1, Wh, bh, Wo, bo, relu, h, g, zr)
            if heads[0] >= 0:
                _add_corr(Nv, z, heads[0], S, False, 1.0, ul)
                _add_corr(Nv, zr, heads[0], S, True, 1.0, ur)
            if heads[2] >= 0:
                _add_corr(Nx, z, heads[2], S, False, 0.5 / dx, ux)
                _add_corr(Nx, zr, heads[2], S, True, -0.5 / dx, ux)
            if heads[3] >= 0:
                _add_corr(Nxx, z, heads[3], S, False, 0.5 / (dx * dx), uxx)
                _add_corr(Nxx, zr, heads[3], S, True, 0.5 / (dx * dx), uxx)
        else:
            if heads[0] >= 0:
                _add_corr(Nv, z, heads[0], S, False, 1.0, ul)
                _add_corr(Nv, z, heads[1], S, True, 1.0, ur)
            if heads[2] >= 0:
                _add_corr(Nx, z, heads[2], S, False, 1.0 / dx, ux)
            if heads[3] >= 0:
                _add_corr(Nxx, z, heads[3], S, False, 1.0 / (dx * dx), uxx)
    for i in range(n):
        f = alpha * _godunov_burgers(ul[i], ur[i])
        f = f - beta * ux[i]
        flux[i] = f + gamma * uxx[i]


@njit(cache=True)
def _solve_one_face(u0, times, cond, L, A, omega, phi, l, cfl, shared, relu, W1, b1, Wc, Wh, bh, Wo, bo, Nv, Nx,
                    Nxx, heads, out):
    n = u0.shape[0]
    dx = L / n
    fc, fs = forcing_tables(A, l, L, n)
    H = W1.shape[0]
    cb = np.empty(H)  # the first layer's bias shifted by this trajectory's coefficients
    for o in range(H):
        cb[o] = b1[o]
        for p in range(cond.shape[0]):
            cb[o] += Wc[o, p] * cond[p]
    h = np.empty((H, n))
    g = np.empty((H, n))
    z = np.empty((max(Wo.shape[0], 1), n))
    zr = np.empty((max(Wo.shape[0], 1), n))
    S = np.empty((6, n))
    X = np.empty((6, n))
    Xr = np.empty((6, n))
    ul = np.empty(n)
    ur = np.empty(n)
    ux = np.empty(n)
    uxx = np.empty(n)
    flux = np.empty(n)
    u = u0.copy()
    u1 = np.empty(n)
    u2 = np.empty(n)
    r = np.empty(n)
    out[0, :] = u
    t = times[0]
    for m in range(1, times.shape[0]):
        while t < times[m] - 1e-12 * max(1.0, abs(times[m])):
            dt = min(_stable_dt(u, cond[0], cond[1], cond[2], dx, cfl), times[m] - t)
            _fluxes_face(u, cond, dx, shared, relu, cb, W1, Wh, bh, Wo, bo, Nv, Nx, Nxx, heads, h, g, z, zr, S, X,
                         Xr, ul, ur, ux, uxx, flux)
            flux_divergence(flux, dx, t, omega, phi, fc, fs, r)
            for i in range(n):
                u1[i] = u[i] + dt * r[i]
            _fluxes_face(u1, cond, dx, shared, relu, cb, W1, Wh, bh, Wo, bo, Nv, Nx, Nxx, heads, h, g, z, zr, S, X,
                         Xr, ul, ur, ux, uxx, flux)
            flux_divergence(flux, dx, t + dt, omega, phi, fc, fs, r)
            for i in range(n):
                u2[i] = 0.75 * u[i] + 0.25 * (u1[i] + dt * r[i])
            _fluxes_face(u2, cond, dx, shared, relu, cb, W1, Wh, bh, Wo, bo, Nv, Nx, Nxx, heads, h, g, z, zr, S, X,
                         Xr, ul, ur, ux, uxx, flux)
            flux_divergence(flux, dx, t + 0.5 * dt, omega, phi, fc, fs, r)
            for i in range(n):
                u[i] = u[i] / 3.0 + 2.0 / 3.0 * (u2[i] + dt * r[i])
            t += dt
            if not np.isfinite(u[0]):
                return -m
        t = times[m]
        out[m, :] = u
    return 0


@njit(cache=True, parallel=True)
def _solve_batch_face(u0, times, cond, L, A, omega, phi, l, cfl, shared, relu, W1, b1, Wc, Wh, bh, Wo, bo, Nv, Nx, Nxx,
                      heads, out):
    status = np.zeros(u0.shape[0], dtype=np.int64)
    for b in prange(u0.shape[0]):
        status[b] = _solve_one_face(u0[b], times, cond[b], L, A[b], omega[b], phi[b], l[b], cfl, shared, relu, W1, b1,
                                    Wc, Wh, bh, Wo, bo, Nv, Nx, Nxx, heads, out[b])
    return status


class FastLearnedFV:
    """Compiled rollouts of a :class:`~compscope.pde.LearnedFluxFV` (weights copied at construction).

    ``solve(u0 (B, nx), times, cond (B, 3), A, omega, phi, l (B, n_waves))`` -> (B, nt, nx); ``parallel=False``
    runs the trajectories one after another in the calling thread (the single-trajectory timing).
    """

    def __init__(self, model) -> None:
        self.w = export_weights(model)
        self.L, self.nx, self.cfl = float(model.L), int(model.nx), float(model.cfl)
        self.check = model.check

    def _args(self):
        w = self.w
        if w["kind"] == "face":
            return (self.cfl, w["shared"], w["relu"], w["W1"], w["b1"], w["Wc"], w["Wh"], w["bh"], w["Wo"],
                    w["bo"], w["Nv"], w["Nx"], w["Nxx"], w["heads"])
        return (self.cfl, w["mirror"], w["W1"], w["b1"], w["Wh"], w["bh"], w["Wo"], w["bo"], w["Nv"], w["Nx"],
                w["Nxx"], w["heads"])

    def solve(self, u0, times, cond, A=None, omega=None, phi=None, l=None, parallel: bool = True) -> np.ndarray:
        from ._learned_fv import NonFiniteInputError
        from ._metrics import RolloutDivergedError

        u0 = np.ascontiguousarray(np.atleast_2d(u0), dtype=np.float64)
        B = u0.shape[0]
        if u0.shape[1] != self.nx:
            self.check(None, u0.shape[1])
        if not np.isfinite(u0).all():
            raise NonFiniteInputError("learned finite volumes: the initial condition holds NaN/inf",
                                      hint="the solver needs finite initial cell averages")
        cond = np.ascontiguousarray(np.asarray(cond, dtype=np.float64).reshape(B, -1))
        if A is None:
            A = omega = phi = l = np.zeros((B, 0))
        f = [np.ascontiguousarray(np.asarray(v, dtype=np.float64).reshape(B, -1)) for v in (A, omega, phi, l)]
        times = np.ascontiguousarray(times, dtype=np.float64)
        out = np.empty((B, times.shape[0], self.nx))
        face = self.w["kind"] == "face"
        batch, one = (_solve_batch_face, _solve_one_face) if face else (_solve_batch, _solve_one)
        if parallel:
            status = batch(u0, times, cond, self.L, *f, *self._args(), out)
        else:
            status = np.array([one(u0[b], times, cond[b], self.L, *(v[b] for v in f), *self._args(), out[b])
                               for b in range(B)])
        if (status < 0).any():
            b = int(np.argmax(status < 0))
            raise RolloutDivergedError(step=int(-status[b]), trajectory=b)
        return out
