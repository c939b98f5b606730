"""Effective sample size of correlated time series: Timewarp's first-zero estimator and batch means.

For a stationary series with autocorrelation ``rho_k`` the integrated autocorrelation time is
``tau = 1 + 2 sum_{k>=1} rho_k`` and ``ESS = N / tau`` (Sokal 1997, Eqs. 2.14-2.19).

* :func:`ess_first_zero` (the estimator Timewarp reports; Klein et al., NeurIPS 2023, App. "ESS"): the sum over
  lags stops at the first lag whose empirical autocorrelation is ``<= 0``. Autocovariances come from an FFT
  (the biased ``1/N`` estimator, so ``|rho_k| <= 1``).
* :func:`ess_batch_means`: split every chain into batches of ``b`` steps (default ``floor(sqrt(N))``,
  Flegal & Jones 2010); ``tau = b var(batch means) / var(x)``.

Several chains, shape ``(n_chains, n_steps)``, are pooled around the *pooled* mean and variance: chains stuck in
different states then look perfectly correlated (no zero crossing) and get a tiny ESS, instead of each chain's
own, vanishing variance hiding that they never mixed. A series with zero variance (a basin indicator that never
changed, in every chain) has ESS 0: it says nothing about a population, as Timewarp's protocol scores a chain that
misses a basin 0.

Notes:
    Batch means cannot report a ``tau`` longer than its batch (``b = sqrt(N)`` by default): for chains that never
    mixed it gives about one sample per batch, where the first-zero estimator gives about one per chain.
    Both estimators are biased low for series shorter than a few ``tau``; neither can see a state that no chain
    visited (issue #21: a plain MD chain that sat in one basin reports a huge ESS of phi). Always read the ESS of a
    basin indicator together with the number of basin entries (:func:`compscope.analysis.basin_entries`).
    For an indicator with only a few transitions in many chains (a rare basin in all-atom MD), both see the chains'
    length rather than the physics; :func:`ess_two_state` counts the transitions instead.

Examples:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal(4000)  # independent: tau = 1
    >>> 3000 < ess_first_zero(x) <= 4000
    True
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ._errors import AnalysisInputError

__all__ = ["autocorrelation", "integrated_autocorrelation_time", "ess_first_zero", "ess_batch_means",
           "effective_sample_size", "ar1_autocorrelation_time", "ess_two_state"]


def _chains(x, name: str = "x", min_steps: int = 2) -> np.ndarray:
    """``(n_chains, n_steps)`` float64 from a (n_steps,) or (n_chains, n_steps) series."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[None]
    if a.ndim != 2:
        raise AnalysisInputError(f"{name} has shape {a.shape}; need (n_steps,) or (n_chains, n_steps)",
                                 hint="pass one scalar observable per step, chains along the first axis")
    if a.shape[1] < min_steps:
        raise AnalysisInputError(f"{name} has {a.shape[1]} steps per chain; need at least {min_steps}",
                                 hint="run the chains longer")
    if not np.isfinite(a).all():
        raise AnalysisInputError(f"{name} has {int((~np.isfinite(a)).sum())} NaN/inf values",
                                 hint="drop the non-finite steps (or the chains that diverged) first")
    return a


def autocorrelation(x, max_lag: int | None = None) -> np.ndarray:
    """Autocorrelation ``rho_k`` for lags ``0..max_lag`` (default all), pooled over chains (see module notes).

    Args:
        x: (n_steps,) or (n_chains, n_steps).

    Returns:
        (max_lag + 1,) with ``rho_0 = 1``; all NaN when the pooled variance is zero.
    """
    a = _chains(x)
    n = a.shape[1]
    max_lag = n - 1 if max_lag is None else int(min(max_lag, n - 1))
    d = a - a.mean()
    size = 1 << (2 * n - 1).bit_length()  # zero padding: a linear, not circular, correlation
    f = np.fft.rfft(d, n=size, axis=1)
    acov = np.fft.irfft(f * np.conj(f), n=size, axis=1)[:, : max_lag + 1].mean(0) / n  # (max_lag + 1,)
    if acov[0] <= 0:
        return np.full(max_lag + 1, np.nan)
    return acov / acov[0]


def integrated_autocorrelation_time(x, method: str = "first_zero", batch_size: int | None = None) -> float:
    """``tau`` (in steps) by ``method = "first_zero"`` or ``"batch_means"``; NaN for a zero-variance series."""
    if method == "first_zero":
        rho = autocorrelation(x)
        if np.isnan(rho[0]):
            return math.nan
        nonpos = np.flatnonzero(rho[1:] <= 0)
        stop = nonpos[0] + 1 if len(nonpos) else len(rho)  # first lag with rho <= 0 (excluded)
        return float(max(1.0, 1.0 + 2.0 * rho[1:stop].sum()))
    if method == "batch_means":
        a = _chains(x, min_steps=4)
        n = a.shape[1]
        b = int(batch_size) if batch_size else int(math.floor(math.sqrt(n)))
        if not 1 <= b <= n // 2:
            raise AnalysisInputError(f"batch size {b} for chains of {n} steps; need 1 <= b <= n_steps / 2",
                                     hint="use a smaller batch_size (default sqrt(n_steps))")
        var = a.var()
        if var == 0:
            return math.nan
        nb = n // b
        means = a[:, : nb * b].reshape(a.shape[0], nb, b).mean(-1).ravel()  # (n_chains * nb,)
        var_bm = ((means - a.mean()) ** 2).sum() / max(len(means) - 1, 1)
        return float(max(1.0, b * var_bm / var))
    raise AnalysisInputError(f"unknown ESS method {method!r}", hint="use 'first_zero' or 'batch_means'")


def effective_sample_size(x, method: str = "first_zero", batch_size: int | None = None) -> float:
    """ESS of all chains together, ``n_chains * n_steps / tau``; 0 for a zero-variance series.

    Args:
        x: (n_steps,) or (n_chains, n_steps), one scalar observable per step.
        method: ``"first_zero"`` (Timewarp's estimator) or ``"batch_means"``.
        batch_size: steps per batch for batch means (default ``floor(sqrt(n_steps))``).
    """
    a = _chains(x)
    tau = integrated_autocorrelation_time(a, method, batch_size)
    return 0.0 if math.isnan(tau) else float(a.size / tau)


def ess_first_zero(x) -> float:
    """ESS with the autocorrelation sum truncated at its first non-positive value (Timewarp's estimator)."""
    return effective_sample_size(x, "first_zero")


def ess_batch_means(x, batch_size: int | None = None) -> float:
    """ESS by batch means (batches of ``batch_size`` steps, default ``floor(sqrt(n_steps))``)."""
    return effective_sample_size(x, "batch_means", batch_size)


def ar1_autocorrelation_time(a: float) -> float:
    """Exact ``tau = (1 + a) / (1 - a)`` of an AR(1) process ``x_t = a x_{t-1} + noise`` (``rho_k = a^k``)."""
    if not -1 < a < 1:
        raise AnalysisInputError(f"AR(1) coefficient {a} is not stationary", hint="use -1 < a < 1")
    return (1 + a) / (1 - a)


def ess_two_state(x) -> dict:
    """ESS of a 0/1 indicator from its counted transitions, as a two-state Markov chain at the frame spacing.

    With ``a = P(0 -> 1)`` and ``b = P(1 -> 0)`` per frame (estimated as transitions over the frames that have a
    successor in that state, pooled over chains), the indicator's autocorrelation is ``(1 - a - b)^k``, so
    ``tau = (2 - a - b) / (a + b)`` and ``ESS = N / tau``. Unlike the autocorrelation estimators it stays
    meaningful with a handful of transitions in many short chains (and is 0 without any). It assumes Markovian
    jumps: fast recrossings of a basin's edge count as transitions and inflate it.

    Args:
        x: (n_steps,) or (n_chains, n_steps) values in {0, 1}.

    Returns:
        ``ess``, ``tau`` (frames; inf without transitions), ``p01``, ``p10`` (per frame), ``n01``, ``n10``
        (transitions counted) and ``n`` (frames).
    """
    a = _chains(x, "indicator")
    if not np.isin(a, (0.0, 1.0)).all():
        raise AnalysisInputError("ess_two_state needs a 0/1 indicator", hint="pass e.g. basin_indicator(phi)")
    src, dst = a[:, :-1], a[:, 1:]
    n0, n1 = float((src == 0).sum()), float((src == 1).sum())
    n01, n10 = int(((src == 0) & (dst == 1)).sum()), int(((src == 1) & (dst == 0)).sum())
    p01 = n01 / n0 if n0 else 0.0
    p10 = n10 / n1 if n1 else 0.0
    rate = p01 + p10
    tau = (2.0 - rate) / rate if rate > 0 else math.inf
    return {"ess": float(a.size / tau) if rate > 0 else 0.0, "tau": tau, "p01": p01, "p10": p10, "n01": n01,
            "n10": n10, "n": int(a.size)}
