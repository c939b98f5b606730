"""Fitting the CG prior by Boltzmann inversion of mapped reference frames.

For a term with coordinate ``q`` sampled at temperature ``T`` the harmonic Boltzmann inversion is
``q_0 = <q>`` and ``k = kT / var(q)`` (the Gaussian whose distribution has the data's mean and variance); bonds and
angles of the CG chain are fitted so. Dihedrals (optional) get a Fourier series ``sum_n a_n cos(n phi) + b_n sin(n
phi)`` fitted by least squares to ``-kT ln p(phi)`` on a histogram with a pseudo-count per bin (default one; a
smaller one and a higher order keep a CG model out of dihedral regions the reference never visited). Beads not
joined by a bond or an angle repel as ``eps (sigma/r)^6`` with ``eps = kT`` and ``sigma`` 0.9 times the 0.1 %
quantile of their observed distance, so the repulsion only acts where the data never go.

A two-dimensional torsion term (``cmap``; CMAP-like, on a pair of dihedrals such as the backbone's (phi, psi)) is
the Boltzmann inversion of the pair's 2-D histogram: ``bins x bins`` counts, smoothed by a periodic Gaussian of
``smoothing`` rad, plus ``pseudocount`` frames per bin, ``F = -kT ln p``, then projected onto the periodic Fourier
modes ``|m|, |n| <= order`` (on a uniform periodic grid the least-squares fit is the truncated discrete Fourier
transform). The model evaluates the series exactly (smooth, analytic forces). A dihedral that a 2-D term covers
gets no 1-D term (no double counting). The returned dict holds the arguments of :class:`compscope.models.CGPrior`
(plain lists, stored in model packages).
"""

from __future__ import annotations

import numpy as np
import torch
from ase import units

from compscope.models import bond_angles, bond_lengths, dihedral_angles

from ._errors import CGDataError

__all__ = ["fit_prior", "chain_topology", "kT_eV", "CMAP_DEFAULTS", "cmap_modes", "cmap_fit", "cmap_correction"]

#: the 2-D torsion term's fit: histogram bins per angle, frames added per bin, Gaussian smoothing (rad), highest mode
CMAP_DEFAULTS = {"bins": 64, "pseudocount": 0.01, "smoothing": 0.05, "order": 12}


def kT_eV(temperature: float) -> float:
    """kT in eV at ``temperature`` K."""
    return float(units.kB * temperature)


def chain_topology(n_beads: int) -> dict[str, list]:
    """Bonds, angles and dihedrals of a linear chain of beads in map order (backbone and C-alpha maps)."""
    dih = [[i, i + 1, i + 2, i + 3] for i in range(n_beads - 3)]
    return {"bonds": [[i, i + 1] for i in range(n_beads - 1)],
            "angles": [[i, i + 1, i + 2] for i in range(n_beads - 2)],
            "dihedrals": dih,
            # 2-D torsion terms (when asked for) on consecutive disjoint dihedral pairs ((phi, psi) of a backbone)
            "cmap": [dih[k] + dih[k + 1] for k in range(0, len(dih) - 1, 2)]}


def cmap_modes(order: int) -> list[list[int]]:
    """The half-plane of 2-D Fourier modes ``(m, n)`` with ``|m|, |n| <= order`` (``m > 0``, or ``m = 0`` and
    ``n > 0``): with cos and sin terms they span every real periodic function of that band but the constant."""
    k = int(order)
    return [[0, n] for n in range(1, k + 1)] + [[m, n] for m in range(1, k + 1) for n in range(-k, k + 1)]


def cmap_fit(phi: np.ndarray, psi: np.ndarray, kT: float, bins: int = 64, pseudocount: float = 0.01,
             smoothing: float = 0.05, order: int = 12) -> tuple[list[float], list[float]]:
    """Coefficients (eV) of ``cos(m phi + n psi)`` and ``sin(m phi + n psi)`` over :func:`cmap_modes` ``(order)``
    of the 2-D Boltzmann inversion of the angle pairs (module docstring)."""
    bins, order = int(bins), int(order)
    if bins < 4 or order < 1 or 2 * order >= bins or not pseudocount > 0 or smoothing < 0:
        raise CGDataError(f"cmap bins={bins}, order={order}, pseudocount={pseudocount}, smoothing={smoothing}: need "
                          "bins >= 4, 1 <= order < bins/2, pseudocount > 0 and smoothing >= 0",
                          hint="e.g. model.cmap {bins: 64, order: 12, pseudocount: 0.01, smoothing: 0.05}")
    return _project(_free_energy_grid(phi, psi, kT, bins, pseudocount, smoothing), order)


def _free_energy_grid(phi: np.ndarray, psi: np.ndarray, kT: float, bins: int, pseudocount: float,
                      smoothing: float) -> np.ndarray:
    """``-kT ln p`` (bins, bins) of the smoothed 2-D histogram with ``pseudocount`` frames per bin."""
    h, _, _ = np.histogram2d(phi, psi, bins=bins, range=[[-np.pi, np.pi], [-np.pi, np.pi]])
    if smoothing > 0:  # periodic Gaussian: its Fourier factor exp(-k^2 s^2 / 2) on the grid's wavenumbers
        k = np.fft.fftfreq(bins, d=1.0 / bins)
        damp = np.exp(-0.5 * smoothing ** 2 * (k[:, None] ** 2 + k[None, :] ** 2))
        h = np.clip(np.fft.ifft2(np.fft.fft2(h) * damp).real, 0.0, None)
    return -kT * np.log((h + pseudocount) / (h.sum() + pseudocount * bins * bins))


def _project(f: np.ndarray, order: int) -> tuple[list[float], list[float]]:
    """Coefficients of :func:`cmap_modes` ``(order)`` of a periodic grid function ``f`` (bins, bins) at bin centres."""
    bins = f.shape[0]
    c = -np.pi + (np.arange(bins) + 0.5) * 2 * np.pi / bins  # bin centres
    modes = np.asarray(cmap_modes(order), dtype=float)
    th = c[:, None, None] * modes[:, 0] + c[None, :, None] * modes[:, 1]  # (bins, bins, P)
    # orthogonal on the grid: the least-squares coefficients are projections (a half-plane mode counts twice)
    a = 2.0 / bins ** 2 * np.einsum("ij,ijp->p", f, np.cos(th))
    b = 2.0 / bins ** 2 * np.einsum("ij,ijp->p", f, np.sin(th))
    return a.tolist(), b.tolist()


def cmap_correction(model_angles: np.ndarray, data_angles: np.ndarray, kT: float, bins: int = 64,
                    pseudocount: float = 0.01, smoothing: float = 0.05, order: int = 12,
                    max_kT: float = 3.0) -> tuple[list[float], list[float]]:
    """One iterative-Boltzmann-inversion step on a 2-D torsion term (Reith et al., J. Comput. Chem. 24, 1624
    (2003), on the (phi, psi) marginal): coefficients of ``dU = F_data - F_model``, clipped to ``+-max_kT`` kT,
    where ``F = -kT ln p`` of each set's smoothed histogram of the angle pairs (N, 2). The model's pseudo-count is
    scaled by its frame count over the data's, so regions neither set visits get ``dU = 0``. Adding ``dU`` to the
    term moves the model's (phi, psi) distribution towards the data's."""
    model_angles, data_angles = np.asarray(model_angles), np.asarray(data_angles)
    if len(model_angles) < 2 or len(data_angles) < 2:
        raise CGDataError(f"a CMAP correction needs model and data angles, got {len(model_angles)} and "
                          f"{len(data_angles)} pairs")
    scale = len(model_angles) / len(data_angles)
    f_data = _free_energy_grid(data_angles[:, 0], data_angles[:, 1], kT, bins, pseudocount, smoothing)
    f_model = _free_energy_grid(model_angles[:, 0], model_angles[:, 1], kT, bins, pseudocount * scale, smoothing)
    du = np.clip(f_data - f_model, -max_kT * kT, max_kT * kT)
    return _project(du - du.mean(), order)


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
              dihedrals: bool = False, fourier_order: int = 3, pseudocount: float = 1.0,
              cmap: dict | None = None) -> dict:
    """Prior parameters from mapped frames (T, n_beads, 3) in Å by Boltzmann inversion.

    Args:
        positions: CG frames of the training data.
        temperature: K of the reference.
        topology: ``{"bonds": [[i, j]], "angles": [[i, j, k]], "dihedrals": [[i, j, k, l]]}`` (default: a chain).
        dihedrals: fit dihedral Fourier terms too (otherwise the network learns them).
        fourier_order: highest harmonic of the dihedral terms.
        pseudocount: frames added to every one of the 72 histogram bins of a dihedral before the inversion (> 0).
        cmap: fit 2-D torsion terms on the topology's ``cmap`` dihedral pairs with these :func:`cmap_fit` settings
            (``bins``, ``pseudocount``, ``smoothing``, ``order``; missing keys from :data:`CMAP_DEFAULTS`); the
            dihedrals they cover get no 1-D term. None: none.

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
    pairs8 = torch.as_tensor(topo.get("cmap") or [], dtype=torch.long).reshape(-1, 8)
    if cmap is not None and len(pairs8):
        bad = sorted(set(cmap) - set(CMAP_DEFAULTS))
        if bad:
            raise CGDataError(f"prior cmap: unknown key(s) {bad}", hint=f"cmap takes {sorted(CMAP_DEFAULTS)}")
        opts = {**CMAP_DEFAULTS, **cmap}
        ang = dihedral_angles(xt, pairs8.reshape(-1, 4)).numpy().reshape(len(x), len(pairs8), 2)
        fits = [cmap_fit(ang[:, c, 0], ang[:, c, 1], kT, **opts) for c in range(len(pairs8))]
        out.update(cmap=pairs8.tolist(), cmap_modes=cmap_modes(opts["order"]), cmap_cos=[f[0] for f in fits],
                   cmap_sin=[f[1] for f in fits])
        covered = {tuple(q) for p in pairs8.tolist() for q in (p[:4], p[4:])}
        quads = torch.as_tensor([q for q in quads.tolist() if tuple(q) not in covered],
                                dtype=torch.long).reshape(-1, 4)
    if dihedrals and len(quads):
        phi = dihedral_angles(xt, quads).numpy()
        fits = [_fourier_fit(phi[:, k], kT, int(fourier_order), pseudocount=float(pseudocount))
                for k in range(len(quads))]
        out.update(dihedrals=quads.tolist(), dihedral_cos=[f[0] for f in fits], dihedral_sin=[f[1] for f in fits])
    return out
