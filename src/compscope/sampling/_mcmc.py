"""Metropolis-corrected samplers over a batch of independent chains: MALA and HMC, and a resumable runner.

Each move is exact for the target ``p(x) ∝ exp(-u(x))``: a proposal with a known density (MALA) or a reversible,
volume-preserving map (HMC's leapfrog with a momentum flip), followed by the Metropolis-Hastings test

    a(x -> x') = min(1, p(x') q(x | x') / (p(x) q(x' | x))),

so the chain satisfies detailed balance ``p(x) q(x'|x) a(x->x') = p(x') q(x|x') a(x'->x)`` (tested on random pairs).
Proposals with a non-finite energy are rejected, never accepted. For translation-invariant targets the moves live
in the centre-of-mass-free subspace (noise and momenta projected; the forces of such targets already sum to zero),
so the free centre of mass never diffuses.

The step size is shared by all chains and is adapted only during burn-in (Robbins-Monro on the mean acceptance);
after burn-in it is fixed and the chains are exact Markov chains.

:func:`run_mcmc` runs a sampler for a number of steps, keeps every ``thin``-th state after burn-in, and with
``out`` writes a run folder (:class:`compscope.train.RunDir`): ``samples.h5`` (positions, energies) and
``checkpoints/last.ckpt`` (chain state, step size, RNG state) every ``checkpoint_every`` steps, so an
interrupted run resumes (``resume=True``) to the same samples as an uninterrupted one.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ._errors import SamplingInputError
from ._targets import Target, check_positions

__all__ = ["ChainState", "MALA", "HMC", "run_mcmc", "MCMCResult", "get_sampler", "SAMPLERS"]

log = logging.getLogger(__name__)


@dataclass
class ChainState:
    """State of a batch of chains.

    Shapes:
        x: (batch, n_particles, dim); energy: (batch,) kT; force: (batch, n_particles, dim) kT per length;
        accepted: (batch,) number of accepted moves; step_size: () shared step size.
    """

    x: torch.Tensor
    energy: torch.Tensor
    force: torch.Tensor
    step_size: torch.Tensor
    accepted: torch.Tensor
    n_moves: int = 0

    @classmethod
    def init(cls, target: Target, x0: torch.Tensor, step_size: float) -> ChainState:
        x0 = check_positions(x0, target.n_particles, target.dim, "initial positions")
        u, f = target.energy_and_force(x0)
        if not bool(torch.isfinite(u).all() and torch.isfinite(f).all()):
            bad = (~torch.isfinite(u)).nonzero().flatten()[:5].tolist()
            raise SamplingInputError(f"the target's energy or force is not finite at initial configurations "
                                     f"(first: {bad})", hint="start from configurations without overlapping "
                                                             "particles (e.g. a lattice)")
        return cls(x0.detach().clone(), u, f, torch.tensor(float(step_size), dtype=torch.float64),
                   torch.zeros(len(x0), dtype=torch.long))

    @property
    def acceptance(self) -> torch.Tensor:
        """Fraction of accepted moves per chain (batch,)."""
        return self.accepted.double() / max(self.n_moves, 1)


def _project(v: torch.Tensor, target: Target) -> torch.Tensor:
    """Remove the centre-of-mass component for translation-invariant targets."""
    return v - v.mean(1, keepdim=True) if target.translation_invariant else v


def _dof(target: Target) -> int:
    return (target.n_particles - 1) * target.dim if target.translation_invariant else target.n_particles * target.dim


def _sumsq(v: torch.Tensor) -> torch.Tensor:
    return v.pow(2).sum((1, 2))


def _metropolis(log_ratio: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    """Accept with probability ``min(1, exp(log_ratio))``; NaN ratios are rejections. (batch,) bool."""
    log_ratio = torch.nan_to_num(log_ratio.double(), nan=-math.inf, posinf=math.inf)
    uniform = torch.rand(log_ratio.shape, generator=gen, dtype=torch.float64)
    return torch.log(uniform) < log_ratio


class _Sampler:
    name = "sampler"

    def __init__(self, step_size: float, target_acceptance: float, metropolize: bool, adapt_rate: float):
        if not step_size > 0:
            raise SamplingInputError(f"step_size must be positive, got {step_size}", hint="e.g. step_size=1e-3")
        if not 0 < target_acceptance < 1:
            raise SamplingInputError(f"target_acceptance must lie in (0, 1), got {target_acceptance}",
                                     hint="MALA: 0.574, HMC: 0.65")
        self.step_size = float(step_size)
        self.target_acceptance = float(target_acceptance)
        self.metropolize = bool(metropolize)
        self.adapt_rate = float(adapt_rate)

    def config(self) -> dict:
        return {"name": self.name, "step_size": self.step_size, "target_acceptance": self.target_acceptance,
                "metropolize": self.metropolize, "adapt_rate": self.adapt_rate}

    def init(self, target: Target, x0: torch.Tensor) -> ChainState:
        return ChainState.init(target, x0, self.step_size)

    def adapt(self, state: ChainState, accept: torch.Tensor) -> None:
        """Robbins-Monro on log(step size) towards the target acceptance (burn-in only)."""
        err = accept.double().mean() - self.target_acceptance
        state.step_size = state.step_size * torch.exp(self.adapt_rate * err)

    def _finish(self, target, state, x_new, u_new, f_new, log_ratio, gen) -> tuple[ChainState, torch.Tensor]:
        finite = torch.isfinite(u_new) & torch.isfinite(f_new).reshape(len(u_new), -1).all(1)
        accept = _metropolis(log_ratio, gen) if self.metropolize else torch.ones_like(finite)
        accept = accept & finite
        m = accept[:, None, None]
        state = ChainState(torch.where(m, x_new, state.x), torch.where(accept, u_new, state.energy),
                           torch.where(m, f_new, state.force), state.step_size,
                           state.accepted + accept.long(), state.n_moves + 1)
        return state, accept


class MALA(_Sampler):
    """Metropolis-adjusted Langevin: ``x' = x + h F(x) + sqrt(2 h) xi`` then a Metropolis-Hastings test.

    ``F = -du/dx`` is the force in kT per length and ``h`` the step size. ``max_drift`` caps the drift ``h F`` per
    configuration (its norm) so that a chain near a steep wall does not jump far: the proposal density uses the
    capped drift, so the chain stays exact.

    Args:
        step_size: ``h`` (length^2); adapted during burn-in towards ``target_acceptance``.
        max_drift: cap on the norm of ``h F`` per configuration (length), or None.
        target_acceptance: 0.574 is optimal for MALA in high dimension (Roberts & Rosenthal 1998).
        metropolize: False gives the unadjusted Langevin algorithm (ULA, biased; for tests and comparisons).
        adapt_rate: Robbins-Monro rate of the log step size.
    """

    name = "mala"

    def __init__(self, step_size: float = 1e-3, max_drift: float | None = None, target_acceptance: float = 0.574,
                 metropolize: bool = True, adapt_rate: float = 0.05):
        super().__init__(step_size, target_acceptance, metropolize, adapt_rate)
        if max_drift is not None and not max_drift > 0:
            raise SamplingInputError(f"max_drift must be positive or None, got {max_drift}",
                                     hint="e.g. max_drift=0.1 (a length), or None for no cap")
        self.max_drift = None if max_drift is None else float(max_drift)

    def config(self) -> dict:
        return {**super().config(), "max_drift": self.max_drift}

    def drift(self, force: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """``h F`` (batch, n, dim), its norm capped at ``max_drift``."""
        d = h.to(force.dtype) * force
        if self.max_drift is not None:
            norm = d.reshape(len(d), -1).norm(dim=1).clamp_min(1e-300)
            d = d * (self.max_drift / norm).clamp(max=1.0)[:, None, None]
        return d

    def log_q(self, target: Target, x_to: torch.Tensor, x_from: torch.Tensor, force_from: torch.Tensor,
              h: torch.Tensor) -> torch.Tensor:
        """``log q(x_to | x_from)`` (batch,) of the Gaussian proposal in the sampler's subspace."""
        r = _project(x_to - x_from - self.drift(force_from, h), target)
        k = _dof(target)
        return -_sumsq(r).double() / (4 * h) - 0.5 * k * torch.log(4 * math.pi * h)

    def log_accept_ratio(self, target: Target, x, u, f, x_new, u_new, f_new, h) -> torch.Tensor:
        """``log [p(x') q(x | x') / (p(x) q(x' | x))]`` (batch,): the Metropolis-Hastings log ratio."""
        return ((u - u_new).double() + self.log_q(target, x, x_new, f_new, h)
                - self.log_q(target, x_new, x, f, h))

    def step(self, target: Target, state: ChainState,
             gen: torch.Generator | None = None) -> tuple[ChainState, torch.Tensor]:
        """One move of every chain; returns the new state and the accepted mask (batch,)."""
        h = state.step_size
        noise = _project(torch.randn(state.x.shape, generator=gen, dtype=state.x.dtype), target)
        x_new = state.x + self.drift(state.force, h) + torch.sqrt(2 * h).to(state.x.dtype) * noise
        u_new, f_new = _energy_force_or_inf(target, x_new)
        log_ratio = self.log_accept_ratio(target, state.x, state.energy, state.force, x_new, u_new, f_new, h)
        return self._finish(target, state, x_new, u_new, f_new, log_ratio, gen)


class HMC(_Sampler):
    """Hamiltonian Monte Carlo: unit-mass momenta, ``n_leapfrog`` leapfrog steps, Metropolis on ``u + |p|^2/2``.

    The leapfrog map followed by a momentum flip is an involution that preserves volume, so the Metropolis test
    on the Hamiltonian alone is exact.

    Args:
        step_size: leapfrog time step (length, unit mass and kT); adapted during burn-in.
        n_leapfrog: leapfrog steps per move.
        target_acceptance: 0.65 (Beskos et al. 2013).
        metropolize: False accepts every trajectory (biased; for tests).
        adapt_rate: Robbins-Monro rate of the log step size.
    """

    name = "hmc"

    def __init__(self, step_size: float = 0.01, n_leapfrog: int = 10, target_acceptance: float = 0.65,
                 metropolize: bool = True, adapt_rate: float = 0.05):
        super().__init__(step_size, target_acceptance, metropolize, adapt_rate)
        if int(n_leapfrog) < 1:
            raise SamplingInputError(f"n_leapfrog must be >= 1, got {n_leapfrog}", hint="e.g. n_leapfrog=10")
        self.n_leapfrog = int(n_leapfrog)

    def config(self) -> dict:
        return {**super().config(), "n_leapfrog": self.n_leapfrog}

    def leapfrog(self, target: Target, x: torch.Tensor, p: torch.Tensor, f: torch.Tensor, h: torch.Tensor):
        """``n_leapfrog`` velocity-Verlet steps: returns ``(x', p', u', f')``."""
        dt = h.to(x.dtype)
        u = None
        for _ in range(self.n_leapfrog):
            p = p + 0.5 * dt * f
            x = x + dt * p
            u, f = _energy_force_or_inf(target, x)
            p = p + 0.5 * dt * f
        return x, p, u, f

    def log_accept_ratio(self, u, p, u_new, p_new) -> torch.Tensor:
        """``H(x, p) - H(x', p')`` (batch,) with ``H = u + |p|^2 / 2``."""
        return (u - u_new).double() + 0.5 * (_sumsq(p) - _sumsq(p_new)).double()

    def step(self, target: Target, state: ChainState,
             gen: torch.Generator | None = None) -> tuple[ChainState, torch.Tensor]:
        """One trajectory of every chain; returns the new state and the accepted mask (batch,)."""
        p = _project(torch.randn(state.x.shape, generator=gen, dtype=state.x.dtype), target)
        x_new, p_new, u_new, f_new = self.leapfrog(target, state.x, p, state.force, state.step_size)
        log_ratio = self.log_accept_ratio(state.energy, p, u_new, p_new)
        return self._finish(target, state, x_new, u_new, f_new, log_ratio, gen)


def _energy_force_or_inf(target: Target, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Energy and force of proposals; configurations with non-finite coordinates get ``u = inf`` (rejected)."""
    ok = torch.isfinite(x).reshape(len(x), -1).all(1)
    if bool(ok.all()):
        return target.energy_and_force(x)
    u = torch.full((len(x),), math.inf, dtype=x.dtype)
    f = torch.zeros_like(x)
    if bool(ok.any()):
        u[ok], f[ok] = target.energy_and_force(x[ok])
    return u, f


SAMPLERS = {"mala": MALA, "hmc": HMC}


def get_sampler(spec: str | dict | _Sampler) -> _Sampler:
    """A sampler from a name (``mala``/``hmc``), a dict ``{name, **arguments}`` or an instance."""
    if isinstance(spec, _Sampler):
        return spec
    kwargs = dict(spec) if isinstance(spec, dict) else {"name": spec}
    name = str(kwargs.pop("name", "mala")).lower()
    if name not in SAMPLERS:
        raise SamplingInputError(f"unknown sampler {name!r}", hint=f"use one of {', '.join(SAMPLERS)}")
    try:
        return SAMPLERS[name](**kwargs)
    except TypeError as err:
        raise SamplingInputError(f"sampler {name}: {err}",
                                 hint=f"arguments of {SAMPLERS[name].__name__}: see its docstring") from None


@dataclass
class MCMCResult:
    """Samples kept by :func:`run_mcmc`.

    Shapes:
        positions: (n_kept, batch, n_particles, dim); energy: (n_kept, batch) kT; acceptance: (batch,) after
        burn-in; step_size: the (fixed) step size after burn-in.
    """

    positions: torch.Tensor
    energy: torch.Tensor
    acceptance: torch.Tensor
    step_size: float
    n_steps: int
    wall_s: float
    path: Path | None = None
    info: dict = field(default_factory=dict)


def run_mcmc(target: Target, x0: torch.Tensor, sampler: str | dict | _Sampler = "mala", n_steps: int = 1000,
             *, burn_in: int = 0, thin: int = 1, seed: int = 0, out: str | Path | None = None,
             resume: bool = False, checkpoint_every: int = 1000, log_every: int = 0,
             extra_config: dict | None = None) -> MCMCResult:
    """Run ``batch`` chains for ``n_steps`` moves, adapting the step size during the first ``burn_in`` moves.

    Args:
        target: the density.
        x0: initial positions (batch, n_particles, dim); one chain per configuration.
        sampler: ``"mala"``, ``"hmc"``, a dict ``{name, **arguments}`` or a sampler object.
        n_steps: total moves per chain (burn-in included); may grow on resume.
        burn_in: moves with step-size adaptation whose states are not kept.
        thin: keep every ``thin``-th state after burn-in.
        seed: of the chain's random numbers (one ``torch.Generator``).
        out: run folder (``samples.h5``, ``checkpoints/last.ckpt``, ``config.yaml``); None keeps all in memory.
        resume: continue the run in ``out`` (refused if the target, sampler, chains, seed, burn-in or thinning
            changed).
        checkpoint_every: moves between checkpoints (samples are flushed to ``samples.h5`` then).
        log_every: log acceptance and mean energy every this many moves (0: never).
        extra_config: more settings stored in ``config.yaml`` and guarded on resume.

    Returns:
        :class:`MCMCResult` with every kept state (read back from ``samples.h5`` when ``out`` is given).
    """
    sampler = get_sampler(sampler)
    if n_steps < 1 or burn_in < 0 or thin < 1 or checkpoint_every < 1:
        raise SamplingInputError(f"need n_steps >= 1, burn_in >= 0, thin >= 1, checkpoint_every >= 1; got "
                                 f"{n_steps}, {burn_in}, {thin}, {checkpoint_every}",
                                 hint="e.g. n_steps=10000 burn_in=1000 thin=10")
    if burn_in >= n_steps:
        raise SamplingInputError(f"burn_in ({burn_in}) must be smaller than n_steps ({n_steps})",
                                 hint="increase n_steps or reduce burn_in")
    x0 = check_positions(x0, target.n_particles, target.dim, "initial positions")
    gen = torch.Generator().manual_seed(int(seed))
    state = sampler.init(target, x0)
    step0, n_kept, acc_after = 0, 0, torch.zeros(len(x0), dtype=torch.long)
    run = h5 = None
    if out is not None:
        from compscope.train import RunDir

        config = {"target": target.config(), "sampler": sampler.config(), "n_chains": len(x0),
                  "dtype": str(x0.dtype).replace("torch.", ""), "seed": int(seed), "burn_in": int(burn_in),
                  "thin": int(thin), "n_steps": int(n_steps), "checkpoint_every": int(checkpoint_every),
                  **(extra_config or {})}
        run = RunDir(out, resume=resume, config=config, safe=("n_steps", "checkpoint_every")).start()
        if resume:
            ck = torch.load(run.last, weights_only=False)
            state = ChainState(**ck["state"])
            gen.set_state(ck["rng"])
            step0, n_kept, acc_after = ck["step"], ck["n_kept"], ck["accepted_after_burn_in"]
        h5 = _open_samples(run.file("samples.h5"), state.x, n_kept, fresh=not resume)
    kept_x, kept_u = [], []
    t0 = time.perf_counter()

    def flush(step: int) -> None:
        nonlocal n_kept
        if h5 is not None:
            if kept_x:
                _append(h5, torch.stack(kept_x), torch.stack(kept_u), n_kept)
                n_kept += len(kept_x)
                kept_x.clear()
                kept_u.clear()
            h5.flush()
            tmp = run.last.with_suffix(".tmp")
            torch.save({"state": {k: getattr(state, k) for k in ("x", "energy", "force", "step_size", "accepted",
                                                                  "n_moves")},
                        "rng": gen.get_state(), "step": step, "n_kept": n_kept,
                        "accepted_after_burn_in": acc_after}, tmp)
            tmp.replace(run.last)

    try:
        for step in range(step0, n_steps):
            state, accept = sampler.step(target, state, gen)
            if step < burn_in:
                sampler.adapt(state, accept)
            else:
                acc_after += accept.long()
                if (step - burn_in + 1) % thin == 0:
                    kept_x.append(state.x.clone())
                    kept_u.append(state.energy.clone())
            if log_every and (step + 1) % log_every == 0:
                log.info("step %d/%d: acceptance %.3f, step size %.3g, mean energy %.4f kT", step + 1, n_steps,
                         accept.double().mean().item(), state.step_size.item(), state.energy.mean().item())
            if (step + 1) % checkpoint_every == 0:
                flush(step + 1)
        flush(n_steps)
        wall = time.perf_counter() - t0
        n_after = max(n_steps - burn_in, 1)
        if h5 is not None:
            positions = torch.as_tensor(h5["positions"][:n_kept])
            energy = torch.as_tensor(h5["energy"][:n_kept])
        else:
            positions = torch.stack(kept_x) if kept_x else x0.new_zeros((0,) + tuple(x0.shape))
            energy = torch.stack(kept_u) if kept_u else x0.new_zeros((0, len(x0)))
    finally:
        if h5 is not None:
            h5.close()
    return MCMCResult(positions, energy, acc_after.double() / n_after, float(state.step_size), n_steps, wall,
                      None if run is None else run.path)


def _open_samples(path: Path, x: torch.Tensor, n_kept: int, fresh: bool):
    """Open (or create) ``samples.h5``; on resume drop rows written after the last checkpoint."""
    import h5py

    if fresh and path.exists():
        path.unlink()
    h5 = h5py.File(path, "a")
    dtype = np.float32 if x.dtype == torch.float32 else np.float64
    if "positions" not in h5:
        h5.create_dataset("positions", shape=(0,) + tuple(x.shape), maxshape=(None,) + tuple(x.shape), dtype=dtype,
                          chunks=(1,) + tuple(x.shape))
        h5.create_dataset("energy", shape=(0, len(x)), maxshape=(None, len(x)), dtype=dtype)
    h5["positions"].resize(n_kept, axis=0)
    h5["energy"].resize(n_kept, axis=0)
    return h5


def _append(h5, xs: torch.Tensor, us: torch.Tensor, n_kept: int) -> None:
    n = n_kept + len(xs)
    h5["positions"].resize(n, axis=0)
    h5["energy"].resize(n, axis=0)
    h5["positions"][n_kept:n] = xs.numpy()
    h5["energy"][n_kept:n] = us.numpy()
