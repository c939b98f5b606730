"""Force-field verbs: ``compscope forcefield train | evaluate | export | committee``.

The same functions are also top-level verbs (``compscope train | eval | export | committee``, plus
``compscope quickstart``), registered by :func:`register`. User errors (a
:class:`~compscope.errors.CompscopeError`, a missing file, ...) reach the root group's one handler, which prints
``error:``/``hint:`` and exits with code 2.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ._common import SET_OPTION_HELP

app = typer.Typer(help="Machine-learned force fields: train, evaluate, export, committees.", no_args_is_help=True)


def train(
    config: Path = typer.Argument(..., help="YAML config (see configs/forcefield/ethanol.yaml)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in the config's 'out' folder."),
    out: Path | None = typer.Option(None, "--out", help="Run folder (overrides the config's 'out')."),
    set_: list[str] | None = typer.Option(None, "--set", help=SET_OPTION_HELP),
) -> None:
    """Train a force field on DFT energies and forces (Lightning; DDP with trainer.strategy: ddp)."""
    from compscope.forcefield import fit

    from ._common import load_config

    cfg = load_config(config, set_)
    if out is not None:
        cfg["out"] = str(out)
    run = fit(cfg, resume=resume, base=config.resolve().parent)
    from compscope.train import is_rank_zero

    if is_rank_zero():  # rank 0 writes errors.json after training; the other DDP ranks have nothing to report
        _report_run(run)


def evaluate(
    model: str = typer.Argument(..., help="Model .pt / .jit.pt file or run folder, or several joined by commas."),
    data: Path = typer.Argument(..., help="extxyz file with reference labels (or without, to only predict)."),
    out: Path | None = typer.Option(None, help="Write predictions to this extxyz (keys pred_energy/pred_forces)."),
    energy_key: str = typer.Option("energy", help="Reference energy key in DATA."),
    forces_key: str = typer.Option("forces", help="Reference forces key in DATA."),
    batch_size: int = typer.Option(32, help="Frames per batch."),
    uncertainty_threshold: float = typer.Option(
        0.1, help="Committee only: flag frames whose max per-atom force std exceeds this (eV/Å)."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the error table as JSON."),
) -> None:
    """Error table (per config_type) of a model on a data set; predictions back to extxyz."""
    from compscope.forcefield import evaluate_models, print_error_table

    paths = [Path(p) for p in str(model).split(",")]
    table = evaluate_models(paths, data, out=out, energy_key=energy_key, forces_key=forces_key,
                            batch_size=batch_size, threshold=uncertainty_threshold)
    print_error_table({"data": table} if "frames" in table else table, title=f"{data.name}")
    if "uncertainty" in table:
        u = table["uncertainty"]
        typer.echo(f"committee of {u['models']}: {u['flagged']} / {table['frames']} frames above "
                   f"{uncertainty_threshold} eV/Å force std (max {u['max_force_std']:.3f})")
    if json_out:
        json_out.write_text(json.dumps(table, indent=2))
    if out:
        typer.echo(f"predictions written to {out}")


def export(
    model: Path = typer.Argument(..., help="Run folder, checkpoint (.ckpt) or model package (.pt)."),
    out: Path = typer.Option(..., help="Output: NAME.pt (portable package) or NAME.jit.pt (TorchScript)."),
    dtype: str = typer.Option("float64", help="float64 or float32 for the compiled model."),
) -> None:
    """Export a trained model: portable package (.pt) or compiled TorchScript (.jit.pt)."""
    from compscope.models.artifacts import export_model

    typer.echo(f"exported {export_model(model, out, dtype=dtype)}")


def committee(
    config: Path = typer.Argument(..., help="YAML config of one member."),
    n: int = typer.Option(4, "--n", help="Committee size (seeds seed, seed+1, ...)."),
    out: Path = typer.Option(Path("runs/committee"), "--out", help="Folder for the members' runs."),
    parallel: int = typer.Option(1, help="Members trained at once (Ray tasks when > 1)."),
    set_: list[str] | None = typer.Option(None, "--set", help=SET_OPTION_HELP),
) -> None:
    """Train N models with different seeds (a committee) for uncertainty estimates; rerun to continue one."""
    from compscope.forcefield import train_committee

    from ._common import load_config

    cfg = load_config(config, set_)
    paths = train_committee(cfg, n=n, out=out, parallel=parallel, base=config.resolve().parent)
    typer.echo("committee models:\n" + "\n".join(str(p) for p in paths))
    typer.echo(f"evaluate with: compscope forcefield evaluate {','.join(str(p) for p in paths)} DATA.xyz")


def quickstart(
    out: Path = typer.Option(Path("compscope_quickstart"), help="Where to put the run."),
    minutes: float = typer.Option(2.0, help="Training wall-clock budget."),
    md_steps: int = typer.Option(1000, help="Steps of the short MD run at the end (0 to skip)."),
) -> None:
    """The main job on bundled data: train a small ethanol force field, report errors, plots, short MD."""
    from ._quickstart import run_quickstart

    run_quickstart(out, minutes=minutes, md_steps=md_steps)


_VERBS = [("train", train), ("evaluate", evaluate), ("export", export), ("committee", committee)]
for _name, _fn in _VERBS:
    app.command(_name)(_fn)


def register(root: typer.Typer) -> None:
    """The top-level aliases: ``compscope train | eval | export | committee | quickstart``."""
    for name, fn in [("train", train), ("eval", evaluate), ("export", export), ("committee", committee),
                     ("quickstart", quickstart)]:
        root.command(name)(fn)


def _report_run(run: Path) -> None:
    from compscope.forcefield import print_error_table

    table = json.loads((run / "errors.json").read_text())
    print_error_table(table, title=f"errors ({run})")
    typer.echo(f"model: {run / 'model.pt'}\nplots: {run / 'parity.png'}, {run / 'learning_curves.png'}\n"
               f"metrics: {run / 'metrics.jsonl'}\ncheckpoint (resume with --resume): {run / 'checkpoints/last.ckpt'}")
