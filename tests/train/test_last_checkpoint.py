"""last.ckpt is the end of the run even when the monitored metric got worse (Lightning writes `last` only with a
new best on its own), so --resume continues from where the run stopped."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from compscope.train import RunDir, TrainerConfig, fit


class Worsening(L.LightningModule):
    """A module whose validation metric rises every epoch after the first (the best stays epoch 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        return (self.w - 1.0).pow(2).sum() + 0.0 * batch[0].sum()

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", torch.tensor(float(self.current_epoch)))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _loader():
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(4, 1)), batch_size=2)


@pytest.mark.parametrize("monitor", ["val_loss", None])
def test_last_checkpoint_is_the_last_epoch(tmp_path, monitor):
    run = RunDir(tmp_path, config={}).start()
    res = fit(Worsening(), None, run, TrainerConfig(max_epochs=3, monitor=monitor, progress_bar=False),
              train_dataloaders=_loader(), val_dataloaders=_loader())
    last = torch.load(run.last, weights_only=False)
    assert (last["epoch"], last["global_step"]) == (2, 6)
    if monitor:
        assert torch.load(res.best, weights_only=False)["epoch"] == 0  # best stays the first epoch
    assert sorted(p.name for p in run.checkpoints.iterdir()) == (["best.ckpt", "last.ckpt"] if monitor
                                                                 else ["last.ckpt"])
