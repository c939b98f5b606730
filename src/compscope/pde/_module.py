"""The Lightning module of a neural PDE solver: model, bundled pushforward loss, rollout validation, optimiser.

Training itself is :func:`compscope.train.fit` (see :func:`compscope.pde.train`).

Training follows the paper's recipe (Sec. 2.3): random starting points on the trajectories, temporal bundling
(K steps out per call) and the pushforward trick: ``n`` unrolled model steps without gradient, then one step
with gradient against the ground truth, ``n`` drawn uniformly from ``0..min(epoch, max_unroll)`` (the
curriculum of the authors' code).
"""

from __future__ import annotations

import random

import lightning as L
import torch

from compscope.errors import ConfigError

from ._equations import check_resolution, get_equation
from ._metrics import rollout
from ._models import build_model

__all__ = ["NeuralPDESolver"]


class NeuralPDESolver(L.LightningModule):
    """Lightning wrapper of a bundled neural solver for one equation at one resolution.

    Args:
        equation: ``E1``..``WE3``.
        nx: spatial resolution (one of the stored resolutions).
        model: preset name (``mp-pde``, ``fno``, ...) or ``{"class_path", "init_args"}``.
        time_window: K (temporal bundling).
        max_unroll: largest pushforward unrolling.
        given_windows: windows of ground truth given before the scored rollout (the paper: 2).
        lr, weight_decay: AdamW; the learning rate follows a cosine schedule over the epochs.
        augment: train on each sample or its mirror image ``-u(t, L - x)`` with equal probability, an exact
            symmetry of the data of E1/E2 (:attr:`CombinedEquation.reflection_symmetric`); refused elsewhere.
    """

    def __init__(self, equation: str, nx: int, model: str | dict = "mp-pde", time_window: int = 25,
                 max_unroll: int = 2, given_windows: int = 2, lr: float = 1e-3,
                 weight_decay: float = 1e-8, augment: bool = False) -> None:
        super().__init__()
        self.save_hyperparameters()
        eq = get_equation(equation)
        check_resolution(eq, nx)
        if augment and not getattr(eq, "reflection_symmetric", False):
            raise ConfigError(f"module.augment: {eq.name} has no reflection symmetry u -> -u(L - x)",
                              hint="only the periodic settings without dispersion (E1/E2 and their -authors "
                                   "variants) have it; train without augment")
        self.eq = eq
        times = eq.times
        if (given_windows + 1) * time_window > eq.nt:
            raise ConfigError(f"module.time_window={time_window} x (given_windows+1)={given_windows + 1} exceeds "
                              f"nt={eq.nt}", hint="lower module.time_window")
        self.model = build_model(model, time_window=time_window, dt=float(times[1] - times[0]),
                                 domain_length=float(eq.L), periodic=eq.periodic,
                                 n_params=len(eq.param_names), tmax=float(eq.tmax))
        self.register_buffer("x", torch.tensor(eq.grid(nx), dtype=torch.float32))
        self.register_buffer("times", torch.tensor(times, dtype=torch.float32))

    @property
    def K(self) -> int:
        """The time window (steps in and out per model call)."""
        return self.hparams.time_window

    def forward(self, u: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.model(u, self.x, t, cond)

    def _window(self, u, s):  # u (B, nt, N), s (B,) first index of the window -> (B, K, N)
        idx = s[:, None] + torch.arange(self.K, device=u.device)[None, :]
        return u[torch.arange(u.shape[0], device=u.device)[:, None], idx]

    def training_step(self, batch, batch_idx):
        u, cond = batch  # (B, nt, N), (B, P)
        K, nt, B = self.K, u.shape[1], u.shape[0]
        if self.hparams.augment:  # mirror half of the samples (an exact symmetry of the data)
            flip = torch.rand(B, device=u.device) < 0.5
            u = torch.where(flip[:, None, None], -u.flip(-1), u)
        n = random.randint(0, min(self.current_epoch, self.hparams.max_unroll))
        s = torch.randint(K, nt - K - n * K + 1, (B,), device=u.device)  # first label index
        inp = self._window(u, s - K)
        with torch.no_grad():  # pushforward trick: unroll without gradient
            for _ in range(n):
                inp = self(inp, self.times[s - 1], cond)
                s = s + K
        pred = self(inp, self.times[s - 1], cond)
        loss = torch.nn.functional.mse_loss(pred, self._window(u, s))
        self.log("train_loss", loss, prog_bar=True, on_epoch=True, on_step=False, sync_dist=True)
        return loss

    def validation_step(self, batch, batch_idx):
        u, cond = batch
        n0 = self.hparams.given_windows * self.K
        pred = self.rollout_from_given(u, cond)
        err = ((pred[:, n0:] - u[:, n0:]) ** 2).mean(-1).sum(-1).mean()
        self.log("val_acc_error", err, prog_bar=True, sync_dist=True, batch_size=u.shape[0])

    def rollout_from_given(self, u: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Roll out (B, nt, N) from the first ``given_windows * K`` steps of ``u`` (B, nt, N); cond (B, P)."""
        n0 = self.hparams.given_windows * self.K
        return rollout(_Bound(self), u[:, :n0], self.x, self.times, cond, u.shape[1])

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        epochs = max(1, self.trainer.max_epochs or 1)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs, eta_min=self.hparams.lr * 0.01)
        return [opt], [sched]


class _Bound(torch.nn.Module):
    """Adapter: the rollout calls model(u, x, t, cond); the Lightning module owns x."""

    def __init__(self, solver: NeuralPDESolver) -> None:
        super().__init__()
        self.solver = solver
        self.K = solver.K

    def forward(self, u, x, t, cond):
        return self.solver.model(u, x, t, cond)
