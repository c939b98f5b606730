"""Fused CPU kernels (numba): channel-wise tensor products without (edges, K, channels) temporaries.

The dense formulation in :mod:`._tensor_product` materialises several ``(E, K, u)`` tensors per message-passing
layer (the CG-contracted edge features, the gathered radial weights, the messages, and the same again in the
backward pass). For small molecules batched as many replicas these tensors are the cost: they do not fit in
cache and each pass over them is memory-bound. The kernels here loop over edges (or nodes) once and keep a
``u``-vector in registers, using the sparse Clebsch-Gordan coefficients directly:

.. math:: A_{r k u} = \\sum_{e: r(e) = r} w_{e p(k) u} \\sum_{(a, b, c) \\in nz(k)} c\\, y_{e b}\\, x_{s(e) a u}

They compute exactly the same function as the dense path (tests compare both, values and gradients, and run
``gradcheck``/``gradgradcheck``). They are differentiable twice: the backward is itself an autograd function whose
derivatives come from one dedicated pass per product (``_edge_bwd2``, ``_node_bwd2``; by multilinearity they equal
the first-order kernels with substituted arguments, the reference the tests compare against), so force-matching
losses train through them too. Models use them whenever the tensors
live on the CPU (``EquivariantPotential.fused_kernels``).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numba as nb
import numpy as np
import torch
from torch.autograd.function import once_differentiable

# reassociation lets LLVM vectorise the reductions over channels; no 'nnan'/'ninf': NaN must still propagate
# (the MD stability monitors rely on it)
_FASTMATH = {"reassoc", "contract", "nsz"}

__all__ = ["SparseCG", "edge_pairs", "fused_edge_product", "fused_node_product", "fused_available"]


def fused_available(*tensors: torch.Tensor) -> bool:
    """True when every tensor is on the CPU in float32/float64 (what the kernels support)."""
    return all(t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64) for t in tensors)


# --------------------------------------------------------------------------------------------------------------
# threads: the kernels release the GIL, so torch's thread count of them run on contiguous ranges of edges/nodes;
# scatter targets shared between ranges get private buffers (summed after), per-item outputs are written in place
_POOL: ThreadPoolExecutor | None = None
_MIN_ITEMS = {"edges": 1024, "nodes": 256}
_MAX_PRIVATE_BYTES = 256 * 2**20


def _forget_pool() -> None:
    """A forked child inherits the pool object but not its threads: it must start its own."""
    global _POOL
    _POOL = None


os.register_at_fork(after_in_child=_forget_pool)


def _n_threads(n_items: int, kind: str, private_bytes: int) -> int:
    t = min(torch.get_num_threads(), n_items // _MIN_ITEMS[kind])
    while t > 1 and (t - 1) * private_bytes > _MAX_PRIVATE_BYTES:
        t -= 1
    return max(1, t)


def _run(n_threads: int, n_items: int, call) -> None:
    """``call(lo, hi, t)`` on ``n_threads`` contiguous ranges of ``range(n_items)``, in parallel."""
    global _POOL
    if n_threads == 1:
        call(0, n_items, 0)
        return
    if _POOL is None or _POOL._max_workers < n_threads - 1:
        _POOL = ThreadPoolExecutor(max_workers=n_threads - 1, thread_name_prefix="compscope-fused")
    bounds = np.linspace(0, n_items, n_threads + 1).astype(np.int64)
    futures = [_POOL.submit(call, int(bounds[t]), int(bounds[t + 1]), t) for t in range(1, n_threads)]
    call(int(bounds[0]), int(bounds[1]), 0)
    for f in futures:
        f.result()


def _private(first: torch.Tensor, n_threads: int) -> list[torch.Tensor]:
    """``first`` for thread 0, zeroed copies for the others."""
    return [first] + [torch.zeros_like(first) for _ in range(n_threads - 1)]


def _reduce(bufs: list[torch.Tensor]) -> torch.Tensor:
    out = bufs[0]
    for b in bufs[1:]:
        out += b
    return out


class SparseCG:
    """Nonzero Clebsch-Gordan entries of a (d1, d2, K) block, grouped by output component ``k``.

    Attributes (numpy): ``start`` (K + 1,) segment offsets; ``a``, ``b`` (nnz,) input components; ``c`` (nnz,)
    coefficients (float64; cast per call); ``path`` (K,) path of each output component.
    """

    def __init__(self, cg: torch.Tensor, path_of_k: torch.Tensor, tol: float = 1e-12):
        cg = cg.detach().to(torch.float64).cpu().numpy()  # (d1, d2, K)
        self.d1, self.d2, self.k = cg.shape
        a_list, b_list, c_list, start = [], [], [], [0]
        for k in range(self.k):
            a, b = np.nonzero(np.abs(cg[:, :, k]) > tol)
            a_list.append(a)
            b_list.append(b)
            c_list.append(cg[a, b, k])
            start.append(start[-1] + len(a))
        self.start = np.asarray(start, dtype=np.int64)
        self.a = np.concatenate(a_list).astype(np.int64)
        self.b = np.concatenate(b_list).astype(np.int64)
        self.c = np.concatenate(c_list)
        self.path = path_of_k.detach().cpu().numpy().astype(np.int64)
        self._c_by_dtype: dict[np.dtype, np.ndarray] = {}

    def coefficients(self, dtype: np.dtype) -> np.ndarray:
        if dtype not in self._c_by_dtype:
            self._c_by_dtype[dtype] = self.c.astype(dtype)
        return self._c_by_dtype[dtype]


# --------------------------------------------------------------------------------------------------------------
# edge kernels ("uvu"): x (N, d1, u) gathered by sender, y (E, d2), w (W, P, u) read at row widx[e], summed into
# receivers. widx lets an edge and its reverse share one row of radial weights (equal lengths, equal weights).
@nb.njit(cache=True, nogil=True, fastmath=_FASTMATH, inline="always")
def _contract(tmp, yc, xs, ca, j0, j1):  # pragma: no cover - compiled
    """tmp[u] = sum_j yc[j] * xs[ca[j], u] over one output component's nonzeros j0..j1."""
    for u in range(tmp.shape[0]):
        tmp[u] = 0.0
    for j in range(j0, j1):
        c = yc[j]
        xa = xs[ca[j]]
        for u in range(tmp.shape[0]):
            tmp[u] += c * xa[u]


@nb.njit(cache=True, nogil=True, fastmath=_FASTMATH)
def _edge_fwd(x, y, w, widx, send, recv, start, ca, cb, cc, path, scale, lo, hi, out):  # pragma: no cover
    n_k = start.shape[0] - 1
    nnz = cc.shape[0]
    mul = x.shape[2]
    yc = np.empty(nnz, dtype=x.dtype)
    tmp = np.empty(mul, dtype=x.dtype)
    for e in range(lo, hi):
        xs = x[send[e]]
        o = out[recv[e]]
        we = w[widx[e]]
        ye = y[e]
        for j in range(nnz):
            yc[j] = cc[j] * ye[cb[j]]
        for k in range(n_k):
            _contract(tmp, yc, xs, ca, start[k], start[k + 1])
            wp = we[path[k]]
            ok = o[k]
            for u in range(mul):
                ok[u] += scale * wp[u] * tmp[u]


@nb.njit(cache=True, nogil=True, fastmath=_FASTMATH)
def _edge_bwd(grad, x, y, w, widx, send, recv, start, ca, cb, cc, path, scale, lo, hi, gx, gy, gw):  # pragma: no cover
    n_k = start.shape[0] - 1
    nnz = cc.shape[0]
    mul = x.shape[2]
    yc = np.empty(nnz, dtype=x.dtype)
    tmp = np.empty(mul, dtype=x.dtype)
    gt = np.empty(mul, dtype=x.dtype)
    for e in range(lo, hi):
        s = send[e]
        xs = x[s]
        gxs = gx[s]
        ge = grad[recv[e]]
        we = w[widx[e]]
        gwe = gw[widx[e]]
        ye = y[e]
        gye = gy[e]
        for j in range(nnz):
            yc[j] = cc[j] * ye[cb[j]]
        for k in range(n_k):
            p = path[k]
            _contract(tmp, yc, xs, ca, start[k], start[k + 1])
            gk = ge[k]
            wp = we[p]
            gwp = gwe[p]
            for u in range(mul):
                gwp[u] += scale * gk[u] * tmp[u]
                gt[u] = scale * gk[u] * wp[u]
            for j in range(start[k], start[k + 1]):
                c = yc[j]
                xa = xs[ca[j]]
                gxa = gxs[ca[j]]
                acc = 0.0
                for u in range(mul):
                    gxa[u] += c * gt[u]
                    acc += gt[u] * xa[u]
                gye[cb[j]] += cc[j] * acc


@nb.njit(cache=True, nogil=True, fastmath=_FASTMATH)
def _edge_bwd2(grad, x, y, w, ggx, ggy, ggw, widx, send, recv, start, ca, cb, cc, path, scale, lo, hi, dgrad, dx,
               dy, dw):  # pragma: no cover - compiled
    """All four derivatives of <ggx, Bx> + <ggy, By> + <ggw, Bw> (B = the edge backward) in one pass over edges."""
    n_k = start.shape[0] - 1
    nnz = cc.shape[0]
    mul = x.shape[2]
    yc = np.empty(nnz, dtype=x.dtype)
    zc = np.empty(nnz, dtype=x.dtype)
    s1 = np.empty(mul, dtype=x.dtype)
    s2 = np.empty(mul, dtype=x.dtype)
    gt = np.empty(mul, dtype=x.dtype)
    gg = np.empty(mul, dtype=x.dtype)
    for e in range(lo, hi):
        snd = send[e]
        xs, hs, dxs = x[snd], ggx[snd], dx[snd]
        ge, de = grad[recv[e]], dgrad[recv[e]]
        we, hwe, dwe = w[widx[e]], ggw[widx[e]], dw[widx[e]]
        ye, hye, dye = y[e], ggy[e], dy[e]
        for j in range(nnz):
            yc[j] = cc[j] * ye[cb[j]]
            zc[j] = cc[j] * hye[cb[j]]
        for k in range(n_k):
            p = path[k]
            gk, dk, wp, hwp, dwp = ge[k], de[k], we[p], hwe[p], dwe[p]
            for u in range(mul):
                s1[u] = 0.0
                s2[u] = 0.0
                gt[u] = scale * gk[u] * wp[u]
                gg[u] = scale * gk[u] * hwp[u]
            for j in range(start[k], start[k + 1]):
                a = ca[j]
                xa, ha, dxa = xs[a], hs[a], dxs[a]
                c, z = yc[j], zc[j]
                acc = 0.0
                for u in range(mul):
                    s1[u] += c * ha[u] + z * xa[u]
                    s2[u] += c * xa[u]
                    dxa[u] += gt[u] * z + gg[u] * c
                    acc += gt[u] * ha[u] + gg[u] * xa[u]
                dye[cb[j]] += cc[j] * acc
            for u in range(mul):
                dk[u] += scale * (wp[u] * s1[u] + hwp[u] * s2[u])
                dwp[u] += scale * gk[u] * s1[u]


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


def _coef(cg: SparseCG, dtype: torch.dtype) -> np.ndarray:
    return cg.coefficients(np.dtype(np.float64 if dtype == torch.float64 else np.float32))


def _edge_forward(x, y, w, widx, send, recv, n_nodes: int, cg: SparseCG, scale: float) -> torch.Tensor:
    """The edge product (N, K, u) (no autograd)."""
    out = torch.zeros(n_nodes, cg.k, x.shape[2], dtype=x.dtype)
    args = (_np(x), _np(y), _np(w), widx.numpy(), send.numpy(), recv.numpy(), cg.start, cg.a, cg.b,
            _coef(cg, x.dtype), cg.path, scale)
    n_edges = send.shape[0]
    nt = _n_threads(n_edges, "edges", out.numel() * out.element_size())
    outs = _private(out, nt)
    _run(nt, n_edges, lambda lo, hi, t: _edge_fwd(*args, lo, hi, outs[t].numpy()))
    return _reduce(outs)


def _edge_backward(grad, x, y, w, widx, send, recv, cg: SparseCG, scale: float):
    """Gradients (x, y, w) of <grad, product(x, y, w)> (no autograd)."""
    gx = torch.zeros(x.shape, dtype=x.dtype)
    gy = torch.zeros(y.shape, dtype=x.dtype)
    gw = torch.zeros(w.shape, dtype=x.dtype)
    args = (_np(grad), _np(x), _np(y), _np(w), widx.numpy(), send.numpy(), recv.numpy(), cg.start, cg.a, cg.b,
            _coef(cg, x.dtype), cg.path, scale)
    n_edges = send.shape[0]
    nt = _n_threads(n_edges, "edges", (gx.numel() + gw.numel()) * gx.element_size())
    gxs, gws = _private(gx, nt), _private(gw, nt)  # gy rows belong to one edge: shared
    _run(nt, n_edges, lambda lo, hi, t: _edge_bwd(*args, lo, hi, gxs[t].numpy(), gy.numpy(), gws[t].numpy()))
    return _reduce(gxs), gy, _reduce(gws)


def _edge_second_order(grad, x, y, w, ggx, ggy, ggw, widx, send, recv, cg: SparseCG, scale: float):
    """(d_grad, dx, dy, dw) of the edge backward's vector-Jacobian product in one fused pass (absent incoming
    gradients count as zeros; the tests check it against the assembly from the first-order kernels)."""
    ggx, ggy, ggw = (torch.zeros_like(t) if g is None else g for t, g in ((x, ggx), (y, ggy), (w, ggw)))
    dgrad = torch.zeros(grad.shape, dtype=x.dtype)
    dx, dy, dw = (torch.zeros(t.shape, dtype=x.dtype) for t in (x, y, w))
    args = (_np(grad), _np(x), _np(y), _np(w), _np(ggx), _np(ggy), _np(ggw), widx.numpy(), send.numpy(),
            recv.numpy(), cg.start, cg.a, cg.b, _coef(cg, x.dtype), cg.path, scale)
    n_edges = send.shape[0]
    nt = _n_threads(n_edges, "edges", (dgrad.numel() + dx.numel() + dw.numel()) * dx.element_size())
    dgs, dxs, dws = _private(dgrad, nt), _private(dx, nt), _private(dw, nt)  # dy rows belong to one edge: shared
    _run(nt, n_edges, lambda lo, hi, t: _edge_bwd2(*args, lo, hi, dgs[t].numpy(), dxs[t].numpy(), dy.numpy(),
                                                   dws[t].numpy()))
    return _reduce(dgs), _reduce(dxs), dy, _reduce(dws)


class _EdgeProduct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y, w, widx, send, recv, n_nodes: int, cg: SparseCG, scale: float):
        ctx.save_for_backward(x, y, w, widx, send, recv)
        ctx.cg, ctx.scale, ctx.n_nodes = cg, scale, n_nodes
        return _edge_forward(x, y, w, widx, send, recv, n_nodes, cg, scale)

    @staticmethod
    def backward(ctx, grad):
        x, y, w, widx, send, recv = ctx.saved_tensors
        gx, gy, gw = _EdgeProductGrad.apply(grad, x, y, w, widx, send, recv, ctx.n_nodes, ctx.cg, ctx.scale)
        return gx, gy, gw, None, None, None, None, None, None


class _EdgeProductGrad(torch.autograd.Function):
    """The edge product's backward as a function of (grad, x, y, w), itself differentiable once more (force
    losses differentiate forces = gradients)."""

    @staticmethod
    def forward(ctx, grad, x, y, w, widx, send, recv, n_nodes: int, cg: SparseCG, scale: float):
        ctx.save_for_backward(grad, x, y, w, widx, send, recv)
        ctx.cg, ctx.scale, ctx.n_nodes = cg, scale, n_nodes
        return _edge_backward(grad, x, y, w, widx, send, recv, cg, scale)

    @staticmethod
    @once_differentiable
    def backward(ctx, ggx, ggy, ggw):
        grad, x, y, w, widx, send, recv = ctx.saved_tensors
        if ggx is None and ggy is None and ggw is None:
            return (None,) * 10
        d_grad, dx, dy, dw = _edge_second_order(grad, x, y, w, ggx, ggy, ggw, widx, send, recv, ctx.cg, ctx.scale)
        return d_grad, dx, dy, dw, None, None, None, None, None, None


def fused_edge_product(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, edge_index: torch.Tensor, n_nodes: int,
                       cg: SparseCG, widx: torch.Tensor | None = None, scale: float = 1.0) -> torch.Tensor:
    """``scale`` times the sum over edges of the weighted "uvu" product: x (N, d1, u), y (E, d2), w (W, P, u)
    -> (N, K, u).

    Edge ``e`` uses weight row ``widx[e]`` (default: row ``e``, W = E); see :func:`edge_pairs`."""
    dtype = x.dtype
    send = edge_index[0].contiguous().to(torch.int64)
    recv = edge_index[1].contiguous().to(torch.int64)
    if widx is None:
        widx = torch.arange(send.shape[0], dtype=torch.int64)
    return _EdgeProduct.apply(x, y.to(dtype), w.to(dtype), widx.contiguous().to(torch.int64), send, recv,
                              int(n_nodes), cg, float(scale))


def edge_pairs(edge_index: torch.Tensor, cell_shifts: torch.Tensor | None = None):
    """Pair each edge (s, r, S) with its reverse (r, s, -S): ``(rep (W,), widx (E,))`` or ``None``.

    ``rep`` lists one edge of every pair (the lower index), ``widx[e]`` is the position in ``rep`` of edge ``e``'s
    pair. Anything that depends only on the edge length (radial weights) is then computed for ``rep`` and shared:
    half the radial-MLP work in a full neighbour list. ``None`` when some edge has no reverse or the keys would not
    fit in int64 (callers then compute per edge)."""
    ei = edge_index.detach().cpu().numpy().astype(np.int64)
    n_edges = ei.shape[1]
    if n_edges == 0:
        return None
    s, r = ei[0], ei[1]
    n = int(ei.max()) + 1
    if cell_shifts is None or cell_shifts.numel() == 0:
        shifts = np.zeros((n_edges, 3), dtype=np.int64)
    else:
        shifts = np.rint(cell_shifts.detach().cpu().numpy()).astype(np.int64)
    m = int(np.abs(shifts).max()) if shifts.size else 0
    base = 2 * m + 1
    if float(n) * n * base**3 >= 2.0**62:
        return None

    def key(a, b, sh):
        k = a * n + b
        for d in range(3):
            k = k * base + (sh[:, d] + m)
        return k

    fwd = key(s, r, shifts)
    rev = key(r, s, -shifts)
    order = np.argsort(fwd, kind="stable")
    sorted_keys = fwd[order]
    pos = np.searchsorted(sorted_keys, rev)
    pos = np.minimum(pos, n_edges - 1)
    if not np.array_equal(sorted_keys[pos], rev):
        return None
    partner = order[pos]  # (E,) index of the reverse edge
    idx = np.arange(n_edges)
    if not np.array_equal(partner[partner], idx):  # duplicate edges: no clean pairing
        return None
    is_rep = idx <= partner
    rank = np.cumsum(is_rep) - 1
    widx = np.where(is_rep, rank, rank[partner])
    return torch.from_numpy(np.nonzero(is_rep)[0]), torch.from_numpy(widx.astype(np.int64))


# --------------------------------------------------------------------------------------------------------------
# node kernels ("uuu", shared weights): x (N, d1, u), y (N, d2, u), w (P, u) -> (N, K, u)
@nb.njit(cache=True, nogil=True, fastmath=_FASTMATH)
def _node_fwd(x, y, w, start, ca, cb, cc, path, lo, hi, out):  # pragma: no cover - compiled
    n_k = start.shape[0] - 1
    mul = x.shape[2]
    for i in range(lo, hi):
        for k in range(n_k):
            p = path[k]
            for j in range(start[k], start[k + 1]):
                a = ca[j]
                b = cb[j]
                c = cc[j]
                for u in range(mul):
                    out[i, k, u] += c * x[i, a, u] * y[i, b, u]
            for u in range(mul):
                out[i, k, u] *= w[p, u]


@nb.njit(cache=True, nogil=True, fastmath=_FASTMATH)
def _node_bwd(grad, x, y, w, start, ca, cb, cc, path, lo, hi, gx, gy, gw):  # pragma: no cover - compiled
    n_k = start.shape[0] - 1
    mul = x.shape[2]
    tmp = np.empty(mul, dtype=x.dtype)
    gt = np.empty(mul, dtype=x.dtype)
    for i in range(lo, hi):
        for k in range(n_k):
            p = path[k]
            for u in range(mul):
                tmp[u] = 0.0
                gt[u] = grad[i, k, u] * w[p, u]
            for j in range(start[k], start[k + 1]):
                a = ca[j]
                b = cb[j]
                c = cc[j]
                for u in range(mul):
                    tmp[u] += c * x[i, a, u] * y[i, b, u]
                    gx[i, a, u] += c * gt[u] * y[i, b, u]
                    gy[i, b, u] += c * gt[u] * x[i, a, u]
            for u in range(mul):
                gw[p, u] += grad[i, k, u] * tmp[u]


@nb.njit(cache=True, nogil=True, fastmath=_FASTMATH)
def _node_bwd2(grad, x, y, w, ggx, ggy, ggw, start, ca, cb, cc, path, lo, hi, dgrad, dx, dy,
               dw):  # pragma: no cover - compiled
    """All four derivatives of <ggx, Bx> + <ggy, By> + <ggw, Bw> (B = the node backward) in one pass."""
    n_k = start.shape[0] - 1
    mul = x.shape[2]
    s1 = np.empty(mul, dtype=x.dtype)
    s2 = np.empty(mul, dtype=x.dtype)
    gt = np.empty(mul, dtype=x.dtype)
    gg = np.empty(mul, dtype=x.dtype)
    for i in range(lo, hi):
        xi, yi, gxi, gyi = x[i], y[i], ggx[i], ggy[i]
        dxi, dyi = dx[i], dy[i]
        for k in range(n_k):
            p = path[k]
            g = grad[i, k]
            wp = w[p]
            for u in range(mul):
                s1[u] = 0.0
                s2[u] = 0.0
                gt[u] = g[u] * wp[u]
            gwp = ggw[p]
            for u in range(mul):
                gg[u] = g[u] * gwp[u]
            for j in range(start[k], start[k + 1]):
                c = cc[j]
                xa, ya, ga, hb = xi[ca[j]], yi[cb[j]], gxi[ca[j]], gyi[cb[j]]
                dxa, dyb = dxi[ca[j]], dyi[cb[j]]
                for u in range(mul):
                    s1[u] += c * (ga[u] * ya[u] + xa[u] * hb[u])
                    s2[u] += c * xa[u] * ya[u]
                    dxa[u] += c * (gt[u] * hb[u] + gg[u] * ya[u])
                    dyb[u] += c * (gt[u] * ga[u] + gg[u] * xa[u])
            for u in range(mul):
                dgrad[i, k, u] = wp[u] * s1[u] + gwp[u] * s2[u]
            for u in range(mul):
                dw[p, u] += g[u] * s1[u]


def _node_forward(x, y, w, cg: SparseCG) -> torch.Tensor:
    out = torch.zeros(x.shape[0], cg.k, x.shape[2], dtype=x.dtype)
    args = (_np(x), _np(y), _np(w), cg.start, cg.a, cg.b, _coef(cg, x.dtype),
            cg.path)
    nt = _n_threads(x.shape[0], "nodes", 0)  # rows belong to one node: no private buffers
    _run(nt, x.shape[0], lambda lo, hi, t: _node_fwd(*args, lo, hi, out.numpy()))
    return out


def _node_backward(grad, x, y, w, cg: SparseCG):
    gx, gy, gw = (torch.zeros(t.shape, dtype=x.dtype) for t in (x, y, w))
    args = (_np(grad), _np(x), _np(y), _np(w), cg.start, cg.a, cg.b,
            _coef(cg, x.dtype), cg.path)
    nt = _n_threads(x.shape[0], "nodes", gw.numel() * gw.element_size())
    gws = _private(gw, nt)  # the shared path weights' gradient: one buffer per thread
    _run(nt, x.shape[0], lambda lo, hi, t: _node_bwd(*args, lo, hi, gx.numpy(), gy.numpy(), gws[t].numpy()))
    return gx, gy, _reduce(gws)


def _node_second_order(grad, x, y, w, ggx, ggy, ggw, cg: SparseCG):
    """(d_grad, dx, dy, dw) of the node backward's vector-Jacobian product, one fused pass (the tests check it
    against the assembly from the first-order kernels)."""
    ggx, ggy, ggw = (torch.zeros_like(t) if g is None else g for t, g in ((x, ggx), (y, ggy), (w, ggw)))
    dgrad = torch.empty(grad.shape, dtype=x.dtype)
    dx, dy, dw = (torch.zeros(t.shape, dtype=x.dtype) for t in (x, y, w))
    args = (_np(grad), _np(x), _np(y), _np(w), _np(ggx), _np(ggy), _np(ggw),
            cg.start, cg.a, cg.b, _coef(cg, x.dtype), cg.path)
    nt = _n_threads(x.shape[0], "nodes", dw.numel() * dw.element_size())
    dws = _private(dw, nt)
    _run(nt, x.shape[0], lambda lo, hi, t: _node_bwd2(*args, lo, hi, dgrad.numpy(), dx.numpy(), dy.numpy(),
                                                      dws[t].numpy()))
    return dgrad, dx, dy, _reduce(dws)


class _NodeProduct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y, w, cg: SparseCG):
        ctx.save_for_backward(x, y, w)
        ctx.cg = cg
        return _node_forward(x, y, w, cg)

    @staticmethod
    def backward(ctx, grad):
        x, y, w = ctx.saved_tensors
        gx, gy, gw = _NodeProductGrad.apply(grad, x, y, w, ctx.cg)
        return gx, gy, gw, None


class _NodeProductGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, grad, x, y, w, cg: SparseCG):
        ctx.save_for_backward(grad, x, y, w)
        ctx.cg = cg
        return _node_backward(grad, x, y, w, cg)

    @staticmethod
    @once_differentiable
    def backward(ctx, ggx, ggy, ggw):
        grad, x, y, w = ctx.saved_tensors
        if ggx is None and ggy is None and ggw is None:
            return None, None, None, None, None
        d_grad, dx, dy, dw = _node_second_order(grad, x, y, w, ggx, ggy, ggw, ctx.cg)
        return d_grad, dx, dy, dw, None


def fused_node_product(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, cg: SparseCG) -> torch.Tensor:
    """Channel-wise "uuu" product with shared path weights: x (N, d1, u), y (N, d2, u), w (P, u) -> (N, K, u)."""
    return _NodeProduct.apply(x, y, w.to(x.dtype), cg)
