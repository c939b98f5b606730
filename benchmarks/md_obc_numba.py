"""Batched OBC2 implicit-solvent alanine dipeptide in numba (issue #22 reference data) against OpenMM, in one run.

What the 1 µs all-atom reference costs per configuration and per MD step, on one thread, by this process's CPU clock
(the machine is shared; wall seconds are written beside):

- **energy + forces**: :class:`compscope.integrations.openmm_numba.SystemEnergy` of amber14 + OBC2 (unconstrained)
  for batches of 1, 100 and 1000 perturbed conformations, float64 and float32, against OpenMM's CPU platform
  (1 thread) evaluating the same System one configuration at a time (``setPositions`` + ``getState``);
- **MD**: the reference's own OpenMM setup (``compscope.md.reference.implicit_solvent_speed``: H bonds rigid,
  LangevinMiddle 2 fs, CPU platform, 1 thread) against :func:`compscope.md.simulate_dense` stepping R replicas of the
  flexible molecule through :class:`~compscope.integrations.openmm_numba.SystemPotential` (hydrogens 3.024 amu,
  repartitioned; BAOAB Langevin, 1/ps, 300 K, 2 fs): ns/day per CPU core of all replicas, stability (replicas that
  pass the engine's monitor) and the kinetic temperature of the final frame of all replicas.

Usage::

    COMPSCOPE_NUM_THREADS=1 python -m benchmarks.md_obc_numba --replicas 100 500 --steps 2000
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from benchmarks._common import write_result


def _timed(fn, min_cpu_s: float) -> tuple[float, float, int]:
    """(cpu_s, wall_s, calls) of calling ``fn`` until ``min_cpu_s`` CPU seconds have passed (one warm-up call)."""
    fn()
    calls, c0, t0 = 0, time.process_time(), time.perf_counter()
    while time.process_time() - c0 < min_cpu_s:
        fn()
        calls += 1
    return time.process_time() - c0, time.perf_counter() - t0, calls


def _openmm_per_config(system, x: np.ndarray, min_cpu_s: float) -> dict:
    import openmm as mm

    ctx = mm.Context(system, mm.VerletIntegrator(0.001), mm.Platform.getPlatformByName("CPU"), {"Threads": "1"})
    state = {"i": 0}

    def one():
        ctx.setPositions(x[state["i"] % len(x)])
        ctx.getState(getEnergy=True, getForces=True)
        state["i"] += 1

    cpu, wall, calls = _timed(one, min_cpu_s)
    return {"cpu_us_per_config": cpu / calls * 1e6, "wall_us_per_config": wall / calls * 1e6, "calls": calls}


def dense_alanine_obc(hydrogen_mass: float = 3.024) -> tuple:
    """``(potential, atoms)`` of the dense all-atom setup: amber14 + OBC2 without constraints as a numba
    :class:`~compscope.integrations.openmm_numba.SystemPotential`, the PDB structure with its force-field masses and
    hydrogens of ``hydrogen_mass`` amu repartitioned from their heavy atoms."""
    import ase

    from compscope.integrations.openmm_numba import SystemPotential
    from compscope.integrations.openmm_systems import alanine_dipeptide_system
    from compscope.md import with_hydrogen_mass

    pdb, system = alanine_dipeptide_system("obc", constraints=None)
    x0 = np.asarray(pdb.getPositions(asNumpy=True)._value)
    atoms = ase.Atoms([a.element.symbol for a in pdb.topology.atoms()], positions=x0 * 10.0)
    atoms.set_masses([system.getParticleMass(i)._value for i in range(system.getNumParticles())])
    return SystemPotential(system), with_hydrogen_mass(atoms, hydrogen_mass, repartition=True)


def _stationarity(pot, atoms, args, ref: Path) -> dict:
    """Start ``ref_replicas`` replicas from random frames of the OpenMM reference (equilibrium samples of the same
    potential), run ``ref_ps`` ps each at ``dt`` and compare the frames' Ramachandran histogram and basin
    populations with the reference's: a distribution that drifts away from the reference means other physics.
    Detects errors on the ps scale (alpha_R <-> beta exchange), not in the slow basin's population."""
    import tempfile
    import warnings

    import h5py

    from compscope.analysis import ALANINE_DIPEPTIDE_BASINS, backbone_dihedrals, basin_labels, ramachandran_js
    from compscope.md import simulate_dense

    with h5py.File(ref) as h5:
        reps = sorted(h5["replicas"])
        phi_ref = np.concatenate([h5["replicas"][k]["phi"][:] for k in reps])
        psi_ref = np.concatenate([h5["replicas"][k]["psi"][:] for k in reps])
        sizes = [len(h5["replicas"][k]["phi"]) for k in reps]
        rng = np.random.default_rng(args.seed + 1)
        pick = np.sort(rng.choice(sum(sizes), size=args.ref_replicas, replace=False))
        offsets = np.cumsum([0, *sizes])
        starts = []
        for g in pick:
            k = int(np.searchsorted(offsets, g, side="right") - 1)
            a = atoms.copy()
            a.set_positions(h5["replicas"][reps[k]]["positions"][g - offsets[k]])
            starts.append(a)
    steps = round(args.ref_ps * 1000.0 / args.dt)
    every = round(1000.0 / args.dt)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        res = simulate_dense(pot, starts, steps=steps, dt=args.dt, temperature=300.0, replicas=len(starts),
                             friction=0.001, seed=args.seed, out=tmp, traj_every=every)
        with h5py.File(Path(tmp) / "trajectory.h5") as h5:
            x = h5["particles/all/position/value"][1:]  # frames after the start, (frames, R * n, 3)
            temp = h5["observables/temperature/value"][1:]
    x = x.reshape(-1, len(atoms), 3)
    phi, psi = backbone_dihedrals(x)
    n_b = len(ALANINE_DIPEPTIDE_BASINS)
    lab = basin_labels(phi, psi)
    lab_ref = basin_labels(phi_ref, psi_ref)
    sub = rng.choice(len(phi_ref), size=len(phi), replace=False)
    out = {"replicas": len(starts), "ps_per_replica": args.ref_ps, "dt_fs": args.dt, "frames": int(len(phi)),
           "n_stable": res.n_stable, "mean_temperature_K": float(np.mean(temp)),
           "reference_frames": int(len(phi_ref)), "basins": [b.name for b in ALANINE_DIPEPTIDE_BASINS],
           "populations": [float(np.mean(lab == i)) for i in range(n_b)],
           "reference_populations": [float(np.mean(lab_ref == i)) for i in range(n_b)],
           "ramachandran_js_32": ramachandran_js(phi, psi, phi_ref, psi_ref, bins=32),
           "ramachandran_js_32_floor": ramachandran_js(phi_ref[sub], psi_ref[sub], phi_ref, psi_ref, bins=32),
           "cpu_s": res.cpu_s}
    print(f"stationarity: JS {out['ramachandran_js_32']:.4f} (floor {out['ramachandran_js_32_floor']:.4f}), "
          f"populations {np.round(out['populations'], 3)} vs {np.round(out['reference_populations'], 3)}, "
          f"<T> {out['mean_temperature_K']:.1f} K", flush=True)
    return out


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 100, 1000])
    ap.add_argument("--min-cpu-s", type=float, default=2.0, help="CPU seconds per energy+forces timing")
    ap.add_argument("--replicas", type=int, nargs="+", default=[100, 500])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--dt", type=float, default=2.0)
    ap.add_argument("--dt-compare", type=float, nargs="*", default=[1.0],
                    help="also run the largest batch at these steps, for the same simulated time (a time-step check)")
    ap.add_argument("--ref", default=None, help="the OpenMM implicit-solvent reference HDF5 (stationarity check)")
    ap.add_argument("--ref-replicas", type=int, default=500, help="replicas started from reference frames")
    ap.add_argument("--ref-ps", type=float, default=10.0, help="ps per replica of the stationarity check")
    ap.add_argument("--hydrogen-mass", type=float, default=3.024)
    ap.add_argument("--openmm-seconds", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="md_obc_numba")
    ap.add_argument("--sweep", action="store_true")
    args = ap.parse_args(argv)

    import warnings

    import torch
    from ase import units

    from compscope.integrations.openmm_numba import SystemEnergy, SystemPotential
    from compscope.integrations.openmm_systems import alanine_dipeptide_system
    from compscope.md import simulate_dense
    from compscope.md.reference import implicit_solvent_speed

    torch.set_num_threads(1)
    pdb, system = alanine_dipeptide_system("obc", constraints=None)
    x0 = np.asarray(pdb.getPositions(asNumpy=True)._value)
    rng = np.random.default_rng(args.seed)
    configs = x0[None] + 0.005 * rng.standard_normal((max(args.batches), len(x0), 3))
    se = SystemEnergy(system)

    energy_forces = {}
    for dtype in (np.float64, np.float32):
        rows = []
        for b in args.batches:
            xb = np.ascontiguousarray(configs[:b], dtype=dtype)
            cpu, wall, calls = _timed(lambda xb=xb: se.energy_forces(xb), args.min_cpu_s)
            rows.append({"batch": b, "calls": calls, "cpu_us_per_config": cpu / (calls * b) * 1e6,
                         "wall_us_per_config": wall / (calls * b) * 1e6})
            print(f"numba {np.dtype(dtype).name} batch {b}: {rows[-1]['cpu_us_per_config']:.2f} CPU-us/config",
                  flush=True)
        energy_forces[np.dtype(dtype).name] = rows
    openmm_call = _openmm_per_config(system, configs[:100], args.min_cpu_s)
    print(f"OpenMM CPU per configuration: {openmm_call['cpu_us_per_config']:.1f} CPU-us", flush=True)

    openmm_md = implicit_solvent_speed(seconds=args.openmm_seconds, solvent="obc", dt_fs=2.0, threads=1,
                                       platform="CPU")
    openmm_md["cpu_us_per_step"] = openmm_md["cpu_s"] / openmm_md["steps"] * 1e6
    print(f"OpenMM MD (HBonds, 2 fs): {openmm_md['ns_per_day_cpu']:.0f} ns/day per CPU core", flush=True)

    pot, atoms = dense_alanine_obc(args.hydrogen_mass)
    dense = []
    runs = [(r, args.dt, args.steps) for r in args.replicas]
    runs += [(max(args.replicas), d, round(args.steps * args.dt / d)) for d in args.dt_compare]
    for r, dt, steps in runs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the engine's 1.73 fs rule of thumb for 3 amu hydrogens
            res = simulate_dense(pot, atoms, steps=steps, dt=dt, temperature=300.0, replicas=r,
                                 friction=0.001, seed=args.seed)
        p = res.state.momenta.view(r, -1, 3)
        m = res.state.masses.view(r, -1, 1)
        t_kin = float((p * p / m).sum() / (3 * p.shape[1] * r) / units.kB)
        row = {"replicas": r, "steps": steps, "dt_fs": dt, "n_stable": res.n_stable,
               "cpu_s": res.cpu_s, "wall_s": res.wall_s,
               "ns_per_day_all_replicas_cpu": res.ns_per_day_cpu * r,
               "ns_per_day_all_replicas_wall": res.ns_per_day * r,
               "cpu_us_per_replica_step": res.cpu_s / (steps * r) * 1e6,
               "final_kinetic_temperature_K": t_kin,
               "final_potential_energy_mean_kJ_mol": float(res.state.energy.mean()) / SystemPotential.KJ_PER_MOL,
               "final_potential_energy_sem_kJ_mol": float(res.state.energy.std() / r**0.5) / SystemPotential.KJ_PER_MOL}
        row["speedup_vs_openmm_cpu"] = row["ns_per_day_all_replicas_cpu"] / openmm_md["ns_per_day_cpu"]
        dense.append(row)
        print(f"dense R={r} dt={dt}: {row['ns_per_day_all_replicas_cpu']:.0f} ns/day per CPU core "
              f"({row['speedup_vs_openmm_cpu']:.1f}x OpenMM), stable {res.n_stable}/{r}, T_kin {t_kin:.0f} K, "
              f"<E_pot> {row['final_potential_energy_mean_kJ_mol']:.1f} kJ/mol",
              flush=True)

    stationarity = None if args.ref is None else _stationarity(pot, atoms, args, Path(args.ref))

    best = min(row["cpu_us_per_config"] for row in energy_forces["float64"])
    payload = {
        "system": "alanine dipeptide, amber14 + OBC2 (implicit/obc2.xml), no cutoff",
        "energy_forces": energy_forces, "openmm_cpu_energy_forces": openmm_call,
        "energy_forces_speedup_float64_best_batch": openmm_call["cpu_us_per_config"] / best,
        "openmm_md": openmm_md, "dense_md": dense, "stationarity": stationarity,
        "dense_md_setup": {"constraints": None, "hydrogen_mass_amu": args.hydrogen_mass, "repartition": True,
                           "integrator": "langevin (BAOAB)", "friction_per_fs": 0.001, "temperature_K": 300.0,
                           "dtype": "float64"},
        "notes": ["OpenMM MD is the reference's own setup (H bonds rigid, 2 fs); the dense engine runs the flexible "
                  "molecule with hydrogen masses repartitioned at the same step: same potential, same Boltzmann "
                  "distribution over positions, not the same dynamics",
                  "ns/day per CPU core: simulated time of all replicas per CPU day of this process (1 thread)",
                  "final_kinetic_temperature_K uses BAOAB's end-of-step momenta, which run cold for stiff modes at "
                  "large steps; the configurational check is the final mean potential energy against the smaller "
                  "step's (dt_compare rows)"],
    }
    path = write_result(args.name, payload, seed=args.seed, sweep=args.sweep)
    print(path)
    return path


if __name__ == "__main__":
    main()
