"""The import rule holds: the import-linter contracts in pyproject.toml (layers, no task importing a task, no
imports of another package's ``_private`` modules) are kept by src/compscope and benchmarks/."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    pytest.importorskip("importlinter", reason="import-linter is in the dev extra (pip install -e '.[dev]')")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT),
                                                         os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command; "
                          "lint_imports_command(['--no-cache'])"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "0 broken" in run.stdout


def test_cli_and_benchmarks_use_public_names():
    """Every ``from compscope.X import name`` in the CLI and the benchmarks names something in ``X.__all__`` (or a
    public submodule)."""
    import ast
    import importlib

    files = sorted((ROOT / "src" / "compscope" / "cli").glob("*.py")) + sorted((ROOT / "benchmarks").glob("*.py"))
    private = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith(
                    "compscope.") and not node.module.startswith("compscope.cli")):
                continue
            public = getattr(importlib.import_module(node.module), "__all__", ())
            for alias in node.names:
                if alias.name not in public and not _is_public_module(f"{node.module}.{alias.name}"):
                    private.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.module}.{alias.name}")
    assert not private, "names used by the CLI/benchmarks but missing from their package's __all__: " + str(private)


def _is_public_module(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None and not name.rpartition(".")[2].startswith("_")
    except ModuleNotFoundError:
        return False
