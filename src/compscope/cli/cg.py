"""`compscope cg ...` verbs: map a reference to beads, train a CG potential, simulate it, compare with the reference.

``compscope cg map REF.h5 --mapping backbone --out cg.h5`` (:func:`compscope.cg.map_reference`);
``compscope cg train CONFIG.yaml [--out DIR] [--resume] [--set key=value]`` (:func:`compscope.cg.train`, configs in
``configs/cg/``); ``compscope cg simulate MODEL --replicas R --steps N --out cgtraj.h5`` runs Langevin dynamics of
the CG potential on the MD engine (:func:`compscope.md.simulate_dense`: all replicas in one tensor, one model call
per step, stability monitors, frames written in blocks; ``--engine graph``: :func:`compscope.md.simulate`) and
writes a CG trajectory (:func:`compscope.cg.write_cg_trajectory`); ``compscope cg refine MODEL`` corrects a fast
model's (phi, psi) term by IBI steps, each from such a run (:func:`compscope.cg.ibi_refine`, ``_cg_refine``);
``compscope cg compare cgtraj.h5 REF.h5``
prints the JS / free-energy MSE table and writes the side-by-side PNG (:func:`compscope.cg.compare`). The CLI joins
``cg`` and ``md`` here because a task package never imports another one.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ._common import SET_OPTION_HELP, load_config

app = typer.Typer(help="Machine-learned coarse graining: maps and force maps, force matching, CG simulation.",
                  no_args_is_help=True)


@app.command("map")
def map_(
    ref: Path = typer.Argument(..., help="Reference HDF5 from `compscope md reference` (positions and forces)."),
    mapping: str = typer.Option("backbone", help="backbone, ca, comma-separated PDB atom names or 0-based indices, "
                                                  "or a JSON/YAML file with {slice: [...]} or {com: [[...], ...]}."),
    out: Path = typer.Option(Path("cg.h5"), help="The CG file (bead positions and mapped forces)."),
    force_map: str = typer.Option("aggregated", help="aggregated (constrained hydrogens added to their bead) or "
                                                     "optimised (least-noise force map fitted on the frames, "
                                                     "Kramer et al. 2023)."),
    fit_fold: int | None = typer.Option(None, help="Fit the optimised map on the training frames of this fold only "
                                                   "(as `cg train` data.fold splits; default: all frames)."),
    fit_n_train: int | None = typer.Option(None, help="With --fit-fold: that many training frames at an even stride "
                                                      "(as data.n_train), so the map sees no other force."),
    progress: bool = typer.Option(True, help="Show a progress bar over the replicas."),
) -> None:
    """Map every frame of REF to beads; mapped forces aggregate hydrogens constrained to a bead's atom."""
    from compscope.cg import CGDataError, map_reference, split_frames

    fit_frames = None
    if fit_fold is not None or fit_n_train is not None:
        if force_map != "optimised" or fit_fold is None:
            raise CGDataError("--fit-fold / --fit-n-train choose the frames an optimised force map is fitted on",
                              hint="use them with --force-map optimised, and give --fit-fold")
        import h5py

        if not ref.exists():
            raise CGDataError(f"{ref} not found", hint="give the HDF5 file written by `compscope md reference`")
        with h5py.File(ref, "r") as f:
            lengths = [len(f["replicas"][r]["positions"]) for r in sorted(f["replicas"])]
        fit_frames = split_frames(lengths, fit_fold, n_train=fit_n_train)[0]
    info = map_reference(ref, _mapping_arg(mapping), out, force_map=force_map, fit_frames=fit_frames,
                         progress=progress)
    typer.echo(json.dumps(info, indent=2))


def _mapping_arg(text: str):
    p = Path(text)
    if p.suffix in (".json", ".yaml", ".yml") and p.exists():
        import yaml

        return yaml.safe_load(p.read_text())
    if "," in text:
        items = [s.strip() for s in text.split(",") if s.strip()]
        return [int(s) for s in items] if all(s.isdigit() for s in items) else items
    return text


@app.command()
def train(
    config: Path = typer.Argument(..., help="YAML with the sections data, model, module, trainer (configs/cg/)."),
    resume: bool = typer.Option(False, "--resume", help="continue the run in the output folder (refuses changed "
                                                        "settings other than budgets and hardware)"),
    out: Path | None = typer.Option(None, "--out", help="run folder (default: the config's out)"),
    overrides: list[str] | None = typer.Option(None, "--set", help=SET_OPTION_HELP),
) -> None:
    """Fit a CG potential (prior + equivariant network) by force matching or denoising; prints model.pt's path.

    Examples: --set data.n_train=10000, --set module.loss=denoising, --set trainer.max_time_minutes=30.
    """
    from compscope.cg import train as train_cg

    result = train_cg(load_config(config, overrides), out=out, resume=resume)
    typer.echo(result.run.file("model.pt"))


@app.command()
def simulate(
    model: Path = typer.Argument(..., help="CG model (model.pt, a run folder or a checkpoint)."),
    replicas: int = typer.Option(10, help="Replicas simulated together in one batch."),
    steps: int = typer.Option(10000, help="Langevin steps."),
    out: Path = typer.Option(Path("cgtraj.h5"), help="CG trajectory (HDF5); the MD run folder is OUT's stem + _md."),
    start: Path | None = typer.Option(None, help="CG file whose frames start the replicas (default: the model's "
                                                 "training data)."),
    dt: float = typer.Option(2.0, help="Time step in fs."),
    temperature: float = typer.Option(300.0, help="K."),
    friction: float = typer.Option(0.01, help="Langevin friction in 1/fs."),
    traj_every: int = typer.Option(500, help="Steps between saved frames."),
    seed: int = typer.Option(0, help="Seed of start frames, velocities and noise."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
    resume: bool = typer.Option(False, "--resume", help="continue the run of OUT (its _md folder) up to --steps"),
    engine: str = typer.Option("dense", help="dense: all replicas in one tensor, one model call per step (fast); "
                                             "graph: the general MD engine (neighbour lists)"),
    check_every: int = typer.Option(50, help="Steps between stability checks (bond stretch, close contacts, "
                                             "temperature, NaN)."),
) -> None:
    """Langevin dynamics (BAOAB) of the CG potential on the MD engine, replicas batched, monitors on."""
    import numpy as np

    from compscope.cg import CGDataError, load_cg, write_cg_trajectory
    from compscope.md import MDInputError, StabilityMonitor, load_potential, simulate_dense
    from compscope.md import simulate as md_simulate

    if engine not in ("dense", "graph"):
        raise MDInputError(f"--engine {engine!r}: use dense or graph")

    pot = load_potential(model)
    info = getattr(pot, "package_info", {}) or {}
    src = start or (info.get("config", {}).get("data", {}) or {}).get("path")
    if src is None:
        raise CGDataError("no start frames: the model does not name its training data",
                          hint="pass --start cg.h5 (a `compscope cg map` file)")
    data = load_cg(src)
    atoms = start_atoms(pot.atomic_numbers, np.concatenate(data.positions), src, replicas, seed)
    md_dir = out.with_name(out.stem + "_md")
    kw = dict(steps=steps, dt=dt, temperature=temperature, integrator="langevin", friction=friction, seed=seed,
              out=md_dir, traj_every=traj_every, resume=resume, monitor=StabilityMonitor(check_every=check_every),
              progress=progress)
    res = (simulate_dense(pot, atoms, **kw) if engine == "dense"
           else md_simulate(pot, atoms, extxyz=False, plots=False, **kw))
    x, stable = _read_md(md_dir / "trajectory.h5", replicas, res.summary, traj_every)
    write_cg_trajectory(out, x, stable, data.cgmap, temperature_K=temperature, dt_fs=dt, traj_every=traj_every,
                        steps=res.steps, ns_per_day=res.ns_per_day, model=str(model), integrator="langevin",
                        n_stable=res.n_stable, engine=engine)
    info = {"out": str(out), "replicas": replicas, "n_stable": res.n_stable, "steps": res.steps, "dt_fs": dt,
            "engine": engine, "wall_s": round(res.wall_s, 3), "ns_per_day_per_replica": round(res.ns_per_day, 2),
            "ns_per_day_all_replicas": round(res.ns_per_day * replicas, 2)}
    if res.cpu_s is not None:
        info.update(cpu_s=round(res.cpu_s, 3), ns_per_day_all_replicas_cpu=round(res.ns_per_day_cpu * replicas, 2))
    typer.echo(json.dumps(info, indent=2))


@app.command()
def refine(
    model: Path = typer.Argument(..., help="A fast CG model with the (phi, psi) term (model.cmap) from `cg train`."),
    iterations: int = typer.Option(6, help="IBI steps."),
    replicas: int = typer.Option(100, help="CG replicas of each step's run."),
    steps: list[int] = typer.Option([50000], help="MD steps per replica of each IBI run; repeat the option for a "
                                                  "schedule (one per IBI step, the last repeats)."),
    damping: list[float] = typer.Option([1.0], help="Fraction of each IBI correction applied; repeat for a "
                                                    "schedule (e.g. 1 1 0.5: full steps, then half steps)."),
    dt: float = typer.Option(4.0, help="Time step in fs."),
    traj_every: int = typer.Option(250, help="Steps between the frames the correction is computed from."),
    burn_frames: int = typer.Option(50, help="Frames of each replica left out at its start."),
    friction: float = typer.Option(0.01, help="Langevin friction in 1/fs."),
    seed: int = typer.Option(0, help="Seed of start frames and noise."),
    data: Path | None = typer.Option(None, help="CG file of the training data (default: the one the model names)."),
    out: Path | None = typer.Option(None, "--out", help="Refined model (default: MODEL's stem + _refined.pt)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last saved step (OUT_ibi{k}.pt)."),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Iterative Boltzmann inversion of the model's (phi, psi) term towards its training frames, each step from a
    CG run on the MD engine (the benchmark's recipe: `benchmarks/cg_alanine.py` method suffix +ibi)."""
    from ._cg_refine import refine_model

    summary = refine_model(model, out, iterations, replicas, steps, damping, dt, traj_every, burn_frames, friction,
                           seed, data, resume, progress)
    typer.echo(json.dumps(summary, indent=2))


def start_atoms(numbers, frames, src, replicas: int, seed: int) -> list:
    """Start structures of CG replicas: ``replicas`` of the CG frames (T, n_beads, 3) of file ``src``, picked with
    ``seed``; a file of another map (other bead count) is refused."""
    import numpy as np
    from ase import Atoms

    from compscope.cg import CGDataError

    if frames.shape[1] != len(numbers):
        raise CGDataError(f"{src} has {frames.shape[1]} beads, the model {len(numbers)}",
                          hint="start from a CG file of the model's map")
    pick = np.random.default_rng(seed).choice(len(frames), size=replicas, replace=len(frames) < replicas)
    return [Atoms(numbers=list(numbers), positions=frames[i]) for i in pick]


def _read_md(path: Path, replicas: int, summary: list[dict], traj_every: int):
    """(R, T, n, 3) positions of an MD trajectory and the frames of each replica before it was stopped."""
    import h5py
    import numpy as np

    with h5py.File(path, "r") as f:
        n = int(f.attrs["n_frames"])
        pos = f["particles/all/position/value"][:n]  # (T, N, 3)
        steps = f["particles/all/position/step"][:n]
    t, nn, _ = pos.shape
    x = pos.reshape(t, replicas, nn // replicas, 3).transpose(1, 0, 2, 3)
    stable = np.full(replicas, t)
    for r in summary:
        if r.get("stopped_at_step") is not None:
            stable[r["replica"]] = int((steps < r["stopped_at_step"]).sum())
    return x, stable


@app.command()
def compare(
    cgtraj: Path = typer.Argument(..., help="CG trajectory from `compscope cg simulate` (or a CG map file)."),
    ref: Path = typer.Argument(..., help="Reference: the atomistic HDF5 (mapped with CGTRAJ's map) or a CG file."),
    out: Path | None = typer.Option(None, "--out", help="Folder for compare.json (the table) and compare.png."),
    png: Path | None = typer.Option(None, help="Side-by-side PNG (default: OUT/compare.png, else CGTRAJ's stem + "
                                                "_compare.png)."),
) -> None:
    """Ramachandran free energies side by side, difference map, distributions; JS and free-energy MSE table."""
    from rich.console import Console
    from rich.table import Table

    from compscope.cg import compare as compare_cg

    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    png = png or (out / "compare.png" if out is not None else cgtraj.with_name(cgtraj.stem + "_compare.png"))
    res = compare_cg(cgtraj, ref, png)
    table = Table(title=f"{cgtraj} vs {ref}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in res.items():
        table.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
    Console().print(table)
    if out is not None:
        (out / "compare.json").write_text(json.dumps({"cgtraj": str(cgtraj), "ref": str(ref), **res}, indent=1,
                                                     default=str))
        typer.echo(f"table: {out / 'compare.json'}")
    if png.exists():
        typer.echo(f"plot: {png}")
