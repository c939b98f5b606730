"""Torsion-space transition kernels: exact MH proposals that set chosen dihedrals (phi, psi) by rigid pivots.

A **pivot** about the bond ``j-k`` of a dihedral ``(i, j, k, l)`` rotates every atom on ``k``'s side of that bond
(found from the bond graph) about the ``j -> k`` axis. It changes that dihedral by the rotation angle and leaves
every bond length, bond angle and every other torsion of a suitably built Z-matrix unchanged (atoms bonded to ``k``
are placed relative to ``l``, which moves with them). In Z-matrix coordinates the pivot is therefore a
*translation of one torsion coordinate*, and the Jacobian of the Cartesian -> Z-matrix map,
``prod_i b_i^2 sin(theta_i)``, does not depend on torsions. A proposal that draws new angles
``a' ~ q(. | a)`` and pivots to them is a Metropolis-within-Gibbs move in those coordinates with acceptance

    min(1, exp(-(u(y) - u(x))) q(a | a') / q(a' | a)),

exactly the ratio :class:`~compscope.sampling.LargeStepMH` forms from :meth:`TorsionProposal.sample` (forward
``log q(a' | a)``) and :meth:`TorsionProposal.log_prob` (reverse ``log q(a | a')``): no Jacobian term, and the
chain samples the Boltzmann density exactly (tested against the analytic torsion marginal of a toy molecule).
With an unconditional kernel (``conditional=False``, the "bootstrap" kernel of issue #21) the move is an
independence sampler in the angles given the other coordinates; since pivoting any state of a batch to ``a_j``
gives the same configuration, the proposal is ``reusable`` (:class:`~compscope.sampling.Proposal`): all ``k``
draws of a batch serve ``k`` sequential MH steps.
Bond lengths, angles and the other torsions are moved by the MALA steps of the same cycle.

:class:`TorusKernel` is the learned part: ``q(a' | a)`` on the D-torus, a mixture of ``K`` products of von Mises
densities whose weights, means and concentrations are a small MLP of ``(cos a, sin a)``, mixed with the uniform
density (weight ``uniform``: a defensive component, so every basin, including the ones the training trajectories
never reached, keeps a proposal probability). It is trained by maximum likelihood on pairs ``(a(t), a(t + tau))``
(:mod:`._torsion_train`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._errors import SamplingInputError
from ._largestep import Proposal
from ._openmm_target import dihedral_angles

__all__ = ["pivot_groups", "set_dihedrals", "TorusKernel", "TorsionProposal"]

TWO_PI = 2.0 * math.pi


def pivot_groups(n_atoms: int, bonds, dihedrals) -> list[list[int]]:
    """For every dihedral ``(i, j, k, l)`` the atoms a pivot about ``j-k`` moves: ``k``'s side of that bond.

    Raises:
        SamplingInputError: ``j-k`` is not a bond, or it lies in a ring (no side can rotate alone).
    """
    adj: dict[int, set[int]] = {a: set() for a in range(n_atoms)}
    for a, b in bonds:
        adj[int(a)].add(int(b))
        adj[int(b)].add(int(a))
    groups = []
    for dih in dihedrals:
        i, j, k, l_ = (int(v) for v in dih)
        if k not in adj[j]:
            raise SamplingInputError(f"dihedral {tuple(dih)}: atoms {j} and {k} are not bonded",
                                     hint="give dihedrals (i, j, k, l) along bonds i-j, j-k, k-l")
        seen, stack = {k}, [k]
        while stack:
            u = stack.pop()
            for v in adj[u]:
                if u == k and v == j:
                    continue
                if v == j:
                    raise SamplingInputError(f"dihedral {tuple(dih)}: bond {j}-{k} is in a ring",
                                             hint="pivot moves need a rotatable (non-ring) bond")
                if v not in seen:
                    seen.add(v)
                    stack.append(v)
        if i in seen or l_ not in seen:
            raise SamplingInputError(f"dihedral {tuple(dih)}: atom {i} must be on {j}'s side and {l_} on {k}'s",
                                     hint="order the dihedral's atoms along the chain")
        groups.append(sorted(seen - {k}))
    return groups


def _rotate(x: torch.Tensor, a: int, b: int, group: list[int], angle: torch.Tensor) -> torch.Tensor:
    """Rotate atoms ``group`` of every frame about the axis ``a -> b`` by ``angle`` (batch,) (right hand)."""
    k = x[:, b] - x[:, a]
    k = k / k.norm(dim=-1, keepdim=True)
    p = x[:, group] - x[:, b, None]
    c, s = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    kk = k[:, None]
    rotated = p * c + torch.cross(kk.expand_as(p), p, dim=-1) * s + kk * (kk * p).sum(-1, keepdim=True) * (1 - c)
    out = x.clone()
    out[:, group] = rotated + x[:, b, None]
    return out


def set_dihedrals(x: torch.Tensor, dihedrals, groups, angles: torch.Tensor) -> torch.Tensor:
    """Positions (batch, n, 3) with dihedral ``m`` set to ``angles[:, m]`` by pivoting ``groups[m]``; every
    bond length and bond angle is kept. The dihedrals must be independent (no pivot moves another's axis)."""
    for m, (dih, group) in enumerate(zip(dihedrals, groups)):
        now = dihedral_angles(x, tuple(int(v) for v in dih))
        x = _rotate(x, int(dih[1]), int(dih[2]), group, angles[:, m].to(x.dtype) - now)
    return x


def _log_vm(x: torch.Tensor, mu: torch.Tensor, kappa: torch.Tensor) -> torch.Tensor:
    """log von Mises density; ``log I0(k) = log i0e(k) + k`` keeps it finite for large concentrations."""
    return kappa * (torch.cos(x - mu) - 1.0) - math.log(TWO_PI) - torch.log(torch.special.i0e(kappa))


def _sample_vm(mu: torch.Tensor, kappa: torch.Tensor, generator: torch.Generator | None,
               candidates: int = 4) -> torch.Tensor:
    """Von Mises draws (Best & Fisher 1979 rejection), vectorised, from one torch generator.

    Every pass draws ``candidates`` proposals per pending value and keeps the first accepted one (rejection
    sampling, the same distribution as one candidate per pass): the acceptance rate is above 0.65 for every
    concentration, so almost every value is done in one pass."""
    kappa = kappa.double().clamp_min(1e-6)
    tau = 1.0 + torch.sqrt(1.0 + 4.0 * kappa**2)
    rho = (tau - torch.sqrt(2.0 * tau)) / (2.0 * kappa)
    r = (1.0 + rho**2) / (2.0 * rho)
    out = torch.empty_like(kappa)
    todo = torch.ones_like(kappa, dtype=torch.bool)
    while todo.any():
        rt, kt = r[todo], kappa[todo]
        u1, u2, u3 = torch.rand((3, candidates, len(rt)), generator=generator, dtype=torch.float64)
        z = torch.cos(math.pi * u1)
        f = (1.0 + rt * z) / (rt + z)
        c = kt * (rt - f)
        ok = (c * (2.0 - c) - u2 > 0) | (torch.log(c / u2) + 1.0 - c >= 0)  # (candidates, n)
        theta = torch.sign(u3 - 0.5) * torch.acos(f.clamp(-1.0, 1.0))
        done = ok.any(0)
        first = ok.to(torch.int8).argmax(0)  # the first accepted candidate of each value
        theta = theta.gather(0, first[None])[0]
        idx = todo.nonzero(as_tuple=True)
        sel = tuple(t[done] for t in idx)
        out[sel] = theta[done]
        todo[sel] = False
    return torch.remainder(out + mu.double() + math.pi, TWO_PI) - math.pi


class TorusKernel(nn.Module):
    r"""A conditional density :math:`q(a' \mid a)` on the D-torus (angles in radians, any branch).

    :math:`q = (1 - \epsilon) \sum_k w_k(a) \prod_d \mathrm{vM}(a'_d; \mu_{kd}(a), \kappa_{kd}(a))
    + \epsilon (2\pi)^{-D}`.

    Args:
        n_angles: D.
        n_components: K von Mises products.
        hidden: width of the MLP of :math:`(\cos a, \sin a)`.
        uniform: the defensive weight :math:`\epsilon` in (0, 1].
        conditional: False makes ``q(a' | a) = q(a')`` (an independence kernel on the torus).
        max_kappa: upper bound of the concentrations (keeps proposals from collapsing onto the data).
    """

    def __init__(self, n_angles: int = 2, n_components: int = 8, hidden: int = 64, uniform: float = 0.1,
                 conditional: bool = True, max_kappa: float = 200.0):
        super().__init__()
        if not 0.0 < uniform <= 1.0 or n_angles < 1 or n_components < 1:
            raise SamplingInputError(f"TorusKernel: need 0 < uniform <= 1, n_angles >= 1, n_components >= 1; got "
                                     f"{uniform}, {n_angles}, {n_components}", hint="e.g. uniform=0.1")
        self.n_angles, self.n_components, self.uniform = int(n_angles), int(n_components), float(uniform)
        self.conditional, self.max_kappa, self.hidden = bool(conditional), float(max_kappa), int(hidden)
        out = n_components * (1 + 3 * n_angles)
        self.net = nn.Sequential(nn.Linear(2 * n_angles, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, out))
        with torch.no_grad():  # start near the uniform density, means spread over the torus
            self.net[-1].weight.mul_(0.01)
            self.net[-1].bias.zero_()
            b = self.net[-1].bias.view(n_components, 1 + 3 * n_angles)
            g = torch.Generator().manual_seed(0)
            ang = torch.rand(n_components, n_angles, generator=g) * TWO_PI
            b[:, 1:1 + n_angles] = torch.cos(ang)
            b[:, 1 + n_angles:1 + 2 * n_angles] = torch.sin(ang)

    def config(self) -> dict:
        return {"n_angles": self.n_angles, "n_components": self.n_components, "hidden": self.hidden,
                "uniform": self.uniform, "conditional": self.conditional, "max_kappa": self.max_kappa}

    def _params(self, a0: torch.Tensor):
        dt = next(self.parameters()).dtype
        if self.conditional:
            o = self.net(torch.cat([torch.cos(a0), torch.sin(a0)], -1).to(dt))
        else:  # the same parameters for every row: one evaluation of the MLP (at the zero features), expanded
            o = self.net(torch.zeros(1, 2 * self.n_angles, dtype=dt)).expand(len(a0), -1)
        o = o.double().view(len(a0), self.n_components, 1 + 3 * self.n_angles)
        d = self.n_angles
        logits = torch.log_softmax(o[..., 0], -1)
        mu = torch.atan2(o[..., 1 + d:1 + 2 * d], o[..., 1:1 + d])
        kappa = self.max_kappa * torch.sigmoid(o[..., 1 + 2 * d:] - 5.0) + 1e-3  # about 1.3 at start
        return logits, mu, kappa

    def _check(self, a: torch.Tensor, what: str) -> torch.Tensor:
        if a.ndim != 2 or a.shape[1] != self.n_angles:
            raise SamplingInputError(f"{what} has shape {tuple(a.shape)}; need (batch, {self.n_angles})",
                                     hint="pass one row of angles per state")
        return a.double()

    def log_prob(self, a1: torch.Tensor, a0: torch.Tensor) -> torch.Tensor:
        """``log q(a1 | a0)`` (batch,) for angles (batch, D)."""
        a1, a0 = self._check(a1, "a1"), self._check(a0, "a0")
        logits, mu, kappa = self._params(a0)
        comp = _log_vm(a1[:, None], mu, kappa).sum(-1) + logits
        mix = torch.logsumexp(comp, -1) + math.log1p(-self.uniform) if self.uniform < 1 else None
        flat = torch.full_like(a1[:, 0], math.log(self.uniform) - self.n_angles * math.log(TWO_PI))
        return flat if mix is None else torch.logaddexp(mix, flat)

    @torch.no_grad()
    def sample(self, a0: torch.Tensor, k: int, generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """``k`` draws per row of ``a0``: angles (batch, k, D) in (-pi, pi] and their ``log q`` (batch, k)."""
        a0 = self._check(a0, "a0")
        b = len(a0)
        logits, mu, kappa = self._params(a0)
        comp = torch.multinomial(logits.exp(), k, replacement=True, generator=generator)  # (b, k)
        pick = lambda t: torch.gather(t, 1, comp[..., None].expand(b, k, self.n_angles))  # noqa: E731
        draws = _sample_vm(pick(mu), pick(kappa), generator)
        flat = torch.rand((b, k, self.n_angles), generator=generator, dtype=torch.float64) * TWO_PI - math.pi
        use_flat = torch.rand((b, k, 1), generator=generator, dtype=torch.float64) < self.uniform
        a1 = torch.where(use_flat, flat, draws)
        lq = self.log_prob(a1.reshape(b * k, -1), a0.repeat_interleave(k, 0)).reshape(b, k)
        return a1, lq


class TorsionProposal(Proposal):
    """MH proposal: new values of ``dihedrals`` from a :class:`TorusKernel`, set by pivots (module docstring).

    Args:
        kernel: the torus kernel (its ``n_angles`` = number of dihedrals).
        dihedrals: atom quadruples (i, j, k, l), e.g. alanine dipeptide's phi and psi.
        groups: the atoms each pivot moves (:func:`pivot_groups`).
    """

    def __init__(self, kernel: TorusKernel, dihedrals, groups):
        if kernel.n_angles != len(dihedrals) or len(groups) != len(dihedrals):
            raise SamplingInputError(f"a kernel over {kernel.n_angles} angles for {len(dihedrals)} dihedrals",
                                     hint="train the kernel on the dihedrals the proposal sets")
        self.kernel, self.groups = kernel.eval(), [list(g) for g in groups]
        self.dihedrals = [tuple(int(v) for v in d) for d in dihedrals]
        # an unconditional kernel q(a') makes this an independence move in the angles it sets: log q(y | x) depends
        # on y alone, and a pivot from any state of a batch to the angles a_j gives the same configuration (the
        # other Z-matrix coordinates are the same in every state of the batch), so the batch's draws are reusable
        self.independent = self.reusable = not kernel.conditional

    def angles(self, x: torch.Tensor) -> torch.Tensor:
        """The proposal's dihedrals (batch, D) of positions (batch, n, 3)."""
        return dihedral_angles(x, self.dihedrals).reshape(len(x), len(self.dihedrals))

    def sample(self, x, k, generator=None):
        b = x.shape[0]
        a1, lq = self.kernel.sample(self.angles(x), k, generator=generator)
        y = set_dihedrals(x.repeat_interleave(k, 0), self.dihedrals, self.groups, a1.reshape(b * k, -1))
        return y.reshape((b, k) + tuple(x.shape[1:])), lq

    def log_prob(self, y, x):
        with torch.no_grad():
            return self.kernel.log_prob(self.angles(y), self.angles(x))

    def config(self) -> dict:
        return {"name": "torsion", "dihedrals": self.dihedrals, "kernel": self.kernel.config()}
