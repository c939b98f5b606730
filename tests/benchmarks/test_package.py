"""Every benchmark script imports as ``benchmarks.<name>`` without running anything, and its pure helpers work."""

import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import _common

SCRIPTS = sorted(p.stem for p in (_common.ROOT / "benchmarks").glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_benchmark_imports_without_running(name):
    before = {p: p.stat().st_mtime for p in _common.RESULTS.rglob("*")}
    mod = importlib.import_module(f"benchmarks.{name}")
    assert {p: p.stat().st_mtime for p in _common.RESULTS.rglob("*")} == before  # nothing written on import
    if not name.startswith("_"):
        assert callable(mod.main), f"{name} has its work in main()"
        assert 'if __name__ == "__main__":' in Path(mod.__file__).read_text()


@pytest.mark.parametrize("how", [["benchmarks/search_build_features.py"], ["-m", "benchmarks.search_build_features"]])
def test_a_benchmark_runs_as_a_script_and_as_a_module(how):
    out = subprocess.run([sys.executable, *how, "--help"], cwd=_common.ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "--n" in out.stdout


def test_write_result_records_provenance_and_notes(tmp_path):
    path = _common.write_result("demo", {"value": np.float32(1.5), "notes": ["from the payload"]}, seed=3,
                                notes=["how it went", ""], folder=tmp_path)
    doc = json.loads(path.read_text())
    assert path == tmp_path / "demo.json"
    assert doc["benchmark"] == "demo" and doc["seed"] == 3 and doc["value"] == 1.5
    assert doc["notes"] == ["from the payload", "how it went"]
    assert doc["machine"]["cpu_count"] and len(doc["machine"]["loadavg"]) == 3
    assert doc["versions"]["python"] and "numpy" in doc["versions"]
    assert doc["command"] and doc["date"].endswith("+00:00")


def test_headline_results_are_one_per_cell_with_notes_lists():
    """Headline JSONs carry provenance; notes are lists of strings (the old single 'note' string is gone)."""
    files = sorted(_common.RESULTS.glob("*.json")) + sorted(_common.SWEEPS.glob("*.json"))
    assert files
    for path in files:
        doc = json.loads(path.read_text())
        assert {"benchmark", "date", "command", "machine", "versions"} <= set(doc), path.name
        assert "note" not in doc and isinstance(doc.get("notes", []), list), path.name


def test_probe_overrides_and_marks():
    probe = importlib.import_module("benchmarks.forcefield_probe")
    assert probe.parse_overrides("model.max_ell=3, task.lr=5e-3") == {"model.max_ell": 3, "task.lr": 0.005}
    with pytest.raises(SystemExit, match="SECTION.KEY=VALUE"):
        probe.parse_overrides("max_ell=3")
    rows = [{"epoch": e, "time_s": 10.0 * e, "val_f_mae_meV_A": 100.0 / (e + 1)} for e in range(10)]
    marks = probe.at_marks(rows, "epoch", [0, 4, 9, 50])
    assert marks == {"0": 100.0, "4": 20.0, "9": 10.0, "50": None}


def test_md_stability_geometry_of_a_bent_molecule():
    stab = importlib.import_module("benchmarks.md_stability")
    bonds = np.array([[0, 1], [0, 2]])  # water: O-H, O-H
    angles = stab._angles(bonds)
    assert angles.tolist() == [[1, 0, 2]]
    pos = np.array([[[0, 0, 0], [0.96, 0, 0], [0, 0.96, 0]]], dtype=float)
    geo = stab.geometry(pos, np.array([8, 1, 1]), bonds, angles)
    np.testing.assert_allclose(geo["H-O"], [0.96, 0.96])
    np.testing.assert_allclose(geo["H-O-H"], [90.0])


def test_search_query_statistics():
    moses = importlib.import_module("benchmarks.search_moses")
    s = moses.stats_ms([0.001, 0.002, 0.003], cpu=[0.001, 0.001, 0.004])
    assert s["mean_ms"] == pytest.approx(2.0) and s["median_ms"] == pytest.approx(2.0) and s["n"] == 3
    assert s["cpu_mean_ms"] == pytest.approx(2.0) and s["max_ms"] == pytest.approx(3.0)


def test_throughput_under_load_helpers(tmp_path):
    tul = importlib.import_module("benchmarks.throughput_under_load")
    assert tul.step_times([5.0, 0.5, 0.25, 0.25], warmup=1) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="warm-up"):
        tul.step_times([1.0, 1.0], warmup=2)
    assert tul.summarize([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "values": [3.0, 1.0, 2.0]}
    from compscope.forcefield import resolve_config

    cfg = resolve_config(tul.train_config(tmp_path / "run", {"max_steps": 7, "monitor": None}))
    assert cfg["trainer"]["max_steps"] == 7 and cfg["model"]["init_args"]["r_max"] > 0
    assert cfg["trainer"]["num_threads"] is None  # the new defaults: compscope.runtime chooses
