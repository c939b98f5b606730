"""`compscope cg map | train | simulate | compare` end to end on the committed reference slice (real MD engine)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import yaml
from typer.testing import CliRunner

from compscope.cli import app

from .conftest import REF
from .test_train import TINY_NET


def _run(args):
    r = CliRunner().invoke(app, [str(a) for a in args])
    return r


def test_cg_verbs_end_to_end(tmp_path):
    cg = tmp_path / "cg.h5"
    r = _run(["cg", "map", REF, "--mapping", "backbone", "--out", cg])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["n_frames"] == 400
    cfg = {"seed": 0, "data": {"path": str(cg), "n_train": 100, "n_valid": 20, "batch_size": 50},
           "model": {"net": TINY_NET}, "trainer": {"max_epochs": 1, "progress_bar": False}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    r = _run(["cg", "train", tmp_path / "cfg.yaml", "--out", tmp_path / "run"])
    assert r.exit_code == 0, r.output
    model = tmp_path / "run" / "model.pt"
    assert model.exists()
    traj = tmp_path / "cgtraj.h5"
    r = _run(["cg", "simulate", model, "--replicas", "3", "--steps", "40", "--traj-every", "10", "--dt", "2",
              "--out", traj, "--no-progress"])
    assert r.exit_code == 0, r.output
    with h5py.File(traj) as f:
        assert f["positions"].shape == (3, 5, 5, 3)  # frames at steps 0, 10, ..., 40
        assert f["phi"].shape == (3, 5) and f.attrs["dt_fs"] == 2.0 and "mapping" in f.attrs
        assert np.isfinite(f["positions"][:]).all()
    r = _run(["cg", "compare", traj, REF])
    assert r.exit_code == 0, r.output
    assert "ramachandran_js_64" in r.output and "free_energy_mse_64" in r.output
    assert (tmp_path / "cgtraj_compare.png").stat().st_size > 10_000
    r = _run(["cg", "compare", traj, REF, "--out", tmp_path / "cmp"])  # the CLI grammar's --out: a folder
    assert r.exit_code == 0, r.output
    table = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert 0 <= table["ramachandran_js_64"] <= np.log(2) and table["ref"] == str(REF)
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 10_000


def test_cg_map_bad_mapping_and_missing_file(tmp_path):
    r = _run(["cg", "map", REF, "--mapping", "CA,XX", "--out", tmp_path / "cg.h5"])
    assert r.exit_code == 2 and "does not have" in r.output
    r = _run(["cg", "map", tmp_path / "nope.h5", "--out", tmp_path / "cg.h5"])
    assert r.exit_code == 2 and "not found" in r.output
    r = _run(["cg", "map", REF, "--force-map", "best", "--out", tmp_path / "cg.h5"])
    assert r.exit_code == 2 and "force_map" in r.output


def test_cg_map_optimised_force_map_lowers_the_force_noise(tmp_path):
    r = _run(["cg", "map", REF, "--force-map", "optimised", "--out", tmp_path / "cg.h5"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert info["force_map"] == "optimised"
    assert sum(a**2 for a in info["force_map_rms_after"]) < sum(b**2 for b in info["force_map_rms_before"])
    # fitted on one fold's training frames only (the split `cg train` makes): 300 - 5 % validation = 285, or 100
    for extra, n in (([], 285), (["--fit-n-train", "100"], 100)):
        r = _run(["cg", "map", REF, "--force-map", "optimised", "--fit-fold", "1", *extra, "--out", tmp_path / "f.h5"])
        assert r.exit_code == 0, r.output
        assert json.loads(r.output)["force_map_fit_frames"] == n
        with h5py.File(tmp_path / "f.h5") as f:
            assert f.attrs["force_map_fit_frames"] == n and f.attrs["n_frames"] == 400  # every frame is still mapped
    r = _run(["cg", "map", REF, "--fit-fold", "1", "--out", tmp_path / "g.h5"])
    assert r.exit_code == 2 and "--force-map optimised" in r.output


def test_fast_model_trains_simulates_and_resumes(tmp_path):
    """The CGnet-style model (model.feature_net) trains, lowers its force error, simulates on the dense engine (fused
    kernel), and `--resume` continues the run to more steps; `--engine graph` runs the same model on the graph
    engine."""
    cg = tmp_path / "cg.h5"
    assert _run(["cg", "map", REF, "--mapping", "backbone", "--out", cg]).exit_code == 0
    cfg = {"seed": 0, "data": {"path": str(cg), "n_train": 200, "n_valid": 40, "batch_size": 50},
           "model": {"net": None, "feature_net": {"hidden": [16, 16]}}, "module": {"lr": 0.01},
           "trainer": {"max_epochs": 4, "progress_bar": False}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    r = _run(["cg", "train", tmp_path / "cfg.yaml", "--out", tmp_path / "run"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(s) for s in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    val = [row["val_force_rmse"] for row in rows if "val_force_rmse" in row]
    assert len(val) == 4 and val[-1] < val[0]
    model = tmp_path / "run" / "model.pt"
    traj = tmp_path / "fast.h5"
    args = ["cg", "simulate", model, "--replicas", "4", "--traj-every", "10", "--dt", "2", "--out", traj,
            "--no-progress"]
    r = _run([*args, "--steps", "60"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert info["engine"] == "dense" and info["n_stable"] == 4 and info["cpu_s"] > 0
    r = _run([*args, "--steps", "100", "--resume"])
    assert r.exit_code == 0, r.output
    with h5py.File(traj) as f:
        assert f["positions"].shape == (4, 11, 5, 3) and np.isfinite(f["positions"][:]).all()
    r = _run([*args[:-3], "--out", tmp_path / "graph.h5", "--steps", "20", "--engine", "graph", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["engine"] == "graph"


def test_cg_refine_runs_ibi_steps_on_the_md_engine_and_resumes(tmp_path):
    """`cg refine`: IBI steps of a fast model with the (phi, psi) term, each from a real CG run; one file per step,
    an existing refinement needs --resume, which runs only the steps left; the refined model keeps its config (so
    `cg simulate` finds its start frames); a model without the term is refused before any MD."""
    cg = tmp_path / "cg.h5"
    assert _run(["cg", "map", REF, "--out", cg]).exit_code == 0
    cfg = {"seed": 0, "data": {"path": str(cg), "n_train": 200, "n_valid": 20, "batch_size": 50},
           "model": {"net": None, "feature_net": {"hidden": [8]}, "cmap": {"order": 4, "bins": 24}},
           "module": {"loss": "denoising", "noise": 0.01}, "trainer": {"max_epochs": 1, "progress_bar": False}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    assert _run(["cg", "train", tmp_path / "cfg.yaml", "--out", tmp_path / "run"]).exit_code == 0
    model, out = tmp_path / "run" / "model.pt", tmp_path / "ref.pt"
    common = ["--replicas", "3", "--steps", "300", "--steps", "600", "--traj-every", "50", "--burn-frames", "2",
              "--dt", "2", "--out", out, "--no-progress"]
    r = _run(["cg", "refine", model, "--iterations", "2", *common])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output[r.output.index("{"):])
    assert summary["ibi_steps"] == 2 and summary["stopped"] is None and summary["target_frames"] == 200
    assert [h["frames"] for h in summary["history"]] == [3 * 5, 3 * 11]  # the steps schedule: 300, then 600
    assert (tmp_path / "ref_ibi1.pt").exists() and (tmp_path / "ref_ibi2.pt").exists() and out.exists()
    r = _run(["cg", "refine", model, "--iterations", "3", *common])
    assert r.exit_code == 2 and "--resume" in r.output
    r = _run(["cg", "refine", model, "--iterations", "3", *common, "--resume"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output[r.output.index("{"):])
    assert summary["resumed_from"] == 2 and [h["step"] for h in summary["history"]] == [0, 1, 2]
    r = _run(["cg", "simulate", out, "--replicas", "2", "--steps", "20", "--traj-every", "10",
              "--out", tmp_path / "t.h5", "--no-progress"])
    assert r.exit_code == 0, r.output
    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump({**cfg, "model": {"net": None, "feature_net": {"hidden": [8]}}}))
    assert _run(["cg", "train", plain, "--out", tmp_path / "run2"]).exit_code == 0
    r = _run(["cg", "refine", tmp_path / "run2" / "model.pt", "--iterations", "1", *common[:-3], "--out",
              tmp_path / "x.pt"])
    assert r.exit_code == 2 and "(phi, psi) term" in r.output and not (tmp_path / "x_ibi").exists()
