"""The force-field CLI grammar (`compscope forcefield <verb> CONFIG [--resume] [--out] [--set]`), its top-level
aliases, the resume guard through the CLI, and the shipped config's isolated-atom E0 route."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
import yaml
from ase import Atoms
from typer.testing import CliRunner

from compscope.cli import app
from compscope.data import AtomicGraph, read_extxyz
from compscope.forcefield import build, load_model, resolve_config

from .conftest import FIXTURES, TEST, TRAIN, tiny_config

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


def _write(cfg, path):
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_top_level_verbs_are_aliases_of_the_forcefield_sub_app():
    sub = next(g.typer_instance for g in app.registered_groups if g.name == "forcefield")
    root = {c.name: c.callback for c in app.registered_commands}
    verbs = {c.name: c.callback for c in sub.registered_commands}
    assert set(verbs) == {"train", "evaluate", "export", "committee"}
    for alias, verb in [("train", "train"), ("eval", "evaluate"), ("export", "export"), ("committee", "committee")]:
        assert root[alias] is verbs[verb]
    assert "forcefield" in typer.main.get_command(app).commands


def test_set_overrides_reach_init_args_and_out_moves_the_run(tmp_path):
    cfg = tiny_config(tmp_path / "ignored", trainer={"max_epochs": 1})
    path = _write(cfg, tmp_path / "c.yaml")
    out = tmp_path / "run"
    res = runner.invoke(app, ["forcefield", "train", str(path), "--out", str(out), "--set", "model.r_max=3.5",
                              "--set", "task.lr=0.002", "--set", "data.n_valid=4", "--set", "trainer.max_epochs=1"])
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "ignored").exists()
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["model"]["init_args"]["r_max"] == 3.5
    assert saved["task"]["init_args"]["lr"] == 0.002
    assert saved["data"]["init_args"]["cutoff"] == 3.5  # follows the model's r_max
    model = load_model(out / "model.pt")
    assert model.cutoff == 3.5
    errors = yaml.safe_load((out / "errors.json").read_text())
    assert errors["valid"]["frames"] == 4
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1


def test_resume_refuses_a_changed_model_section_through_the_cli(tmp_path, trained_run):
    run = tmp_path / "copy"
    shutil.copytree(trained_run, run)
    before = (run / "checkpoints" / "last.ckpt").stat().st_mtime_ns
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["model"]["init_args"]["hidden_irreps"] = "4x0e+4x1o"
    path = _write(cfg, tmp_path / "changed.yaml")
    for verb in (["forcefield", "train"], ["train"]):
        res = runner.invoke(app, [*verb, str(path), "--resume", "--out", str(run)])
        assert res.exit_code == 2, res.output
        assert "model.init_args.hidden_irreps: '8x0e+8x1o' -> '4x0e+4x1o'" in res.output
        assert "hint:" in res.output
    # --set names the same key the same way, and a fresh run over the old one is refused too
    res = runner.invoke(app, ["forcefield", "train", str(_write(yaml.safe_load((run / "config.yaml").read_text()),
                                                                tmp_path / "same.yaml")),
                              "--resume", "--out", str(run), "--set", "model.num_interactions=1"])
    assert res.exit_code == 2 and "model.init_args.num_interactions: 2 -> 1" in res.output
    res = runner.invoke(app, ["forcefield", "train", str(path), "--out", str(run)])
    assert res.exit_code == 2 and "already holds a run" in res.output
    assert (run / "checkpoints" / "last.ckpt").stat().st_mtime_ns == before


def test_bad_config_is_a_user_error_with_a_hint(tmp_path):
    cfg = tiny_config(tmp_path / "r")
    cfg["data"] = cfg["data"]["init_args"]  # constructor arguments outside init_args
    res = runner.invoke(app, ["forcefield", "train", str(_write(cfg, tmp_path / "c.yaml"))])
    assert res.exit_code == 2, res.output
    assert "error:" in res.output and "init_args" in res.output
    res = runner.invoke(app, ["forcefield", "train", str(tmp_path / "missing.yaml")])
    assert res.exit_code == 2 and "not found" in res.output


@pytest.fixture
def shipped_data(tmp_path, monkeypatch):
    """$COMPSCOPE_DATA with the shipped config's rmd17 files (test fixtures standing in for the full set)."""
    folder = tmp_path / "data" / "rmd17"
    folder.mkdir(parents=True)
    shutil.copy(TRAIN, folder / "ethanol_train.xyz")
    shutil.copy(TEST, folder / "ethanol_test.xyz")
    shutil.copy(FIXTURES / "ethanol_isolated_atoms.xyz", folder / "isolated_atoms.xyz")
    monkeypatch.setenv("COMPSCOPE_DATA", str(tmp_path / "data"))
    return folder


def _shipped_model(tmp_path):
    cfg = yaml.safe_load((ROOT / "configs" / "forcefield" / "ethanol.yaml").read_text())
    cfg["data"]["init_args"]["n_valid"] = 5
    cfg["out"] = str(tmp_path / "run")
    resolved = resolve_config(cfg, ROOT / "configs" / "forcefield")
    _, task = build(resolved)
    return resolved, task.model.eval()


def _isolated_energy(model, z):
    g = AtomicGraph.from_atoms(Atoms(numbers=[z], positions=[[0.0, 0.0, 0.0]]), model.cutoff, energy_key=None,
                               forces_key=None, dtype=torch.float64)
    out = model(g)
    return g, float(out["energy"][0].detach()), out["forces"].detach()


def _file_e0(path):
    return {int(a.numbers[0]): float(a.info.get("energy", a.calc.results["energy"] if a.calc else np.nan))
            for a in read_extxyz(path) if len(a) == 1}


def test_shipped_config_takes_e0_from_the_isolated_atoms_file(shipped_data, tmp_path):
    """The `e0: data://rmd17/isolated_atoms.xyz` route: each element's reference energy is the file's value, and an
    isolated atom's energy is that E0 plus the model's one-body term (zero: ``isolated_e0``), and no force."""
    resolved, model = _shipped_model(tmp_path)
    assert resolved["data"]["init_args"]["e0"] == str(shipped_data / "isolated_atoms.xyz")
    e0 = _file_e0(shipped_data / "isolated_atoms.xyz")
    assert model.species == [1, 6, 8]
    for i, z in enumerate(model.species):
        assert float(model._e0_64[i]) == e0[z]  # exactly, in float64
        g, energy, forces = _isolated_energy(model, z)
        idx = model.species_index(g.atomic_numbers)
        attrs = torch.nn.functional.one_hot(idx, len(model.species)).double()
        cell = g.cell[g.batch[g.edge_index[0]]]
        one_body = float(model.node_energies(g.positions, attrs, idx, g.edge_index, g.cell_shifts, cell,
                                             include_e0=False).detach().sum())
        assert abs(one_body) < 1e-12
        assert energy == pytest.approx(e0[z] + one_body, abs=1e-9)
        assert torch.count_nonzero(forces) == 0


def test_shipped_config_isolated_atom_energy_is_exactly_e0(shipped_data, tmp_path):
    _, model = _shipped_model(tmp_path)
    e0 = _file_e0(shipped_data / "isolated_atoms.xyz")
    for z in model.species:
        assert _isolated_energy(model, z)[1] == pytest.approx(e0[z], abs=1e-9)
