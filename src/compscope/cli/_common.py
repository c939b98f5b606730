"""What every command shares: the one error handler, ``--set key=value`` overrides, config loading.

The grammar of every capability is ``compscope <task> <verb> CONFIG [--resume] [--out DIR] [--set key=value]``.
A :class:`~compscope.errors.CompscopeError` raised anywhere under a command is printed as ``error: ...`` and
``hint: ...`` on stderr with exit code 2 (:class:`CompscopeGroup`); other exceptions are bugs and keep their
traceback.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import typer
import yaml
from typer.core import TyperGroup

from compscope.errors import CompscopeError, ConfigError

__all__ = ["CompscopeGroup", "fail", "report", "parse_overrides", "apply_overrides", "load_config",
           "SET_OPTION_HELP", "USER_ERRORS"]

# builtin errors that mean bad input when they escape a command (missing files, invalid values); compscope's own
# errors derive from CompscopeError and carry a hint
USER_ERRORS = (CompscopeError, FileNotFoundError, FileExistsError, ValueError, KeyError)

SET_OPTION_HELP = "override a config value, e.g. --set trainer.max_epochs=5 (repeatable; values are YAML)"


def report(exc: BaseException) -> None:
    """Print a user error (message and hint) on stderr."""
    msg = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    hint = getattr(exc, "hint", None)
    if hint:
        typer.secho(f"hint: {hint}", fg=typer.colors.YELLOW, err=True)


def fail(message: str | BaseException, hint: str | None = None) -> None:
    """Stop a command with a user error (exit code 2)."""
    exc = message if isinstance(message, BaseException) else ConfigError(message, hint=hint)
    report(exc)
    raise typer.Exit(code=2)


class CompscopeGroup(TyperGroup):
    """The root command group: user errors from any sub-command become ``error:``/``hint:`` and exit code 2."""

    def invoke(self, ctx):  # noqa: D401 - click API
        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            report(exc)
            raise typer.Exit(code=2) from None


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["trainer.max_epochs=5", "model.init_args.r_max=4.5"]`` -> ``{"trainer.max_epochs": 5, ...}``."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: write KEY=VALUE, e.g. --set trainer.max_epochs=5")
        try:
            out[key.strip()] = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML ({err})") from None
    return out


_SPEC_KEYS = {"class_path", "init_args", "preset"}


def apply_overrides(cfg: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Set dotted keys in a config (a new dict). In a ``class_path``/``preset``/``init_args`` section,
    ``model.r_max`` means ``model.init_args.r_max``."""
    cfg = copy.deepcopy(cfg)
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        node = cfg
        for i, part in enumerate(parts[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {dotted}: {'.'.join(parts[:i + 1])} is a value, not a section")
            node = nxt
            rest = parts[i + 1:]
            if _SPEC_KEYS & set(node) and rest[0] not in _SPEC_KEYS:
                node = node.setdefault("init_args", {})
        node[parts[-1]] = value
    return cfg


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> dict[str, Any]:
    """A YAML config (or ``{}`` without one) with ``--set`` overrides applied."""
    cfg: dict[str, Any] = {}
    if path is not None:
        from compscope.train import load_yaml

        cfg = load_yaml(path)
    return apply_overrides(cfg, parse_overrides(overrides))
