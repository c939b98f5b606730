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

import logging
import time

import numpy as np
import torch
from torch import nn

from compscope.nn.egnn import EGNN

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
                  batch_size: int = 96, lr: float = 1e-3, seed: int = 0) -> list[float]:
    """Train on ``rows`` with an L1 loss (EDM's classifiers minimise L1) for a time / step budget."""
    rows = np.asarray(rows)
    y = qm9.properties[model.prop][rows].float()
    mean = y.mean()
    model.stats.copy_(torch.stack([mean, (y - mean).abs().mean()]))
    opt = torch.optim.Adam(model.parameters(), lr)
    rng = np.random.default_rng(seed)
    losses, t0, step = [], time.perf_counter(), 0
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


def conditional_mae(generator: MoleculeGenerator, predictor: PropertyPredictor, qm9: QM9, rows, n: int,
                    seed: int = 0, batch_size: int = 256) -> dict:
    """Sample ``n`` molecules conditioned on (size, value) pairs drawn from ``rows`` (EDM draws the context
    jointly with the molecule size from the generator's training data); MAE of the predictor vs the targets."""
    if generator.condition != predictor.prop:
        raise ValueError(f"generator conditions on {generator.condition!r}, predictor predicts {predictor.prop!r}")
    rng = np.random.default_rng(seed)
    pick = np.asarray(rows)[rng.choice(len(rows), size=n, replace=True)]
    sizes = qm9.num_atoms[pick]
    targets = qm9.properties[predictor.prop][pick].float()
    mols, seconds = generator.sample(n, condition=targets, sizes=sizes, batch_size=batch_size, seed=seed)
    pred = predictor.predict(mols)
    return {"mae": float(np.abs(pred - targets.numpy()).mean()), "n": n, "sampling_seconds": seconds}


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
