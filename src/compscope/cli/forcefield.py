"""Top-level force-field verbs: ``compscope train | eval | export | committee | quickstart``."""

from __future__ import annotations

from pathlib import Path

import typer


def _fail(msg: str) -> None:
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    @app.command()
    def train(
        config: Path = typer.Argument(..., help="YAML config (see configs/forcefield/ethanol.yaml)."),
        resume: bool = typer.Option(False, "--resume", help="Continue the run in the config's 'out' directory."),
        out: Path | None = typer.Option(None, help="Override the config's run directory."),
    ) -> None:
        """Train a force field on DFT energies and forces (Lightning; DDP with trainer.strategy: ddp)."""
        from compscope.forcefield import NonFiniteLossError, fit
        from compscope.train import ConfigError, load_yaml

        try:
            cfg = load_yaml(config)
            if out is not None:
                cfg["out"] = str(out)
            run = fit(cfg, resume=resume, base=config.resolve().parent)
        except (ConfigError, FileNotFoundError) as exc:
            _fail(str(exc))
        except NonFiniteLossError as exc:
            _fail(f"{exc}\nlast good checkpoint: {Path(cfg['out']) / 'checkpoints' / 'last.ckpt'}")
        _report_run(run)

    @app.command("eval")
    def eval_(
        model: Path = typer.Argument(..., help="Model .pt / .jit.pt file, or several joined by commas."),
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
        import json

        from compscope.data import DataFormatError
        from compscope.forcefield._committee import evaluate_models
        from compscope.forcefield._evaluate import print_error_table
        from compscope.models import UnknownElementError

        paths = [Path(p) for p in str(model).split(",")]
        try:
            table = evaluate_models(paths, data, out=out, energy_key=energy_key, forces_key=forces_key,
                                    batch_size=batch_size, threshold=uncertainty_threshold)
        except (FileNotFoundError, DataFormatError, UnknownElementError, ValueError) as exc:
            _fail(str(exc))
        print_error_table({"data": table} if "frames" in table else table, title=f"{data.name}")
        if "uncertainty" in table:
            u = table["uncertainty"]
            typer.echo(f"committee of {u['models']}: {u['flagged']} / {table['frames']} frames above "
                       f"{uncertainty_threshold} eV/Å force std (max {u['max_force_std']:.3f})")
        if json_out:
            json_out.write_text(json.dumps(table, indent=2))
        if out:
            typer.echo(f"predictions written to {out}")

    @app.command()
    def export(
        model: Path = typer.Argument(..., help="Run directory, checkpoint (.ckpt) or model package (.pt)."),
        out: Path = typer.Option(..., help="Output: NAME.pt (portable package) or NAME.jit.pt (TorchScript)."),
        dtype: str = typer.Option("float64", help="float64 or float32 for the compiled model."),
    ) -> None:
        """Export a trained model: portable package (.pt) or compiled TorchScript (.jit.pt)."""
        from compscope.forcefield._export import export_model

        try:
            path = export_model(model, out, dtype=dtype)
        except (FileNotFoundError, ValueError) as exc:
            _fail(str(exc))
        typer.echo(f"exported {path}")

    @app.command()
    def committee(
        config: Path = typer.Argument(..., help="YAML config of one member."),
        n: int = typer.Option(4, "--n", help="Committee size (seeds seed, seed+1, ...)."),
        out: Path = typer.Option(Path("runs/committee"), help="Directory for the members' runs."),
        parallel: int = typer.Option(1, help="Members trained at once (Ray tasks when > 1)."),
    ) -> None:
        """Train N models with different seeds (a committee) for uncertainty estimates."""
        from compscope.forcefield._committee import train_committee

        paths = train_committee(config, n=n, out=out, parallel=parallel)
        typer.echo("committee models:\n" + "\n".join(str(p) for p in paths))
        typer.echo(f"evaluate with: compscope eval {','.join(str(p) for p in paths)} DATA.xyz")

    @app.command()
    def quickstart(
        out: Path = typer.Option(Path("compscope_quickstart"), help="Where to put the run."),
        minutes: float = typer.Option(2.0, help="Training wall-clock budget."),
        md_steps: int = typer.Option(1000, help="Steps of the short MD run at the end (0 to skip)."),
    ) -> None:
        """The main job on bundled data: train a small ethanol force field, report errors, plots, short MD."""
        from compscope.cli._quickstart import run_quickstart

        run_quickstart(out, minutes=minutes, md_steps=md_steps)


def _report_run(run: Path) -> None:
    import json

    from compscope.forcefield._evaluate import print_error_table

    table = json.loads((run / "errors.json").read_text())
    print_error_table(table, title=f"errors ({run})")
    typer.echo(f"model: {run / 'model.pt'}\nplots: {run / 'parity.png'}, {run / 'learning_curves.png'}\n"
               f"metrics: {run / 'metrics.jsonl'}\ncheckpoint (resume with --resume): {run / 'checkpoints/last.ckpt'}")
