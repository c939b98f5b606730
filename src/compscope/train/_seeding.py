"""Randomness that a resumed run replays exactly: an epoch-seeded sampler and per-batch seeding of the RNGs.

A run resumed from an end-of-epoch checkpoint redoes the next epoch from its start. For it to redo the *same*
epoch, every random draw of that epoch must depend only on the seed and where the run is, not on how many draws
happened before in this process: :class:`EpochSeededSampler` does so for the order of the training data,
:class:`EpochSeed` for the draws a task makes in its ``training_step`` (torch, numpy and Python's ``random``).
"""

from __future__ import annotations

import random

import lightning as L
import numpy as np
import torch
from torch.utils.data import Sampler

__all__ = ["EpochSeed", "EpochSeededSampler", "epoch_seed"]


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch: distinct for every ``(seed, epoch)`` pair in practice, and below 2**31."""
    return (int(seed) * 100_003 + int(epoch)) % (2**31 - 1)


class EpochSeededSampler(Sampler[int]):
    """Shuffles ``range(n)`` with a generator seeded by ``(seed, epoch)`` so a resumed run sees the same order.

    Lightning calls :meth:`set_epoch` at the start of every epoch (also through its distributed wrapper, which
    then splits this order between the processes).

    Examples:
        >>> s = EpochSeededSampler(5, seed=1)
        >>> s.set_epoch(3)
        >>> order = list(s)
        >>> s.set_epoch(0); _ = list(s); s.set_epoch(3)
        >>> list(s) == order, sorted(order)
        (True, [0, 1, 2, 3, 4])
    """

    def __init__(self, n: int, seed: int, shuffle: bool = True):
        self.n, self.seed, self.shuffle, self.epoch = int(n), int(seed), bool(shuffle), 0

    def set_epoch(self, epoch: int) -> None:  # called by Lightning at every epoch start
        self.epoch = int(epoch)

    def __iter__(self):
        if not self.shuffle:
            return iter(range(self.n))
        g = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


class EpochSeed(L.Callback):
    """Seeds torch, numpy and Python's ``random`` from ``(seed, rank, epoch, batch)`` before every training batch,
    so the random draws of a training step (random windows, noise levels, augmentation) repeat exactly when a run
    resumes from a checkpoint.

    Per batch, not per epoch: when Lightning creates the data iterator (which draws from torch's generator)
    differs between a fresh epoch and the first epoch after a resume, so only a seed set after the batch is
    fetched makes the step's draws independent of that.
    """

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        s = int(np.random.SeedSequence([self.seed, trainer.global_rank, trainer.current_epoch,
                                        batch_idx]).generate_state(1)[0]) & 0x7FFFFFFF
        torch.manual_seed(s)
        np.random.seed(s)
        random.seed(s)
