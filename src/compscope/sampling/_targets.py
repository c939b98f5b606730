"""Target densities of Boltzmann sampling: energies and forces in units of kT, batched over configurations.

Every target maps positions ``x`` of shape ``(batch, n_particles, dim)`` to a reduced energy ``u(x) = E(x) / kT``
of shape ``(batch,)``; ``log_prob(x) = -u(x)`` (unnormalised except for :class:`GaussianMixture`) and the force
``-du/dx`` comes from one autograd helper (:func:`energy_and_force`, through
:func:`compscope.nn.forces_and_stress`). Targets work in the dtype of the positions (float32 or float64).

Systems of the equivariant-flow literature (Köhler, Klein & Noé, ICML 2020; Garcia Satorras et al., NeurIPS 2021;
Klein et al., NeurIPS 2023), as in their ``bgflow``/DEM code:

- DW4: 4 particles in 2D, ``sum_{i<j} a (d_ij - d0)^4 + b (d_ij - d0)^2`` with ``a = 0.9, b = -4, d0 = 4``;
- LJ13/LJ55: ``sum_{i != j} eps [(rm/d_ij)^12 - 2 (rm/d_ij)^6]`` over ORDERED pairs (twice the usual pair sum)
  plus the harmonic oscillator ``0.5 * sum_i |x_i - mean(x)|^2`` that keeps the cluster together.

Both are invariant under rotations, reflections, translations and permutations of the particles.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ._errors import SamplingInputError

__all__ = ["Target", "DoubleWell4", "LennardJones", "GaussianMixture", "ForceFieldTarget", "energy_and_force",
           "check_positions", "get_target", "TARGETS"]


def check_positions(x: torch.Tensor, n_particles: int, dim: int, what: str = "positions") -> torch.Tensor:
    """``x`` as ``(batch, n_particles, dim)``: a single ``(n_particles, dim)`` or a flat ``(batch, n*dim)`` is
    reshaped; anything else, or non-finite values, raise :class:`SamplingInputError`."""
    if not isinstance(x, torch.Tensor):
        raise SamplingInputError(f"{what} must be a torch.Tensor, got {type(x).__name__}",
                                 hint="convert with torch.as_tensor(x, dtype=torch.float64)")
    if not x.is_floating_point():
        raise SamplingInputError(f"{what} must be floating point, got {x.dtype}",
                                 hint="use float32 or float64 positions")
    shape = tuple(x.shape)
    if shape == (n_particles, dim):
        x = x.unsqueeze(0)
    elif x.ndim == 2 and shape[1] == n_particles * dim:
        x = x.reshape(shape[0], n_particles, dim)
    elif x.ndim != 3 or shape[1:] != (n_particles, dim):
        raise SamplingInputError(
            f"{what} have shape {shape}; this target needs (batch, {n_particles}, {dim})",
            hint=f"reshape to (batch, {n_particles}, {dim}) (or flat (batch, {n_particles * dim}))")
    if not bool(torch.isfinite(x).all()):
        bad = (~torch.isfinite(x)).reshape(x.shape[0], -1).any(1).nonzero().flatten()[:5].tolist()
        raise SamplingInputError(f"{what} contain NaN or inf (first bad configurations: {bad})",
                                 hint="drop or re-initialise those configurations")
    return x


def energy_and_force(energy_fn, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(u (batch,), -du/dx (batch, n, dim))`` of a reduced energy by autograd (the shared forces helper).

    The force is detached; the energy too. Works under ``torch.no_grad()``.
    """
    from compscope.nn import forces_and_stress

    with torch.enable_grad():
        leaf = x.detach().requires_grad_(True)
        u = energy_fn(leaf)
        force, _ = forces_and_stress(u, leaf, None, None, training=False)
    return u.detach(), force.detach()


class Target:
    """A Boltzmann density ``p(x) ∝ exp(-u(x))`` of ``n_particles`` points in ``dim`` dimensions, ``u`` in kT.

    Subclasses implement :meth:`_energy` on checked ``(batch, n_particles, dim)`` positions.
    """

    name = "target"
    n_particles: int
    dim: int
    #: the density is invariant under translations (samplers then move in the centre-of-mass-free subspace)
    translation_invariant = False

    @property
    def event_shape(self) -> tuple[int, int]:
        return (self.n_particles, self.dim)

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        """Reduced energy ``u(x) = E/kT``, shape ``(batch,)``, for positions ``(batch, n_particles, dim)``."""
        return self._energy(check_positions(x, self.n_particles, self.dim))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``-u(x)`` (batch,): the log-density up to the (unknown) log normalising constant."""
        return -self.energy(x)

    def energy_and_force(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(u (batch,), -du/dx (batch, n_particles, dim))``, both detached."""
        return energy_and_force(self._energy, check_positions(x, self.n_particles, self.dim))

    def force(self, x: torch.Tensor) -> torch.Tensor:
        return self.energy_and_force(x)[1]

    def config(self) -> dict:
        """Constructor arguments (stored with reference samples to refuse a changed target on resume)."""
        return {"name": self.name}


def _distance_matrix(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All distances ``d_ij`` (batch, n, n) with 1 on the diagonal (finite, differentiable) and the off-diagonal
    mask (n, n) in the dtype of ``x``. ``torch.cdist`` from differences (not the Gram-matrix shortcut, which
    cancels digits in float32); its backward pass is a fused kernel, about twice as fast as broadcasting."""
    n = x.shape[1]
    off = ~torch.eye(n, dtype=torch.bool, device=x.device)
    d = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")  # (batch, n, n)
    return torch.where(off, d, torch.ones_like(d)), off.to(x.dtype)


class DoubleWell4(Target):
    """DW4: ``u = sum_{i<j} a (d_ij - d0)^4 + b (d_ij - d0)^2 + c`` (Köhler et al. 2020), in kT.

    Args:
        n_particles, dim: 4 particles in 2D for DW4.
        a, b, c, d0: the literature's ``a = 0.9, b = -4, c = 0, d0 = 4``.
    """

    name = "dw4"
    translation_invariant = True

    def __init__(self, n_particles: int = 4, dim: int = 2, a: float = 0.9, b: float = -4.0, c: float = 0.0,
                 d0: float = 4.0):
        self.n_particles, self.dim = int(n_particles), int(dim)
        self.a, self.b, self.c, self.d0 = float(a), float(b), float(c), float(d0)

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        d, off = _distance_matrix(x)
        r = d - self.d0
        # each unordered pair appears twice in the matrix
        return 0.5 * ((self.a * r**4 + self.b * r**2 + self.c) * off).sum((1, 2))

    def config(self) -> dict:
        return {"name": self.name, "n_particles": self.n_particles, "dim": self.dim, "a": self.a, "b": self.b,
                "c": self.c, "d0": self.d0}


class LennardJones(Target):
    """LJn of the equivariant-flow literature: ordered-pair Lennard-Jones plus a harmonic pull to the centre.

    ``u = sum_{i != j} eps [(rm/d_ij)^12 - 2 (rm/d_ij)^6] + oscillator_scale * 0.5 * sum_i |x_i - mean(x)|^2``.
    The first sum runs over ordered pairs, i.e. twice the usual pair sum, as in ``bgflow``'s
    ``LennardJonesPotential`` that produced the LJ13/LJ55 data of those papers.

    Args:
        n_particles: 13 (LJ13) or 55 (LJ55).
        dim: 3.
        eps, rm: well depth (kT) and the position of the pair minimum.
        oscillator: add the harmonic term (the literature does).
        oscillator_scale: its force constant.
    """

    name = "lj"
    translation_invariant = True

    def __init__(self, n_particles: int = 13, dim: int = 3, eps: float = 1.0, rm: float = 1.0,
                 oscillator: bool = True, oscillator_scale: float = 1.0):
        self.n_particles, self.dim = int(n_particles), int(dim)
        self.eps, self.rm = float(eps), float(rm)
        self.oscillator, self.oscillator_scale = bool(oscillator), float(oscillator_scale)
        self.name = f"lj{self.n_particles}"

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        d, off = _distance_matrix(x)
        s6 = (self.rm / d) ** 6
        u = self.eps * ((s6 * s6 - 2.0 * s6) * off).sum((1, 2))  # ordered pairs: each unordered pair twice
        if self.oscillator:
            centred = x - x.mean(1, keepdim=True)
            u = u + self.oscillator_scale * 0.5 * centred.pow(2).sum((1, 2))
        return u

    def config(self) -> dict:
        return {"name": self.name, "n_particles": self.n_particles, "dim": self.dim, "eps": self.eps,
                "rm": self.rm, "oscillator": self.oscillator, "oscillator_scale": self.oscillator_scale}


class GaussianMixture(Target):
    """A normalised mixture of isotropic Gaussians on ``(n_particles, dim)``: exact density, samples and moments.

    For tests of samplers and flows: ``log_prob`` is the exact normalised log-density.

    Args:
        means: (K, n_particles * dim) component means (or (K, n_particles, dim)).
        stds: (K,) isotropic standard deviations.
        weights: (K,) mixture weights (normalised here); default uniform.
        n_particles, dim: the event shape (default: one particle in ``means.shape[-1]`` dimensions).
    """

    name = "gmm"

    def __init__(self, means, stds, weights=None, n_particles: int | None = None, dim: int | None = None):
        means = torch.as_tensor(means, dtype=torch.float64)
        k = means.shape[0]
        means = means.reshape(k, -1)
        if n_particles is None:
            n_particles, dim = 1, means.shape[1]
        elif dim is None:
            dim = means.shape[1] // n_particles
        if n_particles * dim != means.shape[1]:
            raise SamplingInputError(f"means have {means.shape[1]} coordinates, not n_particles * dim = "
                                     f"{n_particles * dim}", hint="pass matching n_particles and dim")
        stds = torch.as_tensor(stds, dtype=torch.float64).reshape(-1).expand(k).clone()
        weights = torch.ones(k, dtype=torch.float64) if weights is None else torch.as_tensor(weights,
                                                                                            dtype=torch.float64)
        if (stds <= 0).any() or (weights < 0).any() or weights.shape != (k,) or weights.sum() <= 0:
            raise SamplingInputError("stds must be positive and weights non-negative, one per component",
                                     hint=f"pass {k} stds > 0 and {k} weights >= 0")
        self.means, self.stds, self.weights = means, stds, weights / weights.sum()
        self.n_particles, self.dim = int(n_particles), int(dim)

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(x.shape[0], -1)
        mu, s, w = (t.to(x) for t in (self.means, self.stds, self.weights))
        d = flat.shape[1]
        sq = ((flat[:, None, :] - mu[None]) ** 2).sum(-1)  # (batch, K)
        logn = -0.5 * sq / s**2 - d * torch.log(s) - 0.5 * d * math.log(2 * math.pi)
        return -torch.logsumexp(logn + torch.log(w), dim=1)

    def sample(self, n: int, generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Exact samples (n, n_particles, dim)."""
        comp = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.means.shape[1], generator=generator, dtype=torch.float64)
        x = self.means[comp] + self.stds[comp, None] * z
        return x.reshape(n, self.n_particles, self.dim).to(dtype)

    def mean(self) -> torch.Tensor:
        """Exact mean (n_particles * dim,)."""
        return (self.weights[:, None] * self.means).sum(0)

    def covariance(self) -> torch.Tensor:
        """Exact covariance (n_particles * dim, n_particles * dim)."""
        m = self.mean()
        d = self.means.shape[1]
        eye = torch.eye(d, dtype=torch.float64)
        c = sum(w * (s**2 * eye + torch.outer(mu - m, mu - m)) for w, s, mu in
                zip(self.weights, self.stds, self.means))
        return c

    def config(self) -> dict:
        return {"name": self.name, "means": self.means.tolist(), "stds": self.stds.tolist(),
                "weights": self.weights.tolist(), "n_particles": self.n_particles, "dim": self.dim}


class ForceFieldTarget(Target):
    """A compscope potential (e.g. :class:`compscope.models.EquivariantPotential`) as a Boltzmann target at ``T``.

    Energies from the model are in eV and are divided by ``kB T`` (``ase.units.kB``) here, at this boundary; the
    reduced energy is in kT like every other target. Molecules only (no periodic cell): edges join every pair
    closer than the model's cutoff, rebuilt for every call.

    Args:
        model: ``model(graph, compute_forces=..., ...) -> {"energy": (G,) eV, ...}``.
        atomic_numbers: (n_particles,) of the molecule.
        temperature: K.
        cutoff: neighbour radius in Å (default: ``model.cutoff``).
    """

    name = "forcefield"
    translation_invariant = True

    def __init__(self, model, atomic_numbers: Sequence[int], temperature: float = 300.0,
                 cutoff: float | None = None):
        from ase.units import kB

        self.model = model
        self.atomic_numbers = torch.as_tensor(list(atomic_numbers), dtype=torch.long)
        self.n_particles, self.dim = len(self.atomic_numbers), 3
        if temperature <= 0:
            raise SamplingInputError(f"temperature must be positive, got {temperature} K",
                                     hint="pass the temperature in kelvin, e.g. 300")
        self.temperature = float(temperature)
        self.kT = kB * self.temperature  # eV
        self.cutoff = float(cutoff if cutoff is not None else getattr(model, "cutoff", 5.0))

    def graph(self, x: torch.Tensor):
        """The :class:`~compscope.data.AtomicGraph` of a batch (positions keep their autograd history)."""
        from compscope.data import AtomicGraph

        b, n, _ = x.shape
        with torch.no_grad():
            d = torch.cdist(x, x)  # (b, n, n)
            mask = (d < self.cutoff) & ~torch.eye(n, dtype=torch.bool, device=x.device)
            g, recv, send = mask.nonzero(as_tuple=True)
        edge_index = torch.stack([send + g * n, recv + g * n])  # [sender, receiver]
        return AtomicGraph(
            positions=x.reshape(b * n, 3), atomic_numbers=self.atomic_numbers.to(x.device).repeat(b),
            edge_index=edge_index, cell_shifts=torch.zeros(edge_index.shape[1], 3, dtype=x.dtype, device=x.device),
            batch=torch.arange(b, device=x.device).repeat_interleave(n),
            cell=torch.zeros(b, 3, 3, dtype=x.dtype, device=x.device),
            pbc=torch.zeros(b, 3, dtype=torch.bool, device=x.device), cutoff=self.cutoff)

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(self.graph(x), compute_forces=False)
        return (out["energy"] / self.kT).to(x.dtype)

    def config(self) -> dict:
        return {"name": self.name, "atomic_numbers": self.atomic_numbers.tolist(),
                "temperature": self.temperature, "cutoff": self.cutoff}


def _alanine_dipeptide() -> Target:
    from ._openmm_target import alanine_dipeptide  # imports OpenMM: only when asked for

    return alanine_dipeptide()


TARGETS = {"dw4": DoubleWell4, "lj13": lambda: LennardJones(13), "lj55": lambda: LennardJones(55),
           "ala2": _alanine_dipeptide}
"""Named targets of the literature: ``get_target("lj13")``."""


def get_target(name: str) -> Target:
    """A named target: ``dw4``, ``lj13``, ``lj55`` or ``ala2`` (alanine dipeptide, OpenMM amber14, 300 K)."""
    key = str(name).lower()
    if key not in TARGETS:
        raise SamplingInputError(f"unknown target {name!r}", hint=f"use one of {', '.join(TARGETS)}")
    return TARGETS[key]()
