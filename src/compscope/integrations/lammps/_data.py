"""LAMMPS data files: the header (counts, box, masses), atom types -> elements, and writing one from ASE atoms.

LAMMPS numbers atom types 1..ntypes; a compscope model knows elements. The map is given as one element per type
(like ``pair_coeff * * O H``) or, when not given, read from the ``Masses`` section (the element whose standard
atomic mass is within 0.1 amu). A type without a mapping, a mapping to an element the model does not know, or a
type count that disagrees with the map is refused before any MPI rank starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._errors import LammpsInputError

__all__ = ["DataHeader", "read_data_header", "resolve_types", "write_data"]

_SECTIONS = ("Atoms", "Velocities", "Masses", "Bonds", "Angles", "Dihedrals", "Impropers", "Pair Coeffs",
             "PairIJ Coeffs", "Bond Coeffs", "Angle Coeffs", "Ellipsoids", "Lines", "Triangles", "Bodies")
_MASS_TOLERANCE = 0.1  # amu


@dataclass
class DataHeader:
    """What a data file declares before its atom lines.

    Attributes:
        natoms: number of atoms.
        ntypes: number of atom types.
        box: ``[[xlo, xhi], [ylo, yhi], [zlo, zhi]]`` in Å.
        tilt: ``(xy, xz, yz)`` (zeros for an orthogonal box).
        masses: mass (amu) per type, for the types the ``Masses`` section lists.
    """

    natoms: int
    ntypes: int
    box: list[list[float]]
    tilt: tuple[float, float, float] = (0.0, 0.0, 0.0)
    masses: dict[int, float] = field(default_factory=dict)


def read_data_header(path: str | Path) -> DataHeader:
    """Read counts, box and masses of a LAMMPS data file (stops at the ``Atoms`` section: cheap for any size).

    Raises:
        LammpsInputError: the file is missing or has no ``atoms`` / ``atom types`` line.
    """
    path = Path(path)
    if not path.is_file():
        raise LammpsInputError(f"LAMMPS data file {path} not found",
                               hint="write one with compscope.integrations.lammps.write_data(atoms, path) or "
                                    "`compscope md lammps MODEL structure.extxyz` (converted for you)")
    natoms = ntypes = None
    box = [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]
    tilt = (0.0, 0.0, 0.0)
    masses: dict[int, float] = {}
    with path.open() as fh:
        fh.readline()  # the first line is a comment
        lines = iter(fh)
        for raw in lines:
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            words = line.split()
            if line in _SECTIONS or words[0] in _SECTIONS:
                if words[0] != "Masses":
                    break
                count = 0
                for mraw in lines:
                    mline = mraw.split("#", 1)[0].strip()
                    if not mline:
                        if count:
                            break
                        continue
                    t, m = mline.split()[:2]
                    masses[int(t)] = float(m)
                    count += 1
                    if ntypes is not None and count >= ntypes:
                        break
                continue
            if line.endswith("atom types"):
                ntypes = int(words[0])
            elif line.endswith("atoms"):
                natoms = int(words[0])
            elif line.endswith("xlo xhi"):
                box[0] = [float(words[0]), float(words[1])]
            elif line.endswith("ylo yhi"):
                box[1] = [float(words[0]), float(words[1])]
            elif line.endswith("zlo zhi"):
                box[2] = [float(words[0]), float(words[1])]
            elif line.endswith("xy xz yz"):
                tilt = (float(words[0]), float(words[1]), float(words[2]))
    if natoms is None or ntypes is None:
        raise LammpsInputError(f"{path} is not a LAMMPS data file: no `N atoms` / `N atom types` header line",
                               hint="write it with `write_data` in LAMMPS or compscope.integrations.lammps.write_data")
    return DataHeader(natoms=natoms, ntypes=ntypes, box=box, tilt=tilt, masses=masses)


def _element_from_mass(mass: float) -> str | None:
    from ase.data import atomic_masses, chemical_symbols

    z = int(np.argmin(np.abs(np.asarray(atomic_masses[1:]) - mass))) + 1
    return chemical_symbols[z] if abs(atomic_masses[z] - mass) <= _MASS_TOLERANCE else None


def resolve_types(header: DataHeader, elements: Sequence[str] | None, species: Sequence[int],
                  source: str = "data file") -> list[int]:
    """Atomic number of each atom type 1..ntypes (list index 0 is type 1).

    Args:
        header: the data file's header (:func:`read_data_header`).
        elements: one chemical symbol per type (``["O", "H"]``), or ``None`` to read them from the masses.
        species: atomic numbers the model knows.

    Raises:
        LammpsInputError: a type has no element (no mapping, no or unknown mass), the map has the wrong length, or
            an element is unknown to the model.
    """
    from ase.data import atomic_numbers, chemical_symbols

    if elements is not None:
        elements = list(elements)
        if len(elements) != header.ntypes:
            raise LammpsInputError(
                f"{source} declares {header.ntypes} atom types but {len(elements)} elements were given "
                f"({' '.join(elements)})",
                hint="give exactly one element per atom type, in type order (like pair_coeff * * O H)")
        bad = [e for e in elements if e not in atomic_numbers]
        if bad:
            raise LammpsInputError(f"unknown chemical symbols {bad}", hint="use symbols such as O, H, C")
        z = [atomic_numbers[e] for e in elements]
    else:
        z = []
        for t in range(1, header.ntypes + 1):
            if t not in header.masses:
                raise LammpsInputError(
                    f"atom type {t} of {source} has no mass (no Masses line) and no element was given",
                    hint="pass one element per type (--elements O H) or add a Masses section to the data file")
            symbol = _element_from_mass(header.masses[t])
            if symbol is None:
                raise LammpsInputError(
                    f"atom type {t} of {source} has mass {header.masses[t]} amu, which is no element's "
                    f"(within {_MASS_TOLERANCE} amu)",
                    hint="pass one element per type (--elements O H)")
            z.append(atomic_numbers[symbol])
    unknown = sorted({chemical_symbols[x] for x in z if x not in set(int(s) for s in species)})
    if unknown:
        known = " ".join(chemical_symbols[int(s)] for s in species)
        raise LammpsInputError(
            f"atom types of {source} map to elements {unknown} that the model does not know (it knows {known})",
            hint="check the type -> element map (--elements), or use a model trained on these elements")
    return z


def write_data(atoms, path: str | Path, elements: Sequence[str] | None = None) -> list[str]:
    """Write ``atoms`` (periodic, orthorhombic or triclinic) as a LAMMPS ``atomic`` data file in ``metal`` units.

    Types are numbered in the order of ``elements`` (default: sorted by atomic number), with a ``Masses`` section so
    the file maps back to elements by itself. Triclinic cells are rotated into LAMMPS's lower-triangular frame by
    ASE (forces read back are then in that frame). Returns the element of each type.
    """
    import ase.io
    from ase.data import atomic_numbers

    if elements is None:
        elements = sorted(set(atoms.get_chemical_symbols()), key=lambda s: atomic_numbers[s])
    missing = sorted(set(atoms.get_chemical_symbols()) - set(elements))
    if missing:
        raise LammpsInputError(f"elements {missing} of the structure have no atom type",
                               hint=f"list every element in `elements` (given: {list(elements)})")
    if not atoms.pbc.all():
        raise LammpsInputError("the LAMMPS route runs periodic boxes: the structure is not periodic in all three "
                               "directions", hint="give it a cell and pbc=True (a vacuum gap for a slab)")
    ase.io.write(str(path), atoms, format="lammps-data", units="metal", atom_style="atomic",
                 specorder=list(elements), masses=True)
    return list(elements)
