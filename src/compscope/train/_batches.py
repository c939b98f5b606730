"""Shuffled training batches as a function of the optimiser step, so a resumed run continues the same sequence.

Lightning cannot continue a plain ``DataLoader`` in the middle of an epoch: a run resumed at step ``k`` would
start a fresh epoch order (or replay the first one). :class:`StepBatches` makes the batch of every step a pure
function of ``(seed, step)``; the loader that :func:`step_loader` builds reads the step from the trainer each time
an epoch starts, so a run interrupted at step ``k`` and resumed draws exactly the batches an uninterrupted run
draws from step ``k`` on. Together with :class:`~compscope.train.RNGState` (random-number states in every
checkpoint) a resumed run continues bit for bit.

The order is the one a Lightning trainer draws from ``DataLoader(shuffle=True,
generator=torch.Generator().manual_seed(seed))`` (one process), so a task that switches to it keeps its data order.

Examples:
    >>> batches = StepBatches(10, 4, seed=0)
    >>> len(batches), [len(b) for b in batches]
    (2, [4, 4])
    >>> later = StepBatches(10, 4, seed=0, step=3)     # resumed at step 3: the second batch of epoch 1
    >>> next(iter(later)) == list(StepBatches(10, 4, seed=0, step=2))[1]
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from compscope.errors import ConfigError

__all__ = ["StepBatches", "StepLoader", "step_loader"]


class StepBatches(Sampler[list[int]]):
    """Batch sampler whose batch at optimiser step ``s`` depends only on ``(seed, s)``.

    Each ``iter()`` yields the batches from the current step to the end of that step's epoch (a whole epoch when
    the step is at an epoch boundary), as Lightning asks for one epoch per ``iter()``.

    Args:
        n: dataset size.
        batch_size: indices per batch.
        seed: the shuffle seed.
        step: the current optimiser step, or a function returning it (e.g. ``lambda: trainer.global_step``).
        drop_last: drop the last incomplete batch of every epoch.

    Notes:
        One batch is one optimiser step (no gradient accumulation). Epoch ``e``'s order is the permutation a
        ``torch.Generator`` seeded with ``seed`` gives after ``e`` epochs of ``DataLoader(shuffle=True)`` draws;
        jumping to a late epoch replays the earlier permutations once (milliseconds per epoch for 10^5 items).
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0, step: int | Callable[[], int] = 0,
                 drop_last: bool = True) -> None:
        if n < 1 or batch_size < 1:
            raise ConfigError(f"StepBatches: n={n} and batch_size={batch_size} must be positive")
        if drop_last and batch_size > n:
            raise ConfigError(f"batch_size={batch_size} is larger than the {n} training items, so every batch is "
                              "dropped", hint="lower the batch size or use more training data")
        self.n, self.batch_size, self.seed, self.drop_last = int(n), int(batch_size), int(seed), drop_last
        self.step = step
        self._epoch = 0  # the epoch whose start state the generator holds
        self._gen = torch.Generator().manual_seed(self.seed)

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else math.ceil(self.n / self.batch_size)

    def current_step(self) -> int:
        return int(self.step() if callable(self.step) else self.step)

    def permutation(self, epoch: int) -> list[int]:
        """The order of epoch ``epoch``."""
        if epoch < self._epoch:
            self._gen.manual_seed(self.seed)
            self._epoch = 0
        while self._epoch < epoch:
            self._draw()
            self._epoch += 1
        state = self._gen.get_state()
        perm = self._draw()
        self._gen.set_state(state)
        return perm

    def _draw(self) -> list[int]:
        # a shuffling DataLoader's draws per epoch from its generator, as Lightning iterates it (len(loader)
        # batches, so the sampler is never run out): the base seed of the iterator, then the permutation
        torch.empty((), dtype=torch.int64).random_(generator=self._gen)
        return torch.randperm(self.n, generator=self._gen).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        per_epoch = len(self)
        epoch, first = divmod(self.current_step(), per_epoch)
        perm = self.permutation(epoch)
        for b in range(first, per_epoch):
            yield perm[b * self.batch_size:(b + 1) * self.batch_size]


class StepLoader(DataLoader):
    """A ``DataLoader`` over :class:`StepBatches`. It resumes by itself (the position is the trainer's step, which
    the checkpoint holds), and says so to Lightning through ``state_dict``/``load_state_dict``."""

    def state_dict(self) -> dict[str, int]:
        return {"step": self.batch_sampler.current_step()}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        """Nothing to restore: the next epoch starts at the restored trainer's step."""


def step_loader(dataset: Dataset, batch_size: int, *, seed: int = 0, trainer: Any = None,
                drop_last: bool = True, **kwargs: Any) -> StepLoader:
    """A training ``DataLoader`` over :class:`StepBatches` that starts at ``trainer.global_step`` (0 without a
    trainer), for a ``LightningDataModule.train_dataloader``.

    Args:
        dataset: the training set.
        batch_size: items per batch.
        seed: the shuffle seed.
        trainer: the Lightning trainer (``self.trainer`` of a data module); its step is read at each epoch start.
        drop_last: drop the last incomplete batch.
        **kwargs: other ``DataLoader`` arguments (``collate_fn``, ``num_workers``, ...).

    The loader gets its own generator for worker seeds, so creating its iterator draws nothing from torch's
    global random state (which the model's noise uses).
    """
    step: int | Callable[[], int] = 0
    if trainer is not None:
        def step() -> int:
            return int(trainer.global_step)
    sampler = StepBatches(len(dataset), batch_size, seed=seed, step=step, drop_last=drop_last)
    return StepLoader(dataset, batch_sampler=sampler, generator=torch.Generator().manual_seed(seed), **kwargs)
