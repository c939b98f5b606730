"""Training of the neural solvers with Lightning (DDP-ready), checkpoint/resume, evaluation.

Training follows the paper's recipe (Sec. 2.3): random starting points on the trajectories, temporal bundling
(K steps out per call) and the pushforward trick: ``n`` unrolled model steps without gradient, then one step
with gradient against the ground truth, ``n`` drawn uniformly from ``0..min(epoch, max_unroll)`` (the
curriculum of the authors' code).
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import random
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Timer

from ._accelerators import check_accelerator
from ._equations import check_resolution, get_equation
from ._generate import generate, load_split
from ._metrics import per_step_error, rollout, time_per_trajectory, trajectory_errors
from ._models import build_model

__all__ = ["NeuralPDESolver", "train", "load_solver", "evaluate", "training_time", "EquationMismatchError"]

log = logging.getLogger(__name__)


class EquationMismatchError(ValueError):
    """A model is evaluated on another equation or grid than it was trained on."""


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
            raise ValueError(f"augment: {eq.name} has no reflection symmetry u -> -u(L - x) (only the periodic "
                             "settings without dispersion, E1/E2 and their -authors variants, do); train without it")
        self.eq = eq
        times = eq.times
        if (given_windows + 1) * time_window > eq.nt:
            raise ValueError(f"time_window={time_window} x (given_windows+1)={given_windows + 1} exceeds "
                             f"nt={eq.nt}; lower time_window")
        self.model = build_model(model, time_window=time_window, dt=float(times[1] - times[0]),
                                 domain_length=float(eq.L), periodic=eq.periodic,
                                 n_params=len(eq.param_names), tmax=float(eq.tmax))
        self.register_buffer("x", torch.tensor(eq.grid(nx), dtype=torch.float32))
        self.register_buffer("times", torch.tensor(times, dtype=torch.float32))

    @property
    def K(self) -> int:
        return self.hparams.time_window

    def forward(self, u: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.model(u, self.x, t, cond)

    def _window(self, u, s):  # u (B, nt, N), s (B,) first index of the window -> (B, K, N)
        idx = s[:, None] + torch.arange(self.K, device=u.device)[None, :]
        return u[torch.arange(u.shape[0], device=u.device)[:, None], idx]

    def training_step(self, batch, batch_idx):
        u, cond = batch  # (B, nt, N), (B, P)
        K, nt, B = self.K, u.shape[1], u.shape[0]
        if self.hparams.get("augment", False):  # mirror half of the samples (an exact symmetry of the data)
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
        pred = self._rollout(u, cond)
        err = ((pred[:, n0:] - u[:, n0:]) ** 2).mean(-1).sum(-1).mean()
        self.log("val_acc_error", err, prog_bar=True, sync_dist=True, batch_size=u.shape[0])

    def _rollout(self, u, cond):
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


class _Repeat(torch.utils.data.Dataset):
    """Each trajectory ``repeat`` times per epoch (a new random start each time)."""

    def __init__(self, u: np.ndarray, cond: np.ndarray, repeat: int = 1) -> None:
        self.u = torch.tensor(u, dtype=torch.float32)
        self.cond = torch.tensor(cond, dtype=torch.float32)
        self.repeat = repeat

    def __len__(self) -> int:
        return len(self.u) * self.repeat

    def __getitem__(self, i):
        i = i % len(self.u)
        return self.u[i], self.cond[i]


_RESUME_SAFE = {"max_epochs", "devices", "strategy", "progress", "resume", "workers", "threads", "cache",
                "accelerator"}


class _ResumableTimer(Timer):
    """Lightning's Timer that knows whether a resumed run's checkpoint carried its state: runs begun before
    compscope timed itself did not, and their summed time would silently miss the earlier epochs."""

    restored = False

    @property
    def state_key(self) -> str:
        return "Timer"  # the key of the plain Timer, so checkpoints written with it resume here

    def load_state_dict(self, state_dict) -> None:
        super().load_state_dict(state_dict)
        self.restored = True

    def complete(self, resumed: bool) -> bool:
        """True when :meth:`time_elapsed` covers the whole run."""
        return not resumed or self.restored


def train(equation: str, nx: int, out_dir: str | os.PathLike, model: str | dict = "mp-pde",
          n_train: int = 2048, n_valid: int = 128, seed: int = 0, cache: str | None = None,
          max_epochs: int = 20, batch_size: int = 16, repeat: int = 1, time_window: int = 25,
          max_unroll: int = 2, lr: float = 1e-3, weight_decay: float = 1e-8, devices: int = 1,
          strategy: str = "auto", resume: bool = False, workers: int | None = None,
          progress: bool = True, threads: int | None = None, accelerator: str = "cpu",
          augment: bool = False, ema_decay: float = 0.0) -> Path:
    """Generate (or reuse) the data, train, and return the path of the best checkpoint.

    Checkpoints go to ``out_dir/checkpoints`` (``last.ckpt`` every epoch); ``resume=True`` continues from
    ``last.ckpt`` and refuses a changed configuration (only max_epochs, devices, strategy may change).
    ``strategy="ddp"`` with ``devices=2`` runs two CPU processes (gloo). ``threads`` sets torch's intra-op
    threads per process (1 is much faster for these small models on a busy 2-core machine).
    ``accelerator``: ``cpu`` (default), ``gpu`` (a CUDA device; refused with a clear message where none is
    visible) or ``auto`` (a GPU when there is one). Evaluation and the runtime tables stay on the CPU.
    ``augment``: mirror-image augmentation (:class:`NeuralPDESolver`; E1/E2 only).
    ``ema_decay``: when > 0, validate and checkpoint an exponential moving average of the weights (decay per
    step, e.g. 0.999; Lightning's ``WeightAveraging``); the raw weights stay in the checkpoint for resuming.
    """
    check_accelerator(accelerator)
    if not 0.0 <= ema_decay < 1.0:
        raise ValueError(f"ema_decay={ema_decay}: give a decay in [0, 1) (0 = no weight averaging, 0.999 is typical)")
    cfg = {k: v for k, v in locals().items() if k not in {"out_dir"}}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "train_config.json"
    last = out / "checkpoints" / "last.ckpt"
    if resume:
        if not last.exists():
            raise FileNotFoundError(f"--resume: no {last}; train without --resume first")
        old = json.loads(cfg_path.read_text())
        defaults = {k: v.default for k, v in inspect.signature(train).parameters.items()}
        # a key the saved config lacks was added later: the run used its default
        changed = {k for k in cfg if k not in _RESUME_SAFE and old.get(k, defaults.get(k)) != cfg[k]}
        if changed:
            raise ValueError(f"--resume with a changed configuration ({', '.join(sorted(changed))}): "
                             f"use the saved values in {cfg_path} or a new out_dir")
    elif last.exists() and int(os.environ.get("LOCAL_RANK", "0")) == 0:
        raise FileExistsError(f"{out} already holds a run: pass --resume to continue it or choose a new out_dir")
    if int(os.environ.get("LOCAL_RANK", "0")) == 0:
        cfg_path.write_text(json.dumps(cfg, indent=2, default=str))
    if threads:
        torch.set_num_threads(threads)
    L.seed_everything(seed, workers=True)
    eq = get_equation(equation)
    check_resolution(eq, nx)
    tr = load_split(generate(eq.name, "train", n_train, seed, cache, workers, progress=progress), nx)
    va = load_split(generate(eq.name, "valid", n_valid, seed, cache, workers, progress=progress), nx)
    module = NeuralPDESolver(eq.name, nx, model, time_window, max_unroll, 2, lr, weight_decay, augment)
    dl_tr = torch.utils.data.DataLoader(_Repeat(tr["u"], tr["cond"], repeat), batch_size=batch_size, shuffle=True,
                                        drop_last=len(tr["u"]) * repeat > batch_size)
    dl_va = torch.utils.data.DataLoader(_Repeat(va["u"], va["cond"]), batch_size=max(batch_size, 32))
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    ckpt = ModelCheckpoint(dirpath=out / "checkpoints", filename="best", monitor="val_acc_error", mode="min",
                           save_last=True, save_top_k=1)
    timer = _ResumableTimer()  # its elapsed time is saved in every checkpoint, so it survives a resume
    callbacks = [ckpt, timer]
    if ema_decay:
        from lightning.pytorch.callbacks import WeightAveraging
        from torch.optim.swa_utils import get_ema_avg_fn

        # parameters only: the buffers (grid, times) are constants an average would only round
        callbacks.append(WeightAveraging(avg_fn=get_ema_avg_fn(ema_decay), use_buffers=False))
    trainer = L.Trainer(max_epochs=max_epochs, accelerator=accelerator, devices=devices, strategy=strategy,
                        callbacks=callbacks, logger=CSVLogger(out, name="logs"), enable_progress_bar=progress,
                        enable_model_summary=False, log_every_n_steps=1, num_sanity_val_steps=0,
                        deterministic=False)
    trainer.fit(module, dl_tr, dl_va, ckpt_path=str(last) if resume else None)
    if trainer.is_global_zero:
        _plot_losses(out)
        (out / "train_time.json").write_text(json.dumps(
            {"train_seconds": timer.time_elapsed("train") if timer.complete(resume) else None,
             "global_step": trainer.global_step}))
    return _local_best(ckpt.best_model_path, out / "checkpoints", last)


def _local_best(best: str, folder: Path, last: Path) -> Path:
    """The best checkpoint inside the run's own folder. A resumed run folder that was moved or copied gets the
    best path of the *old* folder back from Lightning (which may be gone): map it to the same file here."""
    if not best:
        return last
    here = folder / Path(best).name
    return here if here.exists() else Path(best)


def training_time(out_dir: str | os.PathLike) -> dict | None:
    """``{"train_seconds", "global_step"}`` of a run made by :func:`train`: wall-clock training time summed over
    every resume (Lightning's Timer state lives in the checkpoints); ``train_seconds`` is None for a run begun by an
    older version that did not time itself. None for a folder without that record."""
    path = Path(out_dir) / "train_time.json"
    return json.loads(path.read_text()) if path.exists() else None


def _plot_losses(out: Path) -> None:
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = sorted((out / "logs").glob("version_*/metrics.csv"))
    if not files:
        return
    rows = list(csv.DictReader(files[-1].open()))
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for key in ("train_loss_epoch", "train_loss", "val_acc_error"):
        pts = [(float(r["epoch"]), float(r[key])) for r in rows if r.get(key)]
        if pts:
            ax.semilogy(*zip(*pts), marker="o", label=key)
    ax.set_xlabel("epoch")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "losses.png", dpi=120)
    plt.close(fig)


def load_solver(checkpoint: str | os.PathLike, equation: str | None = None, nx: int | None = None):
    """Load a trained solver; raise :class:`EquationMismatchError` if equation/nx differ from training."""
    path = Path(checkpoint)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} not found: train one with `compscope pde train`")
    solver = NeuralPDESolver.load_from_checkpoint(path, map_location="cpu")
    solver.eval()
    hp = solver.hparams
    if equation is not None and get_equation(equation).name != hp.equation or nx is not None and int(nx) != hp.nx:
        raise EquationMismatchError(
            f"{path} was trained on {hp.equation} at nx={hp.nx}, but asked to run on "
            f"{equation or hp.equation} at nx={nx or hp.nx}: evaluate it on {hp.equation} nx={hp.nx} "
            f"or train a model for {equation or hp.equation} nx={nx or hp.nx}"
        )
    return solver


@torch.no_grad()
def evaluate(checkpoint: str | os.PathLike, equation: str | None = None, nx: int | None = None,
             n_test: int = 128, seed: int = 0, cache: str | None = None, workers: int | None = None,
             timing: bool = True, progress: bool = False) -> dict:
    """Roll a trained solver out on the test split: accumulated error, per-step curve, runtime per trajectory."""
    solver = load_solver(checkpoint, equation, nx)
    hp = solver.hparams
    te = load_split(generate(hp.equation, "test", n_test, seed, cache, workers, progress=progress), hp.nx)
    u = torch.tensor(te["u"], dtype=torch.float32)
    cond = torch.tensor(te["cond"], dtype=torch.float32)
    n0 = hp.given_windows * hp.time_window
    pred = solver._rollout(u, cond)
    per_traj = trajectory_errors(pred.numpy(), te["u"], n0)  # (B,) heavy-tailed: report the mean's uncertainty
    res = {
        "equation": hp.equation, "nx": hp.nx, "n_test": n_test, "given_steps": n0,
        "accumulated_error": float(per_traj.mean()),
        "accumulated_error_se": float(per_traj.std(ddof=1) / np.sqrt(len(per_traj))) if len(per_traj) > 1 else None,
        "per_step_error": per_step_error(pred.numpy(), te["u"]).tolist(),
    }
    if timing:
        res["s_per_traj_batched"] = time_per_trajectory(lambda: solver._rollout(u, cond), len(u), repeats=2)
        res["s_per_traj_single"] = time_per_trajectory(lambda: solver._rollout(u[:1], cond[:1]), 1, repeats=3)
    res["prediction"] = pred.numpy()
    res["reference"] = te["u"]
    res["x"], res["t"] = te["x"], te["t"]
    return res
