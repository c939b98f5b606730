"""Named model presets and a registry of model classes (extensible through entry points)."""

from __future__ import annotations

import importlib.metadata as md
from typing import Any

from torch import nn

from ._cg import CGPotential
from ._forcefield import EquivariantPotential

MODEL_CLASSES: dict[str, type[nn.Module]] = {"EquivariantPotential": EquivariantPotential, "CGPotential": CGPotential}

# Reproducible sizes. "small" is MACE-small-like (32 channels, L=1 features); "medium" doubles channels.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(hidden_irreps="8x0e+8x1o", max_ell=2, num_interactions=2, correlation=2, radial_hidden=(16,),
                 num_bessel=6),
    "small": dict(hidden_irreps="32x0e+32x1o", max_ell=2, num_interactions=2, correlation=3, radial_hidden=(64, 64),
                  num_bessel=8),
    # strictly local (Allegro-style): one interaction over a longer cutoff, so an atom's energy sees r_max and no
    # further; a domain-decomposed run (compscope.integrations.lammps) then needs ghosts only r_max deep, not
    # num_interactions x r_max (docs/large-systems.md: the trade-off)
    "local": dict(hidden_irreps="32x0e+32x1o", max_ell=2, num_interactions=1, correlation=3, radial_hidden=(64, 64),
                  num_bessel=8, r_max=6.0),
    "medium": dict(hidden_irreps="64x0e+64x1o", max_ell=3, num_interactions=2, correlation=3,
                   radial_hidden=(64, 64, 64), num_bessel=8),
}


def _entry_point_models() -> dict[str, type[nn.Module]]:
    out = {}
    try:
        for ep in md.entry_points(group="compscope.models"):
            out[ep.name] = ep.load()
    except Exception:  # noqa: BLE001 - a broken plugin must not break the core
        pass
    return out


def build_model(name: str = "EquivariantPotential", preset: str | None = None, **kwargs) -> nn.Module:
    """Build a registered model class, optionally starting from a named preset (kwargs override it)."""
    classes = {**MODEL_CLASSES, **_entry_point_models()}
    if name not in classes:
        raise KeyError(f"unknown model {name!r}; registered: {sorted(classes)}")
    args: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise KeyError(f"unknown preset {preset!r}; available: {sorted(PRESETS)}")
        args.update(PRESETS[preset])
    args.update(kwargs)
    model = classes[name](**args)
    # what rebuilds this model: stored in model packages (compscope.models.artifacts.save_package)
    model.build_kwargs = {"name": name, **({"preset": preset} if preset is not None else {}), **kwargs}
    return model
