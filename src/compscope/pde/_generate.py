"""Seeded, parallel, resumable data generation cached to HDF5 (never committed).

File layout (``<cache>/<EQ>_<split>_n<N>_seed<S>.h5``):

* ``u/<nx>``: (N, nt, nx) float32 trajectories, one dataset per resolution (E: the reference nx_ref=200 and
  its averages down to 100/50/40; WE: the exact modal solution on each Chebyshev grid 100/50/40/20);
* ``x/<nx>`` (nx,), ``t`` (nt,), ``cond`` (N, n_params) the PDE coefficients a solver is conditioned on,
  ``params/<name>`` every random draw (forcing sines, pulse centre, boundary coefficients);
* ``done`` (n_chunks,) bool: chunks already written, so an interrupted run resumes where it stopped.

Trajectory ``i`` of split ``s`` draws from ``numpy.random.default_rng([seed, split_id, i])``: the data do not
depend on the number of workers or on the chunking.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import h5py
import numpy as np

from ._equations import coarsen, forcing_cell_average, get_equation

__all__ = ["generate", "load_split", "cache_dir", "SPLITS", "solve_reference"]

log = logging.getLogger(__name__)

SPLITS = {"train": 0, "valid": 1, "test": 2}
FORMAT_VERSION = 1


def cache_dir(path: str | os.PathLike | None = None) -> Path:
    """Data cache: ``path``, else ``$COMPSCOPE_PDE_CACHE``, else the user cache dir ``compscope/pde``."""
    if path is None:
        path = os.environ.get("COMPSCOPE_PDE_CACHE")
    if path is None:
        import platformdirs

        path = Path(platformdirs.user_cache_dir("compscope")) / "pde"
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    return p


def _check_split(split: str) -> int:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    return SPLITS[split]


def solve_reference(eq, p: dict) -> dict[int, np.ndarray]:
    """Reference trajectories of one parameter draw at every stored resolution: {nx: (nt, nx)}."""
    if eq.family == "combined":
        from ._weno import weno_solve

        u0 = forcing_cell_average(p, eq.L, eq.nx_ref, 0.0)
        ref, _ = weno_solve(u0, eq.times, p["alpha"], p["beta"], p["gamma"], eq.L, p["A"], p["omega"],
                            p["phi"], p["l"])
        out = {eq.nx_ref: ref}
        for nx in eq.resolutions:
            out[nx] = coarsen(ref, nx, eq.coarsening)
        return out
    from ._wave import wave_exact

    return {nx: wave_exact(eq.grid(nx), eq.times, float(p["start"]), eq.c, eq.xmin, eq.xmax,
                           float(p["a_left"]), float(p["b_left"]), float(p["a_right"]), float(p["b_right"]))
            for nx in eq.resolutions}


def _chunk(args):
    name, split_id, seed, lo, hi = args
    eq = get_equation(name)
    draws, sols = [], []
    for i in range(lo, hi):
        p = eq.sample(np.random.default_rng([seed, split_id, i]))
        draws.append(p)
        sols.append(solve_reference(eq, p))
    return lo, hi, draws, sols


def _path(root: Path, name: str, split: str, n: int, seed: int) -> Path:
    return root / f"{name}_{split}_n{n}_seed{seed}.h5"


def generate(equation: str, split: str, n: int, seed: int = 0, cache: str | os.PathLike | None = None,
             workers: int | None = None, chunk: int = 16, progress: bool = True) -> Path:
    """Generate (or finish, or reuse) a cached split and return its HDF5 path.

    Args:
        equation: ``E1``-``E3`` or ``WE1``-``WE3``.
        split: ``train``, ``valid`` or ``test``.
        n: number of trajectories (the paper: 2048 / 128 / 128).
        seed: base seed.
        cache: cache directory (see :func:`cache_dir`).
        workers: processes (default: all cores).
        chunk: trajectories per work item and per checkpoint.
        progress: show a rich progress bar.
    """
    eq = get_equation(equation)
    split_id = _check_split(split)
    if n <= 0:
        raise ValueError(f"n={n}: the number of trajectories must be positive")
    path = _path(cache_dir(cache), eq.name, split, n, seed)
    bounds = [(lo, min(lo + chunk, n)) for lo in range(0, n, chunk)]
    if path.exists():  # a finished cache is checked read-only: jobs sharing it must not need its write lock
        with h5py.File(path, "r") as h5:
            if "done" in h5:
                _check_cache(h5, path, eq, len(bounds))
                if h5["done"][()].all():
                    return path
    with h5py.File(path, "a") as h5:
        if "done" not in h5:
            h5.attrs.update(equation=eq.name, split=split, n=n, seed=seed, version=FORMAT_VERSION)
            if eq.family == "combined":
                h5.attrs["coarsening"] = eq.coarsening
            h5.create_dataset("done", data=np.zeros(len(bounds), dtype=bool))
            h5["t"] = eq.times
            res = ((eq.nx_ref,) if eq.family == "combined" else ()) + tuple(eq.resolutions)
            for nx in res:
                h5[f"x/{nx}"] = eq.grid(nx) if eq.family != "combined" else (np.arange(nx) + 0.5) * eq.L / nx
                h5.create_dataset(f"u/{nx}", (n, eq.nt, nx), dtype="f4", chunks=(1, eq.nt, nx))
            h5.create_dataset("cond", (n, len(eq.param_names)), dtype="f8")
            h5["cond"].attrs["names"] = list(eq.param_names)
        else:
            _check_cache(h5, path, eq, len(bounds))
        todo = [(eq.name, split_id, seed, lo, hi) for j, (lo, hi) in enumerate(bounds) if not h5["done"][j]]
    if not todo:
        return path
    log.info("generating %s/%s: %d chunks to do -> %s", eq.name, split, len(todo), path)
    workers = workers or os.cpu_count() or 1
    results = _run(todo, workers, progress, f"{eq.name} {split}")
    for lo, hi, draws, sols in results:
        with h5py.File(path, "a") as h5:
            for nx_key in h5["u"]:
                h5[f"u/{nx_key}"][lo:hi] = np.stack([s[int(nx_key)] for s in sols])
            h5["cond"][lo:hi] = np.array([[float(d[k]) for k in eq.param_names] for d in draws])
            for key in draws[0]:
                arr = np.stack([np.asarray(d[key], dtype=np.float64) for d in draws])
                ds = f"params/{key}"
                if ds not in h5:
                    h5.create_dataset(ds, (n, *arr.shape[1:]), dtype="f8")
                h5[ds][lo:hi] = arr
            h5["done"][lo // chunk] = True
    return path


def _check_cache(h5, path: Path, eq, n_chunks: int) -> None:
    """Refuse a cache written with another chunk size or (combined family) another coarsening."""
    if len(h5["done"]) != n_chunks:
        raise ValueError(f"{path} was written with another chunk size; delete it or pass the same chunk")
    if eq.family == "combined" and str(h5.attrs.get("coarsening", "block")) != eq.coarsening:
        raise ValueError(f"{path} holds {h5.attrs.get('coarsening', 'block')!r}-coarsened data but {eq.name} "
                         f"now uses {eq.coarsening!r}: delete the file to regenerate it")


def _run(todo, workers, progress, label):
    """Yield finished chunks (in completion order), in worker processes when workers > 1."""
    from rich.progress import Progress

    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(f"generating {label}", total=len(todo))
        if workers <= 1 or len(todo) == 1:
            for item in todo:
                yield _chunk(item)
                bar.advance(task)
            return
        with ProcessPoolExecutor(max_workers=min(workers, len(todo))) as pool:
            for res in pool.map(_chunk, todo):
                yield res
                bar.advance(task)


def load_split(path: str | os.PathLike, nx: int) -> dict[str, np.ndarray]:
    """Load one resolution of a generated split: u (N, nt, nx), x (nx,), t (nt,), cond (N, n_params)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `compscope pde generate` first")
    with h5py.File(path, "r") as h5:
        if not h5["done"][()].all():
            raise ValueError(f"{path} is incomplete: rerun `compscope pde generate` with the same arguments "
                             "to finish it")
        if f"u/{nx}" not in h5:
            have = sorted(int(k) for k in h5["u"])
            raise ValueError(f"{path} has no resolution nx={nx}; available: {have}")
        return {
            "u": h5[f"u/{nx}"][()], "x": h5[f"x/{nx}"][()], "t": h5["t"][()], "cond": h5["cond"][()],
            "equation": str(h5.attrs["equation"]),
            "params": {k: h5[f"params/{k}"][()] for k in h5["params"]},
        }
