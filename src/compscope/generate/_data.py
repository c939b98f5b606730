"""Lightning data module over the cached QM9 tensors, EDM splits."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader

from compscope.errors import ConfigError
from compscope.train import step_loader

from ._batch import collate
from ._qm9 import QM9, check_property, edm_splits, load_qm9

SPLITS = ("train", "valid", "test", "first_half", "second_half")


class QM9Molecules(torch.utils.data.Dataset):
    """Rows of one QM9 split, each ``(positions (n, 3), types (n,), property or nan)``."""

    def __init__(self, qm9: QM9, rows, prop: str | None = None):
        self.q, self.rows = qm9, torch.as_tensor(rows).long()
        self.prop = qm9.properties[prop] if prop else None

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        m = int(self.rows[i])
        x, t = self.q.molecule(m)
        p = float("nan") if self.prop is None else float(self.prop[m])
        return x, t, p


class QM9DataModule(L.LightningDataModule):
    """QM9 with EDM's splits for generator training.

    Args:
        split: training split: ``train`` (unconditional EDM) or ``second_half`` (conditional EDM; the
            ``first_half`` trains the property classifier).
        condition: property to return as context (must match the model's ``condition``).
        batch_size: molecules per batch (EDM: 64).
        max_molecules: use only the first rows of the split (smoke tests).
        val_molecules: validation molecules (from EDM's valid split).
        path: data directory holding ``qm9/`` (default ``compscope.data.data_dir()``).
        seed: shuffle seed (in a training config: the top-level ``seed`` unless set); batches are a function of
            the step (:func:`compscope.train.step_loader`), so a resumed run continues the same sequence.
    """

    def __init__(self, split: str = "train", condition: str | None = None, batch_size: int = 64,
                 max_molecules: int | None = None, val_molecules: int = 512, path: str | None = None,
                 seed: int = 0):
        super().__init__()
        if split not in SPLITS:
            raise ConfigError(f"unknown split {split!r}", hint=f"choose one of {SPLITS}")
        self.split, self.condition = split, check_property(condition) if condition else None
        self.batch_size, self.max_molecules, self.val_molecules = batch_size, max_molecules, val_molecules
        self.path, self.seed = path, seed
        self.qm9: QM9 | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.qm9 is None:
            self.qm9 = load_qm9(self.path)
            sp = edm_splits()
            rows = sp[self.split][: self.max_molecules] if self.max_molecules else sp[self.split]
            self.train_set = QM9Molecules(self.qm9, rows, self.condition)
            self.val_set = QM9Molecules(self.qm9, sp["valid"][: self.val_molecules], self.condition)

    def train_statistics(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Atom counts ``(M,)`` and property values ``(M,)`` of the training rows (for the model's buffers)."""
        self.setup()
        rows = self.train_set.rows
        prop = self.qm9.properties[self.condition][rows] if self.condition else None
        return self.qm9.num_atoms[rows], prop

    def _collate(self, items):
        mols = [(x, t) for x, t, _ in items]
        ctx = torch.tensor([p for *_, p in items], dtype=torch.float32) if self.condition else None
        return collate(mols, context=ctx)

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        return batch.to(device)

    def train_dataloader(self):
        return step_loader(self.train_set, self.batch_size, seed=self.seed, trainer=self.trainer,
                           collate_fn=self._collate)

    def val_dataloader(self):
        # its own generator: validating draws nothing from the global random state that training noise uses
        return DataLoader(self.val_set, 256, shuffle=False, collate_fn=self._collate,
                          generator=torch.Generator().manual_seed(0))
