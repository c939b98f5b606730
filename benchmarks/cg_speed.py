"""CG speed (issue #22): the dense CG MD engine against all-atom OpenMM, implicit and explicit solvent, in one run.

Everything runs in this process on one thread (``COMPSCOPE_NUM_THREADS=1``; OpenMM's CPU platform with one thread),
and every speed is given by wall clock and by this process's CPU clock (the machine is shared: CPU seconds are the
fair measure, wall seconds what a user waits):

- all-atom alanine dipeptide, amber14 + OBC2 implicit solvent (the reference's setup) and amber14 + TIP3P/PME
  explicit solvent, 2 fs steps (:func:`compscope.md.reference.implicit_solvent_speed` / ``explicit_solvent_speed``);
- the CG models (5 backbone beads) on :func:`compscope.md.simulate_dense` for 10 and 100 replicas: the fast model
  (prior + CGnet-style MLP, fused kernel) and the equivariant one, plus the old per-step path
  (:func:`compscope.md.simulate`, graph engine) of the equivariant model as the "before";
- sampling: the basin-indicator ESS (``compscope.analysis``; slow basin ``1[0 < phi < 2.2]`` and, as a faster
  observable, ``alpha_R``) of 10 CG replicas of the fast model per CPU and wall second, against the all-atom
  implicit-solvent MD of the reference file (its replicas as chains): its ESS per simulated ns times the all-atom
  speed measured in this run (CPU clock), and per second of the reference campaign's own wall time.
- the best all-atom implicit-solvent samplers for the slow basin (``--dense-ref``, ``--remd-cpu-s``): MD on the
  dense engine (numba amber14 + OBC2, flexible X-H, hydrogens 3.024 amu, 2 fs; its ESS from the 1 µs reference it
  made, per CPU second at the speed measured here for 200 replicas) and replica exchange (openmmtools, 4
  temperatures 300-1000 K, 0.5 ps exchanges, 2 fs with H bonds rigid, CPU platform one thread, the best vacuum
  setting of ``sampling_largestep``) run here for ``--remd-cpu-s`` CPU seconds (saved in WORK/remd_obc, reused and
  extended by a rerun). Slow-basin ESS by the two-state estimate (``compscope.analysis.ess_two_state``: counted
  entries and exits; the autocorrelation estimators see chain lengths when transitions are few) and by Timewarp's
  first-zero estimator, for every sampler; the headline ratio divides CG by the best all-atom sampler.

Usage::

    python -m benchmarks.cg_speed --cg cg.h5 --fast runs/cg_fast/model.pt --equivariant runs/cg_dfm/model.pt \\
        --ref ala2_obc.h5 --name cg_speed
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._common import reference_core_seconds, reference_ns, write_result


def _starts(model, cg_file: Path, replicas: int, seed: int) -> list:
    from ase import Atoms

    from compscope.cg import load_cg

    frames = np.concatenate(load_cg(cg_file).positions)
    pick = np.random.default_rng(seed).choice(len(frames), size=replicas, replace=len(frames) < replicas)
    return [Atoms(numbers=model.atomic_numbers, positions=frames[i]) for i in pick]


def _speed(res, replicas: int, steps: int, dt: float) -> dict:
    ns_all = res.ns_per_day * replicas
    return {"replicas": replicas, "steps": steps, "dt_fs": dt, "n_stable": res.n_stable, "wall_s": res.wall_s,
            "cpu_s": res.cpu_s, "ns_per_day_all_replicas_wall": ns_all,
            "ns_per_day_all_replicas_cpu": None if res.ns_per_day_cpu is None else res.ns_per_day_cpu * replicas,
            "ns_per_wall_second_all_replicas": ns_all / 86400.0,
            "cpu_us_per_step": None if res.cpu_s is None else res.cpu_s / max(steps, 1) * 1e6,
            "wall_us_per_step": res.wall_s / max(steps, 1) * 1e6}


def _basins(phi: np.ndarray, psi: np.ndarray) -> dict:
    """ESS and population of the slow-basin and alpha_R indicators of chains (n_chains, n_frames)."""
    from compscope.analysis import ALANINE_DIPEPTIDE_BASINS, basin_indicator, effective_sample_size, ess_two_state

    alpha = next(b for b in ALANINE_DIPEPTIDE_BASINS if b.name == "alpha_R")
    slow = basin_indicator(phi)
    a = alpha.contains(phi, psi).astype(np.float64)
    two = ess_two_state(slow.astype(np.float64))
    return {"slow_basin_ess": effective_sample_size(slow), "slow_basin_population": float(slow.mean()),
            "slow_basin_ess_two_state": two["ess"], "slow_basin_entries": two["n01"], "slow_basin_exits": two["n10"],
            "alpha_R_ess": effective_sample_size(a), "alpha_R_population": float(a.mean()),
            "frames": int(phi.size), "chains": int(phi.shape[0])}


def _dense_allatom(dense_ref: Path, seed: int) -> dict:
    """Slow-basin ESS of the dense-engine all-atom reference per CPU second, at the dense engine's speed measured
    here (200 flexible replicas, hydrogens 3.024 amu, 2 fs, 1000 steps after a 200-step warm-up)."""
    import warnings

    from benchmarks.md_obc_numba import dense_alanine_obc
    from benchmarks.md_reference_dense import read_dense
    from compscope.md import simulate_dense

    phi, psi, meta = read_dense(dense_ref)
    out = _basins(phi, psi)
    out["reference_complete"] = meta["complete"]
    pot, atoms = dense_alanine_obc(3.024)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the engine's rule-of-thumb step for 3 amu hydrogens
        res = simulate_dense(pot, atoms, steps=1200, dt=2.0, temperature=300.0, replicas=200, friction=0.001,
                             seed=seed)
    ns_day = res.ns_per_day_cpu * 200
    cpu_s = phi.size * meta["frame_ps"] / 1000.0 / ns_day * 86400.0
    out.update(ns_total=phi.size * meta["frame_ps"] / 1000.0, ns_per_day_all_replicas_cpu=ns_day,
               cpu_s_at_this_run_speed=cpu_s, slow_basin_ess_per_cpu_s=out["slow_basin_ess"] / cpu_s,
               slow_basin_ess_two_state_per_cpu_s=out["slow_basin_ess_two_state"] / cpu_s,
               alpha_R_ess_per_cpu_s=out["alpha_R_ess"] / cpu_s,
               note="MD of the dense engine (numba amber14 + OBC2, flexible X-H, H 3.024 amu, BAOAB 2 fs, 1/ps); "
                    "the ESS of the 1 us it produced, per CPU second at its speed measured in this run")
    return out


#: the implicit-solvent replica exchange of this benchmark (and of ``ala2_remd_starts``): 4 temperatures 300-1000 K,
#: 0.5 ps exchanges, 2 fs with H bonds rigid, amber14 + OBC2, OpenMM CPU platform
REMD_OBC_SETTING = {"n_replicas": 4, "t_max": 1000.0, "timestep_fs": 2.0, "steps_per_iteration": 250,
                    "constraints": "HBonds", "solvent": "obc", "platform": "CPU"}


def remd_obc_spec(run_dir: Path, seed: int) -> dict:
    """The :func:`compscope.sampling.run_replica_exchange` spec of one such run in ``run_dir``."""
    from compscope.sampling import ALA2_REFERENCE_DEFAULTS

    return {**ALA2_REFERENCE_DEFAULTS, "checkpoint_interval": 20, **REMD_OBC_SETTING, "t_min": 300.0,
            "n_iterations": 10**7, "seed": seed, "run": 0, "dir": str(run_dir)}


def _remd_obc(work: Path, cpu_s: float, seed: int) -> dict:
    """Implicit-solvent replica exchange (openmmtools) run here for ``cpu_s`` CPU seconds in total (a rerun
    continues the saved run up to a larger budget): the 300 K replica's slow-basin and alpha_R ESS per CPU second of
    the whole run (set-up and the dropped first 10 % of iterations included)."""
    from compscope.analysis import ALANINE_DIPEPTIDE_PHI, ALANINE_DIPEPTIDE_PSI, dihedral_angles
    from compscope.sampling import read_replica_exchange_run, run_replica_exchange

    setting = REMD_OBC_SETTING
    spec = remd_obc_spec(work / "remd_obc" / "run_00", seed)
    prog = run_replica_exchange(spec, max_cpu_s=cpu_s)
    n_it = int(prog["iterations"])
    data = read_replica_exchange_run(spec["dir"], n_it // 10)
    pos = data["positions"]
    phi, psi = dihedral_angles(pos, ALANINE_DIPEPTIDE_PHI), dihedral_angles(pos, ALANINE_DIPEPTIDE_PSI)
    out = _basins(np.atleast_2d(phi), np.atleast_2d(psi))
    run_cpu = float(prog["cpu_s"] + prog.get("setup_cpu_s", 0.0))
    out.update(setting={k: v for k, v in setting.items()}, iterations=n_it, burn_in_iterations=n_it // 10,
               exchange_interval_ps=0.5, cpu_s=run_cpu, wall_s=float(prog["wall_s"] + prog.get("setup_wall_s", 0.0)),
               exchange_acceptance=[round(float(a), 4) for a in data["acceptance"]],
               slow_basin_ess_per_cpu_s=out["slow_basin_ess"] / run_cpu,
               slow_basin_ess_two_state_per_cpu_s=out["slow_basin_ess_two_state"] / run_cpu,
               alpha_R_ess_per_cpu_s=out["alpha_R_ess"] / run_cpu)
    return out


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cg", required=True, help="a `compscope cg map` file (start frames)")
    ap.add_argument("--fast", required=True, help="CG model without message passing (model.feature_net)")
    ap.add_argument("--equivariant", default=None, help="CG model with the equivariant network (optional)")
    ap.add_argument("--ref", required=True, help="the all-atom implicit-solvent reference HDF5 (ESS, its timing)")
    ap.add_argument("--replicas", type=int, nargs="+", default=[10, 100])
    ap.add_argument("--steps", type=int, default=20000, help="steps of the fast model's speed runs")
    ap.add_argument("--equivariant-steps", type=int, default=400)
    ap.add_argument("--dt", type=float, default=4.0)
    ap.add_argument("--openmm-seconds", type=float, default=60.0)
    ap.add_argument("--ess-ns", type=float, default=1.0, help="ns per CG replica of the ESS run (10 replicas)")
    ap.add_argument("--dense-ref", default=None,
                    help="the dense-engine all-atom reference (compscope md reference --engine dense; while it "
                         "runs, its run folder is read): its ESS")
    ap.add_argument("--remd-cpu-s", type=float, default=0.0, help="CPU seconds of implicit-solvent replica exchange")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="cg_speed")
    ap.add_argument("--work", default=None)
    args = ap.parse_args(argv)

    import h5py
    import torch

    from compscope.cg import backbone_dihedrals
    from compscope.md import simulate, simulate_dense
    from compscope.md.reference import explicit_solvent_speed, implicit_solvent_speed
    from compscope.models.artifacts import load_model

    torch.set_num_threads(1)
    work = Path(args.work or tempfile.mkdtemp(prefix="cg_speed_"))
    work.mkdir(parents=True, exist_ok=True)
    out: dict = {"settings": vars(args)}
    out["allatom_implicit"] = implicit_solvent_speed(args.openmm_seconds)
    out["allatom_explicit"] = explicit_solvent_speed(args.openmm_seconds)

    fast = load_model(args.fast)
    runs = []
    for r in args.replicas:
        res = simulate_dense(fast, _starts(fast, Path(args.cg), r, args.seed), steps=args.steps, dt=args.dt,
                             seed=args.seed, out=work / f"fast_{r}", traj_every=250, check_inputs=False)
        runs.append({"model": "fast", "engine": "dense", **_speed(res, r, args.steps, args.dt)})
    if args.equivariant:
        eq = load_model(args.equivariant)
        for r in args.replicas:
            n = args.equivariant_steps
            res = simulate_dense(eq, _starts(eq, Path(args.cg), r, args.seed), steps=n, dt=args.dt,
                                 seed=args.seed, out=work / f"eq_{r}", traj_every=100, check_inputs=False)
            runs.append({"model": "equivariant", "engine": "dense", **_speed(res, r, n, args.dt)})
            c0 = time.process_time()
            res = simulate(eq, _starts(eq, Path(args.cg), r, args.seed), steps=n, dt=args.dt, seed=args.seed,
                           out=work / f"eq_graph_{r}", traj_every=100, extxyz=False, check_inputs=False)
            res.cpu_s = time.process_time() - c0  # the graph engine reports wall time only
            res.ns_per_day_cpu = n * args.dt * 1e-6 / max(res.cpu_s, 1e-9) * 86400.0
            runs.append({"model": "equivariant", "engine": "graph (before)", **_speed(res, r, n, args.dt)})
    out["cg_runs"] = runs

    # sampling: 10 CG replicas of the fast model, 1 ps frames
    ess_steps = int(round(args.ess_ns * 1e6 / args.dt))
    every = max(1, int(round(1000.0 / args.dt)))
    res = simulate_dense(fast, _starts(fast, Path(args.cg), 10, args.seed + 1), steps=ess_steps, dt=args.dt,
                         seed=args.seed + 1, out=work / "ess", traj_every=every, check_inputs=False)
    with h5py.File(work / "ess" / "trajectory.h5", "r") as f:
        n = int(f.attrs["n_frames"])
        pos = f["particles/all/position/value"][1:n]  # (T, 10 * 5, 3), the start frame left out
    x = pos.reshape(len(pos), 10, 5, 3).transpose(1, 0, 2, 3)
    phi, psi = backbone_dihedrals(x.reshape(-1, 5, 3))
    cg = _basins(phi.reshape(10, -1), psi.reshape(10, -1))
    cg.update(ns_per_replica=ess_steps * args.dt * 1e-6, n_stable=res.n_stable, wall_s=res.wall_s, cpu_s=res.cpu_s)
    for k in ("slow_basin", "alpha_R"):
        cg[f"{k}_ess_per_cpu_s"] = cg[f"{k}_ess"] / max(res.cpu_s, 1e-9)
        cg[f"{k}_ess_per_wall_s"] = cg[f"{k}_ess"] / max(res.wall_s, 1e-9)
    with h5py.File(args.ref, "r") as f:
        reps = f["replicas"]
        m = min(len(reps[r]["phi"]) for r in reps)
        aa = _basins(np.stack([reps[r]["phi"][:m] for r in reps]), np.stack([reps[r]["psi"][:m] for r in reps]))
        aa_wall, how = reference_core_seconds(f)
        aa_ns = reference_ns(f)
    aa.update(ns_total=aa_ns, wall_s=aa_wall, note=f"the reference campaign's own time: {how}")
    aa_ns_per_cpu_s = out["allatom_implicit"]["ns_per_day_cpu"] / 86400.0  # measured in this run
    for k in ("slow_basin", "alpha_R"):
        aa[f"{k}_ess_per_wall_s"] = aa[f"{k}_ess"] / max(aa_wall, 1e-9)
        # ESS per simulated ns of the reference times the all-atom speed measured here (CPU clock): the same
        # clock as the CG runs of this process
        aa[f"{k}_ess_per_cpu_s_at_this_run_speed"] = aa[f"{k}_ess"] / aa_ns * aa_ns_per_cpu_s
    cg["slow_basin_ess_two_state_per_cpu_s"] = cg["slow_basin_ess_two_state"] / max(res.cpu_s, 1e-9)
    aa["slow_basin_ess_per_cpu_s"] = aa["slow_basin_ess_per_cpu_s_at_this_run_speed"]
    aa["slow_basin_ess_two_state_per_cpu_s"] = aa["slow_basin_ess_two_state"] / aa_ns * aa_ns_per_cpu_s
    out["sampling"] = {"cg_fast_10_replicas": cg, "allatom_implicit_md": aa}
    if args.dense_ref:
        out["sampling"]["allatom_implicit_dense_md"] = _dense_allatom(Path(args.dense_ref), args.seed)
    if args.remd_cpu_s > 0:
        out["sampling"]["allatom_implicit_remd"] = _remd_obc(work, args.remd_cpu_s, args.seed)

    # headline ratios (CPU clock for CG and OpenMM of this run; wall for the reference's ESS)
    best = {r["replicas"]: r for r in runs if r["model"] == "fast"}
    imp, exp_ = out["allatom_implicit"], out["allatom_explicit"]
    head = {}
    for r, row in best.items():
        head[f"fast_{r}_replicas_ns_per_day_cpu"] = row["ns_per_day_all_replicas_cpu"]
        head[f"fast_{r}_replicas_vs_implicit_cpu"] = row["ns_per_day_all_replicas_cpu"] / imp["ns_per_day_cpu"]
        head[f"fast_{r}_replicas_vs_explicit_cpu"] = row["ns_per_day_all_replicas_cpu"] / exp_["ns_per_day_cpu"]
        head[f"fast_{r}_replicas_vs_explicit_wall"] = row["ns_per_day_all_replicas_wall"] / exp_["ns_per_day"]
    eq_rows = {(r["replicas"], r["engine"]): r for r in runs if r["model"] == "equivariant"}
    for r in args.replicas:
        if (r, "dense") in eq_rows and r in best:
            head[f"fast_dense_vs_equivariant_graph_{r}_replicas_cpu"] = (
                best[r]["ns_per_day_all_replicas_cpu"] / eq_rows[(r, "graph (before)")]["ns_per_day_all_replicas_cpu"])
    head["alpha_R_ess_per_cpu_s_cg_vs_allatom"] = (cg["alpha_R_ess_per_cpu_s"]
                                                    / max(aa["alpha_R_ess_per_cpu_s_at_this_run_speed"], 1e-300))
    allatom = {k: v for k, v in out["sampling"].items() if k.startswith("allatom_implicit")}
    if len(allatom) > 1:  # the best all-atom sampler of the slow basin, by each estimator
        for est, key in (("two_state", "slow_basin_ess_two_state_per_cpu_s"),
                         ("first_zero", "slow_basin_ess_per_cpu_s")):
            best_aa = max(allatom, key=lambda k: allatom[k][key])
            head[f"slow_basin_best_allatom_{est}"] = best_aa
            head[f"slow_basin_ess_per_cpu_s_cg_vs_best_allatom_{est}"] = cg[key] / max(allatom[best_aa][key], 1e-300)
    head["slow_basin_ess_cg"] = cg["slow_basin_ess"]
    head["slow_basin_ess_allatom"] = aa["slow_basin_ess"]
    out["headline"] = head
    notes = ["all-atom implicit MD of the reference never entered the slow basin (ESS 0), so the issue's ESS/s ratio "
             "for it is undefined; the alpha_R indicator is given as a faster observable"
             if aa["slow_basin_ess"] == 0 else ""]
    return write_result(args.name, out, seed=args.seed, notes=[n for n in notes if n])


if __name__ == "__main__":
    print(main())
