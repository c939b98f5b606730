"""The Lightning module that fits a potential to energies and forces: model, loss, optimiser and LR schedule.

Everything else a training run needs (weight EMA, wall-clock budget, checkpoints, metrics, early stopping, resume)
comes from :func:`compscope.train.fit`.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import replace
from typing import Any

import lightning as L
import numpy as np
import torch

from compscope.data import AtomicGraph
from compscope.data import keys as K
from compscope.errors import CompscopeError, ConfigError
from compscope.models import build_model
from compscope.train import TimeBudget, find_callback

log = logging.getLogger(__name__)

OPTIMIZERS = ("adamw", "amsgrad")
SCHEDULERS = ("plateau", "cosine", "cosine_time", "none")


class NonFiniteLossError(CompscopeError, RuntimeError):
    """The loss became NaN/inf; training stops and the last good checkpoint is kept."""


def errors(pred: dict[str, torch.Tensor], batch: AtomicGraph) -> dict[str, torch.Tensor]:
    """Per-graph energy errors per atom (G,) and per-component force errors (N, 3), in eV and eV/Å."""
    n = batch.num_atoms.to(pred[K.ENERGY].dtype)
    return {
        # in float64 when the model accumulates its total in float64; back to the model's dtype for the loss
        "energy_per_atom": ((pred[K.ENERGY] - batch.energy) / n).to(pred[K.FORCES].dtype),  # (G,)
        "forces": pred[K.FORCES] - batch.forces,  # (N, 3)
    }


class ForceFieldTask(L.LightningModule):
    """Weighted energy + force regression (constructor arguments = the config's ``task`` section's ``init_args``).

    Args:
        model: keyword arguments of :func:`compscope.models.build_model` (``name`` and the model's constructor
            arguments), filled by :func:`compscope.forcefield.fit` from the config's ``model`` section and the
            training data (``species``, ``atomic_energies``, ``avg_num_neighbors``, ``scale``). They are what a
            model package stores, so a checkpoint rebuilds its task from its hyper-parameters.
        energy_weight: weight of the per-atom energy MSE (eV^2).
        forces_weight: weight of the force-component MSE (eV^2/Å^2).
        optimizer: ``"adamw"`` or ``"amsgrad"`` (AdamW with the AMSGrad variant).
        lr: learning rate.
        weight_decay: decoupled weight decay.
        scheduler: ``"plateau"`` (reduce on validation-loss plateau), ``"cosine"`` (over ``trainer.max_epochs``),
            ``"cosine_time"`` (cosine over the wall-clock budget ``trainer.max_time_minutes``, read every batch
            from the trainer's :class:`~compscope.train.TimeBudget`, so it continues on the same curve after
            ``--resume``) or ``"none"``.
        scheduler_patience: epochs without improvement before the LR is reduced (plateau).
        lr_factor: LR reduction factor (plateau).
        lr_min_ratio: final LR of the cosine schedules as a fraction of ``lr``.

    Notes:
        The weight EMA is the trainer's (``trainer.ema_decay``): validation, ``best.ckpt`` and the exported model
        use the averaged weights, and after training ``model`` holds them.
    """

    def __init__(
        self,
        model: dict[str, Any],
        energy_weight: float = 1.0,
        forces_weight: float = 100.0,
        optimizer: str = "amsgrad",
        lr: float = 0.01,
        weight_decay: float = 5e-7,
        scheduler: str = "plateau",
        scheduler_patience: int = 10,
        lr_factor: float = 0.8,
        lr_min_ratio: float = 0.01,
    ):
        super().__init__()
        self.save_hyperparameters()
        if optimizer not in OPTIMIZERS:
            raise ConfigError(f"task.optimizer={optimizer!r} unknown", hint=f"use one of {list(OPTIMIZERS)}")
        if scheduler not in SCHEDULERS:
            raise ConfigError(f"task.scheduler={scheduler!r} unknown", hint=f"use one of {list(SCHEDULERS)}")
        self.model = build_model(**model)

    @property
    def eval_model(self) -> torch.nn.Module:
        """The model validated and exported (the EMA weights during validation and after training)."""
        return self.model

    def transfer_batch_to_device(self, batch: AtomicGraph, device, dataloader_idx: int) -> AtomicGraph:
        # reference energies stay float64 (the model's total energy is float64): a float32 cast would round
        # totals of ~1e5 eV to ~8 meV, more than the energy errors being fitted
        energy = None if batch.energy is None else batch.energy.to(device=device, dtype=torch.float64)
        return replace(batch.to(device=device, dtype=self.model.atomic_energies.dtype), energy=energy)

    def loss(self, pred, batch: AtomicGraph) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Weighted per-atom energy MSE + force-component MSE, and the two parts (detached)."""
        if batch.forces is None:
            raise ConfigError("the force loss needs reference forces, and the data has none",
                              hint="set task.init_args.forces_weight: 0, or point data.forces_key at the forces")
        err = errors(pred, batch)
        e_mse = err["energy_per_atom"].pow(2).mean()
        f_mse = err["forces"].pow(2).mean()
        total = self.hparams.energy_weight * e_mse + self.hparams.forces_weight * f_mse
        return total, {"e_mse": e_mse.detach(), "f_mse": f_mse.detach()}

    def training_step(self, batch: AtomicGraph, batch_idx: int):
        pred = self.model(batch, compute_forces=True, training=True)
        loss, _ = self.loss(pred, batch)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"non-finite loss ({float(loss.detach())}) at epoch {self.current_epoch}, batch {batch_idx} "
                f"(frames {[d.get('config_type', '?') for d in (batch.info or [])][:3]}...); the last good "
                "checkpoint is kept",
                hint="lower task.init_args.lr or check the data (forces or energies far off); resume from the "
                     "last good checkpoint with --resume",
            )
        self.log("train_loss", loss, batch_size=batch.num_graphs, on_epoch=True, on_step=False, sync_dist=True)
        return loss

    def validation_step(self, batch: AtomicGraph, batch_idx: int):
        with torch.enable_grad():
            pred = self.model(batch, compute_forces=True, training=False)
        err = {k: v.detach() for k, v in errors(pred, batch).items()}
        e_mse = err["energy_per_atom"].pow(2).mean()
        f_mse = err["forces"].pow(2).mean()
        loss = self.hparams.energy_weight * e_mse + self.hparams.forces_weight * f_mse
        bs = batch.num_graphs
        self.log("val_loss", loss, batch_size=bs, sync_dist=True, prog_bar=True)
        self.log("val_e_mae_meV_atom", 1000 * err["energy_per_atom"].abs().mean(), batch_size=bs, sync_dist=True,
                 prog_bar=True)
        self.log("val_f_mae_meV_A", 1000 * err["forces"].abs().mean(), batch_size=bs, sync_dist=True, prog_bar=True)
        self.log("val_f_rmse_meV_A", 1000 * err["forces"].pow(2).mean().sqrt(), batch_size=bs, sync_dist=True)

    # -------------------------------------------------------------------------------------------
    def configure_optimizers(self):
        hp = self.hparams
        opt = torch.optim.AdamW(self.model.parameters(), lr=hp.lr, weight_decay=hp.weight_decay,
                                amsgrad=hp.optimizer == "amsgrad")
        if hp.scheduler in ("none", "cosine_time"):  # cosine_time: set per batch in on_train_batch_start
            return opt
        if hp.scheduler == "cosine":
            epochs = self.trainer.max_epochs if self.trainer.max_epochs and self.trainer.max_epochs > 0 else None
            if epochs is None:
                raise ConfigError("task.scheduler 'cosine' anneals over trainer.max_epochs, which is not set",
                                  hint="set trainer.max_epochs, or use scheduler: cosine_time with a time budget")
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs, eta_min=hp.lr * hp.lr_min_ratio)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=hp.lr_factor, patience=hp.scheduler_patience)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val_loss", "interval": "epoch"}}

    def time_cosine_lr(self, fraction: float) -> float:
        """LR of the ``cosine_time`` schedule after ``fraction`` (0..1) of the wall-clock budget."""
        hp = self.hparams
        frac = min(1.0, max(0.0, fraction))
        lr_min = hp.lr * hp.lr_min_ratio
        return lr_min + 0.5 * (hp.lr - lr_min) * (1.0 + math.cos(math.pi * frac))

    def _budget(self) -> TimeBudget | None:
        budget = find_callback(self.trainer, TimeBudget)
        return budget if budget is not None and budget.budget_s else None

    def on_fit_start(self) -> None:
        if self.hparams.scheduler == "cosine_time" and self._budget() is None:
            raise ConfigError("task.scheduler 'cosine_time' anneals the LR over the wall-clock budget, and there is "
                              "none", hint="set trainer.max_time_minutes")

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        if self.hparams.scheduler != "cosine_time":
            return
        # the budget's elapsed time is restored from the checkpoint, so a resumed run continues on the same curve
        lr = self.time_cosine_lr(self._budget().fraction())
        for opt in self.trainer.optimizers:
            for group in opt.param_groups:
                group["lr"] = lr

    # compscope.train.fit's RNGState callback saves and restores the RNG states of every checkpoint; checkpoints
    # written before it existed carry them under "rng", restored here
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        rng = checkpoint.get("rng")
        if rng:
            torch.set_rng_state(rng["torch"])
            name, keys, pos, has_gauss, cached = rng["numpy"]
            np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
            random.setstate(rng["python"])
