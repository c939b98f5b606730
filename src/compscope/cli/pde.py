"""`compscope pde ...` verbs."""

from __future__ import annotations

import typer

app = typer.Typer(help="(pde) capability commands.", no_args_is_help=True)
