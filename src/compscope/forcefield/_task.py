"""The Lightning module that fits a potential to energies and forces."""

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
from compscope.models import build_model
from compscope.train._ema import EMA  # replaced by the EMA callback when the task moves onto compscope.train.fit

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
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
    """Weighted energy + force regression (constructor arguments = the config's ``task`` section).

    Args:
        model: keyword arguments of :func:`compscope.models.build_model` (``name``, ``preset`` and the model's
            constructor arguments). ``species``, ``atomic_energies``, ``avg_num_neighbors`` and ``scale`` are
            filled from the training data unless given.
        energy_weight: weight of the per-atom energy MSE (eV^2).
        forces_weight: weight of the force-component MSE (eV^2/Å^2).
        optimizer: ``"adamw"`` or ``"amsgrad"`` (AdamW with the AMSGrad variant).
        lr: learning rate.
        weight_decay: decoupled weight decay.
        scheduler: ``"plateau"`` (reduce on validation-loss plateau), ``"cosine"`` (over ``max_epochs``),
            ``"cosine_time"`` (cosine over the wall-clock budget ``trainer.max_time_minutes``, updated every batch:
            the schedule for fixed-time training, and it continues correctly on resume) or ``"none"``.
        scheduler_patience: epochs without improvement before the LR is reduced (plateau).
        lr_factor: LR reduction factor (plateau).
        ema_decay: decay of the weight EMA (``0`` disables it); validation and export use the EMA weights.
        max_epochs_hint: epochs for the cosine schedule (set by the trainer section).
        lr_min_ratio: final LR of the cosine schedules as a fraction of ``lr``.
        time_budget_s: wall-clock budget of ``"cosine_time"`` (set from ``trainer.max_time_minutes``).
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
        ema_decay: float = 0.99,
        max_epochs_hint: int = 100,
        lr_min_ratio: float = 0.01,
        time_budget_s: float | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        if optimizer not in ("adamw", "amsgrad"):
            raise ValueError(f"optimizer must be 'adamw' or 'amsgrad', got {optimizer!r}")
        if scheduler not in ("plateau", "cosine", "cosine_time", "none"):
            raise ValueError(f"scheduler must be 'plateau', 'cosine', 'cosine_time' or 'none', got {scheduler!r}")
        if scheduler == "cosine_time" and not time_budget_s:
            raise ValueError("scheduler 'cosine_time' anneals the LR over the wall-clock budget: set "
                             "trainer.max_time_minutes")
        self.model = build_model(**model)
        self.ema = EMA(self.model, ema_decay) if ema_decay > 0 else None
        self._val_outputs: list[dict[str, torch.Tensor]] = []
        self._last_batch_idx = -1

    # -------------------------------------------------------------------------------------------
    @property
    def eval_model(self) -> torch.nn.Module:
        """The weights used for validation, testing and export (EMA if enabled)."""
        return self.ema.module if self.ema is not None else self.model

    def transfer_batch_to_device(self, batch: AtomicGraph, device, dataloader_idx: int) -> AtomicGraph:
        # reference energies stay float64 (the model's total energy is float64): a float32 cast would round
        # totals of ~1e5 eV to ~8 meV, more than the energy errors being fitted
        energy = None if batch.energy is None else batch.energy.to(device=device, dtype=torch.float64)
        return replace(batch.to(device=device, dtype=self.model.atomic_energies.dtype), energy=energy)

    def loss(self, pred, batch: AtomicGraph) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if batch.forces is None:
            raise ValueError("the force loss needs reference forces; the data has none (set forces_weight: 0)")
        err = errors(pred, batch)
        e_mse = err["energy_per_atom"].pow(2).mean()
        f_mse = err["forces"].pow(2).mean()
        total = self.hparams.energy_weight * e_mse + self.hparams.forces_weight * f_mse
        return total, {"e_mse": e_mse.detach(), "f_mse": f_mse.detach()}

    def training_step(self, batch: AtomicGraph, batch_idx: int):
        pred = self.model(batch, compute_forces=True, training=True)
        loss, parts = self.loss(pred, batch)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"non-finite loss ({float(loss.detach())}) at epoch {self.current_epoch}, batch {batch_idx} "
                f"(frames {[d.get('config_type', '?') for d in (batch.info or [])][:3]}...). "
                "Lower the learning rate or check the data; the last good checkpoint is kept."
            )
        self.log("train_loss", loss, batch_size=batch.num_graphs, on_epoch=True, on_step=False, sync_dist=True)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self.ema is not None:
            self.ema.update(self.model)

    def _eval_step(self, batch: AtomicGraph) -> dict[str, torch.Tensor]:
        with torch.enable_grad():
            pred = self.eval_model(batch, compute_forces=True, training=False)
        err = errors(pred, batch)
        return {k: v.detach() for k, v in err.items()}

    def validation_step(self, batch: AtomicGraph, batch_idx: int):
        err = self._eval_step(batch)
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
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, hp.max_epochs_hint),
                                                               eta_min=hp.lr * hp.lr_min_ratio)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=hp.lr_factor, patience=hp.scheduler_patience)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val_loss", "interval": "epoch"}}

    def time_cosine_lr(self, elapsed_s: float) -> float:
        """LR of the ``cosine_time`` schedule after ``elapsed_s`` seconds of training."""
        hp = self.hparams
        frac = min(1.0, max(0.0, elapsed_s / hp.time_budget_s))
        lr_min = hp.lr * hp.lr_min_ratio
        return lr_min + 0.5 * (hp.lr - lr_min) * (1.0 + math.cos(math.pi * frac))

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        if self.hparams.scheduler != "cosine_time":
            return
        from lightning.pytorch.callbacks import Timer

        timers = [c for c in self.trainer.callbacks if isinstance(c, Timer)]
        if not timers:
            return
        # Lightning's Timer restores the time spent before a resume, so the schedule continues where it was
        lr = self.time_cosine_lr(timers[0].time_elapsed("train"))
        for opt in self.trainer.optimizers:
            for group in opt.param_groups:
                group["lr"] = lr

    # RNG state travels with the checkpoint, so a resumed run continues exactly
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        name, keys, pos, has_gauss, cached = np.random.get_state()
        # plain types and tensors only, so checkpoints load with torch.load(weights_only=True)
        checkpoint["rng"] = {
            "torch": torch.get_rng_state(),
            "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
            "python": random.getstate(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        rng = checkpoint.get("rng")
        if rng:
            torch.set_rng_state(rng["torch"])
            name, keys, pos, has_gauss, cached = rng["numpy"]
            np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
            random.setstate(rng["python"])
