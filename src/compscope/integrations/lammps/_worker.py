"""The program every MPI rank runs (``mpiexec -n P python -m compscope.integrations.lammps SPEC.json``).

It reads the run spec written by :func:`compscope.integrations.lammps.run_lammps`, starts LAMMPS on
``MPI.COMM_WORLD``, reads the data file, installs the model (:class:`~._potential.LammpsPotential`), sets the
ensemble and runs. Rank 0 writes ``result.json`` (timings, sizes, thermo table, memory) and ``final.npz``
(positions, velocities, forces by atom ID). A failure on any rank writes ``error.rank<r>.json`` and aborts the
job, so no rank waits forever on the others.
"""

from __future__ import annotations

import json
import resource
import sys
import time
import traceback
from pathlib import Path

__all__ = ["main", "parse_thermo", "parse_loop_time"]

THERMO = ("step", "temp", "pe", "ke", "etotal", "press", "vol")


def parse_thermo(log_text: str) -> dict[str, list[float]]:
    """The thermo table of the last ``run`` in a LAMMPS log (``thermo_style custom`` with :data:`THERMO`)."""
    header = "Step Temp PotEng KinEng TotEng Press Volume"
    rows: list[list[float]] = []
    inside = False
    for line in log_text.splitlines():
        if line.split() == header.split():
            inside, rows = True, []
            continue
        if inside:
            words = line.split()
            try:
                rows.append([float(w) for w in words])
            except ValueError:
                inside = False
                continue
            if len(words) != len(THERMO):
                rows.pop()
                inside = False
    return {k: [r[i] for r in rows] for i, k in enumerate(THERMO)}


def parse_loop_time(log_text: str) -> float | None:
    """Seconds of the last ``Loop time of X on P procs`` line, or ``None``."""
    value = None
    for line in log_text.splitlines():
        if line.startswith("Loop time of"):
            value = float(line.split()[3])
    return value


def _setup_commands(spec: dict) -> list[str]:
    return ["units metal", "atom_style atomic", "atom_modify map yes", "boundary p p p",
            f"read_data {spec['data']}"]


def _run_commands(spec: dict) -> list[str]:
    from ._units import FS_TO_PS

    t = float(spec["temperature"])
    cmds = []
    if t > 0 and spec.get("create_velocities", True):
        cmds.append(f"velocity all create {t} {int(spec['seed'])} dist gaussian mom yes rot no loop all")
    ens = spec["ensemble"]
    damp = float(spec["tdamp_fs"]) * FS_TO_PS
    if ens == "nve":
        cmds.append("fix integrate all nve")
    elif ens == "nvt":
        cmds.append(f"fix integrate all nvt temp {t} {t} {damp}")
    elif ens == "langevin":
        cmds += ["fix integrate all nve", f"fix thermostat all langevin {t} {t} {damp} {int(spec['seed'])}"]
    cmds += [f"timestep {float(spec['dt_fs']) * FS_TO_PS}",
             "thermo_style custom " + " ".join(THERMO),
             "thermo_modify norm no flush yes format float %.10g",
             f"thermo {max(1, int(spec['thermo_every']))}"]
    if int(spec.get("dump_every", 0)) > 0:
        cmds += [f"dump traj all custom {int(spec['dump_every'])} {Path(spec['out']) / 'traj.lammpstrj'} "
                 "id type x y z vx vy vz fx fy fz", "dump_modify traj sort id"]
    cmds += list(spec.get("extra_commands", []))
    return cmds


def _write_error(out: Path, rank: int, err: BaseException, stage: str) -> None:
    from compscope.errors import CompscopeError

    kind = type(err).__name__ if isinstance(err, CompscopeError) else None
    if kind is None:  # LAMMPS's own errors arrive as plain exceptions: input errors before the run
        kind = "LammpsInputError" if stage == "setup" else "LammpsError"
    payload = {"rank": rank, "kind": kind, "stage": stage, "message": str(err).strip(),
               "hint": getattr(err, "hint", None), "traceback": traceback.format_exc()}
    (out / f"error.rank{rank}.json").write_text(json.dumps(payload, indent=1))


def main(argv: list[str]) -> int:
    from ._mpi import load_mpi

    spec = json.loads(Path(argv[0]).read_text())
    out = Path(spec["out"])
    MPI, lammps = load_mpi()
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    stage = "setup"
    lmp = None
    try:
        import numpy as np
        import torch

        from compscope.models.artifacts import load_model
        from compscope.runtime import configure_threads

        from ._errors import LammpsInputError
        from ._potential import LammpsPotential, rank_device

        configure_threads(int(spec["threads"]))
        dtype = getattr(torch, spec["dtype"]) if spec.get("dtype") else None
        model = load_model(spec["model"], dtype=dtype)
        for p in model.parameters():
            p.requires_grad_(False)
        lmp = lammps.lammps(cmdargs=["-log", str(out / "log.lammps"), "-screen", "none", "-nocite"], comm=comm)
        for c in _setup_commands(spec):
            lmp.command(c)
        ntypes = int(lmp.extract_global("ntypes"))
        if ntypes != len(spec["type_numbers"]):
            raise LammpsInputError(f"the data file has {ntypes} atom types, the type map {len(spec['type_numbers'])}",
                                   hint="give one element per atom type")
        pot = LammpsPotential(lmp, model, spec["type_numbers"], comm=comm, skin=float(spec["skin"]),
                              device=rank_device(spec.get("device", "cpu")))
        pot.install()
        for c in _run_commands(spec):
            lmp.command(c)
        natoms = int(lmp.get_natoms())
        steps = int(spec["steps"])
        every = int(spec.get("progress_every", 0))
        start = time.perf_counter()
        if rank == 0 and every > 0:
            def progress(ntimestep, p):
                if ntimestep > 0 and ntimestep % every == 0:
                    el = time.perf_counter() - start
                    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
                    print(f"[compscope lammps] step {ntimestep}/{steps}  {natoms * ntimestep / el:.4g} atom-steps/s"
                          f"  E={p.energy:.6f} eV  rank-0 peak RSS {rss:.2f} GiB", flush=True)
            pot.on_step = progress
        stage = "run"
        lmp.command(f"run {steps}")
        wall = time.perf_counter() - start
        stage = "gather"
        final = None
        if spec.get("gather", True):
            x = np.ctypeslib.as_array(lmp.gather_atoms("x", 1, 3)).reshape(natoms, 3)
            v = np.ctypeslib.as_array(lmp.gather_atoms("v", 1, 3)).reshape(natoms, 3)
            f = np.ctypeslib.as_array(lmp.gather_atoms("f", 1, 3)).reshape(natoms, 3)
            t = np.ctypeslib.as_array(lmp.gather_atoms("type", 0, 1)).reshape(natoms)
            final = dict(positions=x.copy(), velocities=v.copy(), forces=f.copy(), types=t.copy())
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        stats = comm.gather({"rank": rank, **pot.timers, **pot.sizes, "peak_rss_bytes": rss}, root=0)
        energy = pot.energy
        lmp.close()
        lmp = None
        if rank == 0:
            from compscope.versions import code_versions

            log_text = (out / "log.lammps").read_text()
            loop = parse_loop_time(log_text)
            result = {
                "ranks": size, "natoms": natoms, "steps": steps, "dt_fs": float(spec["dt_fs"]),
                "ensemble": spec["ensemble"], "energy": energy, "wall_s": wall, "loop_s": loop,
                "atom_steps_per_s": natoms * steps / loop if loop and steps else None,
                "cutoff": pot.cutoff, "layers": pot.layers, "receptive_field": pot.receptive_field,
                "ghost_cutoff": pot.ghost_cutoff, "skin": pot.skin, "dtype": str(pot.dtype).replace("torch.", ""),
                "threads_per_rank": int(spec["threads"]), "device": str(pot.device), "per_rank": stats,
                "thermo": parse_thermo(log_text), "lammps_version": lmp_version(lammps), "versions": code_versions(),
            }
            (out / "result.json").write_text(json.dumps(result, indent=1))
            if final is not None:
                np.savez(out / "final.npz", **final)
        return 0
    except BaseException as err:  # noqa: BLE001 - report, then take every rank down
        _write_error(out, rank, err, stage)
        sys.stderr.write(f"[compscope lammps] rank {rank}: {type(err).__name__}: {err}\n")
        sys.stderr.flush()
        if size > 1:
            comm.Abort(1)
        return 1


def lmp_version(lammps) -> str:
    return str(getattr(lammps, "__version__", "unknown"))
