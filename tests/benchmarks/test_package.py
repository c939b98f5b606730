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


def test_cg_alanine_merges_disjoint_folds_and_refuses_overlaps(tmp_path, monkeypatch):
    cg = importlib.import_module("benchmarks.cg_alanine")
    monkeypatch.setattr(cg, "write_result", lambda name, payload, seed=None, notes=None: (name, payload, notes))

    def part(folds, js, name):
        runs = [{"fold": f, "method": "denoising", "n_train": 10000, "ramachandran_js_64": j,
                 "free_energy_mse_64": 2 * j, "ramachandran_js_61": j, "cg_stable": 100 - f}
                for f, j in zip(folds, js)]
        doc = {"benchmark": name, "date": "d", "command": f"cmd {name}", "seed": 0, "machine": {}, "versions": {},
               "partial": False, "reference_ns": 1000.0, "reference_frames": 10, "runs": runs,
               "reference_floor": {str(f): {"js_64": 0.001} for f in folds}, "settings": {"folds": folds},
               "notes": [f"note {name}"]}
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(doc))
        return path

    a, b = part([0, 1], [0.01, 0.03], "a"), part([2, 3], [0.02, 0.04], "b")
    name, payload, notes = cg.merge([a, b], "both")
    assert name == "both" and [r["fold"] for r in payload["runs"]] == [0, 1, 2, 3]
    s = payload["summary"]["denoising@10000"]
    assert s["folds"] == [0, 1, 2, 3] and s["js_64_mean"] == pytest.approx(0.025)
    assert s["mse_64_mean"] == pytest.approx(0.05) and payload["settings"]["folds"] == [0, 1, 2, 3]
    assert s["stable_replicas"] == [100, 99, 98, 97] and "slow_basin" not in s and "js_64_vs_reference" not in s
    assert set(payload["reference_floor"]) == {"0", "1", "2", "3"} and notes == ["note a", "note b"]
    assert [m["folds"] for m in payload["merged_from"]] == [[0, 1], [2, 3]]
    with pytest.raises(SystemExit, match="share folds"):
        cg.merge([a, part([1], [0.02], "c")], "x")
    other = json.loads(b.read_text())
    other["reference_ns"] = 65.0
    b.write_text(json.dumps(other))
    with pytest.raises(SystemExit, match="different references"):
        cg.merge([a, b], "x")
    with pytest.raises(SystemExit):
        cg.main(["--folds", "0"])  # neither --ref nor --merge


def test_cg_alanine_evaluation_floor_draws_training_windows_and_shrinks_with_more_frames():
    cg = importlib.import_module("benchmarks.cg_alanine")
    rng = np.random.default_rng(0)
    lengths = [400] * 8  # 4 folds of 2 replicas each
    n = sum(lengths)
    phi, psi = rng.uniform(-np.pi, np.pi, n), rng.normal(0.5, 0.6, n)
    held_phi = phi.copy()
    held_phi[:800] = 3.0  # fold 0's block sits on one phi value: far from any training window
    small = cg.evaluation_floor(held_phi, psi, lengths, 0, replicas=2, window=50, draws=3)
    assert small["training_replicas"] == 6 and small["window_frames"] == 50 and small["draws"] == 3
    assert small["js_64"] > 0.4  # the windows come from training replicas, never from the held-out block
    few = cg.evaluation_floor(phi, psi, lengths, 1, replicas=2, window=20, draws=4, seed=1)
    many = cg.evaluation_floor(phi, psi, lengths, 1, replicas=12, window=400, draws=4, seed=1)
    assert many["js_64"] < few["js_64"] and many["js_64_std"] >= 0 and set(few) >= {"js_61", "mse_64", "mse_61"}
    with pytest.raises(SystemExit, match="must be >= 1"):
        cg.evaluation_floor(phi, psi, lengths, 1, replicas=2, window=0)
    from compscope.cg import per_step

    assert [per_step([50, 250], k) for k in range(4)] == [50, 250, 250, 250]  # IBI per-step schedules


def test_cg_alanine_floor_only_reads_a_reference_and_writes_both_floors(tmp_path, monkeypatch):
    import h5py

    cg = importlib.import_module("benchmarks.cg_alanine")
    monkeypatch.setattr(cg, "write_result", lambda name, payload, seed=None, notes=None: (name, payload))
    rng = np.random.default_rng(3)
    ref = tmp_path / "ref.h5"
    with h5py.File(ref, "w") as f:
        f.attrs["dt_fs"] = 2.0
        for r in range(8):
            g = f.create_group(f"replicas/{r:04d}")
            g.attrs["steps"], g.attrs["ns_per_day"] = 50000, 1000.0
            g["phi"], g["psi"] = rng.uniform(-np.pi, np.pi, 300), rng.normal(0.0, 1.0, 300)
    name, payload = cg.main(["--ref", str(ref), "--floor-only", "--replicas", "4", "--steps", "2500",
                             "--traj-every", "25", "--burn-frames", "1", "--floor-draws", "2", "--name", "fl",
                             "--sizes", "100", "0"])
    assert name == "fl" and payload["reference_ns"] == pytest.approx(0.8) and payload["reference_frames"] == 2400
    assert set(payload["evaluation_floor"]) == set(payload["reference_floor"]) == {"0", "1", "2", "3"}
    assert payload["evaluation_floor"]["0"]["window_frames"] == 100 and payload["evaluation_floor"]["2"]["draws"] == 2
    assert 0 < payload["evaluation_floor_mean"]["js_64"] < 1
    # the exact model against the whole reference (which holds its windows) scores below its held-out score
    assert 0 < payload["evaluation_floor_mean"]["js_64_vs_reference"] < payload["evaluation_floor_mean"]["js_64"]
    # the training frames' own histogram: fewer frames score worse, and "all" is every training frame of the fold
    data = payload["training_frames_floor"]
    assert set(data) == {"100", "all"} and data["all"]["0"]["n_train"] == 1710  # 1800 less the 5 % validation
    assert data["100"]["js_64_mean"] > data["all"]["js_64_mean"] > 0
    assert data["all"]["js_64_vs_reference_mean"] < data["all"]["js_64_mean"]


def test_reference_core_seconds_of_openmm_and_dense_references(tmp_path):
    import h5py

    with h5py.File(tmp_path / "r.h5", "w") as f:
        f.attrs["dt_fs"] = 2.0
        for r, wall in enumerate((10.0, 30.0)):
            f.create_group(f"replicas/{r}").attrs.update({"steps": 500000, "wall_s": wall, "ns_per_day": 5.0})
        assert _common.reference_core_seconds(f)[0] == 40.0  # OpenMM: each replica's own wall time
        for r in ("0", "1"):
            del f["replicas"][r].attrs["wall_s"]
        # dense engine: 2 ns at 5 + 5 ns/day of one core
        assert _common.reference_core_seconds(f)[0] == pytest.approx(2.0 / 10.0 * 86400.0)
        for r in ("0", "1"):
            f["replicas"][r].attrs["ns_per_day"] = 0.0
        with pytest.raises(SystemExit, match="regenerate"):
            _common.reference_core_seconds(f)


@pytest.mark.filterwarnings("ignore:time step")  # the step is meant to be too large
def test_cg_alanine_keeps_going_when_a_model_blows_up(tmp_path, monkeypatch):
    """A real blow-up (a 60 fs step): IBI stops with a message, the run is recorded as failed with None metrics
    (not a score from junk frames), the cell's means are None, rescore skips it."""
    cg = importlib.import_module("benchmarks.cg_alanine")
    out = {}
    monkeypatch.setattr(cg, "write_result", lambda name, payload, seed=None, notes=None: out.update(payload) or name)
    ref = Path(__file__).parents[1] / "fixtures" / "cg" / "ala2_obc_4x100.h5"
    cg.main(["--ref", str(ref), "--folds", "0", "--sizes", "200", "--minutes", "0.03", "--replicas", "4",
             "--steps", "400", "--traj-every", "50", "--burn-frames", "2", "--cmap", "{}", "--dt", "60",
             "--refine", "2", "--refine-steps", "400", "--methods", "denoising+ofm+ibi", "--explicit-seconds", "0.5",
             "--floor-draws", "2", "--max-epochs", "3", "--work", str(tmp_path)])
    (run,) = out["runs"]
    assert run["cg_stable"] == 0 and run["refine_steps"] == 0 and "IBI step 0" in run["refine_stopped"]
    assert "no CG frame" in run["failed"] and run["ramachandran_js_64"] is None
    assert run["cg_slow_basin_population"] is None
    assert run["train_steps"] == 3 * 3  # --max-epochs 3 of 200 frames in batches of 64
    cell = out["summary"]["denoising+ofm+ibi@200"]
    assert cell["js_64_mean"] is None and cell["failed_folds"] == [0] and cell["stable_replicas"] == [0]
    doc = {**out, "benchmark": "x", "date": "d", "command": "c", "seed": 0, "notes": []}
    (tmp_path / "r.json").write_text(json.dumps(doc))
    cg.main(["--rescore", str(tmp_path / "r.json"), "--ref", str(ref), "--work", str(tmp_path)])
    assert out["runs"][0]["failed"] and out["summary"]["denoising+ofm+ibi@200"]["js_64_mean"] is None


def test_cg_alanine_runs_end_to_end_on_the_fixture_reference(tmp_path, monkeypatch):
    """Training, 3 IBI steps with per-step schedules, evaluation, both floors and the whole-reference JS, for real."""
    import h5py

    cg = importlib.import_module("benchmarks.cg_alanine")
    out = {}
    monkeypatch.setattr(cg, "write_result", lambda name, payload, seed=None, notes=None: out.update(payload) or name)
    ref = Path(__file__).parents[1] / "fixtures" / "cg" / "ala2_obc_4x100.h5"
    cg.main(["--ref", str(ref), "--folds", "0", "--sizes", "200", "0", "--minutes", "0.03", "--replicas", "4",
             "--steps", "2000", "--traj-every", "50", "--burn-frames", "5", "--cmap", "{}", "--noise", "0.01",
             "--refine", "3", "--refine-steps", "500", "1000", "--refine-damping", "1", "0.5",
             "--methods", "denoising+ofm+ibi", "--explicit-seconds", "0.5", "--floor-draws", "2",
             "--work", str(tmp_path)])
    run, every = out["runs"]
    # "all" (size 0) is the fold's training blocks (3 of 4 blocks of the 400 frames) less the last 5 % that the
    # trainer validates on, keyed as such
    assert every["n_train"] == 285 and every["size"] == "all" and run["n_train"] == 200 and run["size"] == 200
    assert set(out["summary"]) == {"denoising+ofm+ibi@200", "denoising+ofm+ibi@all"}
    with h5py.File(tmp_path / "cg_f0_ofm_all.h5", "r") as f:
        assert f.attrs["force_map_fit_frames"] == 285
    assert run["refine_steps"] == 3 and Path(run["model_file"]).name == "f0_denoising+ofm+ibi_200_final.pt"
    assert Path(run["model_file"]).read_bytes() == (tmp_path / "f0_denoising+ofm+ibi_200_ibi3.pt").read_bytes()
    assert 0 < run["ramachandran_js_64_vs_reference"] < 1 and out["evaluation_floor"]["0"]["window_frames"] == 36
    assert "js_64_vs_reference_mean" in out["summary"]["denoising+ofm+ibi@200"]
    # the IBI runs followed the schedule: 500 steps, then 1000 (the last value repeats)
    frames = []
    for k in range(3):
        with h5py.File(tmp_path / f"f0_denoising+ofm+ibi_200_ibi{k}_traj.h5", "r") as f:
            frames.append(f["positions"].shape[1])
    assert frames == [11, 21, 21]
    # the optimised force map saw only the run's 200 training frames (a data-efficiency claim counts every frame)
    with h5py.File(tmp_path / "cg_f0_ofm_200.h5", "r") as f:
        assert f.attrs["force_map_fit_frames"] == 200
    # --rescore adds the whole-reference JS to an earlier result from the runs' evaluation files
    doc = {**out, "benchmark": "x", "date": "d", "command": "first", "seed": 0, "notes": []}
    whole = doc["runs"][0].pop("ramachandran_js_64_vs_reference")
    (tmp_path / "r.json").write_text(json.dumps(doc))
    out.clear()
    cg.main(["--rescore", str(tmp_path / "r.json"), "--ref", str(ref), "--work", f"{tmp_path}/none,{tmp_path}"])
    assert out["runs"][0]["ramachandran_js_64_vs_reference"] == pytest.approx(whole)
    assert out["rescored_from"]["command"] == "first"
    assert "js_64_vs_reference_mean" in out["summary"]["denoising+ofm+ibi@200"]
    with pytest.raises(SystemExit, match="no f0_denoising"):
        cg.main(["--rescore", str(tmp_path / "r.json"), "--ref", str(ref), "--work", f"{tmp_path}/none"])
    # cg_mse_bins rescores the same runs and the exact model on bins with >= c held-out frames: c = 1 is
    # cg_alanine's own MSE (model and evaluation floor alike), and fewer bins are scored as c grows
    mb = importlib.import_module("benchmarks.cg_mse_bins")
    bins = {}
    monkeypatch.setattr(mb, "write_result", lambda name, payload, seed=None: bins.update(payload) or name)
    doc["runs"][0]["ramachandran_js_64_vs_reference"] = whole
    (tmp_path / "r.json").write_text(json.dumps(doc))
    mb.main(["--result", str(tmp_path / "r.json"), "--ref", str(ref), "--work", str(tmp_path), "--draws", "2",
             "--min-counts", "1", "3"])
    by = {r["size"]: r["by_min_count"] for r in bins["runs"]}
    assert by[200]["1"]["mse"] == pytest.approx(doc["runs"][0]["free_energy_mse_64"])
    assert by[200]["3"]["bins"] < by[200]["1"]["bins"]
    assert bins["blocks"]["0"]["exact_model"]["1"]["mse"] == pytest.approx(doc["evaluation_floor"]["0"]["mse_64"])
    assert bins["blocks"]["0"]["probability_in_bins"]["1"] == pytest.approx(1.0)
    assert 0 < bins["blocks"]["0"]["probability_in_bins"]["3"] < 1
    with pytest.raises(SystemExit):
        mb.main(["--result", str(tmp_path / "r.json"), "--ref", str(ref), "--work", str(tmp_path), "--min-counts", "0"])
