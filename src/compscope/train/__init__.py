"""The one trainer every task uses: instantiate(class_path), EMA, resume guard, time budget, metrics, run folder.

A task brings its ``LightningModule`` and ``DataModule``; everything else is here:

- :func:`instantiate` builds any config section (``class_path``/``init_args`` or a preset), arguments checked
  against the constructor;
- :class:`RunDir` is the run folder (config.yaml, versions.json, checkpoints/, metrics, model.pt, plots) and
  refuses a fresh run over an old one; :func:`check_unchanged` is the resume guard for every resumable job;
- :func:`fit` trains with :class:`EMA`, :class:`TimeBudget`, :class:`MetricsSink`, :class:`RNGState`,
  checkpoints and early stopping from a :class:`TrainerConfig` (the ``trainer`` section);
- :func:`step_loader` (:class:`StepBatches`) shuffles training batches as a function of the step, so a resumed
  run continues the batch sequence of an uninterrupted one;
- :func:`complete_spec` writes out a config section with every constructor default (what ``config.yaml`` stores
  and ``--resume`` compares).
"""

from compscope.errors import ConfigError
from compscope.versions import code_versions

from ._batches import StepBatches, StepLoader, step_loader
from ._callbacks import EMA, MetricsSink, RNGState, TimeBudget, read_metrics, write_csv
from ._config import accepted_arguments, check_arguments, load_yaml, resolve_section
from ._instantiate import complete_spec, instantiate, normalize_spec, resolve_class
from ._plots import learning_curves, parity_plot
from ._run import RunDir, check_unchanged, is_rank_zero, run_folder
from ._seeding import EpochSeed, EpochSeededSampler, epoch_seed
from ._trainer import FitResult, TrainerConfig, find_callback, fit

__all__ = ["ConfigError", "accepted_arguments", "check_arguments", "load_yaml", "resolve_section", "instantiate",
           "normalize_spec", "resolve_class", "EMA", "TimeBudget", "MetricsSink", "read_metrics", "write_csv", "RunDir",
           "check_unchanged", "code_versions", "is_rank_zero", "TrainerConfig", "FitResult", "fit",
           "find_callback", "learning_curves", "parity_plot", "RNGState", "StepBatches", "StepLoader", "step_loader",
           "complete_spec", "EpochSeed", "EpochSeededSampler", "epoch_seed", "run_folder"]
