"""Checks of MD inputs, each failing with a message that says what to fix."""

from __future__ import annotations

import logging
import warnings

import numpy as np

from compscope.errors import CompscopeError

__all__ = ["MDInputError", "check_start", "check_timestep", "model_elements"]

log = logging.getLogger(__name__)


class MDInputError(CompscopeError, ValueError):
    """An MD input cannot be used; the message (or the hint) says how to fix it."""


def model_elements(potential) -> list[int] | None:
    """Atomic numbers a potential knows (``None``: any), read from common attribute names."""
    for name in ("atomic_numbers", "species", "z_table", "elements"):
        z = getattr(potential, name, None)
        if z is None:
            continue
        if hasattr(z, "zs"):  # MACE-style AtomicNumberTable
            z = z.zs
        try:
            vals = [int(v) for v in (z.tolist() if hasattr(z, "tolist") else z)]
        except (TypeError, ValueError):
            from ase.data import atomic_numbers

            vals = [atomic_numbers[str(v)] for v in z]
        return vals
    return None


def check_start(atoms_list: list, potential=None, min_distance: float = 0.5, source: str = "start structure") -> None:
    """Refuse overlapping atoms and elements the potential does not know.

    Raises:
        MDInputError: naming the frame, the atoms and the fix.
    """
    from ase.data import chemical_symbols

    known = model_elements(potential) if potential is not None else None
    for k, atoms in enumerate(atoms_list):
        where = f"{source}" + (f" frame {k}" if len(atoms_list) > 1 else "")
        if len(atoms) == 0:
            raise MDInputError(f"{where} has no atoms: pass a structure file with at least one atom")
        pos = atoms.get_positions()
        if not np.all(np.isfinite(pos)):
            raise MDInputError(f"{where} has NaN/inf positions: fix the structure file")
        if known is not None:
            unknown = sorted(set(atoms.get_atomic_numbers().tolist()) - set(known))
            if unknown:
                raise MDInputError(
                    f"{where} contains element(s) {[chemical_symbols[z] for z in unknown]} that the model does not "
                    f"know (it was trained on {[chemical_symbols[z] for z in sorted(known)]}); use a model trained "
                    "on these elements or remove those atoms"
                )
        from compscope.data import neighbor_list

        ei, sh = neighbor_list(pos, max(min_distance, 1e-3), cell=atoms.get_cell().array, pbc=atoms.get_pbc())
        if ei.shape[1]:
            i, j = ei[:, 0]
            d = np.linalg.norm(pos[j] - pos[i] + sh[0] @ atoms.get_cell().array)
            raise MDInputError(
                f"{where}: atoms {int(i)} ({atoms[int(i)].symbol}) and {int(j)} ({atoms[int(j)].symbol}) are "
                f"{d:.3f} Å apart (< {min_distance} Å): the structure has overlapping atoms; fix or relax it first"
            )


def check_timestep(dt_fs: float, atomic_numbers, masses=None) -> str | None:
    """Warn (and return the message) when ``dt_fs`` is clearly too large for the lightest atom present.

    The limit is 1 fs with standard hydrogens and 5 fs without hydrogen; the hydrogen limit grows as the square root
    of the lightest hydrogen mass when ``masses`` (amu) are given (deuterium: 1.4 fs; vibrational periods scale as
    the square root of the mass)."""
    z = np.asarray(atomic_numbers)
    hydrogen = z == 1
    if np.any(hydrogen):
        m_h = float(np.min(np.asarray(masses, float)[hydrogen])) if masses is not None else 1.008
        limit = round(float(np.sqrt(max(m_h, 1e-3) / 1.008)), 2)
        suggest = round(0.5 * limit, 2)
    else:
        limit, suggest = 5.0, 2.0
    if dt_fs > limit:
        what = "hydrogen-containing systems" if np.any(hydrogen) else "systems"
        msg = (f"time step {dt_fs} fs is too large for {what} (> {limit} fs): bond vibrations will be integrated "
               f"badly and the run may blow up; use --dt {suggest}")
        warnings.warn(msg, UserWarning, stacklevel=3)
        log.warning(msg)
        return msg
    return None
