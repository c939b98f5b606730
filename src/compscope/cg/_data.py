"""CG data files: a reference HDF5 (``compscope md reference``) mapped to beads, read back as per-replica arrays.

``compscope cg map REF.h5 --mapping backbone --out cg.h5`` writes::

    /                    attrs: mapping (JSON of the CGMap), source, temperature_K, solvent, dt_fs, save_every,
                                n_frames, n_dropped_nonfinite, has_forces
    /bead_z              (n_beads,) element of each bead's representative atom
    /replicas/XXXX/      positions (T, n_beads, 3) Å; forces (T, n_beads, 3) eV/Å (if the reference has forces);
                         phi, psi (T,) rad (alanine dipeptide, copied from the reference); time_ps (T,)

Frames whose positions or forces are not finite are left out and counted (``n_dropped_nonfinite``): one NaN force
would poison a force-matching loss.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._errors import CGDataError
from ._mapping import CGMap, map_from_spec, optimised_force_map

__all__ = ["map_reference", "CGData", "load_cg", "REGENERATE_HINT"]

log = logging.getLogger(__name__)

REGENERATE_HINT = ("force matching needs atomistic forces: regenerate the reference with `compscope md reference "
                   "alanine-dipeptide --solvent obc --out REF.h5` (it stores positions and forces), then "
                   "`compscope cg map REF.h5 --mapping backbone --out cg.h5`")


def _open(path: str | Path, mode: str = "r"):
    import h5py

    path = Path(path)
    if not path.exists():
        raise CGDataError(f"{path} not found", hint="give the HDF5 file written by `compscope md reference` or "
                                                    "`compscope cg map`")
    try:
        return h5py.File(path, mode)
    except OSError as err:
        raise CGDataError(f"{path} cannot be read as HDF5 ({err})") from err


def map_reference(ref: str | Path, mapping="backbone", out: str | Path | None = None, force_map: str = "aggregated",
                  fit_frames: np.ndarray | None = None, max_fit_frames: int = 20000, progress: bool = False) -> dict:
    """Map every replica of a reference file to beads and write the CG file ``out``.

    Args:
        ref: reference HDF5 (``topology_pdb``, ``replicas/*/positions``, optionally ``forces``).
        mapping: anything :func:`~compscope.cg.map_from_spec` reads (``backbone``, ``ca``, names, indices, COM groups).
        out: the CG file (default ``<ref stem>_cg.h5``).
        force_map: ``aggregated`` (the map's own force map: constrained hydrogens added to their bead) or
            ``optimised`` (:func:`~compscope.cg.optimised_force_map`, fitted on reference frames).
        fit_frames: indices into the concatenated frames (replicas in name order) that the optimised force map is
            fitted on (default: all; a cross-validation passes its training frames so that no held-out force is
            used); at most ``max_fit_frames`` of them, at an even stride.
        progress: a progress bar over the replicas (a 1 µs reference has hundreds).

    Returns:
        ``{"out", "n_beads", "n_frames", "n_dropped_nonfinite", "has_forces", "replicas", "force_map"}`` (with an
        optimised map also ``force_map_rms_before`` / ``_after``, eV/Å per bead on the fitting frames).
    """
    import h5py

    ref = Path(ref)
    out = Path(out) if out is not None else ref.with_name(ref.stem + "_cg.h5")
    with _open(ref) as f:
        if "topology_pdb" not in f or "replicas" not in f or not len(f["replicas"]):
            raise CGDataError(f"{ref} has no topology_pdb or no replicas/",
                              hint="make it with `compscope md reference alanine-dipeptide --out REF.h5`")
        pdb = f["topology_pdb"][()]
        pdb = pdb.decode() if isinstance(pdb, bytes) else str(pdb)
        cgmap = map_from_spec(pdb, mapping)
        attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
        has_forces = all("forces" in f["replicas"][r] for r in f["replicas"])
        fit_info = None
        if force_map not in ("aggregated", "optimised"):
            raise CGDataError(f"force_map={force_map!r}: use 'aggregated' or 'optimised'")
        if force_map == "optimised":
            if not has_forces:
                raise CGDataError(f"{ref} has no forces: an optimised force map is fitted on forces",
                                  hint=REGENERATE_HINT)
            cgmap, fit_info = _fit_force_map(f, pdb, cgmap, fit_frames, max_fit_frames)
        dropped = kept = 0
        with h5py.File(out, "w") as g:
            g.attrs.update({"mapping": json.dumps(cgmap.to_dict()), "source": str(ref), "has_forces": has_forces,
                            "force_map": force_map,
                            **({} if fit_info is None else {"force_map_fit_frames": fit_info["n_frames"]}),
                            **{k: attrs[k] for k in ("temperature_K", "solvent", "dt_fs", "save_every", "forcefield")
                               if k in attrs}})
            g["bead_z"] = np.asarray(cgmap.bead_z)
            names = sorted(f["replicas"])
            if progress:  # on stderr, and only on a terminal: stdout may be the JSON a script reads
                from rich.console import Console
                from rich.progress import track

                console = Console(stderr=True)
                if console.is_terminal:
                    names = track(names, description=f"mapping {len(names)} replicas", console=console)
            for name in names:
                src = f["replicas"][name]
                x = src["positions"][:]
                ok = np.isfinite(x).all(axis=(1, 2))
                fx = None
                if has_forces:
                    fx = src["forces"][:]
                    ok &= np.isfinite(fx).all(axis=(1, 2))
                dropped += int((~ok).sum())
                kept += int(ok.sum())
                dst = g.create_group(f"replicas/{name}")
                dst["positions"] = cgmap.map_positions(x[ok])
                if fx is not None:
                    dst["forces"] = cgmap.map_forces(fx[ok])
                for k in ("phi", "psi", "time_ps"):
                    if k in src:
                        dst[k] = src[k][:][ok]
            n_replicas = len(g["replicas"])
            g.attrs["n_frames"] = kept
            g.attrs["n_dropped_nonfinite"] = dropped
    if dropped:
        log.warning("%d frame(s) with non-finite positions or forces left out of %s", dropped, out)
    if not kept:
        raise CGDataError(f"no finite frames in {ref}", hint="regenerate the reference data")
    info = {"out": str(out), "n_beads": cgmap.n_beads, "n_frames": kept, "n_dropped_nonfinite": dropped,
            "has_forces": has_forces, "replicas": n_replicas, "force_map": force_map}
    if fit_info is not None:
        info.update(force_map_rms_before=fit_info["rms_before"], force_map_rms_after=fit_info["rms_after"],
                    force_map_fit_frames=fit_info["n_frames"])
    return info


def _fit_force_map(f, pdb: str, cgmap: CGMap, fit_frames, max_frames: int) -> tuple[CGMap, dict]:
    """The optimised force map fitted on (a stride of) ``fit_frames`` of the open reference ``f``."""
    names = sorted(f["replicas"])
    lengths = [len(f["replicas"][r]["forces"]) for r in names]
    total = int(sum(lengths))
    idx = np.arange(total) if fit_frames is None else np.unique(np.asarray(fit_frames, dtype=np.int64))
    if not len(idx) or idx.min() < 0 or idx.max() >= total:
        raise CGDataError(f"fit_frames must index the reference's {total} frames", hint="pass training-frame indices")
    if len(idx) > max_frames:
        idx = idx[np.linspace(0, len(idx) - 1, int(max_frames)).round().astype(int)]
    starts = np.cumsum([0, *lengths])
    forces = []
    for k, r in enumerate(names):
        local = idx[(idx >= starts[k]) & (idx < starts[k + 1])] - starts[k]
        if len(local):
            forces.append(f["replicas"][r]["forces"][:][local])
    new, info = optimised_force_map(pdb, cgmap, np.concatenate(forces))
    return new, {**info, "n_frames": int(len(idx))}


@dataclass
class CGData:
    """A CG file in memory: per-replica arrays (positions and, if present, forces), the map and metadata."""

    positions: list[np.ndarray]  # each (T_r, n_beads, 3) Å
    forces: list[np.ndarray] | None  # each (T_r, n_beads, 3) eV/Å
    phi: list[np.ndarray] | None
    psi: list[np.ndarray] | None
    cgmap: CGMap
    temperature: float
    n_dropped_nonfinite: int
    path: str

    @property
    def n_frames(self) -> int:
        return int(sum(len(p) for p in self.positions))

    @property
    def bead_z(self) -> list[int]:
        return list(self.cgmap.bead_z)

    def require_forces(self) -> None:
        """Refuse (with how to regenerate) a file without forces: force matching cannot train on it."""
        if self.forces is None:
            raise CGDataError(f"{self.path} has no forces", hint=REGENERATE_HINT)


def load_cg(path: str | Path) -> CGData:
    """Read a CG file written by :func:`map_reference`."""
    with _open(path) as f:
        if "mapping" not in f.attrs or "replicas" not in f:
            raise CGDataError(f"{path} is not a CG file (no mapping attribute or replicas/)",
                              hint="make it with `compscope cg map REF.h5 --mapping backbone --out cg.h5`")
        cgmap = CGMap.from_dict(json.loads(f.attrs["mapping"]))
        names = sorted(f["replicas"])
        has_f = all("forces" in f["replicas"][r] for r in names)
        has_d = all("phi" in f["replicas"][r] for r in names)
        return CGData(
            positions=[f["replicas"][r]["positions"][:] for r in names],
            forces=[f["replicas"][r]["forces"][:] for r in names] if has_f else None,
            phi=[f["replicas"][r]["phi"][:] for r in names] if has_d else None,
            psi=[f["replicas"][r]["psi"][:] for r in names] if has_d else None,
            cgmap=cgmap, temperature=float(f.attrs.get("temperature_K", 300.0)),
            n_dropped_nonfinite=int(f.attrs.get("n_dropped_nonfinite", 0)), path=str(path))
