"""``compscope forcefield train CONFIG``: resolve one YAML config, train with :func:`compscope.train.fit`, export.

Config (sections of ``class_path``/``init_args``; ``init_args`` are constructor arguments, checked before
anything runs)::

    seed: 0                   # model init, data split and shuffle (data.init_args.seed defaults to it)
    dtype: float64            # or float32
    out: runs/ethanol         # the run folder (compscope.train.RunDir)
    model:                    # a preset of compscope.models.PRESETS with overrides, or a class_path
      preset: small
      init_args: {r_max: 5.0}
    data:                     # class_path defaults to compscope.forcefield.ForceFieldData
      init_args: {train: data://rmd17/ethanol_train.xyz, n_valid: 50}
    task:                     # class_path defaults to compscope.forcefield.ForceFieldTask
      init_args: {lr: 0.01}
    trainer: {max_epochs: 100, ema_decay: 0.99}   # compscope.train.TrainerConfig

The cutoff is set once, as the model's ``r_max`` (its constructor default when omitted); the data's neighbour-list
``cutoff`` defaults to it. ``species``, ``atomic_energies``, ``avg_num_neighbors``, ``scale`` and ``shift`` of the
model are filled from the training data unless the config sets them.
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch

from compscope import train
from compscope.data import datasets
from compscope.errors import ConfigError
from compscope.models import MODEL_CLASSES, PRESETS
from compscope.models.artifacts import save_package
from compscope.train import (
    RunDir,
    TrainerConfig,
    check_arguments,
    learning_curves,
    load_yaml,
    normalize_spec,
    parity_plot,
    resolve_class,
)

from ._data import ForceFieldData
from ._task import ForceFieldTask, NonFiniteLossError

log = logging.getLogger(__name__)

SECTIONS = ("model", "data", "task", "trainer")
TOP_LEVEL = ("seed", "dtype", "out", *SECTIONS)
DTYPES = ("float32", "float64")
# the model presets as instantiate() specs (compscope.models.PRESETS holds their constructor arguments)
MODEL_PRESETS = {name: {"class_path": "compscope.models.EquivariantPotential", "init_args": dict(args)}
                 for name, args in PRESETS.items()}
DEFAULT_CLASS = {"data": "compscope.forcefield.ForceFieldData", "task": "compscope.forcefield.ForceFieldTask"}
# model arguments measured on the training data unless the config sets them
FROM_DATA = ("species", "atomic_energies", "avg_num_neighbors", "scale", "shift")
# the force-field defaults of the trainer section where they differ from TrainerConfig's
TRAINER_DEFAULTS = {"gradient_clip_val": 10.0, "early_stopping_patience": 30, "ema_decay": 0.99}
# what may change on --resume: the run folder's location and the trainer's budgets, hardware and display
RESUME_SAFE = ("out", *(f"trainer.{k}" for k in TrainerConfig.RESUME_SAFE))


def resolve_path(value: str | None, base: Path) -> str | None:
    """``data://name/file`` -> the data directory; relative paths -> relative to the config file, then CWD."""
    if value is None:
        return None
    if value.startswith("data://"):
        name, _, file = value[len("data://"):].partition("/")
        return str(datasets.dataset_path(name, file))
    p = Path(value).expanduser()
    if not p.is_absolute() and (base / p).exists():
        return str(base / p)
    return str(p)


def _defaults(cls: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Constructor defaults (tuples as lists, as they read back from YAML)."""
    out = {}
    for name, p in inspect.signature(cls).parameters.items():
        if p.default is not p.empty and name not in skip and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            out[name] = list(p.default) if isinstance(p.default, tuple) else p.default
    return out


def _section(cfg: Mapping[str, Any], name: str) -> dict[str, Any]:
    """A section as ``{class_path, init_args}`` (its default class_path filled), every default written out."""
    spec = cfg.get(name)
    if spec is None:
        spec = {}
    if isinstance(spec, Mapping) and "class_path" not in spec and "preset" not in spec and name in DEFAULT_CLASS:
        spec = {"class_path": DEFAULT_CLASS[name], **spec}
    out = normalize_spec(spec, MODEL_PRESETS if name == "model" else None, section=name)
    cls = resolve_class(out["class_path"], "compscope.models" if name == "model" else None, section=name)
    out["init_args"] = {**_defaults(cls, skip=FROM_DATA), **out["init_args"]}
    if isinstance(spec, Mapping) and spec.get("preset"):
        out = {"preset": spec["preset"], **out}
    return out


def resolve_config(cfg: Mapping[str, Any], base: Path = Path(".")) -> dict[str, Any]:
    """Check every section against its constructor and write every default out; returns a new dict (what the run
    folder's ``config.yaml`` holds and ``--resume`` compares with).

    Raises:
        ConfigError: an unknown key or section, a missing required argument, an unknown class or preset, a
            cutoff below the model's, a ``cosine_time`` schedule without a time budget.
    """
    cfg = copy.deepcopy(dict(cfg))
    unknown = sorted(set(cfg) - set(TOP_LEVEL))
    if unknown:
        raise ConfigError(f"unknown top-level key(s) {unknown}", hint=f"allowed: {list(TOP_LEVEL)}")
    for name in ("model", "data"):
        if name not in cfg:
            raise ConfigError(f"the config needs a '{name}' section",
                              hint="see configs/forcefield/ethanol.yaml for a commented example")
    cfg.setdefault("seed", 0)
    cfg.setdefault("dtype", "float64")
    cfg.setdefault("out", "runs/forcefield")
    if cfg["dtype"] not in DTYPES:
        raise ConfigError(f"dtype={cfg['dtype']!r} unknown", hint=f"use one of {list(DTYPES)}")

    model = _section(cfg, "model")
    model_cls = resolve_class(model["class_path"], "compscope.models", "model")
    check_arguments("model", model_cls, model["init_args"], provided=set(FROM_DATA))
    r_max = model["init_args"].get("r_max")

    data = _section(cfg, "data")
    args = data["init_args"]
    if args.get("cutoff") is None:
        if r_max is None:
            raise ConfigError("data.init_args.cutoff is not set and the model has no r_max to take it from",
                              hint="set data.init_args.cutoff (Å)")
        args["cutoff"] = r_max
    if r_max is not None and args["cutoff"] < r_max:
        raise ConfigError(f"data.init_args.cutoff ({args['cutoff']}) is below the model's r_max ({r_max})",
                          hint="omit data.init_args.cutoff: it defaults to model.init_args.r_max")
    if "seed" not in (cfg["data"].get("init_args") or {}):
        args["seed"] = cfg["seed"]
    for key in ("train", "valid", "test"):
        args[key] = resolve_path(args.get(key), base)
    if args.get("e0", "least_squares") != "least_squares":
        args["e0"] = resolve_path(args["e0"], base)
    check_arguments("data", resolve_class(data["class_path"], section="data"), args)

    task = _section(cfg, "task")
    if "model" in task["init_args"]:
        raise ConfigError("task.init_args.model is set from the 'model' section", hint="remove it from 'task'")
    check_arguments("task", resolve_class(task["class_path"], section="task"), task["init_args"],
                    provided={"model"})

    trainer = dict(cfg.get("trainer") or {})
    check_arguments("trainer", TrainerConfig, trainer)
    trainer = TrainerConfig(**{**TRAINER_DEFAULTS, **trainer}).as_dict()
    if task["init_args"].get("scheduler") == "cosine_time" and not trainer["max_time_minutes"]:
        raise ConfigError("task scheduler 'cosine_time' anneals the LR over the wall-clock budget, and there is none",
                          hint="set trainer.max_time_minutes")
    return {"seed": cfg["seed"], "dtype": cfg["dtype"], "out": str(cfg["out"]), "model": model, "data": data,
            "task": task, "trainer": trainer}


def model_kwargs(model_section: Mapping[str, Any], data: ForceFieldData) -> dict[str, Any]:
    """:func:`compscope.models.build_model` arguments of a resolved ``model`` section: its registered ``name``, its
    ``init_args`` and the data-derived arguments it does not set (what a model package stores)."""
    cls = resolve_class(model_section["class_path"], "compscope.models", "model")
    name = next((n for n, c in MODEL_CLASSES.items() if c is cls), cls.__name__)
    stats = data.statistics()
    measured = {"species": stats.species, "atomic_energies": stats.atomic_energies,
                "avg_num_neighbors": stats.avg_num_neighbors, "scale": stats.force_rms,
                "shift": stats.mean_interaction_energy}
    return {"name": name, **measured, **model_section["init_args"]}


def build(cfg: Mapping[str, Any]) -> tuple[ForceFieldData, ForceFieldTask]:
    """Data module and task of a resolved config (model statistics from the training data), seeded."""
    L.seed_everything(cfg["seed"], workers=True, verbose=False)
    data = train.instantiate(cfg["data"], section="data")
    kwargs = model_kwargs(cfg["model"], data)
    dtype = getattr(torch, cfg["dtype"])
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        task = train.instantiate(cfg["task"], section="task", model=kwargs)
    finally:
        torch.set_default_dtype(old)
    return data, task.to(dtype)


def fit(config: Mapping[str, Any] | str | Path, resume: bool = False, base: Path | None = None) -> Path:
    """Train from a config (dict or YAML path) into its run folder; returns the folder.

    Resolve the config -> :class:`~compscope.train.RunDir` ``.start()`` (refuses a fresh run over an old one, and a
    ``resume`` whose model, data, task, dtype or seed changed) -> :func:`compscope.train.fit` -> :func:`finalize`.
    The folder holds ``config.yaml``, ``versions.json``, ``checkpoints/{last,best}.ckpt``,
    ``metrics.jsonl``/``.csv`` and at the end ``model.pt``, ``parity.png``, ``learning_curves.png`` and
    ``errors.json``.
    """
    if not isinstance(config, Mapping):
        base = Path(config).resolve().parent
        config = load_yaml(config)
    cfg = resolve_config(config, base or Path("."))
    run = RunDir(cfg["out"], resume=resume, config=cfg, safe=RESUME_SAFE).start()
    data, task = build(cfg)
    try:
        result = train.fit(task, data, run, TrainerConfig(**cfg["trainer"]))
    except NonFiniteLossError as err:
        err.hint = f"{err.hint}; last good checkpoint: {run.last}"
        raise
    if result.trainer.is_global_zero:
        finalize(run.path, task, data, cfg)
    return run.path


def finalize(out: Path, task: ForceFieldTask, data: ForceFieldData, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Export the trained (EMA) model as ``model.pt``; write ``errors.json``, the parity plot and learning curves."""
    from ._evaluate import error_table, predict

    model = task.model.eval()
    sets = {"valid": data.valid_set}
    if data.test_set:
        sets["test"] = data.test_set
    table: dict[str, Any] = {}
    panels = []
    for name, graphs in sets.items():
        pred = predict(model, graphs)
        table[name] = error_table(pred)
        panels.append((f"{name} energy / atom", pred["ref_e_per_atom"], pred["pred_e_per_atom"], "eV/atom"))
        panels.append((f"{name} forces", pred["ref_forces"], pred["pred_forces"], "eV/Å"))
    save_package(model, out / "model.pt", model_kwargs=task.hparams["model"], config=dict(cfg), metrics=table)
    parity_plot(out / "parity.png", panels)
    if (out / "metrics.jsonl").exists():
        learning_curves(out / "learning_curves.png", out / "metrics.jsonl",
                        ["train_loss", "val_loss", "val_e_mae_meV_atom", "val_f_mae_meV_A"])
    (out / "errors.json").write_text(json.dumps(table, indent=2))
    return table
