"""Exact divergence of the coordinate update of an :class:`~compscope.nn.EGNN` on complete graphs, by forward-mode
differentiation written out for the network (no autograd), far cheaper than one backward pass per coordinate.

For a configuration of ``n`` points in ``d`` dimensions, every pair connected, the EGNN moves the points to
``x_out(x)``; continuous normalizing flows need ``div u = tr(d u / d x)`` of the update ``u = x_out - x`` (the
divergence of the vector field, exactly: an estimator would bias importance weights). Autograd needs ``n d``
backward passes through the whole graph. :func:`egnn_update_divergence` computes the same trace by pushing the
``n d`` unit tangents forward through the layers in a dense ``(tangents, batch, n, n, hidden)`` layout, with the
derivative factors of every activation computed once per configuration and reused by all tangents, and with
the two places where a tangent touches only ``O(n)`` edges, not ``O(n^2)``, done sparsely:

- first layer, messages: the node features do not depend on ``x`` yet, so the tangent of particle ``k`` changes
  only the messages on the edges that touch ``k``, and only through the squared distance (the dynamic and the
  initial distance are the same there): ``dm_ij = G_ij d(|x_i - x_j|^2)`` with ``G`` one derivative per edge;
- last layer, coordinate update: the trace needs the tangent of the update of particle ``k`` alone, i.e. only
  the ``n - 1`` coordinate-MLP edges received by ``k``.

Everything else (messages of the later layers, coordinate MLPs of the earlier layers) is the dense forward-mode
Jacobian-vector product, batched over tangents; tangents are processed in chunks small enough to stay in cache.
The per-chunk work is a long chain of element-wise products around small matrix products; ``compile=True`` runs
it through ``torch.compile`` (Inductor fuses the element-wise chains; about 35 s of compilation once per process
and input shape, falling back to eager with a warning where compilation fails), another 2x on the CPU. The layout and
the formulas follow :class:`~compscope.nn.EGNNLayer` exactly (attention gate, ``tanh`` range, normalised direction
``(x_i - x_j) / (sqrt(|x_i - x_j|^2 + 1e-8) + C)``, normalisation ``Z``, initial squared distances as edge
attributes); tests compare with the brute-force Jacobian.
"""

from __future__ import annotations

import os
import warnings

import torch

__all__ = ["egnn_update_divergence"]


def _silu_and_slope(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    s = torch.sigmoid(u)
    return u * s, s * (1 + u * (1 - s))


def _edge(recv: torch.Tensor, send: torch.Tensor) -> torch.Tensor:
    """``recv_i + send_j`` on the dense edge grid ``[..., i, j, :]``."""
    return recv.unsqueeze(-2) + send.unsqueeze(-3)


class _Layer:
    """Primal values and derivative factors of one EGNN layer on dense complete graphs (batch, n, n, ...)."""

    def __init__(self, layer, h: torch.Tensor, x: torch.Tensor, d0: torch.Tensor, off: torch.Tensor):
        self.layer = layer
        z_norm = layer.normalization_factor
        diff = x.unsqueeze(2) - x.unsqueeze(1)  # (B, n, n, d): x_i - x_j, receiver i
        d2 = (diff * diff).sum(-1)
        e = torch.stack([d2, d0], -1)  # (B, n, n, 2)
        pre = _edge(layer.e_recv(h), layer.e_send(h)) + layer.e_edge(e)
        a, self.sp_pre = _silu_and_slope(pre)
        m, sp_z = _silu_and_slope(layer.phi_e[1](a))
        self.sp_z = sp_z * off[..., None]  # the mask i != j folded into the first factor of every tangent
        if layer.phi_att is not None:
            g = torch.sigmoid(layer.phi_att(m))  # (B, n, n, 1)
            self.g, self.mgp, self.w_att = g, m * g * (1 - g), layer.phi_att.weight[0]
            m = m * g
        else:
            self.g = None
        agg = (m * off[..., None]).sum(2) / z_norm
        hin = torch.cat([h, agg], -1)
        p1, self.sp_p1 = _silu_and_slope(layer.phi_h[0](hin))
        h_new = h + layer.phi_h[2](p1)
        prex = _edge(layer.x_recv(h_new), layer.x_send(h_new)) + layer.x_edge(e)
        ax, self.sp_prex = _silu_and_slope(prex)
        mx, self.sp_zx = _silu_and_slope(layer.phi_x[1](ax))
        s = layer.phi_x[3](mx)[..., 0]  # (B, n, n)
        if layer.tanh:
            ts = torch.tanh(s)
            w, self.dw_ds = ts * layer.coords_range, (1 - ts * ts) * layer.coords_range * off
        else:
            w, self.dw_ds = s, off.expand_as(s)
        r = torch.sqrt(d2 + 1e-8)
        inv = 1 / (r + layer.norm_constant)
        self.direction = diff * inv[..., None]
        self.w = w * off
        self.q1, self.q2 = inv, inv * inv / (2 * r)  # d dir = d diff q1 - diff d(d2) q2
        self.diff, self.x_new, self.h_new = diff, x + (self.direction * self.w[..., None]).sum(2) / z_norm, h_new
        self.d2 = d2

    def message_tangent(self, dpre: torch.Tensor) -> torch.Tensor:
        """Tangent of the gated message for a tangent of its pre-activation (dense or row-gathered grids)."""
        lay = self.layer
        dm = self.sp_z * (self.sp_pre * dpre).matmul(lay.phi_e[1].weight.t())
        if self.g is None:
            return dm
        return dm * self.g + self.mgp * dm.matmul(self.w_att)[..., None]

    def h_tangent(self, dh: torch.Tensor | None, dagg: torch.Tensor) -> torch.Tensor:
        lay = self.layer
        w1 = lay.phi_h[0].weight  # (F, 2F): [h, agg] columns
        f = dagg.shape[-1]
        dp1 = dagg.matmul(w1[:, f:].t())
        if dh is not None:
            dp1 = dp1 + dh.matmul(w1[:, :f].t())
        out = (self.sp_p1 * dp1).matmul(lay.phi_h[2].weight.t())
        return out if dh is None else dh + out


def _gather_rows(t: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``t[b, rows[c]]`` as (C, B, ...) for a primal (B, n, ...) tensor."""
    return t[:, rows].transpose(0, 1)


_COMPILED: dict[str, object] = {}


def _compiled_chunk_trace():
    """``torch.compile`` of :func:`_chunk_trace` (made once per process; None where compilation is unavailable)."""
    if "fn" not in _COMPILED:
        try:
            import torch._dynamo.config as dynamo_config
            import torch._inductor.config as inductor_config

            inductor_config.compile_threads = 1  # compile in this process, on its one core
            # one compiled graph per (model, dtype, chunk shape): allow a few models and dtypes per process
            dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, 64)
            _COMPILED["fn"] = torch.compile(_chunk_trace, dynamic=False)
        except Exception as err:  # noqa: BLE001 - any backend failure: eager is exact too, only slower
            warnings.warn(f"torch.compile unavailable for the EGNN divergence ({err}); using eager", stacklevel=3)
            _COMPILED["fn"] = None
    return _COMPILED["fn"]


def compile_default() -> bool:
    """Whether :func:`egnn_update_divergence` compiles by default: ``COMPSCOPE_COMPILE_DIVERGENCE=1`` (or ``0``)."""
    return os.environ.get("COMPSCOPE_COMPILE_DIVERGENCE", "0").strip().lower() in ("1", "true", "yes", "on")


def egnn_update_divergence(egnn, h: torch.Tensor, x: torch.Tensor, max_elements: int = 1 << 17,
                           compile: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x_out, div)`` of an :class:`~compscope.nn.EGNN` on complete graphs of dense batches: ``h`` (B, n, in)
    node features (constant in ``x``), ``x`` (B, n, d); ``x_out`` (B, n, d) as ``egnn`` over all pairs ``i != j``
    of each configuration, ``div`` (B,) the exact trace of ``d (x_out - x) / d x`` (module docstring).

    ``max_elements`` bounds the size of one dense tangent tensor (tangents x draws x n x n x hidden; small, to
    stay in cache: one draw and one tangent at a time for LJ55; larger batches are split into equal
    sub-batches); no graph is kept (the result is for evaluation, not training). ``compile``: run the per-chunk
    work through ``torch.compile`` (None: :func:`compile_default`)."""
    b, n, d = x.shape
    per_draw = n * n * egnn.embed.out_features
    if b > 1 and b * per_draw > max_elements:  # draws in equal sub-batches that stay in cache
        sub = max(c for c in range(1, b + 1) if b % c == 0 and c * per_draw <= max(max_elements, per_draw))
        if sub < b:
            parts = [egnn_update_divergence(egnn, h[i:i + sub], x[i:i + sub], max_elements, compile)
                     for i in range(0, b, sub)]
            return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    with torch.no_grad():
        x = x.detach()
        off = 1.0 - torch.eye(n, dtype=x.dtype, device=x.device)
        diff0 = x.unsqueeze(2) - x.unsqueeze(1)
        d0 = (diff0 * diff0).sum(-1)
        hh = egnn.embed(h)
        layers, xl = [], x
        for layer in egnn.layers:
            lay = _Layer(layer, hh, xl, d0, off)
            layers.append(lay)
            xl, hh = lay.x_new, lay.h_new
        first = layers[0]
        # first layer's messages: dm_ij = G_ij d(d2_ij), d2 and d0 the same function of x there
        w_e = first.layer.e_edge.weight  # (F, 2)
        g_edge = first.message_tangent((w_e[:, 0] + w_e[:, 1]).expand_as(first.sp_pre))  # (B, n, n, F), i == j: 0
        z1 = first.layer.normalization_factor
        p_row = torch.einsum("bijf,bija->biaf", g_edge, first.diff)  # sum_j G_kj (x_k - x_j)^a
        hidden = g_edge.shape[-1]
        per_tangent = b * n * n * hidden
        bound = max(1, min(n * d, max_elements // max(per_tangent, 1)))
        chunk = max(c for c in range(1, bound + 1) if (n * d) % c == 0)  # equal chunks: one compiled shape
        div = torch.zeros(b, dtype=x.dtype, device=x.device)
        fn = _chunk_trace
        if compile_default() if compile is None else compile:
            fn = _compiled_chunk_trace() or _chunk_trace
        for start in range(0, n * d, chunk):
            idx = torch.arange(start, min(start + chunk, n * d), device=x.device)
            div = div + fn(layers, idx // d, idx % d, g_edge, p_row, z1, diff0, n, d)
    return xl, div


def _chunk_trace(layers, ks, axes, g_edge, p_row, z1, diff0, n, d):
    """Sum over the tangents ``(ks[t], axes[t])`` of the diagonal entries of ``d u / d x`` (B,)."""
    t = len(ks)
    b = diff0.shape[0]
    dtype, device = diff0.dtype, diff0.device
    tr = torch.arange(t, device=device)
    onehot = torch.zeros(t, 1, n, d, dtype=dtype, device=device)
    onehot[tr, 0, ks, axes] = 1.0
    # d(d0_ij) = 2 (x_i - x_j) . (dx_i - dx_j): tangents touch row k and column k only
    tangent = onehot[:, 0]
    dd0 = 2 * (torch.einsum("bijc,tic->tbij", diff0, tangent) - torch.einsum("bijc,tjc->tbij", diff0, tangent))
    # first layer, messages, sparse: dagg_i = (2/Z) (delta_ik sum_j G_kj diff_kj^a - G_ik diff_ik^a)
    g_col = g_edge[:, :, ks].permute(2, 0, 1, 3)  # (T, B, n, F): G_{i k_t}
    diff_col = diff0[:, :, ks].permute(2, 0, 1, 3)[tr, :, :, axes]  # (T, B, n): (x_i - x_k)^a
    dagg = -g_col * diff_col[..., None]
    row = p_row[:, ks].transpose(0, 1)[tr, :, axes]  # (T, B, F)
    dagg[tr, :, ks] += row
    dagg = dagg * (2 / z1)
    dh = None
    dx = onehot.expand(t, b, n, d)
    trace = torch.zeros(b, dtype=dtype, device=device)
    for li, lay in enumerate(layers):
        last = li == len(layers) - 1
        layer, z_norm = lay.layer, lay.layer.normalization_factor
        ddiff = dx.unsqueeze(3) - dx.unsqueeze(2)  # (T, B, n, n, d)
        dd2 = 2 * (lay.diff * ddiff).sum(-1)  # (T, B, n, n)
        de = torch.stack([dd2, dd0], -1)
        if li > 0:
            dpre = _edge(dh.matmul(layer.e_recv.weight.t()), dh.matmul(layer.e_send.weight.t()))
            dpre = dpre + de.matmul(layer.e_edge.weight.t())
            dagg = (lay.message_tangent(dpre)).sum(3) / z_norm  # i == j masked by sp_z
        dh = lay.h_tangent(dh, dagg)
        dxr, dxs = dh.matmul(layer.x_recv.weight.t()), dh.matmul(layer.x_send.weight.t())
        if not last:
            dprex = _edge(dxr, dxs) + de.matmul(layer.x_edge.weight.t())
            dmx = lay.sp_zx * (lay.sp_prex * dprex).matmul(layer.phi_x[1].weight.t())
            dw = lay.dw_ds * dmx.matmul(layer.phi_x[3].weight[0])  # (T, B, n, n)
            ddir = ddiff * lay.q1[..., None] - lay.diff * (dd2 * lay.q2)[..., None]
            ddelta = (ddir * lay.w[..., None] + lay.direction * dw[..., None]).sum(3) / z_norm  # (T, B, n, d)
            trace = trace + ddelta[tr, :, ks, axes].sum(0)
            dx = dx + ddelta
            continue
        # last layer: the update of particle k_t alone, over the edges (k_t <- j)
        dprex = dxr[tr, :, ks].unsqueeze(2) + dxs + de[tr, :, ks].matmul(layer.x_edge.weight.t())  # (T, B, n, F)
        sp_prex, sp_zx = _gather_rows(lay.sp_prex, ks), _gather_rows(lay.sp_zx, ks)
        dmx = sp_zx * (sp_prex * dprex).matmul(layer.phi_x[1].weight.t())
        dw = _gather_rows(lay.dw_ds, ks) * dmx.matmul(layer.phi_x[3].weight[0])  # (T, B, n)
        diff_k = _gather_rows(lay.diff, ks)[tr, :, :, axes]  # (T, B, n): (x_k - x_j)^a of this layer
        ddiff_k = ddiff[tr, :, ks, :, axes]  # (T, B, n)
        dd2_k = dd2[tr, :, ks]
        ddir = ddiff_k * _gather_rows(lay.q1, ks) - diff_k * dd2_k * _gather_rows(lay.q2, ks)
        dirk = _gather_rows(lay.direction, ks)[tr, :, :, axes]
        trace = trace + (ddir * _gather_rows(lay.w, ks) + dirk * dw).sum((0, 2)) / z_norm
    return trace
