"""The ML force-field task: fit to DFT energies/forces, evaluate, ASE calculator, export, committees.

Training runs on the one trainer, :func:`compscope.train.fit`; this package brings the task (:class:`ForceFieldTask`:
model, loss, optimiser, LR schedule), the data module (:class:`ForceFieldData`) and the end of a run (export, error
table, plots). Model files (:func:`load_model`, :func:`save_package`, :func:`export_model`, :class:`CompiledPotential`)
live in :mod:`compscope.models.artifacts` and the ASE :class:`Calculator` in :mod:`compscope.integrations.ase`; both
are re-exported here, where the first releases (and the README) have them.
"""

from compscope.integrations.ase import Calculator
from compscope.models.artifacts import CompiledPotential, compile_model, export_model, load_model, save_package

from ._committee import evaluate_models, train_committee
from ._data import ForceFieldData, isolated_atom_e0
from ._evaluate import error_table, predict, print_error_table
from ._fit import MODEL_PRESETS, build, fit, resolve_config
from ._task import ForceFieldTask, NonFiniteLossError

__all__ = [
    "Calculator", "ForceFieldData", "isolated_atom_e0", "error_table", "predict", "print_error_table",
    "CompiledPotential", "compile_model", "export_model", "load_model", "save_package", "MODEL_PRESETS", "build",
    "fit", "resolve_config", "ForceFieldTask", "NonFiniteLossError", "evaluate_models", "train_committee",
]
