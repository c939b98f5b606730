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


def test_cg_map_bad_mapping_and_missing_file(tmp_path):
    r = _run(["cg", "map", REF, "--mapping", "CA,XX", "--out", tmp_path / "cg.h5"])
    assert r.exit_code == 2 and "does not have" in r.output
    r = _run(["cg", "map", tmp_path / "nope.h5", "--out", tmp_path / "cg.h5"])
    assert r.exit_code == 2 and "not found" in r.output
