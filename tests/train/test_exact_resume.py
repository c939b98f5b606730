"""Exact resume: batches as a function of the step (StepBatches), RNG states in checkpoints, last.ckpt at the end,
and the EMA without warm-up (EDM's: from the initial weights)."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import yaml
from torch.utils.data import DataLoader

from compscope.errors import ConfigError, ResumeError
from compscope.train import EMA, RunDir, StepBatches, TrainerConfig, fit, step_loader


class NoisyRegression(L.LightningModule):
    """Fit y = 2x + 1 with noise drawn from torch's global RNG in every step (like a diffusion loss)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(1, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        noise = 0.1 * torch.randn_like(y)
        loss = torch.nn.functional.mse_loss(self.lin(x), y + noise)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.lin(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Data(L.LightningDataModule):
    def __init__(self, n: int = 40, batch_size: int = 8) -> None:
        super().__init__()
        x = torch.linspace(0, 1, n)[:, None]
        self.ds = torch.utils.data.TensorDataset(x, 2 * x + 1)
        self.batch_size = batch_size

    def train_dataloader(self):
        return step_loader(self.ds, self.batch_size, seed=3, trainer=self.trainer)

    def val_dataloader(self):
        return DataLoader(self.ds, batch_size=40, generator=torch.Generator())


def _run(out, steps, resume=False, **trainer):
    torch.manual_seed(0)
    module = NoisyRegression()
    run = RunDir(out, resume=resume, config={}, safe=[]).start()
    cfg = TrainerConfig(max_epochs=-1, max_steps=steps, monitor=None, progress_bar=False, **trainer)
    res = fit(module, Data(), run, cfg)
    return module, res


@pytest.mark.parametrize("trainer", [
    {},
    {"ema_decay": 0.9},
    {"ema_decay": 0.9, "ema_warmup": False, "val_check_interval": 4},
], ids=["plain", "ema", "ema-no-warmup-val"])
def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, trainer):
    # 5 batches per epoch: stop at step 7 (mid-epoch), resume to 14 (across an epoch end) vs 14 straight
    _run(tmp_path / "a", 7, **trainer)
    assert torch.load(tmp_path / "a/checkpoints/last.ckpt", weights_only=False)["global_step"] == 7
    resumed, res = _run(tmp_path / "a", 14, resume=True, **trainer)
    straight, _ = _run(tmp_path / "b", 14, **trainer)
    assert res.trainer.global_step == 14
    for a, b in zip(resumed.parameters(), straight.parameters()):
        assert torch.equal(a, b)  # bit for bit: same batches, same noise, same average
    raw = [torch.load(tmp_path / d / "checkpoints/last.ckpt", weights_only=False) for d in ("a", "b")]
    if trainer:
        for k, v in raw[0]["current_model_state"].items():
            assert torch.equal(v, raw[1]["current_model_state"][k])


def test_without_rng_state_the_noise_would_repeat(tmp_path):
    """The check above can fail: restarting the RNG from the seed on resume (what a plain Lightning resume does
    here) gives other weights."""
    _run(tmp_path / "a", 7)
    ckpt = tmp_path / "a/checkpoints/last.ckpt"
    state = torch.load(ckpt, weights_only=False)
    del state["callbacks"]["RNGState"]
    torch.save(state, ckpt)
    resumed, _ = _run(tmp_path / "a", 14, resume=True)
    straight, _ = _run(tmp_path / "b", 14)
    assert not torch.equal(resumed.lin.weight, straight.lin.weight)


class Recorder(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[list[int]] = []

    def training_step(self, batch, batch_idx):
        self.seen.append(batch.tolist())
        return (self.w - 1).pow(2).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _lightning_batches(loader_fn, steps):
    class DM(L.LightningDataModule):
        def train_dataloader(self):
            return loader_fn(self.trainer)

    m = Recorder()
    L.Trainer(max_steps=steps, max_epochs=-1, logger=False, enable_progress_bar=False, enable_checkpointing=False,
              enable_model_summary=False).fit(m, datamodule=DM())
    return m.seen


def test_step_batches_keep_a_shuffling_dataloaders_order():
    """A task switching from DataLoader(shuffle=True, generator=...) to step_loader trains on the same batches."""
    data = list(range(18))
    plain = _lightning_batches(lambda tr: DataLoader(data, 4, shuffle=True, drop_last=True,
                                                     generator=torch.Generator().manual_seed(5)), 13)
    stepped = _lightning_batches(lambda tr: step_loader(data, 4, seed=5, trainer=tr), 13)
    assert stepped == plain and len(plain) == 13
    # a sampler started at step k yields what the run saw from step k to the end of that epoch
    sb = StepBatches(18, 4, seed=5, step=6)
    assert list(sb) == plain[6:8]
    assert list(StepBatches(18, 4, seed=5, step=lambda: 12)) == [plain[12], *StepBatches(18, 4, 5, 13)]
    assert len(StepBatches(18, 4, drop_last=False)) == 5
    with pytest.raises(ConfigError, match="larger than"):
        StepBatches(3, 4)


def test_ema_without_warmup_starts_at_the_initial_weights(tmp_path):
    torch.manual_seed(0)
    module = NoisyRegression()
    w0 = module.lin.weight.detach().clone()
    run = RunDir(tmp_path, config={}).start()
    ema = EMA(0.75, warmup=False)
    seen = {}

    class Spy(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen["raw"] = pl_module.lin.weight.detach().clone()

    fit(module, Data(), run, TrainerConfig(max_steps=1, monitor=None, progress_bar=False),
        callbacks=[Spy(), ema])
    avg = ema.average_state_dict()["lin.weight"]
    torch.testing.assert_close(avg, 0.75 * w0 + 0.25 * seen["raw"])
    assert not torch.equal(avg, seen["raw"])


def test_a_run_saved_before_ema_warmup_existed_resumes(tmp_path):
    """A config.yaml written before the option existed resumes with the behaviour it had (warm-up on)."""
    _run(tmp_path / "a", 3, ema_decay=0.9)
    old = {"trainer": {k: v for k, v in TrainerConfig(ema_decay=0.9).as_dict().items() if k != "ema_warmup"}}
    (tmp_path / "a" / "config.yaml").write_text(yaml.safe_dump(old))
    RunDir(tmp_path / "a", resume=True, config={"trainer": TrainerConfig(ema_decay=0.9).as_dict()}).start()
    with pytest.raises(ResumeError, match="ema_warmup: True -> False"):
        RunDir(tmp_path / "a", resume=True,
               config={"trainer": TrainerConfig(ema_decay=0.9, ema_warmup=False).as_dict()}).start()
