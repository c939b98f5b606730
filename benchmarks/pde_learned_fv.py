"""Learned-flux finite volumes against the best classical solver of each cell, at equal accuracy and cost.

For one equation (E1 by default) and the coarse grids of the trained models: the accumulated error (steps
50..nt-1, as the MP-PDE benchmark) and the relative L2 error at the final time against block-averaged references,
mean ± standard error over the test trajectories, with wall-clock *and CPU* seconds per trajectory (single
trajectory, and a batch of all test trajectories divided by their number) for

* the learned scheme(s) (:class:`compscope.pde.FastLearnedFV`, numba; the torch solver's single-trajectory time
  too), several models per grid allowed (``--model NX:LABEL=CKPT``, e.g. the small face net beside the CNN),
* WENO5 + SSP-RK3 (numba) at ``--classical-nx`` (25 ... 800), each block-averaged to the cell's grid,
* the pseudo-spectral IF-RK4 solver at ``--spectral-nx`` (NaN where it blows up at shocks),
* the learned correction of the spectral solver (:class:`compscope.pde.FastLearnedSpectral`: IF-RK4 + a learned
  conservative flux, numpy inside the spectral solver's own code; ``--spectral-model NX:LABEL=CKPT``),

all in the same run on the same cores. The reference (``--ref-solver``) is WENO5 at ``--ref-nx`` (1600) for
E1/E2 and the spectral solver at ``--ref-nx`` (800) for dispersive settings (E3: WENO5's explicit dispersive step
costs dx^3), block-averaged to each grid (the training data are WENO5 at nx = 200). Per cell: the classical grid
each solver needs for the learned error (log-log interpolation of its error against nx: the "coarsening
factor", against WENO5 and against the best classical solver of the cell), the speed ratio at equal error
(interpolated on each solver's error-runtime curve, wall and CPU), stability over twice the training horizon
(finite everywhere, total-variation growth), mass conservation in every rollout, the per-trajectory breakdown
(where the learned scheme loses to the best classical solver at the same grid), a ``headline`` block, and the
cost of each learned network (multiply-adds per face; its single-trajectory and batched time against WENO5's at
every classical grid, the weights moved to that grid: cost only). The spectral solver's cell averages are its
trigonometric interpolant's, so a spectral run whose grid does not nest in the cell's (nx = 25 or 64 in the cell
nx = 50, any grid in nx = 32) is scored by that interpolant's exact cell averages on the cell's grid
(:func:`compscope.pde.interpolant_cell_averages`, equal to block averaging where the grids nest); WENO5 runs are
block-averaged and enter only cells whose grid divides theirs. Writes
``benchmarks/results/pde_learned_fv_<EQ>.json`` and ``..._pareto.png``::

    nice -n 10 python -m benchmarks.pde_learned_fv --equation E1 \
        --model 25:small=/work/lfv-runs/e1_nx25_small/checkpoints/best.ckpt \
        --model 25:cnn=/work/lfv-runs/e1_nx25/checkpoints/best.ckpt
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

if not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import RESULTS, write_result  # noqa: E402

N0 = 50


def _se(x) -> float:
    x = np.asarray(x, dtype=float)
    return float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")


def _timed(fn, repeats: int) -> tuple[float, float]:
    """Best wall-clock and best CPU seconds (this process, all threads) of ``repeats`` calls."""
    wall = cpu = np.inf
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = min(wall, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
    return wall, cpu


def _timing(single, batched, B: int) -> dict:
    """Seconds per trajectory: single (one trajectory alone) and batched (B at once, divided by B)."""
    return {"s_per_traj_single": single[0], "cpu_s_per_traj_single": single[1],
            "s_per_traj_batched": batched[0] / B, "cpu_s_per_traj_batched": batched[1] / B}


def equal_error(runs: dict, err: float, key: str) -> dict:
    """A classical solver's grid and time (``key``) at the error ``err``, by log-log interpolation over its grids.

    Where ``err`` lies outside the solver's range: ``bound`` says ``"below_coarsest"`` (the solver is already
    more accurate at its coarsest grid: its grid and time there are upper bounds) or ``"above_finest"``.
    """
    pts = sorted((int(k), v) for k, v in runs.items() if np.isfinite(v["error"]) and v["error"] > 0)
    if not pts or not np.isfinite(err):
        return {"nx": None, "time": None, "bound": None}
    if pts[0][1]["error"] <= err:
        return {"nx": pts[0][0], "time": pts[0][1][key], "bound": "below_coarsest"}
    if min(v["error"] for _, v in pts) > err:
        return {"nx": None, "time": None, "bound": "above_finest"}
    ns, errs, ts = [k for k, _ in pts], [v["error"] for _, v in pts], [v[key] for _, v in pts]
    # the first crossing of the (monotone in practice) error curve
    for j in range(1, len(pts)):
        if errs[j] <= err:
            f = (np.log(err) - np.log(errs[j - 1])) / (np.log(errs[j]) - np.log(errs[j - 1]))
            return {"nx": float(np.exp(np.log(ns[j - 1]) + f * (np.log(ns[j]) - np.log(ns[j - 1])))),
                    "time": float(np.exp(np.log(ts[j - 1]) + f * (np.log(ts[j]) - np.log(ts[j - 1])))),
                    "bound": None}
    return {"nx": None, "time": None, "bound": "above_finest"}


def scores(pred: np.ndarray, ref: np.ndarray) -> dict:
    """Accumulated error and final relative L2 per trajectory, with their means and standard errors."""
    from compscope.pde import trajectory_errors

    if not np.isfinite(pred).all():
        return {"error": float("nan"), "error_se": float("nan"), "rel_l2_final": float("nan"),
                "rel_l2_final_se": float("nan"), "per_trajectory": None, "finite": False}
    acc = trajectory_errors(pred, ref, N0)
    rel = np.linalg.norm(pred[:, -1] - ref[:, -1], axis=-1) / np.linalg.norm(ref[:, -1], axis=-1)
    return {"error": float(acc.mean()), "error_se": _se(acc), "rel_l2_final": float(rel.mean()),
            "rel_l2_final_se": _se(rel), "per_trajectory": acc.tolist(), "rel_l2_per_trajectory": rel.tolist(),
            "finite": True}


def interp_loglog(x, y, at):
    """y at x = ``at`` on the log-log polyline through (x, y) sorted by x (None outside its range)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    x, y = x[ok], y[ok]
    if len(x) < 2 or not np.isfinite(at) or at <= 0:
        return None
    order = np.argsort(x)
    lx, ly = np.log(x[order]), np.log(y[order])
    la = np.log(at)
    if la < lx[0] or la > lx[-1]:
        return None
    return float(np.exp(np.interp(la, lx, ly)))


def total_variation_growth(u: np.ndarray, nt: int) -> np.ndarray:
    """Per trajectory: max TV over (tmax, 2 tmax] / max TV over [0, tmax]; u (B, 2 nt - 1, nx)."""
    tv = np.abs(np.diff(u, axis=-1, append=u[..., :1])).sum(-1)  # (B, T) periodic total variation
    return tv[:, nt:].max(1) / tv[:, :nt].max(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--equation", default="E1")
    ap.add_argument("--model", action="append", default=[],
                    help="NX=CKPT or NX:LABEL=CKPT of a trained learned-FV model (repeat; the first per grid is the "
                         "cell's headline model; labels NAME@s0, NAME@s1, ... are one network's training seeds, "
                         "summarised under cells/.../seeds/NAME)")
    ap.add_argument("--spectral-model", action="append", default=[],
                    help="NX:LABEL=CKPT of a trained learned spectral correction (compscope pde train-spectral); "
                         "listed before the --model entries of its grid (the first is the cell's headline)")
    ap.add_argument("--no-cost", action="store_true", help="skip the cost sweep (learned nets on other grids)")
    ap.add_argument("--classical-nx", default=None, help="WENO5 grids (default 25,...,800; E3 25,...,200)")
    ap.add_argument("--spectral-nx", default=None, help="spectral grids (default 25,50,100; E3 25,...,400)")
    ap.add_argument("--ref-solver", choices=("auto", "weno", "spectral"), default="auto",
                    help="auto: spectral where gamma can be nonzero (dispersive), else WENO5")
    ap.add_argument("--ref-nx", type=int, default=None, help="reference grid (default 1600 WENO5 / 800 spectral)")
    ap.add_argument("--cost-nx", default="25,50,100,200,400,800",
                    help="grids of the cost sweep (learned networks against WENO5; batched up to 200)")
    ap.add_argument("--n-test", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default=None)
    ap.add_argument("--name", default=None)
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--note", action="append", default=[])
    args = ap.parse_args()

    import numba
    import torch

    from compscope.pde import coarsen, forcing_cell_average, generate, get_equation, load_split

    torch.set_num_threads(1)
    eq = get_equation(args.equation)
    dispersive = eq.gamma[1] > 0
    ref_solver = args.ref_solver if args.ref_solver != "auto" else ("spectral" if dispersive else "weno")
    ref_nx = args.ref_nx or (800 if ref_solver == "spectral" else 1600)
    classical_nx = [int(v) for v in (args.classical_nx or ("25,50,100,200" if dispersive else
                                                           "25,50,100,200,400,800")).split(",")]
    spectral_nx = [int(v) for v in (args.spectral_nx or ("25,50,100,200,400" if dispersive else
                                                         "25,50,100")).split(",") if v]
    test = load_split(generate(eq.name, "test", args.n_test, args.seed, args.cache, progress=False), eq.nx_ref)
    p = test["params"]
    B = args.n_test
    farg = (p["alpha"], p["beta"], p["gamma"], eq.L, p["A"], p["omega"], p["phi"], p["l"])
    cond = np.stack([p["alpha"], p["beta"], p["gamma"]], 1)

    def u0_at(n):
        return np.stack([forcing_cell_average({k: p[k][b] for k in p}, eq.L, n, 0.0) for b in range(B)])

    runners = {"WENO5": _weno_runner(eq, farg), "spectral": _spectral_runner(eq, p)}
    t0 = time.perf_counter()
    ref_fine = runners["WENO5" if ref_solver == "weno" else "spectral"](u0_at(ref_nx), slice(None))
    ref_seconds = time.perf_counter() - t0
    if not np.isfinite(ref_fine).all():
        raise SystemExit(f"the {ref_solver} reference at nx={ref_nx} is not finite: choose --ref-solver weno")
    models: dict[int, list[tuple[str, str]]] = {}
    for m in args.model:
        key, path = m.split("=", 1)
        nx_s, _, label = key.partition(":")
        models.setdefault(int(nx_s), []).append((label or "learned", path))
    spectral_models: dict[int, list[tuple[str, str]]] = {}
    for m in args.spectral_model:
        key, path = m.split("=", 1)
        nx_s, _, label = key.partition(":")
        spectral_models.setdefault(int(nx_s), []).append((label or "spectral+learned", path))
    cells = sorted(set(models) | set(spectral_models)) or [25]
    # the stored nx = 200 data against our reference: what the training targets are worth
    data_err = {nx: scores(coarsen(test["u"].astype(float), nx, "block"), coarsen(ref_fine, nx, "block"))["error"]
                if eq.nx_ref % nx == 0 else None for nx in cells}

    classical: dict[str, dict[int, dict]] = {"WENO5": {}, "spectral": {}}
    preds: dict[str, dict[int, np.ndarray]] = {"WENO5": {}, "spectral": {}}
    for solver, grids in (("WENO5", classical_nx), ("spectral", spectral_nx)):
        run = runners[solver]
        for n in grids:
            u0 = u0_at(n)
            run(u0[:1], slice(0, 1))  # compile / warm up
            preds[solver][n] = run(u0, slice(None))
            reps = (5, 2) if n <= 400 else (2, 1)
            classical[solver][n] = _timing(_timed(lambda u0=u0, run=run: run(u0[:1], slice(0, 1)), reps[0]),
                                           _timed(lambda u0=u0, run=run: run(u0, slice(None)), reps[1]), B)

    from compscope.pde import FastLearnedFV, interpolant_cell_averages, load_learned_fv, load_learned_spectral

    out_cells = {}
    for nx in cells:
        ref = coarsen(ref_fine, nx, "block")
        cell = {"nx": nx, "classical": {}, "training_data_error": data_err[nx]}
        for solver, runs in classical.items():
            cell["classical"][solver] = {}
            for n, timing in runs.items():
                if solver == "spectral":  # its interpolant's exact cell averages on the cell's grid
                    sc = scores(interpolant_cell_averages(preds[solver][n], eq.L, nx) if n != nx
                                else preds[solver][n], ref)
                elif n % nx:
                    continue
                else:
                    sc = scores(coarsen(preds[solver][n], nx, "block"), ref)
                cell["classical"][solver][str(n)] = {**sc, **timing}
        # the best classical solver of the cell: the lower error at the cell's own grid
        same = {sv: r[str(nx)] for sv, r in cell["classical"].items() if str(nx) in r and r[str(nx)]["finite"]}
        best = min(same, key=lambda sv: same[sv]["error"]) if same else "WENO5"
        cell["best_classical"] = best
        variants = {}
        # the first entry of a grid is the cell's headline: the learned spectral correction where there is one
        entries = [(label, path, "spectral") for label, path in spectral_models.get(nx, [])]
        entries += [(label, path, "fv") for label, path in models.get(nx, [])]
        for label, path, kind in entries:
            if kind == "fv":
                fv = load_learned_fv(path, eq.name, nx)
                lv = _learned(fv, FastLearnedFV(fv), u0_at(nx), cond, p, eq, ref, farg)
            else:
                lv = _learned_spectral(load_learned_spectral(path, eq.name, nx), p, eq, ref, cond)
            lv["kind"] = kind
            lv["checkpoint"] = path
            lv["equal_error"] = {}
            lv["speedup_at_equal_error"] = {}
            for solver, runs in cell["classical"].items():
                for key in ("s_per_traj_single", "cpu_s_per_traj_single", "s_per_traj_batched",
                            "cpu_s_per_traj_batched"):
                    eqe = equal_error(runs, lv["error"], key)
                    if key == "s_per_traj_single":
                        lv["equal_error"][solver] = {"nx": eqe["nx"], "bound": eqe["bound"],
                                                     "coarsening_factor": None if eqe["nx"] is None
                                                     else eqe["nx"] / nx}
                    mode = key.replace("s_per_traj_", "")
                    lv["speedup_at_equal_error"][f"{solver}_{mode}"] = (
                        None if eqe["time"] is None else eqe["time"] / lv[key])
            lv["breakdown"] = _breakdown(lv, cell["classical"], nx, best, ref, p, B)
            variants[label] = lv
        if variants:
            first = next(iter(variants))
            cell["learned"] = variants[first]
            cell["learned_label"] = first
            cell["learned_variants"] = {k: v for k, v in variants.items() if k != first}
            lv = variants[first]
            cell["coarsening_factor"] = lv["equal_error"]["WENO5"]["coarsening_factor"]  # as before: vs WENO5
            cell["speedup_at_equal_error"] = lv["speedup_at_equal_error"]
            cell["per_trajectory"] = lv["breakdown"]
            cell["headline"] = {label: _headline(v, cell, best) for label, v in variants.items()}
            groups: dict[str, list[str]] = {}
            for label in variants:
                base, sep, sd = label.rpartition("@s")
                if sep and sd.isdigit():
                    groups.setdefault(base, []).append(label)
            cell["seeds"] = {base: _seed_summary({lb: variants[lb] for lb in labels}, cell, best)
                             for base, labels in groups.items()}
        out_cells[f"{eq.name}/nx{nx}"] = cell

    cost_nx = [int(v) for v in args.cost_nx.split(",") if v]
    cost = {} if args.no_cost else _cost_sweep(models, eq, cost_nx, u0_at, cond, p, runners)
    name = args.name or f"pde_learned_fv_{eq.name}"
    png = (RESULTS / "sweeps" if args.sweep else RESULTS) / f"{name}_pareto.png"
    _plot(out_cells, png, eq.name)
    notes = [f"reference: {ref_solver} at nx={ref_nx} block-averaged ({ref_seconds:.1f} s for {B} trajectories); "
             f"training data: WENO5 at nx={eq.nx_ref} block-averaged (their own error against this reference is "
             "training_data_error)", f"numba threads {numba.get_num_threads()}, torch threads 1; "
             "cpu_s_* are process CPU seconds (all threads), robust to the load of other jobs on a shared machine",
             *args.note]
    write_result(name, {"equation": eq.name, "n_test": B, "ref_solver": ref_solver, "ref_nx": ref_nx,
                        "given_steps": N0, "cells": out_cells, "cost": cost, "plot": png.name},
                 seed=args.seed, notes=notes, sweep=args.sweep)
    for key, cell in out_cells.items():
        print(key, "best classical:", cell["best_classical"])
        for label, h in cell.get("headline", {}).items():
            print("  ", label, h)
        for label, h in cell.get("seeds", {}).items():
            print("   seeds", label, {k: v for k, v in h.items() if not isinstance(v, (dict, list))})
        for solver, runs in cell["classical"].items():
            print("   ", solver, {k: (round(v["error"], 6) if np.isfinite(v["error"]) else None,
                                      f"{v['cpu_s_per_traj_single'] * 1e3:.2f} cpu-ms") for k, v in runs.items()})
    for label, c in cost.items():
        print("cost", label, c["macs_per_face"], {n: round(r["ratio_single_cpu"], 2) for n, r in c["grids"].items()})


def _weno_runner(eq, farg):
    from compscope.pde import weno_solve, weno_solve_batch

    def run(u0, sl):
        if u0.shape[0] == 1:
            b = sl.start or 0
            return weno_solve(u0[0], eq.times, *[a[b] for a in farg[:3]], eq.L, *[a[b] for a in farg[4:]])[0][None]
        return weno_solve_batch(u0, eq.times, *farg)

    return run


def _spectral_runner(eq, p):
    """The spectral solver from the point values of the initial forcing at the cell centres of ``u0``'s grid
    (it returns cell averages); NaN where it fails."""
    from compscope.pde import spectral_solve

    def run(u0, sl):
        n = u0.shape[-1]
        x = (np.arange(n) + 0.5) * eq.L / n
        q = {k: v[sl] for k, v in p.items()}
        kw = 2 * np.pi * q["l"][:, None, :] / eq.L
        pts = np.sum(q["A"][:, None, :] * np.sin(kw * x[None, :, None] + q["phi"][:, None, :]), -1)
        try:
            with np.errstate(all="ignore"):
                out = spectral_solve(pts, eq.times, q["alpha"], q["beta"], q["gamma"], eq.L, q["A"], q["omega"],
                                     q["phi"], q["l"])
        except FloatingPointError:
            out = None
        return np.full((pts.shape[0], eq.nt, n), np.nan) if out is None else out

    return run


def _breakdown(lv, classical, nx, best, ref, p, B) -> dict | None:
    """Per trajectory: the learned error against WENO5's and the best classical solver's at the same grid."""
    if lv["per_trajectory"] is None:
        return None
    mine = np.asarray(lv["per_trajectory"])
    tv_ref = np.abs(np.diff(ref[:, -1], axis=-1, append=ref[:, -1, :1])).sum(-1)
    out = {"n": B, "reference_final_tv": tv_ref.tolist(), "wave_numbers": p["l"].tolist(),
           "coefficients": np.stack([p["alpha"], p["beta"], p["gamma"]], 1).tolist()}
    for solver in ("WENO5", best):
        same = classical[solver].get(str(nx), {}).get("per_trajectory")
        if same is None:
            continue
        tag = "weno_same_nx" if solver == "WENO5" else "best_same_nx"
        lost = [b for b in range(B) if mine[b] > same[b]]
        out[f"learned_beats_{tag}"] = B - len(lost)
        out[f"loses_on_{tag}"] = lost
        out[f"ratio_to_{tag}"] = (mine / np.asarray(same)).tolist()
    # back-compatible names
    out["loses_on"] = out.get("loses_on_weno_same_nx")
    return out


def _headline(lv, cell, best) -> dict:
    """One cell's numbers against its targets (the issue: 4x the cells, 3x faster at equal error)."""
    eqb = lv["equal_error"].get(best, {})
    su = lv["speedup_at_equal_error"]
    same = cell["classical"][best].get(str(cell["nx"]), {})
    out = {"error": lv["error"], "error_se": lv["error_se"], "rel_l2_final": lv["rel_l2_final"],
           "macs_per_face": lv["macs_per_face"], "best_classical": best,
           "best_classical_error_same_nx": same.get("error"), "best_classical_error_se_same_nx": same.get("error_se"),
           "weno_error_same_nx": cell["classical"]["WENO5"].get(str(cell["nx"]), {}).get("error"),
           "coarsening_factor_weno": lv["equal_error"]["WENO5"]["coarsening_factor"],
           "coarsening_factor_best": eqb.get("coarsening_factor"), "coarsening_bound_best": eqb.get("bound"),
           "speedup_best_single_wall": su.get(f"{best}_single"), "speedup_best_single_cpu": su.get(f"{best}_cpu"
                                                                                                    "_single"),
           "speedup_best_batched_wall": su.get(f"{best}_batched"),
           "speedup_best_batched_cpu": su.get(f"{best}_cpu_batched"),
           "learned_cpu_ms_single": lv["cpu_s_per_traj_single"] * 1e3,
           "stable_2x_horizon": lv["stable_2x_horizon"], "mass_drift_max": lv["mass_drift_max"],
           "beats_best_same_nx_on": (lv["breakdown"] or {}).get(
               "learned_beats_best_same_nx" if best != "WENO5" else "learned_beats_weno_same_nx")}
    cf = out["coarsening_factor_best"]
    out["target_4x_cells_met"] = bool(cf is not None and eqb.get("bound") is None and cf >= 4)
    speeds = [out["speedup_best_single_cpu"], out["speedup_best_batched_cpu"]]
    out["target_3x_faster_met"] = bool(all(v is not None and v >= 3 for v in speeds) and eqb.get("bound") is None)
    return out


def _seed_summary(runs: dict, cell: dict, best: str) -> dict:
    """One network trained with several seeds (labels ``NAME@sK``): the error's mean over seeds with its standard
    error over seeds, and over test trajectories (of the per-trajectory error averaged over the seeds); the
    coarsening factor and the speed-up at equal error of the seed-mean error (the mean of the seeds' times); every
    seed's stability and mass drift."""
    errs = [v["error"] for v in runs.values()]
    out = {"seeds": list(runs), "errors": errs, "error_mean": float(np.mean(errs)), "error_se_seeds": _se(errs),
           "error_se_test_each": [v["error_se"] for v in runs.values()],
           "macs_per_face": next(iter(runs.values()))["macs_per_face"]}
    per = [v["per_trajectory"] for v in runs.values()]
    if all(p is not None for p in per):
        mean_traj = np.mean(np.asarray(per, dtype=float), 0)
        out["error_se_test"] = _se(mean_traj)
        same = cell["classical"][best].get(str(cell["nx"]), {}).get("per_trajectory")
        if same is not None:
            out["beats_best_same_nx_each"] = [int(np.sum(np.asarray(p) < np.asarray(same))) for p in per]
    out["equal_error"], out["speedup_at_equal_error"] = {}, {}
    for solver, classical in cell["classical"].items():
        for key in ("s_per_traj_single", "cpu_s_per_traj_single", "s_per_traj_batched", "cpu_s_per_traj_batched"):
            eqe = equal_error(classical, out["error_mean"], key)
            if key == "s_per_traj_single":
                out["equal_error"][solver] = {"nx": eqe["nx"], "bound": eqe["bound"], "coarsening_factor":
                                              None if eqe["nx"] is None else eqe["nx"] / cell["nx"]}
            mine = float(np.mean([v[key] for v in runs.values()]))
            out["speedup_at_equal_error"][f"{solver}_{key.replace('s_per_traj_', '')}"] = (
                None if eqe["time"] is None else eqe["time"] / mine)
    eqb = out["equal_error"].get(best, {})
    su = out["speedup_at_equal_error"]
    out["best_classical"] = best
    out["coarsening_factor_best"] = eqb.get("coarsening_factor")
    out["coarsening_bound_best"] = eqb.get("bound")
    out["coarsening_factor_weno"] = out["equal_error"]["WENO5"]["coarsening_factor"]
    out["speedup_best_single_cpu"] = su.get(f"{best}_cpu_single")
    out["speedup_best_batched_cpu"] = su.get(f"{best}_cpu_batched")
    out["learned_cpu_ms_single"] = float(np.mean([v["cpu_s_per_traj_single"] for v in runs.values()])) * 1e3
    out["stable_2x_horizon_all"] = bool(all(v["stable_2x_horizon"] for v in runs.values()))
    tv = [max(v["tv_growth_2x"]) for v in runs.values() if v.get("tv_growth_2x")]
    out["tv_growth_2x_max"] = max(tv) if tv else None
    drift = [v["mass_drift_max"] for v in runs.values() if v.get("mass_drift_max") is not None]
    out["mass_drift_max"] = max(drift) if len(drift) == len(runs) else None
    cf = out["coarsening_factor_best"]
    out["target_4x_cells_met"] = bool(cf is not None and eqb.get("bound") is None and cf >= 4)
    speeds = [out["speedup_best_single_cpu"], out["speedup_best_batched_cpu"]]
    out["target_3x_faster_met"] = bool(all(v is not None and v >= 3 for v in speeds) and eqb.get("bound") is None)
    return out


def _cost_sweep(models, eq, grids, u0_at, cond, p, runners) -> dict:
    """Each learned network's rollout time on every grid (the weights moved there: cost only) against WENO5's:
    single trajectory at every grid, batched up to nx = 200, wall and CPU."""
    import torch

    from compscope.pde import FastLearnedFV, LearnedFluxFV, load_learned_fv

    f = [p[k] for k in ("A", "omega", "phi", "l")]
    out = {}
    for nx, entries in models.items():
        for label, path in entries:
            fv = load_learned_fv(path, eq.name, nx)
            key = f"{label}@nx{nx}"
            out[key] = {"macs_per_face": fv.macs_per_face(), "model": fv.config, "grids": {}}
            for n in grids:
                other = LearnedFluxFV(**{**fv.config, "nx": n})
                with torch.no_grad():
                    other.load_state_dict(fv.state_dict())
                fast = FastLearnedFV(other)
                u0 = u0_at(n)
                fast.solve(u0[:1], eq.times[:3], cond[:1], *[a[:1] for a in f])  # compile
                Bn = u0.shape[0] if n <= 200 else 0
                reps = 3 if n <= 200 else 1
                ls = _timed(lambda u0=u0, fast=fast: fast.solve(u0[:1], eq.times, cond[:1], *[a[:1] for a in f],
                                                                parallel=False), reps)
                ws = _timed(lambda u0=u0: runners["WENO5"](u0[:1], slice(0, 1)), reps)
                row = {"learned_single_wall": ls[0], "learned_single_cpu": ls[1], "weno_single_wall": ws[0],
                       "weno_single_cpu": ws[1], "ratio_single_cpu": ls[1] / ws[1]}
                if Bn:
                    lb = _timed(lambda u0=u0, fast=fast: fast.solve(u0, eq.times, cond, *f), 1)
                    wb = _timed(lambda u0=u0: runners["WENO5"](u0, slice(None)), 1)
                    row.update(learned_batched_wall=lb[0] / Bn, learned_batched_cpu=lb[1] / Bn,
                               weno_batched_wall=wb[0] / Bn, weno_batched_cpu=wb[1] / Bn,
                               ratio_batched_cpu=lb[1] / wb[1])
                out[key]["grids"][str(n)] = row
    return out


def _learned(fv, fast, u0, cond, p, eq, ref, farg) -> dict:
    """The learned scheme on one cell: scores, timings (compiled and torch), 2x-horizon stability, mass."""
    import torch

    from compscope.pde import weno_solve_batch

    B, nx = u0.shape
    f = [p[k] for k in ("A", "omega", "phi", "l")]
    fast.solve(u0[:1], eq.times[:3], cond[:1], *[a[:1] for a in f])  # compile
    try:
        sc = scores(fast.solve(u0, eq.times, cond, *f), ref)
    except Exception as err:  # a blow-up (RolloutDivergedError) is a result, not a crash
        sc = {**scores(np.full((B, eq.nt, nx), np.nan), ref), "diverged": str(err)}
    timing = _timing(_timed(lambda: fast.solve(u0[:1], eq.times, cond[:1], *[a[:1] for a in f], parallel=False),
                            5),
                     _timed(lambda: fast.solve(u0, eq.times, cond, *f), 2), B)
    with torch.no_grad():
        torch_single = _timed(lambda: fv.solve(u0[0], eq.times, cond[:1], {k: p[k][:1] for k in
                                                                           ("A", "omega", "phi", "l")}), 1)
    times2 = np.linspace(0.0, 2 * eq.tmax, 2 * eq.nt - 1)
    try:
        long = fast.solve(u0, times2, cond, *f)
        stable = bool(np.isfinite(long).all())
    except Exception:
        long, stable = None, False
    w_long = weno_solve_batch(u0, times2, *farg)

    def mass(u):
        return u.sum(-1) * (eq.L / nx)

    return {**sc, **timing, "s_per_traj_single_torch": torch_single[0], "cpu_s_per_traj_single_torch":
            torch_single[1], "model": fv.config, "macs_per_face": fv.macs_per_face(),
            "parameters": sum(q.numel() for q in fv.parameters()), "stable_2x_horizon": stable,
            "tv_growth_2x": total_variation_growth(long, eq.nt).tolist() if stable else None,
            "weno_tv_growth_2x": total_variation_growth(w_long, eq.nt).tolist(),
            "mass_drift_max": float(np.abs(mass(long) - mass(long[:, :1])).max()) if stable else None,
            "mass_drift_max_weno": float(np.abs(mass(w_long) - mass(w_long[:, :1])).max())}


def _learned_spectral(model, p, eq, ref, cond) -> dict:
    """The learned spectral correction on one cell (numpy, inside the spectral solver): scores, timings,
    2x-horizon stability and total variation, mass drift. ``macs_per_face`` holds its multiply-adds per grid
    point and right-hand side (the closure; the FFTs, common with the classical solver, not counted)."""
    from compscope.pde import FastLearnedSpectral, spectral_forcing_points

    fast = FastLearnedSpectral(model)
    B, nx = cond.shape[0], model.nx
    f = [p[k] for k in ("A", "omega", "phi", "l")]
    u0 = spectral_forcing_points(p, eq.L, nx)

    def run(times, b=None):
        sl = slice(None) if b is None else slice(b, b + 1)
        try:
            with np.errstate(all="ignore"):
                return fast.solve(u0[sl], times, cond[sl], *[a[sl] for a in f])
        except FloatingPointError:
            return np.full((u0[sl].shape[0], len(times), nx), np.nan)

    sc = scores(run(eq.times), ref)
    timing = _timing(_timed(lambda: run(eq.times, 0), 5), _timed(lambda: run(eq.times), 2), B)
    times2 = np.linspace(0.0, 2 * eq.tmax, 2 * eq.nt - 1)
    long = run(times2)
    stable = bool(np.isfinite(long).all())
    mass = long.sum(-1) * (eq.L / nx)
    return {**sc, **timing, "model": model.config, "macs_per_face": model.macs_per_point(),
            "parameters": sum(q.numel() for q in model.parameters()), "stable_2x_horizon": stable,
            "tv_growth_2x": total_variation_growth(long, eq.nt).tolist() if stable else None,
            "mass_drift_max": float(np.abs(mass - mass[:, :1]).max()) if stable else None}


def _plot(cells: dict, path: Path, equation: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(cells), figsize=(6 * len(cells), 4.8), squeeze=False)
    for ax, (key, cell) in zip(axes[0], cells.items(), strict=True):
        for solver, style in (("WENO5", "o-"), ("spectral", "s--")):
            runs = cell["classical"][solver]
            pts = sorted((int(k), v) for k, v in runs.items() if np.isfinite(v["error"]) and v["error"] > 0)
            if pts:
                ax.loglog([v["cpu_s_per_traj_single"] for _, v in pts], [v["error"] for _, v in pts], style,
                          label=f"{solver} (nx " + ",".join(str(k) for k, _ in pts) + ")")
                for k, v in pts:
                    ax.annotate(str(k), (v["cpu_s_per_traj_single"], v["error"]), fontsize=7)
        variants = {cell.get("learned_label", "learned"): cell["learned"]} if "learned" in cell else {}
        variants.update(cell.get("learned_variants", {}))
        for (label, lv), marker in zip(variants.items(), ("r*", "mP", "gX", "cD"), strict=False):
            if np.isfinite(lv["error"]):
                what = ("spectral + learned closure", "MACs/point") if lv.get("kind") == "spectral" else (
                    "learned FV", "MACs/face")
                ax.errorbar([lv["cpu_s_per_traj_single"]], [lv["error"]], yerr=[lv["error_se"]], fmt=marker, ms=12,
                            label=f"{what[0]} '{label}' nx {cell['nx']} ({lv['macs_per_face']} {what[1]})")
        ax.set_xlabel("CPU s per trajectory (single, 1 thread)")
        ax.set_ylabel("accumulated error vs reference")
        ax.set_title(key)
        ax.legend(fontsize=7)
    fig.suptitle(f"{equation}: error vs cost (lower left is better)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
