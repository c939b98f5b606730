"""MBAR reweighting of multi-state samples (replica exchange, several temperatures) to one state, with error bars.

:func:`mbar_log_weights` solves the MBAR equations (Shirts & Chodera 2008, through ``pymbar``) for the reduced free
energies ``f_k`` of K states from the reduced potentials ``u_kn`` of N pooled samples at every state, and returns
the normalised log weights of the samples at one target state::

    log W_n = f_t - u_tn - log sum_k N_k exp(f_k - u_kn)        (sum_n W_n = 1)

:func:`mbar_expectation` is the self-normalised mean of an observable under those weights with two error bars, as
:func:`compscope.sampling.basin_population` gives for the single-state estimate: consecutive blocks of each run
(MBAR solved again on every block; standard error of the block estimates) and independent runs (MBAR on each run;
standard error of the run estimates). :func:`mbar_histogram` is the reweighted (2D) histogram of the target state
with per-bin block errors, the input of free-energy surfaces.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings

import numpy as np

from ._errors import SamplingInputError

__all__ = ["mbar_log_weights", "mbar_expectation", "mbar_histogram"]


def _pymbar():
    # pymbar prints a banner to stdout on import (no JAX); keep it off the CLI's JSON output
    with contextlib.redirect_stdout(io.StringIO()):
        import pymbar
    logging.getLogger("pymbar").setLevel(logging.ERROR)
    return pymbar


def _check(u_kn: np.ndarray, sample_state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    u_kn = np.asarray(u_kn, dtype=np.float64)
    sample_state = np.asarray(sample_state)
    if u_kn.ndim != 2 or u_kn.shape[1] != len(sample_state):
        raise SamplingInputError(f"u_kn must be (K states, N samples) with N = len(sample_state); got {u_kn.shape} "
                                 f"and {len(sample_state)} sample states",
                                 hint="u_kn[k, n] is the reduced potential of sample n at state k")
    if len(sample_state) == 0:
        raise SamplingInputError("no samples to reweight", hint="run more iterations than burn_in")
    if not np.isfinite(u_kn).all():
        raise SamplingInputError("u_kn holds NaN or inf reduced potentials",
                                 hint="drop the samples whose energy could not be evaluated")
    if sample_state.min() < 0 or sample_state.max() >= u_kn.shape[0]:
        raise SamplingInputError(f"sample_state must lie in 0..{u_kn.shape[0] - 1}",
                                 hint="the state each sample was drawn from")
    return u_kn, sample_state


def mbar_log_weights(u_kn: np.ndarray, sample_state: np.ndarray, state: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Normalised log MBAR weights of every sample at ``state`` and the reduced free energies ``f_k`` (f_0 = 0).

    Args:
        u_kn: (K, N) reduced potentials (kT of each state) of every sample at every state.
        sample_state: (N,) the state each sample was drawn from (its counts are the N_k of MBAR; the order of the
            samples does not matter).
        state: the target state.
    """
    from scipy.special import logsumexp

    u_kn, sample_state = _check(u_kn, sample_state)
    n_k = np.bincount(sample_state, minlength=u_kn.shape[0]).astype(np.float64)
    pymbar = _pymbar()
    with warnings.catch_warnings():  # pymbar 4 hands scipy options its solvers ignore ("Unknown solver options")
        warnings.simplefilter("ignore", category=RuntimeWarning)
        warnings.filterwarnings("ignore", message="Unknown solver options")
        mbar = pymbar.MBAR(u_kn, n_k, initialize="BAR" if (n_k > 0).all() else "zeros")
    f_k = np.asarray(mbar.f_k, dtype=np.float64)
    with np.errstate(divide="ignore"):
        log_denom = logsumexp(np.log(n_k)[:, None] + f_k[:, None] - u_kn, axis=0)
    log_w = f_k[state] - u_kn[state] - log_denom
    log_w -= logsumexp(log_w)  # normalised (it is already, up to the solver's tolerance)
    return log_w, f_k - f_k[0]


def _blocks(run: np.ndarray, n_blocks: int) -> list[np.ndarray]:
    out = []
    for r in np.unique(run):
        idx = np.flatnonzero(run == r)
        out.extend(b for b in np.array_split(idx, max(1, min(int(n_blocks), len(idx)))) if len(b))
    return out


def mbar_expectation(values: np.ndarray, u_kn: np.ndarray, sample_state: np.ndarray, run: np.ndarray | None = None,
                     n_blocks: int = 10, state: int = 0) -> dict:
    """MBAR estimate of ``<values>`` at ``state`` with block and run error bars.

    Args:
        values: (N,) observable of every sample (e.g. a basin indicator).
        u_kn, sample_state, state: as in :func:`mbar_log_weights`.
        run: (N,) independent run of each sample; within a run the samples must be in time order (blocks are
            consecutive slices). Default: one run.
        n_blocks: blocks per run.

    Returns:
        ``value``, ``error_blocks`` (standard error of the per-block MBAR estimates), ``error_runs`` (of the per-run
        estimates; None with one run), ``per_run``, ``n_blocks``, ``ess`` (Kish effective sample size of the
        pooled weights at ``state``, as a number of samples), ``f_k`` and ``log_w`` (normalised log weights).
    """
    values = np.asarray(values, dtype=np.float64)
    u_kn, sample_state = _check(u_kn, sample_state)
    if values.shape != sample_state.shape:
        raise SamplingInputError(f"values {values.shape} and samples {sample_state.shape} differ in length",
                                 hint="one value per sample")
    run = np.zeros(len(values), dtype=int) if run is None else np.asarray(run)
    log_w, f_k = mbar_log_weights(u_kn, sample_state, state)
    w = np.exp(log_w)
    value = float(w @ values)

    def sub(idx: np.ndarray) -> float:
        lw, _ = mbar_log_weights(u_kn[:, idx], sample_state[idx], state)
        return float(np.exp(lw) @ values[idx])

    blocks = np.array([sub(b) for b in _blocks(run, n_blocks)])
    runs = np.unique(run)
    per_run = [sub(np.flatnonzero(run == r)) for r in runs] if len(runs) > 1 else [value]
    err_b = float(blocks.std(ddof=1) / np.sqrt(len(blocks))) if len(blocks) > 1 else float("nan")
    err_r = float(np.std(per_run, ddof=1) / np.sqrt(len(per_run))) if len(per_run) > 1 else None
    return {"value": value, "error_blocks": err_b, "error_runs": err_r, "per_run": per_run,
            "n_blocks": int(len(blocks)), "ess": float(1.0 / (w**2).sum()), "f_k": f_k, "log_w": log_w}


def mbar_histogram(x: np.ndarray, y: np.ndarray | None, log_w: np.ndarray, bins, range_, run: np.ndarray | None = None,
                   n_blocks: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Weighted (1D or 2D) probability histogram and its per-bin standard error from blocks.

    The block estimates reuse the pooled weights ``log_w`` normalised within each block (no new MBAR solve; the
    spread of the blocks is dominated by which basins they visit, not by the ``f_k``).

    Returns:
        ``p`` (bins) summing to the weight inside ``range_`` and ``se`` (bins).
    """
    w = np.exp(np.asarray(log_w, dtype=np.float64) - np.max(log_w))
    run = np.zeros(len(w), dtype=int) if run is None else np.asarray(run)

    def hist(idx: np.ndarray) -> np.ndarray:
        ww = w[idx] / w[idx].sum()
        if y is None:
            return np.histogram(np.asarray(x)[idx], bins=bins, range=range_, weights=ww)[0]
        return np.histogram2d(np.asarray(x)[idx], np.asarray(y)[idx], bins=bins, range=range_, weights=ww)[0]

    p = hist(np.arange(len(w)))
    blocks = np.array([hist(b) for b in _blocks(run, n_blocks)])
    se = blocks.std(axis=0, ddof=1) / np.sqrt(len(blocks)) if len(blocks) > 1 else np.full_like(p, np.nan)
    return p, se
