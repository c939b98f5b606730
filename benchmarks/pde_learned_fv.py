"""Learned-flux finite volumes against the best classical solver of each cell, at equal accuracy and cost.

For one equation (E1 by default) and the coarse grids of the trained models: the accumulated error (steps
50..nt-1, as the MP-PDE benchmark) and the relative L2 error at the final time against block-averaged references,
mean ± standard error over the test trajectories, with wall-clock per trajectory (single trajectory, and a batch
of all test trajectories divided by their number) for

* the learned scheme (:class:`compscope.pde.FastLearnedFV`, numba; the torch solver's single-trajectory time too),
* WENO5 + SSP-RK3 (numba) at ``--classical-nx`` (25 ... 400), each block-averaged to the cell's grid,
* the pseudo-spectral IF-RK4 solver at the same grids (NaN where it blows up at shocks),

all in the same run on the same cores. The reference is WENO5 at ``--ref-nx`` (800) block-averaged to each grid
(the training data are WENO5 at nx = 200). Also: the classical resolution the learned error corresponds to
(log-log interpolation of WENO5's error against nx: the "coarsening factor"), the speed ratio at equal error
against the best classical solver (interpolated on its error-runtime curve), stability over twice the training
horizon (finite everywhere, total-variation growth) and mass conservation in every rollout, and the per-trajectory
breakdown (where the learned scheme loses to WENO5 at the same grid). Writes
``benchmarks/results/pde_learned_fv_<EQ>.json`` and ``..._pareto.png``::

    nice -n 10 python -m benchmarks.pde_learned_fv --equation E1 --model 25=/work/lfv-runs/e1_nx25/checkpoints/best.ckpt
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


def _timed(fn, repeats: int) -> float:
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


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
    ap.add_argument("--model", action="append", default=[], help="NX=CHECKPOINT of a trained learned-FV model "
                                                                 "(repeat for several grids)")
    ap.add_argument("--classical-nx", default="25,50,100,200,400")
    ap.add_argument("--spectral-nx", default="25,50,100", help="grids of the spectral solver (it rings at shocks: "
                                                                "on E1 it loses to WENO5 everywhere)")
    ap.add_argument("--ref-nx", type=int, default=800)
    ap.add_argument("--n-test", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default=None)
    ap.add_argument("--name", default=None)
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--note", action="append", default=[])
    args = ap.parse_args()

    import numba
    import torch

    from compscope.pde import (
        FastLearnedFV,
        coarsen,
        forcing_cell_average,
        generate,
        get_equation,
        load_learned_fv,
        load_split,
        spectral_solve,
        weno_solve,
        weno_solve_batch,
    )

    torch.set_num_threads(1)
    eq = get_equation(args.equation)
    test = load_split(generate(eq.name, "test", args.n_test, args.seed, args.cache, progress=False), eq.nx_ref)
    p = test["params"]
    B = args.n_test
    farg = (p["alpha"], p["beta"], p["gamma"], eq.L, p["A"], p["omega"], p["phi"], p["l"])

    def u0_at(n):
        return np.stack([forcing_cell_average({k: p[k][b] for k in p}, eq.L, n, 0.0) for b in range(B)])

    t0 = time.perf_counter()
    ref_fine = weno_solve_batch(u0_at(args.ref_nx), eq.times, *farg)  # (B, nt, ref_nx)
    ref_seconds = time.perf_counter() - t0
    models = {int(k): v for k, v in (m.split("=", 1) for m in args.model)}
    cells = sorted(models) or [25]
    classical_nx = [int(v) for v in args.classical_nx.split(",")]
    spectral_nx = [int(v) for v in args.spectral_nx.split(",") if v]
    cond = np.stack([p["alpha"], p["beta"], p["gamma"]], 1)
    # the stored nx = 200 data against our reference: what the training targets are worth
    data_err = {nx: scores(coarsen(test["u"].astype(float), nx, "block"), coarsen(ref_fine, nx, "block"))["error"]
                for nx in cells}

    classical: dict[str, dict[int, dict]] = {"WENO5": {}, "spectral": {}}
    preds: dict[str, dict[int, np.ndarray]] = {"WENO5": {}, "spectral": {}}
    for n in classical_nx:
        u0 = u0_at(n)
        weno_solve(u0[0], eq.times, *[a[0] for a in farg[:3]], eq.L, *[a[0] for a in farg[4:]])  # compile
        preds["WENO5"][n] = weno_solve_batch(u0, eq.times, *farg)
        classical["WENO5"][n] = {
            "s_per_traj_batched": _timed(lambda u0=u0: weno_solve_batch(u0, eq.times, *farg), 2) / B,
            "s_per_traj_single": _timed(lambda u0=u0: weno_solve(u0[0], eq.times, *[a[0] for a in farg[:3]], eq.L,
                                                                 *[a[0] for a in farg[4:]]), 5)}
        if n not in spectral_nx:
            continue
        x = (np.arange(n) + 0.5) * eq.L / n
        kw = 2 * np.pi * p["l"][:, None, :] / eq.L
        pts = np.sum(p["A"][:, None, :] * np.sin(kw * x[None, :, None] + p["phi"][:, None, :]), -1)

        def spec(sl=slice(None), pts=pts):
            return spectral_solve(pts[sl], eq.times, p["alpha"][sl], p["beta"][sl], p["gamma"][sl], eq.L,
                                  p["A"][sl], p["omega"][sl], p["phi"][sl], p["l"][sl])

        try:
            with np.errstate(all="ignore"):
                preds["spectral"][n] = spec()
        except FloatingPointError:
            preds["spectral"][n] = np.full((B, eq.nt, n), np.nan)
        classical["spectral"][n] = {"s_per_traj_batched": _timed(lambda spec=spec: _quiet(spec), 1) / B,
                                    "s_per_traj_single": _timed(lambda spec=spec: _quiet(spec, slice(0, 1)), 1)}

    out_cells = {}
    for nx in cells:
        ref = coarsen(ref_fine, nx, "block")
        cell = {"nx": nx, "classical": {}, "training_data_error": data_err[nx]}
        for solver, runs in classical.items():
            cell["classical"][solver] = {}
            for n, timing in runs.items():
                if n % nx:
                    continue
                sc = scores(coarsen(preds[solver][n], nx, "block"), ref)
                cell["classical"][solver][str(n)] = {**sc, **timing}
        if nx in models:
            fv = load_learned_fv(models[nx], eq.name, nx)
            learned = _learned(fv, FastLearnedFV(fv), u0_at(nx), cond, p, eq, ref, farg)
            learned["checkpoint"] = models[nx]
            sc = learned
            cell["learned"] = learned
            w = cell["classical"]["WENO5"]
            ns = sorted(int(k) for k in w)
            errs = [w[str(k)]["error"] for k in ns]
            n_eq = interp_loglog(errs, ns, sc["error"])  # WENO5's grid at the learned error
            cell["weno_nx_at_learned_error"] = n_eq
            cell["coarsening_factor"] = None if n_eq is None else n_eq / nx
            ratios = {}
            for solver, runs in cell["classical"].items():
                e = [runs[k]["error"] for k in runs]
                for mode in ("single", "batched"):
                    t_eq = interp_loglog(e, [runs[k][f"s_per_traj_{mode}"] for k in runs], sc["error"])
                    ratios[f"{solver}_{mode}"] = None if t_eq is None else t_eq / learned[f"s_per_traj_{mode}"]
            cell["speedup_at_equal_error"] = ratios
            same = w[str(nx)]["per_trajectory"] if str(nx) in w else None
            if same is not None and sc["per_trajectory"] is not None:
                lost = [b for b in range(B) if sc["per_trajectory"][b] > same[b]]
                tv_ref = np.abs(np.diff(ref[:, -1], axis=-1, append=ref[:, -1, :1])).sum(-1)
                cell["per_trajectory"] = {
                    "learned_beats_weno_same_nx": B - len(lost), "n": B, "loses_on": lost,
                    "ratio_to_weno_same_nx": (np.asarray(sc["per_trajectory"]) / np.asarray(same)).tolist(),
                    "reference_final_tv": tv_ref.tolist(), "wave_numbers": p["l"].tolist()}
        out_cells[f"{eq.name}/nx{nx}"] = cell

    name = args.name or f"pde_learned_fv_{eq.name}"
    png = (RESULTS / "sweeps" if args.sweep else RESULTS) / f"{name}_pareto.png"
    _plot(out_cells, png, eq.name)
    notes = [f"reference: WENO5 at nx={args.ref_nx} block-averaged ({ref_seconds:.1f} s for {B} trajectories); "
             f"training data: WENO5 at nx={eq.nx_ref} block-averaged (their own error against this reference is "
             f"training_data_error)", f"numba threads {numba.get_num_threads()}, torch threads 1",
             *args.note]
    write_result(name, {"equation": eq.name, "n_test": B, "ref_nx": args.ref_nx, "given_steps": N0,
                        "cells": out_cells, "plot": png.name}, seed=args.seed, notes=notes, sweep=args.sweep)
    for key, cell in out_cells.items():
        line = {k: cell.get(k) for k in ("coarsening_factor", "speedup_at_equal_error")}
        print(key, "learned", cell.get("learned", {}).get("error"), line)
        for solver, runs in cell["classical"].items():
            print("   ", solver, {k: (round(v["error"], 6) if np.isfinite(v["error"]) else None,
                                      f"{v['s_per_traj_single'] * 1e3:.1f} ms") for k, v in runs.items()})


def _learned(fv, fast, u0, cond, p, eq, ref, farg) -> dict:
    """The learned scheme on one cell: scores, timings (compiled and torch), 2x-horizon stability, mass."""
    import torch

    from compscope.pde import weno_solve_batch

    B, nx = u0.shape
    f = [p[k] for k in ("A", "omega", "phi", "l")]
    fast.solve(u0[:1], eq.times[:3], cond[:1], *[a[:1] for a in f])  # compile
    sc = scores(fast.solve(u0, eq.times, cond, *f), ref)
    single = _timed(lambda: fast.solve(u0[:1], eq.times, cond[:1], *[a[:1] for a in f], parallel=False), 5)
    batched = _timed(lambda: fast.solve(u0, eq.times, cond, *f), 2) / B
    with torch.no_grad():
        torch_single = _timed(lambda: fv.solve(u0[0], eq.times, cond[:1], {k: p[k][:1] for k in
                                                                           ("A", "omega", "phi", "l")}), 1)
    times2 = np.linspace(0.0, 2 * eq.tmax, 2 * eq.nt - 1)
    try:
        long = fast.solve(u0, times2, cond, *f)
        stable = bool(np.isfinite(long).all())
    except FloatingPointError:
        long, stable = None, False
    w_long = weno_solve_batch(u0, times2, *farg)

    def mass(u):
        return u.sum(-1) * (eq.L / nx)

    return {**sc, "s_per_traj_single": single, "s_per_traj_batched": batched,
            "s_per_traj_single_torch": torch_single, "model": fv.config,
            "parameters": sum(q.numel() for q in fv.parameters()), "stable_2x_horizon": stable,
            "tv_growth_2x": total_variation_growth(long, eq.nt).tolist() if stable else None,
            "weno_tv_growth_2x": total_variation_growth(w_long, eq.nt).tolist(),
            "mass_drift_max": float(np.abs(mass(long) - mass(long[:, :1])).max()) if stable else None,
            "mass_drift_max_weno": float(np.abs(mass(w_long) - mass(w_long[:, :1])).max())}


def _quiet(fn, *a):
    try:
        with np.errstate(all="ignore"):
            return fn(*a)
    except FloatingPointError:
        return None


def _plot(cells: dict, path: Path, equation: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(cells), figsize=(5.5 * len(cells), 4.5), squeeze=False)
    for ax, (key, cell) in zip(axes[0], cells.items(), strict=True):
        for solver, style in (("WENO5", "o-"), ("spectral", "s--")):
            runs = cell["classical"][solver]
            pts = sorted((int(k), v) for k, v in runs.items() if np.isfinite(v["error"]) and v["error"] > 0)
            if pts:
                ax.loglog([v["s_per_traj_single"] for _, v in pts], [v["error"] for _, v in pts], style,
                          label=f"{solver} (nx " + ",".join(str(k) for k, _ in pts) + ")")
                for k, v in pts:
                    ax.annotate(str(k), (v["s_per_traj_single"], v["error"]), fontsize=7)
        if "learned" in cell:
            lv = cell["learned"]
            ax.loglog([lv["s_per_traj_single"]], [lv["error"]], "r*", ms=14, label=f"learned FV nx {cell['nx']}")
        ax.set_xlabel("s per trajectory (single)")
        ax.set_ylabel("accumulated error vs reference")
        ax.set_title(key)
        ax.legend(fontsize=7)
    fig.suptitle(f"{equation}: error vs runtime (lower left is better)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
