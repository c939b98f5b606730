"""The ML force-field task: fit to DFT energies/forces, evaluate, ASE calculator, export, committees."""

from ._calculator import Calculator
from ._data import ForceFieldData
from ._evaluate import error_table, predict, print_error_table
from ._export import CompiledPotential, compile_model, load_model, save_package
from ._fit import fit, resolve_config, trainer_options
from ._task import ForceFieldTask, NonFiniteLossError

__all__ = [
    "Calculator", "ForceFieldData", "error_table", "predict", "print_error_table", "CompiledPotential",
    "compile_model", "load_model", "save_package", "fit", "resolve_config", "trainer_options", "ForceFieldTask",
    "NonFiniteLossError",
]
