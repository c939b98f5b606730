"""Fused edge geometry for CPU inference: edge lengths, spherical harmonics and cutoff envelope in one pass.

The force field's edge features are a chain of small per-edge torch ops: gather the two positions, add the
periodic offset (``cell_shifts @ cell``), norm, normalise, the spherical-harmonic polynomials (e3nn's, ``l <= 2``,
``normalization="component"``) and the polynomial cutoff envelope; the backward of each op is another pass over
all edges (about 40 passes over arrays of ~50 edges per atom, the index gathers' backward an atomic scatter).
:func:`edge_geometry` computes the same quantities in one numba loop over edges and its backward scatters the
position (and cell) gradients in one more, recomputing the vectors instead of storing them.

Same function as the torch ops (the tests compare values and gradients in float64 and float32); one cell shared by
all edges (a single structure: the MD box, a block of it), first derivatives only (forces, stress).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
import torch
from torch.autograd.function import once_differentiable

from ._fused import _FASTMATH, _n_threads, _private, _reduce, _run

__all__ = ["edge_geometry", "edges_within", "geometry_supported"]

_EPS = 1e-12  # torch.nn.functional.normalize's eps (e3nn normalises edge vectors with it)
_S3, _S5, _S15 = math.sqrt(3.0), math.sqrt(5.0), math.sqrt(15.0)


def geometry_supported(lmax: int) -> bool:
    """Whether :func:`edge_geometry` covers spherical harmonics up to ``lmax``."""
    return 0 <= int(lmax) <= 2


@nb.njit(cache=True, nogil=True, fastmath=_FASTMATH, inline="always")
def _vector(pos, cell, shifts, s, r, e):  # pragma: no cover - compiled
    sx, sy, sz = shifts[e, 0], shifts[e, 1], shifts[e, 2]
    vx = pos[r, 0] - pos[s, 0] + (sx * cell[0, 0] + sy * cell[1, 0] + sz * cell[2, 0])
    vy = pos[r, 1] - pos[s, 1] + (sx * cell[0, 1] + sy * cell[1, 1] + sz * cell[2, 1])
    vz = pos[r, 2] - pos[s, 2] + (sx * cell[0, 2] + sy * cell[1, 2] + sz * cell[2, 2])
    return vx, vy, vz


@nb.njit(cache=True, nogil=True, fastmath=_FASTMATH, inline="always")
def _pow_m1(q, p, ip):  # pragma: no cover - compiled
    """q ** (p - 1): repeated products for an integer p >= 1 (``ip`` = p, else 0: ``pow``)."""
    if ip > 0:
        out = 1.0
        for _ in range(ip - 1):
            out *= q
        return out
    return q ** (p - 1.0)


@nb.njit(cache=True, nogil=True, fastmath=_FASTMATH)
def _geom_fwd(pos, cell, shifts, send, recv, lmax, r_max, p, ip, lo, hi, lengths, sh, env):  # pragma: no cover
    c1 = (p + 1.0) * (p + 2.0) / 2.0
    c2 = p * (p + 2.0)
    c3 = p * (p + 1.0) / 2.0
    for e in range(lo, hi):
        vx, vy, vz = _vector(pos, cell, shifts, send[e], recv[e], e)
        n = math.sqrt(vx * vx + vy * vy + vz * vz)
        lengths[e] = n
        d = n if n > _EPS else _EPS
        x, y, z = vx / d, vy / d, vz / d
        sh[e, 0] = 1.0
        if lmax >= 1:
            sh[e, 1] = _S3 * x
            sh[e, 2] = _S3 * y
            sh[e, 3] = _S3 * z
        if lmax >= 2:
            sh[e, 4] = _S15 * x * z
            sh[e, 5] = _S15 * x * y
            sh[e, 6] = _S5 * (y * y - 0.5 * (x * x + z * z))
            sh[e, 7] = _S15 * y * z
            sh[e, 8] = 0.5 * _S15 * (z * z - x * x)
        if r_max > 0.0:
            q = n / r_max
            qp = _pow_m1(q, p, ip) * q
            u = 1.0 - qp * (c1 - q * (c2 - c3 * q))
            env[e] = u if q < 1.0 else 0.0


@nb.njit(cache=True, nogil=True, fastmath=_FASTMATH)
def _geom_bwd(pos, cell, shifts, send, recv, lmax, r_max, p, ip, g_len, g_sh, g_env, lo, hi, g_pos,
              g_cell):  # pragma: no cover - compiled
    c1 = (p + 1.0) * (p + 2.0) / 2.0
    c2 = p * (p + 2.0)
    c3 = p * (p + 1.0) / 2.0
    with_env = r_max > 0.0 and g_env.shape[0] > 0
    with_sh = g_sh.shape[0] > 0
    with_cell = g_cell.shape[0] > 0
    for e in range(lo, hi):
        s, r = send[e], recv[e]
        vx, vy, vz = _vector(pos, cell, shifts, s, r, e)
        n = math.sqrt(vx * vx + vy * vy + vz * vz)
        # d/dv of the length (and of the envelope, a function of it): zero at n = 0, as torch's norm backward
        gn = g_len[e] if g_len.shape[0] > 0 else 0.0
        if with_env:
            q = n / r_max
            if q < 1.0:
                qm = _pow_m1(q, p, ip)
                gn += g_env[e] * qm * (-c1 * p + q * (c2 * (p + 1.0) - c3 * (p + 2.0) * q)) / r_max
        dx = dy = dz = 0.0
        if n > 0.0:
            dx, dy, dz = gn * vx / n, gn * vy / n, gn * vz / n
        if with_sh and lmax >= 1:
            d = n if n > _EPS else _EPS
            x, y, z = vx / d, vy / d, vz / d
            gx = _S3 * g_sh[e, 1]
            gy = _S3 * g_sh[e, 2]
            gz = _S3 * g_sh[e, 3]
            if lmax >= 2:
                g4, g5, g6, g7, g8 = g_sh[e, 4], g_sh[e, 5], g_sh[e, 6], g_sh[e, 7], g_sh[e, 8]
                gx += _S15 * (z * g4 + y * g5) - _S5 * x * g6 - _S15 * x * g8
                gy += _S15 * (x * g5 + z * g7) + 2.0 * _S5 * y * g6
                gz += _S15 * (x * g4 + y * g7) - _S5 * z * g6 + _S15 * z * g8
            if n > _EPS:  # u = v / |v|: project out the radial part
                dot = gx * x + gy * y + gz * z
                dx += (gx - dot * x) / n
                dy += (gy - dot * y) / n
                dz += (gz - dot * z) / n
            else:  # u = v / eps
                dx += gx / _EPS
                dy += gy / _EPS
                dz += gz / _EPS
        g_pos[r, 0] += dx
        g_pos[r, 1] += dy
        g_pos[r, 2] += dz
        g_pos[s, 0] -= dx
        g_pos[s, 1] -= dy
        g_pos[s, 2] -= dz
        if with_cell:
            for i in range(3):
                si = shifts[e, i]
                g_cell[i, 0] += si * dx
                g_cell[i, 1] += si * dy
                g_cell[i, 2] += si * dz


def _int_p(p: float) -> int:
    """``p`` as an int when it is a whole number >= 1 (the envelope's powers as products), else 0."""
    return int(p) if float(p).is_integer() and p >= 1 else 0


def _arrays(positions, cell, cell_shifts, send, recv):
    return (positions.detach().contiguous().numpy(), cell.detach().contiguous().numpy(),
            cell_shifts.detach().to(positions.dtype).contiguous().numpy(), send.numpy(), recv.numpy())


class _EdgeGeometry(torch.autograd.Function):
    @staticmethod
    def forward(ctx, positions, cell, cell_shifts, send, recv, lmax: int, r_max: float, p: float):
        n_edges = send.shape[0]
        dtype = positions.dtype
        lengths = torch.empty(n_edges, dtype=dtype)
        sh = torch.empty(n_edges, (lmax + 1) ** 2, dtype=dtype)
        env = torch.empty(n_edges if r_max > 0 else 0, dtype=dtype)
        args = (*_arrays(positions, cell, cell_shifts, send, recv), lmax, float(r_max), float(p), _int_p(p))
        ln, shn, en = lengths.numpy(), sh.numpy(), env.numpy()
        nt = _n_threads(n_edges, "edges", 0)  # rows belong to one edge: no private buffers
        _run(nt, n_edges, lambda lo, hi, t: _geom_fwd(*args, lo, hi, ln, shn, en))
        ctx.save_for_backward(positions, cell, cell_shifts, send, recv)
        ctx.consts = (lmax, float(r_max), float(p))
        return lengths, sh, env

    @staticmethod
    @once_differentiable
    def backward(ctx, g_len, g_sh, g_env):
        positions, cell, cell_shifts, send, recv = ctx.saved_tensors
        lmax, r_max, p = ctx.consts
        dtype = positions.dtype
        empty = np.zeros(0, dtype=positions.numpy().dtype)
        gl = empty if g_len is None else g_len.to(dtype).contiguous().numpy()
        gs = np.zeros((0, 1), dtype=empty.dtype) if g_sh is None else g_sh.to(dtype).contiguous().numpy()
        ge = empty if g_env is None else g_env.to(dtype).contiguous().numpy()
        need_cell = ctx.needs_input_grad[1]
        g_pos = torch.zeros(positions.shape, dtype=dtype)
        g_cell = torch.zeros((3, 3) if need_cell else (0, 3), dtype=dtype)
        args = (*_arrays(positions, cell, cell_shifts, send, recv), lmax, r_max, p, _int_p(p), gl, gs, ge)
        n_edges = send.shape[0]
        nt = _n_threads(n_edges, "edges", g_pos.numel() * g_pos.element_size())
        gps, gcs = _private(g_pos, nt), _private(g_cell, nt)
        _run(nt, n_edges, lambda lo, hi, t: _geom_bwd(*args, lo, hi, gps[t].numpy(), gcs[t].numpy()))
        return _reduce(gps), (_reduce(gcs) if need_cell else None), None, None, None, None, None, None


def edge_geometry(positions: torch.Tensor, cell: torch.Tensor, cell_shifts: torch.Tensor, edge_index: torch.Tensor,
                  lmax: int, r_max: float = 0.0, p: float = 6.0):
    """Edge lengths (E,), spherical harmonics (E, (lmax + 1)^2) and cutoff envelope (E,) of the edges
    ``edge_index`` (2, E) (sender, receiver) with vectors ``positions[r] - positions[s] + cell_shifts @ cell``.

    The harmonics are e3nn's (``SphericalHarmonics(lmax, normalize=True, normalization="component")``), the
    envelope :class:`~compscope.nn.PolynomialCutoff` ``(r_max, p)`` (empty when ``r_max`` is 0). Differentiable
    once with respect to ``positions`` and ``cell`` (forces, stress). CPU, float32/float64, ``lmax <= 2``."""
    if not geometry_supported(lmax):
        raise ValueError(f"edge_geometry covers lmax <= 2, got {lmax}")
    send = edge_index[0].contiguous().to(torch.int64)
    recv = edge_index[1].contiguous().to(torch.int64)
    return _EdgeGeometry.apply(positions.contiguous(), cell.to(positions.dtype).contiguous(), cell_shifts, send,
                               recv, int(lmax), float(r_max), float(p))


@nb.njit(cache=True, nogil=True)
def _within(pos, cell, shifts, send, recv, cutoff, out_s, out_r, out_sh):  # pragma: no cover - compiled
    c = 0
    for e in range(send.shape[0]):
        vx, vy, vz = _vector(pos, cell, shifts, send[e], recv[e], e)
        if math.sqrt(vx * vx + vy * vy + vz * vz) < cutoff:
            out_s[c] = send[e]
            out_r[c] = recv[e]
            out_sh[c, 0] = shifts[e, 0]
            out_sh[c, 1] = shifts[e, 1]
            out_sh[c, 2] = shifts[e, 2]
            c += 1
    return c


def edges_within(positions: torch.Tensor, cell: torch.Tensor, edge_index: torch.Tensor, cell_shifts: torch.Tensor,
                 cutoff: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The edges (in their order) of one structure whose vector ``positions[r] - positions[s] + cell_shifts @ cell``
    is shorter than ``cutoff``: ``(edge_index (2, E'), cell_shifts (E', 3))``, in one pass (no per-edge temporaries;
    a Verlet list pruned to the model's cutoff at every step). CPU, float32/float64, no autograd."""
    dtype = positions.dtype
    n_edges = edge_index.shape[1]
    send = edge_index[0].contiguous().to(torch.int64)
    recv = edge_index[1].contiguous().to(torch.int64)
    shifts = cell_shifts.detach().to(dtype).contiguous()
    out_s, out_r = torch.empty(n_edges, dtype=torch.int64), torch.empty(n_edges, dtype=torch.int64)
    out_sh = torch.empty(n_edges, 3, dtype=cell_shifts.dtype)
    sh_np = out_sh.numpy() if cell_shifts.dtype == dtype else np.empty((n_edges, 3), dtype=shifts.numpy().dtype)
    c = _within(positions.detach().contiguous().numpy(), cell.detach().to(dtype).contiguous().numpy(),
                shifts.numpy(), send.numpy(), recv.numpy(), float(cutoff), out_s.numpy(), out_r.numpy(), sh_np)
    if cell_shifts.dtype != dtype:
        out_sh = torch.from_numpy(sh_np).to(cell_shifts.dtype)
    return torch.stack([out_s[:c], out_r[:c]]).to(edge_index.dtype), out_sh[:c].clone()
