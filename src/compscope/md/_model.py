"""Resolve the MODEL argument of ``compscope md``: a YAML config naming a class, or any model file.

Model files (package ``.pt``, compiled ``.jit.pt``, checkpoint ``.ckpt``, run folder) are read by the one loader,
:func:`compscope.models.artifacts.load_model`; a YAML config is built by :func:`compscope.train.instantiate`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from compscope.models.artifacts import load_model

from ._checks import MDInputError

__all__ = ["load_potential", "build_from_config"]


def build_from_config(cfg: dict) -> torch.nn.Module:
    """Build ``{"class_path": "pkg.mod.Class", "init_args": {...}}`` (optionally under a ``potential`` key);
    constructors are the config schema, so unknown arguments are refused before the class is called."""
    if isinstance(cfg, dict) and "potential" in cfg:
        cfg = cfg["potential"]
    if not isinstance(cfg, dict) or "class_path" not in cfg:
        raise MDInputError("a potential config needs `class_path: package.module.Class` and optional `init_args`",
                           hint="see configs/md/lj_argon.yaml")
    from compscope.train import instantiate  # lightning loads only when a config is built

    return instantiate(cfg, section="potential")


def load_potential(spec: str | Path, dtype: torch.dtype | None = None) -> torch.nn.Module:
    """A potential from a YAML config (``.yaml``/``.yml``) or a model file (see
    :func:`compscope.models.artifacts.load_model`), with gradients of its weights switched off.

    Raises:
        MDInputError: when the file is missing.
        compscope.models.artifacts.ArtifactError: when a model file cannot be read.
    """
    path = Path(spec)
    if not path.exists():
        raise MDInputError(f"model file {path} not found",
                           hint="pass a trained model (model.pt, model.jit.pt or a run folder from `compscope "
                                "train`) or a YAML potential config such as configs/md/lj_argon.yaml")
    if path.suffix in (".yaml", ".yml"):
        import yaml

        pot = build_from_config(yaml.safe_load(path.read_text()))
        return pot.to(dtype) if dtype is not None else pot
    model = load_model(path, dtype=dtype)
    for p in model.parameters():
        p.requires_grad_(False)
    return model
