"""Build objects from config sections: ``{class_path, init_args}`` or a named preset, arguments checked first.

One instantiator for every task (constructors are the config schema). A section is one of

- ``{"class_path": "compscope.models.EquivariantPotential", "init_args": {...}}``; a bare class name is looked
  up in ``default_module``;
- ``"small"`` or ``{"preset": "small", "init_args": {...}}``: a named preset (itself a class_path spec) with
  optional overrides;
- an already built object, returned as is.

Unknown or missing arguments raise :class:`~compscope.errors.ConfigError` naming the section, the bad keys and
the allowed ones, before the constructor runs.

Examples:
    >>> spec = {"class_path": "collections.OrderedDict", "init_args": {}}
    >>> type(instantiate(spec)).__name__
    'OrderedDict'
    >>> instantiate({"class_path": "fractions.Fraction", "init_args": {"numerator": 3, "denominator": 4}})
    Fraction(3, 4)
"""

from __future__ import annotations

import copy
import importlib
import inspect
from collections.abc import Mapping
from typing import Any

from compscope.errors import ConfigError

from ._config import check_arguments

__all__ = ["instantiate", "resolve_class", "normalize_spec", "complete_spec"]


def resolve_class(path: str, default_module: str | None = None, section: str = "") -> Any:
    """The class (or factory function) named by a dotted ``path``; a bare name is looked up in
    ``default_module``."""
    mod_name, _, name = str(path).rpartition(".")
    mod_name = mod_name or default_module
    where = f"config section '{section}': " if section else ""
    if not mod_name:
        raise ConfigError(f"{where}class_path {path!r} needs a module, e.g. 'compscope.models.EquivariantPotential'")
    try:
        module = importlib.import_module(mod_name)
    except ImportError as err:
        raise ConfigError(f"{where}class_path {path!r}: module {mod_name!r} cannot be imported ({err})",
                          hint="check the spelling, or install the extra that provides it") from err
    try:
        return getattr(module, name)
    except AttributeError:
        public = sorted(n for n in getattr(module, "__all__", dir(module)) if not n.startswith("_"))
        raise ConfigError(f"{where}{mod_name} has no {name!r}", hint=f"public names there: {public}") from None


def normalize_spec(spec: Any, presets: Mapping[str, Any] | None = None, section: str = "") -> dict[str, Any]:
    """``{"class_path", "init_args"}`` for a spec written in any accepted form (presets expanded, overrides
    merged over the preset's ``init_args``)."""
    presets = presets or {}
    where = f"config section '{section}'" if section else "config"
    if isinstance(spec, str):
        spec = {"preset": spec} if spec in presets or "." not in spec else {"class_path": spec}
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where}: expected a preset name or a mapping with 'class_path' and 'init_args', "
                          f"got {type(spec).__name__}")
    unknown = sorted(set(spec) - {"class_path", "init_args", "preset"})
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}",
                          hint="a section holds 'class_path' (or 'preset') and 'init_args'; constructor arguments "
                               "go under 'init_args'")
    init_args = dict(spec.get("init_args") or {})
    if "preset" in spec:
        name = spec["preset"]
        if name not in presets:
            raise ConfigError(f"{where}: preset {name!r} unknown", hint=f"available: {sorted(presets)}")
        base = normalize_spec(presets[name], section=section)
        if "class_path" in spec and spec["class_path"] != base["class_path"]:
            raise ConfigError(f"{where}: preset {name!r} is a {base['class_path']}, not {spec['class_path']}")
        return {"class_path": base["class_path"], "init_args": {**base["init_args"], **init_args}}
    if "class_path" not in spec:
        raise ConfigError(f"{where}: needs 'class_path' (or 'preset')",
                          hint=f"presets: {sorted(presets)}" if presets else None)
    return {"class_path": str(spec["class_path"]), "init_args": copy.deepcopy(init_args)}


def instantiate(spec: Any, *, default_module: str | None = None, presets: Mapping[str, Any] | None = None,
                section: str = "", **provided: Any) -> Any:
    """Build the object a config section describes.

    Args:
        spec: ``{"class_path", "init_args"}``, a preset name, ``{"preset", "init_args"}``, or a built object.
        default_module: where a bare class name is looked up.
        presets: named specs (preset name -> spec).
        section: the section's name, for error messages.
        **provided: arguments the caller supplies (e.g. ``species`` from the data); the config's own
            ``init_args`` win over them.

    Raises:
        ConfigError: unknown class, unknown or missing arguments, or a malformed section.
    """
    if not isinstance(spec, (str, Mapping)):
        return spec
    spec = normalize_spec(spec, presets, section)
    cls = resolve_class(spec["class_path"], default_module, section)
    if not callable(cls):
        raise ConfigError(f"config section '{section}': {spec['class_path']} is not a class or function")
    kwargs = {**provided, **spec["init_args"]}
    try:
        inspect.signature(cls)
    except (TypeError, ValueError):  # a builtin without a signature: let it check its own arguments
        return cls(**kwargs)
    check_arguments(section or spec["class_path"], cls, kwargs)
    return cls(**kwargs)


def complete_spec(spec: Any, *, section: str, default_class: str | None = None, default_module: str | None = None,
                  presets: Mapping[str, Any] | None = None, provided: Mapping[str, str] | None = None
                  ) -> dict[str, Any]:
    """``{"class_path", "init_args"}`` of a config section with every constructor default written out and the
    arguments checked: what a run folder's ``config.yaml`` stores and ``--resume`` compares.

    Args:
        spec: the section as written (``None`` or ``{init_args: ...}`` take ``default_class``).
        section: its name, for error messages.
        default_class: the class_path of a section that names none.
        default_module: where a bare class name is looked up.
        presets: named specs.
        provided: arguments the caller fills in (name -> where they come from); the section may not set them.

    Raises:
        ConfigError: an unknown class, unknown or missing arguments, or an argument that ``provided`` sets.

    Examples:
        >>> spec = complete_spec({"init_args": {"in_features": 2, "out_features": 3}}, section="layer",
        ...                      default_class="torch.nn.Linear")
        >>> spec["init_args"]
        {'bias': True, 'device': None, 'dtype': None, 'in_features': 2, 'out_features': 3}
    """
    provided = dict(provided or {})
    if spec is None:
        spec = {}
    if isinstance(spec, Mapping) and "class_path" not in spec and "preset" not in spec and default_class:
        spec = {"class_path": default_class, **spec}
    out = normalize_spec(spec, presets, section)
    cls = resolve_class(out["class_path"], default_module, section)
    for key in sorted(set(out["init_args"]) & set(provided)):
        raise ConfigError(f"config section '{section}': {key!r} is set by {provided[key]}",
                          hint=f"remove {section}.init_args.{key}")
    check_arguments(section, cls, out["init_args"], provided=set(provided))
    defaults = {}
    for fn in _constructors(cls):
        for name, p in inspect.signature(fn).parameters.items():
            if (p.default is p.empty or name in provided or name in defaults
                    or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL)):
                continue
            defaults[name] = list(p.default) if isinstance(p.default, tuple) else p.default
    return {"class_path": out["class_path"], "init_args": {**defaults, **out["init_args"]}}


def _constructors(cls: Any) -> list[Any]:
    """``cls`` (or a function), then the base ``__init__`` methods its ``**kwargs`` reach."""
    if not inspect.isclass(cls):
        return [cls]
    out = []
    for base in cls.__mro__:
        if "__init__" not in vars(base) or base is object:
            continue
        init = vars(base)["__init__"]
        out.append(init)
        if not any(p.kind == p.VAR_KEYWORD for p in inspect.signature(init).parameters.values()):
            break
    return out or [cls]
