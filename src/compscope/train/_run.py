"""The run folder every long job writes, and the one resume guard.

Layout (``RunDir``)::

    <out>/config.yaml        the resolved config (every default filled in)
    <out>/versions.json      compscope, torch, lightning, e3nn, numpy, python
    <out>/checkpoints/       last.ckpt (resume) and best.ckpt (Lightning checkpoints)
    <out>/metrics.jsonl/.csv one row per validation
    <out>/model.pt           the exported model package (share/deploy)
    <out>/*.png              plots

:func:`check_unchanged` is the guard every resumable job uses (training, MD, reference data, index builds):
``--resume`` with settings that must not change raises :class:`~compscope.errors.ResumeError` naming each
changed key with its saved and new value.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, MutableMapping
from pathlib import Path
from typing import Any

import yaml

from compscope.errors import ConfigError, ResumeError, RunExistsError
from compscope.versions import code_versions

__all__ = ["RunDir", "check_unchanged", "is_rank_zero", "run_folder"]

_MISSING = object()


def run_folder(cfg: MutableMapping[str, Any], out: str | os.PathLike | None = None, *,
               example: str = "runs/NAME") -> str:
    """The run folder of a training job: ``out`` (the CLI's ``--out``) over the config's ``out`` key, written back
    into ``cfg["out"]`` so that the saved config names it; a :class:`~compscope.errors.ConfigError` when neither
    gives one (``example`` is the folder the hint suggests)."""
    where = out if out is not None else cfg.get("out")
    if where is None:
        raise ConfigError("no run folder: give out: in the config or --out", hint=f"--out {example}")
    cfg["out"] = str(where)
    return cfg["out"]


def check_unchanged(saved: Mapping[str, Any], current: Mapping[str, Any], *, unsafe: Iterable[str] | None = None,
                    safe: Iterable[str] = (), defaults: Mapping[str, Any] | None = None,
                    where: str = "the run", hint: str | None = None, action: str = "--resume") -> None:
    """Refuse to resume when settings that must not change did.

    Args:
        saved: settings stored by the first run.
        current: settings of this call.
        unsafe: keys that must be equal (default: every key of either mapping except ``safe``).
        safe: keys that may change (budgets, thread counts, progress bars).
        defaults: value of a key the saved settings lack (an option added after the run began).
        where: the run's location, for the message.
        hint: what to do instead (default: restore the saved values or start a new run elsewhere).
        action: what was refused, for the message (e.g. "adding to the data set").

    Raises:
        ResumeError: naming each changed key with its saved and new value.
    """
    defaults = defaults or {}
    keys = set(unsafe) if unsafe is not None else (set(saved) | set(current))
    keys -= set(safe)
    changed = []
    for k in sorted(keys):
        old = saved.get(k, defaults.get(k, _MISSING))
        new = current.get(k, defaults.get(k, _MISSING))
        if _normal(old) != _normal(new):
            changed.append(f"{k}: {_show(old)} -> {_show(new)}")
    if changed:
        raise ResumeError(
            f"{action} with changed settings of {where}: " + "; ".join(changed),
            hint=hint or "restore the saved values, or start a new run in another output folder",
        )


def _normal(v: Any) -> Any:
    # tuples vs lists and paths vs strings must not count as a change after a YAML/JSON round trip
    return json.loads(json.dumps(v, default=str)) if v is not _MISSING else v


def _show(v: Any) -> str:
    return "(unset)" if v is _MISSING else repr(v)


def is_rank_zero() -> bool:
    """True in the process that writes files (rank 0 of a DDP job, or a single process)."""
    return all(int(os.environ.get(k, "0")) == 0 for k in ("LOCAL_RANK", "NODE_RANK", "RANK"))


class RunDir:
    """A run folder: where a job's config, versions, checkpoints, metrics, model and plots live.

    Args:
        out: the folder.
        resume: continue the run there (``--resume``): its saved config must agree with ``config`` on every key
            but ``safe``; without ``resume`` a folder that already holds a run is refused.
        config: the resolved config of this call (written as ``config.yaml`` on rank 0).
        safe: top-level keys (or ``section.key`` paths) allowed to change on resume.
        defaults: values of keys a saved config may lack (options added after the run began), nested like the
            config.
    """

    def __init__(self, out: str | Path, resume: bool = False, config: Mapping[str, Any] | None = None,
                 safe: Iterable[str] = (), defaults: Mapping[str, Any] | None = None) -> None:
        self.path = Path(out)
        self.defaults = dict(defaults or {})
        self.resume = resume
        self.config = dict(config or {})
        self.safe = tuple(safe)

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.ckpt"

    @property
    def config_file(self) -> Path:
        return self.path / "config.yaml"

    @property
    def model(self) -> Path:
        return self.path / "model.pt"

    def file(self, name: str) -> Path:
        return self.path / name

    def saved_config(self) -> dict[str, Any]:
        if not self.config_file.exists():
            return {}
        return yaml.safe_load(self.config_file.read_text()) or {}

    def start(self) -> RunDir:
        """Check resume/fresh, create the folder, write config.yaml and versions.json (rank 0). Returns self."""
        if self.resume:
            if not self.last.exists():
                raise ResumeError(f"--resume: nothing to resume in {self.path} (no {self.last.name})",
                                  hint="run once without --resume first, or point --out at the run's folder")
            check_unchanged(_flatten(self.saved_config()), _flatten(self.config),
                            safe=_expand_safe(self.safe, self.config, self.saved_config()),
                            defaults=_flatten(self._defaults()), where=str(self.path))
        elif self.last.exists() and is_rank_zero():
            raise RunExistsError(f"{self.path} already holds a run",
                                 hint="pass --resume to continue it, or choose another --out")
        if is_rank_zero():
            self.checkpoints.mkdir(parents=True, exist_ok=True)
            self.config_file.write_text(yaml.safe_dump(_plain(self.config), sort_keys=False))
            (self.path / "versions.json").write_text(json.dumps(code_versions(), indent=2))
        return self

    def _defaults(self) -> dict[str, Any]:
        """``defaults`` over the trainer options added to compscope after a run may have begun."""
        from ._trainer import TrainerConfig

        trainer = {**TrainerConfig.ADDED_OPTIONS, **(self.defaults.get("trainer") or {})}
        return {**self.defaults, "trainer": trainer} if "trainer" in self.config else dict(self.defaults)

    def ckpt_path(self) -> str | None:
        """What to pass as Lightning's ``ckpt_path``."""
        return str(self.last) if self.resume else None


def _flatten(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _expand_safe(safe: Iterable[str], *cfgs: Mapping[str, Any]) -> set[str]:
    keys = set()
    for c in cfgs:
        keys |= set(_flatten(c))
    out = set()
    for s in safe:
        out |= {k for k in keys if k == s or k.startswith(s + ".")}
    return out


def _plain(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, Path):
        return str(v)
    return v
