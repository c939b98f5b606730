"""Boltzmann-generator estimators: importance weights, Kish ESS, reweighted observables, energy distances, profiles.

A flow proposes ``x ~ q`` with its exact ``log q(x)``; the Boltzmann target is ``p(x) ∝ exp(-u(x))`` (``u`` in kT).
The unnormalised log importance weights are ``log w = -u(x) - log q(x)``; self-normalised estimates
``E_p[f] ≈ sum_i w_i f_i / sum_i w_i`` need no partition function.

**Bad samples**: a proposal whose energy or ``log q`` is NaN or infinite (a clash the target cannot evaluate, a flow
that diverged) gets ``log w = -inf`` (zero weight), is counted in :attr:`ImportanceWeights.n_invalid` and never
enters a sum; so one NaN cannot poison the estimates. A ``+inf`` energy is a legitimate zero weight but is counted
too. The Kish ESS fraction is taken over *all* proposals (invalid ones included), the fraction of the sampling
cost that was effective.

Error bars: self-normalised means by the delta method (``se^2 = sum_i w_i^2 (f_i - mean)^2 / (sum_i w_i)^2``,
first order in ``1/n``; honest when the ESS is not tiny) or by a bootstrap over proposals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ._errors import SamplingInputError

__all__ = ["ImportanceWeights", "importance_weights", "kish_ess", "reweighted_mean", "energy_histogram",
           "wasserstein_1d", "free_energy_profile", "free_energy_difference"]


def _array(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise SamplingInputError(f"{name} must be one value per sample (1D), got shape {a.shape}",
                                 hint="pass per-configuration values, e.g. energy of shape (n,)")
    return a


@dataclass
class ImportanceWeights:
    """Log importance weights of ``n`` proposals.

    Attributes:
        log_w: ``-u - log q`` (n,), ``-inf`` for excluded proposals.
        valid: mask of proposals with finite energy and log q (n,).
        n_invalid: how many proposals were excluded (NaN/inf energy or log q).
    """

    log_w: np.ndarray
    valid: np.ndarray
    n_invalid: int

    @property
    def n(self) -> int:
        return len(self.log_w)

    def normalized(self) -> np.ndarray:
        """Self-normalised weights (n,), summing to 1 (zeros for excluded proposals)."""
        return _normalize(self.log_w)

    @property
    def ess(self) -> float:
        """Kish effective sample size as a fraction of all proposals (:func:`kish_ess`)."""
        return kish_ess(self.log_w)


def importance_weights(energy, log_q) -> ImportanceWeights:
    """``log w = -u(x) - log q(x)`` for reduced energies ``u`` (kT) and flow log-densities ``log q`` (module
    docstring: NaN/inf excluded and counted)."""
    u, lq = _array(energy, "energy"), _array(log_q, "log_q")
    if u.shape != lq.shape:
        raise SamplingInputError(f"energy has {len(u)} values but log_q {len(lq)}",
                                 hint="pass one energy and one log q per proposal")
    valid = np.isfinite(u) & np.isfinite(lq)
    log_w = np.full(len(u), -np.inf)
    log_w[valid] = -u[valid] - lq[valid]
    return ImportanceWeights(log_w, valid, int((~valid).sum()))


def _normalize(log_w) -> np.ndarray:
    lw = _array(log_w, "log_w")
    if np.isnan(lw).any() or np.isposinf(lw).any():
        raise SamplingInputError("log weights contain NaN or +inf",
                                 hint="build them with importance_weights(energy, log_q), which excludes bad samples")
    if not np.isfinite(lw).any():
        raise SamplingInputError("every proposal has zero weight (no finite log weight)",
                                 hint="the flow's samples all have NaN/inf energies: check the target and model")
    w = np.exp(lw - lw.max())
    return w / w.sum()


def kish_ess(log_w) -> float:
    """Kish effective sample size ``(sum w)^2 / sum w^2`` divided by the number of proposals (in [1/n, 1]);
    proposals with ``log w = -inf`` count as zero-weight proposals."""
    w = _normalize(log_w)
    return float(1.0 / (w**2).sum() / len(w))


def reweighted_mean(values, log_w=None, error: str = "delta", n_boot: int = 200, seed: int = 0,
                    ) -> tuple[float, float]:
    """Self-normalised mean of ``values`` under the weights and its standard error ``(mean, se)``.

    Args:
        values: f(x_i) (n,); entries of zero-weight proposals are ignored (may be NaN).
        log_w: log weights (n,) (None: plain mean, se = sd / sqrt(n)).
        error: ``delta`` (delta method) or ``bootstrap`` (resampling proposals, ``n_boot`` replicas).
    """
    f = _array(values, "values")
    lw = np.zeros(len(f)) if log_w is None else _array(log_w, "log_w")
    if len(lw) != len(f):
        raise SamplingInputError(f"values has {len(f)} entries but log_w {len(lw)}", hint="one per proposal")
    w = _normalize(lw)
    keep = w > 0
    if not np.isfinite(f[keep]).all():
        raise SamplingInputError("values are NaN/inf on proposals with non-zero weight",
                                 hint="exclude those proposals (give them log_w = -inf)")
    f = np.where(keep, f, 0.0)
    mean = float((w * f).sum())
    if error == "delta":
        return mean, float(math.sqrt((w**2 * (f - mean) ** 2).sum()))
    if error == "bootstrap":
        # resample all proposals (zero-weight ones included: they dilute a replica exactly as in the estimate)
        rng = np.random.default_rng(seed)
        reps = []
        for _ in range(int(n_boot)):
            pick = rng.integers(0, len(f), len(f))
            wb = w[pick]
            if wb.sum() > 0:
                reps.append(float((wb * f[pick]).sum() / wb.sum()))
        return mean, float(np.std(reps, ddof=1))
    raise SamplingInputError(f"error={error!r}: expected 'delta' or 'bootstrap'", hint="error='delta'")


def energy_histogram(energy, bins: int | np.ndarray = 50, range: tuple[float, float] | None = None, log_w=None,
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Density histogram ``(edges (bins+1,), density (bins,))`` of finite energies, optionally reweighted."""
    u = _array(energy, "energy")
    w = np.ones(len(u)) if log_w is None else _normalize(log_w)
    keep = np.isfinite(u) & (w > 0)
    dens, edges = np.histogram(u[keep], bins=bins, range=range, weights=w[keep], density=True)
    return edges, dens


def wasserstein_1d(a, b, p: int = 1, log_w_a=None, log_w_b=None) -> float:
    """Exact Wasserstein-``p`` distance between two (optionally weighted) 1D samples: ``(int_0^1 |F_a^-1(s) -
    F_b^-1(s)|^p ds)^(1/p)`` over the empirical quantile functions. Non-finite values (and zero weights) are
    dropped."""
    if p < 1:
        raise SamplingInputError(f"p must be >= 1, got {p}", hint="p=1 or p=2")

    def prep(x, lw):
        x = _array(x, "sample")
        w = np.ones(len(x)) if lw is None else _normalize(lw)
        keep = np.isfinite(x) & (w > 0)
        if not keep.any():
            raise SamplingInputError("a sample has no finite values", hint="check the energies")
        x, w = x[keep], w[keep]
        order = np.argsort(x, kind="stable")
        return x[order], np.cumsum(w[order]) / w.sum()

    xa, ca = prep(a, log_w_a)
    xb, cb = prep(b, log_w_b)
    levels = np.union1d(ca, cb)
    levels = levels[levels < 1.0 - 1e-15]
    grid = np.concatenate([[0.0], levels, [1.0]])
    mid = 0.5 * (grid[1:] + grid[:-1])  # quantile functions are constant on each (grid[k], grid[k+1])
    qa = xa[np.minimum(np.searchsorted(ca, mid, side="left"), len(xa) - 1)]
    qb = xb[np.minimum(np.searchsorted(cb, mid, side="left"), len(xb) - 1)]
    return float(((np.abs(qa - qb) ** p) * np.diff(grid)).sum() ** (1.0 / p))


def free_energy_profile(cv, bins: int | np.ndarray = 30, range: tuple[float, float] | None = None, log_w=None,
                        ) -> dict[str, np.ndarray]:
    """Free energy ``F = -log p`` (kT, minimum 0) along a collective variable by a (reweighted) histogram.

    Returns ``edges``, ``centres``, ``prob`` (bin probabilities), ``free_energy`` and ``se`` (kT; delta method on
    the self-normalised bin probability, ``se(F) = se(p) / p``); empty bins have ``inf`` free energy and NaN se.
    """
    s = _array(cv, "cv")
    lw = np.zeros(len(s)) if log_w is None else _array(log_w, "log_w")
    if len(lw) != len(s):
        raise SamplingInputError(f"cv has {len(s)} values but log_w {len(lw)}", hint="one per proposal")
    w = _normalize(lw)
    keep = np.isfinite(s) & (w > 0)
    if range is None:
        range = (float(s[keep].min()), float(s[keep].max()))
    edges = np.histogram_bin_edges(s[keep], bins=bins, range=range)
    idx = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, len(edges) - 2)
    inside = keep & (s >= edges[0]) & (s <= edges[-1])
    nb = len(edges) - 1
    prob = np.bincount(idx[inside], weights=w[inside], minlength=nb)
    # delta method for p_k = sum w 1_k / sum w (weights already normalised over all proposals)
    var = np.array([((w * ((idx == k) & inside) - w * prob[k]) ** 2).sum() for k in np.arange(nb)])
    se_p = np.sqrt(var)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = -np.log(prob)
        se = np.where(prob > 0, se_p / prob, np.nan)
    f = f - f[np.isfinite(f)].min()
    return {"edges": edges, "centres": 0.5 * (edges[1:] + edges[:-1]), "prob": prob, "free_energy": f, "se": se}


def free_energy_difference(in_a, in_b, log_w=None) -> tuple[float, float]:
    """``(dF, se)``: ``F_B - F_A = -log(P(B) / P(A))`` in kT between two sets of states (boolean masks over the
    proposals, e.g. two basins of a collective variable), self-normalised, with the delta-method standard error of
    the log ratio (``var(log P_B - log P_A)`` from the weighted indicators' covariance)."""
    a = np.asarray(in_a, dtype=bool)
    b = np.asarray(in_b, dtype=bool)
    lw = np.zeros(len(a)) if log_w is None else _array(log_w, "log_w")
    if not (len(a) == len(b) == len(lw)):
        raise SamplingInputError(f"masks of {len(a)} and {len(b)} entries, {len(lw)} weights",
                                 hint="one entry per proposal in each")
    w = _normalize(lw)
    pa, pb = float(w[a].sum()), float(w[b].sum())
    if pa == 0 or pb == 0:
        raise SamplingInputError(f"a state has no weight (P(A) = {pa:.3g}, P(B) = {pb:.3g})",
                                 hint="draw more samples or widen the state definitions")
    # g_i = 1_B / P_B - 1_A / P_A; delta method for the ratio of self-normalised sums
    g = b / pb - a / pa
    return -math.log(pb / pa), float(math.sqrt((w**2 * (g - (w * g).sum()) ** 2).sum()))
