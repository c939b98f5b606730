"""Alanine-dipeptide reference data from many replicas at once: the amber14 + implicit-solvent System evaluated by
numba (:class:`compscope.integrations.openmm_numba.SystemPotential`, the same function as OpenMM to ~1e-11) and
stepped by the dense MD engine (:func:`compscope.md.simulate_dense`, Langevin BAOAB), ~7x cheaper per simulated ns
than one OpenMM context per replica for this 22-atom molecule (``benchmarks/results/md_obc_numba.json``).

No constraints: bonds to hydrogen are flexible and the hydrogens get ``hydrogen_mass`` by repartitioning (HMR) so
that 2 fs stays stable; the positions' Boltzmann distribution does not depend on masses, so the sampled ensemble
is amber14 + implicit solvent at ``temperature`` with flexible X-H bonds (the OpenMM path constrains them).

The run lives in ``<out>.dense/`` (the engine's trajectory, restart file and run.json): calling again resumes it
to the requested length. When it is complete, the frames after ``equilibrate_ps`` are written to ``out`` in the
layout of :func:`~compscope.md.reference.generate_alanine_dipeptide` (one ``replicas/XXXX`` group per replica with
positions, forces, energy, phi, psi, time_ps), so ``compscope cg map`` and the samplers read either file.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from compscope.integrations.openmm_systems import SOLVENTS, alanine_dipeptide_system

from ._alanine import PDB_PATH, ReferenceError, forcefield_name, store_replica

__all__ = ["generate_alanine_dipeptide_dense"]

log = logging.getLogger(__name__)


def generate_alanine_dipeptide_dense(
    out: str | Path,
    solvent: str = "obc",
    replicas: int = 500,
    ns: float = 2.0,
    dt_fs: float = 2.0,
    temperature: float = 300.0,
    save_every_ps: float = 1.0,
    hydrogen_mass: float = 3.024,
    equilibrate_ps: float = 20.0,
    friction_per_ps: float = 1.0,
    seed: int = 0,
    chunk_ps: float = 50.0,
    starts: str | Path | None = None,
) -> dict:
    """Run (or resume) ``replicas`` replicas for ``equilibrate_ps + 1000 ns`` ps each and write the reference file.

    Args:
        out: HDF5 file to write when the run is complete (it must not exist yet).
        solvent: ``vacuum``, ``obc`` (OBC2) (what :class:`~compscope.integrations.openmm_numba.SystemEnergy`
            evaluates; ``gbn2`` is refused by it).
        replicas: replicas stepped together (one batched force call per step).
        ns: kept length of each replica, ns (after ``equilibrate_ps``).
        dt_fs: time step, fs.
        temperature: K.
        save_every_ps: ps between saved frames.
        hydrogen_mass: amu, by repartitioning from the bonded heavy atom (total mass kept).
        equilibrate_ps: ps dropped at the start of every replica (all start from the same structure).
        friction_per_ps: Langevin friction, 1/ps (OpenMM's reference runs use 1/ps).
        seed: seed of the initial momenta and of the noise.
        chunk_ps: ps between progress lines (each chunk ends with a restart file).
        starts: a reference HDF5 file of this molecule (either layout's ``replicas/*/positions``) whose frames start
            the replicas, ``replicas`` frames evenly spaced over all of them (decorrelated starts that already
            visit the slow basins); default: every replica from the committed PDB structure.

    Returns:
        dict with ``path``, ``replicas``, ``frames_per_replica``, ``total_ns``, ``ns_per_day_per_core`` (simulated
        ns of all replicas per CPU-day of the run's last call).
    """
    import torch
    from ase.io import read

    from compscope.integrations.openmm_numba import SystemPotential
    from compscope.md import read_h5_observables, simulate_dense, with_hydrogen_mass

    out = Path(out)
    if solvent not in SOLVENTS:
        raise ReferenceError(f"unknown solvent {solvent!r}: choose vacuum or obc")
    every = save_every_ps * 1000.0 / dt_fs
    if replicas < 1 or ns <= 0 or dt_fs <= 0 or abs(every - round(every)) > 1e-9 or round(every) < 1:
        raise ReferenceError(f"need replicas >= 1, ns > 0 and save_every_ps ({save_every_ps}) a positive multiple "
                             f"of dt ({dt_fs} fs)")
    if out.exists():
        raise ReferenceError(f"{out} exists: the dense path writes a new file once its run is complete",
                             hint="pick another --out, or delete the file to rewrite it from the run folder")
    every = int(round(every))
    total = int(round((equilibrate_ps + ns * 1000.0) * 1000.0 / dt_fs / every)) * every  # steps per replica
    work = out.with_name(out.name + ".dense")
    work.mkdir(parents=True, exist_ok=True)
    _, system = alanine_dipeptide_system(solvent, constraints=None)
    pot = SystemPotential(system, dtype=torch.float64)
    start = with_hydrogen_mass(read(PDB_PATH), hydrogen_mass, repartition=True)
    if starts is not None:
        start = _starts_from(Path(starts), start, replicas)
    done = 0
    if (work / "trajectory.h5").exists() and (work / "restart.pt").exists():
        done = int(read_h5_observables(work / "trajectory.h5")["step"][-1])
    chunk = max(every, int(round(chunk_ps * 1000.0 / dt_fs / every)) * every)
    cpu0, steps0 = time.process_time(), done
    while done < total:
        target = min(total, done + chunk)
        res = simulate_dense(pot, start, steps=target, dt=dt_fs, temperature=temperature, replicas=replicas,
                             friction=friction_per_ps / 1000.0, seed=seed, out=work, traj_every=every,
                             resume=(work / "restart.pt").exists(), check_inputs=False)
        done = target
        log.info("dense reference: %.1f of %.1f ps per replica, %d/%d replicas stable", done * dt_fs / 1000,
                 total * dt_fs / 1000, res.n_stable, replicas)
        if res.n_stable < replicas:
            raise ReferenceError(f"{replicas - res.n_stable} replicas became unstable (see {work}/summary.json)",
                                 hint="use a smaller --dt or a larger --hydrogen-mass")
    cpu = time.process_time() - cpu0
    rate = (done - steps0) * dt_fs * 1e-6 * replicas / max(cpu, 1e-9) * 86400.0 if done > steps0 else 0.0
    return _write(out, work, pot, start[0] if isinstance(start, list) else start, dict(
        system="alanine-dipeptide (ACE-ALA-NME)", forcefield=forcefield_name(solvent),
        solvent=solvent, temperature_K=float(temperature), dt_fs=float(dt_fs), save_every=every,
        engine="compscope.md.simulate_dense + numba SystemPotential", constraints="none",
        hydrogen_mass_amu=float(hydrogen_mass), hydrogen_mass_repartitioning=True,
        equilibrate_ps=float(equilibrate_ps), friction_per_ps=float(friction_per_ps),
        starts=str(starts) if starts is not None else "pdb"), seed, rate)


def _starts_from(path: Path, template, replicas: int) -> list:
    """``replicas`` copies of ``template`` placed at frames of the reference file ``path``, evenly spaced."""
    import h5py

    if not path.exists():
        raise ReferenceError(f"start file {path} not found", hint="pass a reference HDF5 file of alanine dipeptide")
    with h5py.File(path, "r") as h5:
        groups = sorted(h5.get("replicas", {}))
        sizes = [h5[f"replicas/{g}/positions"].shape[0] for g in groups]
        if not groups or h5[f"replicas/{groups[0]}/positions"].shape[1:] != (len(template), 3):
            raise ReferenceError(f"{path} holds no alanine-dipeptide frames (replicas/*/positions of "
                                 f"{len(template)} atoms)", hint="pass a file written by compscope md reference")
        offsets = np.cumsum([0, *sizes])
        out = []
        for k in np.linspace(0, offsets[-1] - 1, replicas).round().astype(int):
            g = int(np.searchsorted(offsets, k, side="right") - 1)
            a = template.copy()
            a.positions = h5[f"replicas/{groups[g]}/positions"][k - offsets[g]]
            out.append(a)
    return out


def _write(out: Path, work: Path, pot, start, meta: dict, seed: int, rate: float) -> dict:
    """The run's frames after the equilibration, one group per replica, with forces and energies re-evaluated
    (the engine stores positions only)."""
    import h5py
    import torch

    from compscope.md import read_h5_observables

    obs = read_h5_observables(work / "trajectory.h5")
    n = len(start)
    keep = obs["time_ps"] >= meta["equilibrate_ps"] - 1e-9
    pos = obs["positions"][keep].astype(np.float64)  # (T, R * n, 3)
    t_ps = obs["time_ps"][keep] - meta["equilibrate_ps"]
    n_rep = pos.shape[1] // n
    tmp = out.with_suffix(".tmp.h5")
    with h5py.File(tmp, "w") as h5:
        h5.attrs.update(meta)
        h5["atomic_numbers"] = start.get_atomic_numbers()
        h5["topology_pdb"] = PDB_PATH.read_text()
        for r in range(n_rep):
            x = pos[:, r * n:(r + 1) * n]
            e, f = pot.energy_forces(torch.from_numpy(x))
            store_replica(h5, r, x, f.numpy(), e.numpy(), t_ps,
                          {"seed": int(seed), "replica_in_batch": r, "steps": int(obs["step"][-1]),
                           "platform": "numba-dense", "ns_per_day": rate / max(n_rep, 1)})
    tmp.replace(out)
    return {"path": str(out), "replicas": n_rep, "frames_per_replica": int(len(t_ps)),
            "total_ns": float(n_rep * len(t_ps) * meta["save_every"] * meta["dt_fs"] * 1e-6),
            "ns_per_day_per_core": rate}
