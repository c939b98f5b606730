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
from collections.abc import Callable, Iterator
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Sampler

from compscope.errors import ConfigError
from compscope.models.artifacts import ArtifactError, read_model_file
from compscope.nn.egnn import EGNN
from compscope.train import RunDir, StepLoader, TrainerConfig, code_versions, fit, read_metrics

from ._batch import NUM_TYPES, MolBatch, collate
from ._data import QM9Molecules
from ._model import MoleculeGenerator
from ._qm9 import QM9, check_property, edm_splits

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


class DrawnBatches(Sampler[list[int]]):
    """Batch sampler drawing every batch independently: batch ``s`` is the ``s``-th
    ``numpy.random.default_rng(seed).choice(n, batch_size, replace=False)`` (molecules distinct within a batch,
    drawn with replacement across batches), so it is a function of ``(seed, step)`` and a resumed run continues the
    sequence. Each ``iter()`` yields the batches from the current step to the end of its "epoch" of ``n //
    batch_size`` steps (Lightning counts epochs; nothing else depends on them).

    Args:
        n: training molecules. batch_size: molecules per batch (at most ``n``).
        seed: the draw seed. step: the current optimiser step, or a function returning it.
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0, step: int | Callable[[], int] = 0) -> None:
        if n < 1 or batch_size < 1:
            raise ConfigError(f"property predictor: {n} training rows and batch_size={batch_size} must be positive")
        self.n, self.batch_size, self.seed, self.step = int(n), min(int(batch_size), int(n)), int(seed), step
        self._rng, self._drawn = np.random.default_rng(self.seed), 0

    def __len__(self) -> int:
        return max(1, self.n // self.batch_size)

    def current_step(self) -> int:
        return int(self.step() if callable(self.step) else self.step)

    def batch(self, step: int) -> list[int]:
        """The indices of step ``step`` (replays the draws from the seed when asked for an earlier step)."""
        if step < self._drawn:
            self._rng, self._drawn = np.random.default_rng(self.seed), 0
        while self._drawn < step:
            self._rng.choice(self.n, size=self.batch_size, replace=False)
            self._drawn += 1
        self._drawn += 1
        return self._rng.choice(self.n, size=self.batch_size, replace=False).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        s = self.current_step()
        for step in range(s, (s // len(self) + 1) * len(self)):
            yield self.batch(step)


class PredictorData(L.LightningDataModule):
    """QM9 rows for a property predictor: training batches from :class:`DrawnBatches` (a function of the step),
    validation over ``val_rows`` in order. A batch is ``(MolBatch, targets (G,))``.

    Args:
        qm9: the data set. prop: the property. rows, val_rows: training and validation rows.
        batch_size: molecules per training batch. seed: the draw seed.
    """

    def __init__(self, qm9: QM9, prop: str, rows, val_rows, batch_size: int = 96, seed: int = 0) -> None:
        super().__init__()
        self.prop, self.batch_size, self.seed = check_property(prop), batch_size, seed
        self.train_set = QM9Molecules(qm9, np.asarray(rows, dtype=np.int64), self.prop)
        self.val_set = QM9Molecules(qm9, np.asarray(val_rows, dtype=np.int64), self.prop)

    def train_targets(self) -> torch.Tensor:
        """The property of every training row (float32), for the predictor's mean / MAD."""
        return self.train_set.prop[self.train_set.rows].float()

    @staticmethod
    def _collate(items) -> tuple[MolBatch, torch.Tensor]:
        return collate([(x, t) for x, t, _ in items]), torch.tensor([p for *_, p in items], dtype=torch.float32)

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        mb, y = batch
        return mb.to(device), y.to(device)

    def train_dataloader(self):
        trainer = self.trainer
        sampler = DrawnBatches(len(self.train_set), self.batch_size, self.seed,
                               step=(lambda: trainer.global_step) if trainer is not None else 0)
        return StepLoader(self.train_set, batch_sampler=sampler, collate_fn=self._collate,
                          generator=torch.Generator().manual_seed(self.seed))

    def val_dataloader(self):
        return DataLoader(self.val_set, 256, shuffle=False, collate_fn=self._collate,
                          generator=torch.Generator().manual_seed(0))


class PredictorModule(L.LightningModule):
    """The predictor's Lightning module: L1 loss in units of the training targets' MAD (EDM's classifiers
    minimise L1), ``Adam(lr)``; validation logs ``val_mae`` (property units).

    Args:
        prop: the property. hidden, num_layers: EGNN size. lr: Adam's learning rate.
    """

    def __init__(self, prop: str, hidden: int = 64, num_layers: int = 4, lr: float = 1e-3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = PropertyPredictor(prop, hidden, num_layers)
        self.recent_losses: list[float] = []  # the last 50 training losses (kept in checkpoints)

    def training_step(self, batch, batch_idx):
        mb, y = batch
        loss = (self.model(mb) - y).abs().mean() / self.model.stats[1]
        self.recent_losses = (self.recent_losses + [loss.item()])[-50:]
        self.log("train_loss", loss, batch_size=mb.num_graphs)
        return loss

    def validation_step(self, batch, batch_idx):
        mb, y = batch
        self.log("val_mae", (self.model(mb) - y).abs().mean(), batch_size=mb.num_graphs)

    def configure_optimizers(self):
        return torch.optim.Adam(self.model.parameters(), self.hparams.lr)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["recent_losses"] = list(self.recent_losses)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.recent_losses = list(checkpoint.get("recent_losses", []))


PREDICTOR_KIND = "compscope.generate property predictor"
# what a resumed predictor run may change: the budgets and when it checkpoints
RESUME_SAFE = ("trainer",)


def train_predictor(out: str | Path, prop: str, qm9: QM9, rows, max_seconds: float, hidden: int = 64,
                    num_layers: int = 4, batch_size: int = 96, lr: float = 1e-3, seed: int = 0,
                    max_steps: int = 10**9, save_every_seconds: float = 300.0, val_rows=None,
                    val_every: int = 1000) -> tuple[PropertyPredictor, dict]:
    """Train a :class:`PropertyPredictor` on ``rows`` with :func:`compscope.train.fit` until it has trained
    ``max_seconds`` (or ``max_steps``) in total, in the run folder ``out`` (config.yaml, versions.json,
    checkpoints/, metrics.jsonl with ``val_mae`` every ``val_every`` steps, the exported ``model.pt``).

    A folder holding a run is resumed exactly (same batches; the budget sums over resumes, like a generator's
    ``trainer.max_time_minutes``); ``checkpoints/last.ckpt`` is rewritten every ``save_every_seconds`` and at the
    end. The initial weights come from ``seed`` (the caller's random state is left alone).

    Args:
        val_rows: validation rows (default: the first 1000 of EDM's valid split).

    Returns the predictor in eval mode and its progress ``{"train_seconds", "steps", "last_loss", "val_mae"}``
    (``last_loss``: mean L1 in MAD units over the last 50 steps). Resuming with other settings or rows is refused
    (:class:`~compscope.errors.ResumeError`, naming each changed setting).
    """
    out = Path(out)
    if out.is_file():
        raise ConfigError(f"{out} is a file: train_predictor now trains into a run folder",
                          hint="load an old predictor.pt with compscope.generate.load_predictor, and pass a folder "
                               "(e.g. its parent / 'predictor') to train")
    prop = check_property(prop)
    rows = np.asarray(rows, dtype=np.int64)
    val_rows = np.asarray(edm_splits()["valid"][:1000] if val_rows is None else val_rows, dtype=np.int64)
    trainer = TrainerConfig(max_epochs=-1, max_steps=int(max_steps), max_time_minutes=max_seconds / 60.0,
                            monitor="val_mae", val_check_interval=int(val_every),
                            checkpoint_minutes=save_every_seconds / 60.0, log_every_n_steps=50,
                            progress_bar=False)
    config = {"prop": prop, "hidden": hidden, "num_layers": num_layers, "batch_size": batch_size, "lr": lr,
              "seed": seed, "rows_sha1": hashlib.sha1(rows.tobytes()).hexdigest(), "n_rows": len(rows),
              "val_rows_sha1": hashlib.sha1(val_rows.tobytes()).hexdigest(), "trainer": trainer.as_dict()}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = PredictorModule(prop, hidden, num_layers, lr)
    data = PredictorData(qm9, prop, rows, val_rows, batch_size, seed)
    y = data.train_targets()
    mean = y.mean()
    module.model.stats.copy_(torch.stack([mean, (y - mean).abs().mean()]))
    run = RunDir(out, resume=(out / "checkpoints" / "last.ckpt").exists(), config=config, safe=RESUME_SAFE).start()
    result = fit(module, data, run, trainer)
    metrics = read_metrics(run.path)
    val = [r["val_mae"] for r in metrics if "val_mae" in r]
    progress = {"train_seconds": result.train_seconds, "steps": result.trainer.global_step,
                "last_loss": float(np.mean(module.recent_losses)) if module.recent_losses else None,
                "val_mae": val[-1] if val else None}
    if result.trainer.is_global_zero:
        torch.save({"kind": PREDICTOR_KIND, "config": {"prop": prop, "hidden": hidden, "num_layers": num_layers},
                    "state_dict": module.model.state_dict(), "train_info": progress, "versions": code_versions()},
                   run.model)
    log.info("property predictor %s: %d steps, %s s, loss %s, val MAE %s", prop, progress["steps"],
             progress["train_seconds"], progress["last_loss"], progress["val_mae"])
    return module.model.eval(), progress


def load_predictor(path: str | Path) -> PropertyPredictor:
    """A :class:`PropertyPredictor` (eval mode) from ``model.pt`` of :func:`train_predictor`, a checkpoint of its
    run (``checkpoints/*.ckpt``) or a ``predictor.pt`` of the earlier ``train_predictor`` (compscope before
    issue 19), or a run folder (its ``model.pt``)."""
    p, d = read_model_file(path, what="property predictor",
                           hint="pass the model.pt (or run folder) written by compscope.generate.train_predictor")
    if isinstance(d, dict) and d.get("kind") == PREDICTOR_KIND:
        cfg = d.get("config") or d.get("settings")  # model.pt, or the earlier predictor.pt
        state = d["state_dict"]
    elif isinstance(d, dict) and {"prop", "hidden", "num_layers"} <= set(d.get("hyper_parameters") or {}):
        cfg = d["hyper_parameters"]
        state = {k[len("model."):]: v for k, v in d["state_dict"].items() if k.startswith("model.")}
    else:
        raise ArtifactError(f"{p} is not a compscope property predictor",
                          hint="pass the model.pt written by compscope.generate.train_predictor")
    model = PropertyPredictor(cfg["prop"], cfg["hidden"], cfg["num_layers"])
    model.load_state_dict(state)
    return model.eval()


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
