"""``compscope data list | fetch | verify``."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Datasets: list the registry, fetch from canonical sources, verify checksums.",
                  no_args_is_help=True)

PathOpt = typer.Option(None, "--path", help="Data directory (default: $COMPSCOPE_DATA or the user cache dir).")


@app.command("list")
def list_(path: Path | None = PathOpt) -> None:
    """List registered datasets with license, units and whether they are present."""
    from rich.console import Console
    from rich.table import Table

    from compscope.data.datasets import REGISTRY, data_dir

    table = Table(title=f"datasets (data directory: {data_dir(path)})")
    for col in ("name", "description", "units", "license", "present"):
        table.add_column(col, overflow="fold")
    for ds in REGISTRY.values():
        here = (data_dir(path) / ds.name).exists() if ds.fetch != "pypi" else "via " + ds.package
        table.add_row(ds.name, ds.description, ds.units, ds.license, str(here))
    Console().print(table)


@app.command()
def fetch(name: str = typer.Argument(..., help="Dataset name (see `compscope data list`)."),
          path: Path | None = PathOpt,
          force: bool = typer.Option(False, help="Download again even if present and valid.")) -> None:
    """Download a dataset from its canonical public location and verify its sha256."""
    from compscope.data.datasets import fetch as _fetch

    try:
        folder = _fetch(name, path=path, force=force)
    except KeyError as exc:
        raise typer.BadParameter(str(exc)) from None
    typer.echo(f"{name}: ready in {folder}")


@app.command()
def verify(name: str | None = typer.Argument(None, help="One dataset (default: all)."),
           path: Path | None = PathOpt,
           strict: bool = typer.Option(False, help="Fail when a dataset is missing, not only when corrupt.")) -> None:
    """Verify sha256 checksums of the dataset files present in the data directory."""
    from rich.console import Console
    from rich.table import Table

    from compscope.data.datasets import verify as _verify

    try:
        rows = _verify(name, path=path)
    except KeyError as exc:
        raise typer.BadParameter(str(exc)) from None
    table = Table(title="compscope data verify")
    for col in ("dataset", "file", "status", "path"):
        table.add_column(col, overflow="fold")
    colours = {"ok": "green", "missing": "yellow", "package missing": "yellow", "checksum mismatch": "red"}
    for r in rows:
        table.add_row(r.dataset, r.file, f"[{colours[r.status]}]{r.status}[/]", r.path)
    Console().print(table)
    bad = [r for r in rows if r.status == "checksum mismatch" or (strict and r.status != "ok")]
    if bad:
        typer.echo(f"{len(bad)} file(s) failed verification; re-fetch with `compscope data fetch NAME --force`",
                   err=True)
        raise typer.Exit(1)
