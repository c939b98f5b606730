"""Neural PDE solvers (MP-PDE, FNO) next to strong classical solvers, on the MP-PDE benchmark.

Public API: equations and data (:func:`get_equation`, :func:`generate`, :func:`load_split`), classical solvers
(:func:`weno_solve`, :func:`spectral_solve`, :func:`wave_exact`, :class:`ChebyshevWaveSolver`).
Neural solvers, training, metrics and plots need torch/lightning/matplotlib and are imported lazily on first
access (``compscope.pde.MPPDE``), so data generation and the classical solvers stay light.
"""

import importlib

from ._accelerators import ACCELERATORS
from ._equations import (
    COARSENINGS,
    EQUATIONS,
    CombinedEquation,
    ResolutionError,
    UnknownEquationError,
    WaveEquation,
    cell_key,
    chebyshev_grid,
    check_resolution,
    coarsen,
    forcing_cell_average,
    get_equation,
    parse_cell_key,
    periodic_grid,
)
from ._generate import SPLITS, cache_dir, generate, load_split, solve_reference
from ._spectral import points_to_cell_average, spectral_solve
from ._wave import ChebyshevWaveSolver, cheb_diff_matrix, gaussian_pulse, wave_eigen, wave_exact
from ._weno import weno_solve, weno_solve_batch

__all__ = [
    "ACCELERATORS", "COARSENINGS", "EQUATIONS", "CombinedEquation", "WaveEquation", "ResolutionError",
    "UnknownEquationError", "cell_key", "parse_cell_key", "check_resolution", "coarsen", "chebyshev_grid",
    "forcing_cell_average", "get_equation", "periodic_grid",
    "SPLITS", "cache_dir", "generate", "load_split", "solve_reference", "points_to_cell_average",
    "spectral_solve", "ChebyshevWaveSolver", "cheb_diff_matrix", "gaussian_pulse", "wave_eigen", "wave_exact",
    "weno_solve", "weno_solve_batch", "RolloutDivergedError", "accumulated_error", "per_step_error", "rollout",
    "time_per_trajectory", "trajectory_errors", "FNO1d", "MODEL_REGISTRY", "EQUATION_ARGS", "MPPDE", "build_model",
    "model_spec", "count_parameters", "mesh_edges", "plot_error_vs_runtime", "plot_rollout", "PDEDataModule",
    "RepeatedTrajectories", "NeuralPDESolver", "EquationMismatchError", "evaluate", "load_solver", "SECTIONS",
    "TRAINER_DEFAULTS", "RESUME_SAFE", "resolve_config", "build", "train", "training_time",
    "LearnedFluxFV", "StencilNet", "FaceNet", "Forcing", "NonFiniteInputError", "consistency_basis", "LearnedFVData",
    "LearnedFVSolver", "load_coarse", "resolve_fv_config", "train_learned_fv", "load_learned_fv", "FastLearnedFV",
    "LearnedSpectral", "FastLearnedSpectral", "ClosureNet", "interpolant_cell_averages", "cell_averages_to_points",
    "spectral_forcing_points", "spectral_split", "LearnedSpectralData", "LearnedSpectralSolver",
    "train_learned_spectral", "load_learned_spectral", "resolve_spectral_config",
]

_LAZY = {
    "_metrics": ["RolloutDivergedError", "accumulated_error", "per_step_error", "rollout", "time_per_trajectory",
                 "trajectory_errors"],
    "_models": ["FNO1d", "MODEL_REGISTRY", "EQUATION_ARGS", "MPPDE", "build_model", "model_spec", "count_parameters",
                "mesh_edges"],
    "_plots": ["plot_error_vs_runtime", "plot_rollout"],
    "_data": ["PDEDataModule", "RepeatedTrajectories"],
    "_module": ["NeuralPDESolver"],
    "_evaluate": ["EquationMismatchError", "evaluate", "load_solver"],
    "_learned_fv": ["LearnedFluxFV", "StencilNet", "FaceNet", "Forcing", "NonFiniteInputError", "consistency_basis"],
    "_learned_fv_train": ["LearnedFVData", "LearnedFVSolver", "load_coarse", "resolve_fv_config", "train_learned_fv",
                          "load_learned_fv"],
    "_learned_fv_fast": ["FastLearnedFV"],
    "_learned_spectral": ["LearnedSpectral", "FastLearnedSpectral", "ClosureNet", "interpolant_cell_averages",
                          "cell_averages_to_points", "spectral_forcing_points"],
    "_learned_spectral_train": ["spectral_split", "LearnedSpectralData", "LearnedSpectralSolver",
                                "train_learned_spectral", "load_learned_spectral", "resolve_spectral_config"],
    "_train": ["SECTIONS", "TRAINER_DEFAULTS", "RESUME_SAFE", "resolve_config", "build", "train", "training_time"],
}
_WHERE = {name: mod for mod, names in _LAZY.items() for name in names}


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
