"""`compscope search ...` verbs."""

from __future__ import annotations

import typer

app = typer.Typer(help="(search) capability commands.", no_args_is_help=True)
