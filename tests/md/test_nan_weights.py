"""NaN injected through a real EquivariantPotential's weights during MD: the replica that meets it is stopped at
its last good frame, the others run on exactly as without it, and nothing NaN reaches the files; a model that is
NaN from the start is refused with a clear message through the CLI."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from ase.io import read, write
from typer.testing import CliRunner

from compscope.cli import app
from compscope.md import MDInputError, simulate
from compscope.models import build_model
from compscope.models.artifacts import save_package

from .conftest import thermalize

ETHANOL = read(__import__("pathlib").Path(__file__).resolve().parents[1] / "fixtures" / "forcefield"
               / "ethanol_train_60.xyz", 0)
KW = {"preset": "tiny", "species": [1, 6, 8], "r_max": 4.0, "scale": 0.05}
O_INDEX = KW["species"].index(8)


def _model():
    torch.manual_seed(0)
    return build_model(**KW).double().eval()


def _starts():
    """Replica 0 ethanol (H, C, O); replica 1 ethane (the OH removed): only replica 0 has oxygen."""
    eth = ETHANOL.copy()
    o = int(np.flatnonzero(eth.numbers == 8)[0])
    h = int(np.argmin([eth.get_distance(o, i) if z == 1 else 1e9 for i, z in enumerate(eth.numbers)]))
    ethane = eth.copy()
    del ethane[[o, h]]
    out = []
    for k, a in enumerate((eth, ethane)):
        out.append(thermalize(a, 50.0, k))
    return out


def _poison_after(model, calls: int):
    """Set the oxygen's energy scale to NaN from the ``calls``-th force evaluation on (a real weight, in place)."""
    seen = [0]

    def hook(module, args):
        seen[0] += 1
        if seen[0] == calls:
            with torch.no_grad():
                module.element_scale[O_INDEX] = float("nan")

    model.register_forward_pre_hook(hook)
    return model


def test_nan_weight_mid_run_stops_only_the_replica_that_meets_it(tmp_path):
    kw = {"steps": 60, "dt": 0.5, "integrator": "nve", "initial_momenta": "atoms", "traj_every": 10,
          "progress": False, "plots": False}
    res = simulate(_poison_after(_model(), 25), _starts(), out=tmp_path / "run", **kw)
    rows = {r["replica"]: r for r in res.summary}
    assert not rows[0]["stable"] and "NaN" in rows[0]["reason"], rows[0]
    assert 20 <= rows[0]["stopped_at_step"] <= 30
    assert rows[1]["stable"] and res.steps == 60
    assert [v.reason for v in res.violations] == ["nonfinite"] and res.violations[0].last_good_step <= 25
    # the ethane replica ran on exactly as it does alone (the NaN did not leak through the shared batch)
    alone = simulate(_model(), _starts()[1:], **kw)
    n0 = len(_starts()[0])
    torch.testing.assert_close(res.state.positions[n0:], alone.state.positions, rtol=0, atol=1e-10)
    # what was done is kept, and nothing NaN was written: the stopped replica holds its last good frame
    with h5py.File(tmp_path / "run" / "trajectory.h5") as f:
        assert f["particles/all/position/step"][:].tolist() == list(range(0, 61, 10))
        pos = f["particles/all/position/value"][:]
        assert np.isfinite(pos).all() and np.isfinite(f["particles/all/force/value"][:]).all()
        for name in ("potential_energy", "kinetic_energy", "temperature", "conserved_energy"):
            assert np.isfinite(f[f"observables/{name}/value"][:]).all(), name
        steps = f["particles/all/position/step"][:].tolist()
        last_good = res.violations[0].last_good_step
        if last_good in steps:  # frames after the stop repeat the last good one
            np.testing.assert_array_equal(pos[-1, :n0], pos[steps.index(last_good), :n0])
    failed = read(tmp_path / "run" / "failed_replica_0.extxyz", ":")
    assert failed and np.isfinite(failed[-1].positions).all()


def test_md_cli_refuses_a_model_with_nan_weights(tmp_path):
    model = _model()
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if "interactions" in n).view(-1)[0] = float("nan")
    path = save_package(model, tmp_path / "nan.pt", model_kwargs=KW)
    start = tmp_path / "ethanol.xyz"
    write(start, ETHANOL)
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["md", "run", str(path), str(start), "--steps", "10", "--out", str(out),
                                 "--no-progress", "--no-plots"])
    assert r.exit_code == 2, r.output
    assert "NaN/inf energies or forces" in r.output and "weights are NaN" in r.output
    assert not (out / "trajectory.h5").exists()
    with pytest.raises(MDInputError, match="replica"):
        simulate(model, [ETHANOL], steps=1)
