"""OpenMM bridge: run a compscope potential inside an OpenMM ``System``/``Context``; OpenMM's units converted here.

Route chosen (docs/md.md): the PyPI ``openmmtorch`` 1.5 wheel links against ``libtorch_cuda``/``libnvrtc``
and does not load with the CPU build of torch, and openmm-ml needs it. So the model runs in Python and
enters OpenMM through a ``CustomExternalForce`` with per-particle parameters ``(e0, fx, fy, fz)`` and energy
``e0 - fx*x - fy*y - fz*z``. Before each OpenMM step, :meth:`OpenMMBridge.update` evaluates the model at the
context's positions and writes ``f = F_model`` and ``e0_i = E/N + f_i . x_i``, so that at those positions
OpenMM's force equals the model's force and OpenMM's energy equals the model's energy. OpenMM's leapfrog
integrators (``VerletIntegrator``, ``LangevinMiddleIntegrator``) evaluate forces once per step at the
current positions, so stepping one step at a time integrates the model exactly; OpenMM keeps its own State
(positions, velocities, constraints, barostats, reporters).

Units: OpenMM uses nm, kJ/mol, ps; compscope uses Å, eV, fs (``ase.units``). This module is the one place
where they are converted (:data:`EV_TO_KJMOL`, :data:`NM_TO_A`, :func:`state_to_ev`), for the bridge and for the
classical reference data of :mod:`compscope.md.reference`.
"""

from __future__ import annotations

import numpy as np
import torch
from ase import units

from compscope.data import AtomicGraph
from compscope.data import keys as K
from compscope.errors import ConfigError

__all__ = ["OpenMMBridge", "EV_TO_KJMOL", "NM_TO_A", "FORCE_TO_OPENMM", "PS_TO_FS", "state_to_ev"]

EV_TO_KJMOL = 1.0 / (units.kJ / units.mol)  # 96.485... kJ/mol per eV
NM_TO_A = 10.0  # Å per nm
FORCE_TO_OPENMM = EV_TO_KJMOL * NM_TO_A  # eV/Å -> kJ/mol/nm
PS_TO_FS = 1000.0  # fs per ps


def state_to_ev(state) -> dict[str, np.ndarray | float]:
    """What an OpenMM ``State`` holds, in compscope's units: ``positions`` (N, 3) Å, ``forces`` (N, 3) eV/Å,
    ``energy`` eV and ``time`` fs (each only if the state was made with it, e.g. ``getForces=True``)."""
    import openmm.unit as u

    out: dict[str, np.ndarray | float] = {"time": float(state.getTime().value_in_unit(u.picosecond)) * PS_TO_FS}
    for key, call, unit, scale in (
        ("positions", "getPositions", u.nanometer, NM_TO_A),
        ("forces", "getForces", u.kilojoule_per_mole / u.nanometer, 1.0 / FORCE_TO_OPENMM),
    ):
        try:
            out[key] = np.asarray(getattr(state, call)(asNumpy=True).value_in_unit(unit)) * scale
        except Exception:  # noqa: BLE001 - OpenMM raises a bare Exception for data the state was made without
            pass
    try:
        out["energy"] = float(state.getPotentialEnergy().value_in_unit(u.kilojoule_per_mole)) / EV_TO_KJMOL
    except Exception:  # noqa: BLE001
        pass
    return out


class OpenMMBridge:
    """An OpenMM system whose forces come from a compscope potential.

    Args:
        potential: force-field module (``cutoff``, ``forward(graph)``).
        atoms: the structure (elements, masses, cell/pbc) the system is built for.
        dtype: dtype of the model evaluation (float64 for the conversion tests).
        platform: OpenMM platform name (``Reference`` computes in double precision; ``CPU``).
        force_group: OpenMM force group of the model force.

    Examples:
        >>> import openmm as mm  # doctest: +SKIP
        >>> bridge = OpenMMBridge(model, atoms)  # doctest: +SKIP
        >>> ctx = bridge.context(mm.LangevinMiddleIntegrator(300, 1.0, 0.0005))  # doctest: +SKIP
        >>> bridge.step(ctx, 1000)  # doctest: +SKIP
    """

    def __init__(self, potential: torch.nn.Module, atoms, dtype: torch.dtype = torch.float64,
                 platform: str = "Reference", force_group: int = 0):
        import openmm as mm

        self.potential = potential
        self.atoms = atoms.copy()
        self.dtype = dtype
        self.platform = platform
        self.system = mm.System()
        for m in atoms.get_masses():
            self.system.addParticle(float(m))  # amu == dalton
        if atoms.pbc.all():
            a, b, c = (mm.Vec3(*(v / NM_TO_A)) for v in atoms.cell.array)
            self.system.setDefaultPeriodicBoxVectors(a, b, c)
        elif atoms.pbc.any():
            raise ConfigError("OpenMM supports fully periodic or non-periodic systems, not a partly periodic cell",
                              hint="set atoms.pbc to all True or all False")
        self.force = mm.CustomExternalForce("e0 - fx*x - fy*y - fz*z")
        for name in ("e0", "fx", "fy", "fz"):
            self.force.addPerParticleParameter(name)
        for i in range(len(atoms)):
            self.force.addParticle(i, [0.0, 0.0, 0.0, 0.0])
        self.force.setForceGroup(force_group)
        self.system.addForce(self.force)
        self._graph = AtomicGraph.from_atoms(atoms, float(potential.cutoff), energy_key=None, forces_key=None,
                                             stress_key=None, dtype=dtype)

    def context(self, integrator, positions_A: np.ndarray | None = None):
        """An OpenMM ``Context`` on this bridge's platform, at ``positions_A`` (default: the atoms')."""
        import openmm as mm

        ctx = mm.Context(self.system, integrator, mm.Platform.getPlatformByName(self.platform))
        pos = self.atoms.get_positions() if positions_A is None else positions_A
        ctx.setPositions((np.asarray(pos) / NM_TO_A).tolist())
        self.update(ctx)
        return ctx

    def model_energy_forces(self, positions_A: np.ndarray) -> tuple[float, np.ndarray]:
        """Model energy (eV) and forces (N, 3) eV/Å at positions in Å (neighbour list rebuilt)."""
        g = self._graph.with_positions(torch.as_tensor(positions_A, dtype=self.dtype)).rebuild_edges()
        out = self.potential(g, compute_forces=True)
        return float(out[K.ENERGY].detach().double().sum()), out[K.FORCES].detach().double().numpy()

    def update(self, context) -> tuple[float, np.ndarray]:
        """Evaluate the model at the context's positions and load the result into the OpenMM force."""
        import openmm.unit as u

        # OpenMM evaluates e0 - f.x at its own positions in nm: use exactly those
        x_nm = np.asarray(context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(u.nanometer))
        e, f = self.model_energy_forces(x_nm * NM_TO_A)
        f_omm = f * FORCE_TO_OPENMM  # (N, 3) kJ/mol/nm
        e0 = e * EV_TO_KJMOL / len(f) + (f_omm * x_nm).sum(-1)  # (N,) kJ/mol
        for i in range(len(f)):
            self.force.setParticleParameters(i, i, [float(e0[i]), *map(float, f_omm[i])])
        self.force.updateParametersInContext(context)
        return e, f

    def step(self, context, n: int) -> None:
        """Advance ``n`` OpenMM integrator steps, refreshing the model force before each one."""
        integ = context.getIntegrator()
        for _ in range(int(n)):
            self.update(context)
            integ.step(1)
        self.update(context)

    @staticmethod
    def openmm_energy_forces(context) -> tuple[float, np.ndarray]:
        """OpenMM's potential energy (eV) and forces (N, 3) eV/Å, converted from kJ/mol and kJ/mol/nm."""
        out = state_to_ev(context.getState(getEnergy=True, getForces=True))
        return float(out["energy"]), out["forces"]
