"""Reading and writing extended XYZ through ASE, with configurable label keys and clear errors.

Label extraction (which key holds the energy, forces, stress) is :mod:`._labels`, shared with
:meth:`AtomicGraph.from_atoms <compscope.data.AtomicGraph.from_atoms>`; this module reads files and builds graphs
from them, so imports run one way: ``_labels`` <- ``_graph`` <- ``_io``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._graph import graphs_from_atoms
from ._labels import DataFormatError

# chemical elements known to ASE (Z = 1..118)
MAX_Z = 118


def read_extxyz(path: str | Path, index: str | int | slice = ":") -> list:
    """Read frames of an extended XYZ file with ASE, turning failures into a :class:`DataFormatError`.

    Checks: the file exists and is not empty, parses, has finite positions and known elements.
    """
    from ase.io import read

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file. Check the path, or run `compscope data list`.")
    if path.stat().st_size == 0:
        raise DataFormatError(f"{path}: the file is empty; expected extended XYZ frames")
    try:
        frames = read(str(path), index=index, format="extxyz")
    except Exception as exc:  # noqa: BLE001 - ASE raises many types for malformed files
        raise DataFormatError(
            f"{path}: not a readable extended XYZ file ({type(exc).__name__}: {exc}). "
            "Each frame needs an atom count line, a comment line (Properties=species:S:1:pos:R:3 ...) "
            "and one line per atom."
        ) from exc
    if not isinstance(frames, list):
        frames = [frames]
    if len(frames) == 0:
        raise DataFormatError(f"{path}: no frames found", hint="check the index (e.g. ':' for all frames)")
    for i, atoms in enumerate(frames):
        z = atoms.get_atomic_numbers()
        if np.any(z <= 0) or np.any(z > MAX_Z):
            raise DataFormatError(f"{path} frame {i}: unknown element (atomic numbers {sorted(set(z.tolist()))})",
                                  hint="the first column of each atom line must be a chemical symbol (H, C, ...)")
        if not np.all(np.isfinite(atoms.positions)):
            raise DataFormatError(f"{path} frame {i}: positions contain NaN/inf; fix or remove the frame")
    return frames


def write_extxyz(
    path: str | Path,
    frames,
    energies: np.ndarray | None = None,  # (G,)
    forces: list[np.ndarray] | None = None,  # G x (N_g, 3)
    energy_key: str = "energy",
    forces_key: str = "forces",
    extra_info: dict[str, np.ndarray] | None = None,  # name -> (G,)
) -> None:
    """Write frames to extended XYZ, optionally storing predictions under custom keys.

    Predictions are stored in ``atoms.info[energy_key]`` and ``atoms.arrays[forces_key]``; reference
    labels attached to the frames (single-point results) are kept as ``REF_energy``/``REF_forces``.
    """
    from ase.io import write

    out = []
    for g, atoms in enumerate(frames):
        a = atoms.copy()
        if atoms.calc is not None:  # keep the reference labels, as REF_energy / REF_forces
            res = atoms.calc.results
            if "energy" in res:
                a.info["REF_energy"] = float(res["energy"])
            if "forces" in res:
                a.arrays["REF_forces"] = np.asarray(res["forces"], dtype=np.float64)
        a.calc = None
        if energies is not None:
            a.info[energy_key] = float(energies[g])
        if forces is not None:
            a.arrays[forces_key] = np.asarray(forces[g], dtype=np.float64)
        for k, v in (extra_info or {}).items():
            a.info[k] = float(v[g])
        out.append(a)
    write(str(path), out, format="extxyz")


def load_graphs(
    path: str | Path,
    cutoff: float,
    energy_key: str | None = "energy",
    forces_key: str | None = "forces",
    stress_key: str | None = None,
    index: str | int | slice = ":",
    require_labels: bool = True,
    dtype=None,
):
    """Read an extxyz file into a list of :class:`AtomicGraph` (one per frame)."""
    import torch

    frames = read_extxyz(path, index=index)
    return graphs_from_atoms(
        frames, cutoff, source=str(path), energy_key=energy_key, forces_key=forces_key,
        stress_key=stress_key, require_labels=require_labels, dtype=dtype or torch.float64,
    )
