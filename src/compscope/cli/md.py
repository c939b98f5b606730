"""`compscope md ...` verbs: run MD with a learned (or analytic) potential; generate reference data."""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import fail

app = typer.Typer(
    help="Molecular dynamics with learned force fields: batched replicas, stability monitors, OpenMM reference data.",
    no_args_is_help=True,
)


@app.command("run")
def run(
    model: Path = typer.Argument(..., help="Model file (.pt, .jit.pt, .ckpt, run folder) or YAML potential config."),
    start: Path = typer.Argument(..., help="Start structure (extxyz/xyz; last frame, or one frame per replica)."),
    steps: int = typer.Option(1000, help="Total number of steps (with --resume: continue up to this step)."),
    dt: float = typer.Option(0.5, help="Time step in fs."),
    temperature: float = typer.Option(300.0, help="Temperature in K (initial velocities and thermostat)."),
    replicas: int = typer.Option(1, help="Independent copies simulated together in one batch."),
    out: Path = typer.Option(Path("md_run"), help="Output folder (trajectory.h5/.extxyz, restart.pt, PNGs)."),
    integrator: str = typer.Option("langevin", help="nve (velocity Verlet), langevin (BAOAB), nhc (Nose-Hoover) or "
                                   "npt (Langevin + stochastic cell rescaling, 1 bar)."),
    friction: float = typer.Option(0.01, help="Langevin friction in 1/fs."),
    seed: int = typer.Option(0, help="Seed of the initial velocities and the Langevin noise."),
    traj_every: int = typer.Option(100, help="Steps between saved frames and restart files."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out (last complete frame)."),
    plots: bool = typer.Option(True, help="Write energy/temperature and bond-length PNGs."),
    extxyz: bool = typer.Option(True, help="Also write trajectory.extxyz."),
    dtype: str = typer.Option("auto", help="float32, float64 or auto (the model's dtype)."),
    max_bond_stretch: float = typer.Option(1.6, help="Stop a replica when a bond exceeds this x its start length."),
    bond_check: bool = typer.Option(True, "--bond-check/--no-bond-check",
                                    help="--no-bond-check: no bond-stretch stop, for liquids whose bonds change "
                                         "partner (water: a proton may hop to the next oxygen); the other checks "
                                         "stay."),
    min_distance: float = typer.Option(0.5, help="Stop a replica when two atoms come closer (Å)."),
    max_drift: float = typer.Option(0.05, help="Stop an NVE/NHC replica whose energy drifts more (eV/atom)."),
    progress: bool = typer.Option(True, help="Show a progress bar with ns/day, atom-steps/s and peak memory."),
    supercell: tuple[int, int, int] = typer.Option((1, 1, 1), help="Replicate the periodic start cell NA NB NC "
                                                   "times along its lattice vectors (e.g. --supercell 8 8 8)."),
    edge_chunk: str = typer.Option("auto", help="Edges per chunk of the model's messages (memory-lean big boxes; "
                                                "same forces): a number, auto or none."),
    atom_chunk: str = typer.Option("auto", help="Evaluate periodic boxes in blocks of atoms with their halo, at "
                                                "most this many evaluated atoms per block (exact; memory of one "
                                                "block): a number, auto (only when the box exceeds "
                                                "--block-memory-gib) or none."),
    block_memory_gib: float = typer.Option(6.0, help="Memory budget of one force call (GiB) for --atom-chunk auto."),
    radial_table: str = typer.Option("auto", help="Read the radial MLPs from spline tables of this many intervals "
                                                  "(CPU inference, ~2x faster, deviation ~1e-9): a number, auto "
                                                  "(float32 only) or none."),
    hydrogen_mass: float = typer.Option(0.0, help="Hydrogen mass in amu for a longer step (e.g. 2.014: D2O-style "
                                                   "isotope substitution; static properties unchanged); 0: as in "
                                                   "START."),
    repartition: bool = typer.Option(False, "--repartition", help="With --hydrogen-mass: take the added mass from "
                                                                  "the bonded heavy atoms (HMR, total mass kept)."),
) -> None:
    """Run MD of START with MODEL; monitors stop replicas that blow up and save their last good frame."""
    import torch
    from rich.console import Console
    from rich.table import Table

    from compscope.md import MDInputError, StabilityMonitor, TrajectoryError, load_potential, simulate

    if dtype not in ("auto", "float32", "float64"):
        fail(f"--dtype must be float32, float64 or auto, got {dtype!r}")
    if not start.exists():
        fail(f"start structure {start} not found: pass an extxyz/xyz file")
    tdt = None if dtype == "auto" else getattr(torch, dtype)
    chunk: int | str | None = None if edge_chunk.lower() == "none" else edge_chunk
    if chunk not in (None, "auto"):
        if not str(chunk).isdigit() or int(chunk) < 1:
            fail(f"--edge-chunk must be a positive number, auto or none, got {edge_chunk!r}")
        chunk = int(chunk)
    blocks: int | str | None = None if atom_chunk.lower() == "none" else atom_chunk
    if blocks not in (None, "auto"):
        if not str(blocks).isdigit() or int(blocks) < 1:
            fail(f"--atom-chunk must be a positive number of atoms, auto or none, got {atom_chunk!r}")
        blocks = int(blocks)
    if not block_memory_gib > 0:
        fail(f"--block-memory-gib must be > 0, got {block_memory_gib}")
    if hydrogen_mass < 0 or (repartition and not hydrogen_mass):
        fail("--hydrogen-mass must be a positive mass in amu (0: unchanged); --repartition needs it",
             hint="e.g. --hydrogen-mass 2.014 (deuterium) or --hydrogen-mass 3 --repartition (HMR)")
    table: int | str | None = None if radial_table.lower() == "none" else radial_table
    if table not in (None, "auto"):
        if not str(table).isdigit() or int(table) < 1:
            fail(f"--radial-table must be a positive number of intervals, auto or none, got {radial_table!r}")
        table = int(table)
    try:
        pot = load_potential(model, dtype=tdt)
        monitor = StabilityMonitor(max_bond_stretch=max_bond_stretch if bond_check else None,
                                   min_distance=min_distance, max_drift=max_drift)
        res = simulate(pot, start, steps=steps, dt=dt, temperature=temperature, replicas=replicas,
                       integrator=integrator, friction=friction, seed=seed, out=out, traj_every=traj_every,
                       resume=resume, monitor=monitor, dtype=tdt, progress=progress, plots=plots, extxyz=extxyz,
                       supercell=None if tuple(supercell) == (1, 1, 1) else tuple(supercell), edge_chunk=chunk,
                       atom_chunk=blocks, block_memory_gib=block_memory_gib, radial_table=table,
                       hydrogen_mass=hydrogen_mass or None, repartition=repartition)
    except (MDInputError, TrajectoryError, ValueError, FileNotFoundError) as err:
        fail(err)
        return
    console = Console()
    table = Table(title=f"{res.n_stable}/{len(res.summary)} replicas stable ({res.steps} steps of {dt} fs)")
    for col in ("replica", "stable", "stable ps", "stopped at", "reason"):
        table.add_column(col)
    for r in res.summary:
        table.add_row(str(r["replica"]), "yes" if r["stable"] else "[red]no", f"{r['stable_ps']:.3f}",
                      "" if r["stopped_at_step"] is None else str(r["stopped_at_step"]), r["reason"])
    console.print(table)
    console.print(f"{res.ns_per_day:.3f} ns/day per replica, {res.atom_steps_per_s:.0f} atom-steps/s "
                  f"(after {res.warmup_steps} warm-up steps); files in {out}")


@app.command("lammps")
def lammps(
    model: Path = typer.Argument(..., help="Model file (model.pt, .jit.pt, .ckpt or run folder)."),
    data: Path = typer.Argument(..., help="LAMMPS data file (atom_style atomic, metal units) or an extxyz/xyz "
                                          "structure (converted to OUT/data.lmp)."),
    ranks: int = typer.Option(2, help="MPI ranks (spatial domain decomposition)."),
    steps: int = typer.Option(100, help="MD steps (0: one force evaluation)."),
    dt: float = typer.Option(0.5, help="Time step in fs."),
    temperature: float = typer.Option(300.0, help="K: initial velocities (0: keep the data file's) and thermostat."),
    ensemble: str = typer.Option("nve", help="nve (velocity Verlet), nvt (Nose-Hoover chain) or langevin."),
    tdamp: float = typer.Option(100.0, help="Thermostat damping time in fs."),
    elements: str = typer.Option("", help="Element of each atom type in type order, e.g. 'O H' (default: from the "
                                          "data file's masses)."),
    supercell: tuple[int, int, int] = typer.Option((1, 1, 1), help="Replicate an extxyz structure (na nb nc)."),
    skin: float = typer.Option(1.0, help="Neighbour skin in Å (ghost cutoff = receptive field + skin)."),
    dtype: str = typer.Option("auto", help="float32, float64 or auto (the model's dtype)."),
    threads: int = typer.Option(1, help="Compute threads per rank."),
    device: str = typer.Option("cpu", help="cpu, or cuda: one GPU per rank (cuda:<local rank>)."),
    thermo_every: int = typer.Option(10, help="Steps between thermo rows (log.lammps, result.json)."),
    dump_every: int = typer.Option(0, help="Steps between frames of OUT/traj.lammpstrj (0: none)."),
    progress_every: int = typer.Option(10, help="Steps between progress lines (atom-steps/s, memory)."),
    seed: int = typer.Option(12345, help="Seed of the initial velocities and the Langevin noise."),
    out: Path = typer.Option(Path("lammps_run"), help="Output folder."),
) -> None:
    """Run MODEL inside LAMMPS over MPI ranks (domain decomposition; exact: any rank count, the same forces).

    Launches `mpiexec -n RANKS` (the mpich wheel's) on `python -m compscope.integrations.lammps`; LAMMPS integrates,
    each rank evaluates the model on its atoms plus ghosts out to the model's receptive field. Files in OUT:
    log.lammps, mpi.log, result.json (timings, sizes, thermo), final.npz (by atom ID), traj.lammpstrj.
    """
    from rich.console import Console
    from rich.table import Table

    from compscope.integrations.lammps import run_lammps, write_data

    if dtype not in ("auto", "float32", "float64"):
        fail(f"--dtype must be float32, float64 or auto, got {dtype!r}")
    if not data.exists():
        fail(f"{data} not found", hint="pass a LAMMPS data file or an extxyz structure")
    types = elements.replace(",", " ").split() or None
    if data.suffix in (".xyz", ".extxyz"):
        import ase.io

        atoms = ase.io.read(data, index=-1) * tuple(supercell)
        out.mkdir(parents=True, exist_ok=True)
        types = write_data(atoms, out / "data.lmp", types)
        data = out / "data.lmp"
        typer.echo(f"{len(atoms)} atoms written to {data} (types: {' '.join(types)})")
    elif tuple(supercell) != (1, 1, 1):
        fail("--supercell applies to extxyz input", hint="use LAMMPS's `replicate` through a data file made for it")
    res = run_lammps(model, data, out, ranks=ranks, elements=types, steps=steps, dt=dt, temperature=temperature,
                     ensemble=ensemble, tdamp=tdamp, seed=seed, thermo_every=thermo_every, dump_every=dump_every,
                     skin=skin, dtype=None if dtype == "auto" else dtype, threads=threads, device=device,
                     progress_every=progress_every, echo=True)
    s = res.summary
    table = Table(title=f"{s['natoms']} atoms, {s['ranks']} ranks x {s['threads_per_rank']} threads, {s['steps']} "
                        f"steps of {s['dt_fs']} fs ({s['ensemble']})")
    for col in ("rank", "owned", "ghosts", "evaluated atoms", "edges", "model s", "comm s", "peak RSS GiB"):
        table.add_column(col)
    for r in s["per_rank"]:
        table.add_row(str(r["rank"]), str(r["nlocal"]), str(r["nghost"]), str(r["kept_atoms"]), str(r["edges"]),
                      f"{r['model']:.2f}", f"{r['comm']:.3f}", f"{r['peak_rss_bytes'] / 2**30:.2f}")
    console = Console()
    console.print(table)
    rate = s["atom_steps_per_s"]
    drift = res.drift_per_atom_per_ns()
    console.print(f"energy {s['energy']:.6f} eV; receptive field {s['receptive_field']:.2f} Å, ghost cutoff "
                  f"{s['ghost_cutoff']:.2f} Å" + (f"; {rate:.4g} atom-steps/s" if rate else "")
                  + (f"; total-energy drift {drift:.3g} eV/atom/ns" if drift is not None and ensemble == "nve" else "")
                  + f"; files in {out}")


@app.command("reference")
def reference(
    system: str = typer.Argument("alanine-dipeptide", help="Reference system (only alanine-dipeptide for now)."),
    out: Path = typer.Option(Path("alanine_dipeptide.h5"), help="HDF5 data set (created, or appended to)."),
    solvent: str = typer.Option("vacuum", help="vacuum, obc (OBC2 implicit solvent) or gbn2."),
    replicas: int = typer.Option(4, help="Independent replicas (each a Ray task)."),
    steps: int = typer.Option(10000, help="Steps per replica."),
    dt: float = typer.Option(1.0, help="Time step in fs (bonds to hydrogen constrained)."),
    temperature: float = typer.Option(300.0, help="Langevin temperature in K."),
    save_every: int = typer.Option(100, help="Steps between saved frames."),
    workers: int = typer.Option(0, help="Ray workers (0: all cores)."),
    seed: int = typer.Option(0, help="Base seed; replica k uses seed + k + (replicas already in the file)."),
    platform: str = typer.Option("CPU", help="OpenMM platform: CPU or Reference."),
    plot: bool = typer.Option(True, help="Write the phi/psi free-energy PNG next to the HDF5 file."),
    chunk_frames: int = typer.Option(20, help="Frames between a replica's checkpoints (larger for long replicas)."),
    total_replicas: int = typer.Option(0, help="Run until OUT holds this many replicas (overrides --replicas; "
                                       "the same command starts and resumes a long campaign)."),
    engine: str = typer.Option("openmm", help="openmm (one OpenMM context per replica, Ray) or dense (all replicas "
                                              "in one batch: numba amber14 + OBC2, no constraints, HMR; ~7x "
                                              "cheaper; rerun to resume; OUT written when complete)."),
    hydrogen_mass: float = typer.Option(3.024, help="dense: hydrogen mass in amu (repartitioned from the heavy "
                                                    "atom)."),
    equilibrate_ps: float = typer.Option(20.0, help="dense: ps dropped at the start of every replica."),
    starts: Path = typer.Option(None, help="dense: a reference HDF5 whose frames (evenly spaced) start the replicas "
                                           "(default: all from the committed PDB)."),
) -> None:
    """Classical MD reference data (amber14): positions, forces, phi/psi to HDF5.

    openmm engine: fanned out with Ray; appends new replicas to an existing OUT file; replicas cut short by an
    interruption are resumed. dense engine: --replicas replicas of --steps steps each after the equilibration, run
    together in OUT.dense/ (resumable) and written to OUT when complete.
    """
    from compscope.md.reference import ReferenceError, generate_alanine_dipeptide, generate_alanine_dipeptide_dense

    if system != "alanine-dipeptide":
        fail(f"unknown reference system {system!r}: only 'alanine-dipeptide' is available")
    if engine not in ("openmm", "dense"):
        fail(f"--engine must be openmm or dense, got {engine!r}")
    if engine == "dense":
        try:
            info = generate_alanine_dipeptide_dense(
                out, solvent=solvent, replicas=replicas, ns=steps * dt * 1e-6, dt_fs=dt, temperature=temperature,
                save_every_ps=save_every * dt / 1000.0, hydrogen_mass=hydrogen_mass, equilibrate_ps=equilibrate_ps,
                seed=seed, starts=starts)
        except (ReferenceError, ValueError) as err:
            fail(err)
            return
        typer.echo(f"{info['replicas']} replicas x {info['frames_per_replica']} frames in {out} "
                   f"({info['total_ns']:.4f} ns total, {info['ns_per_day_per_core']:.0f} ns/day per core)")
        return
    try:
        info = generate_alanine_dipeptide(out, solvent=solvent, replicas=replicas, steps=steps, dt_fs=dt,
                                          temperature=temperature, save_every=save_every, workers=workers or None,
                                          seed=seed, platform=platform, plot=plot, chunk_frames=chunk_frames,
                                          total_replicas=total_replicas or None)
    except (ReferenceError, ValueError) as err:
        fail(err)
        return
    typer.echo(f"{info['new_replicas']} replica(s) run, {info['total_frames']} frames in {out} "
               f"({info['total_ns']:.4f} ns total, {info['ns_per_day']:.0f} ns/day per worker)")
