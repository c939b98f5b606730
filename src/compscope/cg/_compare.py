"""Comparing CG ensembles: Ramachandran free energies, bond/angle/dihedral distributions, JS and MSE tables.

``compscope cg compare CGTRAJ.h5 REF.h5`` reads bead frames from either kind of file (a ``cg simulate`` trajectory,
a ``cg map`` file, or an atomistic reference mapped with the trajectory's map) and reports:

- the Jensen-Shannon divergence (natural log) of the (phi, psi) histograms on 64 x 64 bins (and 61 x 61, the
  binning of the published CG code);
- the free-energy MSE in (kcal/mol)^2 on the bins populated in both, after the best constant shift;
- JS divergences of every bond, angle and dihedral distribution of the CG chain;

and a PNG with both Ramachandran free energies, their difference and the distributions side by side.
For alanine dipeptide's backbone map the beads C, N, CA, C, N are the atoms of phi and psi, so
``phi = dihedral(0, 1, 2, 3)`` and ``psi = dihedral(1, 2, 3, 4)`` of the beads.

The histograms and the JS divergence are the shared ones of :mod:`compscope.analysis` (also used by sampling and
md); the free-energy MSE on populated bins is this module's.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import torch

from compscope.analysis import js_divergence, ramachandran_histogram
from compscope.models import bond_angles, bond_lengths, dihedral_angles

from ._errors import CGDataError
from ._mapping import CGMap
from ._prior import chain_topology

__all__ = ["free_energy_mse", "read_frames", "compare", "backbone_dihedrals", "KCAL_PER_EV"]

KCAL_PER_EV = 23.060547830619026  # kcal/mol per eV
_KB_KCAL = 0.0019872042586  # kcal/mol/K


def free_energy_mse(p: np.ndarray, q: np.ndarray, temperature: float = 300.0, where: np.ndarray | None = None) -> float:
    """MSE (kcal/mol)^2 of ``-kT ln p`` and ``-kT ln q`` on bins populated in both, after the best constant shift.

    ``where``: a boolean mask of the bins to score besides (e.g. bins with at least so many reference frames: the
    free energy of a bin holding a few correlated frames is mostly noise, and an unweighted mean over bins counts it
    as much as a basin's)."""
    ok = (np.asarray(p) > 0) & (np.asarray(q) > 0)
    if where is not None:
        ok &= np.asarray(where, bool)
    if not ok.any():
        return float("inf")
    kT = _KB_KCAL * temperature
    d = -kT * np.log(p[ok]) + kT * np.log(q[ok])
    return float(((d - d.mean()) ** 2).mean())


def backbone_dihedrals(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(phi, psi) of backbone-map frames (..., 5, 3): the dihedrals of beads 0-3 and 1-4."""
    t = torch.as_tensor(np.asarray(x, dtype=np.float64).reshape(-1, x.shape[-2], 3))
    d = dihedral_angles(t, torch.tensor([[0, 1, 2, 3], [1, 2, 3, 4]])).numpy()
    return d[:, 0], d[:, 1]


def read_frames(path: str | Path, cgmap: CGMap | None = None) -> tuple[np.ndarray, CGMap | None, float]:
    """Bead frames (M, n_beads, 3), the map and the temperature of a CG trajectory, CG map file or (with
    ``cgmap``) an atomistic reference file."""
    import h5py

    path = Path(path)
    if not path.exists():
        raise CGDataError(f"{path} not found")
    with h5py.File(path, "r") as f:
        temp = float(f.attrs.get("temperature_K", 300.0))
        fmap = CGMap.from_dict(json.loads(f.attrs["mapping"])) if "mapping" in f.attrs else None
        if "positions" in f and f["positions"].ndim == 4:  # cg simulate trajectory (R, T, n, 3)
            x = f["positions"][:]
            keep = f["stable_frames"][:] if "stable_frames" in f else np.full(len(x), x.shape[1])
            frames = np.concatenate([x[r, : int(keep[r])] for r in range(len(x))])
            return frames, fmap, temp
        if "replicas" in f:
            reps = [f["replicas"][r]["positions"][:] for r in sorted(f["replicas"])]
            x = np.concatenate(reps)
            if fmap is not None:  # a cg map file
                return x, fmap, temp
            if cgmap is None:
                raise CGDataError(f"{path} is an atomistic reference: compare it with a CG file that stores its map")
            return cgmap.map_positions(x), cgmap, temp
    raise CGDataError(f"{path}: neither a CG trajectory, a CG map file nor a reference file")


def _dist_js(a: np.ndarray, b: np.ndarray, bins: int = 100) -> float:
    lo, hi = min(a.min(), b.min()), max(a.max(), b.max())
    if hi <= lo:
        return 0.0
    return js_divergence(np.histogram(a, bins, (lo, hi))[0] + 0.0, np.histogram(b, bins, (lo, hi))[0] + 0.0)


def compare(cg_path: str | Path, ref_path: str | Path, png: str | Path | None = None) -> dict:
    """The comparison table of ``compscope cg compare`` (see the module docstring); writes ``png`` if given."""
    x, cgmap, temp = read_frames(cg_path)
    y, _, _ = read_frames(ref_path, cgmap)
    if x.shape[1:] != y.shape[1:]:
        raise CGDataError(f"the two files have different beads ({x.shape[1]} vs {y.shape[1]})",
                          hint="compare a CG trajectory with the reference (or CG file) of the same map")
    n = x.shape[1]
    topo = chain_topology(n)
    out: dict = {"n_frames": len(x), "n_frames_ref": len(y), "temperature_K": temp}
    tx, ty = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    dists = {}
    for kind, fn, idx in (("bond", bond_lengths, topo["bonds"]), ("angle", bond_angles, topo["angles"]),
                          ("dihedral", dihedral_angles, topo["dihedrals"])):
        if not idx:
            continue
        a = fn(tx, torch.as_tensor(idx)).numpy()
        b = fn(ty, torch.as_tensor(idx)).numpy()
        for k, term in enumerate(idx):
            name = f"{kind} {'-'.join(map(str, term))}"
            dists[name] = (a[:, k], b[:, k])
            out[f"js {name}"] = _dist_js(a[:, k], b[:, k])
    if n == 5:
        pa, sa = backbone_dihedrals(x)
        pb, sb = backbone_dihedrals(y)
        for bins in (64, 61):
            ha, hb = ramachandran_histogram(pa, sa, bins), ramachandran_histogram(pb, sb, bins)
            out[f"ramachandran_js_{bins}"] = js_divergence(ha, hb)
            out[f"free_energy_mse_{bins}"] = free_energy_mse(ha, hb, temp)
    if png is not None:
        _plot((pa, sa, pb, sb) if n == 5 else None, dists, {k: out[f"js {k}"] for k in dists}, temp, png)
    return out


def _plot(rama, dists, js, temp, png, per_row: int = 6) -> None:
    """One row of Ramachandran free energies (CG, reference, difference) if there is one, then one row per kind of
    internal coordinate (bonds Å, angles and dihedrals in degrees; at most ``per_row`` of each), each panel's JS in
    its title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = {}
    for name in dists:
        kinds.setdefault(name.split()[0], []).append(name)
    rows = [("rama", None)] if rama is not None else []
    rows += [(k, names[:per_row]) for k, names in kinds.items()]
    ncols = max([3 if r == "rama" else len(n) for r, n in rows] or [1])
    fig, axes = plt.subplots(len(rows), ncols, figsize=(3.4 * ncols, 3.0 * len(rows)), squeeze=False)
    for ax in axes.flat:
        ax.set_visible(False)
    for row, (kind, names) in zip(axes, rows):
        if kind == "rama":
            _plot_rama(fig, row, *rama, temp)
            continue
        for ax, name in zip(row, names):
            a, b = dists[name]
            if kind != "bond":
                a, b = np.degrees(a), np.degrees(b)
            lo, hi = (-180.0, 180.0) if kind == "dihedral" else (min(a.min(), b.min()), max(a.max(), b.max()))
            ax.set_visible(True)
            ax.hist(b, 60, range=(lo, hi), density=True, histtype="stepfilled", alpha=0.35, color="C1",
                    label="reference")
            ax.hist(a, 60, range=(lo, hi), density=True, histtype="step", color="C0", label="CG")
            ax.set_title(f"{name}: JS {js[name]:.3g}", fontsize=9)
            ax.set_xlabel("Å" if kind == "bond" else "deg")
            ax.set_yticks([])
        row[0].legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, dpi=100, format="png")
    plt.close(fig)
    Path(png).write_bytes(buf.getvalue())


def _plot_rama(fig, row, pa, sa, pb, sb, temp) -> None:
    kT = _KB_KCAL * temp
    fes = []
    for p, s in ((pa, sa), (pb, sb)):
        h = ramachandran_histogram(p, s, 64)
        with np.errstate(divide="ignore"):
            f = -kT * np.log(h)
        f[~np.isfinite(f)] = np.nan
        fes.append(f - np.nanmin(f))
    ext = [-180, 180, -180, 180]
    for ax, f, title in zip(row[:2], fes, ("CG", "reference")):
        ax.set_visible(True)
        im = ax.imshow(f.T, origin="lower", extent=ext, vmax=8, cmap="viridis")
        ax.set_title(f"{title}: F (kcal/mol)", fontsize=9)
        ax.set_xlabel("φ (deg)")
        ax.set_ylabel("ψ (deg)")
        fig.colorbar(im, ax=ax)
    row[2].set_visible(True)
    im = row[2].imshow((fes[0] - fes[1]).T, origin="lower", extent=ext, cmap="RdBu_r", vmin=-3, vmax=3)
    row[2].set_title("CG - reference (kcal/mol)", fontsize=9)
    row[2].set_xlabel("φ (deg)")
    fig.colorbar(im, ax=row[2])
