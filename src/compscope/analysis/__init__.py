"""Analysis of sampled trajectories, shared by sampling, md and cg: ESS, basins, Ramachandran and TICA metrics.

A shared layer below the task packages (beside ``train``, ``integrations`` and ``testing``): numpy/torch in,
numbers out, no task imports. :mod:`._ess` (ESS and autocorrelation time: Timewarp's first-zero estimator and
batch means), :mod:`._dihedrals` (dihedral angles, alanine dipeptide's phi/psi atoms), :mod:`._basins` (basins on
the Ramachandran torus, indicators, time to first visit, entries, populations), :mod:`._ramachandran` (64 x 64
histograms and JS divergence), :mod:`._profiles` (1D free-energy profiles and their error in kT) and
:mod:`._tica` (TICA through ``deeptime``, imported on first use).
"""

from ._basins import (
    ALANINE_DIPEPTIDE_BASINS,
    ALANINE_DIPEPTIDE_SLOW_BASIN,
    Basin,
    basin_entries,
    basin_indicator,
    basin_labels,
    basin_populations,
    first_visit_times,
    in_interval,
)
from ._dihedrals import ALANINE_DIPEPTIDE_PHI, ALANINE_DIPEPTIDE_PSI, backbone_dihedrals, dihedral_angles
from ._errors import AnalysisInputError
from ._ess import (
    ar1_autocorrelation_time,
    autocorrelation,
    effective_sample_size,
    ess_batch_means,
    ess_first_zero,
    ess_two_state,
    integrated_autocorrelation_time,
)
from ._profiles import free_energy_profile_1d, profile_error
from ._ramachandran import js_divergence, ramachandran_histogram, ramachandran_js
from ._tica import TICAModel, dihedral_features, distance_features, fit_tica

__all__ = ["AnalysisInputError", "autocorrelation", "integrated_autocorrelation_time", "effective_sample_size",
           "ess_first_zero", "ess_batch_means", "ess_two_state", "ar1_autocorrelation_time", "dihedral_angles",
           "backbone_dihedrals",
           "ALANINE_DIPEPTIDE_PHI", "ALANINE_DIPEPTIDE_PSI", "Basin", "ALANINE_DIPEPTIDE_BASINS",
           "ALANINE_DIPEPTIDE_SLOW_BASIN", "in_interval", "basin_indicator", "basin_labels", "first_visit_times",
           "basin_entries", "basin_populations", "ramachandran_histogram", "js_divergence", "ramachandran_js",
           "free_energy_profile_1d", "profile_error", "TICAModel", "fit_tica", "dihedral_features",
           "distance_features"]
