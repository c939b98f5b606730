"""One command-line entry point: ``compscope <verb> ...``.

Every capability registers a typer sub-app from its own module in this package. Modules
import heavy libraries (torch, rdkit, ...) inside the command functions, so ``compscope --help``
stays fast. Every command first sets the thread pools (``compscope --threads N``, :mod:`compscope.runtime`).
"""

from __future__ import annotations

import importlib

import typer

from ._common import CompscopeGroup

app = typer.Typer(
    cls=CompscopeGroup,
    name="compscope",
    help="compscope: equivariant deep learning for molecules and physical fields.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


@app.callback()
def root(
    threads: int | None = typer.Option(
        None, "--threads", min=1,
        help="CPU threads for torch, numba and OpenMP (default: $COMPSCOPE_NUM_THREADS, else the free cores).",
    ),
) -> None:
    """compscope: equivariant deep learning for molecules and physical fields."""
    import os

    from compscope.runtime import ENV_VAR, configure_threads

    if threads is not None:
        os.environ[ENV_VAR] = str(threads)  # later calls (compscope.train.fit) and child processes keep it
    configure_threads(threads)


# (verb, module): each module defines ``app`` (a typer.Typer) or ``register(app)``.
_SUBAPPS = [
    ("data", "compscope.cli.data"),
    ("forcefield", "compscope.cli.forcefield"),
    ("md", "compscope.cli.md"),
    ("generate", "compscope.cli.generate"),
    ("pde", "compscope.cli.pde"),
    ("search", "compscope.cli.search"),
    ("sample", "compscope.cli.sampling"),
    ("cg", "compscope.cli.cg"),
]
# modules that add top-level verbs to ``app`` through ``register(app)``
_TOPLEVEL = ["compscope.cli.info", "compscope.cli.forcefield"]

for _mod in _TOPLEVEL:
    importlib.import_module(_mod).register(app)
for _verb, _mod in _SUBAPPS:
    _m = importlib.import_module(_mod)
    app.add_typer(_m.app, name=_verb, help=_m.app.info.help)


def main() -> None:  # console-script entry point
    app()
