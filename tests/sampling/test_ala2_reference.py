"""Alanine-dipeptide replica exchange (openmmtools): a few iterations on 3 replicas, resume, the stored 300 K
energies against the OpenMM target, settings guard, the basin-population estimator, the CLI."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from compscope.cli import app
from compscope.errors import CompscopeError, ResumeError, RunExistsError
from compscope.sampling import alanine_dipeptide, basin_population, dihedral_angles, make_ala2_reference
from compscope.sampling._ala2_reference import _lock

pytest.importorskip("openmmtools")

TINY = dict(n_runs=1, n_iterations=6, n_replicas=3, steps_per_iteration=20, checkpoint_interval=2, burn_in=1,
            workers=0, platform="Reference")


def test_replica_exchange_resumes_and_keeps_the_300K_state(tmp_path):
    out = tmp_path / "ala2"
    path, s = make_ala2_reference(out, max_iterations=4, **TINY)  # interrupted after 4 iterations
    assert not s["complete"] and s["iterations_per_run"] == [4] and s["n_samples"] == 4
    with pytest.raises(RunExistsError, match="unfinished"):
        make_ala2_reference(out, **TINY)
    lock = _lock(out / "runs" / "run_00")  # another process holds the run
    saved = (out / "config.yaml").read_text()
    with pytest.raises(CompscopeError, match="being run by another process"):
        make_ala2_reference(out, resume=True, **{**TINY, "n_iterations": 8})
    lock.close()
    assert (out / "config.yaml").read_text() == saved  # the refused call changed nothing
    with pytest.raises(ResumeError, match="t_max"):
        make_ala2_reference(out, resume=True, **{**TINY, "t_max": 900.0})
    path, s = make_ala2_reference(out, resume=True, **TINY)
    assert s["complete"] and s["iterations_per_run"] == [6]
    assert s["temperatures_K"] == pytest.approx([300.0, 300.0 * (10 / 3) ** 0.5, 1000.0], rel=1e-4)
    assert len(s["neighbour_acceptance"]) == 2 and all(0.0 <= a <= 1.0 for a in s["neighbour_acceptance"])
    with h5py.File(path) as h5:
        pos, u = h5["positions"][:], h5["energy"][:]
        np.testing.assert_array_equal(h5["iteration"][:], np.arange(1, 7))  # resumed, not restarted
        phi = h5["phi"][:]
        g = {k: h5["all_replicas"][k][:] for k in h5["all_replicas"]}
        rama = h5["ramachandran/mbar"][:]
    # every replica's frame is reweighted to 300 K by MBAR; the 300 K frames are among them with their energies
    assert s["mbar"]["n_samples"] == 18 and len(g["phi"]) == 18 and sorted(np.bincount(g["state"])) == [6, 6, 6]
    assert np.exp(g["log_w"]).sum() == pytest.approx(1.0) and 0.0 <= s["mbar"]["basin_population"] <= 1.0
    np.testing.assert_allclose(np.sort(g["energy"][g["state"] == 0]), np.sort(u))
    np.testing.assert_allclose(np.sort(g["phi"][g["state"] == 0]), np.sort(phi), atol=1e-6)
    assert s["mbar"]["f_k"][0] == 0.0 and rama.shape == (64, 64) and rama.sum() == pytest.approx(1.0)
    assert pos.shape == (6, 22, 3) and np.isfinite(pos).all()
    # the stored reduced energies are those of the 300 K target at the stored positions
    np.testing.assert_allclose(alanine_dipeptide().energy(torch.as_tensor(pos, dtype=torch.float64)).numpy(), u,
                               atol=0.05)
    np.testing.assert_allclose(phi, dihedral_angles(pos, (1, 6, 7, 9)))
    # a finished run is reused without sampling
    again, s2 = make_ala2_reference(out, **TINY)
    assert again == path and s2["n_samples"] == s["n_samples"]


def test_basin_population_and_its_error_bars():
    rng = np.random.default_rng(0)
    p = 0.04
    phi = np.where(rng.random(40000) < p, 1.0, -1.5)
    run = np.repeat([0, 1, 2, 3], 10000)
    r = basin_population(phi, run, n_blocks=10)
    assert r["n_blocks"] == 40 and len(r["per_run"]) == 4
    exact_se = (p * (1 - p) / len(phi)) ** 0.5  # independent frames: both error bars estimate the binomial one
    assert r["population"] == pytest.approx(p, abs=4 * exact_se)
    assert 0.6 * exact_se < r["error_blocks"] < 1.5 * exact_se
    assert r["error_runs"] > 0
    assert basin_population(np.array([-3.0, 0.5, 2.3, 2.1]))["population"] == 0.5  # 0 < phi < 2.2 only
    with pytest.raises(CompscopeError, match="no frames"):
        basin_population(np.array([]))


def test_cli_reference_ala2(tmp_path):
    out = tmp_path / "cli"
    sets = [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]
    res = CliRunner().invoke(app, ["sample", "reference", "ala2", "--out", str(out), *sets])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output[res.output.index("{"):])
    assert summary["n_samples"] == 6 and summary["complete"] and 0.0 <= summary["basin_population"] <= 1.0
    res = CliRunner().invoke(app, ["sample", "reference", "ala2", "--out", str(out), "--set", "n_replica=3"])
    assert res.exit_code != 0 and "n_replica" in res.output
    # `sample report` of alanine-dipeptide samples against this reference: Ramachandran plots and basin populations
    from compscope.sampling import write_samples

    with h5py.File(out / "reference.h5") as h5:
        pos = h5["positions"][:]
    rng = np.random.default_rng(0)
    x = np.concatenate([pos] * 5) + rng.normal(0, 0.02, (5 * len(pos), 22, 3))
    u = alanine_dipeptide().energy(torch.as_tensor(x)).numpy()
    log_q = -0.5 * ((x - np.concatenate([pos] * 5)) ** 2).sum((1, 2)) / 0.02**2  # a stand-in proposal density
    write_samples(tmp_path / "s.h5", {"positions": x, "log_q": log_q, "energy": u, "log_w": -u - log_q},
                  {"target": "ala2"})
    res = CliRunner().invoke(app, ["sample", "report", str(tmp_path / "s.h5"), "--reference",
                                   str(out / "reference.h5"), "--out", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())["ramachandran"]
    assert {"basin_flow", "basin_reweighted", "basin_reference", "js_flow", "js_reweighted"} <= set(rep)
    assert 0.0 <= rep["js_flow"] <= np.log(2) and "Ramachandran JS" in res.output
    for png in ("ramachandran.png", "phi_profile.png", "energy_hist.png"):
        assert (tmp_path / "rep" / png).stat().st_size > 1000
