"""Training generators with Lightning: EMA weights, time budgets that add up across resumes, checkpoints."""

from __future__ import annotations

import copy
import datetime as dt
import importlib
import logging
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
import yaml

from ._data import QM9DataModule
from ._model import MoleculeGenerator

log = logging.getLogger(__name__)


def build(spec: dict):
    """Instantiate ``{"class_path": "pkg.mod.Class", "init_args": {...}}`` (a short name looks in this package)."""
    if not isinstance(spec, dict) or "class_path" not in spec:
        raise ValueError(f"expected a mapping with 'class_path' (and optional 'init_args'), got {spec!r}")
    path = spec["class_path"]
    mod, _, name = path.rpartition(".")
    module = importlib.import_module(mod or "compscope.generate")
    try:
        cls = getattr(module, name)
    except AttributeError:
        raise ValueError(f"class {path!r} not found; e.g. compscope.generate.EDM or "
                         "compscope.generate.FlowMatching") from None
    try:
        return cls(**(spec.get("init_args") or {}))
    except TypeError as e:
        raise ValueError(f"bad init_args for {path}: {e}") from None


class GeneratorModule(L.LightningModule):
    """Lightning wrapper: ``model.loss`` as training loss, an EMA copy (EDM: decay 0.999) used for validation
    and export.

    Args:
        model: a :class:`MoleculeGenerator` (EDM or FlowMatching).
        model_config: its ``class_path``/``init_args`` spec, stored in checkpoints to rebuild it.
        lr: Adam learning rate (EDM: 1e-4, AMSGrad, weight decay 1e-12).
        ema_decay: EMA decay; 0 disables EMA.
        clip_grad: gradient-norm clip.
    """

    def __init__(self, model: MoleculeGenerator, model_config: dict, lr: float = 1e-4, ema_decay: float = 0.999,
                 clip_grad: float = 1.0):
        super().__init__()
        self.save_hyperparameters(ignore=["model"])
        self.model = model
        self.ema = copy.deepcopy(model) if ema_decay > 0 else None
        if self.ema is not None:
            self.ema.requires_grad_(False)

    def training_step(self, batch, batch_idx):
        loss = self.model.loss(batch)
        self.log("train_loss", loss, prog_bar=True, batch_size=batch.num_graphs)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self.ema is None:
            return
        d = self.hparams.ema_decay
        with torch.no_grad():
            for pe, pm in zip(self.ema.parameters(), self.model.parameters()):
                pe.lerp_(pm, 1 - d)
            for be, bm in zip(self.ema.buffers(), self.model.buffers()):
                be.copy_(bm)

    def validation_step(self, batch, batch_idx):
        net = self.ema if self.ema is not None else self.model
        with torch.random.fork_rng(devices=[]):  # same noise every validation, training RNG untouched
            torch.manual_seed(batch_idx)
            loss = net.loss(batch)
        self.log("val_loss", loss, prog_bar=True, batch_size=batch.num_graphs)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.model.parameters(), lr=self.hparams.lr, amsgrad=True, weight_decay=1e-12)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        self.clip_gradients(optimizer, gradient_clip_val=self.hparams.clip_grad, gradient_clip_algorithm="norm")

    def export(self) -> MoleculeGenerator:
        return self.ema if self.ema is not None else self.model


@dataclass
class RunConfig:
    """The ``run`` section of a training config.

    Args:
        out: run directory (checkpoints, metrics.csv, config.yaml, model.pt).
        max_time: total training wall-clock budget ``DD:HH:MM:SS``, summed over resumed runs.
        max_steps: step limit (-1: none).
        threads: torch CPU threads (1 is fastest on a shared 2-core machine).
        seed: global seed.
        checkpoint_minutes: write ``last.ckpt`` this often (a killed run loses at most this much).
        val_every_steps: validation interval in steps.
        accelerator: ``cpu``, ``gpu`` or ``auto``.
    """

    out: str = "runs/generate"
    max_time: str | None = "00:01:00:00"
    max_steps: int = -1
    threads: int = 1
    seed: int = 0
    checkpoint_minutes: float = 5.0
    val_every_steps: int = 1000
    accelerator: str = "cpu"


_UNSAFE = ("model", "data")  # sections that must not change when resuming


def load_config(path: str | Path) -> dict:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"config {p} not found; see configs/generate/*.yaml for examples")
    cfg = yaml.safe_load(p.read_text())
    if not isinstance(cfg, dict) or "model" not in cfg:
        raise ValueError(f"{p}: a generate config needs a 'model' section (class_path + init_args); "
                         "see configs/generate/edm_qm9.yaml")
    unknown = set(cfg) - {"model", "data", "module", "run"}
    if unknown:
        raise ValueError(f"{p}: unknown sections {sorted(unknown)}; allowed: model, data, module, run")
    return cfg


def build_run(cfg: dict) -> tuple[GeneratorModule, QM9DataModule, RunConfig]:
    """Build (without training) the Lightning module, data module and run options of a config."""
    model = build(cfg["model"])
    data_args = dict(cfg.get("data") or {})
    data_args.setdefault("condition", model.condition)
    if data_args["condition"] != model.condition:
        raise ValueError(f"data.condition={data_args['condition']!r} but the model conditions on "
                         f"{model.condition!r}: make them equal")
    dm = QM9DataModule(**data_args)
    module = GeneratorModule(model, cfg["model"], **(cfg.get("module") or {}))
    return module, dm, RunConfig(**(cfg.get("run") or {}))


def train(config: str | Path | dict, resume: bool = False, overrides: dict | None = None) -> Path:
    """Train a generator from a config; returns the path of the exported ``model.pt``.

    With ``resume`` the run continues from ``<out>/checkpoints/last.ckpt``; the model and data sections must
    equal the first run's (``<out>/config.yaml``), the budget (``run.max_time``) may grow.
    """
    cfg = load_config(config) if not isinstance(config, dict) else copy.deepcopy(config)
    for k, v in (overrides or {}).items():
        cfg.setdefault("run", {})[k] = v
    module, dm, run = build_run(cfg)
    torch.set_num_threads(run.threads)
    L.seed_everything(run.seed, workers=True)
    out = Path(run.out)
    ckpt = out / "checkpoints" / "last.ckpt"
    saved = out / "config.yaml"
    if resume:
        if not ckpt.exists():
            raise FileNotFoundError(f"nothing to resume: {ckpt} does not exist; run without --resume first")
        old = yaml.safe_load(saved.read_text())
        for sec in _UNSAFE:
            if old.get(sec) != cfg.get(sec):
                raise ValueError(f"refusing to resume: section {sec!r} differs from the first run's {saved} "
                                 f"(was {old.get(sec)!r}); start a new run directory (run.out) instead")
    elif ckpt.exists():
        raise FileExistsError(f"{ckpt} exists: pass --resume to continue that run, or choose another run.out")
    out.mkdir(parents=True, exist_ok=True)
    saved.write_text(yaml.safe_dump(cfg, sort_keys=False))

    n_atoms, prop = dm.train_statistics()
    module.model.set_statistics(n_atoms, prop)
    if module.ema is not None:
        module.ema.set_statistics(n_atoms, prop)
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    trainer = L.Trainer(
        accelerator=run.accelerator, devices=1, max_time=run.max_time, max_steps=run.max_steps, max_epochs=-1,
        default_root_dir=out, logger=CSVLogger(out, name="logs"), log_every_n_steps=50,
        callbacks=[ModelCheckpoint(dirpath=out / "checkpoints", save_last=True, save_top_k=0,
                                   train_time_interval=dt.timedelta(minutes=run.checkpoint_minutes))],
        val_check_interval=run.val_every_steps, check_val_every_n_epoch=None, enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, datamodule=dm, ckpt_path=str(ckpt) if resume else None)
    trainer.save_checkpoint(ckpt)
    return export(module, out / "model.pt", trainer)


def export(module: GeneratorModule, path: Path, trainer: L.Trainer | None = None) -> Path:
    """Write the EMA generator as ``model.pt``: config, weights, versions and training progress."""
    import compscope

    info = {}
    if trainer is not None:
        timer = next((c for c in trainer.callbacks if type(c).__name__ == "Timer"), None)
        info = {"global_step": trainer.global_step, "epoch": trainer.current_epoch,
                "train_seconds": timer.time_elapsed("train") if timer else None}
    torch.save({"kind": "compscope.generate model", "config": module.hparams.model_config,
                "state_dict": module.export().state_dict(), "train_info": info,
                "versions": {"compscope": getattr(compscope, "__version__", "?"), "torch": torch.__version__}},
               path)
    return path


def load_model(path: str | Path, map_location="cpu") -> MoleculeGenerator:
    """Load a generator from ``model.pt`` (export) or a Lightning ``.ckpt`` (EMA weights)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"model file {p} not found: pass the model.pt (or a .ckpt) written by "
                                "`compscope generate train`")
    try:
        d = torch.load(p, map_location=map_location, weights_only=False)
    except Exception as e:  # noqa: BLE001 - anything unreadable gets the same advice
        raise ValueError(f"{p} is not a torch file ({e}); pass model.pt from `compscope generate train`") from None
    if isinstance(d, dict) and d.get("kind") == "compscope.generate model":
        model = build(d["config"])
        model.load_state_dict(d["state_dict"])
    elif isinstance(d, dict) and "hyper_parameters" in d and "model_config" in d["hyper_parameters"]:
        model = build(d["hyper_parameters"]["model_config"])
        sd = d["state_dict"]
        prefix = "ema." if any(k.startswith("ema.") for k in sd) else "model."
        model.load_state_dict({k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)})
    else:
        raise ValueError(f"{p} is not a compscope generate model; pass model.pt from `compscope generate train`")
    return model.eval()
