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
- ``remd_tuned``: replica exchange run here (openmmtools multistate through
  :func:`compscope.sampling.run_replica_exchange`) in each of ``REMD_SETTINGS`` (replicas, top temperature,
  exchange interval, 2 fs HBonds / 4 fs HMR; ``--remd-settings``) for ``--remd-cpu-s`` CPU seconds; basin ESS of the
  300 K replica per CPU second, entries, first visits, exchange acceptance per neighbour pair. Each setting's result
  is saved as it finishes (``WORK/largestep/remd_tuned/<setting>/result.json``) and reused by a rerun.
- ``torsion``: the torsion-space kernel (``docs/largestep.md``): a torus density over phi/psi trained on the pairs
  of the Reference-platform MD at ``--torsion-lag-ps`` (100 ps) for ``--train-minutes`` CPU minutes, then its exact
  chain (pivot proposals + ``--local`` MALA steps per cycle) for ``--chain-cpu-s`` CPU seconds (default
  ``--seconds``); first visit of every basin per chain, missed chain-basin pairs; Ramachandran JS and phi-profile
  error against ``--reference`` (the cached replica-exchange reference), whose own run-0-vs-run-1 floor is stored
  under ``reference``. Saved as it finishes and reused by a rerun with the same settings.

With ``torsion`` and ``remd_tuned`` together, ``headline`` holds the ESS per CPU second of the torsion kernel and
its bootstrap kernel (training amortised over 24 h) against the best replica-exchange setting, from the same run.
- ``fast``: the frozen bootstrap kernel of the saved torsion stage of run ``--rescore-of`` sampled again, in this
  process one after the other, by the samplers ``--fast-samplers`` of ``FAST_SAMPLERS`` (``baseline``: the
  headline's sampler; ``numba_reuse_hmc``: batched numba energies, every draw of a batch used, one HMC move per
  cycle) for ``--chain-cpu-s`` each; training cost: the saved stage's, amortised over 24 h; speed-up against
  ``baseline`` by both estimators.
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
    # the headline: tuned replica exchange and the torsion kernels in one run (README cell)
    python -m benchmarks.sampling_largestep --stages torsion,remd_tuned --bootstrap --train-minutes 1 \
        --chains 32 --proposals 4 --local 1 --uniform 0.5 --chain-cpu-s 300 --remd-cpu-s 150 \
        --name sampling_largestep_remd_tuned --headline
    # the faster exact sampler against the headline's sampler, same kernel, same run (README cell)
    python -m benchmarks.sampling_largestep --stages fast --fast-samplers baseline,numba_reuse_hmc --chains 32 \
        --proposals 4 --local 1 --chain-cpu-s 300 --rescore-of sampling_largestep_remd_tuned --reference biased \
        --name sampling_largestep_fast --headline
    # the faster sampler and the best replica-exchange setting at 1000 CPU-s in one run (the #21 ratio)
    python -m benchmarks.sampling_largestep --stages fast,remd_tuned --fast-samplers numba_reuse_hmc --chains 32 \
        --proposals 4 --local 1 --chain-cpu-s 300 --remd-cpu-s 1000 --remd-settings r4_t1000_0.5ps_4fs_hmr \
        --rescore-of sampling_largestep_remd_tuned --reference biased --name sampling_largestep_fast_vs_remd --headline
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
    from openmm import unit

    from compscope.analysis import ALANINE_DIPEPTIDE_PHI, ALANINE_DIPEPTIDE_PSI, dihedral_angles
    from compscope.integrations.openmm_systems import alanine_dipeptide_system, repartition_hydrogen_mass

    pdb, system = alanine_dipeptide_system("vacuum", "HBonds")
    if setting["hmr"]:
        repartition_hydrogen_mass(system, pdb.topology, 3.024)
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


#: the replica-exchange settings of the ``remd_tuned`` stage (openmmtools ParallelTemperingSampler, geometric
#: ladder from 300 K, LangevinMiddle dynamics between exchanges); ``interval_ps`` = steps x timestep. Chosen around
#: what sets its cost per effective sample: replicas (cost per iteration is linear in them; a 22-atom molecule
#: still swaps at >= 15 % with 4 rungs over 300-1000 K), the top temperature (basin crossings happen within ~10 ps
#: at 1000 K, far more slowly at 500-700 K), the exchange interval (short intervals pay openmmtools' per-iteration
#: overhead, long ones slow the walk down the ladder) and the integrator (2 fs HBonds, 4 fs HMR). The first one is
#: the cached reference's own setting (CPU platform, 1 fs unconstrained) for continuity; the others run on the
#: Reference platform, 2.2x cheaper per iteration than the 1-thread CPU platform for 22 atoms (probe, docs).
REMD_SETTINGS = {
    "r4_t1000_0.5ps_2fs_hbonds": {"n_replicas": 4, "t_max": 1000.0, "timestep_fs": 2.0, "steps_per_iteration": 250,
                                  "constraints": "HBonds"},
    "r4_t1000_1ps_2fs_hbonds": {"n_replicas": 4, "t_max": 1000.0, "timestep_fs": 2.0, "steps_per_iteration": 500,
                                "constraints": "HBonds"},
    "r4_t1000_0.5ps_4fs_hmr": {"n_replicas": 4, "t_max": 1000.0, "timestep_fs": 4.0, "steps_per_iteration": 125,
                               "constraints": "HBonds", "hydrogen_mass": 3.024},
    "r4_t1000_2ps_4fs_hmr": {"n_replicas": 4, "t_max": 1000.0, "timestep_fs": 4.0, "steps_per_iteration": 500,
                             "constraints": "HBonds", "hydrogen_mass": 3.024},
    "r4_t700_0.5ps_2fs_hbonds": {"n_replicas": 4, "t_max": 700.0, "timestep_fs": 2.0, "steps_per_iteration": 250,
                                 "constraints": "HBonds"},
    "r6_t1000_0.5ps_2fs_hbonds": {"n_replicas": 6, "t_max": 1000.0, "timestep_fs": 2.0, "steps_per_iteration": 250,
                                  "constraints": "HBonds"},
    "r8_t1000_0.5ps_2fs_hbonds": {"n_replicas": 8, "t_max": 1000.0, "timestep_fs": 2.0, "steps_per_iteration": 250,
                                  "constraints": "HBonds"},
    "reference_ladder_r8_t1000_0.5ps_1fs_cpu": {"n_replicas": 8, "t_max": 1000.0, "timestep_fs": 1.0,
                                                "steps_per_iteration": 500, "constraints": None,
                                                "platform": "CPU"},
}


MIN_ENTRIES = 30  # basin entries of a replica-exchange setting for its ESS to count in the robust pick


def remd_tuned_stage(settings: list[str], cpu_s: float, burn_in_fraction: float, seed: int,
                     reference: str) -> dict:
    """Replica exchange run here, one setting after another (``REMD_SETTINGS``), each for ``cpu_s`` CPU seconds
    of this process (set-up and minimisation on top, reported), in ``WORK/largestep/remd_tuned/<setting>``.

    A setting whose ``result.json`` exists is read back, an interrupted one is continued (openmmtools storage), so
    the sweep is resumable. Per setting: ESS of the 300 K replica's basin indicator (both estimators, after
    dropping ``burn_in_fraction`` of the iterations) per CPU second of the whole run (burn-in and set-up
    included), basin entries, first visits, exchange acceptance per neighbour pair, and accuracy against the
    reference. ``best`` is the setting with the most first-zero ESS per CPU second."""
    from compscope.analysis import ALANINE_DIPEPTIDE_BASINS, basin_labels, first_visit_times
    from compscope.analysis import ALANINE_DIPEPTIDE_PHI as ALANINE_PHI
    from compscope.analysis import ALANINE_DIPEPTIDE_PSI as ALANINE_PSI
    from compscope.analysis import dihedral_angles as dihedrals
    from compscope.sampling import ALA2_REFERENCE_DEFAULTS, read_replica_exchange_run, run_replica_exchange

    root = WORK / "largestep" / "remd_tuned"
    out: dict = {"cpu_s_budget": cpu_s, "burn_in_fraction": burn_in_fraction, "settings": {}}
    for name in settings:
        setting = REMD_SETTINGS[name]
        d = root / name
        done = d / "result.json"
        spec = {**ALA2_REFERENCE_DEFAULTS, "platform": "Reference", "checkpoint_interval": 20, **setting,
                "t_min": 300.0, "n_iterations": 10**7, "seed": seed, "run": 0, "dir": str(d / "run_00")}
        same = lambda a, b: {**a, "dir": None} == {**b, "dir": None}  # noqa: E731 - the folder may have moved
        if done.exists() and same(json.loads(done.read_text()).get("spec", {}), spec):
            out["settings"][name] = json.loads(done.read_text())
            print("remd_tuned", name, "(saved)", flush=True)
            continue
        c0, t0 = time.process_time(), time.perf_counter()
        prog = run_replica_exchange(spec, max_cpu_s=cpu_s)
        this_cpu, this_wall = time.process_time() - c0, time.perf_counter() - t0
        n_it = int(prog["iterations"])
        burn = int(burn_in_fraction * n_it)
        data = read_replica_exchange_run(d / "run_00", burn)
        pos = data["positions"]
        phi, psi = dihedrals(pos, ALANINE_PHI), dihedrals(pos, ALANINE_PSI)
        run_cpu = float(prog["cpu_s"] + prog.get("setup_cpu_s", 0.0))
        run_wall = float(prog["wall_s"] + prog.get("setup_wall_s", 0.0))
        m = _basin_metrics(phi, run_wall)
        cpu_per_it = float(prog["cpu_s"]) / max(n_it, 1)
        visits = first_visit_times(basin_labels(phi, psi), len(ALANINE_DIPEPTIDE_BASINS), dt=cpu_per_it)
        interval_ps = float(setting["steps_per_iteration"]) * float(setting["timestep_fs"]) * 1e-3
        temps = np.geomspace(300.0, float(setting["t_max"]), int(setting["n_replicas"]))
        r = {"spec": spec, **{k: setting.get(k) for k in ("n_replicas", "t_max", "timestep_fs", "constraints",
                                                          "hydrogen_mass")},
             "platform": spec["platform"], "exchange_interval_ps": interval_ps,
             "temperatures_K": [round(float(t), 2) for t in temps], "iterations": n_it, "burn_in_iterations": burn,
             "simulated_ns_per_replica": n_it * interval_ps * 1e-3, "cpu_s": run_cpu, "wall_s": run_wall,
             "setup_cpu_s": float(prog.get("setup_cpu_s", 0.0)), "this_process_cpu_s": this_cpu,
             "this_process_wall_s": this_wall, "cpu_s_per_iteration": cpu_per_it,
             "exchange_acceptance": [round(float(a), 4) for a in data["acceptance"]],
             "basin_population_per_temperature": [round(b / max(n, 1), 5) for b, n, _ in data["per_state"]],
             **m, "ess_per_cpu_s_first_zero": m["ess_first_zero"] / run_cpu,
             "ess_per_cpu_s_batch_means": m["ess_batch_means"] / run_cpu,
             # first frame (after burn-in) of the 300 K state in each basin, in CPU seconds after the burn-in
             "first_visit_cpu_s_after_burn_in": visits[0].tolist(),
             "basins": [b.name for b in ALANINE_DIPEPTIDE_BASINS],
             "missed_basins": int(np.isinf(visits).sum()), **_against_reference(phi, psi, reference)}
        done.write_text(json.dumps(r, default=float))
        out["settings"][name] = r
        print("remd_tuned", name, json.dumps({k: r[k] for k in ("iterations", "cpu_s", "entries", "ess_first_zero",
                                                                "ess_per_cpu_s_first_zero", "exchange_acceptance")}),
              flush=True)
    if out["settings"]:
        best = max(out["settings"], key=lambda k: out["settings"][k]["ess_per_cpu_s_first_zero"])
        best_bm = max(out["settings"], key=lambda k: out["settings"][k]["ess_per_cpu_s_batch_means"])
        out["best"], out["best_batch_means"] = best, best_bm
        # the same pick among settings whose 300 K replica entered the basin at least MIN_ENTRIES times (an ESS
        # from a handful of entries is the least trustworthy, and picking the best of noisy estimates favours it)
        ok = [k for k, r in out["settings"].items() if r["entries"] >= MIN_ENTRIES]
        if ok:
            out["min_entries"] = MIN_ENTRIES
            out["best_min_entries"] = max(ok, key=lambda k: out["settings"][k]["ess_per_cpu_s_first_zero"])
            out["best_min_entries_batch_means"] = max(ok, key=lambda k: out["settings"][k]["ess_per_cpu_s_batch_means"])
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


def _reference(kind: str = "remd"):
    """The accuracy reference: ``(phi, psi, weights or None, info)``, or None when it is not on this machine.

    ``remd``: the 300 K frames of the cached replica-exchange reference (``compscope sample reference ala2``);
    ``info`` holds its basin population with the block error and its own floor (run 0 against run 1).
    """
    import h5py

    from compscope.analysis import free_energy_profile_1d, profile_error, ramachandran_js
    from compscope.sampling import ala2_reference_dir

    if kind == "biased":
        return _biased_reference()
    if kind != "remd":
        raise SystemExit(f"unknown reference {kind!r}: choose remd or biased")
    ref = ala2_reference_dir() / "reference.h5"
    if not ref.exists():
        return None
    with h5py.File(ref, "r") as h5:
        summary = json.loads(h5.attrs["summary"])
        phi, psi, run = h5["phi"][:], h5["psi"][:], h5["run"][:]
    info = {"source": str(ref), "basin_population": {"value": summary["basin_population"],
                                                     "error_blocks": summary["basin_error_blocks"]}}
    if len(np.unique(run)) >= 2:  # the noise floor of the reference itself: its two independent runs
        (p0, s0), (p1, s1) = [(phi[run == r], psi[run == r]) for r in (0, 1)]
        prof = lambda a: free_energy_profile_1d(a, bins=64, periodic=True)  # noqa: E731
        info["run0_vs_run1"] = {"ramachandran_js": ramachandran_js(p0, s0, p1, s1),
                                "phi_profile_error_kT": profile_error(prof(p0), prof(p1))}
    return phi, psi, None, info


def _biased_reference():
    """``biased``: the frames of ``compscope sample reference ala2-biased`` (MD under a frozen metadynamics bias,
    exact importance weights); ``info`` holds its weighted basin population with the spread over its independent
    runs and its own floor (runs of the first half against those of the second)."""
    from compscope.analysis import free_energy_profile_1d, profile_error, ramachandran_js
    from compscope.errors import CompscopeError
    from compscope.sampling import ala2_biased_reference, basin_population

    try:
        ref = ala2_biased_reference()
    except CompscopeError:
        return None
    phi, psi, w, run = ref["phi"], ref["psi"], ref["weight"], ref["run"]
    runs = np.unique(run)
    pop = basin_population(phi, run, weights=w)
    info = {"source": str(ref["file"]), "kish_ess": float(ref["kish_ess"]), "n_frames": int(len(phi)),
            "basin_population": {"value": pop["population"], "error_runs": pop["error_runs"],
                                 "per_run": pop["per_run"]}}
    half = np.isin(run, runs[: len(runs) // 2])
    a, b = half, ~half
    prof = lambda p, ww: free_energy_profile_1d(p, bins=64, periodic=True, weights=ww)  # noqa: E731
    info["half_vs_half"] = {"ramachandran_js": ramachandran_js(phi[a], psi[a], phi[b], psi[b], weights_a=w[a],
                                                               weights_b=w[b]),
                            "phi_profile_error_kT": profile_error(prof(phi[a], w[a]), prof(phi[b], w[b]))}
    return phi, psi, w, info


def rescore_stage(saved: Path, reference: str) -> dict:
    """The saved torsion stage's chains (their files, the same 10 % burn-in) scored against ``reference`` without
    sampling again: JS, phi-profile error and basin population of each chain set."""
    from compscope.analysis import backbone_dihedrals
    from compscope.sampling import read_chain

    stage = json.loads(saved.read_text())
    args, res = stage["key"], stage["result"]
    files = {"torsion": f"chain_torsion_lag{args['torsion_lag_ps']:g}ps_u{args['uniform']:g}.h5"}
    if "bootstrap" in res:
        files["bootstrap"] = f"chain_torsion_bootstrap_u{args['uniform']:g}.h5"
    out: dict = {"stage": str(saved), "reference": reference}
    for label, name in files.items():
        pos = read_chain(saved.parent / name)["positions"]  # (T, chains, atoms, 3)
        phi, psi = backbone_dihedrals(pos.reshape(-1, pos.shape[-2], 3))
        phi, psi = phi.reshape(pos.shape[:2]).T, psi.reshape(pos.shape[:2]).T
        burn = phi.shape[1] // 10
        out[label] = _against_reference(phi[:, burn:], psi[:, burn:], reference)
    ref = _REF_CACHE.get(reference)
    if ref is not None:
        out["reference_info"] = ref[3]
    return out


_REF_CACHE: dict = {}


def _against_reference(phi: np.ndarray, psi: np.ndarray, kind: str = "remd") -> dict:
    """Ramachandran JS, phi-profile error and basin population against the reference of :func:`_reference`."""
    from compscope.analysis import basin_indicator, free_energy_profile_1d, profile_error, ramachandran_js

    out: dict = {"basin_population_chain": float(basin_indicator(phi).mean())}
    if kind not in _REF_CACHE:
        _REF_CACHE[kind] = _reference(kind)
    ref = _REF_CACHE[kind]
    if ref is None:
        return out
    rphi, rpsi, w, info = ref
    out["reference"] = kind
    out["ramachandran_js_vs_reference"] = ramachandran_js(phi.ravel(), psi.ravel(), rphi, rpsi, weights_b=w)
    out["phi_profile_error_vs_reference_kT"] = profile_error(
        free_energy_profile_1d(phi, bins=64, periodic=True),
        free_energy_profile_1d(rphi, bins=64, periodic=True, weights=w))
    return out


def torsion_stage(md_file: Path, lag_ps: float, train_minutes: float, seconds: float, chains: int, proposals: int,
                  n_local: int, uniform: float, seed: int, bootstrap: bool = False,
                  bootstrap_uniform: float = 0.1, reference: str = "remd") -> dict:
    """The torsion-space kernel (pivot moves of phi/psi from a learned torus density, exact MH) trained on the md
    stage's pairs at ``lag_ps``, then its chain for ``seconds`` CPU seconds; accuracy against ``reference``.
    With ``bootstrap`` a second kernel is fitted to that chain's samples and runs a second chain (``bootstrap``).
    Training is counted in CPU seconds and amortised over 24 h of sampling:
    ``ESS/CPU-s x 24 h / (24 h + training)``."""
    import torch

    from compscope.sampling import (
        alanine_dipeptide,
        pivot_groups,
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
    res = _torsion_chain(run, WORK / "largestep" / f"chain_torsion_lag{lag_ps:g}ps_u{uniform:g}.h5", seconds,
                         chains, proposals, n_local, seed)
    out = {"lag_ps": lag_ps, "uniform_weight": uniform, "train_cpu_s": train_cpu_s,
           "train_pairs": len(pairs["train"][0]), "md_data_file": str(md_file), **res.pop("metrics")}
    _amortise(out, train_cpu_s)
    out.update(_against_reference(*res.pop("angles"), reference))
    if bootstrap:
        # an independence kernel on the torus fitted to this exact chain's own (phi, psi) samples (they include the
        # C7ax/alpha_L basin at its equilibrium share), then a second exact chain with that frozen kernel; the
        # first chain and both trainings count as training cost
        phi, psi = out.pop("_phi_psi")
        a1 = torch.stack([torch.as_tensor(phi.ravel()), torch.as_tensor(psi.ravel())], -1).double()
        n_valid = max(1, len(a1) // 10)
        perm = torch.randperm(len(a1), generator=torch.Generator().manual_seed(seed))
        a1 = a1[perm]
        boot = {"train": (torch.zeros_like(a1[n_valid:]), a1[n_valid:]),
                "valid": (torch.zeros_like(a1[:n_valid]), a1[:n_valid]), "lag_frames": 0, "frame_ps": 0.0,
                "replicas": {"train": ["stage-1 chain"], "valid": ["stage-1 chain"], "test": []}}
        run2 = WORK / "largestep" / f"torsion_bootstrap_lag{lag_ps:g}ps_u{uniform:g}"
        c0 = time.process_time()
        train_torsion_kernel(boot, run2, dih, groups, target.n_particles, seed=seed,
                             kernel={"n_components": 16, "hidden": 16, "uniform": bootstrap_uniform,
                                     "conditional": False},
                             trainer={"max_epochs": 10_000, "max_time_minutes": train_minutes, "budget_clock": "cpu",
                                      "progress_bar": False, "early_stopping_patience": 20},
                             resume=(run2 / "checkpoints" / "last.ckpt").exists())
        train2 = time.process_time() - c0
        res2 = _torsion_chain(run2, WORK / "largestep" / f"chain_torsion_bootstrap_u{uniform:g}.h5", seconds,
                              chains, proposals, n_local, seed + 1)
        b = {"uniform_weight": bootstrap_uniform, "fit_samples": len(a1) - n_valid, "train_cpu_s": train2,
             **res2.pop("metrics")}
        b.pop("_phi_psi")
        cost = train_cpu_s + out["chain_cpu_s"] + train2
        b["training_cost_cpu_s"] = cost
        _amortise(b, cost)
        b.update(_against_reference(*res2.pop("angles"), reference))
        out["bootstrap"] = b
    out.pop("_phi_psi", None)
    return out


def _amortise(out: dict, train_cpu_s: float) -> None:
    """ESS per second with the training cost spread over a 24-hour sampling budget (CPU and wall)."""
    f = 24 * 3600 / (24 * 3600 + train_cpu_s)
    for est in ("first_zero", "batch_means"):
        out[f"ess_per_cpu_s_{est}_amortised_24h"] = out[f"ess_per_cpu_s_{est}"] * f
        out[f"ess_per_s_{est}_amortised_24h"] = out[f"ess_per_s_{est}"] * f


def _torsion_chain(run: Path, chain: Path, seconds: float, chains: int, proposals: int, n_local: int,
                   seed: int, sampler: dict | None = None) -> dict:
    """The exact chain of the kernel in ``run`` for about ``seconds`` CPU seconds (two probes set the
    length). Every cycle from the start is recorded (first visits count from cycle 0); the first tenth is dropped
    as burn-in for the ESS and the accuracy. ``sampler``: ``platform``, ``local`` (the local move's arguments) and
    ``reuse_draws`` of :func:`compscope.sampling.sample_chain` (default: the Reference platform, MALA at
    5e-5 A^2)."""
    from compscope.analysis import (
        ALANINE_DIPEPTIDE_BASINS,
        backbone_dihedrals,
        basin_labels,
        first_visit_times,
    )
    from compscope.sampling import sample_chain

    def fresh(n_cycles: int, thin: int):
        for p in (chain, chain.with_name(chain.name + ".ckpt")):
            p.unlink(missing_ok=True)
        return sample_chain(run, "alanine-dipeptide", n_cycles, chains, chain, n_proposals=proposals,
                            n_local=n_local, local_step_size=5e-5, burn_in=0, thin=thin, seed=seed,
                            checkpoint_every=1000, **(sampler or {}))

    fresh(5, 1)  # warm-up: the first chain of the process also loads compiled kernels (numba), which no probe may see
    cost = []
    for n in (20, 60):  # the difference of two probes: the set-up (loading the kernel, the target) cancels
        c0 = time.process_time()
        fresh(n, 1)
        cost.append(time.process_time() - c0)
    per_cycle = (cost[1] - cost[0]) / 40
    n_cycles = max(100, int(seconds / max(per_cycle, 1e-4)))
    thin = max(1, n_cycles // 20_000)
    c0 = time.process_time()
    res = fresh(n_cycles, thin)
    chain_cpu_s = time.process_time() - c0
    c = res.counters
    phi, psi = backbone_dihedrals(res.positions.reshape(-1, 22, 3))
    phi, psi = phi.reshape(res.positions.shape[:2]).T, psi.reshape(res.positions.shape[:2]).T  # (chains, T)
    n_frames = phi.shape[1]
    cpu_per_frame = chain_cpu_s / max(n_frames, 1)
    visits = first_visit_times(basin_labels(phi, psi), len(ALANINE_DIPEPTIDE_BASINS), dt=cpu_per_frame)
    burn = n_frames // 10
    phi, psi = phi[:, burn:], psi[:, burn:]
    metrics = _basin_metrics(phi, res.wall_s)
    miss = np.isinf(visits)
    m = {"cycles": n_cycles, "burn_in_cycles": burn * thin, "thin": thin, "chains": chains, "proposals": proposals,
         "sampler": res_config(chain), "cpu_ms_per_cycle": 1e3 * chain_cpu_s / n_cycles,
         "n_local_mala": n_local, "acceptance": c["accepted"] / max(c["mh_steps"], 1),
         "local_acceptance": c["local_accepted"] / max(n_local * chains * n_cycles, 1),
         "nonfinite_proposals": c["n_nonfinite"],
         "energy_evaluations": c["proposals"] + n_local * chains * n_cycles, "chain_cpu_s": chain_cpu_s, **metrics,
         "ess_per_cpu_s_first_zero": metrics["ess_first_zero"] / chain_cpu_s,
         "ess_per_cpu_s_batch_means": metrics["ess_batch_means"] / chain_cpu_s,
         # CPU seconds of the whole batch of chains until each chain's first frame in each basin (from cycle 0)
         "first_visit_cpu_s_per_chain": np.where(miss, -1.0, visits).round(3).tolist(),
         "first_visit_cpu_s_max_per_basin": [float(v) for v in np.where(miss, np.nan, visits).max(0)],
         "basins": [b.name for b in ALANINE_DIPEPTIDE_BASINS], "missed_basins": int(miss.sum()),
         "chain_basin_pairs": int(miss.size), "_phi_psi": (phi, psi)}
    return {"metrics": m, "angles": (phi, psi)}


def res_config(chain: Path) -> dict:
    """The sampler and target settings stored in a chain file."""
    import h5py

    with h5py.File(chain, "r") as h5:
        cfg = json.loads(h5.attrs["config"])
    return {"target": cfg["target"], "sampler": cfg["sampler"]}


#: the samplers of the ``fast`` stage: ``baseline`` is the sampler of the headline run (OpenMM Reference energies,
#: one proposal batch per accepted draw, one MALA step at 5e-5 A^2 per cycle); the others change one thing at a time.
#: The HMC move (unit masses, 10 leapfrog steps of 0.02, about 50 % accepted) was picked from short probes (32
#: chains, 1000-1500 cycles): steps 0.015/0.02 and 10/20 leapfrog steps, 4 or 8 proposals; MALA's one 0.01 A step
#: per cycle leaves the bond angles that decide whether a phi/psi jump is accepted correlated over ~100-190 cycles,
#: one HMC trajectory per cycle over ~10-20
FAST_SAMPLERS = {
    "baseline": {"platform": "Reference", "reuse_draws": False},
    "numba": {"platform": "numba", "reuse_draws": False},
    "numba_reuse": {"platform": "numba"},
    "numba_reuse_hmc": {"platform": "numba", "local": {"name": "hmc", "step_size": 0.02, "n_leapfrog": 10}},
}


def fast_stage(saved: Path, samplers: list[str], seconds: float, chains: int, proposals: int, n_local: int,
               seed: int, reference: str) -> dict:
    """The frozen bootstrap kernel of a saved torsion stage (``saved``; its run folder beside it) sampled again by
    each sampler of ``FAST_SAMPLERS`` for ``seconds`` CPU seconds, in this process one after the other. The kernel's
    training cost is the saved stage's (both trainings and the first chain), amortised over 24 h as there; ESS per
    CPU second, acceptance, entries, first visits, and accuracy against ``reference`` for each."""
    stage = json.loads(saved.read_text())
    args, res = stage["key"], stage["result"]
    if "bootstrap" not in res:
        raise SystemExit(f"{saved} has no bootstrap kernel (run the torsion stage with --bootstrap)")
    run = saved.parent / f"torsion_bootstrap_lag{args['torsion_lag_ps']:g}ps_u{args['uniform']:g}"
    if not (run / "model.pt").exists():
        raise SystemExit(f"no bootstrap kernel at {run}/model.pt")
    cost = float(res["bootstrap"]["training_cost_cpu_s"])
    out: dict = {"kernel": str(run / "model.pt"), "training_cost_cpu_s": cost, "stage": str(saved),
                 "saved_bootstrap_ess_per_cpu_s_first_zero": res["bootstrap"]["ess_per_cpu_s_first_zero"],
                 "saved_bootstrap_ess_per_cpu_s_batch_means": res["bootstrap"]["ess_per_cpu_s_batch_means"],
                 "samplers": {}}
    for name in samplers:
        r = _torsion_chain(run, WORK / "largestep" / f"chain_fast_{name}.h5", seconds, chains, proposals, n_local,
                           seed + 1, FAST_SAMPLERS[name])
        m = r.pop("metrics")
        m.pop("_phi_psi")
        m["training_cost_cpu_s"] = cost
        _amortise(m, cost)
        m.update(_against_reference(*r.pop("angles"), reference))
        out["samplers"][name] = m
        # each sampler's result as it finishes (a run cut off later still leaves it)
        (WORK / "largestep" / f"fast_{name}.json").write_text(json.dumps(m, default=float))
        print("fast", name, json.dumps({k: m[k] for k in ("cpu_ms_per_cycle", "acceptance", "entries", "ess_first_zero",
                                                           "ess_per_cpu_s_first_zero", "ess_per_cpu_s_batch_means",
                                                           "missed_basins")}), flush=True)
    if "baseline" in out["samplers"]:
        b = out["samplers"]["baseline"]
        for m in out["samplers"].values():
            m["speedup_vs_baseline_first_zero"] = _ratio(m["ess_per_cpu_s_first_zero"], b["ess_per_cpu_s_first_zero"])
            m["speedup_vs_baseline_batch_means"] = _ratio(m["ess_per_cpu_s_batch_means"],
                                                          b["ess_per_cpu_s_batch_means"])
    return out


def _ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None  # None: the baseline has no effective sample (no basin entry) in its budget


def headline(samplers: dict, remd: dict) -> dict:
    """Ratios per CPU second, all from this run: each exact sampler of ``samplers`` (name -> its metrics, training
    amortised over 24 h) against the best replica-exchange setting, both ESS estimators; with missed basins,
    acceptance and accuracy beside them, and the best exact sampler named."""
    best = remd["settings"][remd["best"]]
    best_bm = remd["settings"][remd["best_batch_means"]]
    robust = remd["settings"][remd["best_min_entries"]] if "best_min_entries" in remd else None
    robust_bm = remd["settings"][remd["best_min_entries_batch_means"]] if robust else None
    out: dict = {"remd_best_setting": remd["best"], "remd_best_setting_batch_means": remd["best_batch_means"],
                 "remd_best": {k: best.get(k) for k in ("ess_per_cpu_s_first_zero", "ess_per_cpu_s_batch_means",
                                                        "entries", "cpu_s", "exchange_acceptance",
                                                        "ramachandran_js_vs_reference",
                                                        "phi_profile_error_vs_reference_kT", "missed_basins")},
                 "samplers": {}}
    if robust:
        out["remd_best_min_entries_setting"] = remd["best_min_entries"]
        out["remd_best_min_entries_setting_batch_means"] = remd["best_min_entries_batch_means"]
        out["remd_best_min_entries"] = {k: robust.get(k) for k in out["remd_best"]}
    for name, r in samplers.items():
        fz, bm = r["ess_per_cpu_s_first_zero_amortised_24h"], r["ess_per_cpu_s_batch_means_amortised_24h"]
        out["samplers"][name] = {
            "ess_per_cpu_s_first_zero": r["ess_per_cpu_s_first_zero"],
            "ess_per_cpu_s_batch_means": r["ess_per_cpu_s_batch_means"],
            "ess_per_cpu_s_first_zero_amortised_24h": fz, "ess_per_cpu_s_batch_means_amortised_24h": bm,
            "ratio_vs_remd_best_first_zero": _ratio(fz, best["ess_per_cpu_s_first_zero"]),
            "ratio_vs_remd_best_batch_means": _ratio(bm, best_bm["ess_per_cpu_s_batch_means"]),
            **({"ratio_vs_remd_best_min_entries_first_zero": _ratio(fz, robust["ess_per_cpu_s_first_zero"]),
                "ratio_vs_remd_best_min_entries_batch_means": _ratio(bm, robust_bm["ess_per_cpu_s_batch_means"])}
               if robust else {}),
            "training_cost_cpu_s": r.get("training_cost_cpu_s", r.get("train_cpu_s")),
            **{k: r.get(k) for k in ("acceptance", "entries", "population", "missed_basins", "chain_basin_pairs",
                                     "chain_cpu_s", "ramachandran_js_vs_reference",
                                     "phi_profile_error_vs_reference_kT")}}
    best_exact = max(out["samplers"], key=lambda k: out["samplers"][k]["ess_per_cpu_s_first_zero_amortised_24h"])
    out["best_exact_sampler"] = best_exact
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
    ap.add_argument("--bootstrap", action="store_true",
                    help="then fit an independence torus kernel to the first chain's samples and run a second chain")
    ap.add_argument("--bootstrap-uniform", type=float, default=0.1)
    ap.add_argument("--chain-cpu-s", type=float, default=None,
                    help="CPU seconds of each torsion chain (default: --seconds)")
    ap.add_argument("--remd-settings", default=",".join(REMD_SETTINGS),
                    help="comma-separated names of REMD_SETTINGS for the remd_tuned stage")
    ap.add_argument("--remd-cpu-s", type=float, default=180.0, help="CPU seconds per replica-exchange setting")
    ap.add_argument("--remd-burn-in", type=float, default=0.1, help="fraction of the iterations dropped")
    ap.add_argument("--rescore-of", default="sampling_largestep_remd_tuned",
                    help="rescore stage: the --name of the run whose saved torsion stage is scored again")
    ap.add_argument("--fast-samplers", default=",".join(FAST_SAMPLERS),
                    help="fast stage: comma-separated names of FAST_SAMPLERS run on the saved bootstrap kernel of "
                         "--rescore-of")
    ap.add_argument("--reference", default="remd", choices=["remd", "biased"],
                    help="reference for the Ramachandran JS and the phi profile")
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
        # saved as it finishes, so that a rerun of the same command (e.g. after the remd_tuned stage was cut off)
        # reuses it instead of training and sampling again
        keys = ("torsion_md", "torsion_lag_ps", "train_minutes", "seconds", "chain_cpu_s", "chains", "proposals",
                "local", "uniform", "seed", "bootstrap", "bootstrap_uniform", "reference")
        key = {k: vars(args)[k] for k in keys}
        saved = WORK / "largestep" / f"torsion_stage_{args.name}.json"
        if saved.exists() and json.loads(saved.read_text())["key"] == key:
            res["torsion"] = json.loads(saved.read_text())["result"]
            print("torsion (saved)", flush=True)
        else:
            res["torsion"] = torsion_stage(WORK / "largestep" / args.torsion_md, args.torsion_lag_ps,
                                           args.train_minutes, args.chain_cpu_s or args.seconds, args.chains,
                                           args.proposals, args.local, args.uniform, args.seed, args.bootstrap,
                                           args.bootstrap_uniform, args.reference)
            saved.write_text(json.dumps({"key": key, "result": res["torsion"]}, default=float))
        print("torsion", json.dumps({k: res["torsion"][k] for k in ("acceptance", "entries", "ess_first_zero",
                                                                     "ess_per_cpu_s_first_zero", "missed_basins")}),
              flush=True)
    if "rescore" in stages:  # the saved torsion stage of run NAME against --reference, without sampling again
        res["rescore"] = rescore_stage(WORK / "largestep" / f"torsion_stage_{args.rescore_of}.json", args.reference)
        print("rescore", json.dumps(res["rescore"], default=float)[:2000], flush=True)
    if "fast" in stages:
        res["fast"] = fast_stage(WORK / "largestep" / f"torsion_stage_{args.rescore_of}.json",
                                 args.fast_samplers.split(","), args.chain_cpu_s or args.seconds, args.chains,
                                 args.proposals, args.local, args.seed, args.reference)
    if "remd_tuned" in stages:
        res["remd_tuned"] = remd_tuned_stage(args.remd_settings.split(","), args.remd_cpu_s, args.remd_burn_in,
                                             args.seed, args.reference)
    if stages & {"torsion", "remd_tuned", "fast"}:  # what JS and the phi profile were measured against
        if args.reference not in _REF_CACHE:
            _REF_CACHE[args.reference] = _reference(args.reference)
        if _REF_CACHE[args.reference] is not None:
            res["reference"] = {"kind": args.reference, **_REF_CACHE[args.reference][3]}
    if res.get("remd_tuned", {}).get("best") and stages & {"torsion", "fast"}:
        samplers = {}
        if "torsion" in res:  # the torsion kernel (a) and its bootstrap kernel
            samplers["torsion_kernel"] = res["torsion"]
            if "bootstrap" in res["torsion"]:
                samplers["bootstrap_kernel"] = res["torsion"]["bootstrap"]
        for name, m in res.get("fast", {}).get("samplers", {}).items():  # the faster samplers of that kernel
            samplers[f"bootstrap_kernel_{name}"] = m
        res["headline"] = headline(samplers, res["remd_tuned"])
        print("headline", json.dumps(res["headline"], default=float), flush=True)
    notes = ["preliminary: short runs on a shared 2-core machine under load (see machine.loadavg); ESS of the basin "
             "indicator means little without entries into the basin (reported beside it)"]
    if "remd_tuned" in res:
        rt = res["remd_tuned"]["settings"]
        notes.append(f"replica exchange: {len(rt)} settings of {args.remd_cpu_s:g} CPU-s each, run in this process "
                     f"after the torsion stage; {min(r['entries'] for r in rt.values())}-"
                     f"{max(r['entries'] for r in rt.values())} basin entries at 300 K per setting, so each "
                     "setting's ESS is uncertain by a factor of a few and the best of them is picked from noisy "
                     "estimates (which favours replica exchange)")
        missing = [k for k in REMD_SETTINGS if k not in rt]
        if missing:
            notes.append(f"settings not run (cut for time): {', '.join(missing)}")
    path = write_result(args.name, res, seed=args.seed, notes=notes, sweep=not args.headline)
    print("wrote", path)


if __name__ == "__main__":
    main()
