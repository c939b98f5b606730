"""Versions of the code that made an artifact: written into model files and run folders (``versions.json``).

Examples:
    >>> v = code_versions()
    >>> sorted(set(v) & {"python", "torch"})
    ['python', 'torch']
    >>> version("no-such-distribution") is None
    True
"""

from __future__ import annotations

import importlib.metadata
import platform
from collections.abc import Iterable

__all__ = ["PACKAGES", "code_versions", "version"]

#: distributions whose versions an artifact records (those not installed are left out)
PACKAGES = ("compscope", "torch", "lightning", "e3nn", "numpy", "ase")


def version(name: str) -> str | None:
    """The installed version of distribution ``name``, or ``None`` when it is not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def code_versions(packages: Iterable[str] = PACKAGES) -> dict[str, str]:
    """``{"python": ..., "compscope": ..., "torch": ..., ...}`` of this process (installed packages only)."""
    out = {"python": platform.python_version()}
    for name in packages:
        v = version(name)
        if v is not None:
            out[name] = v
    return out
