"""``compscope train CONFIG.yaml``: build data, model and Lightning trainer from one YAML and fit.

Config sections (each one's keys are constructor arguments; unknown keys are errors):

- ``model``: :func:`compscope.models.build_model` arguments (``name``, ``preset``, constructor arguments).
- ``data``: :class:`ForceFieldData` arguments (``cutoff`` defaults to ``model.r_max``).
- ``task``: :class:`ForceFieldTask` arguments except ``model``.
- ``trainer``: :func:`trainer_options` arguments.
- top level: ``seed``, ``dtype`` (``float32``/``float64``), ``out`` (run directory).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml

from compscope.data import datasets
from compscope.models import MODEL_CLASSES, PRESETS
from compscope.train import ConfigError, check_arguments, learning_curves, load_yaml, parity_plot

from ._data import ForceFieldData
from ._export import code_versions, save_package
from ._task import ForceFieldTask

log = logging.getLogger(__name__)

TOP_LEVEL = {"seed", "dtype", "out", "model", "data", "task", "trainer"}
UNSAFE_TO_CHANGE = ("model", "data", "dtype", "seed")


def trainer_options(
    max_epochs: int = 100,
    max_time_minutes: float | None = None,
    gradient_clip_val: float = 10.0,
    early_stopping_patience: int = 30,
    devices: int = 1,
    strategy: str = "auto",
    accelerator: str = "cpu",
    num_threads: int | None = None,
    progress_bar: bool = True,
    log_every_n_steps: int = 10,
) -> dict[str, Any]:
    """The ``trainer`` section: Lightning Trainer settings compscope exposes (DDP via ``strategy: ddp``)."""
    return dict(locals())


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


def resolve_config(cfg: dict[str, Any], base: Path = Path(".")) -> dict[str, Any]:
    """Validate every section against its constructor and fill defaults; returns a new dict."""
    cfg = copy.deepcopy(cfg)
    unknown = sorted(set(cfg) - TOP_LEVEL)
    if unknown:
        raise ConfigError(f"unknown top-level key(s) {unknown}. Allowed: {sorted(TOP_LEVEL)}")
    for section in ("model", "data"):
        if section not in cfg:
            raise ConfigError(f"config needs a '{section}' section")
    model = cfg["model"]
    name = model.get("name", "EquivariantPotential")
    if name not in MODEL_CLASSES:
        raise ConfigError(f"model.name {name!r} unknown; registered: {sorted(MODEL_CLASSES)}")
    if model.get("preset") is not None and model["preset"] not in PRESETS:
        raise ConfigError(f"model.preset {model['preset']!r} unknown; available: {sorted(PRESETS)}")
    check_arguments("model", MODEL_CLASSES[name], {k: v for k, v in model.items() if k not in ("name", "preset")},
                    provided={"species"})
    data = cfg["data"]
    check_arguments("data", ForceFieldData, data)
    r_max = model.get("r_max", 5.0)
    data.setdefault("cutoff", r_max)
    if data["cutoff"] < r_max:
        raise ConfigError(f"data.cutoff ({data['cutoff']}) must be >= model.r_max ({r_max})")
    for key in ("train", "valid", "test"):
        data[key] = resolve_path(data.get(key), base)
    if data.get("e0", "least_squares") != "least_squares":
        data["e0"] = resolve_path(data["e0"], base)
    task = cfg.setdefault("task", {})
    check_arguments("task", ForceFieldTask, task, provided={"model"})
    if "model" in task:
        raise ConfigError("task.model is set from the 'model' section; remove it from 'task'")
    trainer = cfg.setdefault("trainer", {})
    check_arguments("trainer", trainer_options, trainer)
    cfg["trainer"] = trainer_options(**trainer)
    cfg.setdefault("seed", 0)
    cfg.setdefault("dtype", "float64")
    if cfg["dtype"] not in ("float32", "float64"):
        raise ConfigError(f"dtype must be 'float32' or 'float64', got {cfg['dtype']!r}")
    cfg.setdefault("out", "runs/forcefield")
    return cfg


class MetricsSink(L.Callback):
    """Writes one JSON line and one CSV row of metrics per epoch (rank 0), with wall time and LR."""

    def __init__(self, out: Path):
        self.jsonl = out / "metrics.jsonl"
        self.csv = out / "metrics.csv"
        # wall time is cumulative over resumed segments
        self.t0 = time.time() - elapsed_seconds(out)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.global_rank != 0:
            return
        row = {"epoch": trainer.current_epoch, "step": trainer.global_step, "time_s": round(time.time() - self.t0, 2)}
        for k, v in trainer.callback_metrics.items():
            row[k] = float(v)
        if trainer.optimizers:
            row["lr"] = trainer.optimizers[0].param_groups[0]["lr"]
        with open(self.jsonl, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        write_csv(self.jsonl, self.csv)


def write_csv(jsonl: Path, csv_path: Path) -> None:
    """metrics.jsonl -> metrics.csv with one column per key ever seen (first-seen order), so every row lines up
    with the header even when an epoch adds a metric (e.g. the training loss appears after the first epoch)."""
    import csv

    rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    cols: dict[str, None] = {}
    for r in rows:
        cols.update(dict.fromkeys(r))
    with open(csv_path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(cols))
        w.writeheader()
        w.writerows(rows)


def elapsed_seconds(out: Path) -> float:
    """Training wall time already spent in a run directory (last ``time_s`` in metrics.jsonl)."""
    path = Path(out) / "metrics.jsonl"
    if not path.exists():
        return 0.0
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    return float(json.loads(lines[-1]).get("time_s", 0.0)) if lines else 0.0


def _check_resume(out: Path, cfg: dict[str, Any]) -> None:
    saved_path = out / "config.yaml"
    if not saved_path.exists():
        return
    saved = yaml.safe_load(saved_path.read_text())
    changed = [k for k in UNSAFE_TO_CHANGE if saved.get(k) != cfg.get(k)]
    if changed:
        raise ConfigError(
            f"--resume: the config's {changed} differ from the run in {out} (saved config.yaml); resuming would "
            "mix incompatible states. Start a new run (another 'out') or restore those sections."
        )


def build(cfg: dict[str, Any]) -> tuple[ForceFieldData, ForceFieldTask]:
    """Data module and task for a resolved config (model statistics filled from the training data)."""
    L.seed_everything(cfg["seed"], workers=True, verbose=False)
    dtype = getattr(torch, cfg["dtype"])
    data = ForceFieldData(**cfg["data"])
    stats = data.statistics()
    model_kwargs = dict(cfg["model"])
    model_kwargs.setdefault("species", stats.species)
    model_kwargs.setdefault("atomic_energies", stats.atomic_energies)
    model_kwargs.setdefault("avg_num_neighbors", stats.avg_num_neighbors)
    model_kwargs.setdefault("scale", stats.force_rms)
    task_kwargs = dict(cfg.get("task", {}))
    task_kwargs.setdefault("max_epochs_hint", cfg["trainer"]["max_epochs"])
    if cfg["trainer"].get("max_time_minutes"):
        task_kwargs.setdefault("time_budget_s", 60.0 * cfg["trainer"]["max_time_minutes"])
    with _default_dtype(dtype):
        task = ForceFieldTask(model=model_kwargs, **task_kwargs)
    task = task.to(dtype)
    return data, task


class _default_dtype:
    def __init__(self, dtype):
        self.dtype = dtype

    def __enter__(self):
        self.old = torch.get_default_dtype()
        torch.set_default_dtype(self.dtype)

    def __exit__(self, *exc):
        torch.set_default_dtype(self.old)


def fit(config: dict[str, Any] | str | Path, resume: bool = False, base: Path | None = None) -> Path:
    """Train from a config (dict or YAML path); returns the run directory.

    The run directory holds ``config.yaml`` (resolved), ``checkpoints/last.ckpt`` (every epoch),
    ``metrics.jsonl``/``metrics.csv``, and at the end ``model.pt`` (package), ``parity.png``,
    ``learning_curves.png`` and ``errors.json``.
    """
    if not isinstance(config, dict):
        base = Path(config).resolve().parent
        config = load_yaml(config)
    cfg = resolve_config(config, base or Path("."))
    out = Path(cfg["out"])
    ckpt_dir = out / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    if resume:
        if not last.exists():
            raise FileNotFoundError(f"--resume: no checkpoint at {last}; start without --resume")
        _check_resume(out, cfg)
    elif last.exists():
        raise ConfigError(f"{out} already holds a run; use --resume to continue it or choose another 'out'")
    out.mkdir(parents=True, exist_ok=True)
    tr = cfg["trainer"]
    if tr["num_threads"]:
        torch.set_num_threads(tr["num_threads"])
    data, task = build(cfg)
    is_rank0 = int(os.environ.get("LOCAL_RANK", "0")) == 0 and int(os.environ.get("NODE_RANK", "0")) == 0
    if is_rank0:
        (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        (out / "versions.json").write_text(json.dumps(code_versions(), indent=2))
    callbacks: list[L.Callback] = [
        L.pytorch.callbacks.ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val_loss", save_last=True,
                                            save_top_k=1, every_n_epochs=1),
        MetricsSink(out),
    ]
    if tr["early_stopping_patience"]:
        callbacks.append(L.pytorch.callbacks.EarlyStopping("val_loss", patience=tr["early_stopping_patience"]))
    if tr["progress_bar"]:
        callbacks.append(L.pytorch.callbacks.RichProgressBar())
    max_time = None
    if tr["max_time_minutes"]:
        # the budget covers all segments of a resumed run: Lightning's Timer restores the training time already
        # spent from the checkpoint, so it gets the whole budget (subtracting here would count that time twice)
        max_time = {"seconds": max(1.0, 60 * tr["max_time_minutes"])}
    trainer = L.Trainer(
        max_epochs=tr["max_epochs"],
        max_time=max_time,
        gradient_clip_val=tr["gradient_clip_val"],
        devices=tr["devices"],
        strategy=tr["strategy"],
        accelerator=tr["accelerator"],
        precision="64-true" if cfg["dtype"] == "float64" else "32-true",
        callbacks=callbacks,
        logger=False,
        enable_progress_bar=tr["progress_bar"],
        enable_model_summary=False,
        inference_mode=False,
        log_every_n_steps=tr["log_every_n_steps"],
        num_sanity_val_steps=0,
        use_distributed_sampler=True,
    )
    trainer.fit(task, datamodule=data, ckpt_path=str(last) if resume else None)
    if trainer.global_rank == 0:
        finalize(out, task, data, cfg)
    return out


def finalize(out: Path, task: ForceFieldTask, data: ForceFieldData, cfg: dict[str, Any]) -> dict[str, Any]:
    """Export the EMA model, write the error table, parity plot and learning curves."""
    from ._evaluate import error_table, predict

    model = task.eval_model.eval()
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
    kwargs = dict(task.hparams["model"])
    save_package(model, kwargs, out / "model.pt", config=cfg, metrics=table)
    parity_plot(out / "parity.png", panels)
    if (out / "metrics.jsonl").exists():
        learning_curves(out / "learning_curves.png", out / "metrics.jsonl",
                        ["train_loss", "val_loss", "val_e_mae_meV_atom", "val_f_mae_meV_A"])
    (out / "errors.json").write_text(json.dumps(table, indent=2))
    return table

