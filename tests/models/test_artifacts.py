"""Model files: one loader for every extension, packages saved by older code, clear errors for the rest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from compscope.data import AtomicGraph, load_graphs
from compscope.errors import CompscopeError
from compscope.models import build_model
from compscope.models.artifacts import (
    ArtifactError,
    ArtifactNotFoundError,
    CompiledPotential,
    artifact_kind,
    export_compiled,
    export_model,
    load_model,
    save_package,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
OLD = FIXTURES / "models" / "tiny_hco_v1"
ETHANOL = FIXTURES / "forcefield" / "ethanol_test_20.xyz"


@pytest.mark.parametrize("suffix", [".pt", ".jit.pt"])
def test_files_written_by_the_first_release_still_load(suffix):
    """A package and a compiled model saved at 09742fe give the energy and forces recorded then."""
    ref = json.loads(OLD.with_suffix(".json").read_text())[suffix]
    model = load_model(OLD.with_suffix(suffix))
    assert model.species == [1, 6, 8] and model.cutoff == 4.0
    g = load_graphs(ETHANOL, model.cutoff, index=":1")[0]
    out = model(g, compute_forces=True)
    assert float(out["energy"][0].detach()) == pytest.approx(ref["energy"], abs=1e-9)
    assert torch.allclose(out["forces"], torch.tensor(ref["forces"], dtype=torch.float64), atol=1e-10)


def test_package_round_trip_keeps_weights_arguments_and_provenance(tmp_path):
    torch.manual_seed(0)
    model = build_model(preset="tiny", species=[1, 8], r_max=3.0).double()
    path = save_package(model, tmp_path / "sub" / "w.pt", config={"seed": 3}, metrics={"mae": 1.0})
    doc = torch.load(path, weights_only=True)  # plain data only: no pickled code
    assert doc["format"] == "compscope-model/2" and "torch" in doc["versions"] and "python" in doc["versions"]
    assert doc["model_kwargs"] == {"name": "EquivariantPotential", "preset": "tiny", "species": [1, 8],
                                   "r_max": 3.0}
    g = AtomicGraph.from_atoms(_water(), 3.0, energy_key=None, forces_key=None, dtype=torch.float64)
    for dtype, tol in ((None, 1e-12), (torch.float32, 1e-4)):
        loaded = load_model(path, dtype=dtype)
        assert next(loaded.parameters()).dtype == (dtype or torch.float64)
        assert loaded.package_info["config"] == {"seed": 3} and loaded.package_info["metrics"] == {"mae": 1.0}
        a, b = model(g), loaded(g.to(dtype=dtype or torch.float64))
        assert torch.allclose(a["forces"], b["forces"].double(), atol=tol)
    # a run folder means its model.pt
    (tmp_path / "run").mkdir()
    save_package(load_model(path), tmp_path / "run" / "model.pt")
    assert load_model(tmp_path / "run").species == [1, 8]


def _water():
    from ase import Atoms

    return Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_compiled_matches_eager_in_both_dtypes(tmp_path, dtype, tol):
    torch.manual_seed(1)
    model = build_model(preset="tiny", species=[1, 6, 8], r_max=4.0).double()
    path = export_compiled(model, tmp_path / "m.jit.pt", dtype)
    compiled = load_model(path)
    assert isinstance(compiled, CompiledPotential) and compiled.dtype == dtype
    batch = AtomicGraph.collate(load_graphs(ETHANOL, 4.0, index=":3")).to(dtype=dtype)  # not the traced size
    a, b = model.to(dtype)(batch, compute_stress=False), compiled(batch)
    assert torch.allclose(a["energy"].double(), b["energy"].double(), atol=tol * 10)
    assert torch.allclose(a["forces"], b["forces"], atol=tol)


def test_export_model_converts_between_kinds(tmp_path):
    model = build_model(preset="tiny", species=[6], r_max=3.0).double()
    pkg = save_package(model, tmp_path / "a.pt")
    assert export_model(pkg, tmp_path / "b.pt").exists()
    assert isinstance(load_model(export_model(tmp_path / "b.pt", tmp_path / "c.jit.pt")), CompiledPotential)
    with pytest.raises(ArtifactError, match="cannot be converted back"):
        export_model(tmp_path / "c.jit.pt", tmp_path / "d.pt")
    with pytest.raises(ArtifactError, match="written by the trainer"):
        export_model(pkg, tmp_path / "d.ckpt")


def test_bad_model_files_say_what_is_accepted(tmp_path):
    assert [artifact_kind(n) for n in ("a.pt", "a.jit.pt", "a.ckpt")] == ["package", "compiled", "checkpoint"]
    (tmp_path / "m.onnx").write_bytes(b"x")
    with pytest.raises(ArtifactError, match="unknown model file type") as err:
        load_model(tmp_path / "m.onnx")
    assert all(ext in err.value.hint for ext in (".pt", ".jit.pt", ".ckpt", "run folder"))
    with pytest.raises(ArtifactNotFoundError) as err:
        load_model(tmp_path / "missing.pt")
    assert isinstance(err.value, FileNotFoundError) and isinstance(err.value, CompscopeError)
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(ArtifactError, match="not a readable"):
        load_model(tmp_path / "junk.pt")
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(ArtifactError, match="expected format compscope-model/2"):
        load_model(tmp_path / "other.pt")
    torch.save({"state_dict": {}, "hyper_parameters": {"lr": 1.0}}, tmp_path / "foreign.ckpt")
    with pytest.raises(ArtifactError, match="no compscope potential"):
        load_model(tmp_path / "foreign.ckpt")
    (tmp_path / "junk.jit.pt").write_bytes(b"nope")
    with pytest.raises(ArtifactError, match="not a usable compiled"):
        load_model(tmp_path / "junk.jit.pt")
    with pytest.raises(ArtifactError, match="constructor arguments are unknown"):
        save_package(torch.nn.Linear(2, 2), tmp_path / "lin.pt")
