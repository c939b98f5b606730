"""`compscope generate ...` verbs."""

from __future__ import annotations

import typer

app = typer.Typer(help="(generate) capability commands.", no_args_is_help=True)
