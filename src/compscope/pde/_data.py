"""The PDE data as a Lightning ``DataModule``: seeded train/valid splits, generated or read from the cache.

The loaders serve whole trajectories; the solver picks its random windows from them.

Shapes: a batch is ``(u (B, nt, nx), cond (B, P))`` with P the equation's coefficients.
"""

from __future__ import annotations

import os

import lightning as L
import numpy as np
import torch

from compscope.train import EpochSeededSampler

from ._equations import check_resolution, get_equation
from ._generate import generate, load_split

__all__ = ["PDEDataModule", "RepeatedTrajectories"]


class RepeatedTrajectories(torch.utils.data.Dataset):
    """Each trajectory ``repeat`` times per epoch (the solver draws a new random window each time).

    Args:
        u: (n, nt, nx) trajectories.
        cond: (n, P) PDE coefficients.
        repeat: passes per epoch.
    """

    def __init__(self, u: np.ndarray, cond: np.ndarray, repeat: int = 1) -> None:
        self.u = torch.tensor(u, dtype=torch.float32)
        self.cond = torch.tensor(cond, dtype=torch.float32)
        self.repeat = int(repeat)

    def __len__(self) -> int:
        return len(self.u) * self.repeat

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = i % len(self.u)
        return self.u[i], self.cond[i]


class PDEDataModule(L.LightningDataModule):
    """Train and validation splits of one equation at one resolution (the ``data`` section of a PDE config).

    Args:
        equation: ``E1``..``WE3`` (:data:`compscope.pde.EQUATIONS`).
        nx: spatial resolution.
        n_train: training trajectories (the paper: 2048).
        n_valid: validation trajectories (the paper: 128).
        seed: seed of the generated splits (a config without it uses its top-level ``seed``).
        cache: data cache folder (default ``$COMPSCOPE_PDE_CACHE`` or the user cache).
        batch_size: trajectories per optimiser step and process (with DDP the global batch is
            ``devices * batch_size``).
        repeat: random windows per training trajectory per epoch (250 = the authors' epoch).
        workers: processes that generate missing data (default: all cores).
        progress: progress bar while generating.

    Data are generated in :meth:`prepare_data` (once per node, so DDP processes do not race on the cache) and
    read in :meth:`setup`.
    """

    def __init__(self, equation: str, nx: int, n_train: int = 2048, n_valid: int = 128, seed: int = 0,
                 cache: str | os.PathLike | None = None, batch_size: int = 16, repeat: int = 1,
                 workers: int | None = None, progress: bool = True) -> None:
        super().__init__()
        self.eq = get_equation(equation)
        self.nx = check_resolution(self.eq, nx)
        self.n_train, self.n_valid, self.seed = int(n_train), int(n_valid), int(seed)
        self.cache, self.workers, self.progress = cache, workers, progress
        self.batch_size, self.repeat = int(batch_size), int(repeat)
        self.train_set: RepeatedTrajectories | None = None
        self.valid_set: RepeatedTrajectories | None = None

    def _path(self, split: str, n: int):
        return generate(self.eq.name, split, n, self.seed, self.cache, self.workers, progress=self.progress)

    def prepare_data(self) -> None:
        self._path("train", self.n_train)
        self._path("valid", self.n_valid)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            tr = load_split(self._path("train", self.n_train), self.nx)
            va = load_split(self._path("valid", self.n_valid), self.nx)
            self.train_set = RepeatedTrajectories(tr["u"], tr["cond"], self.repeat)
            self.valid_set = RepeatedTrajectories(va["u"], va["cond"])

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        n = len(self.train_set)
        # shuffled by (seed, epoch): a run resumed from an end-of-epoch checkpoint sees the same order
        return torch.utils.data.DataLoader(self.train_set, batch_size=self.batch_size,
                                           sampler=EpochSeededSampler(n, self.seed), drop_last=n > self.batch_size)

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(self.valid_set, batch_size=max(self.batch_size, 32))
