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
from ._spectral import points_to_cell_average, spectral_solve
from ._wave import ChebyshevWaveSolver, cheb_diff_matrix, gaussian_pulse, wave_eigen, wave_exact
from ._weno import weno_solve, weno_solve_batch

__all__ = [
    "EQUATIONS", "CombinedEquation", "WaveEquation", "ResolutionError", "UnknownEquationError",
    "check_resolution", "chebyshev_grid", "forcing_cell_average", "get_equation", "periodic_grid",
    "SPLITS", "cache_dir", "generate", "load_split", "solve_reference", "points_to_cell_average",
    "spectral_solve", "ChebyshevWaveSolver", "cheb_diff_matrix", "gaussian_pulse", "wave_eigen", "wave_exact",
    "weno_solve", "weno_solve_batch",
]
