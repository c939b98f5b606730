"""Resolve the MODEL argument of ``compscope md``: a YAML config naming a class, or a trained model package."""

from __future__ import annotations

import importlib
from pathlib import Path

import torch

from ._checks import MDInputError

__all__ = ["load_potential", "build_from_config"]


def build_from_config(cfg: dict) -> torch.nn.Module:
    """Build ``{"class_path": "pkg.mod.Class", "init_args": {...}}`` (constructors are the config schema)."""
    if "potential" in cfg:
        cfg = cfg["potential"]
    if not isinstance(cfg, dict) or "class_path" not in cfg:
        raise MDInputError("a potential config needs `class_path: package.module.Class` and optional `init_args`")
    mod_name, _, cls_name = str(cfg["class_path"]).rpartition(".")
    try:
        cls = getattr(importlib.import_module(mod_name), cls_name)
    except (ImportError, AttributeError) as err:
        raise MDInputError(f"class_path {cfg['class_path']!r} cannot be imported ({err}); check the spelling") from err
    return cls(**(cfg.get("init_args") or {}))


def load_potential(spec: str | Path, dtype: torch.dtype | None = None) -> torch.nn.Module:
    """A potential from a YAML config (``.yaml``/``.yml``) or a trained model package (``compscope train``).

    Raises:
        MDInputError: when the file is missing or is neither kind, with what to pass instead.
    """
    path = Path(spec)
    if not path.exists():
        raise MDInputError(
            f"model file {path} not found: pass a trained model package (from `compscope train`/`compscope "
            "export`) or a YAML potential config such as configs/md/lj_argon.yaml"
        )
    if path.suffix in (".yaml", ".yml"):
        import yaml

        pot = build_from_config(yaml.safe_load(path.read_text()))
        return pot.to(dtype) if dtype is not None else pot
    if path.name.endswith(".jit.pt"):  # TorchScript export (`compscope export ... model.jit.pt`)
        from compscope.forcefield import CompiledPotential

        try:
            return CompiledPotential(path)
        except (RuntimeError, ValueError, KeyError) as err:
            raise MDInputError(f"{path} is not a usable compiled model: {err}") from err
    try:
        from compscope.forcefield import load_model
    except ImportError as err:  # pragma: no cover - forcefield is part of the package
        raise MDInputError(f"cannot load trained models: {err}") from err
    try:
        model = load_model(path, dtype=dtype)
    except (ValueError, RuntimeError, KeyError) as err:
        raise MDInputError(f"{path} is not a usable model: {err}") from err
    for p in model.parameters():
        p.requires_grad_(False)
    return model
