"""Training the learned-flux finite-volume solver by unrolling through its SSP-RK3 steps (:func:`compscope.train.fit`).

Data: the existing generators' splits (:func:`compscope.pde.generate`, WENO5 at ``nx_ref = 200``) averaged to the
coarse grid (``coarsen(..., eq.coarsening)``: exact block averages for E1-E3), so any ``nx`` dividing 200 trains
(25, 40, 50, 100). A batch carries the forcing draws too: the learned solver integrates the exact forcing.

Loss: from a random stored step ``s`` of each trajectory, the solver advances ``n`` output steps (with gradient
through every RK stage) and the mean squared error against the reference at ``s + 1 .. s + n`` is minimised; ``n``
follows the curriculum ``module.unroll`` (one entry per epoch, the last one repeated). Two stabilisers against the
drift of long rollouts away from the training states (the model never sees its own errors otherwise):
``module.pushforward = P`` first advances ``p`` output steps (``p`` uniform in ``0..P`` per batch) *without*
gradient, so the unrolled window starts from the model's own state (the pushforward trick of Brandstetter et al.,
ICLR 2022), and ``module.noise`` adds zero-mean (mass-preserving) Gaussian noise of that relative size to the
starting state. ``grad_norm`` (before clipping) is logged per epoch. Validation: the whole
trajectory from the exact initial cell averages, scored like the classical solvers (accumulated error over the
steps ``2K = 50 .. nt - 1``). Sections of a config (``compscope pde train-fv CONFIG``):

- ``model``: :class:`~compscope.pde.LearnedFluxFV` (hidden, layers, kernel, order, mirror, learn_*, cfl);
- ``data``: :class:`LearnedFVData` (equation, nx, n_train, n_valid, seed, cache, batch_size, repeat, workers);
- ``module``: :class:`LearnedFVSolver` (unroll, lr, weight_decay, pushforward, noise);
- ``trainer``: :class:`compscope.train.TrainerConfig`; ``seed`` and ``out`` as in every task.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from compscope.errors import ConfigError
from compscope.train import (
    EpochSeed,
    FitResult,
    RunDir,
    TrainerConfig,
    fit,
    is_rank_zero,
    learning_curves,
    resolve_section,
    run_folder,
)

from ._data import PDEDataModule
from ._equations import coarsen, get_equation
from ._generate import load_split
from ._learned_fv import Forcing, LearnedFluxFV

__all__ = ["LearnedFVData", "LearnedFVSolver", "load_coarse", "resolve_fv_config", "train_learned_fv",
           "load_learned_fv", "FV_SECTIONS", "FV_RESUME_SAFE", "N_GIVEN"]

FV_SECTIONS = ("seed", "out", "model", "data", "module", "trainer")
FV_TRAINER_DEFAULTS = {"monitor": "val_acc_error", "max_epochs": 20, "gradient_clip_val": 1.0}
FV_RESUME_SAFE = ("out", "data.cache", "data.workers", *(f"trainer.{k}" for k in TrainerConfig.RESUME_SAFE))
FORCING_KEYS = ("A", "omega", "phi", "l")
N_GIVEN = 50  # the benchmark's scored steps start here (2 windows of K = 25), for every solver


def load_coarse(path: str | os.PathLike, equation: str, nx: int) -> dict:
    """A generated split at any ``nx`` dividing the reference grid: stored resolutions as they are, others
    averaged down from ``nx_ref`` with the equation's coarsening."""
    eq = get_equation(equation)
    try:
        return load_split(path, nx)
    except ValueError as err:
        if "has no resolution" not in str(err):
            raise
    d = load_split(path, eq.nx_ref)
    d["u"] = coarsen(d["u"], nx, eq.coarsening)
    d["x"] = (np.arange(nx) + 0.5) * eq.L / nx
    return d


class _Trajectories(torch.utils.data.Dataset):
    def __init__(self, d: dict, repeat: int = 1) -> None:
        self.u = torch.tensor(d["u"], dtype=torch.float64)  # (n, nt, nx)
        self.cond = torch.tensor(d["cond"], dtype=torch.float64)  # (n, 3)
        self.forcing = torch.stack([torch.tensor(d["params"][k], dtype=torch.float64) for k in FORCING_KEYS], 1)
        self.repeat = int(repeat)

    def __len__(self) -> int:
        return len(self.u) * self.repeat

    def __getitem__(self, i: int):
        i = i % len(self.u)
        return self.u[i], self.cond[i], self.forcing[i]  # (nt, nx), (3,), (4, n_waves)


class LearnedFVData(PDEDataModule):
    """Train and validation splits for the learned finite-volume solver (the ``data`` section): the splits of
    :class:`~compscope.pde.PDEDataModule` (generation, cache, seeded epochs), block-averaged to ``nx``, with each
    trajectory's PDE coefficients and forcing.

    Args:
        equation: ``E1``-``E3`` or an ``-authors`` variant.
        nx: coarse resolution (must divide the reference grid, 200).
        n_train, n_valid: trajectories.
        seed: seed of the splits.
        cache: data cache (default ``$COMPSCOPE_PDE_CACHE`` or the user cache).
        batch_size: trajectories per step.
        repeat: random windows per trajectory and epoch.
        workers: processes that generate missing data.
        progress: progress bar while generating.
    """

    def __init__(self, equation: str, nx: int, n_train: int = 512, n_valid: int = 32, seed: int = 0,
                 cache: str | os.PathLike | None = None, batch_size: int = 16, repeat: int = 1,
                 workers: int | None = None, progress: bool = True) -> None:
        super().__init__(equation, nx, n_train, n_valid, seed, cache, batch_size, repeat, workers, progress)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set = _Trajectories(load_coarse(self._path("train", self.n_train), self.eq.name, self.nx),
                                           self.repeat)
            self.valid_set = _Trajectories(load_coarse(self._path("valid", self.n_valid), self.eq.name, self.nx))

    def val_dataloader(self):
        return torch.utils.data.DataLoader(self.valid_set, batch_size=64)


def _forcing(fv: LearnedFluxFV, f: torch.Tensor) -> Forcing:
    """A batch's forcing tensor (B, 4, n_waves) -> :class:`Forcing` on the model's grid."""
    arr = f.detach().cpu().numpy()
    return Forcing({k: arr[:, j] for j, k in enumerate(FORCING_KEYS)}, fv.L, fv.nx, arr.shape[0])


class LearnedFVSolver(L.LightningModule):
    """Lightning module of the learned finite-volume solver: unrolled training, rollout validation.

    Args:
        equation, nx: the cell (filled in from the data section).
        model: :class:`~compscope.pde.LearnedFluxFV` arguments (the model section).
        unroll: output steps unrolled with gradient, per epoch (the last entry repeats): the unroll curriculum.
        lr, weight_decay: AdamW, cosine schedule over the epochs to lr / 100.
        pushforward: at most this many output steps advanced without gradient before the unrolled window (drawn
            per batch; 0: the window starts at the reference).
        noise: standard deviation of the zero-mean noise on the window's starting state, relative to each
            state's RMS (0: none).
    """

    def __init__(self, equation: str, nx: int, model: dict | None = None, unroll: list[int] | tuple = (2, 4, 8, 16),
                 lr: float = 3e-3, weight_decay: float = 0.0, pushforward: int = 0, noise: float = 0.0) -> None:
        super().__init__()
        self.save_hyperparameters()
        if not unroll or min(int(n) for n in unroll) < 1:
            raise ConfigError(f"module.unroll={list(unroll)}: give at least one positive number of steps per epoch")
        if int(pushforward) < 0 or not float(noise) >= 0:
            raise ConfigError(f"module.pushforward={pushforward}, module.noise={noise}: both must be >= 0",
                              hint="pushforward: output steps without gradient (e.g. 8); noise: e.g. 0.01")
        self.fv = self.build_model(equation, nx, dict(model or {}))
        self.eq = get_equation(equation)
        self.times = [float(v) for v in self.eq.times]

    @staticmethod
    def build_model(equation: str, nx: int, model: dict) -> torch.nn.Module:
        """The solver being trained (a subclass trains another one with the same loss)."""
        return LearnedFluxFV(equation, nx, **model)

    def forcing(self, f: torch.Tensor):
        """A batch's forcing tensor (B, 4, n_waves) as the model's ``advance`` takes it."""
        return _forcing(self.fv, f)

    def unroll_steps(self, epoch: int) -> int:
        u = self.hparams.unroll
        return int(u[min(epoch, len(u) - 1)])

    def unrolled_loss(self, batch) -> tuple[torch.Tensor, int, int]:
        """The training loss of a batch (module docstring), the unrolled steps ``n`` and the pushforward ``p``."""
        u, cond, f = batch
        B, nt = u.shape[0], u.shape[1]
        n = min(self.unroll_steps(self.current_epoch), nt - 1)
        p = min(int(torch.randint(0, int(self.hparams.pushforward) + 1, ())), nt - 1 - n)
        s = torch.randint(0, nt - n - p, (B,))
        forcing = self.forcing(f)
        times = torch.tensor(self.times, dtype=torch.float64)
        rows = torch.arange(B)
        state = u[rows, s]
        if self.hparams.noise > 0:
            eps = torch.randn_like(state)
            rms = state.pow(2).mean(-1, keepdim=True).sqrt()
            state = state + self.hparams.noise * rms * (eps - eps.mean(-1, keepdim=True))
        t = times[s]
        with torch.no_grad():  # the pushforward: the window starts from the model's own state
            for k in range(1, p + 1):
                state = self.fv.advance(state, t, times[s + k], cond, forcing)
                t = times[s + k]
        loss = 0.0
        for k in range(p + 1, p + n + 1):
            state = self.fv.advance(state, t, times[s + k], cond, forcing)
            t = times[s + k]
            loss = loss + ((state - u[rows, s + k]) ** 2).mean()
        return loss / n, n, p

    def training_step(self, batch, batch_idx):
        loss, n, p = self.unrolled_loss(batch)
        B = batch[0].shape[0]
        self.log("train_loss", loss, prog_bar=True, on_epoch=True, on_step=False, batch_size=B)
        self.log("unroll", float(n), on_epoch=True, on_step=False, batch_size=B)
        self.log("pushforward", float(p), on_epoch=True, on_step=False, batch_size=B)
        return loss

    def on_before_optimizer_step(self, optimizer) -> None:
        """Log the gradient norm before clipping (the diagnostic of an unroll curriculum)."""
        grads = [q.grad.detach().norm() for q in self.parameters() if q.grad is not None]
        if grads:
            self.log("grad_norm", torch.stack(grads).norm(), on_epoch=True, on_step=False, batch_size=1)

    @torch.no_grad()
    def rollout(self, cond: torch.Tensor, f: torch.Tensor, times=None) -> torch.Tensor:
        """Trajectories (B, nt, nx) from the exact initial cell averages of the forcing draws f (B, 4, n_waves)."""
        forcing = _forcing(self.fv, f)
        u0 = forcing.add_to(torch.zeros(f.shape[0], self.fv.nx, dtype=torch.float64),
                            torch.zeros(f.shape[0], dtype=torch.float64))  # u(0) = delta(0, x), cell averages
        return self.fv.solve(u0, self.times if times is None else times, cond, forcing, check_finite=False)

    def validation_step(self, batch, batch_idx):
        u, cond, f = batch
        pred = self.rollout(cond, f)
        err = ((pred[:, N_GIVEN:] - u[:, N_GIVEN:]) ** 2).mean(-1).sum(-1)
        err = torch.nan_to_num(err, nan=1e6, posinf=1e6).clamp(max=1e6).mean()
        self.log("val_acc_error", err, prog_bar=True, batch_size=u.shape[0])

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        epochs = max(1, self.trainer.max_epochs or 1)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs, eta_min=self.hparams.lr * 0.01)
        return [opt], [sched]


def resolve_fv_config(config: Mapping[str, Any], kind: str = "fv") -> dict[str, Any]:
    """The full config of a learned-FV run (``kind="spectral"``: of the learned spectral solver), every section
    checked and its defaults written out."""
    model_cls, data_cls, module_cls = _kinds(kind)
    unknown = sorted(set(config) - set(FV_SECTIONS))
    if unknown:
        raise ConfigError(f"learned-FV config: unknown top-level key(s) {unknown}",
                          hint=f"the sections are {list(FV_SECTIONS)} (see configs/pde/learned_fv_e1.yaml)")
    data = config.get("data") or {}
    if not isinstance(data, Mapping) or "equation" not in data or "nx" not in data:
        raise ConfigError("learned-FV config: data.equation and data.nx are required",
                          hint="e.g. data: {equation: E1, nx: 50}")
    seed = int(config.get("seed", 0))
    cfg = {**config, "data": {"seed": seed, **data}}
    trainer = resolve_section(cfg, "trainer", TrainerConfig, FV_TRAINER_DEFAULTS)
    TrainerConfig(**trainer)
    return {
        "seed": seed,
        "out": None if config.get("out") is None else str(config["out"]),
        "model": resolve_section(cfg, "model", model_cls, provided={"equation": "data.equation", "nx": "data.nx"}),
        "data": resolve_section(cfg, "data", data_cls, provided={"progress": "trainer.progress_bar"}),
        "module": resolve_section(cfg, "module", module_cls, provided={
            "equation": "data.equation", "nx": "data.nx", "model": "the model section"}),
        "trainer": trainer,
    }


def _kinds(kind: str) -> tuple[type, type, type]:
    """(model, data, module) classes of a learned-solver kind."""
    if kind == "fv":
        return LearnedFluxFV, LearnedFVData, LearnedFVSolver
    if kind == "spectral":
        from ._learned_spectral import LearnedSpectral
        from ._learned_spectral_train import LearnedSpectralData, LearnedSpectralSolver

        return LearnedSpectral, LearnedSpectralData, LearnedSpectralSolver
    raise ConfigError(f"unknown learned-solver kind {kind!r}", hint="use 'fv' or 'spectral'")


def train_learned_fv(config: Mapping[str, Any], out: str | os.PathLike | None = None,
                     resume: bool = False, kind: str = "fv") -> FitResult:
    """Train the learned finite-volume solver of a config (module docstring) with :func:`compscope.train.fit`:
    run folder, resume (``resume=True`` continues ``out/checkpoints/last.ckpt``), time budget
    (``trainer.max_time_minutes``), ``best.ckpt`` by the validation accumulated error."""
    cfg = resolve_fv_config(config, kind)
    _, data_cls, module_cls = _kinds(kind)
    where = run_folder(cfg, out, example="runs/learned_fv_e1" if kind == "fv" else "runs/learned_spectral_e3")
    L.seed_everything(cfg["seed"], workers=True, verbose=False)
    data_cfg = cfg["data"]
    module = module_cls(data_cfg["equation"], data_cfg["nx"], model=cfg["model"], **cfg["module"])
    trainer = TrainerConfig(**cfg["trainer"])
    data = data_cls(**data_cfg, progress=trainer.progress_bar)
    run = RunDir(where, resume=resume, config=cfg, safe=FV_RESUME_SAFE).start()
    result = fit(module, data, run, trainer, callbacks=[EpochSeed(cfg["seed"])])
    if is_rank_zero() and run.file("metrics.jsonl").exists():
        learning_curves(run.file("losses.png"), run.file("metrics.jsonl"), ["train_loss", "val_acc_error"])
    return result


def load_learned_fv(checkpoint: str | os.PathLike, equation: str | None = None,
                    nx: int | None = None) -> LearnedFluxFV:
    """The trained :class:`~compscope.pde.LearnedFluxFV` of a checkpoint, in eval mode; raises
    :class:`~compscope.pde.EquationMismatchError` (naming both) if equation or nx differ from its training."""
    path = Path(checkpoint)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} not found (train one with `compscope pde train-fv CONFIG`)")
    solver = LearnedFVSolver.load_from_checkpoint(path, map_location="cpu")
    fv = solver.fv.eval()
    fv.check(equation, nx)
    return fv
