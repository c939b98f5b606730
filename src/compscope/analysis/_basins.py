"""Basins on the Ramachandran torus: indicators, labels, time to first visit, entries.

A :class:`Basin` is a rectangle ``[phi_lo, phi_hi) x [psi_lo, psi_hi)`` on the torus (radians); an interval whose
``lo > hi`` wraps through ``±pi`` (``(2.2, 0.0)`` is ``phi >= 2.2 or phi < 0``). :data:`ALANINE_DIPEPTIDE_BASINS`
partitions the torus into the three basins of alanine dipeptide in vacuum (amber14, 300 K):

=================  ==========================  =====================  ===========================
name               phi                         psi                    population (REMD reference)
=================  ==========================  =====================  ===========================
``beta_C7eq``      outside [0, 2.2)            [0, pi) or < -2.2      ~96 %
``alpha_R``        outside [0, 2.2)            [-2.2, 0)              ~1.1 %
``C7ax_alpha_L``   [0, 2.2)                    any                    ~2 %
=================  ==========================  =====================  ===========================

``C7ax_alpha_L`` is issue #21's slow basin ``1[0 < phi < 2.2 rad]`` (:data:`ALANINE_DIPEPTIDE_SLOW_BASIN`); the
beta basin wraps through ``phi = ±pi``, which is why the sign of phi is not a basin indicator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ._errors import AnalysisInputError

__all__ = ["Basin", "ALANINE_DIPEPTIDE_BASINS", "ALANINE_DIPEPTIDE_SLOW_BASIN", "in_interval", "basin_indicator",
           "basin_labels", "first_visit_times", "basin_entries", "basin_populations"]

_TWO_PI = 2.0 * math.pi


def _np(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    a = np.asarray(x, dtype=np.float64)
    if np.isnan(a).any():
        raise AnalysisInputError(f"{name} has {int(np.isnan(a).sum())} NaN values",
                                 hint="drop the frames whose angles could not be computed")
    return a


def in_interval(angle, interval: tuple[float, float] | None) -> np.ndarray:
    """``angle in [lo, hi)`` on the circle (radians); ``lo > hi`` wraps through ±pi; ``None`` is the whole circle."""
    a = _np(angle, "angle")
    if interval is None:
        return np.ones(a.shape, dtype=bool)
    lo, hi = float(interval[0]), float(interval[1])
    width = (hi - lo) % _TWO_PI
    return ((a - lo) % _TWO_PI) < width


@dataclass(frozen=True)
class Basin:
    """A rectangle on the Ramachandran torus; ``None`` for an angle means any value."""

    name: str
    phi: tuple[float, float] | None = None
    psi: tuple[float, float] | None = None

    def contains(self, phi, psi=None) -> np.ndarray:
        """Boolean mask of the frames inside (``psi`` may be omitted when the basin does not restrict it)."""
        if psi is None:
            if self.psi is not None:
                raise AnalysisInputError(f"basin {self.name!r} restricts psi; psi angles are needed",
                                         hint="pass psi too")
            return in_interval(phi, self.phi)
        return in_interval(phi, self.phi) & in_interval(psi, self.psi)


ALANINE_DIPEPTIDE_SLOW_BASIN = Basin("C7ax_alpha_L", phi=(0.0, 2.2))
ALANINE_DIPEPTIDE_BASINS = (
    Basin("beta_C7eq", phi=(2.2, 0.0), psi=(0.0, -2.2)),
    Basin("alpha_R", phi=(2.2, 0.0), psi=(-2.2, 0.0)),
    ALANINE_DIPEPTIDE_SLOW_BASIN,
)


def basin_indicator(phi, psi=None, basin: Basin = ALANINE_DIPEPTIDE_SLOW_BASIN) -> np.ndarray:
    """``1.0`` inside ``basin``, else ``0.0`` (same shape as ``phi``): the slow observable of alanine dipeptide.

    Examples:
        >>> basin_indicator([-1.5, 1.0, 2.5, -3.1]).tolist()
        [0.0, 1.0, 0.0, 0.0]
    """
    return basin.contains(phi, psi).astype(np.float64)


def basin_labels(phi, psi, basins=ALANINE_DIPEPTIDE_BASINS) -> np.ndarray:
    """Index of the first basin containing each frame (same shape as ``phi``), ``-1`` for none."""
    phi, psi = _np(phi, "phi"), _np(psi, "psi")
    if phi.shape != psi.shape:
        raise AnalysisInputError(f"phi {phi.shape} and psi {psi.shape} differ in shape", hint="one pair per frame")
    labels = np.full(phi.shape, -1, dtype=np.int64)
    for k, b in reversed(list(enumerate(basins))):  # the first basin that contains a frame wins
        labels[b.contains(phi, psi)] = k
    return labels


def _labels_2d(labels) -> np.ndarray:
    lab = np.asarray(labels)
    if lab.ndim == 1:
        lab = lab[None]
    if lab.ndim != 2:
        raise AnalysisInputError(f"labels have shape {lab.shape}; need (n_steps,) or (n_chains, n_steps)",
                                 hint="chains along the first axis")
    return lab


def first_visit_times(labels, n_basins: int, dt: float = 1.0) -> np.ndarray:
    """Time of the first frame in each basin, per chain: (n_chains, n_basins), ``inf`` where never visited.

    Args:
        labels: (n_steps,) or (n_chains, n_steps) basin indices (:func:`basin_labels`).
        n_basins: number of basins.
        dt: time between frames (any unit; the result is in that unit, frame 0 at time 0).
    """
    lab = _labels_2d(labels)
    out = np.full((lab.shape[0], n_basins), np.inf)
    for k in range(n_basins):
        hit = lab == k
        any_hit = hit.any(1)
        out[any_hit, k] = hit[any_hit].argmax(1) * float(dt)
    return out


def basin_entries(labels, basin: int) -> np.ndarray:
    """Number of times each chain enters ``basin`` from elsewhere (a chain starting inside counts no entry)."""
    lab = _labels_2d(labels)
    inside = lab == basin
    return (inside[:, 1:] & ~inside[:, :-1]).sum(1)


def basin_populations(labels, n_basins: int, weights=None) -> np.ndarray:
    """Fraction of all frames (all chains) in each basin, (n_basins,).

    ``weights`` (optional, the shape of ``labels``, non-negative, positive sum): importance weights of the frames
    (e.g. a biased run reweighted); the fractions are then self-normalised weighted fractions. Without weights
    every frame counts once (as with all weights equal).
    """
    lab = _labels_2d(labels).ravel()
    if weights is None:
        return np.bincount(lab[lab >= 0], minlength=n_basins)[:n_basins] / max(len(lab), 1)
    w = np.asarray(weights, dtype=np.float64).ravel()
    if w.shape != lab.shape or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise AnalysisInputError("weights must be finite and non-negative, one per frame, with a positive sum",
                                 hint="pass importance weights of the labelled frames")
    keep = lab >= 0
    return np.bincount(lab[keep], weights=w[keep], minlength=n_basins)[:n_basins] / w.sum()
