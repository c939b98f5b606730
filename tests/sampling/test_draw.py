"""`compscope sample draw` / `report` through the CLI on a tiny trained DW4 flow: files, columns, finite values,
exact log q, reproducibility, and bad input (missing, untrained, mismatched model files; not a samples file)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from compscope.cli import app
from compscope.sampling import get_target, load_flow, read_samples, train_flow

from .conftest import FIXTURES

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("flow") / "run"
    data = str(FIXTURES / "dw4_test_300.npy")
    cfg = {"seed": 0, "flow": {"hidden": 8, "num_layers": 1, "n_steps": 3},
           "data": {"target": "dw4", "train": data, "valid": data, "n_train": 32, "n_valid": 16, "batch_size": 16},
           "module": {"lr": 1e-3, "train_steps": 1},
           "trainer": {"max_epochs": 1, "progress_bar": False, "num_threads": 1}}
    train_flow(cfg, out=out)
    return out


def test_draw_and_report(tiny_run, tmp_path):
    out = tmp_path / "s.h5"
    res = runner.invoke(app, ["sample", "draw", str(tiny_run), "--n", "50", "--batch", "20", "--out", str(out),
                              "--seed", "3"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output[res.output.index("{"):])
    assert summary["n"] == 50 and 0 < summary["ess"] <= 1
    with h5py.File(out) as h5:
        assert set(h5) == {"positions", "log_q", "energy", "log_w"}
        assert h5["positions"].shape == (50, 4, 2)
    s = read_samples(out)
    assert all(np.isfinite(s[k]).all() for k in ("positions", "log_q", "energy", "log_w"))
    np.testing.assert_allclose(s["log_w"], -s["energy"] - s["log_q"])
    assert s["attrs"]["target"] == "dw4" and s["attrs"]["n_steps"] == 3
    # energies are the target's; log q is the flow's exact density (data -> base integration agrees)
    flow, info = load_flow(tiny_run, dtype=torch.float64)
    x = torch.as_tensor(s["positions"])
    np.testing.assert_allclose(s["energy"], get_target("dw4").energy(x).numpy(), rtol=1e-12)
    np.testing.assert_allclose(s["log_q"][:10], flow.log_prob(x[:10]).detach().numpy(), atol=1e-3)
    # same seed -> same samples
    out2 = tmp_path / "s2.h5"
    runner.invoke(app, ["sample", "draw", str(tiny_run), "--n", "50", "--batch", "50", "--out", str(out2),
                        "--seed", "3"])
    np.testing.assert_allclose(read_samples(out2)["positions"], s["positions"], atol=1e-12)

    rep_dir = tmp_path / "rep"
    res = runner.invoke(app, ["sample", "report", str(out), "--reference", "dw4/test", "--out", str(rep_dir)])
    assert res.exit_code == 0, res.output
    assert "Kish ESS" in res.output and "W2" in res.output
    rep = json.loads((rep_dir / "report.json").read_text())
    for k in ("ess", "w1_flow", "w2_flow", "w2_reweighted", "w1_reweighted"):
        assert np.isfinite(rep[k]) and rep[k] >= 0
    assert rep["energy_reference"]["mean"] == pytest.approx(-22.45, abs=0.05)  # the shipped test split
    assert (rep_dir / "energy_hist.png").stat().st_size > 5000
    # reference from a .npy of frames, no output folder
    res = runner.invoke(app, ["sample", "report", str(out), "--reference", str(FIXTURES / "dw4_test_300.npy")])
    assert res.exit_code == 0, res.output


def test_bad_inputs(tiny_run, tmp_path):
    def run(*args):
        res = runner.invoke(app, ["sample", *args])
        assert res.exit_code == 2, res.output
        return res.output

    out = str(tmp_path / "x.h5")
    assert "not found" in run("draw", str(tmp_path / "nope.ckpt"), "--out", out)
    empty = tmp_path / "empty_run"
    (empty / "checkpoints").mkdir(parents=True)
    msg = run("draw", str(empty), "--out", out)
    assert "no trained flow" in msg and "hint:" in msg
    # another task's checkpoint: a Lightning checkpoint without a flow
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"model.w": torch.zeros(2)}, "hyper_parameters": {"model": {"a": 1}}}, other)
    assert "no sampling flow" in run("draw", str(other), "--out", out)
    # a flow whose shape does not fit its target
    ck = torch.load(tiny_run / "checkpoints" / "last.ckpt", weights_only=True)
    ck["hyper_parameters"]["target"] = "lj13"
    bad = tmp_path / "mismatch.ckpt"
    torch.save(ck, bad)
    assert "target lj13" in run("draw", str(bad), "--out", out)
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    assert "not a readable checkpoint" in run("draw", str(garbage), "--out", out)
    (tmp_path / "model.pt").write_bytes(b"x")  # a force-field package name: refused by kind
    assert "Lightning checkpoint (.ckpt)" in run("draw", str(tmp_path / "model.pt"), "--out", out)
    assert "not found" in run("report", str(tmp_path / "missing.h5"))
    (tmp_path / "bad.h5").write_bytes(b"nope")
    assert "HDF5" in run("report", str(tmp_path / "bad.h5"))
    assert "positive" in run("draw", str(tiny_run), "--n", "0", "--out", out)


def test_nan_samples_are_excluded(tiny_run):
    from compscope.sampling import draw_samples, report_samples

    flow, info = load_flow(tiny_run, dtype=torch.float64)
    target = get_target("dw4")

    class Clashing:
        """DW4 energies with NaN for every third configuration (a target that cannot evaluate some samples)."""

        def energy(self, x):
            u = target.energy(x)
            u[::3] = float("nan")
            return u

    res = draw_samples(flow, Clashing(), 30, batch_size=30, seed=0)
    assert res["n_invalid"] == 10 and np.isneginf(res["log_w"][::3]).all()
    rep = report_samples(res)
    assert rep["n_invalid"] == 10 and np.isfinite(rep["ess"]) and np.isfinite(rep["energy_reweighted"]["mean"])
