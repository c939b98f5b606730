"""Force-field data: extxyz files -> graphs, seeded train/valid split, statistics for the model."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from compscope.data import AtomicGraph, load_graphs, read_extxyz
from compscope.errors import ConfigError
from compscope.train import EpochSeededSampler

log = logging.getLogger(__name__)


@dataclass
class DataStatistics:
    species: list[int]
    atomic_energies: list[float]  # eV per species
    avg_num_neighbors: float
    force_rms: float  # eV/Å
    mean_interaction_energy: float = 0.0  # eV per atom: mean of (E - sum of E0s) / atoms over the training frames


def least_squares_e0(graphs: list[AtomicGraph], species: list[int]) -> np.ndarray:
    """Per-element reference energies from a least-squares fit of total energies to element counts."""
    counts = np.zeros((len(graphs), len(species)))
    energies = np.zeros(len(graphs))
    for i, g in enumerate(graphs):
        z = g.atomic_numbers.numpy()
        counts[i] = [np.sum(z == s) for s in species]
        energies[i] = float(g.energy)
    e0, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    return e0


def isolated_atom_e0(path: str | Path, species: list[int], energy_key: str = "energy") -> np.ndarray:
    """Per-element reference energies (eV) read from an extxyz of isolated atoms (one atom per frame), in the
    order of ``species``."""
    frames = read_extxyz(path)
    table = {}
    for a in frames:
        if len(a) == 1:
            e = a.info.get(energy_key)
            if e is None and a.calc is not None:
                e = a.calc.results.get("energy")
            table[int(a.numbers[0])] = float(e)
    missing = [z for z in species if z not in table]
    if missing:
        raise ConfigError(f"{path}: no isolated-atom energy for atomic numbers {missing}",
                          hint="add a one-atom frame per element, or set data.init_args.e0: least_squares")
    return np.array([table[z] for z in species])


class ForceFieldData(L.LightningDataModule):
    """Training data for a force field (constructor arguments = the config's ``data`` section).

    Args:
        train: extxyz file with reference energies and forces.
        valid: optional separate validation file; otherwise ``valid_fraction``/``n_valid`` of ``train``.
        test: optional test file, evaluated at the end of training.
        n_train: use only this many training frames (after the seeded shuffle); ``None`` = all.
        n_valid: validation frames taken from ``train`` when ``valid`` is not given.
        valid_fraction: used when neither ``valid`` nor ``n_valid`` is given.
        energy_key / forces_key: label keys in the files (e.g. ``REF_energy``).
        e0: ``"least_squares"`` or a path to an extxyz of isolated atoms (one atom per frame).
        cutoff: neighbour-list radius in Å. In a training config it defaults to the model's ``r_max`` (the one
            place the cutoff is set); it may be larger, never smaller.
        batch_size / valid_batch_size: graphs per batch.
        seed: split and shuffle seed (in a training config: the top-level ``seed`` unless set).
        shuffle: shuffle training batches every epoch.
    """

    def __init__(
        self,
        train: str,
        valid: str | None = None,
        test: str | None = None,
        n_train: int | None = None,
        n_valid: int | None = None,
        valid_fraction: float = 0.05,
        energy_key: str = "energy",
        forces_key: str = "forces",
        e0: str = "least_squares",
        cutoff: float | None = None,
        batch_size: int = 5,
        valid_batch_size: int = 20,
        seed: int = 0,
        shuffle: bool = True,
    ):
        super().__init__()
        self.train_path, self.valid_path, self.test_path = train, valid, test
        self.n_train, self.n_valid, self.valid_fraction = n_train, n_valid, valid_fraction
        self.energy_key, self.forces_key, self.e0 = energy_key, forces_key, e0
        if cutoff is None or cutoff <= 0:
            raise ConfigError(f"data cutoff={cutoff}: give the neighbour-list radius in Å",
                              hint="in a training config it defaults to model.init_args.r_max; omit it there")
        self.cutoff, self.batch_size, self.valid_batch_size = float(cutoff), batch_size, valid_batch_size
        self.seed, self.shuffle = seed, shuffle
        self.train_set: list[AtomicGraph] = []
        self.valid_set: list[AtomicGraph] = []
        self.test_set: list[AtomicGraph] = []
        self._loaded = False

    def _load(self, path: str) -> list[AtomicGraph]:
        return load_graphs(path, self.cutoff, energy_key=self.energy_key, forces_key=self.forces_key,
                           require_labels=True)

    def load(self) -> None:
        if self._loaded:
            return
        graphs = self._load(self.train_path)
        perm = np.random.default_rng(self.seed).permutation(len(graphs))
        if self.valid_path is not None:
            valid = self._load(self.valid_path)
            train_idx = perm
        else:
            n_valid = self.n_valid
            if n_valid is None:
                n_valid = max(1, int(round(self.valid_fraction * len(graphs))))
            if n_valid >= len(graphs):
                raise ConfigError(f"{self.train_path}: {len(graphs)} frames cannot give {n_valid} validation frames",
                                  hint="lower data.init_args.n_valid or give a separate 'valid' file")
            valid = [graphs[i] for i in perm[:n_valid]]
            train_idx = perm[n_valid:]
        if self.n_train is not None:
            if self.n_train > len(train_idx):
                raise ConfigError(f"n_train={self.n_train} but only {len(train_idx)} training frames are available",
                                  hint="lower data.init_args.n_train (or omit it to use every frame)")
            train_idx = train_idx[: self.n_train]
        self.train_set = [graphs[i] for i in train_idx]
        self.valid_set = valid
        self.test_set = self._load(self.test_path) if self.test_path else []
        self._loaded = True
        log.info("data: %d train, %d valid, %d test frames", len(self.train_set), len(self.valid_set),
                 len(self.test_set))

    def statistics(self) -> DataStatistics:
        """Species, E0s, average neighbour count and force RMS of the training frames (the model's
        data-derived constructor arguments)."""
        self.load()
        species = sorted({int(z) for g in self.train_set for z in g.atomic_numbers.tolist()})
        if self.e0 == "least_squares":
            e0 = least_squares_e0(self.train_set, species)
        else:
            e0 = isolated_atom_e0(self.e0, species, self.energy_key)
        n_edges = sum(g.num_edges for g in self.train_set)
        n_atoms = sum(g.num_nodes for g in self.train_set)
        forces = torch.cat([g.forces for g in self.train_set])
        e0_of = dict(zip(species, (float(x) for x in e0)))
        per_atom = [(float(g.energy.sum()) - sum(e0_of[int(z)] for z in g.atomic_numbers.tolist())) / g.num_nodes
                    for g in self.train_set]
        return DataStatistics(species, [float(x) for x in e0], n_edges / n_atoms,
                              float(forces.pow(2).mean().sqrt()), float(np.mean(per_atom)))

    def setup(self, stage: str | None = None) -> None:
        self.load()

    def _loader(self, data, batch_size, shuffle):
        sampler = EpochSeededSampler(len(data), self.seed, shuffle=shuffle)
        return DataLoader(data, batch_size=batch_size, sampler=sampler, collate_fn=AtomicGraph.collate,
                          num_workers=0)

    def train_dataloader(self):
        return self._loader(self.train_set, self.batch_size, self.shuffle)

    def val_dataloader(self):
        return self._loader(self.valid_set, self.valid_batch_size, False)

    def test_dataloader(self):
        return self._loader(self.test_set or self.valid_set, self.valid_batch_size, False)
