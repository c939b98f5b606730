"""CG trajectory files written by ``compscope cg simulate`` (read by ``compscope cg compare``).

Layout::

    /                attrs: mapping (JSON of the CGMap), temperature_K, dt_fs, traj_every, steps, ns_per_day,
                            model (path), integrator
    /positions       (R, T, n_beads, 3) Å, replica by replica (frames after a replica stopped are repeated
                     from its last good frame by the MD engine: read only ``stable_frames``)
    /stable_frames   (R,) frames of each replica before its stability monitor stopped it (T when stable)
    /phi, /psi       (R, T) rad, backbone maps only
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ._mapping import CGMap

__all__ = ["write_cg_trajectory"]


def write_cg_trajectory(path: str | Path, positions: np.ndarray, stable_frames: np.ndarray, cgmap: CGMap | None,
                        **attrs) -> Path:
    """Write ``positions`` (R, T, n_beads, 3) and the per-replica number of stable frames to ``path``."""
    import h5py

    from ._compare import backbone_dihedrals

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.asarray(positions, dtype=np.float64)
    with h5py.File(path, "w") as f:
        f["positions"] = x
        f["positions"].attrs["unit"] = "angstrom"
        f["stable_frames"] = np.asarray(stable_frames, dtype=np.int64)
        if cgmap is not None:
            f.attrs["mapping"] = json.dumps(cgmap.to_dict())
        f.attrs.update({k: v for k, v in attrs.items() if v is not None})
        if x.shape[2] == 5 and x.shape[1]:
            phi, psi = backbone_dihedrals(x)
            f["phi"] = phi.reshape(x.shape[:2])
            f["psi"] = psi.reshape(x.shape[:2])
    return path
