"""`compscope pde ...` verbs: generate data, train (train-fv: learned finite volumes, train-spectral: learned
correction of the spectral solver), evaluate and roll out neural PDE solvers.

``compscope pde train CONFIG [--resume] [--out DIR] [--set key=value ...]``; errors (with their hints) are printed
by the root command group (:class:`compscope.cli._common.CompscopeGroup`).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ._common import SET_OPTION_HELP, fail, load_config

app = typer.Typer(help="Neural PDE solvers (MP-PDE, FNO) and classical solvers on the MP-PDE benchmark.",
                  no_args_is_help=True)


@app.command()
def generate(
    equation: str = typer.Argument(..., help="E1, E2, E3, E1-authors, E2-authors, E3-authors, WE1, WE2 or WE3"),
    split: str = typer.Option("train", help="train, valid or test"),
    n: int = typer.Option(2048, help="trajectories (paper: 2048 train, 128 valid/test)"),
    seed: int = typer.Option(0),
    cache: Path | None = typer.Option(None, help="cache directory (default $COMPSCOPE_PDE_CACHE or user cache)"),
    workers: int | None = typer.Option(None, help="processes (default: all cores)"),
) -> None:
    """Generate (or resume, or reuse) a seeded split, cached to HDF5; prints the file path."""
    from compscope.pde import generate as gen

    typer.echo(gen(equation, split, n, seed, cache, workers))


@app.command()
def train(
    config: Path = typer.Argument(..., help="YAML with the sections model, data, module, trainer (configs/pde/)"),
    resume: bool = typer.Option(False, "--resume", help="continue the run in the output folder (refuses changed "
                                                        "settings other than budgets, hardware and data cache)"),
    out: Path | None = typer.Option(None, "--out", help="run folder (default: the config's out)"),
    overrides: list[str] | None = typer.Option(None, "--set", help=SET_OPTION_HELP),
) -> None:
    """Train MP-PDE or FNO with temporal bundling and the pushforward trick; prints the best checkpoint.

    Examples: --set module.lr=3e-4, --set data.repeat=250, --set trainer.max_epochs=20,
    --set trainer.devices=2 --set trainer.strategy=ddp (two CPU processes), --set model=fno-small.
    """
    from compscope.pde import train as run

    result = run(load_config(config, overrides), out=out, resume=resume)
    typer.echo(result.best)


@app.command("train-fv")
def train_fv(
    config: Path = typer.Argument(..., help="YAML with the sections model, data, module, trainer "
                                            "(configs/pde/learned_fv_e1.yaml)"),
    resume: bool = typer.Option(False, "--resume", help="continue the run in the output folder (refuses changed "
                                                        "settings other than budgets, hardware and data cache)"),
    out: Path | None = typer.Option(None, "--out", help="run folder (default: the config's out)"),
    overrides: list[str] | None = typer.Option(None, "--set", help=SET_OPTION_HELP),
) -> None:
    """Train a learned-flux finite-volume solver (WENO5 + learned stencils) by unrolling; prints the best checkpoint.

    Examples: --set data.nx=25, --set module.unroll=[4,8,16], --set trainer.max_time_minutes=30.
    """
    from compscope.pde import train_learned_fv

    result = train_learned_fv(load_config(config, overrides), out=out, resume=resume)
    typer.echo(result.best)


@app.command("train-spectral")
def train_spectral(
    config: Path = typer.Argument(..., help="YAML with the sections model, data, module, trainer "
                                            "(configs/pde/learned_spectral_e3.yaml)"),
    resume: bool = typer.Option(False, "--resume", help="continue the run in the output folder"),
    out: Path | None = typer.Option(None, "--out", help="run folder (default: the config's out)"),
    overrides: list[str] | None = typer.Option(None, "--set", help=SET_OPTION_HELP),
) -> None:
    """Train a learned correction of the pseudo-spectral solver (IF-RK4 + a learned conservative flux) by
    unrolling; prints the best checkpoint. Examples: --set data.nx=25, --set trainer.max_time_minutes=10."""
    from compscope.pde import train_learned_spectral

    result = train_learned_spectral(load_config(config, overrides), out=out, resume=resume)
    typer.echo(result.best)


@app.command()
def evaluate(
    checkpoint: Path = typer.Argument(..., help="a .ckpt from `compscope pde train`"),
    equation: str | None = typer.Option(None, help="must match the training equation"),
    nx: int | None = typer.Option(None, help="must match the training resolution"),
    n_test: int = typer.Option(128),
    seed: int = typer.Option(0),
    cache: Path | None = typer.Option(None),
    output: Path | None = typer.Option(None, help="write the metrics JSON here"),
    plot: Path | None = typer.Option(None, help="PNG of the per-step error curve"),
) -> None:
    """Accumulated error (paper Table 1), per-step error curve and runtime per trajectory on the test split."""
    from compscope.pde import evaluate as ev

    res = ev(checkpoint, equation, nx, n_test, seed, cache)
    summary = {k: v for k, v in res.items() if k not in ("prediction", "reference", "x", "t")}
    if plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.semilogy(res["t"], res["per_step_error"])
        ax.axvline(res["t"][res["given_steps"]], color="k", ls=":", label="rollout starts")
        ax.set_xlabel("t")
        ax.set_ylabel("spatial-mean squared error")
        ax.legend()
        fig.tight_layout()
        fig.savefig(plot, dpi=120)
    text = json.dumps(summary, indent=2)
    if output:
        output.write_text(text + "\n")
    short = {k: v for k, v in summary.items() if k != "per_step_error"}
    typer.echo(json.dumps(short, indent=2))


@app.command()
def rollout(
    checkpoint: Path = typer.Argument(..., help="a .ckpt from `compscope pde train`"),
    output: Path = typer.Option(Path("rollout.png"), help="PNG with x-t images: reference, prediction, error"),
    index: int = typer.Option(0, help="test trajectory to plot"),
    equation: str | None = typer.Option(None),
    nx: int | None = typer.Option(None),
    n_test: int = typer.Option(128),
    seed: int = typer.Option(0),
    cache: Path | None = typer.Option(None),
) -> None:
    """Roll a trained solver out on one test trajectory and plot reference, prediction and error."""
    from compscope.pde import evaluate as ev
    from compscope.pde import plot_rollout

    res = ev(checkpoint, equation, nx, n_test, seed, cache, timing=False)
    if not 0 <= index < len(res["prediction"]):
        fail(f"--index {index} out of range: the test split has {len(res['prediction'])} trajectories",
             hint=f"use --index 0..{len(res['prediction']) - 1}, or a larger --n-test")
    plot_rollout(res["reference"][index], res["prediction"][index], res["x"], res["t"], output,
                 title=f"{res['equation']} nx={res['nx']} trajectory {index}")
    typer.echo(output)
