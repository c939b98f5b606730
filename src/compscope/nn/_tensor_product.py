"""Channel-wise tensor products ("uvu", "uuu") as a few dense contractions.

Both tensor products of the force field are channel-diagonal: channel ``u`` of the output only sees channel
``u`` of the first input (and of the second, for "uuu"). Per channel they are a fixed bilinear map

.. math:: z_{u k} = w_{u, p(k)} \\sum_{a b} C_{a b k}\\, x_{u a}\\, y_{(u) b}

where ``a``/``b`` run over the per-channel components of the inputs, ``k`` over the components of every path
(instruction) and ``C`` stacks the paths' Clebsch-Gordan blocks with e3nn's normalisation. e3nn's
:class:`~e3nn.o3.TensorProduct` evaluates each path separately (hundreds of small ops per call, forward and
backward); here the whole product is a gather, one matmul (or ``bmm``), one multiply and a gather back.

``C`` is read off an e3nn ``TensorProduct`` built with the same irreps and instructions (one probe per path with
unit weights), so the result equals e3nn's exactly — the test suite compares them — and the weights keep e3nn's
layout (instruction-major, then channel), so ``weight_numel`` and initialisation are the same.
"""

from __future__ import annotations

import torch
from e3nn import o3
from torch import nn

__all__ = ["ChannelwiseTensorProduct"]


def _channel_layout(irreps: o3.Irreps, mul: int) -> torch.Tensor:
    """Index (d * mul,) from the component-major channel layout (component a, channel u) to e3nn's layout."""
    d = sum(ir.dim for _, ir in irreps)
    perm = torch.empty(d * mul, dtype=torch.long)
    offset, a0 = 0, 0
    for m, ir in irreps:
        for u in range(mul):
            for c in range(ir.dim):
                perm[(a0 + c) * mul + u] = offset + u * ir.dim + c
        offset += m * ir.dim
        a0 += ir.dim
    return perm


_INVERSES: dict = {}


def _inverse(perm: torch.Tensor) -> torch.Tensor:
    """The inverse of the permutation ``perm`` (cached per tensor)."""
    key = (perm.data_ptr(), perm.shape[0], perm._version)
    inv = _INVERSES.get(key)
    if inv is None or inv.shape != perm.shape:
        inv = torch.empty_like(perm)
        inv[perm] = torch.arange(perm.shape[0], device=perm.device)
        if len(_INVERSES) > 64:
            _INVERSES.clear()
        _INVERSES[key] = inv
    return inv


class _Permute(torch.autograd.Function):
    """Columns ``x[:, perm]`` of a permutation ``perm``; the backward gathers with the inverse (differentiable
    again: training through forces)."""

    @staticmethod
    def forward(ctx, x, perm, inv):
        ctx.save_for_backward(perm, inv)
        return x.index_select(1, perm)

    @staticmethod
    def backward(ctx, grad):
        perm, inv = ctx.saved_tensors
        return _Permute.apply(grad, inv, perm), None, None


class ChannelwiseTensorProduct(nn.Module):
    """Drop-in replacement for a channel-wise ``e3nn.o3.TensorProduct`` (all instructions "uvu" or all "uuu").

    Args:
        irreps_in1: first input; every irrep with the same multiplicity ``u``.
        irreps_in2: second input; multiplicity 1 for "uvu", ``u`` for "uuu".
        irreps_out: output irreps; each instruction writes its own output slot (``u`` x ``ir_out``).
        instructions: e3nn instructions ``(i_in1, i_in2, i_out, mode, has_weight)``.
        shared_weights: one weight vector (a parameter, "uuu" style) instead of per-sample weights.

    Shapes:
        x1 (B, irreps_in1.dim), x2 (B, irreps_in2.dim), weight (B, weight_numel) when not shared
        -> (B, irreps_out.dim)
    """

    def __init__(self, irreps_in1, irreps_in2, irreps_out, instructions, shared_weights: bool = False):
        super().__init__()
        self.irreps_in1, self.irreps_in2, self.irreps_out = (o3.Irreps(i) for i in (irreps_in1, irreps_in2,
                                                                                    irreps_out))
        modes = {ins[3] for ins in instructions}
        if len(modes) != 1 or modes.pop() not in ("uvu", "uuu"):
            raise ValueError(f"all instructions must be 'uvu' or all 'uuu', got {sorted({i[3] for i in instructions})}")
        self.mode = instructions[0][3]
        muls1 = {m for m, _ in self.irreps_in1}
        if len(muls1) != 1:
            raise ValueError(f"irreps_in1 needs one multiplicity, got {self.irreps_in1}")
        self.mul = mul = muls1.pop()
        want2 = 1 if self.mode == "uvu" else mul
        if any(m != want2 for m, _ in self.irreps_in2):
            raise ValueError(f"irreps_in2 needs multiplicity {want2} for mode {self.mode}, got {self.irreps_in2}")
        slots = [ins[2] for ins in instructions]
        if sorted(slots) != list(range(len(self.irreps_out))):
            raise ValueError("each output slot must be written by exactly one instruction")
        if any(m != mul for m, _ in self.irreps_out):
            raise ValueError(f"irreps_out needs multiplicity {mul}, got {self.irreps_out}")

        dtype = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)  # exact CG coefficients whatever the model's dtype
        try:
            ref = o3.TensorProduct(self.irreps_in1, self.irreps_in2, self.irreps_out, instructions,
                                   shared_weights=shared_weights, internal_weights=shared_weights)
        finally:
            torch.set_default_dtype(dtype)
        self.weight_numel = ref.weight_numel
        self.num_paths = len(instructions)
        # every path has u weights (path shape (u, 1) or (u,)), so path p's weights start at p * u
        assert self.weight_numel == self.num_paths * mul, (self.weight_numel, self.num_paths, mul)
        self.shared_weights = bool(shared_weights)
        if shared_weights:
            self.weight = nn.Parameter(ref.weight.detach().to(dtype))  # (P * u,), e3nn's init and layout
        perm1, perm2 = _channel_layout(self.irreps_in1, mul), _channel_layout(self.irreps_in2, want2)
        cg, path_of_k, k_of_out = self._probe(ref, perm1, perm2, want2, shared_weights)
        d1 = cg.shape[0]
        d2 = cg.shape[1]
        self.d1, self.d2, self.k = d1, d2, cg.shape[2]
        if self.mode == "uvu":  # contract y with C first: (d2, K * d1)
            cg = cg.permute(1, 2, 0).reshape(d2, self.k * d1)
        else:  # contract the per-channel outer product: (K, d1 * d2)
            cg = cg.reshape(d1 * d2, self.k).t().contiguous()
        self._sparse = None  # SparseCG for the fused CPU kernels, built on first use
        self._cg64 = cg  # exact master copy: casts start from it, so float32 -> float64 loses nothing
        self.register_buffer("cg", cg.to(dtype), persistent=False)
        self.register_buffer("perm1", perm1)
        self.register_buffer("perm2", perm2)
        self.register_buffer("path_of_k", path_of_k)
        self.register_buffer("perm_out", k_of_out)

    @staticmethod
    def _probe(ref, perm1, perm2, mul2, shared):
        """Per-path CG blocks (d1, d2, K) with e3nn's normalisation, path index (K,) and output gather (out.dim,).

        ``perm1``/``perm2`` are the inputs' channel layouts (:func:`_channel_layout`), ``mul2`` the second input's
        multiplicity."""
        irreps1, irreps2, irreps_out = ref.irreps_in1, ref.irreps_in2, ref.irreps_out
        mul = irreps1[0].mul
        d1 = sum(ir.dim for _, ir in irreps1)
        d2 = sum(ir.dim for _, ir in irreps2)
        x1 = torch.zeros(d1 * d2, irreps1.dim, dtype=torch.float64)
        x2 = torch.zeros(d1 * d2, irreps2.dim, dtype=torch.float64)
        for a in range(d1):
            for b in range(d2):
                x1[a * d2 + b, perm1[a * mul]] = 1.0  # channel 0, component a
                x2[a * d2 + b, perm2[b * mul2]] = 1.0
        blocks, path_of_k = [], []
        out_slices = irreps_out.slices()
        k_start = {}
        # K runs over the output slots in order, so (B, K, u) is irreps_out in component-major layout
        for p in sorted(range(len(ref.instructions)), key=lambda q: ref.instructions[q].i_out):
            ins = ref.instructions[p]
            w = torch.zeros(ref.weight_numel, dtype=torch.float64)
            w[p * mul: (p + 1) * mul] = 1.0
            with torch.no_grad():
                if shared:
                    out = ref(x1, x2, w)
                else:
                    out = ref(x1, x2, w.expand(d1 * d2, -1))
            ir_dim = irreps_out[ins.i_out].ir.dim
            sl = out_slices[ins.i_out]
            blk = out[:, sl.start: sl.start + ir_dim]  # channel 0 of this path's slot
            k_start[p] = sum(b.shape[-1] for b in blocks)
            blocks.append(blk.reshape(d1, d2, ir_dim))
            path_of_k += [p] * ir_dim
        cg = torch.cat(blocks, dim=-1)  # (d1, d2, K)
        k_of_out = torch.empty(irreps_out.dim, dtype=torch.long)
        for p, ins in enumerate(ref.instructions):
            sl = out_slices[ins.i_out]
            ir_dim = irreps_out[ins.i_out].ir.dim
            for u in range(mul):
                for c in range(ir_dim):
                    k_of_out[sl.start + u * ir_dim + c] = (k_start[p] + c) * mul + u
        return cg, torch.tensor(path_of_k, dtype=torch.long), k_of_out

    def _apply(self, fn, recurse=True):
        out = super()._apply(fn, recurse)
        self.cg = fn(self._cg64).to(device=self.cg.device, dtype=self.cg.dtype) if self.cg.is_floating_point() \
            else self.cg
        return out

    def sparse_cg(self):
        """The CG coefficients as a :class:`~compscope.nn._fused.SparseCG` (for the fused CPU kernels)."""
        if self._sparse is None:
            from ._fused import SparseCG

            if self.mode == "uvu":  # (d2, K * d1) -> (d1, d2, K)
                cg = self._cg64.view(self.d2, self.k, self.d1).permute(2, 0, 1)
            else:  # (K, d1 * d2) -> (d1, d2, K)
                cg = self._cg64.t().reshape(self.d1, self.d2, self.k)
            self._sparse = SparseCG(cg, self.path_of_k)
        return self._sparse

    def to_channels(self, x: torch.Tensor, second: bool = False, gather_backward: bool = False) -> torch.Tensor:
        """e3nn layout (B, irreps.dim) -> component-major channels (B, d, u) of input 1 (or 2, for "uuu").

        ``gather_backward`` (the fused CPU path): the layout change is a permutation of columns, so its backward is
        the inverse permutation, a gather (``index_select``'s own backward is a scatter-add over all columns,
        twice as slow); not traceable to TorchScript (a Python autograd function)."""
        perm, d = (self.perm2, self.d2) if second else (self.perm1, self.d1)
        if gather_backward and perm.shape[0] == x.shape[1]:
            return _Permute.apply(x, perm, _inverse(perm)).view(x.shape[0], d, self.mul)
        return x.index_select(1, perm).view(x.shape[0], d, self.mul)

    def from_channels(self, z: torch.Tensor) -> torch.Tensor:
        """Raw products (B, K, u) (or (B, K * u), e.g. after a sum over edges) -> e3nn layout (B, irreps_out.dim)."""
        return z.reshape(z.shape[0], self.k * self.mul).index_select(1, self.perm_out)

    def product(self, x: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """The weighted product in the channel layout: x (B, d1, u), x2 (B, irreps_in2.dim) for "uvu" or
        (B, d2, u) for "uuu" -> (B, K, u). Linear maps over channels commute with sums over samples, so
        callers may sum raw products (over edges) before :meth:`from_channels`."""
        b = x.shape[0]
        if self.mode == "uvu":
            m = (x2 @ self.cg).view(b, self.k, self.d1)  # (B, K, d1): the CG contracted with y
            z = torch.einsum("bka,bau->bku", m, x)  # (B, K, u)
        else:
            outer = (x.unsqueeze(2) * x2.unsqueeze(1)).view(b, self.d1 * self.d2, self.mul)
            z = torch.matmul(self.cg, outer)  # (B, K, u)
        if self.shared_weights:
            w = self.weight.view(self.num_paths, self.mul).index_select(0, self.path_of_k)  # (K, u)
        else:
            if weight is None:
                raise ValueError("this tensor product takes per-sample weights (B, weight_numel)")
            w = weight.view(b, self.num_paths, self.mul).index_select(1, self.path_of_k)  # (B, K, u)
        return z * w

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        x2c = x2 if self.mode == "uvu" else self.to_channels(x2, second=True)
        return self.from_channels(self.product(self.to_channels(x1), x2c, weight))  # (B, irreps_out.dim)

