"""Fitting the CG prior by Boltzmann inversion of mapped reference frames.

For a term with coordinate ``q`` sampled at temperature ``T`` the harmonic Boltzmann inversion is
``q_0 = <q>`` and ``k = kT / var(q)`` (the Gaussian whose distribution has the data's mean and variance); bonds and
angles of the CG chain are fitted so. Dihedrals (optional) get a Fourier series ``sum_n a_n cos(n phi) + b_n sin(n
phi)`` fitted by least squares to ``-kT ln p(phi)`` on a histogram with a pseudo-count per bin (default one; a
smaller one and a higher order keep a CG model out of dihedral regions the reference never visited). Beads not
joined by a bond or an angle repel as ``eps (sigma/r)^6`` with ``eps = kT`` and ``sigma`` 0.9 times the 0.1 %
quantile of their observed distance, so the repulsion only acts where the data never go. The returned dict holds
the arguments of :class:`compscope.models.CGPrior` (plain lists, stored in model packages).
"""

from __future__ import annotations

import numpy as np
import torch
from ase import units

from compscope.models import bond_angles, bond_lengths, dihedral_angles

from ._errors import CGDataError

__all__ = ["fit_prior", "chain_topology", "kT_eV"]


def kT_eV(temperature: float) -> float:
    """kT in eV at ``temperature`` K."""
    return float(units.kB * temperature)


def chain_topology(n_beads: int) -> dict[str, list]:
    """Bonds, angles and dihedrals of a linear chain of beads in map order (backbone and C-alpha maps)."""
    return {"bonds": [[i, i + 1] for i in range(n_beads - 1)],
            "angles": [[i, i + 1, i + 2] for i in range(n_beads - 2)],
            "dihedrals": [[i, i + 1, i + 2, i + 3] for i in range(n_beads - 3)]}


def _fourier_fit(phi: np.ndarray, kT: float, order: int, bins: int = 72,
                 pseudocount: float = 1.0) -> tuple[list[float], list[float]]:
    """Least-squares Fourier coefficients (eV) of ``-kT ln p(phi)`` over all bins, with one pseudo-count per bin:
    an unvisited bin gets a high but finite free energy (``kT ln`` of the frame count above the minimum), so a
    short trajectory that saw one basin gives bounded coefficients instead of an extrapolated wall."""
    h, edges = np.histogram(phi, bins=bins, range=(-np.pi, np.pi))
    c = 0.5 * (edges[1:] + edges[:-1])
    f = -kT * np.log((h + pseudocount) / (h.sum() + pseudocount * bins))
    n = np.arange(1, order + 1)
    a = np.concatenate([np.ones((bins, 1)), np.cos(np.outer(c, n)), np.sin(np.outer(c, n))], axis=1)
    coef, *_ = np.linalg.lstsq(a, f, rcond=None)
    return coef[1:order + 1].tolist(), coef[order + 1:].tolist()


def fit_prior(positions: np.ndarray, temperature: float = 300.0, topology: dict | None = None,
              dihedrals: bool = False, fourier_order: int = 3, pseudocount: float = 1.0) -> dict:
    """Prior parameters from mapped frames (T, n_beads, 3) in Å by Boltzmann inversion.

    Args:
        positions: CG frames of the training data.
        temperature: K of the reference.
        topology: ``{"bonds": [[i, j]], "angles": [[i, j, k]], "dihedrals": [[i, j, k, l]]}`` (default: a chain).
        dihedrals: fit dihedral Fourier terms too (otherwise the network learns them).
        fourier_order: highest harmonic of the dihedral terms.
        pseudocount: frames added to every one of the 72 histogram bins of a dihedral before the inversion (> 0).

    Returns:
        keyword arguments of :class:`compscope.models.CGPrior` (without ``n_beads``).
    """
    x = np.asarray(positions, dtype=np.float64)
    if x.ndim != 3 or x.shape[-1] != 3 or len(x) < 2:
        raise CGDataError(f"fitting a prior needs CG frames (T >= 2, n_beads, 3), got shape {x.shape}")
    if int(fourier_order) < 1 or not pseudocount > 0:
        raise CGDataError(f"fourier_order={fourier_order}, pseudocount={pseudocount}: need order >= 1 and a "
                          "pseudocount > 0")
    x = x[np.isfinite(x).all(axis=(1, 2))]
    n = x.shape[1]
    topo = {**chain_topology(n), **(topology or {})}
    kT = kT_eV(temperature)
    xt = torch.as_tensor(x)
    out: dict = {}
    bonds = torch.as_tensor(topo["bonds"], dtype=torch.long).reshape(-1, 2)
    if len(bonds):
        r = bond_lengths(xt, bonds).numpy()
        out.update(bonds=bonds.tolist(), bond_r0=r.mean(0).tolist(), bond_k=(kT / r.var(0)).tolist())
    angles = torch.as_tensor(topo["angles"], dtype=torch.long).reshape(-1, 3)
    if len(angles):
        th = bond_angles(xt, angles).numpy()
        out.update(angles=angles.tolist(), angle_theta0=th.mean(0).tolist(), angle_k=(kT / th.var(0)).tolist())
    near = {tuple(sorted(b)) for b in bonds.tolist()} | {tuple(sorted((a[0], a[2]))) for a in angles.tolist()}
    pairs = [[i, j] for i in range(n) for j in range(i + 1, n) if (i, j) not in near]
    if pairs:
        d = bond_lengths(xt, torch.as_tensor(pairs)).numpy()
        out.update(repulsion_pairs=pairs, repulsion_sigma=(0.9 * np.quantile(d, 1e-3, axis=0)).tolist(),
                   repulsion_epsilon=[kT] * len(pairs))
    quads = torch.as_tensor(topo["dihedrals"], dtype=torch.long).reshape(-1, 4)
    if dihedrals and len(quads):
        phi = dihedral_angles(xt, quads).numpy()
        fits = [_fourier_fit(phi[:, k], kT, int(fourier_order), pseudocount=float(pseudocount))
                for k in range(len(quads))]
        out.update(dihedrals=quads.tolist(), dihedral_cos=[f[0] for f in fits], dihedral_sin=[f[1] for f in fits])
    return out
