"""Training an E(n)-equivariant flow on reference samples (maximum likelihood or equivariant flow matching), with
the shared trainer.

A config (YAML or dict; ``compscope sample train CONFIG``) has these sections, every key a constructor argument:

- ``flow``: :class:`~compscope.sampling.EquivariantCNF` (hidden, num_layers, coords_range, init_gain, n_steps;
  ``n_particles``/``dim`` come from the target);
- ``data``: :class:`FlowDataModule` (target, train, valid, n_train, n_valid, batch_size); ``train``/``valid`` are
  a ``.npy`` of flattened frames, a ``reference.h5`` of :func:`~compscope.sampling.make_reference`, or
  ``split:<name>/<split>`` for the literature's shipped splits (:func:`~compscope.sampling.load_split`);
- ``module``: :class:`FlowModule` (loss: ``likelihood``, ``flow_matching`` or ``reverse_kl``, alignment, sigma, lr,
  weight_decay, hutchinson, train_steps, energy_high);
- ``trainer``: :class:`~compscope.train.TrainerConfig` (``monitor`` defaults to ``val_nll``);
- ``seed`` and ``out`` (the run folder, :class:`compscope.train.RunDir`);
- ``init_from``: a run folder or ``.ckpt`` whose flow weights start this run (e.g. likelihood or reverse-KL
  fine-tuning of a flow-matching run; same flow section and target), ignored on ``--resume``.

Validation reports the exact negative log-likelihood (nats per configuration, ``val_nll``, and per degree of
freedom of the mean-free subspace, ``val_nll_per_dof``).
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
from compscope.train import FitResult, RunDir, TrainerConfig, fit, resolve_section, run_folder

from ._errors import SamplingInputError
from ._flow import EquivariantCNF
from ._targets import get_target

__all__ = ["FlowDataModule", "FlowModule", "resolve_config", "train", "load_positions", "SECTIONS"]

SECTIONS = ("seed", "out", "init_from", "flow", "data", "module", "trainer")
TRAINER_DEFAULTS = {"monitor": "val_nll", "max_epochs": 20}
RESUME_SAFE = ("out", *(f"trainer.{k}" for k in TrainerConfig.RESUME_SAFE))
# options added after runs may have begun, with the behaviour those runs had (a resume compares with these)
ADDED_OPTIONS = {"init_from": None, "module": {"loss": "likelihood", "alignment": "equivariant", "sigma": 0.0,
                                                "energy_high": None}}


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


LOSSES = ("likelihood", "flow_matching", "reverse_kl")
ALIGNMENTS = ("none", "ot", "equivariant", "rotation")


class FlowModule(L.LightningModule):
    """Training of an :class:`EquivariantCNF` by maximum likelihood or by equivariant flow matching.

    ``likelihood``: loss = NLL per degree of freedom, backpropagated through the RK4 solver. ``flow_matching``
    (Klein, Krämer & Noé, NeurIPS 2023): regress the field on the straight conditional paths from base draws to
    data, ``|v(t, x_t) - (x_1 - x_0)|^2`` per degree of freedom, ``t ~ U(0, 1)``, one field evaluation per
    frame and no solver in the loop; the base draws are paired and aligned to the data first (``alignment``:
    ``equivariant`` = minibatch OT on rotation-aligned costs, then the optimal permutation and orthogonal map of
    each pair; ``ot`` = minibatch OT on plain distances; ``none`` = independent pairs;
    :func:`compscope.nn.equivariant_ot`). ``reverse_kl`` (energy-based, Noé et al., Science 2019): draw
    ``x ~ q`` through the flow (``train_steps`` RK4 steps, backpropagated, Hutchinson or exact divergence) and
    minimise ``E_q[u(x) + log q(x)] = KL(q || p) - log Z`` per degree of freedom with the target's energy ``u``
    (kT); the data batch only sets the number of draws. A draw whose energy or log q is NaN/inf is left out of
    the mean and counted (``train_invalid``); with ``energy_high`` energies above it enter as
    ``u_high + log(1 + u - u_high)`` (finite, gentle gradients at clashes; the exact energy is still what
    drawing and reweighting use). Validation is the exact NLL whatever the loss.

    Args:
        flow: the flow's constructor arguments (``n_particles``, ``dim`` included).
        lr, weight_decay: AdamW.
        hutchinson: likelihood training with the Hutchinson divergence (one Rademacher probe); exact otherwise.
        train_steps: RK4 steps in likelihood training (None: the flow's ``n_steps``, used in validation).
        target: the target's name (saved with the checkpoint, so ``compscope sample draw`` knows the energy).
        loss: ``likelihood`` or ``flow_matching``.
        alignment: base-to-data alignment of flow matching (``equivariant``, ``ot`` or ``none``).
        sigma: standard deviation of centred Gaussian noise added to the path points (0: deterministic paths).
        energy_high: reverse KL: energies above it are regularised logarithmically (None: used as they are).
    """

    def __init__(self, flow: Mapping[str, Any], lr: float = 1e-3, weight_decay: float = 0.0,
                 hutchinson: bool = False, train_steps: int | None = None, target: str | None = None,
                 loss: str = "likelihood", alignment: str = "equivariant", sigma: float = 0.0,
                 energy_high: float | None = None):
        super().__init__()
        if loss not in LOSSES:
            raise ConfigError(f"module.loss={loss!r}: use one of {list(LOSSES)}")
        if alignment not in ALIGNMENTS:
            raise ConfigError(f"module.alignment={alignment!r}: use one of {list(ALIGNMENTS)}")
        if sigma < 0:
            raise ConfigError(f"module.sigma={sigma}: must be >= 0")
        if loss == "reverse_kl" and target is None:
            raise ConfigError("module.loss=reverse_kl needs the target's energy: no target given",
                              hint="set data.target (the config passes it to the module)")
        self.save_hyperparameters()
        self.flow = EquivariantCNF(**flow)
        self.dof = (self.flow.n_particles - 1) * self.flow.dim
        self._target = None

    @property
    def target(self):
        """The :class:`~compscope.sampling.Target` of reverse KL: the one named by ``target``, built on first use,
        unless another (e.g. a :class:`~compscope.sampling.GaussianMixture`) was assigned."""
        if self._target is None:
            self._target = get_target(self.hparams.target)
        return self._target

    @target.setter
    def target(self, value) -> None:
        if (value.n_particles, value.dim) != (self.flow.n_particles, self.flow.dim):
            raise SamplingInputError(f"target of {value.n_particles} x {value.dim} positions for a flow of "
                                     f"{self.flow.n_particles} x {self.flow.dim}", hint="use the flow's event shape")
        self._target = value

    def reverse_kl_loss(self, n: int) -> tuple[torch.Tensor | None, int]:
        """``mean(u(x) + log q(x)) / dof`` over ``n`` flow draws with finite energy and log q, and how many draws
        were left out (NaN/inf); the loss is None (the step is skipped) when every draw is invalid."""
        x, log_q = self.flow.sample(n, n_steps=self.hparams.train_steps, exact=not self.hparams.hutchinson,
                                    create_graph=True)
        ok = torch.isfinite(x.detach()).reshape(n, -1).all(1) & torch.isfinite(log_q.detach())
        if ok.any():  # a first pass without graph finds the draws the target can evaluate
            with torch.no_grad():
                u0 = torch.full((n,), float("nan"), dtype=x.dtype, device=x.device)
                u0[ok] = self.target.energy(x.detach()[ok]).to(x.dtype)
            ok = ok & torch.isfinite(u0)
        n_bad = int((~ok).sum())
        if n_bad == n:
            return None, n_bad
        u = self.target.energy(x[ok]).to(x.dtype)  # only finite energies enter the graph
        high = self.hparams.energy_high
        if high is not None:
            over = u > high
            u = torch.where(over, high + torch.log1p(torch.where(over, u - high, torch.zeros_like(u))), u)
        return (u + log_q[ok]).mean() / self.dof, n_bad

    def flow_matching_loss(self, x1: torch.Tensor) -> torch.Tensor:
        """Mean squared error of the field against the straight-path velocity, per degree of freedom."""
        from compscope.nn import equivariant_ot, straight_path

        x1 = x1 - x1.mean(1, keepdim=True)
        x0 = torch.randn_like(x1)
        x0 = x0 - x0.mean(1, keepdim=True)
        a = self.hparams.alignment
        if a != "none":
            # "rotation": distinguishable atoms (atom_types), orthogonal alignment without permutations
            x0 = equivariant_ot(x0, x1, permute=a == "equivariant", rotate=a in ("equivariant", "rotation"))
        t = torch.rand(len(x1), dtype=x1.dtype, device=x1.device)
        xt, u = straight_path(x0, x1, t[:, None, None])
        if self.hparams.sigma > 0:
            eps = torch.randn_like(xt)
            xt = xt + self.hparams.sigma * (eps - eps.mean(1, keepdim=True))
        v = self.flow.field(t, xt)
        return ((v - u) ** 2).sum((1, 2)).mean() / self.dof

    def training_step(self, batch, batch_idx):
        if self.hparams.loss == "flow_matching":
            loss = self.flow_matching_loss(batch)
        elif self.hparams.loss == "reverse_kl":
            loss, n_bad = self.reverse_kl_loss(len(batch))
            self.log("train_invalid", float(n_bad), batch_size=len(batch), reduce_fx="sum")
            if loss is None:  # every draw invalid: skip the step (Lightning makes no optimizer step)
                return None
        else:
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

_SET_BY_TARGET = {"n_particles": "the target", "dim": "the target"}
_SET_ELSEWHERE = {"flow": "the flow section", "target": "the top-level target"}


def resolve_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Every section checked against its constructor, every default written out (what ``--resume`` compares)."""
    unknown = sorted(set(config) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"flow config: unknown top-level key(s) {unknown}",
                          hint=f"a flow config has the sections {list(SECTIONS)} (see configs/sampling/)")
    data = resolve_section(config, "data", FlowDataModule)
    target = get_target(data["target"])
    trainer = resolve_section(config, "trainer", TrainerConfig, TRAINER_DEFAULTS)
    TrainerConfig(**trainer)
    init = config.get("init_from")
    return {"seed": int(config.get("seed", 0)), "out": None if config.get("out") is None else str(config["out"]),
            "init_from": None if init is None else str(init),
            "flow": {"n_particles": target.n_particles, "dim": target.dim,
                     **resolve_section(config, "flow", EquivariantCNF, provided=_SET_BY_TARGET)},
            "data": data, "module": resolve_section(config, "module", FlowModule, provided=_SET_ELSEWHERE),
            "trainer": trainer}


def _init_from(module: FlowModule, path: str, target: str) -> None:
    """Start from the weights of another run's flow (e.g. likelihood fine-tuning after flow matching)."""
    from compscope.models.artifacts import ArtifactError

    from ._draw import load_flow

    flow, info = load_flow(path, dtype=next(module.flow.parameters()).dtype)
    if info["target"] != target or info["flow"] != dict(module.hparams.flow):
        raise ArtifactError(f"init_from {path}: its flow ({info['target']}, {info['flow']}) differs from this "
                            f"config's ({target}, {dict(module.hparams.flow)})",
                            hint="use the same flow section and target as the run you start from")
    module.flow.load_state_dict(flow.state_dict())


def train(config: Mapping[str, Any], out: str | os.PathLike | None = None, resume: bool = False) -> FitResult:
    """Train a flow as a config describes (module docstring); returns :class:`~compscope.train.FitResult`."""
    cfg = resolve_config(config)
    where = run_folder(cfg, out, example="runs/enf_dw4")
    L.seed_everything(cfg["seed"], workers=True, verbose=False)
    module = FlowModule(cfg["flow"], target=cfg["data"]["target"], **cfg["module"])
    if cfg["init_from"] is not None and not resume:
        _init_from(module, cfg["init_from"], cfg["data"]["target"])
    data = FlowDataModule(**cfg["data"])
    run = RunDir(where, resume=resume, config=cfg, safe=RESUME_SAFE, defaults=ADDED_OPTIONS).start()
    return fit(module, data, run, TrainerConfig(**cfg["trainer"]))
