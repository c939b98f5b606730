"""Training a molecule generator from a sectioned config with the shared trainer (:func:`compscope.train.fit`).

The task brings the :class:`GeneratorModule` (loss, validation, optimiser) and the
:class:`~compscope.generate.QM9DataModule`; EMA, wall-clock budget, checkpoints, metrics, the resume guard and
exact resume come from :mod:`compscope.train`. A config (YAML or dict) has the sections, every key a constructor
argument checked before anything runs::

    seed: 0                       # model initialisation, training noise and (unless data sets it) data order
    out: runs/generate/edm_qm9    # the run folder (compscope.train.RunDir)
    model:                        # compscope.generate.EDM or FlowMatching (a bare name looks in compscope.generate)
      class_path: compscope.generate.EDM
      init_args: {hidden: 64, num_layers: 4, condition: null}
    data:                         # class_path defaults to compscope.generate.QM9DataModule
      init_args: {split: train, batch_size: 64, val_molecules: 512}
    module:                       # class_path defaults to compscope.generate.GeneratorModule
      init_args: {lr: 5.0e-4}
    trainer: {max_time_minutes: 60, ema_decay: 0.999, val_check_interval: 1000}   # compscope.train.TrainerConfig

``data.init_args.condition`` defaults to the model's ``condition`` (they must agree). The run folder holds
``config.yaml`` (every default written out), ``versions.json``, ``checkpoints/last.ckpt`` and ``best.ckpt``,
``metrics.jsonl``/``.csv``, ``train_time.json``, ``losses.png`` and the exported EMA generator ``model.pt``.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch

from compscope.errors import ConfigError
from compscope.models.artifacts import ArtifactError, read_model_file
from compscope.train import (
    FitResult,
    RunDir,
    TrainerConfig,
    check_arguments,
    code_versions,
    complete_spec,
    fit,
    instantiate,
    learning_curves,
)

from ._data import QM9DataModule
from ._model import MoleculeGenerator

__all__ = ["GeneratorModule", "SECTIONS", "TRAINER_DEFAULTS", "RESUME_SAFE", "resolve_config", "build", "train",
           "export", "load_model"]

SECTIONS = ("seed", "out", "model", "data", "module", "trainer")
# the generate task's defaults of the trainer section where they differ from TrainerConfig's: trains by steps
# and time, EDM's EMA (decay 0.999 from the initial weights, no warm-up) and gradient clipping
TRAINER_DEFAULTS = {"max_epochs": -1, "max_time_minutes": 60.0, "ema_decay": 0.999, "ema_warmup": False,
                    "gradient_clip_val": 1.0, "val_check_interval": 1000, "checkpoint_minutes": 5.0,
                    "log_every_n_steps": 50}
# what --resume may change: where the run lives, where QM9 is read from, budgets, hardware and display
RESUME_SAFE = ("out", "data.init_args.path", *(f"trainer.{k}" for k in TrainerConfig.RESUME_SAFE))
DEFAULT_CLASS = {"data": "compscope.generate.QM9DataModule", "module": "compscope.generate.GeneratorModule"}


class GeneratorModule(L.LightningModule):
    """The generator's Lightning module: ``model.loss`` as training loss, the same loss with fixed noise for
    validation (which sees the EMA weights when the trainer averages them).

    Args:
        model: the generator's ``{class_path, init_args}`` spec (:class:`~compscope.generate.EDM` or
            :class:`~compscope.generate.FlowMatching`), stored in checkpoints to rebuild it.
        lr: AdamW learning rate (AMSGrad, weight decay 1e-12, as EDM; EDM's lr is 1e-4).
    """

    def __init__(self, model: Mapping[str, Any], lr: float = 1e-4) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = build_model(model)

    def training_step(self, batch, batch_idx):
        loss = self.model.loss(batch)
        self.log("train_loss", loss, prog_bar=True, batch_size=batch.num_graphs)
        return loss

    def validation_step(self, batch, batch_idx):
        with torch.random.fork_rng(devices=[]):  # same noise every validation, training draws untouched
            torch.manual_seed(batch_idx)
            loss = self.model.loss(batch)
        self.log("val_loss", loss, prog_bar=True, batch_size=batch.num_graphs)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.model.parameters(), lr=self.hparams.lr, amsgrad=True, weight_decay=1e-12)


def build_model(spec: Mapping[str, Any]) -> MoleculeGenerator:
    """The generator of a ``model`` spec (a bare class name looks in ``compscope.generate``)."""
    model = instantiate(spec, section="model", default_module="compscope.generate")
    if not isinstance(model, MoleculeGenerator):
        raise ConfigError(f"model: {spec.get('class_path')} is not a molecule generator",
                          hint="use compscope.generate.EDM or compscope.generate.FlowMatching")
    return model


def resolve_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The full config of a run: sections checked against their constructors and every default written out
    (what ``config.yaml`` stores and ``--resume`` compares).

    Raises:
        ConfigError: an unknown section or key, a missing model section, an unknown class, or a data condition
            that is not the model's.
    """
    config = copy.deepcopy(dict(config))
    unknown = sorted(set(config) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"generate config: unknown top-level key(s) {unknown}",
                          hint=f"a generate config has the sections {list(SECTIONS)}; e.g. lr goes under "
                               "module.init_args, max_steps under trainer (see configs/generate/)")
    if "model" not in config:
        raise ConfigError("generate config: needs a 'model' section (class_path + init_args)",
                          hint="see configs/generate/edm_qm9.yaml")
    seed = int(config.get("seed", 0))
    model = complete_spec(config["model"], section="model", default_module="compscope.generate")
    condition = model["init_args"].get("condition")
    data = complete_spec(config.get("data"), section="data", default_class=DEFAULT_CLASS["data"])
    given = (config.get("data") or {}).get("init_args") or {}
    if "condition" not in given:
        data["init_args"]["condition"] = condition
    if "seed" not in given:
        data["init_args"]["seed"] = seed
    if data["init_args"]["condition"] != condition:
        raise ConfigError(f"data.init_args.condition={data['init_args']['condition']!r} but the model conditions "
                          f"on {condition!r}", hint="omit data.init_args.condition: it defaults to the model's")
    module = complete_spec(config.get("module"), section="module", default_class=DEFAULT_CLASS["module"],
                           provided={"model": "the model section"})
    trainer = config.get("trainer") or {}
    if not isinstance(trainer, Mapping):
        raise ConfigError("config section 'trainer' must be a mapping of compscope.train.TrainerConfig arguments")
    check_arguments("trainer", TrainerConfig, trainer)
    trainer = TrainerConfig(**{**TRAINER_DEFAULTS, **trainer}).as_dict()
    return {"seed": seed, "out": str(config.get("out", "runs/generate")), "model": model, "data": data,
            "module": module, "trainer": trainer}


def build(config: Mapping[str, Any]) -> tuple[GeneratorModule, QM9DataModule, TrainerConfig]:
    """The Lightning module, data module and trainer settings of a config (resolved or not); the model's size
    histogram (and property statistics) are set from the training split, so this reads QM9."""
    cfg = resolve_config(config)
    module = instantiate(cfg["module"], section="module", model=cfg["model"])
    data = instantiate(cfg["data"], section="data")
    n_atoms, prop = data.train_statistics()
    module.model.set_statistics(n_atoms, prop)
    return module, data, TrainerConfig(**cfg["trainer"])


def train(config: Mapping[str, Any], out: str | os.PathLike | None = None, resume: bool = False) -> FitResult:
    """Train a generator as a config describes (see the module docstring) with :func:`compscope.train.fit`.

    Args:
        config: the sectioned config (a dict, e.g. a loaded YAML).
        out: the run folder (default: the config's ``out``).
        resume: continue from ``out/checkpoints/last.ckpt`` exactly where the run stopped (same batches, same
            noise); refuses (:class:`~compscope.errors.ResumeError`) changed settings other than
            :data:`RESUME_SAFE` (budgets, hardware, the data path).

    Returns:
        :class:`~compscope.train.FitResult`; the exported EMA generator is ``result.run.model`` (``model.pt``).
    """
    cfg = resolve_config(config)
    cfg["out"] = str(out if out is not None else cfg["out"])
    L.seed_everything(cfg["seed"], workers=True, verbose=False)
    module, data, trainer = build(cfg)  # before the run folder: a bad config leaves no folder behind
    run = RunDir(cfg["out"], resume=resume, config=cfg, safe=RESUME_SAFE).start()
    # training draws start from the seed, whatever building the model drew
    L.seed_everything(cfg["seed"], workers=True, verbose=False)
    result = fit(module, data, run, trainer)
    if result.trainer.is_global_zero:
        export(module, run.model, result)
        if run.file("metrics.jsonl").exists():
            learning_curves(run.file("losses.png"), run.file("metrics.jsonl"), ["train_loss", "val_loss"])
    return result


def export(module: GeneratorModule, path: str | os.PathLike, result: FitResult | None = None) -> Path:
    """Write the module's generator (after :func:`compscope.train.fit`: the EMA weights) as ``model.pt``: model
    spec, weights, versions and training progress."""
    info = {}
    if result is not None:
        info = {"global_step": result.trainer.global_step, "epoch": result.trainer.current_epoch,
                "train_seconds": result.train_seconds}
    torch.save({"kind": "compscope.generate model", "config": dict(module.hparams["model"]),
                "state_dict": module.model.state_dict(), "train_info": info, "versions": code_versions()}, path)
    return Path(path)


def load_model(path: str | os.PathLike, map_location="cpu") -> MoleculeGenerator:
    """Load a generator from ``model.pt`` (export) or a ``.ckpt`` of ``compscope generate train`` (the EMA
    weights when the run averaged them)."""
    p, d = read_model_file(path, what="generator model", weights_only=False, device=map_location,
                           hint="pass the model.pt (or a .ckpt, or the run folder) written by "
                                "`compscope generate train`")
    if isinstance(d, dict) and d.get("kind") == "compscope.generate model":
        model = build_model(d["config"])
        model.load_state_dict(d["state_dict"])
    elif isinstance(d, dict) and isinstance(d.get("hyper_parameters", {}).get("model"), Mapping):
        model = build_model(d["hyper_parameters"]["model"])
        model.load_state_dict({k[len("model."):]: v for k, v in d["state_dict"].items() if k.startswith("model.")})
    else:
        raise ArtifactError(f"{p} is not a compscope generate model",
                          hint="pass model.pt (or a checkpoint) from `compscope generate train`")
    return model.eval()
