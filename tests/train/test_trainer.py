"""The shared trainer: instantiate, run folder and resume guard, EMA, budget, metrics, kill-free resume."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from compscope.errors import CompscopeError, ConfigError, ResumeError, RunExistsError
from compscope.train import EMA, RunDir, TrainerConfig, check_unchanged, fit, instantiate, read_metrics


class Quadratic(L.LightningModule):
    """Fit y = 3x - 1 with one linear layer (a tiny deterministic task)."""

    def __init__(self, lr: float = 0.05) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.lin = torch.nn.Linear(1, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.lin(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.lin(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def _loaders():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, generator=g)
    ds = torch.utils.data.TensorDataset(x, 3 * x - 1)
    return torch.utils.data.DataLoader(ds, batch_size=16), torch.utils.data.DataLoader(ds, batch_size=64)


def _fit(out, resume=False, **trainer):
    torch.manual_seed(0)
    module = Quadratic()
    run = RunDir(out, resume=resume, config={"model": {"lr": 0.05}, "trainer": trainer},
                 safe=["trainer.max_epochs"]).start()
    tr, va = _loaders()
    res = fit(module, None, run, TrainerConfig(progress_bar=False, **trainer), train_dataloaders=tr,
              val_dataloaders=va)
    return module, res


def test_instantiate_checks_arguments_and_presets():
    spec = {"class_path": "torch.nn.Linear", "init_args": {"in_features": 2, "out_features": 3}}
    assert instantiate(spec).weight.shape == (3, 2)
    presets = {"tiny": {"class_path": "torch.nn.Linear", "init_args": {"in_features": 1, "out_features": 1}}}
    assert instantiate("tiny", presets=presets).weight.shape == (1, 1)
    assert instantiate({"preset": "tiny", "init_args": {"out_features": 4}}, presets=presets).weight.shape == (4, 1)
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['in_feature'\]"):
        instantiate({"class_path": "torch.nn.Linear", "init_args": {"in_feature": 2, "out_features": 3}},
                    section="model")
    with pytest.raises(ConfigError, match="missing required"):
        instantiate({"class_path": "torch.nn.Linear", "init_args": {"in_features": 2}})
    with pytest.raises(ConfigError, match="has no 'Linearr'") as err:
        instantiate({"class_path": "torch.nn.Linearr"})
    assert "Linear" in err.value.hint
    with pytest.raises(ConfigError, match="preset 'huge' unknown"):
        instantiate("huge", presets=presets)
    # the caller's arguments fill in, the config's win
    assert instantiate({"class_path": "torch.nn.Linear", "init_args": {"in_features": 2}},
                       out_features=5).weight.shape == (5, 2)


def test_errors_share_one_base_with_hint():
    err = ResumeError("x", hint="do y")
    assert isinstance(err, CompscopeError) and isinstance(err, ValueError)
    assert err.explain() == "x\nhint: do y"
    assert issubclass(RunExistsError, FileExistsError)


def test_check_unchanged_names_each_changed_key():
    check_unchanged({"a": 1, "b": [1, 2]}, {"a": 1, "b": (1, 2)})
    with pytest.raises(ResumeError, match=r"a: 1 -> 2"):
        check_unchanged({"a": 1, "t": 5}, {"a": 2, "t": 6}, safe=["t"])
    check_unchanged({"a": 1}, {"a": 1, "new": 0}, defaults={"new": 0})
    with pytest.raises(ResumeError, match=r"new: \(unset\) -> 3"):
        check_unchanged({"a": 1}, {"a": 1, "new": 3})


def test_fit_writes_run_folder_and_resume_continues(tmp_path):
    out = tmp_path / "run"
    module, res = _fit(out, max_epochs=3)
    for name in ("config.yaml", "versions.json", "metrics.jsonl", "metrics.csv", "train_time.json"):
        assert (out / name).exists(), name
    assert res.best.parent == out / "checkpoints" and res.best.exists()
    assert [r["epoch"] for r in read_metrics(out)] == [0, 1, 2]
    with pytest.raises(RunExistsError):
        _fit(out, max_epochs=3)
    module2, res2 = _fit(out, resume=True, max_epochs=5)
    assert res2.trainer.current_epoch == 5
    assert [r["epoch"] for r in read_metrics(out)] == [0, 1, 2, 3, 4]
    # an uninterrupted 5-epoch run ends in the same weights
    module3, _ = _fit(tmp_path / "straight", max_epochs=5)
    torch.testing.assert_close(module2.lin.weight, module3.lin.weight)
    with pytest.raises(ResumeError, match="model.lr"):
        RunDir(out, resume=True, config={"model": {"lr": 0.1}, "trainer": {"max_epochs": 5}}).start()


def test_ema_is_validated_checkpointed_and_resumed(tmp_path):
    module, res = _fit(tmp_path / "a", max_epochs=2, ema_decay=0.9)
    ckpt = torch.load(res.trainer.checkpoint_callback.last_model_path, weights_only=False)
    assert "current_model_state" in ckpt  # raw weights kept for resume, average in state_dict
    assert not torch.equal(ckpt["current_model_state"]["lin.weight"], ckpt["state_dict"]["lin.weight"])
    resumed, _ = _fit(tmp_path / "a", resume=True, max_epochs=4, ema_decay=0.9)
    straight, _ = _fit(tmp_path / "b", max_epochs=4, ema_decay=0.9)
    torch.testing.assert_close(resumed.lin.weight, straight.lin.weight)


def test_ema_warmup_and_decay_checked():
    with pytest.raises(ConfigError):
        EMA(1.5)
    with pytest.raises(ConfigError, match="ema_decay"):
        TrainerConfig(ema_decay=1.0)


def test_time_budget_adds_up_over_resumes(tmp_path):
    out = tmp_path / "run"
    _, res = _fit(out, max_epochs=2)
    first = res.train_seconds
    _, res2 = _fit(out, resume=True, max_epochs=4)
    assert res2.train_seconds >= first > 0


def test_metrics_rows_hold_one_epochs_train_and_validation(tmp_path):
    _fit(tmp_path / "run", max_epochs=2)
    rows = read_metrics(tmp_path / "run")
    assert [r["epoch"] for r in rows] == [0, 1]
    assert all("train_loss" in r and "val_loss" in r for r in rows), rows


def test_resume_reads_defaults_for_options_added_later(tmp_path):
    out = tmp_path / "run"
    _fit(out, max_epochs=1)
    cfg = {"model": {"lr": 0.05, "new_option": 0}, "trainer": {"max_epochs": 1}}
    RunDir(out, resume=True, config=cfg, defaults={"model": {"new_option": 0}}).start()
    with pytest.raises(ResumeError, match="new_option"):
        RunDir(out, resume=True, config={**cfg, "model": {"lr": 0.05, "new_option": 1}},
               defaults={"model": {"new_option": 0}}).start()


def test_resolve_section_takes_the_flat_and_the_sectioned_form():
    import torch

    from compscope.errors import ConfigError
    from compscope.train import resolve_section

    flat = resolve_section({"s": {"out_features": 3}}, "s", torch.nn.Linear, provided={"in_features": "data"})
    sectioned = {"class_path": "torch.nn.Linear", "init_args": {"out_features": 3}}
    for spec in ({"init_args": {"out_features": 3}}, sectioned):
        assert resolve_section({"s": spec}, "s", torch.nn.Linear, provided={"in_features": "data"}) == flat
    with pytest.raises(ConfigError, match="not understood"):
        resolve_section({"s": {"class_path": "torch.nn.Conv1d", "init_args": {}}}, "s", torch.nn.Linear)
    with pytest.raises(ConfigError, match="in_features"):
        resolve_section({"s": {"init_args": {"in_features": 2, "out_features": 3}}}, "s", torch.nn.Linear,
                        provided={"in_features": "data"})
    with pytest.raises(ConfigError):
        resolve_section({"s": {"init_args": {"out_feature": 3}}}, "s", torch.nn.Linear, provided={"in_features": "d"})


class _Sleep(L.Callback):
    """Idle wall time in every step: a wall-clock budget counts it, a CPU budget does not."""

    def on_train_batch_end(self, *args, **kwargs):
        import time
        time.sleep(0.15)


@pytest.mark.parametrize("clock", ["wall", "cpu"])
def test_budget_clock_counts_wall_or_cpu_seconds(tmp_path, clock):
    torch.manual_seed(0)
    run = RunDir(tmp_path / clock, config={"trainer": {"budget_clock": clock}}).start()
    tr, va = _loaders()
    cfg = TrainerConfig(progress_bar=False, max_epochs=-1, max_steps=12, max_time_minutes=1 / 60,
                        budget_clock=clock)
    res = fit(Quadratic(), None, run, cfg, train_dataloaders=tr, val_dataloaders=va, callbacks=[_Sleep()])
    if clock == "wall":  # 1 s of budget, 0.15 s asleep per step
        assert res.trainer.global_step <= 9 and res.train_seconds >= 1.0
    else:  # 1.8 s asleep in 12 steps, far less CPU
        assert res.trainer.global_step == 12 and res.train_seconds < 1.0
    with pytest.raises(ResumeError, match="budget_clock"):
        other = "cpu" if clock == "wall" else "wall"
        RunDir(tmp_path / clock, resume=True, config={"trainer": {"budget_clock": other}}).start()


def test_budget_clock_is_checked():
    with pytest.raises(ConfigError, match="budget_clock"):
        TrainerConfig(budget_clock="gpu")
