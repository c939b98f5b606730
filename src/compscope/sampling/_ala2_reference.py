"""Alanine-dipeptide reference at 300 K by replica exchange (openmmtools ``multistate``), resumable, cached.

Plain 300 K vacuum MD all but misses the C7ax / alpha_L basin (0 < phi < 2.2 rad), which holds a few percent of
the equilibrium population: the barrier from C7eq is crossed on a microsecond scale. Parallel tempering
(``ParallelTemperingSampler``: ``n_replicas`` temperatures spaced geometrically between ``t_min`` and ``t_max``,
Langevin dynamics between exchange attempts, all-pairs Gibbs swaps) visits it at high temperature and hands the
configurations down to 300 K, where they are kept exactly (no reweighting).

``n_runs`` independent runs (different seeds and starting velocities) are fanned out as Ray tasks, one CPU each,
as ``compscope md reference`` does; each run's openmmtools storage (NetCDF: every iteration's state indices,
reduced energies, exchange statistics and all 22 atom positions; a full checkpoint every
``checkpoint_interval`` iterations) lives in ``<out>/runs/run_XX/`` and is what ``--resume`` continues from
(``ParallelTemperingSampler.from_storage``). Settings are stored in ``<out>/config.yaml`` and checked by
:func:`compscope.train.check_unchanged` on resume (only ``n_iterations`` and ``workers`` may change).

:func:`assemble_ala2_reference` turns whatever the runs hold (finished or not) into ``<out>/reference.h5``:

* ``positions`` (N, 22, 3) Å of the 300 K state after ``burn_in`` iterations, run-major;
* ``energy`` (N,) reduced energy at 300 K (kT); ``phi``, ``psi`` (N,) rad; ``run``, ``iteration`` (N,);
* ``temperatures`` (K,), ``acceptance`` (K-1,) neighbour exchange acceptance;
* in the summary also the basin population and the fraction of frames with a cis peptide bond at every
  temperature (cis bonds form at the top of the ladder; they belong to the force field's ensemble and are kept);
* attributes: the config, the target's config, the basin population with its error bars, wall time.

The error bar of the basin population comes from blocks (each run cut into ``n_blocks`` consecutive blocks; the
standard error of all block means) and, with two or more runs, from the spread of the runs' populations.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from ._errors import SamplingInputError
from ._files import run_lock
from ._mbar import mbar_expectation, mbar_histogram
from ._openmm_target import ALA2_BASIN, ALA2_PHI, ALA2_PSI, dihedral_angles

__all__ = ["make_ala2_reference", "assemble_ala2_reference", "basin_population", "ala2_reference_dir",
           "ALA2_REFERENCE_DEFAULTS", "run_replica_exchange", "read_replica_exchange_run", "check_integrator"]

log = logging.getLogger(__name__)

ALA2_REFERENCE_DEFAULTS = {
    "n_runs": 2,  # independent replica-exchange runs (Ray tasks)
    "n_iterations": 20000,  # exchange iterations per run (each: steps_per_iteration MD steps per replica)
    "n_replicas": 8,
    "t_min": 300.0,  # K; the state that is kept
    "t_max": 1000.0,  # K; C7eq <-> C7ax crossings happen on a ~10 ps scale here
    "steps_per_iteration": 500,
    "timestep_fs": 1.0,  # no constraints (every Cartesian degree of freedom of the target is sampled)
    "collision_rate_ps": 1.0,
    "checkpoint_interval": 50,
    "burn_in": 200,  # iterations dropped from the start of each run
    "platform": "CPU",
    "seed": 0,
    "workers": None,  # Ray worker processes (default: n_runs); 0 runs in this process, one run after another
}
"""Defaults of :func:`make_ala2_reference` (every one can be overridden; ``--set key=value`` on the CLI)."""

#: the two peptide bonds' dihedrals CH3-C-N-CA (ACE-ALA) and CA-C-N-CH3 (ALA-NME); trans is |omega| ~ pi
ALA2_OMEGAS = ((0, 1, 6, 7), (7, 9, 16, 17))
RAMA_BINS = 64  # Ramachandran histograms of reference.h5 (phi x psi on [-pi, pi]^2)
_SAFE = {"n_iterations", "workers"}  # settings a resumed run may change


def ala2_reference_dir(seed: int = 0, path: str | Path | None = None) -> Path:
    """``<data dir>/sampling/ala2_remd_seed<S>`` (data dir: ``path`` > ``$COMPSCOPE_DATA`` > cache)."""
    from compscope.data.datasets import data_dir

    return data_dir(path) / "sampling" / f"ala2_remd_seed{int(seed)}"


def basin_population(phi: np.ndarray, run: np.ndarray | None = None, n_blocks: int = 10,
                     basin: tuple[float, float] = ALA2_BASIN, weights: np.ndarray | None = None) -> dict:
    """Fraction of frames with ``basin[0] < phi < basin[1]`` and its error bars.

    Args:
        phi: (N,) rad, each run's frames in time order.
        run: (N,) run index of each frame (default: one run).
        n_blocks: consecutive blocks per run for the block standard error.
        weights: optional (N,) non-negative importance weights (a biased run reweighted): every population
            (overall, per run, per block) is then the self-normalised weighted fraction; without weights each
            frame counts once.

    Returns:
        ``population``, ``error_blocks`` (standard error of all block means), ``error_runs`` (standard error of the
        runs' populations; None with one run), ``per_run``, ``n_samples``, ``n_blocks``, ``entries`` (times a run
        enters the basin) and ``n_effective`` (``p (1 - p) / error_blocks**2``, the independent samples the
        block error corresponds to).
    """
    phi = np.asarray(phi, dtype=np.float64)
    run = np.zeros(len(phi), dtype=int) if run is None else np.asarray(run)
    if len(phi) == 0:
        raise SamplingInputError("no frames to estimate the basin population from",
                                 hint="run more iterations than burn_in")
    ind = ((phi > basin[0]) & (phi < basin[1])).astype(np.float64)
    if weights is None:
        w = np.ones(len(phi))
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != phi.shape or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise SamplingInputError("weights must be finite and non-negative, one per frame, with a positive sum",
                                     hint="pass the importance weights of the frames (e.g. exp(log_weight))")
    mean = lambda x, wx: float((x * wx).sum() / wx.sum()) if wx.sum() > 0 else 0.0  # noqa: E731
    blocks, per_run, entries = [], [], 0
    for r in np.unique(run):
        x, wr = ind[run == r], w[run == r]
        per_run.append(mean(x, wr))
        entries += int(x[0] + ((x[1:] - x[:-1]) > 0).sum())
        k = max(1, min(int(n_blocks), len(x)))
        blocks.extend(mean(b, wb) for b, wb in zip(np.array_split(x, k), np.array_split(wr, k)))
    blocks = np.asarray(blocks)
    err_b = float(blocks.std(ddof=1) / np.sqrt(len(blocks))) if len(blocks) > 1 else float("nan")
    err_r = float(np.std(per_run, ddof=1) / np.sqrt(len(per_run))) if len(per_run) > 1 else None
    p = mean(ind, w)
    n_eff = float(p * (1 - p) / err_b**2) if err_b > 0 else None
    return {"population": p, "error_blocks": err_b, "error_runs": err_r, "per_run": per_run,
            "n_samples": int(len(phi)), "n_blocks": int(len(blocks)), "entries": entries, "n_effective": n_eff}


def _storage(run_dir: Path) -> Path:
    return run_dir / "remd.nc"


def run_replica_exchange(spec: dict, max_iterations: int | None = None, max_cpu_s: float | None = None) -> dict:
    """Run (or continue) one replica-exchange run described by ``spec``; returns its progress.

    ``spec``: the config plus ``run`` (index) and ``dir`` (its folder); optional ``constraints`` (``None``, the
    reference's default, or ``"HBonds"``), ``hydrogen_mass`` (amu; hydrogen-mass repartitioning, e.g. 3.024 for
    4 fs steps with ``HBonds``) and ``solvent`` (``"vacuum"``, the default, or ``"obc"``: amber14 + OBC2 implicit
    solvent, the coarse-graining reference's system). Iterations go in chunks of ``checkpoint_interval``; after each
    chunk ``progress.json`` (iterations done, wall seconds, CPU seconds of this process) is rewritten.
    ``max_iterations`` stops early (the run stays resumable), as an interrupted run would; ``max_cpu_s`` stops after
    the chunk in which the run's CPU seconds (all chunks, resumed ones included) reach it. A lock file keeps a
    second process off a run that is going.
    """
    check_integrator(spec)
    run_dir = Path(spec["dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = _lock(run_dir)  # one process per run: a second --resume while the first still runs is refused
    try:
        return _run_locked(spec, run_dir, max_iterations, max_cpu_s)
    finally:
        lock.close()


def check_integrator(spec: dict) -> None:
    """Refuse a replica-exchange integrator setting that is unstable: more than 2 fs without constraints, more than
    2 fs with ``HBonds`` but no hydrogen-mass repartitioning, or more than 4 fs."""
    dt = float(spec.get("timestep_fs", ALA2_REFERENCE_DEFAULTS["timestep_fs"]))
    cons = spec.get("constraints")
    hmass = spec.get("hydrogen_mass")
    if cons is not None and str(cons).lower() not in ("hbonds", "none"):
        raise SamplingInputError(f"constraints {cons!r} are not supported by the replica-exchange runs",
                                 hint="use None (every degree of freedom free) or 'HBonds'")
    rigid = cons is not None and str(cons).lower() == "hbonds"
    if not dt > 0:
        raise SamplingInputError(f"timestep must be positive, got {dt} fs", hint="e.g. timestep_fs=1")
    if dt > 2.0 and not rigid:
        raise SamplingInputError(f"timestep {dt} fs is too large without constraints",
                                 hint="use timestep_fs <= 2 (bonds to hydrogen are free), or constraints=HBonds")
    if dt > 2.0 and not hmass:
        raise SamplingInputError(f"timestep {dt} fs needs hydrogen-mass repartitioning",
                                 hint="set hydrogen_mass=3.024 (amu) or use timestep_fs <= 2")
    if dt > 4.0:
        raise SamplingInputError(f"timestep {dt} fs is too large even with HBonds and hydrogen-mass repartitioning",
                                 hint="use timestep_fs <= 4")


def _lock(run_dir: Path):
    return run_lock(run_dir, "assemble_ala2_reference")


def _run_locked(spec: dict, run_dir: Path, max_iterations: int | None, max_cpu_s: float | None) -> dict:
    import openmm as mm
    import openmm.unit as unit
    from openmmtools import cache, mcmc, multistate, states

    from compscope.integrations.openmm_systems import alanine_dipeptide_system

    multistate.MultiStateSampler._global_citation_silence = True  # no citation banner on stdout (CLI prints JSON)
    for name in ("openmmtools.multistate.multistatesampler", "openmmtools.multistate.multistatereporter"):
        logging.getLogger(name).setLevel(logging.ERROR)  # "the multistate API is experimental", once per run
    storage = _storage(run_dir)
    progress_file = run_dir / "progress.json"
    progress = json.loads(progress_file.read_text()) if progress_file.exists() else {"wall_s": 0.0}
    progress.setdefault("cpu_s", 0.0)
    c_setup, t_setup = time.process_time(), time.perf_counter()
    seed = int(spec["seed"]) * 1000 + int(spec["run"])
    np.random.seed(seed % (2**32))  # openmmtools draws exchanges from numpy's global generator
    platform = mm.Platform.getPlatformByName(spec["platform"])
    if spec["platform"] == "CPU":
        platform.setPropertyDefaultValue("Threads", "1")
    context_cache = cache.ContextCache(platform=platform)
    if storage.exists() and (run_dir / "started").exists():
        reporter = multistate.MultiStateReporter(str(storage), open_mode="a")
        sampler = multistate.ParallelTemperingSampler.from_storage(reporter)
    else:
        for f in run_dir.glob("remd*.nc"):  # a run that died before its first checkpoint: start over
            f.unlink()
        pdb, system = alanine_dipeptide_system(spec.get("solvent", "vacuum"), constraints=spec.get("constraints"))
        if spec.get("hydrogen_mass"):
            from compscope.integrations.openmm_systems import repartition_hydrogen_mass

            repartition_hydrogen_mass(system, pdb.topology, float(spec["hydrogen_mass"]))
        move = mcmc.LangevinDynamicsMove(timestep=float(spec["timestep_fs"]) * unit.femtosecond,
                                         collision_rate=float(spec["collision_rate_ps"]) / unit.picosecond,
                                         n_steps=int(spec["steps_per_iteration"]), reassign_velocities=False)
        sampler = multistate.ParallelTemperingSampler(mcmc_moves=move, number_of_iterations=int(spec["n_iterations"]))
        reporter = multistate.MultiStateReporter(str(storage), checkpoint_interval=int(spec["checkpoint_interval"]),
                                                 analysis_particle_indices=list(range(system.getNumParticles())))
        ts = states.ThermodynamicState(system, temperature=float(spec["t_min"]) * unit.kelvin)
        sampler.create(ts, states.SamplerState(pdb.positions), reporter,
                       min_temperature=float(spec["t_min"]) * unit.kelvin,
                       max_temperature=float(spec["t_max"]) * unit.kelvin, n_temperatures=int(spec["n_replicas"]))
        sampler.minimize(max_iterations=200)
        (run_dir / "started").write_text("")
    sampler.energy_context_cache = context_cache
    sampler.sampler_context_cache = context_cache
    target = int(spec["n_iterations"]) if max_iterations is None else min(int(spec["n_iterations"]),
                                                                          int(max_iterations))
    chunk = max(1, int(spec["checkpoint_interval"]))
    # set-up (building or reopening the sampler, minimising) is part of the run's cost
    progress["setup_cpu_s"] = progress.get("setup_cpu_s", 0.0) + time.process_time() - c_setup
    progress["setup_wall_s"] = progress.get("setup_wall_s", 0.0) + time.perf_counter() - t_setup
    try:
        while sampler.iteration < target:
            if max_cpu_s is not None and progress["cpu_s"] >= float(max_cpu_s):
                break
            n = min(chunk, target - sampler.iteration)
            t0, c0 = time.perf_counter(), time.process_time()
            sampler.extend(n)
            progress["wall_s"] += time.perf_counter() - t0
            progress["cpu_s"] += time.process_time() - c0
            progress.update(iterations=int(sampler.iteration), updated=time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                      time.gmtime()))
            tmp = progress_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(progress))
            os.replace(tmp, progress_file)
    finally:
        reporter.close()
    return {"run": int(spec["run"]), **progress}


def _read_run(run_dir: Path, burn_in: int) -> dict | None:
    """The 300 K frames of one run's storage (positions Å, reduced energies kT) and its exchange statistics."""
    import netCDF4

    storage = _storage(run_dir)
    if not storage.exists():
        return None
    with netCDF4.Dataset(str(storage), "r") as nc:
        n_it = int(nc.variables["last_iteration"][0]) + 1 if "last_iteration" in nc.variables else 0
        if n_it <= 1 or "positions" not in nc.variables:
            return None
        states = np.asarray(nc.variables["states"][:n_it])  # (it, replica) -> thermodynamic state
        energies = np.asarray(nc.variables["energies"][:n_it])  # (it, replica, state) reduced potentials
        accepted = np.asarray(nc.variables["accepted"][1:n_it]).sum(0)  # (state, state)
        proposed = np.asarray(nc.variables["proposed"][1:n_it]).sum(0)
        start = min(max(int(burn_in), 1), n_it)  # iteration 0 is the (minimised) starting structure
        rep0 = np.argmax(states[start:] == 0, axis=1)  # the replica in the 300 K state at each iteration
        its = np.arange(start, n_it)
        allpos = np.asarray(nc.variables["positions"][start:n_it])  # (it, replica, atoms, 3) nm
        pos = allpos[np.arange(len(its)), rep0] * 10.0  # Å
        u = energies[its, rep0, 0]
        # basin frames per thermodynamic state (all replicas): how often each temperature visits it
        phi_all = dihedral_angles(allpos.reshape(-1, allpos.shape[2], 3), ALA2_PHI).reshape(allpos.shape[:2])
        in_basin = (phi_all > ALA2_BASIN[0]) & (phi_all < ALA2_BASIN[1])
        # cis peptide bonds (|omega| < pi/2) appear at the top of the ladder: a diagnostic, kept in the ensemble
        omega = dihedral_angles(allpos.reshape(-1, allpos.shape[2], 3), ALA2_OMEGAS).reshape(*allpos.shape[:2], 2)
        cis = (np.abs(omega) < np.pi / 2).any(-1)
        st = states[start:n_it]
        # every replica's frame for MBAR: its reduced potential at every state, its dihedrals and state
        u_all = energies[start:n_it].reshape(-1, energies.shape[2])  # (it * replica, state), iteration-major
        psi_all = dihedral_angles(allpos.reshape(-1, allpos.shape[2], 3), ALA2_PSI)
        per_state = [(int(in_basin[st == k].sum()), int((st == k).sum()), int(cis[st == k].sum()))
                     for k in range(states.shape[1])]
    k = accepted.shape[0]
    acc = [float(accepted[i, i + 1] + accepted[i + 1, i]) / max(float(proposed[i, i + 1] + proposed[i + 1, i]), 1.0)
           for i in range(k - 1)]
    progress = json.loads((run_dir / "progress.json").read_text()) if (run_dir / "progress.json").exists() else {}
    return {"positions": pos, "energy": u, "iteration": its, "n_iterations": n_it - 1, "acceptance": acc,
            "wall_s": float(progress.get("wall_s", 0.0)), "per_state": per_state,
            "all": {"u_kn": u_all.T, "state": st.reshape(-1), "phi": phi_all.reshape(-1), "psi": psi_all,
                    "iteration": np.repeat(its, states.shape[1])}}


def read_replica_exchange_run(run_dir: str | Path, burn_in: int = 0) -> dict | None:
    """What one run folder of :func:`run_replica_exchange` holds (None before its first stored iteration).

    Returns ``positions`` (Å) of the ``t_min`` state after ``burn_in`` iterations, its reduced ``energy``,
    ``iteration``, ``n_iterations``, ``acceptance`` (neighbour pairs of the ladder), ``per_state`` (frames in the
    basin, frames, cis frames per temperature), ``wall_s`` and ``progress`` (``progress.json``: wall and CPU
    seconds), and ``all`` (every replica's frame for MBAR).
    """
    run_dir = Path(run_dir)
    data = _read_run(run_dir, int(burn_in))
    if data is not None:
        f = run_dir / "progress.json"
        data["progress"] = json.loads(f.read_text()) if f.exists() else {}
    return data


def _temperatures(cfg: dict) -> np.ndarray:
    # openmmtools' geometric ladder (ParallelTemperingSampler.create: np.logspace)
    return np.geomspace(float(cfg["t_min"]), float(cfg["t_max"]), int(cfg["n_replicas"]))


def assemble_ala2_reference(out: str | Path, n_blocks: int = 10, burn_in: int | None = None,
                            path: str | Path | None = None) -> tuple[Path, dict]:
    """Write ``<out>/reference.h5`` (or ``path``) from whatever the runs in ``out`` hold; returns it and a summary.

    Works on a run that is still going (the storage is only read), so the basin population can be watched while
    it converges; ``burn_in`` overrides the configured one for such a look.
    """
    import h5py
    import yaml

    out = Path(out)
    cfg_file = out / "config.yaml"
    if not cfg_file.exists():
        raise SamplingInputError(f"{out} holds no alanine-dipeptide replica-exchange run (no config.yaml)",
                                 hint="run `compscope sample reference ala2 --out DIR` first")
    cfg = yaml.safe_load(cfg_file.read_text())
    if burn_in is not None:
        cfg["burn_in"] = int(burn_in)
    runs = []
    for r in range(int(cfg["n_runs"])):
        data = _read_run(out / "runs" / f"run_{r:02d}", int(cfg["burn_in"]))
        if data is not None and len(data["energy"]):
            runs.append((r, data))
    if not runs:
        raise SamplingInputError(f"no run in {out} has iterations beyond burn_in ({cfg['burn_in']})",
                                 hint="let the runs go on (--resume) or lower burn_in")
    pos = np.concatenate([d["positions"] for _, d in runs])
    energy = np.concatenate([d["energy"] for _, d in runs])
    run = np.concatenate([np.full(len(d["energy"]), r) for r, d in runs])
    iteration = np.concatenate([d["iteration"] for _, d in runs])
    phi = dihedral_angles(pos, ALA2_PHI)
    psi = dihedral_angles(pos, ALA2_PSI)
    pop = basin_population(phi, run, n_blocks=n_blocks)
    acc = np.mean([d["acceptance"] for _, d in runs], axis=0)
    iters = [d["n_iterations"] for _, d in runs]
    per_state = np.sum([d["per_state"] for _, d in runs], axis=0)  # (state, (in basin, frames, cis))
    wall = [d["wall_s"] for _, d in runs]
    ps_per_it = float(cfg["steps_per_iteration"]) * float(cfg["timestep_fs"]) * 1e-3
    summary = {
        "basin": list(ALA2_BASIN), "basin_population": pop["population"],
        "basin_error_blocks": pop["error_blocks"], "basin_error_runs": pop["error_runs"],
        "basin_population_per_run": pop["per_run"], "n_samples": pop["n_samples"], "n_blocks": pop["n_blocks"],
        "n_runs_with_data": len(runs), "iterations_per_run": iters, "iterations_target": int(cfg["n_iterations"]),
        "complete": all(i >= int(cfg["n_iterations"]) for i in iters) and len(runs) == int(cfg["n_runs"]),
        "temperatures_K": [round(float(t), 3) for t in _temperatures(cfg)],
        "neighbour_acceptance": [round(float(a), 4) for a in acc],
        "basin_population_per_temperature": [round(float(b) / max(float(n), 1.0), 5) for b, n, _ in per_state],
        "cis_fraction_per_temperature": [round(float(c) / max(float(n), 1.0), 5) for _, n, c in per_state],
        "basin_entries_300K": pop["entries"], "n_effective": pop["n_effective"],
        "simulated_ns_300K": float(sum(iters) * ps_per_it * 1e-3),
        "simulated_ns_all_replicas": float(sum(iters) * ps_per_it * 1e-3 * int(cfg["n_replicas"])),
        "burn_in": int(cfg["burn_in"]), "wall_s_per_run": wall, "energy_mean_kT": float(energy.mean()),
        "energy_sd_kT": float(energy.std()),
    }
    # MBAR over every replica: all temperatures' frames reweighted to t_min (samples run-major, iteration order)
    u_kn = np.concatenate([d["all"]["u_kn"] for _, d in runs], axis=1)
    st_all = np.concatenate([d["all"]["state"] for _, d in runs])
    run_all = np.concatenate([np.full(len(d["all"]["state"]), r) for r, d in runs])
    phi_all = np.concatenate([d["all"]["phi"] for _, d in runs])
    psi_all = np.concatenate([d["all"]["psi"] for _, d in runs])
    in_basin_all = ((phi_all > ALA2_BASIN[0]) & (phi_all < ALA2_BASIN[1])).astype(np.float64)
    mb = mbar_expectation(in_basin_all, u_kn, st_all, run=run_all, n_blocks=n_blocks, state=0)
    summary["mbar"] = {
        "basin_population": mb["value"], "basin_error_blocks": mb["error_blocks"], "basin_error_runs": mb["error_runs"],
        "basin_population_per_run": mb["per_run"], "n_samples": int(len(st_all)), "ess": mb["ess"],
        "f_k": [round(float(f), 4) for f in mb["f_k"]]}
    summary["phi_profile_error_kT"] = _profile_errors(phi, run, phi_all, run_all, mb["log_w"], n_blocks)
    rama = {}
    for name, (x, y, lw, rr) in {"300K": (phi, psi, np.full(len(phi), -np.log(len(phi))), run),
                                 "mbar": (phi_all, psi_all, mb["log_w"], run_all)}.items():
        rama[name] = mbar_histogram(x, y, lw, bins=RAMA_BINS, range_=[[-np.pi, np.pi], [-np.pi, np.pi]], run=rr,
                                    n_blocks=n_blocks)
    final = Path(path) if path is not None else out / "reference.h5"
    tmp = final.with_name(final.name + ".tmp")
    with h5py.File(tmp, "w") as h5:
        h5["positions"] = pos
        h5["positions"].attrs["unit"] = "angstrom"
        h5["energy"] = energy
        h5["energy"].attrs["unit"] = "kT at t_min"
        h5["phi"], h5["psi"] = phi, psi
        h5["run"], h5["iteration"] = run, iteration
        h5["temperatures"] = _temperatures(cfg)
        h5["acceptance"] = acc
        g = h5.create_group("all_replicas")  # every replica's frame, with its MBAR weight at t_min
        g["phi"], g["psi"], g["state"], g["run"] = phi_all, psi_all, st_all, run_all
        g["iteration"] = np.concatenate([d["all"]["iteration"] for _, d in runs])
        g["energy"] = u_kn[0]
        g["energy"].attrs["unit"] = "kT at t_min"
        g["log_w"] = mb["log_w"]
        g["log_w"].attrs["what"] = "normalised log MBAR weight at t_min"
        for name, (p_, se) in rama.items():  # Ramachandran probability histograms (phi x psi), 64 x 64 on [-pi, pi]
            h5[f"ramachandran/{name}"] = p_
            h5[f"ramachandran/{name}_se"] = se
        h5.attrs["config"] = json.dumps(cfg)
        h5.attrs["summary"] = json.dumps(summary)
        h5.attrs["target"] = json.dumps({"name": "ala2", "temperature": float(cfg["t_min"]), "forcefield": "amber14",
                                         "solvent": cfg.get("solvent", "vacuum"), "constraints": None})
    os.replace(tmp, final)
    return final, summary


def _profile_errors(phi: np.ndarray, run: np.ndarray, phi_all: np.ndarray, run_all: np.ndarray, log_w: np.ndarray,
                    n_blocks: int, bins: int = 36) -> dict:
    """Block standard error of the phi free-energy profile (kT) of both estimators on the bins both populate.

    ``se(F) = se(p) / p`` per bin; reported as the median and the largest over bins with p > 1e-3 in both (the
    basin's bins included), and the largest within the basin.
    """
    rng = (-np.pi, np.pi)
    p1, se1 = mbar_histogram(phi, None, np.zeros(len(phi)), bins=bins, range_=rng, run=run, n_blocks=n_blocks)
    p2, se2 = mbar_histogram(phi_all, None, log_w, bins=bins, range_=rng, run=run_all, n_blocks=n_blocks)
    ok = (p1 > 1e-3) & (p2 > 1e-3)
    centres = np.linspace(*rng, bins + 1)[:-1] + np.pi / bins
    basin = ok & (centres > ALA2_BASIN[0]) & (centres < ALA2_BASIN[1])
    out = {"bins": bins, "n_bins_compared": int(ok.sum())}
    for name, (p_, se) in {"300K": (p1, se1), "mbar": (p2, se2)}.items():
        f_se = se[ok] / p_[ok]
        out[name] = {"median": float(np.median(f_se)) if ok.any() else None,
                     "max": float(f_se.max()) if ok.any() else None,
                     "max_in_basin": float((se[basin] / p_[basin]).max()) if basin.any() else None}
    return out


def make_ala2_reference(out: str | Path | None = None, resume: bool = False, *, data_path: str | Path | None = None,
                        max_iterations: int | None = None, **settings) -> tuple[Path, dict]:
    """Replica-exchange reference of alanine dipeptide at ``t_min`` (300 K); returns ``reference.h5`` and a summary.

    A finished run in ``out`` is reused (assembled again, nothing sampled); an interrupted one is continued with
    ``resume=True``, or extended by a larger ``n_iterations``.

    Args:
        out: run folder (default :func:`ala2_reference_dir` of ``seed``).
        resume: continue the runs in ``out`` (settings other than ``n_iterations``/``workers`` must be unchanged).
        data_path: data directory for the default ``out``.
        max_iterations: stop every run at this many iterations (it stays resumable).
        **settings: any key of :data:`ALA2_REFERENCE_DEFAULTS`.
    """
    import yaml

    from compscope.errors import RunExistsError
    from compscope.train import check_unchanged

    unknown = sorted(set(settings) - set(ALA2_REFERENCE_DEFAULTS))
    if unknown:
        raise SamplingInputError(f"unknown setting(s) {unknown} of the alanine-dipeptide reference",
                                 hint=f"allowed: {', '.join(ALA2_REFERENCE_DEFAULTS)}")
    cfg = {**ALA2_REFERENCE_DEFAULTS, **settings}
    for k in ("n_runs", "n_iterations", "n_replicas", "steps_per_iteration", "checkpoint_interval"):
        if int(cfg[k]) < 1:
            raise SamplingInputError(f"{k} must be a positive integer, got {cfg[k]}", hint=f"--set {k}=...")
    if int(cfg["n_replicas"]) < 2 or not 0 < float(cfg["t_min"]) < float(cfg["t_max"]):
        raise SamplingInputError(f"need n_replicas >= 2 and 0 < t_min < t_max (got {cfg['n_replicas']}, "
                                 f"{cfg['t_min']}, {cfg['t_max']})", hint="e.g. --set n_replicas=8 --set t_max=1000")
    if not 0 <= int(cfg["burn_in"]) < int(cfg["n_iterations"]):
        raise SamplingInputError(f"burn_in ({cfg['burn_in']}) must be below n_iterations ({cfg['n_iterations']})",
                                 hint="lower burn_in or raise n_iterations")
    if float(cfg["timestep_fs"]) > 2.0:
        raise SamplingInputError(f"timestep {cfg['timestep_fs']} fs is too large without constraints",
                                 hint="use timestep_fs <= 1 (bonds to hydrogen are free)")
    out = Path(out) if out is not None else ala2_reference_dir(int(cfg["seed"]), data_path)
    cfg_file = out / "config.yaml"
    if cfg_file.exists():
        saved = yaml.safe_load(cfg_file.read_text()) or {}
        if resume:
            check_unchanged(saved, cfg, safe=_SAFE, where=str(out))
        else:
            check_unchanged(saved, cfg, safe={"workers"}, where=str(out))
            done = [_progress(out, r) >= int(cfg["n_iterations"]) for r in range(int(cfg["n_runs"]))]
            if not all(done):
                raise RunExistsError(f"{out} holds an unfinished alanine-dipeptide reference run",
                                     hint="pass --resume to continue it, or choose another --out")
            return assemble_ala2_reference(out)
    elif resume:
        from compscope.errors import ResumeError

        raise ResumeError(f"--resume: nothing to resume in {out} (no config.yaml)",
                          hint="run once without --resume first, or point --out at the run's folder")
    for r in range(int(cfg["n_runs"])):  # refuse before touching config.yaml if another process runs a run
        if (out / "runs" / f"run_{r:02d}").is_dir():
            _lock(out / "runs" / f"run_{r:02d}").close()
    out.mkdir(parents=True, exist_ok=True)
    cfg_file.write_text(yaml.safe_dump(cfg, sort_keys=False))
    specs = [{**cfg, "run": r, "dir": str(out / "runs" / f"run_{r:02d}")} for r in range(int(cfg["n_runs"]))
             if _progress(out, r) < int(cfg["n_iterations"])]
    _fan_out(specs, cfg["workers"], max_iterations)
    return assemble_ala2_reference(out)


def _progress(out: Path, r: int) -> int:
    f = out / "runs" / f"run_{r:02d}" / "progress.json"
    return int(json.loads(f.read_text()).get("iterations", 0)) if f.exists() else 0


def _fan_out(specs: list[dict], workers: int | None, max_iterations: int | None) -> list[dict]:
    """Independent runs as Ray tasks (one CPU each); ``workers=0``: one after another in this process."""
    if not specs:
        return []
    if workers == 0:
        return [run_replica_exchange(sp, max_iterations) for sp in specs]
    import ray

    started = False
    if not ray.is_initialized():
        ray.init(num_cpus=int(workers or len(specs)), include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
        started = True
    try:
        task = ray.remote(num_cpus=1, max_retries=1)(run_replica_exchange)
        refs = [task.remote(sp, max_iterations) for sp in specs]
        out = []
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            res = ray.get(ready[0])
            log.info("alanine-dipeptide replica exchange: run %d at %d iterations (%.0f s)", res["run"],
                     res.get("iterations", 0), res["wall_s"])
            out.append(res)
        return out
    finally:
        if started:
            ray.shutdown()
