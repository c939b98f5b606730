"""Alanine-dipeptide reference data: classical OpenMM MD (amber14), replicas fanned out with Ray.

Each replica is one Ray task running Langevin dynamics (``LangevinMiddleIntegrator``, bonds to H
constrained) from the committed ``alanine-dipeptide.pdb`` (see ``_build_pdb.py`` for its provenance),
after a short minimisation. Workers write their frames and an OpenMM checkpoint to a shard file
(``<out>.parts/replica_XXXX.npz``, written atomically) every ``chunk_frames`` frames; the driver moves
finished shards into the HDF5 file. Re-running the command resumes unfinished shards from their
checkpoint and appends new replicas to the file.

HDF5 layout::

    /                   attrs: system, forcefield, solvent, temperature_K, dt_fs, save_every
    /atomic_numbers     (22,)
    /topology_pdb       the PDB text
    /replicas/XXXX/     attrs: seed, steps, wall_s, ns_per_day, platform
        positions (T, 22, 3) Å; forces (T, 22, 3) eV/Å; energy (T,) eV; phi, psi (T,) rad; time_ps (T,)
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from compscope.analysis import dihedral_angles
from compscope.errors import CompscopeError
from compscope.integrations.openmm_systems import (
    ALANINE_DIPEPTIDE_PDB,
    ALANINE_PHI,
    ALANINE_PSI,
    AMBER14,
    SOLVENTS,
    alanine_dipeptide_system,
)
from compscope.runtime import one_core

__all__ = ["generate_alanine_dipeptide", "run_replica", "dihedral", "ReferenceError", "PHI", "PSI", "PDB_PATH",
           "plot_free_energy", "explicit_solvent_speed", "implicit_solvent_speed"]

log = logging.getLogger(__name__)

# the molecule, force field and dihedral atoms are shared with compscope.sampling (integrations.openmm_systems)
PDB_PATH = ALANINE_DIPEPTIDE_PDB
FORCEFIELD = AMBER14
PHI = ALANINE_PHI  # C(ACE) - N - CA - C
PSI = ALANINE_PSI  # N - CA - C - N(NME)


class ReferenceError(CompscopeError, RuntimeError):  # noqa: A001 - our own error type, scoped to this module
    """Reference-data generation cannot go on; the message says what to do."""


#: dihedral angles (T,) in (-pi, pi] of atoms ``idx`` over frames (T, N, 3) (compscope.analysis, one copy)
dihedral = dihedral_angles


def _system(solvent: str):
    if solvent not in SOLVENTS:
        raise ReferenceError(f"unknown solvent {solvent!r}: choose vacuum, obc or gbn2")
    return alanine_dipeptide_system(solvent, constraints="HBonds")


def _atomic_write_npz(path: Path, **arrays) -> None:
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def run_replica(spec: dict, max_steps: int | None = None) -> str:
    """Run (or resume) one replica described by ``spec``; return the path of its finished shard.

    ``spec``: ``replica, seed, steps, dt_fs, temperature, save_every, solvent, platform, shard, chunk_frames``.
    ``max_steps`` stops early (the shard stays resumable), as an interrupted run would.
    """
    import openmm as mm
    import openmm.unit as u

    from compscope.integrations.openmm import state_to_ev

    shard = Path(spec["shard"])
    pdb, system = _system(spec["solvent"])
    # OpenMM treats seed 0 as "pick one at random": shift by one to keep runs reproducible
    integ = mm.LangevinMiddleIntegrator(spec["temperature"] * u.kelvin, 1.0 / u.picosecond,
                                        spec["dt_fs"] * u.femtosecond)
    integ.setRandomNumberSeed(int(spec["seed"]) % (2**31 - 2) + 1)
    platform = mm.Platform.getPlatformByName(spec["platform"])
    props = {"Threads": "1"} if spec["platform"] == "CPU" else {}
    ctx = mm.Context(system, integ, platform, props)
    frames: dict[str, list] = {"positions": [], "forces": [], "energy": [], "time_ps": []}
    done, wall = 0, 0.0
    if shard.exists():
        with np.load(shard) as z:
            for k in frames:
                frames[k] = list(z[k])
            done = int(z["done"])
            wall = float(z["wall_s"])
            ctx.loadCheckpoint(z["checkpoint"].tobytes())
    else:
        ctx.setPositions(pdb.positions)
        mm.LocalEnergyMinimizer.minimize(ctx, 1.0, 200)
        ctx.setVelocitiesToTemperature(spec["temperature"] * u.kelvin, int(spec["seed"]) % (2**31 - 2) + 1)
    total = int(spec["steps"]) if max_steps is None else min(int(spec["steps"]), int(max_steps))
    every = int(spec["save_every"])
    since_write = 0
    while done < total:
        n = min(every, total - done)
        t0 = time.perf_counter()
        integ.step(n)
        wall += time.perf_counter() - t0
        done += n
        if done % every == 0:
            st = state_to_ev(ctx.getState(getPositions=True, getForces=True, getEnergy=True))
            for k in ("positions", "forces", "energy"):
                frames[k].append(st[k])
            frames["time_ps"].append(done * spec["dt_fs"] / 1000.0)
            since_write += 1
        if since_write >= spec.get("chunk_frames", 20) or done >= total:
            chk = np.frombuffer(ctx.createCheckpoint(), dtype=np.uint8)
            _atomic_write_npz(shard, done=done, wall_s=wall, checkpoint=chk, spec=json.dumps(spec),
                              **{k: np.asarray(v, dtype=np.float64) for k, v in frames.items()})
            since_write = 0
    return str(shard)


def _merge(h5, shard: Path) -> int:
    with np.load(shard) as z:
        spec = json.loads(str(z["spec"]))
        if int(z["done"]) < int(spec["steps"]):
            return 0
        pos = z["positions"].reshape(-1, 22, 3)
        sim_ns = int(spec["steps"]) * spec["dt_fs"] * 1e-6
        store_replica(h5, int(spec["replica"]), pos, z["forces"].reshape(pos.shape), z["energy"], z["time_ps"],
                      {"seed": spec["seed"], "steps": spec["steps"], "wall_s": float(z["wall_s"]),
                       "ns_per_day": sim_ns / max(float(z["wall_s"]), 1e-9) * 86400.0, "platform": spec["platform"]})
    shard.unlink()
    return len(pos)


def store_replica(h5, index: int, positions, forces, energy, time_ps, attrs: dict):
    """Write one replica's frames as ``/replicas/XXXX`` (positions Å, forces eV/Å, energy eV, time_ps, and phi/psi
    computed from the positions) with ``attrs``; an existing group's arrays are replaced (a re-merge after an
    interrupted one)."""
    g = h5.require_group(f"replicas/{int(index):04d}")
    for k in ("positions", "forces", "energy", "time_ps", "phi", "psi"):
        if k in g:
            del g[k]
    g["positions"], g["forces"], g["energy"], g["time_ps"] = positions, forces, energy, time_ps
    g["phi"], g["psi"] = dihedral(positions, PHI), dihedral(positions, PSI)
    for k, unit in (("positions", "angstrom"), ("forces", "eV/angstrom"), ("energy", "eV")):
        g[k].attrs["unit"] = unit
    g.attrs.update(attrs)
    return g


def forcefield_name(solvent: str) -> str:
    """The force-field files of ``solvent`` as stored in a reference file's ``forcefield`` attribute."""
    return FORCEFIELD + "".join(f" + {x}" for x in SOLVENTS[solvent])


def generate_alanine_dipeptide(
    out: str | Path,
    solvent: str = "vacuum",
    replicas: int = 4,
    steps: int = 10000,
    dt_fs: float = 1.0,
    temperature: float = 300.0,
    save_every: int = 100,
    workers: int | None = None,
    seed: int = 0,
    platform: str = "CPU",
    plot: bool = True,
    chunk_frames: int = 20,
    total_replicas: int | None = None,
) -> dict:
    """Generate (or extend, or resume) an alanine-dipeptide reference data set.

    Args:
        out: HDF5 file; created, or new replicas appended (same solvent/temperature/dt required).
        solvent: ``vacuum``, ``obc`` (OBC2 GB) or ``gbn2``.
        replicas: new replicas to add (unfinished replicas of an interrupted run are resumed first and
            count towards this number).
        steps: steps per replica.
        dt_fs: time step (fs); bonds to hydrogen are constrained.
        temperature: K.
        save_every: steps between saved frames.
        workers: Ray worker processes (default: all cores).
        seed: base seed; replica ``k`` (numbered across the whole file) uses ``seed + k``.
        platform: OpenMM platform (``CPU`` or ``Reference``).
        plot: write ``<out stem>_phi_psi.png``.
        chunk_frames: frames between shard checkpoints (each rewrites the shard: keep it large for long replicas).
        total_replicas: instead of ``replicas`` new ones, run until the file holds this many (finished and
            resumed ones counted), so one command both starts and resumes a long campaign.

    Returns:
        dict with ``new_replicas``, ``total_replicas``, ``total_frames``, ``total_ns``, ``ns_per_day``.
    """
    import h5py

    out = Path(out)
    if solvent not in SOLVENTS:
        raise ReferenceError(f"unknown solvent {solvent!r}: choose vacuum, obc or gbn2")
    if replicas < 0 or steps < 1 or save_every < 1 or steps % save_every:
        raise ReferenceError(f"need replicas >= 0 and steps ({steps}) a positive multiple of save_every ({save_every})")
    if dt_fs > 4.0:
        raise ReferenceError(f"dt {dt_fs} fs is too large for amber14 with H-bond constraints; use <= 2 fs")
    meta = {"system": "alanine-dipeptide (ACE-ALA-NME)", "forcefield": forcefield_name(solvent), "solvent": solvent,
            "temperature_K": float(temperature), "dt_fs": float(dt_fs), "save_every": int(save_every)}
    parts = out.with_name(out.name + ".parts")
    parts.mkdir(parents=True, exist_ok=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        h5 = h5py.File(out, "a")
    except OSError as err:
        raise ReferenceError(f"{out} cannot be opened as HDF5 ({err}); move it away or pick another --out") from err
    with h5:
        if "atomic_numbers" in h5:
            from compscope.train import check_unchanged  # the one resume guard

            old = {k: h5.attrs[k].item() if hasattr(h5.attrs[k], "item") else h5.attrs[k] for k in h5.attrs}
            check_unchanged(old, meta, unsafe=meta, where=str(out), action="adding to the data set",
                            hint="use the same settings to add to it, or another --out file")
        else:
            from ase.io import read

            h5.attrs.update(meta)
            h5["atomic_numbers"] = read(PDB_PATH).get_atomic_numbers()
            h5["topology_pdb"] = PDB_PATH.read_text()
        n_existing = len(h5.get("replicas", {}))
        # finish shards already complete but not merged (driver interrupted after the workers were done)
        for s in sorted(parts.glob("replica_*.npz")):
            _merge(h5, s)
        n_existing = len(h5.get("replicas", {}))
        # indices already in the file: with a replica finished out of order (a gap), a new replica must not reuse
        # one of them (it would collide with that group and repeat its seed)
        in_file = {int(k) for k in h5.get("replicas", {})}
    pending = [s for s in sorted(parts.glob("replica_*.npz")) if not s.name.endswith(".tmp.npz")]
    specs = []
    for s in pending:
        with np.load(s) as z:
            specs.append(json.loads(str(z["spec"])))
    used = {sp["replica"] for sp in specs} | in_file
    k = 0  # the lowest free indices (a gap left by a replica that never finished is filled)
    if total_replicas is not None:
        replicas = max(0, int(total_replicas) - n_existing)
    while len(specs) < max(replicas, len(pending)):
        while k in used:
            k += 1
        specs.append({"replica": k, "seed": int(seed) + k, "steps": int(steps), "dt_fs": float(dt_fs),
                      "temperature": float(temperature), "save_every": int(save_every), "solvent": solvent,
                      "platform": platform, "shard": str(parts / f"replica_{k:04d}.npz"),
                      "chunk_frames": int(chunk_frames)})
        used.add(k)
    t0 = time.perf_counter()

    def merge(shard: str) -> None:  # each finished replica lands in the HDF5 file at once
        with h5py.File(out, "a") as h5:
            _merge(h5, Path(shard))

    _fan_out(specs, workers, on_done=merge)
    with h5py.File(out, "r") as h5:
        reps = h5["replicas"] if "replicas" in h5 else {}
        total_frames = sum(len(reps[r]["energy"]) for r in reps)
        total_ns = sum(int(reps[r].attrs["steps"]) * float(h5.attrs["dt_fs"]) * 1e-6 for r in reps)
        rates = [float(reps[f"{sp['replica']:04d}"].attrs["ns_per_day"]) for sp in specs]
        phi = np.concatenate([reps[r]["phi"][:] for r in reps] or [np.zeros(0)])
        psi = np.concatenate([reps[r]["psi"][:] for r in reps] or [np.zeros(0)])
        n_total = len(reps)
    if not any(parts.iterdir()):
        parts.rmdir()
    info = {"new_replicas": len(specs), "total_replicas": n_total, "total_frames": int(total_frames),
            "total_ns": total_ns, "ns_per_day": float(np.mean(rates)) if rates else 0.0,
            "wall_s": time.perf_counter() - t0, "path": str(out)}
    if plot and len(phi):
        info["png"] = str(plot_free_energy(phi, psi, out.with_name(out.stem + "_phi_psi.png"), temperature,
                                           title=f"alanine dipeptide, {solvent}, {total_ns:.3f} ns"))
    return info


def _fan_out(specs: list[dict], workers: int | None, on_done=None) -> list[str]:
    """Run replicas as Ray tasks (one CPU each) on ``workers`` local processes; ``on_done(shard)`` as each ends."""
    if not specs:
        return []
    import ray

    started = False
    if not ray.is_initialized():
        ray.init(num_cpus=workers or os.cpu_count(), include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
        started = True
    try:
        task = ray.remote(num_cpus=1, max_retries=1)(run_replica)
        from rich.progress import Progress

        refs = [task.remote(sp) for sp in specs]
        out = []
        with Progress(transient=True) as bar:
            t = bar.add_task(f"{len(specs)} alanine-dipeptide replicas", total=len(refs))
            pending = list(refs)
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                for shard in ray.get(ready):
                    out.append(shard)
                    if on_done is not None:
                        on_done(shard)
                bar.advance(t)
        return out
    finally:
        if started:
            ray.shutdown()


def plot_free_energy(phi: np.ndarray, psi: np.ndarray, path: str | Path, temperature: float = 300.0,
                     title: str = "") -> Path:
    """Ramachandran free-energy surface ``-kT ln p(phi, psi)`` (kJ/mol) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kT = 0.0083144626 * temperature  # kJ/mol
    h, xe, ye = np.histogram2d(np.degrees(phi), np.degrees(psi), bins=60, range=[[-180, 180], [-180, 180]],
                               density=True)
    with np.errstate(divide="ignore"):
        f = -kT * np.log(h)
    f -= np.nanmin(f[np.isfinite(f)]) if np.isfinite(f).any() else 0.0
    fig, ax = plt.subplots(figsize=(4.6, 4))
    im = ax.pcolormesh(xe, ye, np.where(np.isfinite(f), f, np.nan).T, cmap="viridis", shading="flat")
    fig.colorbar(im, ax=ax, label="free energy (kJ/mol)")
    ax.set_xlabel("φ (deg)")
    ax.set_ylabel("ψ (deg)")
    ax.set_title(title or f"{len(phi)} frames", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, dpi=110, format="png")
    plt.close(fig)
    path = Path(path)
    path.write_bytes(buf.getvalue())
    return path


def explicit_solvent_speed(seconds: float = 30.0, padding_nm: float = 1.0, dt_fs: float = 2.0, threads: int = 1,
                           platform: str = "CPU") -> dict:
    """Speed of alanine dipeptide in explicit water (amber14 + TIP3P, PME 1 nm, H bonds rigid, Langevin 300 K):
    a short run only to state its ns/day next to implicit solvent and CG (nothing is saved).

    Returns:
        ``{"ns_per_day", "ns_per_day_cpu", "n_atoms", "n_waters", "steps", "wall_s", "cpu_s", "threads",
        "platform"}`` (``cpu_s``: this process's CPU seconds over the timed steps, OpenMM's threads included).
    """
    import openmm.unit as u
    from openmm import app

    pdb = app.PDBFile(str(PDB_PATH))
    ff = app.ForceField(FORCEFIELD, "amber14/tip3p.xml")
    model = app.Modeller(pdb.topology, pdb.positions)
    model.addSolvent(ff, model="tip3p", padding=padding_nm * u.nanometer)
    system = ff.createSystem(model.topology, nonbondedMethod=app.PME, nonbondedCutoff=1.0 * u.nanometer,
                             constraints=app.HBonds)
    n_waters = sum(1 for r in model.topology.residues() if r.name == "HOH")
    return {**_openmm_speed(system, model.positions, seconds, dt_fs, threads, platform),
            "n_atoms": model.topology.getNumAtoms(), "n_waters": n_waters}


def implicit_solvent_speed(seconds: float = 30.0, solvent: str = "obc", dt_fs: float = 2.0, threads: int = 1,
                           platform: str = "CPU") -> dict:
    """Speed of the reference's own setup (amber14 + implicit solvent, no cutoff, H bonds rigid, Langevin 300 K),
    measured in this process (next to CG in the same benchmark run).

    Returns:
        ``{"ns_per_day", "ns_per_day_cpu", "n_atoms", "solvent", "steps", "wall_s", "cpu_s", "threads",
        "platform"}``.
    """
    pdb, system = _system(solvent)
    return {**_openmm_speed(system, pdb.positions, seconds, dt_fs, threads, platform),
            "n_atoms": system.getNumParticles(), "solvent": solvent}


def _openmm_speed(system, positions, seconds: float, dt_fs: float, threads: int, platform: str) -> dict:
    """Minimise, equilibrate 50 steps, then step for ``seconds`` of wall time; ns/day by wall and CPU clock."""
    import openmm as mm
    import openmm.unit as u

    integ = mm.LangevinMiddleIntegrator(300 * u.kelvin, 1.0 / u.picosecond, dt_fs * u.femtosecond)
    props = {"Threads": str(int(threads))} if platform == "CPU" else {}
    ctx = mm.Context(system, integ, mm.Platform.getPlatformByName(platform), props)
    ctx.setPositions(positions)
    mm.LocalEnergyMinimizer.minimize(ctx, 10.0, 200)
    ctx.setVelocitiesToTemperature(300 * u.kelvin, 1)
    integ.step(50)
    # one thread on one core: unpinned, OpenMM's worker thread and this one wake each other across cores every
    # step (4-5x slower for 22 atoms on an idle machine; see compscope.runtime.one_core)
    pin = one_core() if platform == "CPU" and int(threads) == 1 else contextlib.nullcontext(False)
    with pin as pinned:
        steps, t0, c0 = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - t0 < seconds:
            integ.step(50)
            steps += 50
        ctx.getState(getEnergy=True)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    ns = steps * dt_fs * 1e-6
    return {"ns_per_day": ns / wall * 86400.0, "ns_per_day_cpu": ns / max(cpu, 1e-9) * 86400.0, "steps": steps,
            "wall_s": wall, "cpu_s": cpu, "threads": int(threads), "platform": platform, "pinned_one_core": pinned}
