"""Training a neural PDE solver from a sectioned config with the shared trainer (:func:`compscope.train.fit`).

A config (YAML or dict) has these sections; every key is a constructor argument, checked before anything runs:

- ``model``: a preset name (:data:`~compscope.pde.MODEL_REGISTRY`), ``{preset, init_args}`` or
  ``{class_path, init_args}``; the equation fills in time window, dt, domain, boundaries and coefficients;
- ``data``: :class:`~compscope.pde.PDEDataModule` (equation, nx, n_train, n_valid, seed, cache, batch_size,
  repeat, workers);
- ``module``: :class:`~compscope.pde.NeuralPDESolver` (time_window, max_unroll, given_windows, lr,
  weight_decay, augment);
- ``trainer``: :class:`~compscope.train.TrainerConfig` (max_epochs, ema_decay, devices, strategy, accelerator,
  num_threads, ...; ``monitor`` defaults to ``val_acc_error``);
- ``seed`` (model initialisation and training draws; also the data's seed unless ``data.seed`` is given) and
  ``out`` (the run folder).

The run folder is :class:`compscope.train.RunDir`'s: config.yaml, versions.json, checkpoints/last.ckpt and
best.ckpt, metrics.jsonl/csv, train_time.json and losses.png.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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
from ._models import model_spec
from ._module import NeuralPDESolver

__all__ = ["SECTIONS", "TRAINER_DEFAULTS", "RESUME_SAFE", "resolve_config", "build", "train", "training_time"]

SECTIONS = ("seed", "out", "model", "data", "module", "trainer")
# the PDE task's own defaults of the trainer section (the rest are TrainerConfig's)
TRAINER_DEFAULTS = {"monitor": "val_acc_error", "max_epochs": 20}
# what --resume may change: where the run lives, where data are cached, budgets and hardware
RESUME_SAFE = ("out", "data.cache", "data.workers", *(f"trainer.{k}" for k in TrainerConfig.RESUME_SAFE))
_FROM_ELSEWHERE = {"module": {"equation": "data.equation", "nx": "data.nx", "model": "the model section"},
                   "data": {"progress": "trainer.progress_bar"}}


def resolve_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The full config of a run: sections checked against their constructors and every default written out
    (what ``config.yaml`` stores and ``--resume`` compares)."""
    unknown = sorted(set(config) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"PDE config: unknown top-level key(s) {unknown}",
                          hint=f"a PDE config has the sections {list(SECTIONS)}; e.g. lr goes under module, "
                               "max_epochs under trainer, n_train under data (see configs/pde/)")
    data = config.get("data") or {}
    if not isinstance(data, Mapping) or "equation" not in data or "nx" not in data:
        raise ConfigError("PDE config: data.equation and data.nx are required",
                          hint="e.g. data: {equation: E1, nx: 100}")
    seed = int(config.get("seed", 0))
    cfg = {**config, "data": {"seed": seed, **data}}
    trainer = resolve_section(cfg, "trainer", TrainerConfig, TRAINER_DEFAULTS)
    TrainerConfig(**trainer)  # its own checks (mode, accelerator, ema_decay, ...)
    return {
        "seed": seed,
        "out": None if config.get("out") is None else str(config["out"]),
        "model": model_spec(config.get("model", "mp-pde")),
        "data": resolve_section(cfg, "data", PDEDataModule, provided=_FROM_ELSEWHERE["data"]),
        "module": resolve_section(cfg, "module", NeuralPDESolver, provided=_FROM_ELSEWHERE["module"]),
        "trainer": trainer,
    }


def build(config: Mapping[str, Any]) -> tuple[NeuralPDESolver, PDEDataModule, TrainerConfig]:
    """The solver, its data module and the trainer settings of a config (resolved or not); builds no data."""
    cfg = resolve_config(config)
    data = cfg["data"]
    module = NeuralPDESolver(equation=data["equation"], nx=data["nx"], model=cfg["model"], **cfg["module"])
    trainer = TrainerConfig(**cfg["trainer"])
    return module, PDEDataModule(**data, progress=trainer.progress_bar), trainer


def train(config: Mapping[str, Any], out: str | os.PathLike | None = None, resume: bool = False) -> FitResult:
    """Train a neural solver as a config describes (see the module docstring) with :func:`compscope.train.fit`.

    Args:
        config: the sectioned config (a dict, e.g. a loaded YAML).
        out: the run folder (default: the config's ``out``).
        resume: continue from ``out/checkpoints/last.ckpt``; refuses (:class:`~compscope.errors.ResumeError`)
            changed settings other than :data:`RESUME_SAFE`.

    Returns:
        :class:`~compscope.train.FitResult`: ``.best`` is the best checkpoint (lowest validation accumulated
        error), ``.train_seconds`` the training time summed over resumes.

    ``trainer.strategy: ddp`` with ``trainer.devices: 2`` trains in two CPU processes (gloo); ``data.batch_size``
    is per process.
    """
    import lightning as L

    cfg = resolve_config(config)
    where = run_folder(cfg, out, example="runs/pde_e1")
    L.seed_everything(cfg["seed"], workers=True, verbose=False)
    module, data, trainer = build(cfg)  # before the run folder: a bad equation or grid leaves no folder behind
    run = RunDir(where, resume=resume, config=cfg, safe=RESUME_SAFE).start()
    # per-epoch seeding of the training step's draws (windows, unrolls, mirrors): a resumed run repeats them
    result = fit(module, data, run, trainer, callbacks=[EpochSeed(cfg["seed"])])
    if is_rank_zero() and run.file("metrics.jsonl").exists():
        learning_curves(run.file("losses.png"), run.file("metrics.jsonl"), ["train_loss", "val_acc_error"])
    return result


def training_time(out_dir: str | os.PathLike) -> dict | None:
    """``{"train_seconds", "global_step", "epoch"}`` of a run folder (``train_time.json``, written by
    :func:`compscope.train.fit`): wall-clock training time summed over every resume; ``train_seconds`` is None
    when a resumed checkpoint did not carry the timer's state. None for a folder without that record."""
    import json

    path = Path(out_dir) / "train_time.json"
    return json.loads(path.read_text()) if path.exists() else None
