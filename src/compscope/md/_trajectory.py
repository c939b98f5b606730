"""Trajectory files: HDF5 (H5MD-like layout), extended XYZ, restart files, and repair of corrupt tails.

HDF5 layout (H5MD 1.1 names; all replicas of the batch form one particle group ``all``; ``replica`` maps
atoms to replicas)::

    /h5md                      attrs: version, creator
    /particles/all/species     (N,) atomic numbers
    /particles/all/replica     (N,) replica index
    /particles/all/mass        (N,) amu
    /particles/all/box/edges   (G, 3, 3) Å (rows are lattice vectors); attr pbc (G, 3)
    /particles/all/{position,velocity,force}/value  (T, N, 3)  Å, Å/fs, eV/Å (chunks of ``chunk_frames`` frames)
    /particles/all/{position,...}/step, time        (T,) int, (T,) ps
    /observables/{potential_energy,kinetic_energy,temperature,conserved_energy,active}/value  (T, G)

The root attribute ``n_frames`` is written after every complete frame, so a file cut during a write is
read (and truncated) back to its last complete frame.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np
import torch

from compscope.errors import CompscopeError

__all__ = [
    "H5Trajectory", "ExtxyzTrajectory", "save_restart", "load_restart", "repair_extxyz", "read_h5_observables",
    "TrajectoryError",
]

log = logging.getLogger(__name__)

_PER_ATOM = ("position", "velocity", "force")
_OBS = ("potential_energy", "kinetic_energy", "temperature", "conserved_energy", "active", "volume")
_OPTIONAL_OBS = ("volume",)  # absent from files written before it existed (resumed runs go on without it)


class TrajectoryError(CompscopeError, RuntimeError):
    """A trajectory or restart file cannot be used; the message says what to do."""


class H5Trajectory:
    """Append-only H5MD-like writer (see the module docstring for the layout)."""

    def __init__(self, path: str | Path, species: np.ndarray, replica: np.ndarray, masses: np.ndarray,
                 cell: np.ndarray, pbc: np.ndarray, dt_fs: float, append: bool = False, chunk_frames: int = 1):
        import h5py

        self.path = Path(path)
        self.n_atoms = len(species)
        self.n_rep = int(cell.shape[0])
        if append and self.path.exists():
            try:
                self.f = h5py.File(self.path, "a")
            except OSError as err:
                raise TrajectoryError(
                    f"{self.path} cannot be opened as HDF5 ({err}); it is corrupt beyond repair. Move it away "
                    "and resume: the run restarts its HDF5 output from the restart file's step."
                ) from err
            return
        self.f = h5py.File(self.path, "w")
        self.f.create_group("h5md").attrs.update({"version": np.array([1, 1]), "creator": "compscope.md"})
        p = self.f.create_group("particles/all")
        p["species"] = np.asarray(species, dtype=np.int32)
        p["replica"] = np.asarray(replica, dtype=np.int32)
        p["mass"] = np.asarray(masses, dtype=np.float64)
        p.create_dataset("box/edges", data=np.asarray(cell, dtype=np.float64))
        p["box"].attrs["pbc"] = np.asarray(pbc, dtype=bool)
        for name in _PER_ATOM:
            g = p.create_group(name)
            g.create_dataset("value", shape=(0, self.n_atoms, 3), maxshape=(None, self.n_atoms, 3),
                             dtype=np.float64, chunks=(max(1, int(chunk_frames)), self.n_atoms, 3))
            g.create_dataset("step", shape=(0,), maxshape=(None,), dtype=np.int64)
            g.create_dataset("time", shape=(0,), maxshape=(None,), dtype=np.float64)
        for name in _OBS:
            g = self.f.create_group(f"observables/{name}")
            g.create_dataset("value", shape=(0, self.n_rep), maxshape=(None, self.n_rep), dtype=np.float64)
            g.create_dataset("step", shape=(0,), maxshape=(None,), dtype=np.int64)
            g.create_dataset("time", shape=(0,), maxshape=(None,), dtype=np.float64)
        self.f["particles/all/position"].attrs["unit"] = "angstrom"
        self.f["particles/all/velocity"].attrs["unit"] = "angstrom/fs"
        self.f["particles/all/force"].attrs["unit"] = "eV/angstrom"
        self.f.attrs["dt_fs"] = dt_fs
        self.f.attrs["n_frames"] = 0
        self.f.flush()

    @property
    def n_frames(self) -> int:
        return int(self.f.attrs["n_frames"])

    def steps(self) -> np.ndarray:
        return self.f["particles/all/position/step"][: self.n_frames]

    def truncate(self, max_step: int) -> int:
        """Drop incomplete frames and frames after ``max_step``; return the number of frames kept."""
        n = self.n_frames
        keep = int(np.sum(self.f["particles/all/position/step"][:n] <= max_step))
        for grp in [f"particles/all/{k}" for k in _PER_ATOM] + [f"observables/{k}" for k in _OBS
                                                                   if f"observables/{k}" in self.f]:
            for ds in ("value", "step", "time"):
                d = self.f[f"{grp}/{ds}"]
                d.resize(keep, axis=0)
        self.f.attrs["n_frames"] = keep
        self.f.flush()
        return keep

    def write(self, step: int, time_ps: float, positions: np.ndarray, velocities: np.ndarray, forces: np.ndarray,
              observables: dict[str, np.ndarray]) -> None:
        """Append one frame: (N, 3) arrays and (G,) observables."""
        n = self.n_frames
        for name, arr in zip(_PER_ATOM, (positions, velocities, forces)):
            g = self.f[f"particles/all/{name}"]
            for ds in ("value", "step", "time"):
                g[ds].resize(n + 1, axis=0)
            g["value"][n] = arr
            g["step"][n] = step
            g["time"][n] = time_ps
        for name in _OBS:
            if f"observables/{name}" not in self.f or name not in observables:
                continue
            g = self.f[f"observables/{name}"]
            for ds in ("value", "step", "time"):
                g[ds].resize(n + 1, axis=0)
            g["value"][n] = observables[name]
            g["step"][n] = step
            g["time"][n] = time_ps
        self.f.attrs["n_frames"] = n + 1
        self.f.flush()

    def write_block(self, steps: np.ndarray, times_ps: np.ndarray, positions: np.ndarray, velocities: np.ndarray,
                    forces: np.ndarray, observables: dict[str, np.ndarray]) -> None:
        """Append T frames at once: steps (T,), times (T,) ps, (T, N, 3) arrays and (T, G) observables; the
        frame count is updated after the whole block (a cut write leaves the frames before it)."""
        n, t = self.n_frames, len(steps)
        if t == 0:
            return
        for name, arr in zip(_PER_ATOM, (positions, velocities, forces)):
            g = self.f[f"particles/all/{name}"]
            for ds in ("value", "step", "time"):
                g[ds].resize(n + t, axis=0)
            g["value"][n:n + t] = arr
            g["step"][n:n + t] = steps
            g["time"][n:n + t] = times_ps
        for name in _OBS:
            if f"observables/{name}" not in self.f or name not in observables:
                continue
            g = self.f[f"observables/{name}"]
            for ds in ("value", "step", "time"):
                g[ds].resize(n + t, axis=0)
            g["value"][n:n + t] = observables[name]
            g["step"][n:n + t] = steps
            g["time"][n:n + t] = times_ps
        self.f.attrs["n_frames"] = n + t
        self.f.flush()

    def close(self) -> None:
        if getattr(self, "f", None) is not None:
            self.f.close()
            self.f = None


def read_h5_observables(path: str | Path) -> dict[str, np.ndarray]:
    """Observables (T, G), steps (T,), time (T,) ps and positions (T, N, 3) of the complete frames of a file.

    The file may be read while a run is still writing it (no HDF5 file lock; only frames counted in
    ``n_frames`` are read).
    """
    import h5py

    with h5py.File(path, "r", locking=False) as f:
        n = int(f.attrs["n_frames"])
        out = {name: f[f"observables/{name}/value"][:n] for name in _OBS if f"observables/{name}" in f}
        out["step"] = f["particles/all/position/step"][:n]
        out["time_ps"] = f["particles/all/position/time"][:n]
        out["positions"] = f["particles/all/position/value"][:n]
        out["species"] = f["particles/all/species"][:]
        out["replica"] = f["particles/all/replica"][:]
        out["cell"] = f["particles/all/box/edges"][:]
        out["pbc"] = f["particles/all/box"].attrs["pbc"]
    return out


class ExtxyzTrajectory:
    """Extended XYZ writer: one frame per replica per saved step (info: ``step``, ``replica``, ``time_fs``)."""

    def __init__(self, path: str | Path, append: bool = False):
        self.path = Path(path)
        self.fh = open(self.path, "a" if append else "w")

    def write(self, atoms_list: list, step: int, time_fs: float) -> None:
        from ase.io import write

        for g, atoms in enumerate(atoms_list):
            atoms.info.update({"step": int(step), "replica": g, "time_fs": float(time_fs)})
            write(self.fh, atoms, format="extxyz")
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None


_STEP = re.compile(r"(?:^|\s)step=(\d+)")


def repair_extxyz(path: str | Path, max_step: int | None = None, n_replicas: int | None = None) -> tuple[int, int]:
    """Cut an extxyz trajectory back to its last complete frame (and to ``step <= max_step``).

    A frame is complete when it has its atom-count line, a comment line and that many atom lines, each
    ending in a newline and with the same number of columns as the first. With ``n_replicas`` the file is
    also cut back to the last step for which all replicas were written.

    Returns:
        ``(frames kept, bytes removed)``.
    """
    path = Path(path)
    data = path.read_bytes()
    pos, good_end, frames, ends, steps = 0, 0, 0, [], []
    while pos < len(data):
        nl = data.find(b"\n", pos)
        if nl < 0:
            break
        try:
            nat = int(data[pos:nl].strip())
        except ValueError:
            break
        cur = nl + 1
        cnl = data.find(b"\n", cur)
        if cnl < 0:
            break
        comment = data[cur:cnl].decode(errors="replace")
        cur = cnl + 1
        ok, ncol = True, None
        for _ in range(nat):
            lnl = data.find(b"\n", cur)
            if lnl < 0:
                ok = False
                break
            cols = len(data[cur:lnl].split())
            if ncol is None:
                ncol = cols
            if cols != ncol or cols < 4:
                ok = False
                break
            cur = lnl + 1
        if not ok:
            break
        m = _STEP.search(comment)
        step = int(m.group(1)) if m else frames
        if max_step is not None and step > max_step:
            break
        frames += 1
        pos = good_end = cur
        ends.append(cur)
        steps.append(step)
    if n_replicas and frames % n_replicas:
        frames -= frames % n_replicas
        good_end = ends[frames - 1] if frames else 0
    removed = len(data) - good_end
    if removed:
        log.warning("%s: removed %d bytes after the last complete frame (%d frames kept)", path, removed, frames)
        with open(path, "r+b") as fh:
            fh.truncate(good_end)
    return frames, removed


def save_restart(path: str | Path, payload: dict) -> None:
    """Write a restart file atomically (temporary file + rename): it is never left half written."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_restart(path: str | Path) -> dict:
    """Load a restart file written by :func:`save_restart`."""
    path = Path(path)
    if not path.exists():
        raise TrajectoryError(f"no restart file {path}: run without --resume to start a new run in this folder")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a corrupt file
        raise TrajectoryError(f"restart file {path} is corrupt ({err}); delete it to resume from the last "
                              "complete trajectory frame") from err
