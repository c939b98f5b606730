"""OpenMM systems as Boltzmann targets: reduced energy ``u = E / kT`` and its force, positions in Å.

:class:`OpenMMTarget` wraps any OpenMM ``System`` (serialised to XML, so the target pickles into Ray workers and
DataLoader processes); :func:`alanine_dipeptide` is alanine dipeptide in vacuum with amber14 at 300 K, the system
of ``compscope md reference`` (:func:`compscope.integrations.openmm_systems.alanine_dipeptide_system`) without
constraints, because a Boltzmann generator models every Cartesian degree of freedom.

Units are converted here, at the boundary: positions Å -> nm on the way in, energies kJ/mol -> kT and forces
kJ/mol/nm -> kT/Å on the way out (``kT = R T`` with OpenMM's gas constant). Each thread of each process builds
its own ``Context`` on first use (contexts are not thread-safe); a batch is evaluated frame by frame. With
``platform="numba"`` the same System is evaluated for the whole batch in one call by
:class:`compscope.integrations.openmm_numba.SystemEnergy` (the same function, tested against the Reference
platform to 1e-9 relative; 5-8x cheaper per configuration for alanine dipeptide, where OpenMM's per-call cost
dominates).
Energies are differentiable: ``energy`` is a ``torch.autograd.Function`` whose backward pass uses OpenMM's
forces, so flows can train on it by reverse KL.

:func:`dihedral_angles` computes dihedrals (phi/psi) from positions, for any batch of frames (the shared
:mod:`compscope.analysis` implementation).
"""

from __future__ import annotations

import os
import threading

import numpy as np
import torch

from compscope.analysis import AnalysisInputError
from compscope.analysis import dihedral_angles as _dihedral_angles

from ._errors import SamplingInputError
from ._targets import Target, check_positions

__all__ = ["OpenMMTarget", "OpenMMEnergyError", "alanine_dipeptide", "dihedral_angles", "ALA2_PHI", "ALA2_PSI",
           "ALA2_BASIN", "MOLAR_GAS_CONSTANT_KJ"]

#: kJ/(mol K), the value OpenMM uses (``openmm.unit.MOLAR_GAS_CONSTANT_R``)
MOLAR_GAS_CONSTANT_KJ = 0.00831446261815324
NM_PER_A = 0.1
#: backbone dihedral atoms of the committed alanine-dipeptide PDB (0-based)
ALA2_PHI = (1, 6, 7, 9)
ALA2_PSI = (6, 7, 9, 16)
#: the C7ax / alpha_L basin of alanine dipeptide: 0 < phi < 2.2 rad
ALA2_BASIN = (0.0, 2.2)


class OpenMMEnergyError(SamplingInputError):
    """OpenMM could not evaluate a configuration (it returned NaN/inf or raised)."""


def dihedral_angles(x: torch.Tensor | np.ndarray, indices) -> torch.Tensor | np.ndarray:
    """Dihedral angles in (-pi, pi] of atoms ``indices``: :func:`compscope.analysis.dihedral_angles` (the shared
    implementation), raising :class:`SamplingInputError` on bad input."""
    try:
        return _dihedral_angles(x, indices)
    except AnalysisInputError as e:
        raise SamplingInputError(str(e), hint=e.hint) from e


class _Energy(torch.autograd.Function):
    """Reduced energies of a batch from OpenMM; the backward pass applies OpenMM's forces."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, target: OpenMMTarget):
        u, f = target.evaluate(x.detach().cpu().numpy())
        ctx.save_for_backward(torch.as_tensor(f, dtype=x.dtype, device=x.device))
        return torch.as_tensor(u, dtype=x.dtype, device=x.device)

    @staticmethod
    def backward(ctx, grad):
        (force,) = ctx.saved_tensors
        return -force * grad[:, None, None], None


class OpenMMTarget(Target):
    """An OpenMM ``System`` at temperature ``T`` as a Boltzmann target (positions in Å, energies in kT).

    Args:
        system: an ``openmm.System`` or its XML (``openmm.XmlSerializer``).
        temperature: K; ``kT = R T``.
        platform: OpenMM platform: ``Reference`` (double precision, default) or ``CPU``; or ``numba``: the same
            System's energy from :class:`compscope.integrations.openmm_numba.SystemEnergy`, batched (systems of
            bonds, angles, periodic torsions, a no-cutoff nonbonded force and OpenMM's OBC2 generalized-Born force
            only; others are refused).
        name: the target's name.
        n_particles: the number of atoms the samples have; a system with another number is refused.
        nonfinite: what a configuration whose OpenMM energy or force is NaN/inf (overlapping atoms) gets:
            ``"inf"`` (default) an energy of +inf and a zero force, counted in :attr:`n_nonfinite` (weights
            exp(-u) vanish, Metropolis rejects it), or ``"raise"``: :class:`OpenMMEnergyError`.

    Examples:
        >>> t = alanine_dipeptide()  # doctest: +SKIP
        >>> u, f = t.energy_and_force(x)  # x (batch, 22, 3) Å -> u (batch,) kT, f (batch, 22, 3) kT/Å  # doctest: +SKIP
    """

    name = "openmm"
    translation_invariant = True

    def __init__(self, system, temperature: float = 300.0, platform: str = "Reference", name: str = "openmm",
                 n_particles: int | None = None, nonfinite: str = "inf"):
        import openmm as mm

        xml = system if isinstance(system, str) else mm.XmlSerializer.serialize(system)
        sys_ = mm.XmlSerializer.deserialize(xml)
        if temperature <= 0:
            raise SamplingInputError(f"temperature must be positive, got {temperature} K",
                                     hint="pass the temperature in kelvin, e.g. 300")
        if platform != "numba" and platform not in [mm.Platform.getPlatform(i).getName()
                                                    for i in range(mm.Platform.getNumPlatforms())]:
            raise SamplingInputError(f"unknown OpenMM platform {platform!r}", hint="use Reference, CPU or numba")
        n_sys = sys_.getNumParticles()
        if n_particles is not None and int(n_particles) != n_sys:
            raise SamplingInputError(
                f"the OpenMM system has {n_sys} particles but the samples have {n_particles} atoms",
                hint="build the System from the same topology as the samples (same atoms, same order)")
        if sys_.usesPeriodicBoundaryConditions():
            raise SamplingInputError("periodic OpenMM systems are not supported as sampling targets",
                                     hint="use a non-periodic system (nonbondedMethod=NoCutoff)")
        if nonfinite not in ("inf", "raise"):
            raise SamplingInputError(f"nonfinite={nonfinite!r}", hint="use 'inf' or 'raise'")
        self.nonfinite = nonfinite
        #: configurations whose OpenMM energy or force was not finite (given u = +inf), over this object's life
        self.n_nonfinite = 0
        self._xml = xml
        self.n_particles, self.dim = n_sys, 3
        self.temperature = float(temperature)
        self.kT_kjmol = MOLAR_GAS_CONSTANT_KJ * self.temperature
        self.platform = platform
        self.name = name
        self.masses = np.array([sys_.getParticleMass(i)._value for i in range(n_sys)])  # dalton == amu
        self._local = threading.local()
        self._batched = None
        if platform == "numba":
            from compscope.integrations.openmm_numba import OpenMMSystemError, SystemEnergy

            try:
                self._batched = SystemEnergy(sys_)
            except OpenMMSystemError as e:
                raise SamplingInputError(f"platform='numba': {e}", hint=e.hint) from e

    def __getstate__(self):
        d = dict(self.__dict__)
        d.pop("_local")
        return d

    def __setstate__(self, d):
        self.__dict__.update(d)
        self._local = threading.local()

    @property
    def system_xml(self) -> str:
        return self._xml

    def context(self):
        """This thread's OpenMM ``Context`` (made on first use; one per thread and process)."""
        import openmm as mm

        key = os.getpid()
        ctx = getattr(self._local, "ctx", None)
        if ctx is None or self._local.pid != key:
            system = mm.XmlSerializer.deserialize(self._xml)
            plat = mm.Platform.getPlatformByName(self.platform)
            props = {"Threads": "1"} if self.platform == "CPU" else {}
            # the integrator is never stepped: the context only evaluates energies and forces
            ctx = mm.Context(system, mm.VerletIntegrator(0.001), plat, props)
            self._local.ctx, self._local.pid = ctx, key
        return ctx

    def check_samples(self, x) -> None:
        """Refuse samples whose atom count differs from the system's (message and hint say so)."""
        shape = tuple(np.shape(x))
        if len(shape) < 2 or shape[-1] != 3 or shape[-2] != self.n_particles:
            raise SamplingInputError(
                f"samples of shape {shape} do not match the OpenMM system of {self.n_particles} particles "
                f"(need (batch, {self.n_particles}, 3) in Å)",
                hint="build the System from the same topology as the samples (same atoms, same order)")

    def evaluate(self, x_A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(u (batch,) kT, force (batch, n, 3) kT/Å)`` in float64 for positions (batch, n, 3) in Å."""
        x_A = np.asarray(x_A, dtype=np.float64)
        self.check_samples(x_A)
        x_A = x_A.reshape(-1, self.n_particles, 3)
        if self._batched is not None:
            e, fb = self._batched.energy_forces(x_A * NM_PER_A)
            return self._finite(e / self.kT_kjmol, fb * (NM_PER_A / self.kT_kjmol))
        ctx = self.context()
        u = np.empty(len(x_A))
        f = np.empty_like(x_A)
        for b, xa in enumerate(x_A):
            ctx.setPositions(xa * NM_PER_A)
            st = ctx.getState(getEnergy=True, getForces=True)
            # OpenMM's own units are kJ/mol and nm: the raw values, without Quantity arithmetic per frame (about
            # half the cost of a 22-atom evaluation)
            e = st.getPotentialEnergy()._value
            fb = st.getForces(asNumpy=True)._value
            u[b] = e / self.kT_kjmol
            f[b] = np.asarray(fb) * NM_PER_A / self.kT_kjmol  # kJ/mol/nm -> kT/Å
        return self._finite(u, f)

    def _finite(self, u: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Non-finite energies or forces become ``u = inf, f = 0`` (counted), or raise (``nonfinite='raise'``)."""
        bad = ~(np.isfinite(u) & np.isfinite(f).reshape(len(u), -1).all(1))
        if bad.any():
            if self.nonfinite == "raise":
                raise OpenMMEnergyError(f"OpenMM returned a non-finite energy or force for configurations "
                                        f"{np.flatnonzero(bad)[:5].tolist()}",
                                        hint="those configurations overlap atoms; drop them, or build the target "
                                             "with nonfinite='inf' to give them zero weight")
            self.n_nonfinite += int(bad.sum())
            u[bad], f[bad] = np.inf, 0.0
        return u, f

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        return _Energy.apply(x, self)

    def _checked(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(x, torch.Tensor) and x.ndim == 3:
            self.check_samples(x)  # the atom-count message before the generic shape message
        return check_positions(x, self.n_particles, self.dim)

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        """Reduced energy ``E/kT`` (batch,), differentiable (backward through OpenMM's forces)."""
        return self._energy(self._checked(x))

    def energy_and_force(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(u (batch,), -du/dx (batch, n, 3))`` in kT and kT/Å straight from OpenMM (no autograd)."""
        x = self._checked(x)
        u, f = self.evaluate(x.detach().cpu().numpy())
        return (torch.as_tensor(u, dtype=x.dtype, device=x.device),
                torch.as_tensor(f, dtype=x.dtype, device=x.device))

    def bonds(self) -> list[tuple[int, int]]:
        """The covalent bonds of the system (its harmonic bonds and constraints), for pivot moves."""
        import openmm as mm

        sys_ = mm.XmlSerializer.deserialize(self._xml)
        pairs = {tuple(sorted(sys_.getConstraintParameters(i)[:2])) for i in range(sys_.getNumConstraints())}
        for f in sys_.getForces():
            if isinstance(f, mm.HarmonicBondForce):
                pairs |= {tuple(sorted(f.getBondParameters(i)[:2])) for i in range(f.getNumBonds())}
        return sorted((int(a), int(b)) for a, b in pairs)

    def config(self) -> dict:
        import hashlib

        return {"name": self.name, "temperature": self.temperature, "platform": self.platform,
                "n_particles": self.n_particles,
                "system_sha256": hashlib.sha256(self._xml.encode()).hexdigest()[:16]}


def alanine_dipeptide(temperature: float = 300.0, platform: str = "Reference", constraints: str | None = None,
                      n_particles: int | None = None, nonfinite: str = "inf",
                      solvent: str = "vacuum") -> OpenMMTarget:
    """Alanine dipeptide (ACE-ALA-NME, 22 atoms), amber14, no cutoff, as a target at ``temperature``: in vacuum or
    in implicit solvent (``solvent="obc"``: OBC2 generalized Born, the system of ``compscope md reference
    --solvent obc``).

    Args:
        temperature: K (300 in the Boltzmann-generator literature).
        platform: ``Reference`` or ``CPU``.
        constraints: ``None`` (default: every Cartesian degree of freedom free) or ``"HBonds"`` (MD's system;
            the potential energy is the same function, constraints only matter to dynamics).
        n_particles: atoms of the samples to be evaluated (checked against the system's 22).
        nonfinite: ``"inf"`` or ``"raise"`` (see :class:`OpenMMTarget`).
        solvent: a key of :data:`compscope.integrations.openmm_systems.SOLVENTS` (``vacuum``, ``obc``, ``gbn2``);
            the ``numba`` platform evaluates vacuum and ``obc`` (it refuses GBn2).
    """
    from compscope.integrations.openmm_systems import alanine_dipeptide_system

    _, system = alanine_dipeptide_system(solvent, constraints=constraints)
    t = OpenMMTarget(system, temperature=temperature, platform=platform,
                     name="ala2" if solvent == "vacuum" else f"ala2-{solvent}", n_particles=n_particles,
                     nonfinite=nonfinite)
    t.phi_psi = (ALA2_PHI, ALA2_PSI)
    return t

