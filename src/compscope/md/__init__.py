"""Molecular dynamics with learned force fields: batched integrators, stability monitors, trajectories.

Public API (see docs/md.md):

- integrators in init/apply style: :class:`VelocityVerlet` (NVE), :class:`LangevinBAOAB` (NVT),
  :class:`NoseHooverChain` (deterministic NVT), over a batch of replicas (:class:`MDState`);
- :class:`StabilityMonitor`: stops a replica that blows up, keeps its last good frame;
- :func:`simulate`: the whole run (HDF5/extxyz trajectories, restart files, resume, plots);
- :func:`simulate_dense`: the same engine for many copies of one small molecule (coarse-grained models) on dense
  (R, n, 3) tensors, one potential call per step, frames written in blocks;
- :mod:`compscope.md.potentials`: analytic potentials under the force-field contract;
- :func:`radial_distribution` (g(r), partial g_ab(r)) and :func:`density_g_cm3`: structural monitors of liquids;
- :func:`with_hydrogen_mass`: heavier hydrogens (isotope substitution or HMR) for a longer step;
- :func:`load_potential`: the MODEL argument of ``compscope md`` (a YAML potential config or any model file).

The ASE calculator and the OpenMM bridge are in :mod:`compscope.integrations`.
"""

from . import potentials
from ._checks import MDInputError, check_start, check_timestep, model_elements
from ._dense import simulate_dense, supports_dense
from ._forces import ForceEvaluator, wrap_positions
from ._integrators import (
    Integrator,
    LangevinBAOAB,
    NoseHooverChain,
    StochasticCellRescaling,
    VelocityVerlet,
    make_integrator,
)
from ._masses import masses_digest, with_hydrogen_mass
from ._model import build_from_config, load_potential
from ._monitors import StabilityMonitor, Violation, bond_lengths, find_bonds, summary_table
from ._observables import density_g_cm3, radial_distribution
from ._plots import plot_run
from ._runner import MDResult, check_periodic_support, init_state, make_supercells, simulate, state_to_atoms
from ._state import (
    MDState,
    degrees_of_freedom,
    kinetic_energy,
    maxwell_boltzmann,
    remove_com_momentum,
    temperature,
)
from ._trajectory import (
    ExtxyzTrajectory,
    H5Trajectory,
    TrajectoryError,
    load_restart,
    read_h5_observables,
    repair_extxyz,
    save_restart,
)

__all__ = [
    "potentials", "MDInputError", "check_start", "check_timestep",
    "model_elements", "build_from_config", "load_potential",
    "ForceEvaluator", "wrap_positions", "Integrator", "LangevinBAOAB", "NoseHooverChain", "VelocityVerlet",
    "make_integrator", "StochasticCellRescaling", "StabilityMonitor", "Violation", "bond_lengths", "find_bonds",
    "summary_table", "MDResult",
    "init_state", "simulate", "plot_run", "state_to_atoms", "MDState", "degrees_of_freedom", "kinetic_energy",
    "maxwell_boltzmann", "remove_com_momentum", "temperature", "ExtxyzTrajectory", "H5Trajectory",
    "TrajectoryError", "load_restart", "read_h5_observables", "repair_extxyz", "save_restart",
    "radial_distribution", "density_g_cm3", "make_supercells", "check_periodic_support",
    "simulate_dense", "supports_dense", "with_hydrogen_mass", "masses_digest",
]
