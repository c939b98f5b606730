"""The one trainer: a Lightning ``Trainer`` with compscope's callbacks, built from a config's ``trainer`` section.

A task brings only its ``LightningModule`` and ``DataModule``; :func:`fit` adds checkpoints (``last`` at every
validation, every few minutes and at the end of training, ``best`` by the monitored metric), the EMA of the
weights, the wall-clock budget summed over resumes, early stopping, the metrics sink, the random-number states
and a progress bar, and resumes from the run folder. With a training loader from
:func:`~compscope.train.step_loader` a resumed run continues exactly where the interrupted one stopped.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch

from compscope.errors import ConfigError
from compscope.runtime import configure_threads, resolve_threads

from ._callbacks import EMA, MetricsSink, RNGState, TimeBudget
from ._run import RunDir

__all__ = ["TrainerConfig", "FitResult", "fit", "find_callback"]

_ACCELERATORS = ("cpu", "gpu", "auto")


class TrainerConfig:
    r"""The ``trainer`` section of every training config (its keys are these arguments).

    Args:
        max_epochs: epoch limit (-1: none).
        max_steps: optimiser-step limit (-1: none).
        max_time_minutes: time budget of the whole run, summed over resumes.
        budget_clock: what ``max_time_minutes`` counts: ``wall`` seconds, or ``cpu`` seconds of the training
            process (all threads; use it to compare runs on a shared machine).
        gradient_clip_val: gradient-norm clip (None: none).
        monitor: metric that picks ``best.ckpt`` and drives early stopping (None: keep only ``last``).
        mode: ``min`` or ``max`` for ``monitor``.
        early_stopping_patience: validations without improvement before stopping (None/0: never).
        ema_decay: decay of the weight EMA per step (0: off).
        ema_warmup: the EMA's warm-up :math:`\min(d, (1+n)/(10+n))` (off: a constant decay from the initial
            weights, as EDM); see :class:`~compscope.train.EMA`.
        devices: processes (CPU, DDP over gloo) or GPUs.
        strategy: ``auto`` or ``ddp``.
        accelerator: ``cpu``, ``gpu`` or ``auto``.
        precision: Lightning precision (``32-true``, ``64-true``, ``bf16-mixed``); None: from the module's dtype.
        num_threads: torch intra-op threads per process (None: compscope's default for the free cores).
        val_check_interval: validate every this many steps (None: every epoch).
        checkpoint_minutes: also write ``last.ckpt`` this often (None: at every validation).
        log_every_n_steps: Lightning's logging interval.
        progress_bar: show a progress bar.
    """

    def __init__(self, max_epochs: int = 100, max_steps: int = -1, max_time_minutes: float | None = None,
                 budget_clock: str = "wall",
                 gradient_clip_val: float | None = None, monitor: str | None = "val_loss", mode: str = "min",
                 early_stopping_patience: int | None = None, ema_decay: float = 0.0, ema_warmup: bool = True,
                 devices: int = 1,
                 strategy: str = "auto", accelerator: str = "cpu", precision: str | None = None,
                 num_threads: int | None = None, val_check_interval: int | None = None,
                 checkpoint_minutes: float | None = None, log_every_n_steps: int = 10,
                 progress_bar: bool = True) -> None:
        if mode not in ("min", "max"):
            raise ConfigError(f"trainer.mode={mode!r}: use 'min' or 'max'")
        if accelerator not in _ACCELERATORS:
            raise ConfigError(f"trainer.accelerator={accelerator!r}: use one of {_ACCELERATORS}")
        if not 0.0 <= ema_decay < 1.0:
            raise ConfigError(f"trainer.ema_decay={ema_decay}: give a decay in [0, 1) (0 = off, 0.99 is typical)")
        if budget_clock not in TimeBudget.CLOCKS:
            raise ConfigError(f"trainer.budget_clock={budget_clock!r}: use one of {tuple(TimeBudget.CLOCKS)}",
                              hint="cpu counts the training process's CPU seconds, wall the seconds on the clock")
        if max_time_minutes is not None and max_time_minutes <= 0:
            raise ConfigError(f"trainer.max_time_minutes={max_time_minutes}: must be positive (or omit it)")
        self.__dict__.update({k: v for k, v in locals().items() if k != "self"})

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def __repr__(self) -> str:
        return f"TrainerConfig({self.as_dict()})"

    # options added after runs may have begun, with the behaviour those runs had (a resume compares with these)
    ADDED_OPTIONS = {"ema_warmup": True, "budget_clock": "wall"}
    # options that may change when a run is resumed (budgets, hardware, display)
    RESUME_SAFE = ("max_epochs", "max_steps", "max_time_minutes", "devices", "strategy", "accelerator",
                   "num_threads", "progress_bar", "log_every_n_steps", "checkpoint_minutes", "early_stopping_patience")


@dataclass
class FitResult:
    """What :func:`fit` hands back: the Lightning trainer, the run folder, the best checkpoint (inside the run's
    own folder) and the time budget callback (training time summed over resumes)."""

    trainer: L.Trainer
    run: RunDir
    best: Path
    budget: TimeBudget

    @property
    def train_seconds(self) -> float | None:
        return self.budget.time_elapsed("train") if self.budget.complete(self.run.resume) else None


def find_callback(trainer: L.Trainer, kind: type) -> Any:
    return next((c for c in trainer.callbacks if isinstance(c, kind)), None)


def _check_accelerator(name: str) -> None:
    if name == "gpu" and not torch.cuda.is_available():
        raise ConfigError("trainer.accelerator='gpu' but no CUDA device is visible",
                          hint="use accelerator: cpu (or auto, which picks a GPU when there is one)")


def _configure_threads(cfg: TrainerConfig) -> int:
    """Thread pools of this process: ``trainer.num_threads``, else compscope's choice (:mod:`compscope.runtime`).

    A choice made from the free cores is shared by the ``devices`` processes of a multi-process run; the
    processes Lightning starts inherit the per-process count through ``OMP_NUM_THREADS``.
    """
    if cfg.num_threads:
        return configure_threads(cfg.num_threads)
    n, source = resolve_threads()
    if source.startswith("free cores") and cfg.devices > 1:
        n = max(1, n // cfg.devices)
    return configure_threads(n)


def fit(module: L.LightningModule, datamodule: L.LightningDataModule | None, run: RunDir,
        trainer: TrainerConfig | dict | None = None, *, train_dataloaders: Any = None, val_dataloaders: Any = None,
        callbacks: list[L.Callback] | None = None, logger: Any = False) -> FitResult:
    """Train ``module`` on ``datamodule`` (or the given loaders) into the run folder ``run`` (already started).

    Resumes from ``run.last`` when ``run.resume``. Returns a :class:`FitResult`; after it the module holds the
    EMA weights when EMA is on (what validation and ``best.ckpt`` saw).
    """
    cfg = trainer if isinstance(trainer, TrainerConfig) else TrainerConfig(**(trainer or {}))
    _check_accelerator(cfg.accelerator)
    _configure_threads(cfg)
    # first in the list: its on_train_end saves before the EMA callback puts the average into the module
    cbs: list[L.Callback] = [_LastAtEnd(run.last), RNGState()]
    best_cb = None
    if cfg.monitor:
        best_cb = L.pytorch.callbacks.ModelCheckpoint(dirpath=run.checkpoints, save_last=True, filename="best",
                                                      monitor=cfg.monitor, mode=cfg.mode, save_top_k=1)
        cbs.append(best_cb)
    # Lightning (2.5+) writes `last` only at a validation that also saved a top-k checkpoint (the monitored metric
    # improved): this one writes last.ckpt at every validation, so --resume continues from where the run stopped
    cbs.append(L.pytorch.callbacks.ModelCheckpoint(dirpath=run.checkpoints, filename="last", monitor=None,
                                                   save_top_k=1, save_last=False, enable_version_counter=False))
    if cfg.checkpoint_minutes:
        cbs.append(L.pytorch.callbacks.ModelCheckpoint(
            dirpath=run.checkpoints, save_last=True, save_top_k=0,
            train_time_interval=dt.timedelta(minutes=cfg.checkpoint_minutes)))
    budget = TimeBudget(60.0 * cfg.max_time_minutes if cfg.max_time_minutes else None, clock=cfg.budget_clock)
    cbs += [budget, MetricsSink(run.path)]
    if cfg.ema_decay:
        cbs.append(EMA(cfg.ema_decay, warmup=cfg.ema_warmup))
    if cfg.early_stopping_patience and cfg.monitor:
        cbs.append(L.pytorch.callbacks.EarlyStopping(cfg.monitor, mode=cfg.mode,
                                                     patience=cfg.early_stopping_patience))
    if cfg.progress_bar:
        cbs.append(L.pytorch.callbacks.RichProgressBar())
    cbs += list(callbacks or [])
    precision = cfg.precision or _precision_of(module)
    tr = L.Trainer(
        max_epochs=cfg.max_epochs, max_steps=cfg.max_steps, gradient_clip_val=cfg.gradient_clip_val,
        devices=cfg.devices, strategy=cfg.strategy, accelerator=cfg.accelerator, precision=precision,
        callbacks=cbs, logger=logger, enable_progress_bar=cfg.progress_bar, enable_model_summary=False,
        inference_mode=False, log_every_n_steps=cfg.log_every_n_steps, num_sanity_val_steps=0,
        val_check_interval=cfg.val_check_interval,
        check_val_every_n_epoch=None if cfg.val_check_interval else 1,
        default_root_dir=run.path,
    )
    tr.fit(module, datamodule=datamodule, train_dataloaders=train_dataloaders, val_dataloaders=val_dataloaders,
           ckpt_path=run.ckpt_path())
    best = _local_best(best_cb.best_model_path if best_cb is not None else "", run)
    if tr.is_global_zero:
        rec = {"train_seconds": budget.time_elapsed("train") if budget.complete(run.resume) else None,
               "global_step": tr.global_step, "epoch": tr.current_epoch}
        (run.path / "train_time.json").write_text(json.dumps(rec))
    return FitResult(tr, run, best, budget)


class _LastAtEnd(L.Callback):
    """Write ``last.ckpt`` when training ends (a step limit or the time budget can stop it between validations),
    with the raw weights and the average as during training, so ``--resume`` continues from the last step."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._saved_at = -1  # the step of the latest checkpoint (every one of them writes last.ckpt)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self._saved_at = trainer.global_step

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step > 0 and trainer.global_step != self._saved_at:
            trainer.save_checkpoint(self.path)


def _precision_of(module: L.LightningModule) -> str:
    p = next(module.parameters(), None)
    return "64-true" if p is not None and p.dtype == torch.float64 else "32-true"


def _local_best(best: str, run: RunDir) -> Path:
    """The best checkpoint inside the run's own folder (a moved run folder gets the old folder's path back from
    Lightning)."""
    if not best:
        return run.last
    here = run.checkpoints / Path(best).name
    return here if here.exists() else Path(best)
