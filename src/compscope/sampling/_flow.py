"""E(n)-equivariant continuous normalizing flow with an exact log-density (E-NF; Garcia Satorras et al. 2021).

The flow transports a mean-free standard Gaussian (the base, on the ``(n_particles - 1) * dim``-dimensional
subspace of zero centre of mass) to the data by ``dx/dt = v(t, x)``, ``t: 0 -> 1``, with an EGNN vector field
(:class:`compscope.nn.EGNN`, all pairs of a configuration connected, ``t`` as the node feature) whose output is
projected back to zero mean. Log-densities follow the instantaneous change of variables (Chen et al. 2018)

    log q_1(x(1)) = log p_0(x(0)) - int_0^1 div v(t, x(t)) dt,

integrated together with ``x`` by classical fixed-step RK4 (:func:`compscope.nn.ode_solve`, the continuous-flow
core shared with ``generate``). The divergence is computed **exactly**, without a graph by forward-mode
differentiation written out for the EGNN (:func:`compscope.nn.egnn_update_divergence`: 1.5-2.7x cheaper than
autograd in eager mode, 3.2-7.6x compiled, on LJ13, LJ55 and alanine-dipeptide-sized fields in float32 and float64:
``benchmarks/results/cnf_divergence.json``), by one autograd pass per
coordinate when a graph is kept, or, for training on larger systems, by Hutchinson's unbiased estimator with
Rademacher noise.

The exact divergence costs ``n_particles * dim`` tangent passes (about 40 field evaluations for LJ13), so RK4 of
the augmented state, which needs it at every one of the 4 stages of every step, spends almost all its time on it.
``div_nodes=M`` (:meth:`EquivariantCNF.integrate`) separates the two integrals: ``x(t)`` is integrated by RK4
with the field alone (the uniform grid of ``n_steps`` plus the M nodes), and ``int div v(t, x(t)) dt`` by
M-point Gauss-Legendre quadrature in ``t`` of the exact divergence at the trajectory's states at the nodes (on
each of ``div_panels`` panels; :func:`compscope.nn.integrate_divergence` and :func:`compscope.nn.quadrature_nodes`,
the shared implementation): M x panels divergences per draw instead of
``4 n_steps``. Both errors vanish as the steps and nodes grow (RK4 error ``O(h^4)``, Gauss-Legendre that of a
polynomial fit of ``div v(t, x(t))`` of degree ``2M - 1`` per panel); :func:`flow_integration_error` measures
them against a fine solve.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from compscope.nn import (
    EGNN,
    divergence_exact,
    divergence_hutchinson,
    egnn_update_divergence,
    integrate_divergence,
    ode_solve,
    quadrature_nodes,
)

from ._errors import SamplingInputError
from ._targets import check_positions

__all__ = ["EquivariantVectorField", "EquivariantCNF", "divergence_exact", "divergence_hutchinson",
           "flow_integration_error", "quadrature_nodes", "mean_free_log_normal", "fold_chirality"]


def _centre(x: torch.Tensor) -> torch.Tensor:
    return x - x.mean(1, keepdim=True)


def mean_free_log_normal(z: torch.Tensor) -> torch.Tensor:
    """Log-density (batch,) of the standard Gaussian on the zero-centre-of-mass subspace (``(n-1) dim`` dims);
    ``z`` must be centred."""
    k = (z.shape[1] - 1) * z.shape[2]
    return -0.5 * z.pow(2).sum((1, 2)) - 0.5 * k * math.log(2 * math.pi)


class EquivariantVectorField(nn.Module):
    """``v(t, x)``: an EGNN over all pairs of each configuration, velocity = coordinate update, mean removed.

    Args:
        n_particles, dim: event shape.
        hidden: EGNN width.
        num_layers: EGNN layers.
        coords_range: bound of the coordinate update (EGNN ``tanh`` range, split over layers).
        init_gain: Xavier gain of the last coordinate layer (small: the flow starts near the identity).
        atom_types: (n_particles,) integer type of every particle (one-hot node features beside ``t``): particles
            of different types are told apart (molecules: one type per atom makes every atom distinguishable, as
            for alanine dipeptide); None: all identical (DW4, LJn), permutation-equivariant.
    """

    def __init__(self, n_particles: int, dim: int, hidden: int = 32, num_layers: int = 3, coords_range: float = 15.0,
                 init_gain: float = 1e-3, atom_types: list[int] | None = None):
        super().__init__()
        self.n_particles, self.dim = int(n_particles), int(dim)
        if atom_types is not None:
            types = torch.as_tensor(atom_types, dtype=torch.long)
            if types.shape != (self.n_particles,) or types.min() < 0:
                raise SamplingInputError(f"atom_types needs {self.n_particles} non-negative integers, got "
                                         f"{list(types.shape)}", hint="one type index per particle")
            self.register_buffer("types", nn.functional.one_hot(types).float(), persistent=False)
        else:
            self.types = None
        n_feat = 1 + (0 if self.types is None else self.types.shape[1])
        self.egnn = EGNN(in_features=n_feat, hidden=hidden, num_layers=num_layers, coords_range=coords_range)
        for layer in self.egnn.layers:
            nn.init.xavier_uniform_(layer.phi_x[-1].weight, gain=init_gain)
        n = self.n_particles
        snd, rcv = (~torch.eye(n, dtype=torch.bool)).nonzero(as_tuple=True)
        self.register_buffer("pairs", torch.stack([snd, rcv]), persistent=False)  # (2, n (n-1))

    def forward(self, t: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        offsets = (torch.arange(b, device=x.device) * n).repeat_interleave(self.pairs.shape[1])
        edge_index = self.pairs.repeat(1, b) + offsets  # (2, b n (n-1))
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device).reshape(-1)
        h = t.expand(b).repeat_interleave(n)[:, None]  # (b n, 1)
        if self.types is not None:
            h = torch.cat([h, self.types.to(x.dtype).repeat(b, 1)], 1)  # (b n, 1 + n_types)
        flat = x.reshape(b * n, d)
        _, moved = self.egnn(h, flat, edge_index)
        return _centre((moved - flat).reshape(b, n, d))  # (b, n, d)

    def velocity_and_divergence(self, t: torch.Tensor | float, x: torch.Tensor,
                                compile: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(v (b, n, d), div v (b,))`` exactly, without autograd (:func:`compscope.nn.egnn_update_divergence`,
        no graph kept). Removing the mean does not change the divergence: the update is translation invariant,
        so the columns of its Jacobian along a translation vanish and ``tr(P J) = tr(J)`` for the centring
        ``P``."""
        b, n, d = x.shape
        h = torch.as_tensor(t, dtype=x.dtype, device=x.device).reshape(-1).expand(b)[:, None, None].expand(b, n, 1)
        if self.types is not None:
            h = torch.cat([h, self.types.to(x.dtype).expand(b, n, -1)], -1)
        moved, div = egnn_update_divergence(self.egnn, h, x, compile=compile)
        return _centre(moved - x), div

    def divergence(self, t: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
        """Exact ``div v`` (b,) by :meth:`velocity_and_divergence`."""
        return self.velocity_and_divergence(t, x)[1]


class EquivariantCNF(nn.Module):
    """E(n)-equivariant continuous normalizing flow (E-NF) with exact log-densities.

    Args:
        n_particles, dim: event shape.
        hidden, num_layers, coords_range, init_gain: of the :class:`EquivariantVectorField`.
        n_steps: RK4 steps over ``t in [0, 1]`` (the error of log q falls as ``n_steps^-4``).
        atom_types: particle types of the field (see :class:`EquivariantVectorField`).
        div_nodes: default of :meth:`integrate`'s ``div_nodes`` for exact log-densities (None: the divergence at
            every RK4 stage; M: M-node Gauss-Legendre quadrature of the exact divergence along the RK4 path).
        div_panels: the quadrature is composite, M nodes on each of ``div_panels`` panels of the flow time
            (:func:`quadrature_nodes`).

    The attribute ``div_method`` chooses how exact divergences are computed when no graph is kept: ``"egnn"``
    (default; forward-mode through the EGNN, :func:`compscope.nn.egnn_update_divergence`, compiled when
    ``COMPSCOPE_COMPILE_DIVERGENCE=1``) or ``"autograd"`` (one backward pass per coordinate,
    :func:`compscope.nn.divergence_exact`; the reference). Training with ``create_graph`` always uses autograd.

    Examples:
        >>> flow = EquivariantCNF(4, 2, hidden=8, num_layers=1, n_steps=4).double()
        >>> x, log_q = flow.sample(3, generator=torch.Generator().manual_seed(0))
        >>> x.shape, log_q.shape
        (torch.Size([3, 4, 2]), torch.Size([3]))
    """

    def __init__(self, n_particles: int, dim: int, hidden: int = 32, num_layers: int = 3,
                 coords_range: float = 15.0, init_gain: float = 1e-3, n_steps: int = 20,
                 atom_types: list[int] | None = None, div_nodes: int | None = None, div_panels: int = 1):
        super().__init__()
        self.n_particles, self.dim, self.n_steps = int(n_particles), int(dim), int(n_steps)
        self.div_nodes = _check_nodes(div_nodes)
        self.div_panels = _check_nodes(div_panels)
        self.field = EquivariantVectorField(n_particles, dim, hidden, num_layers, coords_range, init_gain,
                                            atom_types)
        self.div_method = "egnn"

    def _rhs(self, t: float, x: torch.Tensor, noise: torch.Tensor | None, create_graph: bool,
             divergence: bool = True):
        if not divergence:
            return self.field(t, x), torch.zeros(len(x), dtype=x.dtype, device=x.device)
        if noise is None and not create_graph and self.div_method == "egnn":
            with torch.no_grad():
                return self.field.velocity_and_divergence(t, x.detach())
        with torch.enable_grad():
            if not x.requires_grad:
                x = x.requires_grad_(True)
            v = self.field(t, x)
            if noise is None:
                div = divergence_exact(v, x, create_graph)
            else:
                div = divergence_hutchinson(v, x, noise, create_graph)
        if not create_graph:
            v, div = v.detach(), div.detach()
        return v, div

    def integrate(self, x: torch.Tensor, t0: float, t1: float, n_steps: int | None = None,
                  noise: torch.Tensor | None = None, create_graph: bool = False, divergence: bool = True,
                  div_nodes: int | None = 0):
        """RK4 from ``t0`` to ``t1`` of ``(x, a)`` with ``da/dt = div v``: returns ``(x(t1), a(t1))``, ``a(t0) = 0``.

        ``noise`` selects the Hutchinson divergence with that noise (fixed along the path); ``create_graph``
        keeps the graph for training (backpropagation through the solver); ``divergence=False`` integrates ``x``
        only (``a`` stays 0). ``div_nodes=M`` (exact divergence without ``create_graph`` only; 0, the default,
        takes the flow's ``div_nodes``, None forces the augmented RK4): ``x`` by RK4 on the field alone over the
        ``n_steps`` grid merged with the M Gauss-Legendre nodes, ``a`` by Gauss-Legendre quadrature of the exact
        divergence at the path's states at the nodes (module docstring)."""
        n = int(n_steps or self.n_steps)
        nodes = self.div_nodes if div_nodes == 0 else _check_nodes(div_nodes)
        if nodes is not None and divergence and noise is None and not create_graph:
            return self._integrate_quadrature(x, t0, t1, n, nodes)
        grid = [t0 + k * (t1 - t0) / n for k in range(n + 1)]
        a = torch.zeros(len(x), dtype=x.dtype, device=x.device)

        def rhs(t, state):
            return self._rhs(t, state[0], noise, create_graph, divergence)

        def step_start(state):
            return state if create_graph else (state[0].detach(), state[1])

        x, a = ode_solve(rhs, (x, a), grid, "rk4", step_start)
        return x, a

    def _integrate_quadrature(self, x: torch.Tensor, t0: float, t1: float, n: int, nodes: int):
        if (min(t0, t1), max(t0, t1)) != (0.0, 1.0):
            raise SamplingInputError(f"the quadrature of the divergence runs over the whole flow time, got "
                                     f"[{t0}, {t1}]", hint="integrate from 0 to 1 or 1 to 0, or div_nodes=None")
        fast = self.field.divergence if self.div_method == "egnn" else None
        return integrate_divergence(self.field, x, n, nodes, self.div_panels, reverse=t1 < t0, field_divergence=fast)

    def log_prob(self, x: torch.Tensor, n_steps: int | None = None, exact: bool = True,
                 generator: torch.Generator | None = None, create_graph: bool = False,
                 div_nodes: int | None = 0) -> torch.Tensor:
        """``log q(x)`` (batch,) on the mean-free subspace (``x`` is centred first): integrate data -> base.

        ``exact=False`` uses one Hutchinson probe per configuration (unbiased; for training); ``div_nodes`` as in
        :meth:`integrate`."""
        x = _centre(check_positions(x, self.n_particles, self.dim))
        noise = None if exact else _centre(torch.randint(0, 2, x.shape, generator=generator).to(x) * 2 - 1)
        z, a = self.integrate(x, 1.0, 0.0, n_steps, noise, create_graph, div_nodes=div_nodes)
        return mean_free_log_normal(z) + a  # a = int_1^0 div dt = -int_0^1 div dt

    def sample(self, n: int, n_steps: int | None = None, generator: torch.Generator | None = None,
               exact: bool = True, create_graph: bool = False,
               div_nodes: int | None = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x (n, n_particles, dim), log q(x) (n,))``: base draws pushed to ``t = 1`` with the exact divergence.

        ``exact=False`` integrates one Hutchinson probe per draw instead (an unbiased estimate of log q, for
        training); ``create_graph=True`` keeps the graph through the solver, so that ``x`` and ``log q`` can be
        differentiated with respect to the flow's parameters (reverse-KL training); both are detached
        otherwise. ``div_nodes`` as in :meth:`integrate`."""
        if n < 1:
            raise SamplingInputError(f"n must be positive, got {n}", hint="e.g. n=1000")
        p = next(self.parameters())
        z = _centre(torch.randn(n, self.n_particles, self.dim, generator=generator, dtype=p.dtype,
                                device=p.device))
        noise = None if exact else _centre(torch.randint(0, 2, z.shape, generator=generator).to(z) * 2 - 1)
        x, a = self.integrate(z, 0.0, 1.0, n_steps, noise, create_graph, div_nodes=div_nodes)
        log_q = mean_free_log_normal(z) - a
        if create_graph:
            return x, log_q
        return x.detach(), log_q.detach()


def _check_nodes(nodes: int | None) -> int | None:
    if nodes is None:
        return None
    if int(nodes) != nodes or nodes < 1:
        raise SamplingInputError(f"div_nodes={nodes!r}: the number of Gauss-Legendre nodes must be a positive "
                                 "integer", hint="e.g. div_nodes=4, or None for the divergence at every RK4 stage")
    return int(nodes)


def flow_integration_error(flow: EquivariantCNF, n: int, settings: list[tuple],
                           reference: tuple = (64, None), seed: int = 0,
                           reference_dtype: torch.dtype | None = None) -> list[dict]:
    """Error of ``log q`` and of the samples of cheaper solver settings against a fine solve, on the same ``n``
    base draws. A setting is ``(n_steps, div_nodes)`` or ``(n_steps, div_nodes, div_panels)`` (the arguments of
    :meth:`EquivariantCNF.integrate`); for each, the RMS and maximum of ``log q - log q_ref`` over the draws, of its
    deviation from the mean (what changes importance weights: a constant offset cancels in self-normalised
    estimates), the RMS position difference and the CPU seconds per draw. ``reference`` defaults to 64 RK4 steps
    with the divergence at every stage; ``reference_dtype`` (e.g. float64 for a float32 flow) solves it with a copy
    of the flow in that dtype, so that the error of the flow's own precision is measured too."""
    import copy
    import time

    z = _centre(torch.randn(n, flow.n_particles, flow.dim, generator=torch.Generator().manual_seed(seed),
                            dtype=torch.float64))
    ref_flow = flow if reference_dtype is None else copy.deepcopy(flow).to(reference_dtype)

    def run(f, steps, nodes, panels=1):
        panels0 = f.div_panels
        f.div_panels = _check_nodes(panels)
        try:
            c = time.process_time()
            x, a = f.integrate(z.to(next(f.parameters()).dtype), 0.0, 1.0, steps, div_nodes=nodes)
            return x.double(), mean_free_log_normal(z) - a.double(), (time.process_time() - c) / n
        finally:
            f.div_panels = panels0

    x_ref, lq_ref, s_ref = run(ref_flow, *reference)
    out = []
    for setting in settings:
        x, lq, sec = run(flow, *setting)
        d = lq - lq_ref
        out.append({"n_steps": setting[0], "div_nodes": setting[1],
                    "div_panels": setting[2] if len(setting) > 2 else 1,
                    "log_q_rms": d.pow(2).mean().sqrt().item(), "log_q_max": d.abs().max().item(),
                    "log_q_centred_rms": (d - d.mean()).pow(2).mean().sqrt().item(),
                    "x_rms": (x - x_ref).pow(2).mean().sqrt().item(), "cpu_s_per_draw": sec})
    out.append({"reference": {"n_steps": reference[0], "div_nodes": reference[1],
                              "div_panels": reference[2] if len(reference) > 2 else 1,
                              "dtype": str(next(ref_flow.parameters()).dtype), "cpu_s_per_draw": s_ref}})
    return out


def fold_chirality(x: torch.Tensor, log_q: torch.Tensor, improper: tuple[int, int, int, int],
                   sign: float) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Mirror the samples of the wrong handedness and account for it in ``log q`` (E(n) flows only).

    A flow with an O(n)-invariant density has ``q(x) = q(Px)`` for the mirror image ``Px``, so the density of the
    folded samples on the wanted enantiomer is ``q(x) + q(Px) = 2 q(x)``: every ``log q`` gains log 2. The
    handedness is the sign of the improper dihedral ``improper`` (e.g. N-CA-C-CB of an amino acid; ``sign`` that
    of the wanted enantiomer). Returns the folded positions, their log-density and the mirrored fraction.
    """
    from ._openmm_target import dihedral_angles

    chi = dihedral_angles(x, improper)
    wrong = torch.sign(chi) != float(np.sign(sign))
    flip = torch.ones(x.shape[-1], dtype=x.dtype)
    flip[-1] = -1.0
    x = torch.where(wrong[:, None, None], x * flip, x)
    return x, log_q + math.log(2.0), float(wrong.double().mean())
