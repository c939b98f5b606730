"""One-dimensional free-energy profiles ``F = -log p`` (kT) of a collective variable, and their error against a
reference profile.

:func:`free_energy_profile_1d` bins a (weighted) collective variable; for an angle (``periodic=True``) the range
is ``[-pi, pi)`` and values are wrapped. :func:`profile_error` compares two profiles on the same bins, in kT, after
removing the arbitrary additive constant: the shift minimises the reference-weighted squared difference over the
bins where the reference has probability at least ``min_prob`` (both profiles finite there). It reports the
reference-weighted RMS difference and the largest absolute one; a bin that the reference populates but the other
profile never visited gives ``inf`` (a missed region is infinitely wrong, not silently ignored).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ._errors import AnalysisInputError

__all__ = ["free_energy_profile_1d", "profile_error"]


def free_energy_profile_1d(x, bins: int | np.ndarray = 64, range: tuple[float, float] | None = None,
                           weights=None, periodic: bool = False) -> dict[str, np.ndarray]:
    """Free energy along ``x`` (kT, minimum 0): ``edges``, ``centres``, ``prob`` and ``free_energy``
    (``inf`` in empty bins).

    Args:
        x: values of the collective variable (any shape; flattened).
        bins: number of bins or explicit edges.
        range: (lo, hi); default the data range, or ``(-pi, pi)`` when ``periodic``.
        weights: optional non-negative weight per value.
        periodic: the variable is an angle in radians (wrapped into ``[-pi, pi)``).
    """
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    a = np.asarray(x, dtype=np.float64).ravel()
    if a.size == 0 or not np.isfinite(a).all():
        raise AnalysisInputError("the collective variable is empty or has non-finite values",
                                 hint="drop the frames that failed")
    if periodic:
        a = (a + math.pi) % (2 * math.pi) - math.pi
        range = (-math.pi, math.pi) if range is None else range
    w = None if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    if w is not None and (w.shape != a.shape or (w < 0).any() or w.sum() <= 0):
        raise AnalysisInputError("weights must be non-negative, one per value, with a positive sum",
                                 hint="pass normalised importance weights")
    counts, edges = np.histogram(a, bins=bins, range=range, weights=w)
    prob = counts / counts.sum()
    with np.errstate(divide="ignore"):
        f = -np.log(prob)
    f = f - f[np.isfinite(f)].min()
    return {"edges": edges, "centres": 0.5 * (edges[1:] + edges[:-1]), "prob": prob, "free_energy": f}


def profile_error(profile: dict, reference: dict, min_prob: float = 1e-3) -> dict[str, float]:
    """Error of ``profile`` against ``reference`` (both from :func:`free_energy_profile_1d` on the same bins), kT.

    Returns ``rmse`` (reference-weighted, after the best constant shift), ``max_abs`` (largest absolute difference
    after that shift) and ``n_bins`` (bins compared: reference probability >= ``min_prob``).
    """
    ea, er = np.asarray(profile["edges"]), np.asarray(reference["edges"])
    if ea.shape != er.shape or not np.allclose(ea, er):
        raise AnalysisInputError("the two profiles have different bins", hint="bin both with the same edges/range")
    p = np.asarray(reference["prob"], dtype=np.float64)
    sel = p >= min_prob
    if not sel.any():
        raise AnalysisInputError(f"no reference bin has probability >= {min_prob}", hint="lower min_prob")
    fa = np.asarray(profile["free_energy"], dtype=np.float64)[sel]
    fr = np.asarray(reference["free_energy"], dtype=np.float64)[sel]
    if not np.isfinite(fa).all():
        return {"rmse": math.inf, "max_abs": math.inf, "n_bins": int(sel.sum())}
    w = p[sel] / p[sel].sum()
    d = fa - fr
    d = d - (w * d).sum()  # the shift that minimises the weighted squared difference
    return {"rmse": float(np.sqrt((w * d**2).sum())), "max_abs": float(np.abs(d).max()), "n_bins": int(sel.sum())}
