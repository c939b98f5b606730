"""``compscope info``: versions, data directory, GPU visibility."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def info() -> None:
        """Print package versions, the data directory and whether a GPU is visible."""
        from rich.console import Console
        from rich.table import Table

        from compscope.data import data_dir
        from compscope.versions import version

        console = Console()
        table = Table(title="compscope info", show_header=True)
        table.add_column("item")
        table.add_column("value")
        for pkg in ("compscope", "torch", "e3nn", "ase", "lightning", "numpy", "vesin", "rdkit",
                    "numba", "ray", "openmm", "fastapi"):
            table.add_row(pkg, version(pkg) or "[dim]not installed[/dim]")
        table.add_row("data directory", str(data_dir()))
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none visible"
        table.add_row("GPU", gpu)
        table.add_row("torch threads", str(torch.get_num_threads()))
        from compscope.runtime import thread_report

        rep = thread_report()
        table.add_row("threads chosen", f"{rep['threads']} (from {rep['source']})")
        table.add_row("OpenMP wait", ", ".join(f"{k}={v}" for k, v in rep["wait_policy"].items()))
        console.print(table)
