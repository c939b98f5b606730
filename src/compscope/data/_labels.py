"""Reference labels of one frame (energy, forces, stress) under configurable keys, and the data error type.

Labels are read from ``atoms.info`` (energy, stress) and ``atoms.arrays`` (forces), or from an attached ASE
single-point calculator, under the key the user names (docs/conventions.md, "Label keys in files"). Used by
:meth:`AtomicGraph.from_atoms <compscope.data.AtomicGraph.from_atoms>` and the extxyz reader.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from compscope.errors import CompscopeError

from . import _keys as K

__all__ = ["DataFormatError", "extract_labels"]


class DataFormatError(CompscopeError, ValueError):
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
