"""benchmarks/pde_learned_fv.py: the equal-error interpolation and the summary over training seeds (synthetic
cells; the benchmark itself needs trained models)."""

import numpy as np
import pytest

from benchmarks import pde_learned_fv as bench


def _classical(errors: dict[int, float], ms: dict[int, float]) -> dict:
    keys = ("s_per_traj_single", "cpu_s_per_traj_single", "s_per_traj_batched", "cpu_s_per_traj_batched")
    return {str(n): {"error": e, **{k: ms[n] * 1e-3 for k in keys}, "per_trajectory": [e] * 4}
            for n, e in errors.items()}


def _learned(err: float, per: list[float], ms: float) -> dict:
    keys = ("s_per_traj_single", "cpu_s_per_traj_single", "s_per_traj_batched", "cpu_s_per_traj_batched")
    return {"error": err, "error_se": 0.1, "per_trajectory": per, "macs_per_face": 656,
            **{k: ms * 1e-3 for k in keys}, "stable_2x_horizon": True, "tv_growth_2x": [1.0, 1.5],
            "mass_drift_max": 1e-14}


def test_equal_error_interpolates_log_log_and_names_the_bounds():
    runs = _classical({25: 1.0, 50: 0.01}, {25: 1.0, 50: 4.0})
    mid = bench.equal_error(runs, 0.1, "cpu_s_per_traj_single")  # halfway in log error: sqrt(25 * 50), 2 ms
    assert mid["nx"] == pytest.approx(np.sqrt(25 * 50)) and mid["time"] == pytest.approx(2e-3)
    assert bench.equal_error(runs, 2.0, "cpu_s_per_traj_single")["bound"] == "below_coarsest"
    assert bench.equal_error(runs, 1e-3, "cpu_s_per_traj_single")["bound"] == "above_finest"


def test_seed_summary_means_over_seeds_and_scores_the_mean_error():
    cell = {"nx": 25, "classical": {"WENO5": _classical({25: 1.0, 100: 0.01}, {25: 1.0, 100: 4.0})}}
    runs = {"small@s0": _learned(0.05, [0.04, 0.06, 0.05, 0.05], 2.0),
            "small@s1": _learned(0.15, [0.10, 0.20, 0.15, 0.15], 4.0)}
    out = bench._seed_summary(runs, cell, "WENO5")
    assert out["error_mean"] == pytest.approx(0.1) and out["error_se_seeds"] == pytest.approx(0.05)
    assert out["error_se_test"] == pytest.approx(bench._se([0.07, 0.13, 0.10, 0.10]))
    # WENO5 reaches 0.1 at sqrt(25 * 100) = 50 cells in 2 ms: coarsening 2, speed-up 2 ms / mean(2, 4) ms
    assert out["coarsening_factor_best"] == pytest.approx(2.0)
    assert out["speedup_best_single_cpu"] == pytest.approx(2.0 / 3.0)
    assert out["beats_best_same_nx_each"] == [4, 4] and out["stable_2x_horizon_all"]
    assert not out["target_4x_cells_met"] and not out["target_3x_faster_met"]
    runs["small@s1"]["stable_2x_horizon"] = False
    assert not bench._seed_summary(runs, cell, "WENO5")["stable_2x_horizon_all"]
