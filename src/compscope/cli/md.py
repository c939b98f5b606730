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
    min_distance: float = typer.Option(0.5, help="Stop a replica when two atoms come closer (Å)."),
    max_drift: float = typer.Option(0.05, help="Stop an NVE/NHC replica whose energy drifts more (eV/atom)."),
    progress: bool = typer.Option(True, help="Show a progress bar with ns/day, atom-steps/s and peak memory."),
    supercell: tuple[int, int, int] = typer.Option((1, 1, 1), help="Replicate the periodic start cell NA NB NC "
                                                   "times along its lattice vectors (e.g. --supercell 8 8 8)."),
    edge_chunk: str = typer.Option("auto", help="Edges per chunk of the model's messages (memory-lean big boxes; "
                                                "same forces): a number, auto or none."),
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
    try:
        pot = load_potential(model, dtype=tdt)
        monitor = StabilityMonitor(max_bond_stretch=max_bond_stretch, min_distance=min_distance, max_drift=max_drift)
        res = simulate(pot, start, steps=steps, dt=dt, temperature=temperature, replicas=replicas,
                       integrator=integrator, friction=friction, seed=seed, out=out, traj_every=traj_every,
                       resume=resume, monitor=monitor, dtype=tdt, progress=progress, plots=plots, extxyz=extxyz,
                       supercell=None if tuple(supercell) == (1, 1, 1) else tuple(supercell), edge_chunk=chunk)
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
) -> None:
    """Classical OpenMM MD reference data (amber14): positions, forces, phi/psi to HDF5, fanned out with Ray.

    Appends new replicas to an existing OUT file; replicas cut short by an interruption are resumed.
    """
    from compscope.md.reference import ReferenceError, generate_alanine_dipeptide

    if system != "alanine-dipeptide":
        fail(f"unknown reference system {system!r}: only 'alanine-dipeptide' is available")
    try:
        info = generate_alanine_dipeptide(out, solvent=solvent, replicas=replicas, steps=steps, dt_fs=dt,
                                          temperature=temperature, save_every=save_every, workers=workers or None,
                                          seed=seed, platform=platform, plot=plot)
    except (ReferenceError, ValueError) as err:
        fail(err)
        return
    typer.echo(f"{info['new_replicas']} replica(s) run, {info['total_frames']} frames in {out} "
               f"({info['total_ns']:.4f} ns total, {info['ns_per_day']:.0f} ns/day per worker)")
