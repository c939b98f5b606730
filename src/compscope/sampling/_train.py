"""Training an E(n)-equivariant flow by maximum likelihood on reference samples, with the shared trainer.

A config (YAML or dict; ``compscope sample train CONFIG``) has these sections, every key a constructor argument:

- ``flow``: :class:`~compscope.sampling.EquivariantCNF` (hidden, num_layers, coords_range, init_gain, n_steps;
  ``n_particles``/``dim`` come from the target);
- ``data``: :class:`FlowDataModule` (target, train, valid, n_train, n_valid, batch_size); ``train``/``valid`` are
  a ``.npy`` of flattened frames, a ``reference.h5`` of :func:`~compscope.sampling.make_reference`, or
  ``split:<name>/<split>`` for the literature's shipped splits (:func:`~compscope.sampling.load_split`);
- ``module``: :class:`FlowModule` (lr, weight_decay, hutchinson, train_steps);
- ``trainer``: :class:`~compscope.train.TrainerConfig` (``monitor`` defaults to ``val_nll``);
- ``seed`` and ``out`` (the run folder, :class:`compscope.train.RunDir`).

Validation reports the exact negative log-likelihood (nats per configuration, ``val_nll``, and per degree of
freedom of the mean-free subspace, ``val_nll_per_dof``).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from compscope.errors import ConfigError
from compscope.train import FitResult, RunDir, TrainerConfig, check_arguments, fit

from ._errors import SamplingInputError
from ._flow import EquivariantCNF
from ._targets import get_target

__all__ = ["FlowDataModule", "FlowModule", "resolve_config", "train", "load_positions", "SECTIONS"]

SECTIONS = ("seed", "out", "flow", "data", "module", "trainer")
TRAINER_DEFAULTS = {"monitor": "val_nll", "max_epochs": 20}
RESUME_SAFE = ("out", *(f"trainer.{k}" for k in TrainerConfig.RESUME_SAFE))


def load_positions(source: str | os.PathLike, target: str) -> torch.Tensor:
    """Frames (n, n_particles, dim) float64, centred, from ``.npy`` / ``reference.h5`` / ``split:<name>/<split>``."""
    from ._reference import load_split, read_reference

    t = get_target(target)
    s = str(source)
    if s.startswith("split:"):
        name, _, split = s[len("split:"):].partition("/")
        x = load_split(name, split or "train")
    elif s.endswith(".h5"):
        x = read_reference(s)["positions"].double()
    elif s.endswith(".npy"):
        if not Path(s).exists():
            raise FileNotFoundError(f"{s} not found")
        x = torch.as_tensor(np.load(s), dtype=torch.float64)
    else:
        raise SamplingInputError(f"data source {s!r}: expected a .npy, a reference .h5 or split:<name>/<split>",
                                 hint="e.g. train: split:dw4/train")
    if x.shape[1:] != (t.n_particles, t.dim):
        x = x.reshape(len(x), -1)
        if x.shape[1] != t.n_particles * t.dim:
            raise SamplingInputError(f"{s}: frames have {x.shape[1]} coordinates, target {target} needs "
                                     f"{t.n_particles * t.dim}", hint="check data.target")
        x = x.reshape(len(x), t.n_particles, t.dim)
    return x - x.mean(1, keepdim=True)


class FlowDataModule(L.LightningDataModule):
    """Reference frames for maximum-likelihood training.

    Args:
        target: ``dw4``, ``lj13`` or ``lj55`` (fixes the event shape).
        train, valid: data sources (see the module docstring).
        n_train, n_valid: first frames used (None: all).
        batch_size: frames per step.
    """

    def __init__(self, target: str = "dw4", train: str = "split:dw4/train", valid: str = "split:dw4/val",
                 n_train: int | None = None, n_valid: int | None = 1000, batch_size: int = 256):
        super().__init__()
        self.target, self.train_source, self.valid_source = target, train, valid
        self.n_train, self.n_valid, self.batch_size = n_train, n_valid, int(batch_size)

    def setup(self, stage: str | None = None) -> None:
        if getattr(self, "_train", None) is None:
            dtype = torch.get_default_dtype()
            self._train = load_positions(self.train_source, self.target)[: self.n_train].to(dtype)
            self._valid = load_positions(self.valid_source, self.target)[: self.n_valid].to(dtype)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(self._train, batch_size=self.batch_size, shuffle=True, drop_last=False)

    def val_dataloader(self):
        return torch.utils.data.DataLoader(self._valid, batch_size=self.batch_size)


class FlowModule(L.LightningModule):
    """Maximum likelihood of an :class:`EquivariantCNF`: loss = NLL per degree of freedom.

    Args:
        flow: the flow's constructor arguments (``n_particles``, ``dim`` included).
        lr, weight_decay: AdamW.
        hutchinson: train with the Hutchinson divergence (one Rademacher probe); exact otherwise.
        train_steps: RK4 steps in training (None: the flow's ``n_steps``, used in validation).
        target: the target's name (saved with the checkpoint, so ``compscope sample draw`` knows the energy).
    """

    def __init__(self, flow: Mapping[str, Any], lr: float = 1e-3, weight_decay: float = 0.0,
                 hutchinson: bool = False, train_steps: int | None = None, target: str | None = None):
        super().__init__()
        self.save_hyperparameters()
        self.flow = EquivariantCNF(**flow)
        self.dof = (self.flow.n_particles - 1) * self.flow.dim

    def training_step(self, batch, batch_idx):
        log_q = self.flow.log_prob(batch, n_steps=self.hparams.train_steps, exact=not self.hparams.hutchinson,
                                   create_graph=True)
        loss = -log_q.mean() / self.dof
        self.log("train_loss", loss, prog_bar=True, batch_size=len(batch))
        return loss

    def validation_step(self, batch, batch_idx):
        nll = -self.flow.log_prob(batch).mean()
        self.log("val_nll", nll, prog_bar=True, batch_size=len(batch))
        self.log("val_nll_per_dof", nll / self.dof, batch_size=len(batch))

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)


def _section(cfg: Mapping[str, Any], name: str, cls, defaults: Mapping[str, Any] | None = None,
             taken: tuple[str, ...] = ()) -> dict:
    sec = cfg.get(name) or {}
    if not isinstance(sec, Mapping):
        raise ConfigError(f"config section '{name}' must be a mapping of {cls.__name__} arguments")
    for key in sorted(set(sec) & set(taken)):
        raise ConfigError(f"config section '{name}': {key!r} is set elsewhere", hint=f"remove {name}.{key}")
    check_arguments(name, cls, sec, provided=set(taken))
    params = inspect.signature(cls.__init__).parameters
    out = {k: p.default for k, p in params.items()
           if k not in ("self", *taken) and p.default is not inspect.Parameter.empty}
    out.update(defaults or {})
    out.update(sec)
    return out


def resolve_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Every section checked against its constructor, every default written out (what ``--resume`` compares)."""
    unknown = sorted(set(config) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"flow config: unknown top-level key(s) {unknown}",
                          hint=f"a flow config has the sections {list(SECTIONS)} (see configs/sampling/)")
    data = _section(config, "data", FlowDataModule)
    target = get_target(data["target"])
    trainer = _section(config, "trainer", TrainerConfig, TRAINER_DEFAULTS)
    TrainerConfig(**trainer)
    return {"seed": int(config.get("seed", 0)), "out": None if config.get("out") is None else str(config["out"]),
            "flow": {"n_particles": target.n_particles, "dim": target.dim,
                     **_section(config, "flow", EquivariantCNF, taken=("n_particles", "dim"))},
            "data": data, "module": _section(config, "module", FlowModule, taken=("flow", "target")),
            "trainer": trainer}


def train(config: Mapping[str, Any], out: str | os.PathLike | None = None, resume: bool = False) -> FitResult:
    """Train a flow as a config describes (module docstring); returns :class:`~compscope.train.FitResult`."""
    cfg = resolve_config(config)
    where = out if out is not None else cfg["out"]
    if where is None:
        raise ConfigError("no run folder: give out: in the config or --out", hint="--out runs/enf_dw4")
    cfg["out"] = str(where)
    L.seed_everything(cfg["seed"], workers=True, verbose=False)
    module = FlowModule(cfg["flow"], target=cfg["data"]["target"], **cfg["module"])
    data = FlowDataModule(**cfg["data"])
    run = RunDir(where, resume=resume, config=cfg, safe=RESUME_SAFE).start()
    return fit(module, data, run, TrainerConfig(**cfg["trainer"]))
