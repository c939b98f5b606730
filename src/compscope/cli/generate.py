"""`compscope generate ...` verbs: train, sample and evaluate 3D molecule generators on QM9.

``compscope generate train CONFIG [--resume] [--out DIR] [--set key=value ...]``; errors (with their hints) are
printed by the root command group (:class:`compscope.cli._common.CompscopeGroup`).
"""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import SET_OPTION_HELP, fail, load_config

app = typer.Typer(help="3D molecule generation on QM9 (EDM diffusion, flow matching, EDM metrics).",
                  no_args_is_help=True)


@app.command()
def train(
    config: Path = typer.Argument(..., help="YAML with the sections model, data, module, trainer "
                                            "(configs/generate/)"),
    resume: bool = typer.Option(False, "--resume", help="continue the run in the output folder exactly where it "
                                                        "stopped (refuses changed settings other than budgets "
                                                        "and hardware)"),
    out: Path | None = typer.Option(None, "--out", help="run folder (default: the config's out)"),
    overrides: list[str] | None = typer.Option(None, "--set", help=SET_OPTION_HELP),
) -> None:
    """Train a generator with the shared trainer (EMA weights, time budget summed over resumes, checkpoints).

    Examples: --set trainer.max_time_minutes=240 (a longer budget, with --resume), --set trainer.max_steps=1000,
    --set module.lr=1e-4, --set data.batch_size=32.
    """
    from compscope.generate import train as run

    result = run(load_config(config, overrides), out=out, resume=resume)
    typer.echo(f"model written to {result.run.model}")


def _parse_condition(text: str | None):
    if text is None:
        return None, None
    from compscope.generate import check_property

    name, sep, value = text.partition("=")
    if not sep:
        fail(f"--condition {text!r}: write NAME=VALUE, e.g. --condition alpha=80")
    try:
        check_property(name.strip())
        return name.strip(), float(value)
    except ValueError as e:
        fail(f"--condition {text!r}: {e}")


@app.command()
def sample(
    model: Path = typer.Argument(..., help="model.pt (or .ckpt) written by `compscope generate train`"),
    n: int = typer.Option(1000, "--n", help="number of molecules"),
    out: Path = typer.Option(Path("mols.sdf"), "--out", help="SDF output; an .xyz with the same stem is written too"),
    condition: str = typer.Option(None, help="property target for a conditional model, e.g. alpha=80"),
    seed: int = typer.Option(0, help="random seed"),
    batch_size: int = typer.Option(256, help="molecules per network call"),
    steps: int = typer.Option(None, help="sampling steps (default: the model's sample_steps)"),
    png: Path = typer.Option(None, help="also draw a PNG grid of valid molecules with their metrics"),
) -> None:
    """Sample molecules; writes SDF (EDM distance bonds) + xyz and reports sampling time per molecule (threads:
    ``compscope --threads N generate sample ...``)."""
    from compscope.generate import load_model, metrics, molecule_grid, write_sdf, write_xyz

    if n < 1:
        fail("--n must be at least 1")
    name, value = _parse_condition(condition)
    try:
        gen = load_model(model)
    except (FileNotFoundError, ValueError) as e:
        fail(e)
    if name is not None and gen.condition != name:
        fail(f"the model is conditioned on {gen.condition!r}, not {name!r}"
              if gen.condition else "this model is unconditional: drop --condition")
    if steps:
        gen.sample_steps = steps
    try:
        mols, seconds = gen.sample(n, condition=value, batch_size=batch_size, seed=seed, progress=True)
    except ValueError as e:
        fail(e)
    props = {name: [value] * n} if name else None
    write_sdf(mols, out, props)
    write_xyz(mols, out.with_suffix(".xyz"))
    m = metrics.evaluate(mols)
    typer.echo(f"{n} molecules in {seconds:.1f} s ({1000 * seconds / n:.1f} ms/molecule) -> {out}, "
               f"{out.with_suffix('.xyz')}")
    typer.echo(str(m))
    if png:
        molecule_grid(mols, png, m, title=f"{model.name}: {n} samples")
        typer.echo(f"grid -> {png}")


@app.command()
def evaluate(
    molecules: Path = typer.Argument(..., help=".sdf or multi-frame .xyz of generated molecules (Å)"),
    novelty: bool = typer.Option(True, help="compare with QM9 training SMILES (needs qm9pack; first run ~1 min)"),
    png: Path = typer.Option(None, help="PNG grid of valid molecules with the metrics"),
    json_out: Path = typer.Option(None, "--json", help="write the metrics as JSON"),
) -> None:
    """EDM metrics: atom/molecule stability, validity, uniqueness, novelty, connected validity."""
    import json

    from compscope.generate import MoleculeFileError, metrics, molecule_grid, read_molecules

    try:
        mols = read_molecules(molecules)
    except MoleculeFileError as e:
        fail(e)
    train_smiles = None
    if novelty:
        from compscope.generate import qm9_train_smiles

        train_smiles = qm9_train_smiles()
    m = metrics.evaluate(mols, train_smiles)
    typer.echo(str(m))
    if json_out:
        json_out.write_text(json.dumps(m.as_dict(), indent=2))
    if png:
        molecule_grid(mols, png, m, title=molecules.name)
        typer.echo(f"grid -> {png}")
