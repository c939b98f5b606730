"""Large-step samplers: Metropolis-Hastings with a learned (or any) proposal kernel, batched over proposals and chains.

One move of a chain proposes ``y ~ q(. | x)`` and accepts it with probability

    a(x -> y) = min(1, exp(-u(y)) q(x | y) / (exp(-u(x)) q(y | x))),

so the proposal's **forward** ``log q(y | x)`` and **reverse** ``log q(x | y)`` densities both enter (a test shows
that dropping the reverse term biases an asymmetric kernel). Proposals (:class:`Proposal`):

* :class:`ConditionalFlowProposal`: a learned transition kernel ``q(x(t + tau) | x(t))`` (Timewarp, Klein et al.,
  NeurIPS 2023) with an exact conditional log-density;
* :class:`IndependenceProposal`: a Boltzmann generator ``q(y)`` (independence MH, ``q(y | x) = q(y)``; the current
  state's ``log q`` is cached, so a move costs one flow evaluation per proposal);
* :class:`GaussianKernel`: ``y = x + shift + contraction (centre - x) + scale * noise``, a kernel with a closed-form
  density, asymmetric when ``shift`` or ``contraction`` is non-zero (tests, and a cheap baseline).

**One cycle** (:meth:`LargeStepMH.step`) is a fixed schedule of ``mh_steps`` sequential MH steps followed by
``n_local`` MALA steps (the mixture of issue #21, 3c). The MH steps are computed in batches: ``n_proposals``
proposals are drawn from the current state at once and evaluated in one batch over all chains; the first accepted
one is taken (as Timewarp does) and the rejected ones before it count as steps that stayed at ``x``. This is the
sequential chain exactly (every proposal before the first acceptance was conditioned on the same ``x``);
proposals after the first acceptance are discarded, and the remaining budget of the cycle continues from the new
state. Because the schedule of kernels (``mh_steps`` MH, ``n_local`` MALA) does not depend on the chain, the state
at the end of a cycle is a draw of a fixed pi-invariant kernel: the recorded states need no weights. (Taking
"first accepted of K" as one move and recording only accepted states would not be exact: a state that rejects
more would be under-counted.)

A proposal whose energy is NaN or infinite (atoms on top of each other, a flow that diverged) is rejected and
counted (:attr:`LargeStepState.n_nonfinite`); so is a proposal whose ``log q`` is not finite.

**Exploration mode** (``metropolize=False``) accepts the first finite proposal of every step: it is *not* exact,
its chains do not sample the Boltzmann density, and every file and report it makes says so (``exact: false``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

from ._errors import SamplingInputError
from ._mcmc import HMC, MALA, _energy_force_or_inf, get_sampler
from ._targets import Target, check_positions

__all__ = ["Proposal", "GaussianKernel", "IndependenceProposal", "ConditionalFlowProposal", "LargeStepMH",
           "LargeStepState"]


class Proposal:
    """A proposal kernel ``q(y | x)`` with exact log-densities.

    Subclasses implement :meth:`sample` and :meth:`log_prob`; ``independent = True`` means ``q(y | x) = q(y)``.

    Shapes:
        x: (batch, n_particles, dim); sample returns y (batch, k, n_particles, dim) and log q(y | x) (batch, k);
        log_prob(y, x) takes y and x of the same shape (m, n_particles, dim) and returns (m,).
    """

    independent = False
    #: the draws of one batch stay valid after an acceptance: proposing y_j from any state reached by accepting an
    #: earlier draw of the batch gives the same y_j, and log q(y | x) depends on y alone (implies ``independent``)
    reusable = False

    def sample(self, x: torch.Tensor, k: int, generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def log_prob(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def config(self) -> dict:
        return {"name": type(self).__name__}


class GaussianKernel(Proposal):
    """``y = x + shift + contraction (centre - x) + scale * xi``, ``xi ~ N(0, I)`` (optionally centre-of-mass free).

    Args:
        scale: standard deviation of the noise (length).
        shift: constant drift added to every coordinate (scalar or broadcastable to (n_particles, dim)).
        contraction: pull towards ``centre`` in [0, 1) (an autoregressive kernel).
        centre: point the contraction pulls towards (default the origin).
        mean_free: project the noise to zero centre of mass (translation-invariant targets); the density is then
            on the ``(n - 1) dim`` subspace.
    """

    def __init__(self, scale: float, shift=0.0, contraction: float = 0.0, centre=None, mean_free: bool = False):
        if not scale > 0 or not 0 <= contraction < 1:
            raise SamplingInputError(f"need scale > 0 and 0 <= contraction < 1, got {scale}, {contraction}",
                                     hint="e.g. GaussianKernel(scale=0.5)")
        self.scale, self.contraction, self.mean_free = float(scale), float(contraction), bool(mean_free)
        self.shift = torch.as_tensor(shift, dtype=torch.float64)
        self.centre = None if centre is None else torch.as_tensor(centre, dtype=torch.float64)

    def _mean(self, x: torch.Tensor) -> torch.Tensor:
        c = torch.zeros((), dtype=x.dtype) if self.centre is None else self.centre.to(x.dtype)
        return x + self.shift.to(x.dtype) + self.contraction * (c - x)

    def _proj(self, v: torch.Tensor) -> torch.Tensor:
        return v - v.mean(-2, keepdim=True) if self.mean_free else v

    def _dof(self, x: torch.Tensor) -> int:
        n, d = x.shape[-2:]
        return (n - 1) * d if self.mean_free else n * d

    def sample(self, x, k, generator=None):
        b = x.shape[0]
        xi = self._proj(torch.randn((b, k) + tuple(x.shape[1:]), generator=generator, dtype=x.dtype))
        y = self._mean(x)[:, None] + self.scale * xi
        return y, self.log_prob(y.reshape((b * k,) + tuple(x.shape[1:])),
                                x.repeat_interleave(k, 0)).reshape(b, k)

    def log_prob(self, y, x):
        r = self._proj(y - self._mean(x))
        return (-0.5 * r.double().pow(2).sum((-2, -1)) / self.scale**2
                - self._dof(x) * (math.log(self.scale) + 0.5 * math.log(2 * math.pi)))

    def config(self) -> dict:
        return {"name": "gaussian", "scale": self.scale, "shift": self.shift.tolist(),
                "contraction": self.contraction, "mean_free": self.mean_free,
                "centre": None if self.centre is None else self.centre.tolist()}


class IndependenceProposal(Proposal):
    """A flow ``q(y)`` as an independence proposal: any object with ``sample(n, generator=)`` returning
    ``(y, log q(y))`` and ``log_prob(y)`` (e.g. :class:`compscope.sampling.EquivariantCNF`)."""

    independent = True
    reusable = True

    def __init__(self, flow):
        if not (hasattr(flow, "sample") and hasattr(flow, "log_prob")):
            raise SamplingInputError(f"{type(flow).__name__} has no sample/log_prob",
                                     hint="pass a flow with sample(n, generator=) and log_prob(x)")
        self.flow = flow

    def sample(self, x, k, generator=None):
        with torch.no_grad():
            y, lq = self.flow.sample(x.shape[0] * k, generator=generator)
        return y.to(x.dtype).reshape((x.shape[0], k) + tuple(x.shape[1:])), lq.double().reshape(x.shape[0], k)

    def log_prob(self, y, x=None):
        with torch.no_grad():
            return self.flow.log_prob(y).double()

    def config(self) -> dict:
        return {"name": "independence", "flow": type(self.flow).__name__}


class ConditionalFlowProposal(Proposal):
    """A learned transition kernel ``q(y | x)``: any object with ``sample(x, k, generator=)`` returning
    ``(y (batch, k, n, dim), log q (batch, k))`` and ``log_prob(y, x)`` (batch,)."""

    def __init__(self, model):
        if not (hasattr(model, "sample") and hasattr(model, "log_prob")):
            raise SamplingInputError(f"{type(model).__name__} has no sample/log_prob",
                                     hint="pass a conditional flow with sample(x, k, generator=) and log_prob(y, x)")
        self.model = model

    def sample(self, x, k, generator=None):
        with torch.no_grad():
            y, lq = self.model.sample(x, k, generator=generator)
        return y.to(x.dtype), lq.double()

    def log_prob(self, y, x):
        with torch.no_grad():
            return self.model.log_prob(y, x).double()

    def config(self) -> dict:
        cfg = getattr(self.model, "config", None)
        return {"name": "conditional_flow", "model": cfg() if callable(cfg) else type(self.model).__name__}


@dataclass
class LargeStepState:
    """State of a batch of chains under :class:`LargeStepMH`.

    Shapes (batch = chains):
        x (batch, n, dim); energy (batch,) kT; force (batch, n, dim); log_q (batch,) the cached ``log q(x)`` of an
        independence proposal (zeros otherwise); step_size () MALA's; counters (batch,) int64: ``mh_steps``
        (sequential MH steps done), ``accepted`` (accepted MH steps), ``proposals`` (proposals evaluated, discarded
        ones included), ``n_nonfinite`` (proposals rejected for a non-finite energy or log q), ``local_accepted``
        (accepted MALA steps); ``n_cycles`` ().
    """

    x: torch.Tensor
    energy: torch.Tensor
    force: torch.Tensor
    log_q: torch.Tensor
    step_size: torch.Tensor
    mh_steps: torch.Tensor
    accepted: torch.Tensor
    proposals: torch.Tensor
    n_nonfinite: torch.Tensor
    local_accepted: torch.Tensor
    n_cycles: int = 0

    @property
    def acceptance(self) -> torch.Tensor:
        """Accepted fraction of the sequential MH steps, per chain (batch,)."""
        return self.accepted.double() / self.mh_steps.clamp_min(1).double()

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class LargeStepMH:
    """Metropolis-Hastings with a proposal kernel, batched proposals, many chains and optional MALA steps.

    Args:
        proposal: a :class:`Proposal` (learned kernel, flow, Gaussian).
        n_proposals: proposals drawn from one state at once (``K``; the first accepted is taken).
        mh_steps: sequential MH steps per cycle (default ``n_proposals``).
        n_local: local moves after the MH steps of every cycle (0: none).
        local: the local sampler: a :class:`compscope.sampling.MALA` or :class:`compscope.sampling.HMC`, a dict of
            arguments (``name`` ``mala`` (default) or ``hmc``), or None for the default MALA; its step size is
            adapted only while the runner's ``burn_in`` lasts. HMC trajectories move the stiff coordinates the
            large steps leave alone (bond angles) about ``n_leapfrog`` times farther per force evaluation than
            MALA's diffusion.
        metropolize: False is the **exploration mode**: the first finite proposal is always accepted (biased).
        reuse_draws: False makes a reusable proposal discard the draws after the first accepted one, as any other
            proposal does (the same chain in distribution, fewer MH steps per energy; for comparisons).

    Examples:
        >>> from compscope.sampling import GaussianMixture
        >>> target = GaussianMixture([[-2.0, 0.0], [2.0, 0.0]], [0.5, 0.5])
        >>> mh = LargeStepMH(GaussianKernel(scale=1.5), n_proposals=4)
        >>> g = torch.Generator().manual_seed(0)
        >>> state = mh.init(target, torch.zeros(8, 1, 2, dtype=torch.float64))
        >>> state = mh.step(target, state, g)
        >>> state.mh_steps.tolist() == [4] * 8
        True
    """

    name = "largestep"

    def __init__(self, proposal: Proposal, n_proposals: int = 1, mh_steps: int | None = None, n_local: int = 0,
                 local: MALA | HMC | dict | None = None, metropolize: bool = True, reuse_draws: bool = True):
        if not isinstance(proposal, Proposal):
            raise SamplingInputError(f"proposal must be a Proposal, got {type(proposal).__name__}",
                                     hint="wrap a flow in IndependenceProposal or ConditionalFlowProposal")
        self.proposal = proposal
        self.n_proposals = int(n_proposals)
        self.mh_steps = int(mh_steps if mh_steps is not None else n_proposals)
        self.n_local = int(n_local)
        if self.n_proposals < 1 or self.mh_steps < 1 or self.n_local < 0:
            raise SamplingInputError(f"need n_proposals >= 1, mh_steps >= 1, n_local >= 0; got {self.n_proposals}, "
                                     f"{self.mh_steps}, {self.n_local}", hint="e.g. n_proposals=16 n_local=0")
        self.local = get_sampler({"name": "mala", **local} if isinstance(local, dict) else (local or "mala"))
        if not isinstance(self.local, (MALA, HMC)):
            raise SamplingInputError("the local steps must be MALA or HMC", hint="pass local={'step_size': 1e-4}")
        self.metropolize = bool(metropolize)
        self.reuse_draws = bool(reuse_draws)

    @property
    def exact(self) -> bool:
        """False in exploration mode (no Metropolis correction)."""
        return self.metropolize

    def config(self) -> dict:
        return {"name": self.name, "proposal": self.proposal.config(), "n_proposals": self.n_proposals,
                "mh_steps": self.mh_steps, "n_local": self.n_local, "local": self.local.config(),
                "metropolize": self.metropolize, "exact": self.exact,
                **({} if self.reuse_draws else {"reuse_draws": False})}

    def init(self, target: Target, x0: torch.Tensor) -> LargeStepState:
        x0 = check_positions(x0, target.n_particles, target.dim, "initial positions").detach().clone()
        u, f = target.energy_and_force(x0)
        if not bool(torch.isfinite(u).all()):
            bad = (~torch.isfinite(u)).nonzero().flatten()[:5].tolist()
            raise SamplingInputError(f"the energy is not finite at initial configurations {bad}",
                                     hint="start from minimised or reference configurations")
        lq = self.proposal.log_prob(x0, x0) if self.proposal.independent else torch.zeros(len(x0))
        z = torch.zeros(len(x0), dtype=torch.long)
        return LargeStepState(x0, u, f, lq.double(), torch.tensor(self.local.step_size, dtype=torch.float64),
                              z, z.clone(), z.clone(), z.clone(), z.clone())

    def log_accept_ratio(self, u_x, u_y, log_q_fwd, log_q_rev) -> torch.Tensor:
        """``log [exp(-u(y)) q(x | y) / (exp(-u(x)) q(y | x))]`` (any shape); NaN/inf inputs give ``-inf``."""
        r = (u_x - u_y).double() + log_q_rev.double() - log_q_fwd.double()
        ok = torch.isfinite(u_y) & torch.isfinite(log_q_fwd) & torch.isfinite(log_q_rev)
        return torch.where(ok, torch.nan_to_num(r, nan=-math.inf), torch.full_like(r, -math.inf))

    def _mh_batch(self, target: Target, state: LargeStepState, active: torch.Tensor, budget: torch.Tensor,
                  gen: torch.Generator | None) -> None:
        """One batch of proposals for the ``active`` chains (in place): at most ``budget`` steps each."""
        idx = active.nonzero().flatten()
        x = state.x[idx]
        k = int(min(self.n_proposals, int(budget[idx].max())))
        b, shape = len(idx), tuple(x.shape[1:])
        y, lq_f = self.proposal.sample(x, k, gen)  # (b, k, n, d), (b, k)
        flat = y.reshape((b * k,) + shape)
        finite_y = torch.isfinite(flat).reshape(b * k, -1).all(1)
        u_y, f_y = _energy_force_or_inf(target, torch.where(finite_y[:, None, None], flat, torch.zeros_like(flat)))
        u_y = torch.where(finite_y, u_y, torch.full_like(u_y, math.inf))
        if self.proposal.independent:
            lq_r = state.log_q[idx][:, None].expand(b, k)  # q(x | y) = q(x), cached
        else:
            lq_r = self.proposal.log_prob(x.repeat_interleave(k, 0), torch.where(
                finite_y[:, None, None], flat, x.repeat_interleave(k, 0))).reshape(b, k)
        u_y = u_y.reshape(b, k)
        usable = torch.arange(k)[None, :] < budget[idx][:, None]  # (b, k): within this cycle's budget
        bad = ~(torch.isfinite(u_y) & torch.isfinite(lq_f) & torch.isfinite(lq_r))  # (b, k) rejected, counted
        f_y = f_y.reshape((b, k) + shape)
        if self.proposal.reusable and self.metropolize and self.reuse_draws:
            self._sequential(state, idx, y, u_y, f_y, lq_f, usable, bad, budget, gen)
            return
        log_ratio = self.log_accept_ratio(state.energy[idx][:, None], u_y, lq_f, lq_r)
        if self.metropolize:
            uniform = torch.rand((b, k), generator=gen, dtype=torch.float64)
            acc = (torch.log(uniform) < log_ratio) & usable
        else:
            acc = torch.isfinite(u_y) & torch.isfinite(lq_f) & usable
        any_acc = acc.any(1)
        first = torch.where(any_acc, acc.double().argmax(1), budget[idx].clamp(max=k) - 1)  # last step used
        used = first + 1  # sequential steps consumed (b,)
        seen = torch.arange(k)[None, :] <= first[:, None]  # proposals the sequential chain looked at
        state.mh_steps[idx] += used
        state.proposals[idx] += k
        state.n_nonfinite[idx] += (bad & seen).sum(1)
        state.accepted[idx] += any_acc.long()
        budget[idx] -= used
        if bool(any_acc.any()):
            j = idx[any_acc]
            sel = first[any_acc]
            rows = any_acc.nonzero().flatten()
            state.x[j] = y[rows, sel]
            state.energy[j] = u_y[rows, sel].to(state.energy.dtype)
            state.force[j] = f_y[rows, sel].to(state.force.dtype)
            if self.proposal.independent:
                state.log_q[j] = lq_f[rows, sel]

    def _sequential(self, state: LargeStepState, idx, y, u_y, f_y, lq_f, usable, bad, budget, gen) -> None:
        """All ``k`` draws of a reusable proposal as ``k`` sequential MH steps (module docstring), in place."""
        b, k = u_y.shape
        log_u = torch.log(torch.rand((b, k), generator=gen, dtype=torch.float64))
        cur_u, cur_lq = state.energy[idx].double(), state.log_q[idx].double()
        pick = torch.full((b,), -1, dtype=torch.long)  # the draw each chain holds now (-1: its start state)
        n_acc = torch.zeros(b, dtype=torch.long)
        for j in range(k):
            log_ratio = self.log_accept_ratio(cur_u, u_y[:, j], lq_f[:, j], cur_lq)
            acc = (log_u[:, j] < log_ratio) & usable[:, j]
            cur_u = torch.where(acc, u_y[:, j].double(), cur_u)
            cur_lq = torch.where(acc, lq_f[:, j], cur_lq)
            pick = torch.where(acc, j, pick)
            n_acc += acc.long()
        used = usable.sum(1)
        state.mh_steps[idx] += used
        state.proposals[idx] += k
        state.n_nonfinite[idx] += (bad & usable).sum(1)
        state.accepted[idx] += n_acc
        budget[idx] -= used
        moved = pick >= 0
        if bool(moved.any()):
            j, rows, sel = idx[moved], moved.nonzero().flatten(), pick[moved]
            state.x[j] = y[rows, sel]
            state.energy[j] = u_y[rows, sel].to(state.energy.dtype)
            state.force[j] = f_y[rows, sel].to(state.force.dtype)
            state.log_q[j] = lq_f[rows, sel]

    def step(self, target: Target, state: LargeStepState, gen: torch.Generator | None = None) -> LargeStepState:
        """One cycle of every chain: ``mh_steps`` sequential MH steps (batched), then ``n_local`` MALA/HMC moves."""
        state = LargeStepState(**{k: v.clone() if isinstance(v, torch.Tensor) else v
                                  for k, v in state.as_dict().items()})
        budget = torch.full((len(state.x),), self.mh_steps, dtype=torch.long)
        while bool((budget > 0).any()):
            self._mh_batch(target, state, budget > 0, budget, gen)
        if self.n_local:
            from ._mcmc import ChainState

            cs = ChainState(state.x, state.energy, state.force, state.step_size,
                            torch.zeros(len(state.x), dtype=torch.long))
            for _ in range(self.n_local):
                cs, acc = self.local.step(target, cs, gen)
                state.local_accepted += acc.long()
            state.x, state.energy, state.force = cs.x, cs.energy, cs.force
            if self.proposal.independent:
                state.log_q = self.proposal.log_prob(state.x, state.x)
        state.n_cycles += 1
        return state

    def adapt_local(self, state: LargeStepState, accepted_fraction: float) -> None:
        """Robbins-Monro on the local sampler's log step size towards its target acceptance (burn-in only)."""
        err = accepted_fraction - self.local.target_acceptance
        state.step_size = state.step_size * math.exp(self.local.adapt_rate * err)
