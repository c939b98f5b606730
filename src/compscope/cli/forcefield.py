"""Top-level force-field verbs: ``compscope train``, ``compscope eval``, ``compscope quickstart``."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    pass
