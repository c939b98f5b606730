"""Coarse-graining maps: atoms -> beads for coordinates, and the force map that goes with them.

A map is two linear operators on the atoms of one molecule (Noid et al., J. Chem. Phys. 128, 244114 (2008)):

- the coordinate map ``X_I = sum_i c_Ii x_i`` (slice map: ``c`` one-hot on the bead's atom; centre of mass: mass
  weights over the bead's atoms);
- the force map ``F_I = sum_i d_Ii f_i``, chosen so that the mapped forces of atomistic frames are unbiased samples
  of the CG mean force ``-dA/dX_I`` (the targets of force matching).

For a slice map without constraints ``d = c``. The reference data keep bonds to hydrogen rigid (``HBonds``), and the
forces OpenMM reports are the force-field forces without the constraint forces: then a hydrogen constrained to a
bead atom moves with it, and its force must be added to that bead (``d_I = 1`` on the bead atom and on every
hydrogen constrained to it). :func:`slice_map` does this aggregation; a hydrogen constrained to an atom outside
every bead is dropped together with that atom (both are integrated out). A centre-of-mass map sums the forces of
all atoms of a bead (``d_I = 1`` on them); a constraint between atoms of two different beads would couple the
beads' coordinates and is refused. Both choices satisfy ``sum_i d_Ii c_Ji = delta_IJ`` (checked at construction).
Kramer et al., JCTC 19, 3940 (2023) discuss these and optimised force maps; the tests check the aggregation
against finite differences of the mapped free energy on a toy with a constrained hydrogen.

Optimised force map (:func:`optimised_force_map`; Kramer et al. 2023): the consistency condition constrains ``d``
only on atoms that some bead's coordinate depends on. An atom group ``g`` outside every bead that moves rigidly
(a heavy atom with its constrained hydrogens, or a lone atom) can be translated without changing the bead
coordinates or breaking a constraint, so the conditional mean of its total force is zero (integration by parts:
``<F_g | X> = kT <d ln p / d t_g | X> = 0``). Adding ``w_Ig F_g`` to bead ``I`` therefore leaves the mean force
unchanged and only changes the noise; the weights that minimise ``<|F_I|^2>`` over reference frames are a linear
least-squares fit (one scalar per bead and group, so the map stays rotation-equivariant). On alanine dipeptide's
backbone map this lowers the force-target variance by ~40 % (the methyl and carbonyl groups' forces largely
cancel the end beads' bonded forces): force matching needs fewer frames for the same mean-force error.

Shapes: positions/forces ``(T, n_atoms, 3)`` -> ``(T, n_beads, 3)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ._errors import CGMappingError

__all__ = ["CGMap", "PDBAtom", "read_pdb_atoms", "slice_map", "com_map", "PRESETS", "map_from_spec",
           "optimised_force_map", "free_groups"]

#: named slice maps: PDB atom names selected, in file order
PRESETS = {
    "backbone": ("N", "CA", "C"),  # alanine dipeptide: C(ACE), N, CA, C, N(NME) as in CGnet (Wang et al. 2019)
    "ca": ("CA",),
}


@dataclass(frozen=True)
class PDBAtom:
    """One atom of a PDB file: its index (0-based, file order), name, residue name and number, element Z."""

    index: int
    name: str
    residue: str
    resseq: int
    z: int
    position: tuple[float, float, float]


def read_pdb_atoms(pdb_text: str) -> list[PDBAtom]:
    """The ATOM/HETATM records of a PDB text (element from columns 77-78, else from the atom name)."""
    from ase.data import atomic_numbers

    atoms = []
    for line in pdb_text.splitlines():
        if not line.startswith(("ATOM", "HETATM")):
            continue
        name = line[12:16].strip()
        sym = line[76:78].strip() if len(line) >= 78 else ""
        if not sym:
            sym = "".join(ch for ch in name if ch.isalpha())[:1]
        sym = sym[0].upper() + sym[1:].lower()
        if sym not in atomic_numbers:
            raise CGMappingError(f"PDB atom {name!r} has an unknown element {sym!r}",
                                 hint="give the element in columns 77-78 of the PDB file")
        xyz = (float(line[30:38]), float(line[38:46]), float(line[46:54]))
        atoms.append(PDBAtom(len(atoms), name, line[17:20].strip(), int(line[22:26]), atomic_numbers[sym], xyz))
    if not atoms:
        raise CGMappingError("the topology has no ATOM/HETATM records", hint="pass the PDB text of the molecule")
    return atoms


def _hydrogen_partners(atoms: list[PDBAtom], max_bond: float = 1.3) -> dict[int, int]:
    """Each hydrogen's bonded heavy atom (the nearest one within ``max_bond`` Å in the PDB coordinates)."""
    pos = np.array([a.position for a in atoms])
    heavy = np.array([a.index for a in atoms if a.z > 1])
    out = {}
    for a in atoms:
        if a.z != 1 or not len(heavy):
            continue
        d = np.linalg.norm(pos[heavy] - pos[a.index], axis=1)
        if d.min() <= max_bond:
            out[a.index] = int(heavy[d.argmin()])
    return out


@dataclass
class CGMap:
    """A coordinate map and its force map over one molecule.

    Args:
        coord_weights: ``c`` (n_beads, n_atoms); each row sums to 1.
        force_weights: ``d`` (n_beads, n_atoms).
        bead_names: one label per bead (e.g. ``ALA2:CA``).
        bead_z: the element of each bead's representative atom (MD takes masses and checks from it).
        kind: ``slice`` or ``com``; ``spec`` the selection it was built from (stored in files).
    """

    coord_weights: np.ndarray
    force_weights: np.ndarray
    bead_names: list[str]
    bead_z: list[int]
    kind: str = "slice"
    spec: dict = field(default_factory=dict)

    def __post_init__(self):
        c, d = np.asarray(self.coord_weights, float), np.asarray(self.force_weights, float)
        if c.ndim != 2 or c.shape != d.shape or c.shape[0] == 0:
            raise CGMappingError(f"coordinate and force weights must be (n_beads, n_atoms) alike, got {c.shape} "
                                 f"and {d.shape}")
        if not np.allclose(c.sum(1), 1.0):
            raise CGMappingError("each bead's coordinate weights must sum to 1")
        # consistency of the force map with the coordinate map (Noid et al. 2008, eq. 12)
        if not np.allclose(d @ c.T, np.eye(len(c)), atol=1e-10):
            raise CGMappingError("the force map is not consistent with the coordinate map (d c^T != 1)",
                                 hint="a bead's force weights must be 1 on its own atoms and 0 on other beads'")
        self.coord_weights, self.force_weights = c, d

    @property
    def n_beads(self) -> int:
        return self.coord_weights.shape[0]

    @property
    def n_atoms(self) -> int:
        return self.coord_weights.shape[1]

    def _check(self, x: np.ndarray, what: str) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim < 2 or x.shape[-2:] != (self.n_atoms, 3):
            raise CGMappingError(f"{what} of shape {x.shape} do not fit a map of {self.n_atoms} atoms",
                                 hint="map frames of the molecule the map was built for (..., n_atoms, 3)")
        return x

    def map_positions(self, x: np.ndarray) -> np.ndarray:
        """Bead positions ``(..., n_beads, 3)`` of atom positions ``(..., n_atoms, 3)``."""
        return np.einsum("Ii,...ik->...Ik", self.coord_weights, self._check(x, "positions"))

    def map_forces(self, f: np.ndarray) -> np.ndarray:
        """Mapped forces ``(..., n_beads, 3)`` (force-matching targets) of atom forces ``(..., n_atoms, 3)``."""
        return np.einsum("Ii,...ik->...Ik", self.force_weights, self._check(f, "forces"))

    def to_dict(self) -> dict:
        return {"kind": self.kind, "spec": self.spec, "bead_names": list(self.bead_names),
                "bead_z": [int(z) for z in self.bead_z], "coord_weights": self.coord_weights.tolist(),
                "force_weights": self.force_weights.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> CGMap:
        return cls(np.array(d["coord_weights"]), np.array(d["force_weights"]), list(d["bead_names"]),
                   [int(z) for z in d["bead_z"]], d.get("kind", "slice"), dict(d.get("spec", {})))


def _select(atoms: list[PDBAtom], selection) -> list[int]:
    """Atom indices of a selection: a preset name, a list of PDB atom names, or a list of indices."""
    if isinstance(selection, str):
        if selection.lower() not in PRESETS:
            raise CGMappingError(f"unknown mapping {selection!r}",
                                 hint=f"use one of {sorted(PRESETS)}, a list of PDB atom names or of atom indices")
        selection = PRESETS[selection.lower()]
    sel = list(selection)
    if not sel:
        raise CGMappingError("the selection names no atoms: every bead needs at least one atom")
    if all(isinstance(s, (int, np.integer)) for s in sel):
        bad = [int(s) for s in sel if not 0 <= int(s) < len(atoms)]
        if bad:
            raise CGMappingError(f"atom indices {bad} are not in the molecule (it has {len(atoms)} atoms, 0-based)")
        if len(set(sel)) != len(sel):
            raise CGMappingError(f"atom indices {sel} repeat an atom: each bead is one distinct atom")
        return [int(s) for s in sel]
    names = [str(s) for s in sel]
    present = {a.name for a in atoms}
    missing = [n for n in names if n not in present]
    if missing:
        raise CGMappingError(f"the mapping names atoms {missing} that the molecule does not have",
                             hint=f"its atom names are {sorted(present)}")
    return [a.index for a in atoms if a.name in names]


def slice_map(pdb_text: str, selection="backbone", constraints: str | None = "hbonds") -> CGMap:
    """A slice map: each bead is one atom (a preset, PDB atom names or 0-based indices).

    Args:
        pdb_text: the molecule (the reference file's ``topology_pdb``).
        selection: ``"backbone"`` (atoms named N, CA, C: for alanine dipeptide the five atoms of CGnet), ``"ca"``,
            a list of PDB atom names (every atom with one of these names, in file order) or of atom indices.
        constraints: ``"hbonds"``: bonds to hydrogen were rigid in the reference, so each hydrogen bonded to a bead
            atom adds its force to that bead; ``None``: unconstrained reference, ``d = c``.
    """
    atoms = read_pdb_atoms(pdb_text)
    idx = _select(atoms, selection)
    n = len(atoms)
    c = np.zeros((len(idx), n))
    c[np.arange(len(idx)), idx] = 1.0
    d = c.copy()
    if constraints is not None:
        if str(constraints).lower() != "hbonds":
            raise CGMappingError(f"constraints={constraints!r}: only 'hbonds' (or None) is supported")
        row = {a: k for k, a in enumerate(idx)}
        for h, heavy in _hydrogen_partners(atoms).items():
            if heavy in row and h not in row:
                d[row[heavy], h] = 1.0
    names = [f"{atoms[i].residue}{atoms[i].resseq}:{atoms[i].name}" for i in idx]
    spec = {"selection": selection if isinstance(selection, str) else list(selection), "constraints": constraints}
    return CGMap(c, d, names, [atoms[i].z for i in idx], "slice", spec)


def com_map(pdb_text: str, groups: Sequence[Sequence], constraints: str | None = "hbonds") -> CGMap:
    """A centre-of-mass map: bead ``k`` is the mass-weighted centre of ``groups[k]`` (atom names or indices).

    The force map sums each bead's atom forces. With ``constraints="hbonds"``, a hydrogen must sit in the bead of
    its heavy atom (else the constraint couples two beads and the summed forces are not the mean force).
    """
    from ase.data import atomic_masses

    atoms = read_pdb_atoms(pdb_text)
    if not groups:
        raise CGMappingError("a centre-of-mass map needs at least one bead")
    c = np.zeros((len(groups), len(atoms)))
    members = []
    for k, g in enumerate(groups):
        if not g:
            raise CGMappingError(f"bead {k} has no atoms", hint="give every bead at least one atom name or index")
        idx = _select(atoms, list(g))
        m = np.array([atomic_masses[atoms[i].z] for i in idx])
        c[k, idx] = m / m.sum()
        members.append(idx)
    d = (c > 0).astype(float)
    if (d.sum(0) > 1).any():
        raise CGMappingError(f"atoms {np.flatnonzero(d.sum(0) > 1).tolist()} are in more than one bead",
                             hint="beads of a centre-of-mass map must not share atoms")
    if constraints is not None:
        bead_of = {i: k for k, g in enumerate(members) for i in g}
        for h, heavy in _hydrogen_partners(atoms).items():
            if (h in bead_of) != (heavy in bead_of) or bead_of.get(h) != bead_of.get(heavy):
                raise CGMappingError(
                    f"hydrogen {atoms[h].name} (atom {h}) is constrained to {atoms[heavy].name} (atom {heavy}) but the "
                    "two are not in the same bead", hint="put each hydrogen into the bead of its heavy atom")
    rep = [max(g, key=lambda i: atomic_masses[atoms[i].z]) for g in members]
    names = [f"{atoms[i].residue}{atoms[i].resseq}:{atoms[i].name}" for i in rep]
    spec = {"groups": [list(g) for g in groups], "constraints": constraints}
    return CGMap(c, d, names, [atoms[i].z for i in rep], "com", spec)


def map_from_spec(pdb_text: str, mapping) -> CGMap:
    """A map from a CLI/config value: a preset name (``backbone``, ``ca``), ``{"slice": [...]}``,
    ``{"com": [[...], ...]}`` (each optionally with ``constraints``), or a :class:`CGMap` dict."""
    if isinstance(mapping, CGMap):
        return mapping
    if isinstance(mapping, str):
        return slice_map(pdb_text, mapping)
    if isinstance(mapping, dict):
        if "coord_weights" in mapping:
            return CGMap.from_dict(mapping)
        cons = mapping.get("constraints", "hbonds")
        if "slice" in mapping:
            return slice_map(pdb_text, mapping["slice"], cons)
        if "com" in mapping:
            return com_map(pdb_text, mapping["com"], cons)
    if isinstance(mapping, (list, tuple)):
        return slice_map(pdb_text, list(mapping))
    raise CGMappingError(f"cannot read the mapping {mapping!r}",
                         hint="use 'backbone', 'ca', a list of atom names/indices, {slice: [...]} or {com: [[...]]}")


def free_groups(pdb_text: str, cgmap: CGMap) -> list[list[int]]:
    """The rigid atom groups outside every bead: each heavy atom that no bead's coordinate or force map uses, with
    the hydrogens constrained to it (when the map's ``constraints`` is ``hbonds``), and each lone free hydrogen."""
    atoms = read_pdb_atoms(pdb_text)
    if len(atoms) != cgmap.n_atoms:
        raise CGMappingError(f"the topology has {len(atoms)} atoms but the map {cgmap.n_atoms}",
                             hint="give the PDB text of the molecule the map was built for")
    used = set(np.flatnonzero((np.abs(cgmap.coord_weights) + np.abs(cgmap.force_weights)).sum(0) > 0).tolist())
    hbonds = str(cgmap.spec.get("constraints", "hbonds")).lower() == "hbonds"
    partner = _hydrogen_partners(atoms) if hbonds else {}
    groups: dict[int, list[int]] = {}
    for a in atoms:
        if a.index in used:
            continue
        head = partner.get(a.index, a.index)
        if head in used:  # a hydrogen constrained to a bead atom that the map did not aggregate: leave it out
            continue
        groups.setdefault(head, []).append(a.index)
    return [sorted(g) for _, g in sorted(groups.items())]


def optimised_force_map(pdb_text: str, cgmap: CGMap, forces: np.ndarray) -> tuple[CGMap, dict]:
    """The force map of least noise among those that add free rigid groups' forces to the beads (module docstring).

    Args:
        pdb_text: the molecule.
        cgmap: the map to improve (its coordinate map and its force weights on bead atoms are kept).
        forces: atomistic forces (T, n_atoms, 3) of reference frames to fit the weights on (finite frames only
            are used; a few thousand frames suffice: there are n_beads x n_groups weights).

    Returns:
        the new map (``spec["force_map"] = "optimised"``) and ``{"groups", "weights", "rms_before", "rms_after"}``
        (per-bead RMS of the mapped force components on the fitting frames, eV/Å).
    """
    f = cgmap._check(forces, "forces").astype(np.float64).reshape(-1, cgmap.n_atoms, 3)
    f = f[np.isfinite(f).all(axis=(1, 2))]
    if len(f) < 2:
        raise CGMappingError("fitting an optimised force map needs at least 2 frames with finite forces",
                             hint="give reference frames with forces (`compscope md reference` stores them)")
    groups = free_groups(pdb_text, cgmap)
    base = cgmap.map_forces(f)  # (T, n_beads, 3)
    rms_before = np.sqrt((base**2).mean(axis=(0, 2)))
    d = cgmap.force_weights.copy()
    w = np.zeros((cgmap.n_beads, len(groups)))
    if groups:
        g = np.stack([f[:, grp].sum(1) for grp in groups], -1).reshape(-1, len(groups))  # (T * 3, n_groups)
        for i in range(cgmap.n_beads):
            w[i] = np.linalg.lstsq(g, -base[:, i].reshape(-1), rcond=None)[0]
            for k, grp in enumerate(groups):
                d[i, grp] = w[i, k]
    spec = {**cgmap.spec, "force_map": "optimised"}
    new = CGMap(cgmap.coord_weights, d, list(cgmap.bead_names), list(cgmap.bead_z), cgmap.kind, spec)
    rms_after = np.sqrt((new.map_forces(f) ** 2).mean(axis=(0, 2)))
    return new, {"groups": groups, "weights": w.tolist(), "rms_before": rms_before.tolist(),
                 "rms_after": rms_after.tolist()}
