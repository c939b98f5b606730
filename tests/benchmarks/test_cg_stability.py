"""benchmarks.cg_stability on a real (small) CG model: one run folder, or the replicas split over parts that run
separately and are reported together."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import units

REF = Path(__file__).parents[1] / "fixtures" / "cg" / "ala2_obc_4x100.h5"


@pytest.fixture(scope="module")
def model_and_cg(tmp_path_factory):
    from compscope.cg import feature_net_kwargs, fit_prior, load_cg, map_reference
    from compscope.models import build_model
    from compscope.models.artifacts import save_package

    tmp = tmp_path_factory.mktemp("cgstab")
    cg = map_reference(REF, "backbone", tmp / "cg.h5") and tmp / "cg.h5"
    frames = np.concatenate(load_cg(cg).positions)
    torch.manual_seed(0)
    model = build_model("CGPotential", bead_z=[6, 7, 6, 6, 7], prior=fit_prior(frames, 300.0, dihedrals=True),
                        net=None, energy_scale=float(units.kB * 300.0),
                        feature_net=feature_net_kwargs(frames, {"hidden": [16, 8]}))
    return save_package(model, tmp / "model.pt"), cg


def _run(stab, model, cg, out, *extra):
    return stab.main(["--model", str(model), "--cg", str(cg), "--replicas", "4", "--ns", "0.0008", "--dt", "4",
                      "--chunk-ns", "0.0004", "--frame-ps", "0.04", "--check-every", "50", "--out", str(out),
                      *extra])


def test_parts_run_apart_and_report_together(model_and_cg, tmp_path, monkeypatch):
    from benchmarks import cg_stability as stab

    written = {}
    monkeypatch.setattr(stab, "write_result", lambda name, payload, seed=None, notes=None:
                        written.setdefault(name, []).append(payload) or tmp_path / f"{name}.json")
    model, cg = model_and_cg
    _run(stab, model, cg, tmp_path / "one")
    one = written["cg_stability"][-1]
    assert one["complete"] and one["n_stable"] == 4 and one["frames"] == 4 * 21 and one["parts"] == 1
    _run(stab, model, cg, tmp_path / "split", "--parts", "2", "--part", "1")
    half = written["cg_stability"][-1]
    assert not half["complete"] and half["parts_reported"] == [1] and half["frames"] == 2 * 21
    _run(stab, model, cg, tmp_path / "split", "--parts", "2", "--part", "0")
    _run(stab, model, cg, tmp_path / "split", "--parts", "2", "--report-only")
    both = written["cg_stability"][-1]
    assert both["complete"] and both["n_stable"] == 4 and both["frames"] == 4 * 21
    assert both["parts_reported"] == [0, 1] and both["simulated_ns_per_replica"] == pytest.approx(0.0008)
    assert {b["beads"][0] for b in both["bonds_run"]} == {0, 1, 2, 3}
    # a part still writing its trajectory (another process holds the file open) is left out of a report, not fatal
    import subprocess
    import sys

    hold = subprocess.Popen([sys.executable, "-c", "import h5py, sys, time; f = h5py.File(sys.argv[1], 'a'); "
                             "print('open', flush=True); time.sleep(60)",
                             str(tmp_path / "split" / "part_0" / "trajectory.h5")], stdout=subprocess.PIPE, text=True)
    try:
        assert hold.stdout.readline().strip() == "open"
        _run(stab, model, cg, tmp_path / "split", "--parts", "2", "--report-only")
        busy = written["cg_stability"][-1]
        assert busy["parts_busy"] == [0] and busy["parts_reported"] == [1] and not busy["complete"]
        assert busy["frames"] == 2 * 21
    finally:
        hold.kill()
        hold.wait()
        hold.stdout.close()
    # part 0 runs the unsplit run's first two replicas from the same start frames with the same seed
    x_one = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert x_one["replicas"] == 4
    import h5py

    with h5py.File(tmp_path / "one" / "trajectory.h5") as a, h5py.File(tmp_path / "split" / "part_0" /
                                                                         "trajectory.h5") as b:
        first = a["particles/all/position/value"][0].reshape(4, 5, 3)[:2]
        np.testing.assert_allclose(b["particles/all/position/value"][0].reshape(2, 5, 3), first)


def test_bad_part_arguments_are_refused(model_and_cg, tmp_path, capsys):
    from benchmarks import cg_stability as stab

    model, cg = model_and_cg
    for extra, msg in ((["--parts", "2"], "give --part K"), (["--parts", "5"], "between 1 and"),
                       (["--parts", "2", "--part", "2"], "must be in 0..1")):
        with pytest.raises(SystemExit):
            _run(stab, model, cg, tmp_path / "bad", *extra)
        assert msg in capsys.readouterr().err
    with pytest.raises(SystemExit, match="no run in"):
        _run(stab, model, cg, tmp_path / "empty", "--report-only")
