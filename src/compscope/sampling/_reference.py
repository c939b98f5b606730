"""Reference samples made by project code: long MCMC runs, cached in HDF5 under the data directory, resumable.

``make_reference("lj13")`` runs ``n_chains`` independent chains (:func:`~compscope.sampling.run_mcmc`), drops a
burn-in, keeps every ``thin``-th state, and writes ``reference.h5`` in its run folder
(default ``<data dir>/sampling/<name>_<sampler>_n<N>_seed<S>/``, never committed):

* ``positions`` (n_samples, n_particles, dim): the kept states, chain-major (all of chain 0, then chain 1, ...),
  centred on the origin for translation-invariant targets;
* ``energy`` (n_samples,) reduced energies (kT); ``chain`` (n_samples,) the chain of each sample;
* attributes: the target's and sampler's settings, acceptance, step size, wall time.

:func:`compare_energies` compares two energy samples (a reference split and our own MCMC): means with standard
errors, the two-sample Kolmogorov-Smirnov statistic and p-value, the Wasserstein-1 distance and histograms.
:func:`load_split` reads the literature's shipped ``.npy`` splits (``shared/data/bg``).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import torch

from ._errors import SamplingInputError
from ._mcmc import get_sampler, run_mcmc
from ._targets import Target, get_target

__all__ = ["make_reference", "read_reference", "reference_dir", "initial_positions", "compare_energies",
           "load_split", "REFERENCE_DEFAULTS"]

log = logging.getLogger(__name__)

REFERENCE_DEFAULTS = {
    # chains x kept states per chain = samples; burn-in moves adapt the step size and are dropped
    # capped drift: MALA without a cap is stuck in the quartic tails of DW4 (proposals overshoot, all rejected)
    "dw4": dict(n_samples=10000, n_chains=1000, burn_in=5000, thin=100,
                sampler={"name": "mala", "step_size": 0.01, "max_drift": 0.5}),
    # LJ13: 2000 burn-in moves were not enough (KS 0.04 against the shipped split), 5000 are (KS 0.022, p 0.38)
    "lj13": dict(n_samples=10000, n_chains=1000, burn_in=5000, thin=50,
                 sampler={"name": "mala", "step_size": 1e-3, "max_drift": 0.1}),
    "lj55": dict(n_samples=10000, n_chains=500, burn_in=10000, thin=100,
                 sampler={"name": "mala", "step_size": 5e-4, "max_drift": 0.1}),
}
"""Defaults of :func:`make_reference` per named target (any of them can be overridden)."""


def reference_dir(name: str, sampler: str, n_samples: int, seed: int, path: str | Path | None = None) -> Path:
    """``<data dir>/sampling/<name>_<sampler>_n<N>_seed<S>`` (data dir: ``path`` > ``$COMPSCOPE_DATA`` > cache)."""
    from compscope.data.datasets import data_dir

    return data_dir(path) / "sampling" / f"{name}_{sampler}_n{n_samples}_seed{seed}"


def initial_positions(target: Target, n: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Starting configurations (n, n_particles, dim) without overlaps.

    Lennard-Jones: the ``n_particles`` sites of a cubic lattice of spacing ``rm`` nearest to the origin, jittered
    by 0.05 rm; others: Gaussian with unit variance per coordinate (scaled by ``d0 / 2`` for DW4).
    """
    gen = torch.Generator().manual_seed(int(seed))
    k, dim = target.n_particles, target.dim
    if hasattr(target, "rm"):
        m = math.ceil(k ** (1 / dim)) + 2
        axis = torch.arange(m, dtype=torch.float64) - (m - 1) / 2
        grid = torch.stack(torch.meshgrid(*[axis] * dim, indexing="ij"), -1).reshape(-1, dim)
        order = torch.argsort(grid.norm(dim=1) + 1e-6 * torch.arange(len(grid)))
        sites = grid[order[:k]] * target.rm
        x = sites[None] + 0.05 * target.rm * torch.randn(n, k, dim, generator=gen, dtype=torch.float64)
    else:
        scale = getattr(target, "d0", 2.0) / 2
        x = scale * torch.randn(n, k, dim, generator=gen, dtype=torch.float64)
    if target.translation_invariant:
        x = x - x.mean(1, keepdim=True)
    return x.to(dtype)


def make_reference(target: str | Target, n_samples: int | None = None, *, n_chains: int | None = None,
                   burn_in: int | None = None, thin: int | None = None, sampler: str | dict | None = None,
                   seed: int = 0, dtype: str = "float64", out: str | Path | None = None, resume: bool = False,
                   checkpoint_every: int = 500, data_path: str | Path | None = None) -> Path:
    """Reference samples of a target by long MCMC, cached; returns the path of ``reference.h5``.

    A finished run is reused (its ``reference.h5`` is returned without sampling again); an interrupted one is
    continued with ``resume=True``.

    Args:
        target: ``"dw4"``, ``"lj13"``, ``"lj55"`` or a :class:`~compscope.sampling.Target`.
        n_samples: samples to keep (a multiple of ``n_chains``: each chain keeps ``n_samples / n_chains``).
        n_chains: independent chains.
        burn_in: moves per chain before the first kept state (step size adapted there).
        thin: moves between kept states of a chain.
        sampler: ``"mala"``/``"hmc"`` or ``{name, **arguments}``.
        seed: of the initial positions and of the chains.
        dtype: ``float64`` or ``float32``.
        out: run folder (default :func:`reference_dir`).
        resume: continue an interrupted run in ``out``.
        checkpoint_every: moves between checkpoints.
        data_path: data directory for the default ``out``.
    """
    if isinstance(target, str):
        name, target = target.lower(), get_target(target)
    else:
        name = target.name
    d = REFERENCE_DEFAULTS.get(name, REFERENCE_DEFAULTS["dw4"])
    n_samples = int(n_samples if n_samples is not None else d["n_samples"])
    n_chains = int(n_chains if n_chains is not None else d["n_chains"])
    burn_in = int(burn_in if burn_in is not None else d["burn_in"])
    thin = int(thin if thin is not None else d["thin"])
    smp = get_sampler(sampler if sampler is not None else d["sampler"])
    if dtype not in ("float32", "float64"):
        raise SamplingInputError(f"dtype {dtype!r}: use float32 or float64", hint="--set dtype=float64")
    if n_chains < 1 or n_samples < n_chains or n_samples % n_chains:
        raise SamplingInputError(f"n_samples ({n_samples}) must be a positive multiple of n_chains ({n_chains})",
                                 hint=f"e.g. n_samples={max(n_chains, 1) * max(n_samples // max(n_chains, 1), 1)}")
    per_chain = n_samples // n_chains
    out = Path(out) if out is not None else reference_dir(name, smp.name, n_samples, seed, data_path)
    final = out / "reference.h5"
    if final.exists() and not resume:
        log.info("reusing %s", final)
        return final
    x0 = initial_positions(target, n_chains, seed, getattr(torch, dtype))
    res = run_mcmc(target, x0, smp, n_steps=burn_in + per_chain * thin, burn_in=burn_in, thin=thin,
                   seed=seed + 1, out=out, resume=resume, checkpoint_every=checkpoint_every,
                   log_every=checkpoint_every, extra_config={"n_samples": n_samples})
    pos = res.positions.transpose(0, 1)  # (chains, kept, n, dim): chain-major
    energy = res.energy.transpose(0, 1).reshape(-1)
    pos = pos.reshape(-1, target.n_particles, target.dim)
    if target.translation_invariant:
        pos = pos - pos.mean(1, keepdim=True)
    _write_reference(final, pos, energy, torch.arange(n_chains).repeat_interleave(per_chain), target, smp, res)
    return final


def _write_reference(path: Path, pos, energy, chain, target, sampler, res) -> None:
    import json

    import h5py

    tmp = path.with_suffix(".tmp")
    with h5py.File(tmp, "w") as h5:
        h5["positions"] = pos.numpy()
        h5["energy"] = energy.numpy()
        h5["chain"] = chain.numpy()
        h5.attrs["target"] = json.dumps(target.config())
        h5.attrs["sampler"] = json.dumps(sampler.config())
        h5.attrs["acceptance"] = float(res.acceptance.mean())
        h5.attrs["step_size"] = float(res.step_size)
        h5.attrs["n_steps"] = int(res.n_steps)
        h5.attrs["wall_s_last_call"] = float(res.wall_s)
        h5.attrs["written"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    tmp.replace(path)


def read_reference(path: str | Path) -> dict:
    """``{positions (n, n_particles, dim), energy (n,), chain (n,), attrs}`` of a ``reference.h5``."""
    import json

    import h5py

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: make it with `compscope sample reference NAME`")
    with h5py.File(path, "r") as h5:
        attrs = {k: (json.loads(v) if k in ("target", "sampler") else v) for k, v in h5.attrs.items()}
        return {"positions": torch.as_tensor(h5["positions"][:]), "energy": torch.as_tensor(h5["energy"][:]),
                "chain": torch.as_tensor(h5["chain" if "chain" in h5 else "run"][:]), "attrs": attrs}  # ala2: runs


def load_split(name: str, split: str = "test", path: str | Path | None = None) -> torch.Tensor:
    """A shipped split of the literature (``dw4_{train,val,test}.npy``, ``lj13_{val,test}.npy``) as
    (n, n_particles, dim) float64. ``path``: the folder (default ``$COMPSCOPE_BG_DATA`` or ``shared/data/bg``
    next to the repository)."""
    import os

    target = get_target(name)
    if path is None:
        path = os.environ.get("COMPSCOPE_BG_DATA") or Path(__file__).resolve().parents[4] / "shared" / "data" / "bg"
    f = Path(path) / f"{name.lower()}_{split}.npy"
    if not f.exists():
        raise FileNotFoundError(f"{f} not found: the DW4/LJ13 splits of jarridrb/DEM (data/) are expected there; "
                                f"set COMPSCOPE_BG_DATA to their folder")
    x = torch.as_tensor(np.load(f), dtype=torch.float64)
    return x.reshape(len(x), target.n_particles, target.dim)


def compare_energies(reference: torch.Tensor | np.ndarray, sample: torch.Tensor | np.ndarray, bins: int = 50,
                     sample_chain: torch.Tensor | np.ndarray | None = None) -> dict:
    """Compare two energy samples (kT): means, standard deviations, the difference of means with its standard
    error, the two-sample KS statistic and p-value, Wasserstein-1 and shared-bin histograms (densities).

    ``sample_chain`` (chain index of each sample) gives the sample mean's standard error from independent chain
    means (correlations inside a chain included); otherwise samples are treated as independent.
    """
    from scipy import stats

    a = np.asarray(reference, dtype=np.float64).ravel()
    b = np.asarray(sample, dtype=np.float64).ravel()
    se_a = a.std(ddof=1) / math.sqrt(len(a))
    if sample_chain is not None:
        c = np.asarray(sample_chain).ravel()
        means = np.array([b[c == k].mean() for k in np.unique(c)])
        se_b = means.std(ddof=1) / math.sqrt(len(means))
    else:
        se_b = b.std(ddof=1) / math.sqrt(len(b))
    ks = stats.ks_2samp(a, b)
    lo, hi = np.percentile(np.concatenate([a, b]), [0.1, 99.9])
    edges = np.linspace(lo, hi, bins + 1)
    diff = float(b.mean() - a.mean())
    se = float(math.hypot(se_a, se_b))
    return {"n_reference": len(a), "n_sample": len(b), "mean_reference": float(a.mean()),
            "mean_sample": float(b.mean()), "sd_reference": float(a.std(ddof=1)), "sd_sample": float(b.std(ddof=1)),
            "mean_difference": diff, "se_mean_difference": se, "z_mean_difference": diff / se if se > 0 else 0.0,
            "ks_statistic": float(ks.statistic), "ks_pvalue": float(ks.pvalue),
            "wasserstein1": float(stats.wasserstein_distance(a, b)),
            "histogram_edges": edges.tolist(),
            "histogram_reference": np.histogram(a, edges, density=True)[0].tolist(),
            "histogram_sample": np.histogram(b, edges, density=True)[0].tolist()}
