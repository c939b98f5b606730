"""EDM's evaluation protocol for property-conditional generation (Hoogeboom et al. 2022, section 5.3).

A property predictor (an EGNN regressor, as the EGNN classifier of Satorras et al. 2021 that EDM uses) is
trained on the *first* seed-42 half of QM9 train; the conditional generator on the *second* half. Generated
molecules are scored by the MAE between the predictor's output and the value they were conditioned on.
Baselines computed the same way:

* **naive (upper bound)**: the predictor on real second-half molecules against *shuffled* labels;
* **#Atoms**: a predictor that sees only the number of atoms (fitted on the first half): the per-size
  median, which is what EDM's L1-trained ``NumNodes`` regressor converges to;
* **QM9 (lower bound)**: the predictor on real second-half molecules against their true labels.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from compscope.errors import ConfigError
from compscope.nn.egnn import EGNN
from compscope.train import check_unchanged

from ._batch import NUM_TYPES, MolBatch, collate
from ._model import MoleculeGenerator
from ._qm9 import QM9, check_property

log = logging.getLogger(__name__)


class PropertyPredictor(nn.Module):
    """E(3)-invariant regressor of one QM9 property: EGNN features, sum over atoms, MLP (output in the
    property's unit).

    Args:
        prop: property name (``alpha``, ``gap``, ...). hidden, num_layers: EGNN size.
    """

    def __init__(self, prop: str, hidden: int = 64, num_layers: int = 4):
        super().__init__()
        self.prop = check_property(prop)
        self.egnn = EGNN(NUM_TYPES, hidden, out_features=hidden, num_layers=num_layers)
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 1))
        self.register_buffer("stats", torch.tensor([0.0, 1.0]))  # mean, MAD of the training targets

    def forward(self, mb: MolBatch) -> torch.Tensor:
        """Predicted property ``(G,)``."""
        onehot = torch.nn.functional.one_hot(mb.types, NUM_TYPES).to(mb.x.dtype)
        h, _ = self.egnn(onehot, mb.x, mb.edge_index)  # (N, hidden)
        pooled = torch.zeros(mb.num_graphs, h.shape[1], dtype=h.dtype, device=h.device).index_add(0, mb.batch, h)
        return self.head(pooled).squeeze(-1) * self.stats[1] + self.stats[0]

    @torch.no_grad()
    def predict(self, molecules, batch_size: int = 256) -> np.ndarray:
        """Predictions ``(M,)`` for ``(positions, element indices)`` molecules."""
        out = []
        for s in range(0, len(molecules), batch_size):
            chunk = [(torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(t)) for x, t in
                     molecules[s:s + batch_size]]
            out.append(self(collate(chunk)).numpy())
        return np.concatenate(out)


def fit_predictor(model: PropertyPredictor, qm9: QM9, rows, max_seconds: float = 600.0, max_steps: int = 10**9,
                  batch_size: int = 96, lr: float = 1e-3, seed: int = 0,
                  optimizer: torch.optim.Optimizer | None = None) -> list[float]:
    """Train on ``rows`` with an L1 loss (EDM's classifiers minimise L1) for a time / step budget.

    ``optimizer`` continues an earlier fit (its Adam state); by default a fresh ``Adam(lr)``.
    """
    rows = np.asarray(rows)
    y = qm9.properties[model.prop][rows].float()
    mean = y.mean()
    model.stats.copy_(torch.stack([mean, (y - mean).abs().mean()]))
    opt = optimizer if optimizer is not None else torch.optim.Adam(model.parameters(), lr)
    rng = np.random.default_rng(seed)
    losses, t0, step = [], time.perf_counter(), 0
    model.train()
    while step < max_steps and time.perf_counter() - t0 < max_seconds:
        idx = rng.choice(len(rows), size=min(batch_size, len(rows)), replace=False)
        mb = collate(qm9.molecules(rows[idx]))
        loss = (model(mb) - y[idx]).abs().mean() / model.stats[1]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        step += 1
    return losses


PREDICTOR_KIND = "compscope.generate property predictor"


def train_predictor(path: str | Path, prop: str, qm9: QM9, rows, max_seconds: float, hidden: int = 64,
                    num_layers: int = 4, batch_size: int = 96, lr: float = 1e-3, seed: int = 0,
                    max_steps: int = 10**9, save_every_seconds: float = 300.0) -> tuple[PropertyPredictor, dict]:
    """Train a :class:`PropertyPredictor` on ``rows`` until it has trained ``max_seconds`` (or ``max_steps``) in
    total, resuming from ``path`` if that exists (the budget sums over resumes, like a generator's
    ``trainer.max_time_minutes``); ``path`` (weights, Adam state, progress) is rewritten every ``save_every_seconds``.

    Returns the predictor in eval mode and its progress ``{"train_seconds", "steps", "last_loss"}``
    (``last_loss``: mean L1 in MAD units over the last 50 steps). Resuming with other settings or rows is refused
    (:class:`~compscope.errors.ResumeError`, naming each changed setting).
    """
    path = Path(path)
    rows = np.asarray(rows, dtype=np.int64)
    settings = {"prop": check_property(prop), "hidden": hidden, "num_layers": num_layers,
                "batch_size": batch_size, "lr": lr, "seed": seed,
                "rows_sha1": hashlib.sha1(rows.tobytes()).hexdigest()}
    model = PropertyPredictor(prop, hidden, num_layers)
    opt = torch.optim.Adam(model.parameters(), lr)
    progress = {"train_seconds": 0.0, "steps": 0, "last_loss": None}
    if path.exists():
        d = torch.load(path, weights_only=True)
        if not isinstance(d, dict) or d.get("kind") != PREDICTOR_KIND:
            raise ConfigError(f"{path} is not a property-predictor checkpoint",
                              hint="delete it or choose another path")
        check_unchanged(d["settings"], settings, where=str(path))  # the shared resume guard
        model.load_state_dict(d["state_dict"])
        opt.load_state_dict(d["optimizer"])
        progress = d["progress"]
    while progress["train_seconds"] < max_seconds and progress["steps"] < max_steps:
        t0 = time.perf_counter()
        # reseeded by the steps done, so a resumed fit draws new batches instead of replaying the first ones
        losses = fit_predictor(model, qm9, rows, min(max_seconds - progress["train_seconds"], save_every_seconds),
                               max_steps - progress["steps"], batch_size, lr, seed + progress["steps"], opt)
        progress["train_seconds"] += time.perf_counter() - t0
        progress["steps"] += len(losses)
        if losses:
            progress["last_loss"] = float(np.mean(losses[-50:]))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save({"kind": PREDICTOR_KIND, "settings": settings, "state_dict": model.state_dict(),
                    "optimizer": opt.state_dict(), "progress": progress}, tmp)
        os.replace(tmp, path)
        log.info("property predictor %s: %d steps, %.0f s, loss %s", prop, progress["steps"],
                 progress["train_seconds"], progress["last_loss"])
    return model.eval(), progress


def conditional_mae(generator: MoleculeGenerator, predictor: PropertyPredictor, qm9: QM9, rows, n: int,
                    seed: int = 0, batch_size: int = 256, return_molecules: bool = False) -> dict:
    """Sample ``n`` molecules conditioned on (size, value) pairs drawn from ``rows`` (EDM draws the context
    jointly with the molecule size from the generator's training data); MAE of the predictor vs the targets.

    Returns ``{"mae", "n", "sampling_seconds"}``, plus ``"molecules"`` with ``return_molecules``."""
    if generator.condition != predictor.prop:
        raise ValueError(f"generator conditions on {generator.condition!r}, predictor predicts {predictor.prop!r}")
    rng = np.random.default_rng(seed)
    pick = np.asarray(rows)[rng.choice(len(rows), size=n, replace=True)]
    sizes = qm9.num_atoms[pick]
    targets = qm9.properties[predictor.prop][pick].float()
    mols, seconds = generator.sample(n, condition=targets, sizes=sizes, batch_size=batch_size, seed=seed)
    pred = predictor.predict(mols)
    out = {"mae": float(np.abs(pred - targets.numpy()).mean()), "n": n, "sampling_seconds": seconds}
    return {**out, "molecules": mols} if return_molecules else out


def baselines(predictor: PropertyPredictor, qm9: QM9, fit_rows, eval_rows, seed: int = 0) -> dict:
    """EDM's naive (shuffled labels), #Atoms and QM9 (lower bound) MAEs on ``eval_rows``."""
    prop = qm9.properties[predictor.prop]
    fit_rows, eval_rows = np.asarray(fit_rows), np.asarray(eval_rows)
    y = prop[eval_rows].numpy()
    pred = predictor.predict([(x.numpy(), t.numpy()) for x, t in qm9.molecules(eval_rows)])
    shuffled = np.random.default_rng(seed).permutation(y)
    n_fit, n_eval = qm9.num_atoms[fit_rows].numpy(), qm9.num_atoms[eval_rows].numpy()
    p_fit = prop[fit_rows].numpy()
    # the L1-optimal prediction from the size alone (EDM trains its #Atoms regressor with an L1 loss)
    size_median = {int(k): np.median(p_fit[n_fit == k]) for k in np.unique(n_fit)}
    by_size = np.array([size_median.get(int(k), np.median(p_fit)) for k in n_eval])
    return {"naive": float(np.abs(pred - shuffled).mean()), "n_atoms": float(np.abs(by_size - y).mean()),
            "qm9": float(np.abs(pred - y).mean()), "n": len(eval_rows)}
