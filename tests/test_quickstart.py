"""The README's main job (`compscope quickstart`) runs end to end (here with a short budget); every check is on an
outcome (files that load, errors recomputed here from the saved model and compared with a baseline computed here,
the MD trajectory's own steps), none on a value the quickstart writes as a constant."""

import json

import numpy as np
import pytest
from ase.io import read
from typer.testing import CliRunner

from compscope.cli import app

pytestmark = pytest.mark.slow


def test_quickstart_end_to_end(tmp_path):
    from matplotlib.image import imread

    from compscope.data import load_graphs
    from compscope.forcefield import load_model, predict
    from compscope.md import read_h5_observables

    out = tmp_path / "qs"
    steps = 20
    res = CliRunner().invoke(app, ["quickstart", "--out", str(out), "--minutes", "0.4", "--md-steps", str(steps)])
    assert res.exit_code == 0, res.output
    run = out / "run"

    # the files load: the model package, the plots as images, the error table as JSON
    model = load_model(run / "model.pt")
    for name in ("parity.png", "learning_curves.png"):
        assert imread(run / name).ndim == 3
    table = json.loads((run / "errors.json").read_text())

    # the test errors, recomputed here from the saved model on the bundled test file
    test_file = model.package_info["config"]["data"]["init_args"]["test"]
    frames = read(test_file, ":")
    pred = predict(model, load_graphs(test_file, model.cutoff))
    ref_f = np.concatenate([a.get_forces() for a in frames])
    ref_e = np.array([a.get_potential_energy() for a in frames])
    n_atoms = np.array([len(a) for a in frames])
    f_mae = 1000 * np.mean(np.abs(pred["pred_forces"] - ref_f))
    e_mae = 1000 * np.mean(np.abs((pred["pred_energy"] - ref_e) / n_atoms))
    assert table["test"]["frames"] == len(frames)
    assert table["test"]["forces_mae_meV_A"] == pytest.approx(f_mae, rel=1e-5)
    assert table["test"]["energy_mae_meV_atom"] == pytest.approx(e_mae, rel=1e-5)
    # and the model learned something: below the error of predicting zero forces
    assert f_mae < 1000 * np.mean(np.abs(ref_f))

    # the MD ran the requested steps (read from its trajectory file)
    obs = read_h5_observables(out / "md" / "trajectory.h5")
    assert int(obs["step"][-1]) == steps
    assert obs["potential_energy"].shape[1] == len(np.unique(obs["replica"])) >= 1
    assert np.isfinite(obs["potential_energy"]).all()

    # a second call reuses the trained model instead of training again
    stamp = (run / "model.pt").stat().st_mtime_ns, (run / "metrics.jsonl").read_text()
    res2 = CliRunner().invoke(app, ["quickstart", "--out", str(out), "--minutes", "0.4", "--md-steps", "0"])
    assert res2.exit_code == 0, res2.output
    assert ((run / "model.pt").stat().st_mtime_ns, (run / "metrics.jsonl").read_text()) == stamp
