"""Radial weights from a spline table, fused into the edge tensor product (CPU inference on big boxes).

An interaction's radial weights are a function of the edge length alone, ``W(r) = MLP(embedding(r))`` (P x u
values per edge), and computing them is about half of a force call: the MLP's matmuls, activations and their
backward on every edge pair, plus the activations autograd keeps for the backward (most of the memory of a force
call). For inference the weights are frozen, so ``W`` is tabulated once as a piecewise cubic Hermite spline on a
uniform grid over ``[0, r_max]``, from the network itself in float64 (values and exact derivatives at the knots;
C^1, so forces stay continuous), and the fused CPU kernels here read it per edge:

.. math:: A_{r k u} = \\sum_{e: r(e) = r} W_{p(k) u}(|r_e|) \\sum_{(a, b, c) \\in nz(k)} c\\, y_{e b}\\, x_{s(e) a u}

with the backward giving ``dE/dx``, ``dE/dy`` and ``dE/d|r_e|`` (the latter from the spline's derivative) in one
pass over edges. No per-edge radial activations or weights are stored: what a layer keeps for the backward is
the edge lengths.

The table is an approximation of the network: :attr:`RadialTable.max_rel_error` is its largest deviation on a
dense check grid relative to the largest weight (about 1e-9 with the default 1024 intervals on the presets,
below float32 round-off), so energies and forces of a float32 model are those of the network to float32
round-off. It is inference only (first derivatives: forces and stress; training keeps the network) and is built
for the weights at hand (:meth:`RadialTable.matches` tells when they changed).
"""

from __future__ import annotations

import os

import numba as nb
import numpy as np
import torch
from torch.autograd.function import once_differentiable

from ._fused import _FASTMATH, SparseCG, _coef, _contract, _np, _private, _reduce, _run

__all__ = ["RadialTable", "tabulated_edge_product"]

DEFAULT_INTERVALS = 1024
"""Spline intervals of a table over [0, r_max] (h ~ 5 mÅ at 5 Å)."""


def _state_key(modules) -> tuple:
    """Identity of the weights the table was built from: every tensor's storage, version and dtype."""
    key = []
    for m in modules:
        for t in list(m.parameters()) + list(m.buffers()):
            key.append((t.data_ptr(), t._version, t.dtype, tuple(t.shape)))
    return tuple(key)


class RadialTable:
    """Piecewise cubic Hermite table of ``scale * mlp(embedding(r))`` over ``[0, r_max]``.

    Args:
        embedding: the radial embedding (edge lengths (E,) -> (E, num_basis)), zero at and beyond ``r_max``.
        mlp: the radial MLP (E, num_basis) -> (E, F).
        r_max: the cutoff (Å); edges at or beyond it get zero weights (as the network gives them).
        scale: constant factor folded into the table (the interaction's 1 / avg_num_neighbors).
        n_intervals: uniform intervals of the grid.
        dtype: dtype of the coefficients (the model's).

    Attributes:
        coef: (n_intervals, 4, F) numpy array, ``W(r_i + t h) = c0 + t (c1 + t (c2 + t c3))``.
        max_rel_error: largest |table - network| on the check grid (float64) over the largest |network|.
    """

    def __init__(self, embedding: torch.nn.Module, mlp: torch.nn.Module, r_max: float, scale: float = 1.0,
                 n_intervals: int = DEFAULT_INTERVALS, dtype: torch.dtype = torch.float32):
        if int(n_intervals) < 1:
            raise ValueError(f"n_intervals must be >= 1, got {n_intervals}")
        self.r_max = float(r_max)
        self.n_intervals = n = int(n_intervals)
        self.h = self.r_max / n
        self.inv_h = 1.0 / self.h
        self.scale = float(scale)
        self.dtype = dtype
        self._key = _state_key((embedding, mlp))
        fn = _float64_copy(embedding, mlp, self.scale)
        knots = torch.linspace(0.0, self.r_max, n + 1, dtype=torch.float64)
        values, slopes = _values_and_slopes(fn, knots)  # (n + 1, F) each
        y0, y1 = values[:-1], values[1:]
        m0, m1 = slopes[:-1] * self.h, slopes[1:] * self.h
        coef = torch.stack([y0, m0, 3.0 * (y1 - y0) - 2.0 * m0 - m1, 2.0 * (y0 - y1) + m0 + m1], dim=1)
        self.coef64 = coef.numpy()  # (n, 4, F)
        self.coef = np.ascontiguousarray(self.coef64.astype(np.float64 if dtype == torch.float64 else np.float32))
        self.out_dim = coef.shape[-1]
        # deviation from the network on a grid 7x finer than the knots (midpoints and in between), in float64
        with torch.no_grad():
            check = torch.linspace(0.0, self.r_max, 7 * n + 1, dtype=torch.float64)[1:-1]
            ref = fn(check)
        got = torch.as_tensor(self.evaluate(check.numpy(), self.coef64))
        self.max_rel_error = float((got - ref).abs().max() / ref.abs().max().clamp_min(1e-300))

    def matches(self, embedding: torch.nn.Module, mlp: torch.nn.Module, dtype: torch.dtype) -> bool:
        """True when the table was built from these modules' current weights, for ``dtype``."""
        return dtype == self.dtype and self._key == _state_key((embedding, mlp))

    def evaluate(self, r: np.ndarray, coef: np.ndarray | None = None) -> np.ndarray:
        """The tabulated weights (M, F) at lengths ``r`` (M,) (reference implementation, numpy)."""
        coef = self.coef if coef is None else coef
        r = np.asarray(r, dtype=np.float64)
        x = r * self.inv_h
        i = np.minimum(x.astype(np.int64), self.n_intervals - 1)
        t = (x - i)[:, None]
        c = coef[i]
        w = c[:, 0] + t * (c[:, 1] + t * (c[:, 2] + t * c[:, 3]))
        return np.where((r < self.r_max)[:, None], w, 0.0)


def _float64_copy(embedding, mlp, scale: float):
    """``r (M,) float64 -> scale * mlp(embedding(r)) (M, F)`` on float64 copies of the modules."""
    import copy

    emb64 = copy.deepcopy(embedding).to(torch.float64)
    mlp64 = copy.deepcopy(mlp).to(torch.float64)
    for p in list(emb64.parameters()) + list(mlp64.parameters()):
        p.requires_grad_(False)

    def fn(r: torch.Tensor) -> torch.Tensor:
        return scale * mlp64(emb64(r))

    return fn


def _values_and_slopes(fn, knots: torch.Tensor):
    """Values and exact derivatives (forward-mode autograd) at the knots. The embedding's ``sin(f r) / r`` is
    0/0 at r = 0: its limit is taken at r = 1e-150, its slope by a symmetric 4th-order difference around 0."""
    import torch.autograd.forward_ad as fwAD

    r = knots.clone()
    r[0] = 1e-150
    with fwAD.dual_level(), torch.no_grad():
        out = fwAD.unpack_dual(fn(fwAD.make_dual(r, torch.ones_like(r))))
    values, slopes = out.primal.clone(), out.tangent.clone()
    d = 1e-3 * min(1.0, float(knots[-1]))
    with torch.no_grad():
        f = fn(torch.tensor([-2 * d, -d, d, 2 * d], dtype=torch.float64))
    slopes[0] = (8.0 * (f[2] - f[1]) - (f[3] - f[0])) / (12.0 * d)
    # at r_max the network is zero with vanishing derivatives (the envelope): exact zeros, whatever the mask
    values[-1] = 0.0
    slopes[-1] = 0.0
    return values, slopes


# --------------------------------------------------------------------------------------------------------------
# kernels: x (N, d1, u) gathered by sender, y (E, d2), r (E,) edge lengths, coef (n, 4, P * u); summed into
# receivers. An edge at or beyond r_max contributes nothing (the network's weights are exactly zero there); a NaN
# length gives NaN weights (the MD stability monitors rely on NaN propagating).
# Every scalar in the vector loops has the arrays' dtype: a Python float (float64) in a float32 loop would turn it
# into converts and double arithmetic. ``sc`` is a small scratch array of that dtype holding such scalars.
@nb.njit(cache=True, nogil=True, fastmath=_FASTMATH, inline="always")
def _spline(wf, coef, re, inv_h, sc):  # pragma: no cover - compiled
    n_int = coef.shape[0]
    if re != re:
        for f in range(wf.shape[0]):
            wf[f] = re
        return
    xr = re * inv_h
    i = int(xr)
    if i >= n_int:
        i = n_int - 1
    sc[0] = xr - i
    t = sc[0]
    c = coef[i]
    c0, c1, c2, c3 = c[0], c[1], c[2], c[3]
    for f in range(wf.shape[0]):
        wf[f] = c0[f] + t * (c1[f] + t * (c2[f] + t * c3[f]))


@nb.njit(cache=True, nogil=True, fastmath=_FASTMATH, inline="always")
def _spline_d(wf, df, coef, re, inv_h, sc):  # pragma: no cover - compiled
    """Values and r-derivatives of the table at ``re``."""
    n_int = coef.shape[0]
    if re != re:
        for f in range(wf.shape[0]):
            wf[f] = re
            df[f] = re
        return
    xr = re * inv_h
    i = int(xr)
    if i >= n_int:
        i = n_int - 1
    t64 = xr - i
    sc[0] = t64
    sc[1] = 2.0 * t64 * inv_h
    sc[2] = 3.0 * t64 * t64 * inv_h
    sc[3] = inv_h
    t, t2, t3, ih = sc[0], sc[1], sc[2], sc[3]
    c = coef[i]
    c0, c1, c2, c3 = c[0], c[1], c[2], c[3]
    for f in range(wf.shape[0]):
        wf[f] = c0[f] + t * (c1[f] + t * (c2[f] + t * c3[f]))
        df[f] = c1[f] * ih + t2 * c2[f] + t3 * c3[f]


@nb.njit(cache=True, nogil=True, fastmath=_FASTMATH)
def _tab_fwd(x, y, r, coef, inv_h, r_max, send, recv, start, ca, cb, cc, path, lo, hi, out):  # pragma: no cover
    n_k = start.shape[0] - 1
    nnz = cc.shape[0]
    mul = x.shape[2]
    yc = np.empty(nnz, dtype=x.dtype)
    tmp = np.empty(mul, dtype=x.dtype)
    wf = np.empty(coef.shape[2], dtype=x.dtype)
    sc = np.zeros(4, dtype=x.dtype)
    for e in range(lo, hi):
        re = r[e]
        if re >= r_max:
            continue
        _spline(wf, coef, re, inv_h, sc)
        xs = x[send[e]]
        o = out[recv[e]]
        ye = y[e]
        for j in range(nnz):
            yc[j] = cc[j] * ye[cb[j]]
        for k in range(n_k):
            _contract(tmp, yc, xs, ca, start[k], start[k + 1])
            base = path[k] * mul
            ok = o[k]
            for u in range(mul):
                ok[u] += wf[base + u] * tmp[u]


@nb.njit(cache=True, nogil=True, fastmath=_FASTMATH)
def _tab_bwd(grad, x, y, r, coef, inv_h, r_max, send, recv, start, ca, cb, cc, path, lo, hi, gx, gy,
             gr):  # pragma: no cover - compiled
    n_k = start.shape[0] - 1
    nnz = cc.shape[0]
    mul = x.shape[2]
    yc = np.empty(nnz, dtype=x.dtype)
    tmp = np.empty(mul, dtype=x.dtype)
    gt = np.empty(mul, dtype=x.dtype)
    acc_r = np.empty(mul, dtype=x.dtype)
    wf = np.empty(coef.shape[2], dtype=x.dtype)
    df = np.empty(coef.shape[2], dtype=x.dtype)
    sc = np.zeros(4, dtype=x.dtype)
    zero = np.zeros(1, dtype=x.dtype)[0]
    for e in range(lo, hi):
        re = r[e]
        if re >= r_max:
            continue
        _spline_d(wf, df, coef, re, inv_h, sc)
        xs = x[send[e]]
        gxs = gx[send[e]]
        ge = grad[recv[e]]
        ye = y[e]
        gye = gy[e]
        for j in range(nnz):
            yc[j] = cc[j] * ye[cb[j]]
        for u in range(mul):
            acc_r[u] = zero
        for k in range(n_k):
            _contract(tmp, yc, xs, ca, start[k], start[k + 1])
            base = path[k] * mul
            gk = ge[k]
            for u in range(mul):
                acc_r[u] += gk[u] * tmp[u] * df[base + u]
                gt[u] = gk[u] * wf[base + u]
            for j in range(start[k], start[k + 1]):
                xa = xs[ca[j]]
                gxa = gxs[ca[j]]
                c = yc[j]
                acc = zero
                for u in range(mul):
                    gxa[u] += c * gt[u]
                    acc += gt[u] * xa[u]
                gye[cb[j]] += cc[j] * acc
        s = zero
        for u in range(mul):
            s += acc_r[u]
        gr[e] = s


def _receiver_bounds(recv: np.ndarray, n_threads: int) -> np.ndarray:
    """Edge ranges for ``n_threads`` that split only between receivers (edges sorted by receiver): each thread
    then owns its receivers' rows of the output. Falls back to even ranges when the edges are not sorted."""
    n = recv.shape[0]
    bounds = np.linspace(0, n, n_threads + 1).astype(np.int64)
    for t in range(1, n_threads):
        b = int(bounds[t])
        while 0 < b < n and recv[b] == recv[b - 1]:
            b += 1
        bounds[t] = max(b, int(bounds[t - 1]))
    return bounds


def _threads(n_items: int) -> int:
    return max(1, min(torch.get_num_threads(), n_items // 1024))


def _split_run(bounds: np.ndarray, call) -> None:
    """``call(lo, hi, t)`` over the ranges ``bounds`` (one per thread), in parallel."""
    nt = len(bounds) - 1
    _run(nt, int(bounds[-1]), lambda lo, hi, t: call(int(bounds[t]), int(bounds[t + 1]), t))


GENERATED = os.environ.get("COMPSCOPE_TP_CODEGEN", "1") != "0"
"""Use the kernels generated per CG structure (:mod:`._tp_codegen`); False: the generic ones here (reference)."""


def _kernels(cg: SparseCG, generated: bool | None = None, mul: int = 0, need_gx: bool = True):
    """``(fwd(..., lo, hi, out), bwd(..., lo, hi, gx, gy, gr), cg_args)``: generated or generic kernels and the
    CG arguments they take after the edge arrays. ``need_gx=False`` may pick a backward that leaves ``gx`` alone
    (zeros: ``x`` needs no gradient)."""
    if GENERATED if generated is None else generated:
        from ._tp_codegen import generated_kernels

        fwd, bwd, bwd_nox = generated_kernels(cg, mul)
        return fwd, (bwd if need_gx else bwd_nox), lambda dtype: (_coef(cg, dtype),)
    return _tab_fwd, _tab_bwd, lambda dtype: (cg.start, cg.a, cg.b, _coef(cg, dtype), cg.path)


def _tab_forward(x, y, r, table: RadialTable, send, recv, n_nodes: int, cg: SparseCG,
                 generated: bool | None = None) -> torch.Tensor:
    out = torch.zeros(n_nodes, cg.k, x.shape[2], dtype=x.dtype)
    recv_np = recv.numpy()
    fwd, _, cg_args = _kernels(cg, generated, x.shape[2])
    args = (_np(x), _np(y), _np(r), table.coef, table.inv_h, table.r_max, send.numpy(), recv_np, *cg_args(x.dtype))
    nt = _threads(send.shape[0])
    sorted_recv = nt > 1 and bool(np.all(recv_np[1:] >= recv_np[:-1]))
    if nt > 1 and sorted_recv:  # each thread writes its own receivers' rows: no private buffers
        o = out.numpy()
        _split_run(_receiver_bounds(recv_np, nt), lambda lo, hi, t: fwd(*args, lo, hi, o))
        return out
    outs = _private(out, nt)
    _split_run(np.linspace(0, send.shape[0], nt + 1).astype(np.int64),
               lambda lo, hi, t: fwd(*args, lo, hi, outs[t].numpy()))
    return _reduce(outs)


def _tab_backward(grad, x, y, r, table: RadialTable, send, recv, cg: SparseCG, generated: bool | None = None,
                  need_gx: bool = True):
    """Gradients ``(gx, gy, gr)``; ``gx`` is zeros without ``need_gx`` (when ``x`` needs no gradient)."""
    gen = GENERATED if generated is None else generated
    per_edge = torch.empty if gen else torch.zeros  # the generated kernels write every row of gy and gr
    gx = torch.zeros(x.shape, dtype=x.dtype)
    gy = per_edge(y.shape, dtype=x.dtype)
    gr = per_edge(r.shape, dtype=x.dtype)
    _, bwd, cg_args = _kernels(cg, generated, x.shape[2], need_gx)
    args = (_np(grad), _np(x), _np(y), _np(r), table.coef, table.inv_h, table.r_max, send.numpy(), recv.numpy(),
            *cg_args(x.dtype))
    nt = _threads(send.shape[0])
    gxs = _private(gx, nt)  # scattered to senders: one buffer per thread; gy, gr rows belong to one edge
    _split_run(np.linspace(0, send.shape[0], nt + 1).astype(np.int64),
               lambda lo, hi, t: bwd(*args, lo, hi, gxs[t].numpy(), gy.numpy(), gr.numpy()))
    return _reduce(gxs), gy, gr


class _TabulatedEdgeProduct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y, r, table, send, recv, n_nodes: int, cg: SparseCG):
        ctx.save_for_backward(x, y, r, send, recv)
        ctx.table, ctx.cg = table, cg
        return _tab_forward(x, y, r, table, send, recv, n_nodes, cg)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, y, r, send, recv = ctx.saved_tensors
        need_gx = ctx.needs_input_grad[0]
        gx, gy, gr = _tab_backward(grad.contiguous(), x, y, r, ctx.table, send, recv, ctx.cg, need_gx=need_gx)
        return (gx if need_gx else None), gy, gr, None, None, None, None, None


def tabulated_edge_product(x: torch.Tensor, y: torch.Tensor, lengths: torch.Tensor, table: RadialTable,
                           edge_index: torch.Tensor, n_nodes: int, cg: SparseCG) -> torch.Tensor:
    """Sum over edges of the "uvu" product with radial weights from ``table``: x (N, d1, u), y (E, d2),
    lengths (E,) -> (N, K, u) (the table's scale included). Differentiable once (forces, stress)."""
    dtype = x.dtype
    if x.shape[2] * (int(cg.path.max()) + 1) != table.out_dim:
        raise ValueError(f"table of {table.out_dim} weights does not fit {int(cg.path.max()) + 1} paths x "
                         f"{x.shape[2]} channels")
    send = edge_index[0].contiguous().to(torch.int64)
    recv = edge_index[1].contiguous().to(torch.int64)
    return _TabulatedEdgeProduct.apply(x.contiguous(), y.to(dtype).contiguous(), lengths.to(dtype).contiguous(),
                                       table, send, recv, int(n_nodes), cg)

