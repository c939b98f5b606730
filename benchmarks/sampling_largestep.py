"""Large-step sampling of alanine dipeptide (vacuum, 300 K): ESS/s of the slow basin indicator, MD vs replica
exchange vs the learned-kernel Metropolis-Hastings sampler (issue #21).

Stages (each writes its part of the JSON; ``--stages`` picks them):

- ``md``: tuned OpenMM MD baselines, one process, one thread each, for ``--seconds`` wall seconds per setting:
  Reference and CPU platforms with ``LangevinMiddleIntegrator`` at 2 fs (bonds to H constrained) and CPU at 4 fs
  with hydrogen-mass repartitioning (H mass 3.024 amu taken from the bonded heavy atom). Frames every
  ``--frame-ps``; the trajectories are written in the ``compscope md reference`` layout (``WORK/largestep/``) so
  that they serve as training pairs and as the ``compscope sample compare`` reference.
- ``remd``: the replica-exchange baseline (openmmtools multistate, 8 temperatures 300-1000 K) read from the
  cached reference of ``compscope sample reference ala2`` (its 300 K frames per exchange iteration and the
  wall seconds in each run's ``progress.json``); it is not rerun here.
- ``torsion``: the torsion-space kernel (``docs/largestep.md``): a torus density over phi/psi trained on the pairs
  of the Reference-platform MD at ``--torsion-lag-ps`` (100 ps) for ``--train-minutes`` CPU minutes, then its exact
  chain (pivot proposals + ``--local`` MALA steps per cycle) for ``--seconds``; Ramachandran JS and phi-profile
  error against the replica-exchange reference, with that reference's own run-0-vs-run-1 floor beside them.
- ``kernel``: pairs ``(x(t), x(t + lag))`` from the md stage's trajectories (split by trajectory), the
  conditional coupling kernel trained for ``--train-minutes``, then the exact MH chain (``--chains`` chains,
  ``--proposals`` per state) for ``--seconds``; training time is reported separately and amortised over 24 h.

Every ESS is of the basin indicator ``1[0 <= phi < 2.2 rad]`` (Timewarp's first-zero estimator and batch means,
:mod:`compscope.analysis`), reported with the number of entries into the basin: an ESS without entries means
nothing. Timings depend on the machine's load (recorded in the JSON).

    nice -n 15 python -m benchmarks.sampling_largestep --seconds 120 --train-minutes 10
    # the torsion-space kernel against the baselines (README cell sampling_largestep_torsion.json):
    python -m benchmarks.sampling_largestep --stages md,remd,torsion --seconds 300 --train-minutes 2 \
        --chains 8 --proposals 4 --local 4 --name sampling_largestep_torsion --headline
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

if not __package__:  # run as `python benchmarks/<name>.py`: put the repository root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import WORK, write_result  # noqa: E402

MD_SETTINGS = {
    "reference_2fs_hbonds": {"platform": "Reference", "dt_fs": 2.0, "hmr": False},
    "cpu_2fs_hbonds": {"platform": "CPU", "dt_fs": 2.0, "hmr": False},
    "cpu_4fs_hmr": {"platform": "CPU", "dt_fs": 4.0, "hmr": True},
}


def _basin_metrics(phi: np.ndarray, wall_s: float) -> dict:
    from compscope.analysis import basin_entries, basin_indicator, ess_batch_means, ess_first_zero

    phi = np.atleast_2d(phi)
    ind = basin_indicator(phi)
    ess_fz, ess_bm = ess_first_zero(ind), ess_batch_means(ind)
    return {"frames": int(phi.size), "population": float(ind.mean()),
            "entries": int(basin_entries((ind > 0).astype(int), 1).sum()),
            "ess_first_zero": ess_fz, "ess_batch_means": ess_bm, "wall_s": wall_s,
            "ess_per_s_first_zero": ess_fz / wall_s, "ess_per_s_batch_means": ess_bm / wall_s}


def run_md(name: str, setting: dict, seconds: float, frame_ps: float, seed: int, out: Path) -> dict:
    import h5py
    import openmm as mm
    from openmm import app, unit

    from compscope.analysis import ALANINE_DIPEPTIDE_PHI, ALANINE_DIPEPTIDE_PSI, dihedral_angles
    from compscope.integrations.openmm_systems import alanine_dipeptide_system

    pdb, system = alanine_dipeptide_system("vacuum", "HBonds")
    if setting["hmr"]:
        for bond in pdb.topology.bonds():
            a, b = bond
            if a.element == app.element.hydrogen:
                a, b = b, a
            if b.element == app.element.hydrogen and a.element != app.element.hydrogen:
                dm = 3.024 - system.getParticleMass(b.index).value_in_unit(unit.dalton)
                system.setParticleMass(b.index, 3.024 * unit.dalton)
                system.setParticleMass(a.index, system.getParticleMass(a.index) - dm * unit.dalton)
    dt = setting["dt_fs"] * unit.femtosecond
    integ = mm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, dt)
    integ.setRandomNumberSeed(seed + 1)
    props = {"Threads": "1"} if setting["platform"] == "CPU" else {}
    ctx = mm.Context(system, integ, mm.Platform.getPlatformByName(setting["platform"]), props)
    ctx.setPositions(pdb.positions)
    mm.LocalEnergyMinimizer.minimize(ctx)
    ctx.setVelocitiesToTemperature(300 * unit.kelvin, seed + 1)
    every = max(1, int(round(frame_ps * 1000 / setting["dt_fs"])))
    frames, t0 = [], time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        integ.step(every)
        frames.append(ctx.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.angstrom))
    wall = time.perf_counter() - t0
    pos = np.asarray(frames)
    phi = dihedral_angles(pos, ALANINE_DIPEPTIDE_PHI)
    sim_ns = len(pos) * every * setting["dt_fs"] * 1e-6
    with h5py.File(out, "a") as h5:  # the `compscope md reference` layout (one replica per setting and seed)
        h5.attrs.update({"system": "alanine-dipeptide (ACE-ALA-NME)", "solvent": "vacuum", "temperature_K": 300.0,
                         "dt_fs": setting["dt_fs"], "save_every": every})
        if "atomic_numbers" not in h5:
            h5["atomic_numbers"] = np.array([a.element.atomic_number for a in pdb.topology.atoms()])
        g = h5.create_group(f"replicas/{len(h5.get('replicas', {})):04d}")
        g.attrs.update({"seed": seed, "steps": len(pos) * every, "wall_s": wall, "platform": setting["platform"],
                        "ns_per_day": sim_ns / wall * 86400})
        g["positions"] = pos
        g["time_ps"] = frame_ps * np.arange(1, len(pos) + 1)
        g["phi"] = phi
        g["psi"] = dihedral_angles(pos, ALANINE_DIPEPTIDE_PSI)
    return {**setting, "simulated_ns": sim_ns, "ns_per_day": sim_ns / wall * 86400, **_basin_metrics(phi, wall)}


def remd_baseline() -> dict:
    import h5py

    from compscope.sampling import ala2_reference_dir

    d = ala2_reference_dir()
    ref = d / "reference.h5"
    if not ref.exists():
        return {"note": f"no cached replica-exchange reference at {d}; run `compscope sample reference ala2`"}
    with h5py.File(ref, "r") as h5:
        phi, run, it = h5["phi"][:], h5["run"][:], h5["iteration"][:]
    out = {"source": str(ref), "runs": {}}
    for r in np.unique(run):
        # progress.json holds the wall seconds of all iterations run so far (a run may have gone on after the
        # reference file was assembled): the wall of the frames in the file is the per-iteration rate times the
        # last iteration in it (burn-in included: its cost is part of the run)
        prog = json.loads((d / "runs" / f"run_{int(r):02d}" / "progress.json").read_text())
        wall = float(prog["wall_s"]) / float(prog["iterations"]) * float(it[run == r].max() + 1)
        out["runs"][int(r)] = {**_basin_metrics(phi[run == r], wall), "progress": prog,
                               "iterations_in_file": int(it[run == r].max() + 1)}
    cfg = (d / "config.yaml").read_text() if (d / "config.yaml").exists() else ""
    out["config"] = cfg
    return out


def kernel_stage(md_file: Path, lag_ps: float, train_minutes: float, seconds: float, chains: int, proposals: int,
                 seed: int) -> dict:
    from compscope.sampling import compare_runs, sample_chain, train_transition, transition_pairs

    pairs = transition_pairs(md_file, lag_ps=lag_ps, fractions=(0.8, 0.2, 0.0), seed=seed)
    run = WORK / "largestep" / f"kernel_lag{lag_ps:g}ps"
    t0 = time.perf_counter()
    train_transition(pairs, run, flow={"hidden": 256, "num_layers": 8, "init_scale": 0.05}, batch_size=256,
                     trainer={"max_epochs": 10_000, "max_time_minutes": train_minutes, "progress_bar": False},
                     seed=seed, resume=(run / "checkpoints" / "last.ckpt").exists())
    train_s = time.perf_counter() - t0
    chain = WORK / "largestep" / f"chain_lag{lag_ps:g}ps.h5"
    for p in (chain, chain.with_name(chain.name + ".ckpt")):
        p.unlink(missing_ok=True)
    n_cycles, t0 = 1, time.perf_counter()
    res = sample_chain(run, "alanine-dipeptide", 5, chains, chain, n_proposals=proposals, seed=seed)
    per_cycle = (time.perf_counter() - t0) / 5
    n_cycles = max(10, int(seconds / max(per_cycle, 1e-3)))
    for p in (chain, chain.with_name(chain.name + ".ckpt")):
        p.unlink(missing_ok=True)
    res = sample_chain(run, "alanine-dipeptide", n_cycles, chains, chain, n_proposals=proposals, seed=seed)
    cmp = compare_runs(chain, md_file)
    c = res.counters
    from compscope.analysis import backbone_dihedrals

    phi, _ = backbone_dihedrals(res.positions.reshape(-1, 22, 3))
    metrics = _basin_metrics(phi.reshape(res.positions.shape[:2]).T, res.wall_s)
    amortised = train_s / (24 * 3600)
    return {"lag_ps": lag_ps, "train_s": train_s, "train_pairs": len(pairs["train"][0]),
            "replicas": pairs["replicas"], "cycles": n_cycles, "chains": chains, "proposals": proposals,
            "acceptance": c["accepted"] / max(c["mh_steps"], 1), "nonfinite_proposals": c["n_nonfinite"],
            "energy_evaluations": c["proposals"], **metrics,
            "ess_per_s_first_zero_amortised_24h": metrics["ess_first_zero"] / (res.wall_s * (1 + amortised)),
            "ramachandran_js_vs_md": cmp["ramachandran_js"], "phi_profile_error_vs_md": cmp["phi_profile_error_kT"]}


def _remd_angles() -> tuple[np.ndarray, np.ndarray, float, float] | None:
    """phi, psi of the cached replica-exchange reference at 300 K, its basin population and block error."""
    import h5py

    from compscope.sampling import ala2_reference_dir

    ref = ala2_reference_dir() / "reference.h5"
    if not ref.exists():
        return None
    with h5py.File(ref, "r") as h5:
        summary = json.loads(h5.attrs["summary"])
        return h5["phi"][:], h5["psi"][:], summary["basin_population"], summary["basin_error_blocks"]


def _remd_runs():
    """(phi, psi) of runs 0 and 1 of the cached replica-exchange reference (None without two runs)."""
    import h5py

    from compscope.sampling import ala2_reference_dir

    ref = ala2_reference_dir() / "reference.h5"
    if not ref.exists():
        return None
    with h5py.File(ref, "r") as h5:
        phi, psi, run = h5["phi"][:], h5["psi"][:], h5["run"][:]
    if len(np.unique(run)) < 2:
        return None
    return [(phi[run == r], psi[run == r]) for r in (0, 1)]


def torsion_stage(md_file: Path, lag_ps: float, train_minutes: float, seconds: float, chains: int, proposals: int,
                  n_local: int, uniform: float, seed: int) -> dict:
    """The torsion-space kernel (pivot moves of phi/psi from a learned torus density, exact MH) trained on the md
    stage's pairs at ``lag_ps``, then its chain for ``seconds``; accuracy against the replica-exchange reference."""
    from compscope.analysis import (
        ALANINE_DIPEPTIDE_BASINS,
        backbone_dihedrals,
        basin_indicator,
        basin_labels,
        first_visit_times,
        free_energy_profile_1d,
        profile_error,
        ramachandran_js,
    )
    from compscope.sampling import (
        alanine_dipeptide,
        pivot_groups,
        sample_chain,
        torsion_pairs,
        train_torsion_kernel,
        transition_pairs,
    )

    target = alanine_dipeptide()
    dih = list(target.phi_psi)
    groups = pivot_groups(target.n_particles, target.bonds(), dih)
    pairs = torsion_pairs(transition_pairs(md_file, lag_ps=lag_ps, fractions=(0.8, 0.2, 0.0), seed=seed), dih)
    run = WORK / "largestep" / f"torsion_lag{lag_ps:g}ps_u{uniform:g}"
    c0 = time.process_time()
    train_torsion_kernel(pairs, run, dih, groups, target.n_particles, seed=seed,
                         kernel={"n_components": 8, "hidden": 64, "uniform": uniform},
                         trainer={"max_epochs": 10_000, "max_time_minutes": train_minutes, "budget_clock": "cpu",
                                  "progress_bar": False, "early_stopping_patience": 20},
                         resume=(run / "checkpoints" / "last.ckpt").exists())
    train_cpu_s = time.process_time() - c0
    chain = WORK / "largestep" / f"chain_torsion_lag{lag_ps:g}ps_u{uniform:g}.h5"

    def fresh(n_cycles: int, burn_in: int, thin: int):
        for p in (chain, chain.with_name(chain.name + ".ckpt")):
            p.unlink(missing_ok=True)
        return sample_chain(run, "alanine-dipeptide", n_cycles, chains, chain, n_proposals=proposals,
                            n_local=n_local, local_step_size=5e-5, burn_in=burn_in, thin=thin, seed=seed,
                            checkpoint_every=1000)

    t0, c0 = time.perf_counter(), time.process_time()
    fresh(40, 10, 1)
    per_cycle = (time.perf_counter() - t0) / 40
    n_cycles = max(100, int(seconds / max(per_cycle, 1e-4)))
    burn_in, thin = n_cycles // 10, max(1, n_cycles // 20_000)
    c0 = time.process_time()
    res = fresh(n_cycles, burn_in, thin)
    chain_cpu_s = time.process_time() - c0
    c = res.counters
    phi, psi = backbone_dihedrals(res.positions.reshape(-1, 22, 3))
    phi, psi = phi.reshape(res.positions.shape[:2]).T, psi.reshape(res.positions.shape[:2]).T  # (chains, T)
    metrics = _basin_metrics(phi, res.wall_s)
    visits = first_visit_times(basin_labels(phi, psi), len(ALANINE_DIPEPTIDE_BASINS),
                              dt=res.wall_s / max(phi.shape[1], 1))
    out = {"lag_ps": lag_ps, "uniform_weight": uniform, "train_cpu_s": train_cpu_s,
           "train_pairs": len(pairs["train"][0]), "md_data_file": str(md_file), "cycles": n_cycles,
           "burn_in": burn_in, "thin": thin, "chains": chains, "proposals": proposals, "n_local_mala": n_local,
           "acceptance": c["accepted"] / max(c["mh_steps"], 1), "local_acceptance":
           c["local_accepted"] / max(n_local * chains * n_cycles, 1), "nonfinite_proposals": c["n_nonfinite"],
           "energy_evaluations": c["proposals"] + n_local * chains * n_cycles, "chain_cpu_s": chain_cpu_s, **metrics,
           "ess_per_cpu_s_first_zero": metrics["ess_first_zero"] / chain_cpu_s,
           "first_visit_s_per_chain": visits.tolist(),
           "basins": [b.name for b in ALANINE_DIPEPTIDE_BASINS], "missed_basins": int(np.isinf(visits).sum())}
    amortised = train_cpu_s / (24 * 3600)
    out["ess_per_s_first_zero_amortised_24h"] = metrics["ess_first_zero"] / (res.wall_s * (1 + amortised))
    ref = _remd_angles()
    if ref is not None:
        rphi, rpsi, pop, err = ref
        out["ramachandran_js_vs_remd"] = ramachandran_js(phi.ravel(), psi.ravel(), rphi, rpsi)
        prof = lambda a: free_energy_profile_1d(a, bins=64, periodic=True)  # noqa: E731
        out["phi_profile_error_vs_remd_kT"] = profile_error(prof(phi), prof(rphi))
        out["remd_basin_population"] = {"value": pop, "error_blocks": err}
        runs = _remd_runs()
        if runs is not None:  # the noise floor of the reference itself: its two independent runs against each other
            (p0, s0), (p1, s1) = runs
            out["remd_run0_vs_run1"] = {"ramachandran_js": ramachandran_js(p0, s0, p1, s1),
                                        "phi_profile_error_kT": profile_error(prof(p0), prof(p1))}
        out["basin_population_chain"] = float(basin_indicator(phi).mean())
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stages", default="md,remd,kernel")
    ap.add_argument("--seconds", type=float, default=120.0, help="wall seconds per MD setting and for the chain")
    ap.add_argument("--frame-ps", type=float, default=0.1)
    ap.add_argument("--lag-ps", type=float, default=1.0)
    ap.add_argument("--train-minutes", type=float, default=10.0)
    ap.add_argument("--chains", type=int, default=8)
    ap.add_argument("--proposals", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--torsion-lag-ps", type=float, default=100.0, help="lag of the torsion kernel's pairs")
    ap.add_argument("--torsion-md", default="md_reference_2fs_hbonds.h5",
                    help="md-stage file (in WORK/largestep) whose pairs train the torsion kernel")
    ap.add_argument("--uniform", type=float, default=0.2, help="defensive uniform weight of the torsion kernel")
    ap.add_argument("--local", type=int, default=4, help="MALA steps per cycle of the torsion chain")
    ap.add_argument("--name", default="sampling_largestep", help="result name")
    ap.add_argument("--headline", action="store_true",
                    help="write the JSON to benchmarks/results/ (a README cell) instead of results/sweeps/")
    args = ap.parse_args(argv)
    from compscope.runtime import configure_threads

    configure_threads(1)
    stages = set(args.stages.split(","))
    (WORK / "largestep").mkdir(parents=True, exist_ok=True)
    md_file = WORK / "largestep" / "md_cpu_2fs_hbonds.h5"
    res: dict = {"settings": vars(args)}
    if "md" in stages:
        res["md"] = {}
        for name, s in MD_SETTINGS.items():
            f = WORK / "largestep" / f"md_{name}.h5"
            res["md"][name] = run_md(name, s, args.seconds, args.frame_ps, args.seed, f)
            print(name, json.dumps({k: res["md"][name][k] for k in ("ns_per_day", "entries", "ess_first_zero",
                                                                     "ess_per_s_first_zero")}), flush=True)
    if "remd" in stages:
        res["remd"] = remd_baseline()
    if "kernel" in stages:
        res["kernel"] = kernel_stage(md_file, args.lag_ps, args.train_minutes, args.seconds, args.chains,
                                     args.proposals, args.seed)
        print("kernel", json.dumps({k: res["kernel"][k] for k in ("acceptance", "entries", "ess_first_zero",
                                                                   "ess_per_s_first_zero")}), flush=True)
    if "torsion" in stages:
        res["torsion"] = torsion_stage(WORK / "largestep" / args.torsion_md, args.torsion_lag_ps, args.train_minutes,
                                       args.seconds, args.chains, args.proposals, args.local, args.uniform,
                                       args.seed)
        print("torsion", json.dumps({k: res["torsion"][k] for k in ("acceptance", "entries", "ess_first_zero",
                                                                     "ess_per_s_first_zero")}), flush=True)
    notes = ["preliminary: short runs on a shared 2-core machine under load (see machine.loadavg); ESS of the basin "
             "indicator means little without entries into the basin (reported beside it)"]
    path = write_result(args.name, res, seed=args.seed, notes=notes, sweep=not args.headline)
    print("wrote", path)


if __name__ == "__main__":
    main()
