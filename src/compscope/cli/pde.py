"""`compscope pde ...` verbs: generate data, train, evaluate and roll out neural PDE solvers."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(help="Neural PDE solvers (MP-PDE, FNO) and classical solvers on the MP-PDE benchmark.",
                  no_args_is_help=True)


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


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

    try:
        typer.echo(gen(equation, split, n, seed, cache, workers))
    except (ValueError, FileNotFoundError) as exc:
        _fail(exc)


@app.command()
def train(
    config: Path | None = typer.Option(None, help="YAML with the arguments of compscope.pde.train "
                                          "(see configs/pde/); command-line options override it"),
    equation: str | None = typer.Option(None, help="E1..WE3"),
    nx: int | None = typer.Option(None, help="spatial resolution"),
    out: Path = typer.Option(Path("runs/pde"), help="output directory (checkpoints, logs, losses.png)"),
    model: str | None = typer.Option(None, help="preset: mp-pde, mp-pde-small, fno, ..."),
    epochs: int | None = typer.Option(None),
    n_train: int | None = typer.Option(None),
    n_valid: int | None = typer.Option(None),
    batch_size: int | None = typer.Option(None),
    repeat: int | None = typer.Option(None, help="random windows per training trajectory per epoch "
                                           "(250 = the authors' epoch); default: the config's, else 1"),
    lr: float | None = typer.Option(None, help="peak learning rate (AdamW + cosine); default: the config's, "
                                         "else 1e-3"),
    max_unroll: int | None = typer.Option(None, help="pushforward: most windows unrolled without gradient "
                                                 "(0 = one-step training); default: the config's, else 2"),
    augment: bool | None = typer.Option(None, "--augment/--no-augment",
                                        help="mirror-image augmentation -u(t, L - x), an exact symmetry of "
                                             "E1/E2 (refused for the others); default: the config's, else off"),
    ema_decay: float | None = typer.Option(None, help="validate and keep an exponential moving average of the "
                                                     "weights with this decay per step (e.g. 0.999); default: "
                                                     "the config's, else off"),
    devices: int = typer.Option(1, help="processes (CPU) or GPUs"),
    strategy: str = typer.Option("auto", help="'ddp' for multi-process data parallel (gloo on CPU)"),
    resume: bool = typer.Option(False, help="continue from out/checkpoints/last.ckpt"),
    cache: Path | None = typer.Option(None),
    progress: bool = typer.Option(True),
    threads: int | None = typer.Option(None, help="torch threads per process (1 is best on a busy 2-core box)"),
    accelerator: str = typer.Option("cpu", help="cpu, gpu (CUDA) or auto"),
) -> None:
    """Train MP-PDE or FNO with temporal bundling and the pushforward trick (Lightning)."""
    import yaml

    from compscope.pde import train as run

    args: dict = yaml.safe_load(config.read_text()) if config else {}
    for key, val in dict(equation=equation, nx=nx, model=model, max_epochs=epochs, n_train=n_train,
                         n_valid=n_valid, batch_size=batch_size, repeat=repeat, lr=lr, max_unroll=max_unroll,
                         augment=augment, ema_decay=ema_decay, cache=str(cache) if cache else None).items():
        if val is not None:
            args[key] = val
    if "equation" not in args or "nx" not in args:
        _fail(ValueError("give --equation and --nx (or a --config that sets them)"))
    try:
        ckpt = run(out_dir=out, devices=devices, strategy=strategy, resume=resume, progress=progress,
                   threads=threads, accelerator=accelerator, **args)
    except (ValueError, FileNotFoundError, FileExistsError, TypeError) as exc:
        _fail(exc)
    typer.echo(ckpt)


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
    from compscope.pde import EquationMismatchError, RolloutDivergedError
    from compscope.pde import evaluate as ev

    try:
        res = ev(checkpoint, equation, nx, n_test, seed, cache)
    except (EquationMismatchError, RolloutDivergedError, ValueError, FileNotFoundError) as exc:
        _fail(exc)
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
    from compscope.pde import EquationMismatchError, RolloutDivergedError, plot_rollout
    from compscope.pde import evaluate as ev

    try:
        res = ev(checkpoint, equation, nx, n_test, seed, cache, timing=False)
    except (EquationMismatchError, RolloutDivergedError, ValueError, FileNotFoundError) as exc:
        _fail(exc)
    if not 0 <= index < len(res["prediction"]):
        _fail(ValueError(f"--index {index} out of range: the test split has {len(res['prediction'])} trajectories"))
    plot_rollout(res["reference"][index], res["prediction"][index], res["x"], res["t"], output,
                 title=f"{res['equation']} nx={res['nx']} trajectory {index}")
    typer.echo(output)
