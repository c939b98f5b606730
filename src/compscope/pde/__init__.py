"""Neural PDE solvers (MP-PDE, FNO) next to strong classical solvers, on the MP-PDE benchmark.

Public API: equations and data (:func:`get_equation`, :func:`generate`, :func:`load_split`), classical solvers
(:func:`weno_solve`, :func:`spectral_solve`, :func:`wave_exact`, :class:`ChebyshevWaveSolver`).
Neural solvers, training and metrics live in the modules re-exported below.
"""

from ._equations import (
    EQUATIONS,
    CombinedEquation,
    ResolutionError,
    UnknownEquationError,
    WaveEquation,
    chebyshev_grid,
    check_resolution,
    forcing_cell_average,
    get_equation,
    periodic_grid,
)
from ._generate import SPLITS, cache_dir, generate, load_split, solve_reference
from ._metrics import (
    RolloutDivergedError,
    accumulated_error,
    per_step_error,
    rollout,
    time_per_trajectory,
)
from ._models import MODEL_REGISTRY, MPPDE, FNO1d, build_model, mesh_edges
from ._plots import plot_error_vs_runtime, plot_rollout
from ._spectral import points_to_cell_average, spectral_solve
from ._train import EquationMismatchError, NeuralPDESolver, evaluate, load_solver, train
from ._wave import ChebyshevWaveSolver, cheb_diff_matrix, gaussian_pulse, wave_eigen, wave_exact
from ._weno import weno_solve, weno_solve_batch

__all__ = [
    "EQUATIONS", "CombinedEquation", "WaveEquation", "ResolutionError", "UnknownEquationError",
    "check_resolution", "chebyshev_grid", "forcing_cell_average", "get_equation", "periodic_grid",
    "SPLITS", "cache_dir", "generate", "load_split", "solve_reference", "points_to_cell_average",
    "spectral_solve", "ChebyshevWaveSolver", "cheb_diff_matrix", "gaussian_pulse", "wave_eigen", "wave_exact",
    "weno_solve", "weno_solve_batch", "RolloutDivergedError", "accumulated_error", "per_step_error", "rollout",
    "time_per_trajectory", "FNO1d", "MODEL_REGISTRY", "MPPDE", "build_model", "mesh_edges",
    "plot_error_vs_runtime", "plot_rollout", "EquationMismatchError", "NeuralPDESolver", "evaluate",
    "load_solver", "train",
]
