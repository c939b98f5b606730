"""The Boltzmann-generator benchmark script: per-seed rows, the mean ± se over seeds, the mixed-budget flag and
the target checks of ``--aggregate``; config choices per system and loss; the committed headline agrees with the
committed per-seed files."""

import json
import math

import pytest

from benchmarks import _common, sampling_bg


def _seed_doc(seed: int, minutes: float, nll: float, ess: float, w2: float) -> dict:
    return {"seed": seed, "config": {"trainer": {"max_time_minutes": minutes}}, "global_step": 100 * (seed + 1),
            "train_seconds": 60.0 * minutes, "test_nll": {"n": 10, "nll": nll, "nll_se": 0.1, "nll_per_dof": nll / 6},
            "ess_percent": ess, "energy_w2_flow": w2, "energy_w2_reweighted": w2 / 2, "samples_per_s": 5.0,
            "n_samples": 100, "n_invalid": 0}


def test_aggregate_mean_se_and_flags(tmp_path):
    sweeps, out = tmp_path / "sweeps", tmp_path / "results"
    sweeps.mkdir()
    for seed, (minutes, nll, ess) in enumerate([(20, 7.0, 80.0), (20, 7.2, 60.0), (10, 7.4, 40.0)]):
        (sweeps / f"sampling_bg_dw4_seed{seed}.json").write_text(json.dumps(_seed_doc(seed, minutes, nll, ess, 0.4)))
    path = sampling_bg.aggregate("dw4", ["a note"], folder=sweeps, out_folder=out)
    doc = json.loads(path.read_text())
    assert path.name == "sampling_bg_dw4.json" and doc["n_seeds"] == 3
    assert [r["seed"] for r in doc["seeds"]] == [0, 1, 2]
    s = doc["summary_over_seeds"]
    assert s["test_nll"]["mean"] == pytest.approx(7.2) and s["test_nll"]["se"] == pytest.approx(0.2 / math.sqrt(3))
    assert s["ess_percent"]["min"] == 40.0 and s["ess_percent"]["se"] == pytest.approx(20 / math.sqrt(3))
    assert doc["targets"]["ess_target_met_by_every_seed"] is False  # 40 % < 50 % although the mean is 60 %
    assert doc["budget_minutes"] == [10, 20] and any("different training budgets" in n for n in doc["notes"])
    assert "a note" in doc["notes"] and doc["published"]["dw4"]["E-NF"]["nll"] is None
    with pytest.raises(SystemExit, match="run seeds first"):
        sampling_bg.aggregate("lj13", [], folder=sweeps, out_folder=out)


def test_config_per_system_and_loss():
    from compscope.sampling._train import resolve_config

    lj13 = sampling_bg.config("lj13", 1.0, None, 0, None)
    assert lj13["data"]["train"].endswith("lj13_mala_n6000_seed0/reference.h5")  # our MCMC, not a shipped split
    assert lj13["data"]["valid"] == "split:lj13/val" and resolve_config(lj13)["flow"]["n_particles"] == 13
    rkl = sampling_bg.config("dw4", 1.0, None, 1, None, loss="reverse_kl", init_from="runs/x")
    cfg = resolve_config(rkl)
    assert cfg["module"]["loss"] == "reverse_kl" and cfg["init_from"] == "runs/x"
    assert cfg["trainer"]["ema_decay"] == 0.99
    assert sampling_bg.config("lj55", 1.0, None, 0, None)["data"]["train"] is None  # LJ55: --train/--valid/--test


def test_committed_headline_agrees_with_the_seed_files():
    head = json.loads((_common.RESULTS / "sampling_bg_dw4.json").read_text())
    rows = [sampling_bg.seed_row(json.loads((_common.RESULTS / f).read_text()), f) for f in head["per_seed_files"]]
    assert [r["ess_percent"] for r in rows] == [r["ess_percent"] for r in head["seeds"]]
    again = sampling_bg.summarise(rows)
    for k, v in head["summary_over_seeds"].items():
        assert v["mean"] == pytest.approx(again[k]["mean"]) and v["n_seeds"] == again[k]["n_seeds"]


def test_draw_chunks_resume_and_cpu_budget(tmp_path):
    import numpy as np
    import torch

    from compscope.sampling import EquivariantCNF

    torch.manual_seed(0)
    flow = EquivariantCNF(4, 2, hidden=8, num_layers=1, n_steps=2, div_nodes=2).double()
    full = sampling_bg.draw_chunks(flow, "dw4", 5, tmp_path / "a", chunk=2, seed=1, n_steps=None, cpu_budget_s=None)
    assert len(full["log_q"]) == 5 and full["n_chunks"] == 3 and full["cpu_seconds"] > 0
    assert np.isfinite(full["log_w"]).all() and np.allclose(full["log_w"], -full["energy"] - full["log_q"])
    # a rerun reads the saved chunks (same draws); removing the last one redraws exactly it
    (tmp_path / "a" / "chunk_00002.npz").unlink()
    again = sampling_bg.draw_chunks(flow, "dw4", 5, tmp_path / "a", chunk=2, seed=1, n_steps=None,
                                    cpu_budget_s=None)
    np.testing.assert_allclose(again["log_q"], full["log_q"], rtol=0, atol=1e-12)
    # a spent CPU budget stops after the first chunk
    cut = sampling_bg.draw_chunks(flow, "dw4", 5, tmp_path / "b", chunk=2, seed=1, n_steps=None, cpu_budget_s=0.0)
    assert len(cut["log_q"]) == 2 and cut["n_chunks"] == 1
