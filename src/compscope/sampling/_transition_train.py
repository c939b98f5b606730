"""Training a learned transition kernel (:class:`ConditionalCouplingFlow`) by maximum likelihood on MD pairs, with
the shared trainer (:func:`compscope.train.fit`: run folder, resume, time budget, metrics). Loads Lightning.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import torch

from compscope.nn import kabsch

from ._transition import ConditionalCouplingFlow, _centre

__all__ = ["TransitionModule", "train_transition"]


class TransitionModule(L.LightningModule):
    """Maximum likelihood of a :class:`ConditionalCouplingFlow` on pairs: loss = NLL per degree of freedom."""

    def __init__(self, flow: ConditionalCouplingFlow, lr: float = 1e-3, weight_decay: float = 0.0):
        super().__init__()
        self.flow, self.lr, self.weight_decay = flow, float(lr), float(weight_decay)

    def _nll(self, batch):
        x0, x1 = batch
        return -self.flow.log_prob(x1, x0).mean() / self.flow.dof

    def training_step(self, batch, _):
        loss = self._nll(batch)
        self.log("train_nll_per_dof", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, _):
        self.log("val_nll_per_dof", self._nll(batch), prog_bar=True)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)


def train_transition(pairs: dict, out: str | Path, flow: dict | None = None, lr: float = 1e-3,
                     batch_size: int = 256, trainer: dict | None = None, seed: int = 0, resume: bool = False,
                     system: str = "alanine-dipeptide"):
    """Train a :class:`ConditionalCouplingFlow` on :func:`transition_pairs` into the run folder ``out``.

    The reference frame is the mean training ``x(t)`` after alignment; ``model.pt`` holds the weights, the flow's
    arguments, the lag, the system and the trajectory split.
    """
    from torch.utils.data import DataLoader, TensorDataset

    from compscope.train import RunDir, fit

    torch.manual_seed(int(seed))
    x0, x1 = pairs["train"]
    ref = _centre(x0[0])
    xc = _centre(x0[: 2000])
    ref = (xc @ kabsch(xc, ref.expand(len(xc), -1, -1), proper=True)).mean(0)
    fargs = {"hidden": 256, "num_layers": 8, "init_scale": 0.1, **(flow or {})}
    config = {"system": system, "lag_ps": pairs["lag_frames"] * pairs["frame_ps"], "flow": fargs, "lr": lr,
              "batch_size": batch_size, "seed": seed, "replicas": pairs["replicas"], "trainer": trainer or {}}
    run = RunDir(out, resume=resume, config=config, safe=("trainer",)).start()
    model = ConditionalCouplingFlow(ref, **fargs).float()
    module = TransitionModule(model, lr=lr)
    g = torch.Generator().manual_seed(int(seed))
    train = DataLoader(TensorDataset(x0.float(), x1.float()), batch_size=batch_size, shuffle=True, generator=g)
    vx0, vx1 = pairs["valid"] if len(pairs["valid"][0]) else pairs["train"]
    valid = DataLoader(TensorDataset(vx0.float(), vx1.float()), batch_size=1024)
    tcfg = {"monitor": "val_nll_per_dof", "max_epochs": 5, "ema_decay": 0.0, **(trainer or {})}
    result = fit(module, None, run, tcfg, train_dataloaders=train, val_dataloaders=valid)
    torch.save({"format": "compscope-transition/1", "state_dict": model.state_dict(), "reference": ref,
                "flow": fargs, "system": system, "lag_ps": config["lag_ps"], "replicas": pairs["replicas"],
                "n_atoms": model.n_atoms}, run.model)
    (run.path / "transition.json").write_text(json.dumps({k: config[k] for k in ("system", "lag_ps", "replicas")},
                                                         indent=2))
    return model, result
