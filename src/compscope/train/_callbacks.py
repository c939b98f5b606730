"""Lightning callbacks every task trains with: weight EMA, a wall or CPU time budget over resumes, metrics, RNG."""

from __future__ import annotations

import csv
import json
import random
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Timer, WeightAveraging
from lightning.pytorch.trainer.states import RunningStage

from compscope.errors import ConfigError

__all__ = ["EMA", "TimeBudget", "MetricsSink", "RNGState", "write_csv", "read_metrics"]


class EMA(WeightAveraging):
    r"""Exponential moving average of the weights, :math:`\bar\theta \leftarrow d\,\bar\theta + (1-d)\,\theta`
    after every optimiser step, on Lightning's ``WeightAveraging``.

    Validation, the best checkpoint and the model left in the module after ``fit`` use the average; the raw
    weights stay in every checkpoint (``current_model_state``) so a resumed run continues both exactly.

    Args:
        decay: ``d`` per optimiser step (0.99 for force fields, 0.999 for EDM).
        warmup: use :math:`\min(d, (1+n)/(10+n))` after ``n`` updates (TensorFlow's ExponentialMovingAverage),
            so early averages are not dominated by the random initialisation; the average starts at the weights
            after the first step. Without warm-up the average starts at the initial weights and decays with ``d``
            from the first step on (EDM's EMA, :math:`\bar\theta_0 = \theta_0`).
        use_buffers: average buffers too (off: buffers are copied, e.g. grids and statistics).
    """

    def __init__(self, decay: float = 0.99, warmup: bool = True, use_buffers: bool = False) -> None:
        if not 0.0 < decay < 1.0:
            from compscope.errors import ConfigError

            raise ConfigError(f"ema decay={decay}: give a decay in (0, 1), e.g. 0.99; 0 means no EMA (omit it)")
        self.decay = float(decay)
        self.warmup = bool(warmup)

        def avg_fn(avg: torch.Tensor, cur: torch.Tensor, num_averaged: torch.Tensor) -> torch.Tensor:
            n = float(num_averaged)
            d = min(self.decay, (1.0 + n) / (10.0 + n)) if self.warmup else self.decay
            return avg.lerp(cur, 1.0 - d)  # = d avg + (1 - d) cur

        super().__init__(avg_fn=avg_fn, use_buffers=use_buffers)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if not self.warmup and self._average_model is not None:
            # count the copy of the initial weights as one average, so the first update mixes them in with d
            # (a resumed run loads the saved count over this)
            self._average_model.n_averaged.fill_(1)

    def _copy_buffers(self, pl_module: L.LightningModule) -> None:
        if self._average_model is not None:
            for b_avg, b in zip(self._average_model.module.buffers(), pl_module.buffers()):
                b_avg.detach().copy_(b.detach())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if not self._use_buffers:
            self._copy_buffers(pl_module)

    def average_state_dict(self) -> dict[str, torch.Tensor] | None:
        """The averaged weights as a state dict of the Lightning module (None before fit)."""
        if self._average_model is None:
            return None
        return {k[7:]: v for k, v in self._average_model.state_dict().items() if k.startswith("module.")}


class TimeBudget(Timer):
    """A time budget over the whole run, summed across ``--resume`` (Lightning's ``Timer``, whose elapsed time is
    saved in every checkpoint).

    Args:
        seconds: the budget; ``None`` only times the run.
        interval: check the budget every ``step`` or ``epoch``.
        clock: ``wall`` (seconds on the wall clock) or ``cpu`` (CPU seconds of this process, all its threads
            together: the same budget buys the same training on a busy machine as on an idle one).

    ``restored`` tells whether a resumed run's checkpoint carried the timer's state; :meth:`complete` is True when
    :meth:`time_elapsed` covers the whole run.
    """

    restored = False
    CLOCKS = {"wall": time.monotonic, "cpu": time.process_time}

    def __init__(self, seconds: float | None = None, interval: str = "step", clock: str = "wall") -> None:
        if clock not in self.CLOCKS:
            raise ConfigError(f"trainer.budget_clock={clock!r}: use one of {tuple(self.CLOCKS)}",
                              hint="cpu counts this process's CPU seconds, wall the seconds on the clock")
        super().__init__(duration=None if seconds is None else {"seconds": max(1.0, float(seconds))},
                         interval=interval)
        self.budget_s = seconds
        self.clock = clock
        self._now = self.CLOCKS[clock]

    @property
    def state_key(self) -> str:
        return "Timer"  # the plain Timer's key, so checkpoints written with it resume here

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.restored = True

    def time_elapsed(self, stage: str = "train") -> float:
        start, end = self.start_time(stage), self.end_time(stage)
        offset = self._offset if stage == RunningStage.TRAINING else 0
        if start is None:
            return offset
        return (self._now() if end is None else end) - start + offset

    def _mark(self, table: dict, stage: RunningStage) -> None:
        table[stage] = self._now()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._mark(self._start_time, RunningStage.TRAINING)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._mark(self._end_time, RunningStage.TRAINING)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._mark(self._start_time, RunningStage.VALIDATING)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._mark(self._end_time, RunningStage.VALIDATING)

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._mark(self._start_time, RunningStage.TESTING)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._mark(self._end_time, RunningStage.TESTING)

    def complete(self, resumed: bool) -> bool:
        return not resumed or self.restored

    def fraction(self) -> float | None:
        """Share of the budget spent so far (None without a budget)."""
        if not self.budget_s:
            return None
        return min(1.0, self.time_elapsed("train") / self.budget_s)


class MetricsSink(L.Callback):
    """One JSON line and one CSV row per validation (rank 0): epoch, step, wall time summed over resumes, the
    learning rate and every logged metric. Files: ``metrics.jsonl`` and ``metrics.csv`` in the run folder.
    """

    def __init__(self, out: str | Path) -> None:
        self.jsonl = Path(out) / "metrics.jsonl"
        self.csv = Path(out) / "metrics.csv"
        self.t0 = time.time() - _last_time(self.jsonl)

    # With validation at the end of each epoch, the row is written after the epoch's training metrics are reduced
    # (on_train_epoch_end runs after that validation), so train and validation metrics of a row are of one epoch;
    # with validation every N steps, a row is written at each validation.
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.check_val_every_n_epoch is None:
            self._write(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.check_val_every_n_epoch is not None and _validated(trainer):
            self._write(trainer)

    def _write(self, trainer: L.Trainer) -> None:
        if trainer.sanity_checking or trainer.global_rank != 0:
            return
        row: dict[str, Any] = {"epoch": trainer.current_epoch, "step": trainer.global_step,
                               "time_s": round(time.time() - self.t0, 2)}
        for k, v in trainer.callback_metrics.items():
            try:
                row[k] = float(v)
            except (TypeError, ValueError):
                continue
        if trainer.optimizers:
            row["lr"] = trainer.optimizers[0].param_groups[0]["lr"]
        self.jsonl.parent.mkdir(parents=True, exist_ok=True)
        with open(self.jsonl, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        write_csv(self.jsonl, self.csv)


class RNGState(L.Callback):
    """The random-number states (torch CPU and CUDA, numpy, Python) in every checkpoint; a resumed run restores
    them when training starts, so random draws in training (noise, augmentation) continue as in an uninterrupted
    run. Fresh runs are untouched. In a multi-process run each checkpoint holds rank 0's states.
    """

    def __init__(self) -> None:
        self._restored: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        name, keys, pos, has_gauss, cached = np.random.get_state()
        version, internal, gauss = random.getstate()
        return {"torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                # tensors and plain numbers only, so a checkpoint loads with weights_only=True
                "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
                "python": [version, torch.tensor(internal, dtype=torch.int64), gauss]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = state_dict

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        s, self._restored = self._restored, None
        if not s:
            return
        torch.set_rng_state(s["torch"])
        if s["cuda"] and torch.cuda.is_available() and len(s["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(s["cuda"])
        name, keys, pos, has_gauss, cached = s["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
        version, internal, gauss = s["python"]
        random.setstate((version, tuple(int(x) for x in internal), gauss))


def _validated(trainer: L.Trainer) -> bool:
    n = trainer.check_val_every_n_epoch or 1
    return (trainer.current_epoch + 1) % n == 0 and trainer.num_val_batches and sum(trainer.num_val_batches) > 0


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``metrics.jsonl`` (a run folder or the file itself); [] when there is none."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_csv(jsonl: Path, csv_path: Path) -> None:
    """metrics.jsonl -> metrics.csv with one column per key ever seen (first-seen order), so every row lines up
    with the header even when a later epoch adds a metric."""
    rows = read_metrics(jsonl)
    cols: dict[str, None] = {}
    for r in rows:
        cols.update(dict.fromkeys(r))
    with open(csv_path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(cols))
        w.writeheader()
        w.writerows(rows)


def _last_time(jsonl: Path) -> float:
    rows = read_metrics(jsonl)
    return float(rows[-1].get("time_s", 0.0)) if rows else 0.0
