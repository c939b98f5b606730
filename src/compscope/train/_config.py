"""YAML configs whose keys are constructor arguments: validation with messages that name the bad key."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from compscope.errors import ConfigError


def accepted_arguments(fn: Callable) -> tuple[set[str], set[str], bool]:
    """(all parameter names, required names, accepts **kwargs) of a constructor or function.

    A class whose ``__init__`` passes ``**kwargs`` on to its base also accepts the base's arguments: those are
    followed up the MRO to the first ``__init__`` without ``**kwargs``.
    """
    if not inspect.isclass(fn):
        return _own_arguments(fn)
    names, required, var_kw = set(), set(), True
    for cls in fn.__mro__:
        if "__init__" not in vars(cls):
            continue
        if cls is object:
            if all("__init__" not in vars(c) for c in fn.__mro__[:-1]):
                return _own_arguments(fn)  # no __init__ of its own (e.g. built in __new__): the class signature
            return names, required, False
        n, r, var_kw = _own_arguments(cls.__init__)
        names |= n
        required |= r
        if not var_kw:
            break
    return names, required, var_kw


def _own_arguments(fn: Callable) -> tuple[set[str], set[str], bool]:
    sig = inspect.signature(fn)
    names, required, var_kw = set(), set(), False
    for name, p in sig.parameters.items():
        if name == "self":
            continue
        if p.kind == p.VAR_KEYWORD:
            var_kw = True
            continue
        if p.kind == p.VAR_POSITIONAL:
            continue
        names.add(name)
        if p.default is p.empty:
            required.add(name)
    return names, required, var_kw


def check_arguments(section: str, fn: Callable, args: Mapping[str, Any], extra: set[str] | None = None,
                    provided: set[str] | None = None) -> None:
    """Raise :class:`ConfigError` for keys ``fn`` does not accept, or required keys that are missing."""
    names, required, var_kw = accepted_arguments(fn)
    allowed = names | (extra or set())
    unknown = sorted(set(args) - allowed)
    if unknown and not var_kw:
        shown = sorted(allowed - (provided or set()))  # not the ones the caller fills in
        raise ConfigError(
            f"config section '{section}': unknown key(s) {unknown}. Allowed keys: {shown}",
            hint=f"the keys are the arguments of {getattr(fn, '__qualname__', fn)}; check the spelling",
        )
    missing = sorted(required - set(args) - (provided or set()))
    if missing:
        raise ConfigError(f"config section '{section}': missing required key(s) {missing}")


class ConfigFileNotFound(ConfigError, FileNotFoundError):
    """The config file named on the command line does not exist."""


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ConfigFileNotFound(f"config file {path} not found",
                                 hint="check the path; shipped examples are in configs/")
    try:
        cfg = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return cfg


def resolve_section(cfg: Mapping[str, Any], name: str, cls: type, defaults: Mapping[str, Any] | None = None,
                    provided: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Section ``name`` of ``cfg`` for a fixed class: the constructor's arguments with every default written out
    (config > ``defaults`` > signature default), checked against ``cls``; ``provided`` maps the arguments the
    caller fills in to where they come from (the section may not set them).

    Examples:
        >>> import torch
        >>> resolve_section({"layer": {"out_features": 3}}, "layer", torch.nn.Linear, provided={"in_features": "data"})
        {'bias': True, 'device': None, 'dtype': None, 'out_features': 3}
        >>> spec = {"class_path": "torch.nn.Linear", "init_args": {"out_features": 3}}  # the same, sectioned
        >>> resolve_section({"layer": spec}, "layer", torch.nn.Linear, provided={"in_features": "data"})["out_features"]
        3
    """
    sec = cfg.get(name) or {}
    if not isinstance(sec, Mapping):
        raise ConfigError(f"config section '{name}' must be a mapping of {cls.__name__} arguments, "
                          f"got {type(sec).__name__}")
    if "init_args" in sec or "class_path" in sec:  # the sectioned form every config may use: {class_path, init_args}
        extra = sorted(set(sec) - {"class_path", "init_args"})
        path = sec.get("class_path")
        if extra or (path is not None and path.rsplit(".", 1)[-1] != cls.__name__):
            raise ConfigError(f"config section '{name}': {extra or path!r} not understood here",
                              hint=f"this section builds {cls.__module__}.{cls.__name__}: write its arguments under "
                                   f"init_args (class_path may only name {cls.__name__})")
        sec = sec.get("init_args") or {}
    provided = dict(provided or {})
    for key in sorted(set(sec) & set(provided)):
        raise ConfigError(f"config section '{name}': {key!r} is set by {provided[key]}", hint=f"remove {name}.{key}")
    check_arguments(name, cls, sec, provided=set(provided))
    params = inspect.signature(cls.__init__).parameters
    out = {k: p.default for k, p in params.items()
           if k not in ("self", *provided) and p.default is not inspect.Parameter.empty}
    out.update(defaults or {})
    out.update(sec)
    return out
