"""Training the learned-correction spectral solver (:class:`~compscope.pde.LearnedSpectral`) by unrolling.

The loss, curricula (unroll, pushforward, mass-preserving noise), validation and optimiser are the learned finite
volumes' (:class:`~compscope.pde.LearnedFVSolver`, its module docstring): only the model and the data differ.

Data (:class:`LearnedSpectralData`): the splits' parameter draws are the existing generator's
(``numpy.random.default_rng([seed, split_id, i])``, :func:`~compscope.pde.generate`), but the trajectories are
solved by the pseudo-spectral solver at ``nx_fine`` (default 200) instead of WENO5: on dispersive E3 WENO5 at
nx = 200 is less accurate than the spectral solver at nx = 100, so it cannot teach a correction of the spectral
solver. The fine cell averages are cached (``<cache>/<EQ>_<split>_n<N>_seed<S>_spectral<nx_fine>.npz``) and
averaged to the coarse grid exactly (:func:`~compscope.pde.interpolant_cell_averages`: block averages where the
grids nest, the same exact average of the fine interpolant where they do not, e.g. nx = 32 of 200), the quantity
the benchmark scores. Config sections as for ``train-fv`` (``compscope pde train-spectral CONFIG``), the model
section being :class:`~compscope.pde.LearnedSpectral`'s.
"""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import numpy as np
import torch

from ._equations import get_equation
from ._generate import SPLITS, cache_dir
from ._learned_fv_train import FORCING_KEYS, LearnedFVData, LearnedFVSolver, _Trajectories, resolve_fv_config
from ._learned_spectral import (
    LearnedSpectral,
    interpolant_cell_averages,
    spectral_forcing_points,
)
from ._spectral import spectral_solve

__all__ = ["spectral_split", "LearnedSpectralData", "LearnedSpectralSolver", "train_learned_spectral",
           "load_learned_spectral", "resolve_spectral_config"]


def spectral_split(equation: str, split: str, n: int, seed: int = 0, nx: int | None = None, nx_fine: int = 200,
                   cache: str | os.PathLike | None = None, chunk: int = 32) -> dict:
    """A split solved by the spectral solver at ``nx_fine`` (cached), as cell averages at ``nx`` (default: fine).

    Returns ``{"u": (n, nt, nx), "cond": (n, 3), "params": {A, omega, phi, l, alpha, beta, gamma}, "ref_gap": (n,)}``
    with ``ref_gap`` the largest difference between the reference and the spectral solver at half its grid (cell
    averages on that grid, over all stored times): where it is large the reference itself is not converged
    (near-inviscid shocks ring at every grid), a target not worth learning.
    """
    eq = get_equation(equation)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    path = Path(cache_dir(cache)) / f"{eq.name}_{split}_n{n}_seed{seed}_spectral{nx_fine}.npz"
    draws = [eq.sample(np.random.default_rng([seed, SPLITS[split], i])) for i in range(n)]
    params = {k: np.stack([np.asarray(d[k], dtype=np.float64) for d in draws]) for k in draws[0]}
    if path.exists():
        fine = np.load(path)["u"]
    else:
        parts = []
        for lo in range(0, n, chunk):
            q = {k: v[lo:lo + chunk] for k, v in params.items()}
            u0 = spectral_forcing_points(q, eq.L, nx_fine)
            parts.append(spectral_solve(u0, eq.times, q["alpha"], q["beta"], q["gamma"], eq.L,
                                        *[q[k] for k in FORCING_KEYS]))
        fine = np.concatenate(parts)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, u=fine)
        os.replace(tmp, path)
    gap_path = path.with_name(path.stem + "_gap.npy")
    if gap_path.exists():
        gap = np.load(gap_path)
    else:
        half = nx_fine // 2
        gap = np.empty(n)
        for lo in range(0, n, chunk):
            q = {k: v[lo:lo + chunk] for k, v in params.items()}
            with np.errstate(all="ignore"):
                try:
                    coarse = spectral_solve(spectral_forcing_points(q, eq.L, half), eq.times, q["alpha"], q["beta"],
                                            q["gamma"], eq.L, *[q[k] for k in FORCING_KEYS])
                except FloatingPointError:
                    coarse = np.full((len(q["A"]), eq.nt, half), np.inf)
            diff = np.abs(coarse - interpolant_cell_averages(fine[lo:lo + chunk], eq.L, half))
            gap[lo:lo + chunk] = np.nan_to_num(diff, nan=np.inf).max(axis=(1, 2))
        np.save(gap_path, gap)
    u = fine if nx is None or int(nx) == nx_fine else interpolant_cell_averages(fine, eq.L, int(nx))
    return {"u": u, "cond": np.stack([params[k] for k in ("alpha", "beta", "gamma")], 1), "params": params,
            "ref_gap": gap}


class LearnedSpectralData(LearnedFVData):
    """Train and validation splits for the learned spectral solver (the ``data`` section): module docstring.

    Args:
        equation: ``E1``-``E3`` or an ``-authors`` variant.
        nx: coarse grid (any ``nx >= 8``; the targets are exact cell averages of the fine solution).
        n_train, n_valid, seed, cache, batch_size, repeat: as :class:`~compscope.pde.LearnedFVData`.
        nx_fine: grid of the spectral reference.
        max_ref_gap: drop trajectories (train and validation) whose reference is not converged: ``ref_gap`` of
            :func:`spectral_split` above this (None keeps all).
        workers, progress: unused (kept for the shared config layout).
    """

    def __init__(self, equation: str, nx: int, n_train: int = 256, n_valid: int = 32, seed: int = 0,
                 cache: str | os.PathLike | None = None, batch_size: int = 8, repeat: int = 1,
                 nx_fine: int = 200, max_ref_gap: float | None = 0.01, workers: int | None = None,
                 progress: bool = True) -> None:
        L.LightningDataModule.__init__(self)
        self.eq = get_equation(equation)
        self.nx, self.nx_fine = int(nx), int(nx_fine)
        self.max_ref_gap = None if max_ref_gap is None else float(max_ref_gap)
        LearnedSpectral(self.eq.name, self.nx)  # checks the equation and the grid
        self.n_train, self.n_valid, self.seed = int(n_train), int(n_valid), int(seed)
        self.cache, self.workers, self.progress = cache, workers, progress
        self.batch_size, self.repeat = int(batch_size), int(repeat)
        self.train_set = self.valid_set = None

    def _split(self, split: str, n: int) -> dict:
        d = spectral_split(self.eq.name, split, n, self.seed, self.nx, self.nx_fine, self.cache)
        if self.max_ref_gap is not None:
            ok = d["ref_gap"] <= self.max_ref_gap
            d = {"u": d["u"][ok], "cond": d["cond"][ok], "params": {k: v[ok] for k, v in d["params"].items()}}
        return d

    def prepare_data(self) -> None:
        self._split("train", self.n_train)
        self._split("valid", self.n_valid)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set = _Trajectories(self._split("train", self.n_train), self.repeat)
            self.valid_set = _Trajectories(self._split("valid", self.n_valid))


class LearnedSpectralSolver(LearnedFVSolver):
    """:class:`~compscope.pde.LearnedFVSolver` (unrolled loss, curricula, rollout validation) with the learned
    spectral solver as its model; the validation rollout starts from the point values of the initial forcing,
    as the classical spectral solver does.

    Args:
        start: where an unrolled window starts. ``"rollout"`` (default): the model's own state after a rollout
            from the exact initial condition to a random stored step (without gradient; one step for the whole
            batch), so training sees exactly the states inference produces (a restart from the coarse data is
            worse than the spectral solver's own state: the cell averages alias the unresolved modes, and that
            restart error, 4x the zero-network rollout's own error per step on E3 at nx = 50, swamps the loss).
            ``"data"``: the stored cell averages (with ``pushforward`` and ``noise``), as the learned FV.
        equation, nx, model, unroll, lr, weight_decay, pushforward, noise: as :class:`~compscope.pde.LearnedFVSolver`.
    """

    def __init__(self, equation: str, nx: int, model: dict | None = None, unroll: list[int] | tuple = (2, 4, 8, 16),
                 lr: float = 1e-3, weight_decay: float = 0.0, pushforward: int = 0, noise: float = 0.0,
                 start: str = "rollout") -> None:
        if start not in ("rollout", "data"):
            from compscope.errors import ConfigError

            raise ConfigError(f"module.start={start!r}: use 'rollout' or 'data'")
        super().__init__(equation, nx, model, unroll, lr, weight_decay, pushforward, noise)
        self.save_hyperparameters()

    def unrolled_loss(self, batch):
        if self.hparams.start == "data":
            return super().unrolled_loss(batch)
        u, cond, f = batch
        nt = u.shape[1]
        n = min(self.unroll_steps(self.current_epoch), nt - 1)
        s = int(torch.randint(0, nt - n, ()))
        forcing = self.forcing(f)
        u0 = torch.tensor(spectral_forcing_points(forcing, self.fv.L, self.fv.nx), dtype=u.dtype)
        with torch.no_grad():  # the model's own state at step s (logged as "pushforward")
            state = self.fv.solve(u0, self.times[:s + 1], cond, forcing)[:, -1]
        loss = 0.0
        for k in range(s + 1, s + n + 1):
            state = self.fv.advance(state, self.times[k - 1], self.times[k], cond, forcing)
            loss = loss + ((state - u[:, k]) ** 2).mean()
        return loss / n, n, s

    @staticmethod
    def build_model(equation: str, nx: int, model: dict) -> torch.nn.Module:
        return LearnedSpectral(equation, nx, **model)

    def forcing(self, f: torch.Tensor) -> dict:
        arr = f.detach().cpu().numpy()
        return {k: arr[:, j] for j, k in enumerate(FORCING_KEYS)}

    @torch.no_grad()
    def rollout(self, cond: torch.Tensor, f: torch.Tensor, times=None) -> torch.Tensor:
        forcing = self.forcing(f)
        u0 = torch.tensor(spectral_forcing_points(forcing, self.fv.L, self.fv.nx), dtype=cond.dtype)
        try:
            return self.fv.solve(u0, self.times if times is None else times, cond, forcing)
        except FloatingPointError:
            return torch.full((cond.shape[0], len(self.times), self.fv.nx), float("nan"), dtype=cond.dtype)


def resolve_spectral_config(config) -> dict:
    """The full config of a learned-spectral run (:func:`~compscope.pde.resolve_fv_config`, kind spectral)."""
    return resolve_fv_config(config, "spectral")


def train_learned_spectral(config, out: str | os.PathLike | None = None, resume: bool = False):
    """Train the learned spectral solver of a config (:func:`~compscope.pde.train_learned_fv`'s run folder,
    resume, time budget and ``best.ckpt``)."""
    from ._learned_fv_train import train_learned_fv

    return train_learned_fv(config, out, resume, kind="spectral")


def load_learned_spectral(checkpoint: str | os.PathLike, equation: str | None = None,
                          nx: int | None = None) -> LearnedSpectral:
    """The trained :class:`~compscope.pde.LearnedSpectral` of a checkpoint, in eval mode; raises
    :class:`~compscope.pde.EquationMismatchError` (naming both) if equation or nx differ from its training."""
    path = Path(checkpoint)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} not found (train one with `compscope pde train-spectral "
                                "CONFIG`)")
    model = LearnedSpectralSolver.load_from_checkpoint(path, map_location="cpu").fv.eval()
    model.check(equation, nx)
    return model
