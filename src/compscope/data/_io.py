"""Reading and writing extended XYZ through ASE, with configurable label keys and clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from . import _keys as K

_CALC_NAMES = {K.ENERGY: "energy", K.FORCES: "forces", K.STRESS: "stress"}

# chemical elements known to ASE (Z = 1..118)
MAX_Z = 118


class DataFormatError(ValueError):
    """A data file cannot be used as it is; the message names the file/frame and the fix."""


def _lookup(atoms, key: str, per_atom: bool):
    store = atoms.arrays if per_atom else atoms.info
    if key in store:
        return store[key]
    calc = getattr(atoms, "calc", None)
    if calc is not None and key in getattr(calc, "results", {}):
        return calc.results[key]
    return None


def extract_labels(
    atoms,
    energy_key: str | None,
    forces_key: str | None,
    stress_key: str | None = None,
    require: bool = False,
    where: str = "",
) -> dict[str, Any]:
    """Reference energy (float), forces (N, 3) and stress (3, 3) of one frame, under the given keys.

    With ``require=True`` a missing energy/forces key raises :class:`DataFormatError` listing the keys
    that the frame does have.
    """
    out: dict[str, Any] = {}
    for canon, key, per_atom in ((K.ENERGY, energy_key, False), (K.FORCES, forces_key, True),
                                 (K.STRESS, stress_key, False)):
        if key is None:
            continue
        val = _lookup(atoms, key, per_atom)
        if val is None:
            if require and canon != K.STRESS:
                have = sorted(set(atoms.info) | set(atoms.arrays) | set(getattr(atoms.calc, "results", {}) or {}))
                raise DataFormatError(
                    f"{where}no {canon} under key {key!r}; this frame has keys {have}. "
                    f"Pass the right key (e.g. {canon}_key='REF_{canon}')."
                )
            continue
        if canon == K.ENERGY:
            val = float(np.asarray(val).reshape(()))
        elif canon == K.FORCES:
            val = np.asarray(val, dtype=np.float64).reshape(len(atoms), 3)
        else:
            val = np.asarray(val, dtype=np.float64)
            if val.shape == (6,):  # Voigt xx yy zz yz xz xy
                xx, yy, zz, yz, xz, xy = val
                val = np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
            val = val.reshape(3, 3)
        if not np.all(np.isfinite(val)):
            raise DataFormatError(f"{where}{canon} under key {key!r} contains NaN/inf; drop or fix this frame")
        out[canon] = val
    return out


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
        raise DataFormatError(f"{path}: no frames found")
    for i, atoms in enumerate(frames):
        z = atoms.get_atomic_numbers()
        if np.any(z <= 0) or np.any(z > MAX_Z):
            raise DataFormatError(f"{path} frame {i}: unknown element (atomic numbers {sorted(set(z.tolist()))})")
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

    from ._graph import graphs_from_atoms

    frames = read_extxyz(path, index=index)
    return graphs_from_atoms(
        frames, cutoff, source=str(path), energy_key=energy_key, forces_key=forces_key,
        stress_key=stress_key, require_labels=require_labels, dtype=dtype or torch.float64,
    )
