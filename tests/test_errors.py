"""Every error class compscope defines derives from CompscopeError (one CLI handler, a hint on each)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

from compscope.errors import CompscopeError

SRC = Path(__file__).resolve().parents[1] / "src"


def _error_classes():
    for path in sorted((SRC / "compscope").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(
                isinstance(b, ast.Name) and (b.id.endswith(("Error", "Exception")) or b.id == "CompscopeError")
                or isinstance(b, ast.Attribute) and b.attr.endswith("Error") for b in node.bases
            ):
                module = ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
                yield module, node.name


def test_every_error_class_is_a_compscope_error():
    found = list(_error_classes())
    assert len(found) >= 16  # the error classes of data, models, md, search, generate, pde, train, errors
    outside = [f"{m}.{name}" for m, name in found
               if not issubclass(getattr(importlib.import_module(m), name), CompscopeError)]
    assert not outside, f"error classes that do not derive from compscope.errors.CompscopeError: {outside}"
