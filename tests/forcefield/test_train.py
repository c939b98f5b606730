import json

import pytest
import torch
import yaml

from compscope.errors import ResumeError, RunExistsError
from compscope.forcefield import build, fit, resolve_config
from compscope.train import ConfigError

from .conftest import TRAIN, tiny_config


def test_training_outputs_and_loss_decreases(trained_run):
    for name in ("model.pt", "parity.png", "learning_curves.png", "metrics.jsonl", "metrics.csv", "errors.json",
                 "config.yaml", "versions.json", "checkpoints/last.ckpt"):
        assert (trained_run / name).exists(), name
    rows = [json.loads(x) for x in (trained_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert rows[-1]["val_loss"] < rows[0]["val_loss"]
    table = json.loads((trained_run / "errors.json").read_text())
    assert set(table) == {"valid", "test"}
    assert table["test"]["frames"] == 20
    for key in ("energy_mae_meV_atom", "energy_rmse_meV_atom", "forces_mae_meV_A", "forces_rmse_meV_A"):
        assert table["test"][key] > 0


def test_float32_switch(tmp_path):
    cfg = resolve_config(tiny_config(tmp_path / "r", dtype="float32"))
    _, task = build(cfg)
    assert next(task.model.parameters()).dtype == torch.float32


def test_shipped_configs_build(monkeypatch, tmp_path):
    """Every shipped force-field config resolves and builds (data paths pointed at the test fixture)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "configs" / "forcefield"
    configs = sorted(root.glob("*.yaml"))
    assert configs
    for path in configs:
        cfg = yaml.safe_load(path.read_text())
        cfg["data"]["init_args"].update({"train": str(TRAIN), "test": None, "e0": "least_squares", "n_valid": 5})
        cfg["out"] = str(tmp_path / path.stem)
        resolved = resolve_config(cfg)
        data, task = build(resolved)
        # one cutoff: the data's neighbour lists use the model's r_max
        assert task.model.cutoff == cfg["model"]["init_args"]["r_max"] == data.cutoff
        assert len(data.train_set) + len(data.valid_set) == 60


def test_unknown_key_names_allowed_keys(tmp_path):
    cfg = tiny_config(tmp_path / "r")
    cfg["task"]["init_args"]["learning_rate"] = 0.1
    with pytest.raises(ConfigError, match=r"'task'.*\['learning_rate'\].*Allowed keys.*'lr'"):
        resolve_config(cfg)
    cfg = tiny_config(tmp_path / "r")
    cfg["model"]["init_args"]["hiden_irreps"] = "8x0e"
    with pytest.raises(ConfigError, match="hiden_irreps"):
        resolve_config(cfg)
    cfg = tiny_config(tmp_path / "r")
    cfg["data"] = cfg["data"]["init_args"]  # the old flat form: the error says where the arguments go
    with pytest.raises(ConfigError, match="unknown key") as err:
        resolve_config(cfg)
    assert "init_args" in err.value.hint


def test_one_cutoff_from_the_model(tmp_path):
    """The data's cutoff defaults to the model's r_max, which defaults to the model constructor's."""
    import inspect

    from compscope.models import EquivariantPotential

    cfg = resolve_config(tiny_config(tmp_path / "r"))
    assert cfg["data"]["init_args"]["cutoff"] == cfg["model"]["init_args"]["r_max"] == 4.0
    plain = tiny_config(tmp_path / "r", model="tiny")  # a bare preset: r_max is the constructor default
    cfg = resolve_config(plain)
    default = inspect.signature(EquivariantPotential).parameters["r_max"].default
    assert cfg["data"]["init_args"]["cutoff"] == cfg["model"]["init_args"]["r_max"] == default
    with pytest.raises(ConfigError, match="below the model's r_max"):
        resolve_config(tiny_config(tmp_path / "r", data={"cutoff": 3.0}))


def test_refuses_to_overwrite_and_unsafe_resume(tmp_path, trained_run):
    cfg = yaml.safe_load((trained_run / "config.yaml").read_text())
    with pytest.raises(RunExistsError, match="already holds a run") as err:
        fit(cfg)
    assert "--resume" in err.value.hint
    cfg["model"]["init_args"]["r_max"] = 3.5
    with pytest.raises(ResumeError, match=r"model\.init_args\.r_max: 4\.0 -> 3\.5"):
        fit(cfg, resume=True)


def test_data_without_forces(tmp_path):
    p = tmp_path / "noforces.xyz"
    p.write_text("".join(
        f'3\nProperties=species:S:1:pos:R:3 energy={-1.0 - i}\nO 0 0 0\nH 0.96 0 0\nH -0.24 0.93 {0.01 * i}\n'
        for i in range(8)
    ))
    cfg = tiny_config(tmp_path / "r")
    cfg["data"]["init_args"].update({"train": str(p), "test": None, "n_train": None, "n_valid": 2})
    with pytest.raises(ValueError, match="no forces under key 'forces'"):
        fit(cfg)


def test_nan_loss_stops_with_batch(tmp_path):
    from ase.io import read, write

    from compscope.errors import CompscopeError
    from compscope.forcefield import NonFiniteLossError

    frames = read(TRAIN, ":12")
    bad = frames[3]
    bad.calc.results["forces"] = bad.calc.results["forces"] * 1e200  # finite in the file, overflows in the loss
    p = tmp_path / "bad.xyz"
    write(p, frames, format="extxyz")
    cfg = tiny_config(tmp_path / "r", data={"train": str(p), "test": None, "n_train": None, "n_valid": 2})
    with pytest.raises(NonFiniteLossError, match=r"epoch 0, batch \d+.*last good checkpoint") as err:
        fit(cfg)
    assert isinstance(err.value, CompscopeError) and "lr" in err.value.hint
    assert str(tmp_path / "r" / "checkpoints" / "last.ckpt") in err.value.hint


def test_time_budget_covers_all_segments_of_a_resumed_run(tmp_path):
    """A 0.1-min budget, resumed with a 0.25-min budget, trains about 0.15 min more (not 0.05: time counted once)."""
    def times(out):
        return [json.loads(x)["time_s"] for x in (out / "metrics.jsonl").read_text().splitlines()]

    over = {"trainer": {"max_epochs": 10_000, "max_time_minutes": 0.1, "early_stopping_patience": 0},
            "data": {"n_train": 10, "n_valid": 5, "batch_size": 5}}
    out = fit(tiny_config(tmp_path / "run", **over))
    first = times(out)[-1]
    assert 4.0 <= first <= 12.0, first
    over["trainer"]["max_time_minutes"] = 0.25
    fit(tiny_config(tmp_path / "run", **over), resume=True)
    second = times(out)
    assert second[-1] - first >= 6.0, (first, second[-1])  # ~9 s more; double counting would give ~3 s
    assert second[-1] - first <= 25.0  # and it stopped (setup time of the second segment adds a few seconds)


def test_cosine_time_schedule_anneals_over_the_wall_clock_budget(tmp_path):
    """``cosine_time`` starts at ``lr`` and reaches ~``lr * lr_min_ratio`` when the time budget runs out."""
    over = {"trainer": {"max_epochs": 10_000, "max_time_minutes": 0.12, "early_stopping_patience": 0},
            "task": {"lr": 0.005, "scheduler": "cosine_time", "lr_min_ratio": 0.01},
            "data": {"test": None}}
    run = fit(tiny_config(tmp_path / "r", **over))
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    lrs = [r["lr"] for r in rows]
    assert len(lrs) >= 3
    assert lrs[0] > 0.004 and all(a >= b for a, b in zip(lrs, lrs[1:]))  # monotone decay
    assert lrs[-1] < 0.1 * 0.005  # annealed close to the floor by the end of the budget
    # the CSV has one header for every column any epoch wrote, and every row lines up with it
    import csv

    with (run / "metrics.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == len(rows) and all(None not in r for r in table)


def test_cosine_time_needs_a_time_budget(tmp_path):
    cfg = tiny_config(tmp_path / "r", task={"scheduler": "cosine_time"})
    with pytest.raises(ConfigError, match="cosine_time") as err:
        resolve_config(cfg)
    assert "max_time_minutes" in err.value.hint


def test_float32_training_keeps_reference_energies_in_float64(tmp_path):
    from compscope.data import AtomicGraph, load_graphs

    cfg = resolve_config(tiny_config(tmp_path / "r", dtype="float32"))
    _, task = build(cfg)
    batch = AtomicGraph.collate(load_graphs(TRAIN, 4.0)[:2])
    moved = task.transfer_batch_to_device(batch, "cpu", 0)
    assert moved.positions.dtype == torch.float32 and moved.energy.dtype == torch.float64
    assert torch.equal(moved.energy, batch.energy.double())
