"""ASE calculator, export (package / compiled), eval CLI, committee uncertainty."""

import json

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.io import read
from typer.testing import CliRunner

from compscope.cli import app
from compscope.data import AtomicGraph, load_graphs
from compscope.forcefield import Calculator, CompiledPotential, load_model, save_package
from compscope.forcefield._export import compile_model, export_model
from compscope.models import UnknownElementError, build_model

from .conftest import TEST, TRAIN

runner = CliRunner()


def test_calculator_numerical_forces(trained_run):
    atoms = read(TEST, 0)
    atoms.calc = Calculator.from_file(trained_run / "model.pt")
    f = atoms.get_forces()
    num = atoms.calc.calculate_numerical_forces(atoms, d=1e-4)
    assert np.abs(f - num).max() < 1e-5
    e = atoms.get_potential_energy()
    assert np.isclose(atoms.get_potential_energies().sum(), e)


def test_calculator_stress_periodic(tmp_path):
    torch.manual_seed(0)
    model = build_model(preset="tiny", species=[6], r_max=3.0).double()
    path = save_package(model, {"preset": "tiny", "species": [6], "r_max": 3.0}, tmp_path / "c.pt")
    atoms = bulk("C", "diamond", a=3.57) * (2, 1, 1)
    atoms.rattle(0.05, seed=0)
    atoms.calc = Calculator(path)
    stress = atoms.get_stress()
    num = atoms.calc.calculate_numerical_stress(atoms, d=1e-5)
    assert stress.shape == (6,)
    assert np.abs(stress - num).max() < 1e-6


def test_calculator_unknown_element(trained_run):
    from ase import Atoms

    atoms = Atoms("NH3", positions=[[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    atoms.calc = Calculator(trained_run / "model.pt")
    with pytest.raises(UnknownElementError, match=r"\[7\]"):
        atoms.get_potential_energy()


def test_package_safe_load_and_compiled_match_eager(trained_run, tmp_path):
    doc = torch.load(trained_run / "model.pt", weights_only=True)  # no pickled code in the package
    assert doc["format"] == "compscope-model/2" and "torch" in doc["versions"]
    eager = load_model(trained_run / "model.pt")
    graphs = load_graphs(TEST, eager.cutoff, index=":6")
    compiled_path = export_model(trained_run, tmp_path / "m.jit.pt")
    compiled = CompiledPotential(compiled_path)
    for batch in (AtomicGraph.collate(graphs[:1]), AtomicGraph.collate(graphs)):  # other sizes than the trace
        a, b = eager(batch), compiled(batch)
        assert torch.allclose(a["energy"], b["energy"], atol=1e-10)
        assert torch.allclose(a["forces"], b["forces"], atol=1e-10)
    # the compiled file works through the calculator too
    atoms = read(TEST, 1)
    atoms.calc = Calculator(compiled_path)
    ref = read(TEST, 1)
    ref.calc = Calculator(trained_run / "model.pt")
    assert np.allclose(atoms.get_forces(), ref.get_forces(), atol=1e-10)


def test_export_cli_from_checkpoint(trained_run, tmp_path):
    res = runner.invoke(app, ["export", str(trained_run / "checkpoints" / "last.ckpt"), "--out",
                              str(tmp_path / "x.pt")])
    assert res.exit_code == 0, res.output
    m = load_model(tmp_path / "x.pt")
    g = load_graphs(TEST, m.cutoff, index=":1")[0]
    assert torch.isfinite(m(g)["energy"]).all()
    res = runner.invoke(app, ["export", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "y.pt")])
    assert res.exit_code == 2 and "not found" in res.output


def test_compile_float32(trained_run, tmp_path):
    m = load_model(trained_run / "model.pt", dtype=torch.float32)
    g = load_graphs(TEST, m.cutoff, index=":2")
    compile_model(m, AtomicGraph.collate(g), tmp_path / "f.jit.pt")
    c = CompiledPotential(tmp_path / "f.jit.pt")
    b = AtomicGraph.collate(g).to(dtype=torch.float32)
    assert torch.allclose(m(b)["forces"], c(b)["forces"], atol=1e-5)


def test_eval_cli_per_config_type_and_predictions(trained_run, tmp_path):
    frames = read(TEST, ":6")
    for i, a in enumerate(frames):
        a.info["config_type"] = "A" if i < 3 else "B"
    from ase.io import write

    data = tmp_path / "typed.xyz"
    write(data, frames, format="extxyz")
    out = tmp_path / "pred.xyz"
    res = runner.invoke(app, ["eval", str(trained_run / "model.pt"), str(data), "--out", str(out),
                              "--json", str(tmp_path / "t.json")])
    assert res.exit_code == 0, res.output
    table = json.loads((tmp_path / "t.json").read_text())
    assert set(table["per_config_type"]) == {"A", "B"}
    pred = read(out, ":")
    assert len(pred) == 6 and "pred_energy" in pred[0].info and "pred_forces" in pred[0].arrays
    assert "REF_energy" in pred[0].info


def test_eval_missing_model(tmp_path):
    res = runner.invoke(app, ["eval", str(tmp_path / "nope.pt"), str(TEST)])
    assert res.exit_code == 2 and "not found" in res.output


def test_committee_uncertainty_flags(trained_run, tmp_path):
    """Two members (different seeds): frames with a large force spread are flagged."""
    from compscope.forcefield._committee import evaluate_models

    torch.manual_seed(1)
    other = load_model(trained_run / "model.pt")
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.05 * torch.randn_like(p))
    p2 = save_package(other, other.package_info["model_kwargs"], tmp_path / "m2.pt")
    table = evaluate_models([trained_run / "model.pt", p2], TRAIN, threshold=0.0, out=tmp_path / "c.xyz")
    u = table["uncertainty"]
    assert u["models"] == 2 and u["flagged"] == table["frames"] > 0 and u["max_force_std"] > 0
    assert "force_std_max" in read(tmp_path / "c.xyz", 0).info
    high = evaluate_models([trained_run / "model.pt", p2], TRAIN, threshold=1e6)
    assert high["uncertainty"]["flagged"] == 0


def test_format_1_package_loads_without_isolated_e0(trained_run, tmp_path):
    """Packages written before ``isolated_e0`` existed keep the energies they were trained with."""
    doc = torch.load(trained_run / "model.pt", weights_only=True)
    new = load_model(trained_run / "model.pt")
    assert new.isolated_e0
    doc["format"] = "compscope-model/1"
    doc["model_kwargs"].pop("isolated_e0", None)
    torch.save(doc, tmp_path / "old.pt")
    old = load_model(tmp_path / "old.pt")
    assert not old.isolated_e0
    batch = AtomicGraph.collate(load_graphs(TEST, new.cutoff, index=":2"))
    a, b = new(batch), old(batch)
    assert not torch.allclose(a["energy"], b["energy"], atol=1e-6)  # same weights, other energy function
