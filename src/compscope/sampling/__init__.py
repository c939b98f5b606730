"""Boltzmann sampling: targets (energies in kT), reference MCMC (MALA, HMC), Boltzmann-generator flows.

Layers: :mod:`._targets` (DW4, LJn, Gaussian mixtures, any compscope potential), :mod:`._mcmc` (exact
Metropolis-corrected samplers and a resumable runner), :mod:`._reference` (cached reference samples and their
comparison with the literature's splits), :mod:`._openmm_target` (OpenMM systems such as alanine dipeptide as
targets, dihedral angles), :mod:`._ala2_reference` (the alanine-dipeptide replica-exchange reference),
:mod:`._biased_reference` (an independent one: MD under a frozen metadynamics bias, exactly reweighted),
:mod:`._mbar` (MBAR reweighting of all replicas to one temperature), :mod:`._ramachandran` (alanine-dipeptide
mode coverage: basin populations, Ramachandran histograms and JS divergence), :mod:`._icflow` (the
internal-coordinate coupling flow: Z-matrix with exact Jacobian, zuko circular splines),
:mod:`._estimators` (importance weights, ESS, reweighted observables and profiles, energy Wasserstein distances),
:mod:`._flow` (the E(n)-equivariant continuous flow with exact log-density), :mod:`._largestep`
(Metropolis-Hastings with learned-kernel, flow or Gaussian proposals, batched; issue #21), :mod:`._chain` (its
resumable chain file), :mod:`._transition` (learned transition kernels and their MD training pairs; trained by
:mod:`._transition_train`), :mod:`._torsion` (torsion-space kernels: pivot moves of phi/psi drawn from a learned
torus density, exact MH; trained by :mod:`._torsion_train`), :mod:`._compare` (chain vs MD: ESS/s, basins,
Ramachandran JS), :mod:`._draw`
(loading a trained flow, drawing with log q and weights, reports) and
:mod:`._train` (training on :mod:`compscope.train`; imported on first use, it loads Lightning). Imports only
``data``, ``nn``, ``models``, ``train``, ``integrations`` and ``analysis`` (OpenMM and openmmtools load on first
use).
"""

from ._ala2_reference import (
    ALA2_REFERENCE_DEFAULTS,
    ala2_reference_dir,
    assemble_ala2_reference,
    basin_population,
    check_integrator,
    make_ala2_reference,
    read_replica_exchange_run,
    run_replica_exchange,
)
from ._biased_reference import (
    ALA2_BIASED_DEFAULTS,
    TorsionBias,
    ala2_biased_reference,
    ala2_biased_reference_dir,
    assemble_ala2_biased_reference,
    load_bias,
    make_ala2_biased_reference,
    run_metadynamics,
)
from ._chain import CHAIN_FORMAT, ChainResult, read_chain, run_chain, sample_chain
from ._compare import compare_runs, load_dihedral_series
from ._draw import SAMPLE_FORMAT, draw_samples, load_flow, read_samples, report_samples, write_samples
from ._errors import SamplingInputError
from ._estimators import (
    ImportanceWeights,
    energy_histogram,
    free_energy_difference,
    free_energy_profile,
    importance_weights,
    kish_ess,
    reweighted_mean,
    wasserstein_1d,
)
from ._flow import (
    EquivariantCNF,
    EquivariantVectorField,
    flow_integration_error,
    fold_chirality,
    quadrature_nodes,
)
from ._icflow import ALA2_ZMATRIX, ICFlow, ZMatrix, load_ic_flow, train_ic_flow
from ._largestep import (
    ConditionalFlowProposal,
    GaussianKernel,
    IndependenceProposal,
    LargeStepMH,
    LargeStepState,
    Proposal,
)
from ._mbar import mbar_expectation, mbar_histogram, mbar_log_weights
from ._mcmc import HMC, MALA, SAMPLERS, ChainState, MCMCResult, get_sampler, run_mcmc
from ._openmm_target import (
    ALA2_BASIN,
    ALA2_PHI,
    ALA2_PSI,
    MOLAR_GAS_CONSTANT_KJ,
    OpenMMEnergyError,
    OpenMMTarget,
    alanine_dipeptide,
    dihedral_angles,
)
from ._ramachandran import ala2_reference_angles, ramachandran_report
from ._reference import (
    REFERENCE_DEFAULTS,
    compare_energies,
    initial_positions,
    load_split,
    make_reference,
    read_reference,
    reference_dir,
)
from ._targets import (
    TARGETS,
    DoubleWell4,
    ForceFieldTarget,
    GaussianMixture,
    LennardJones,
    Target,
    check_positions,
    energy_and_force,
    get_target,
)
from ._torsion import TorsionProposal, TorusKernel, pivot_groups, set_dihedrals
from ._transition import ConditionalCouplingFlow, load_transition, transition_pairs

__all__ = ["SamplingInputError", "MALA", "HMC", "ChainState", "MCMCResult", "run_mcmc", "get_sampler", "SAMPLERS",
           "Target", "DoubleWell4", "LennardJones", "GaussianMixture", "ForceFieldTarget",
           "energy_and_force", "check_positions", "get_target", "TARGETS",
           "make_reference", "read_reference", "reference_dir", "initial_positions", "compare_energies", "load_split",
           "REFERENCE_DEFAULTS", "EquivariantCNF", "EquivariantVectorField", "FlowDataModule", "FlowModule",
           "train_flow", "load_positions", "OpenMMTarget", "OpenMMEnergyError", "alanine_dipeptide",
           "dihedral_angles", "ALA2_PHI", "ALA2_PSI", "ALA2_BASIN", "make_ala2_reference", "assemble_ala2_reference",
           "basin_population", "ala2_reference_dir", "ALA2_REFERENCE_DEFAULTS", "run_replica_exchange",
           "read_replica_exchange_run", "check_integrator",
           "MOLAR_GAS_CONSTANT_KJ", "TorsionBias", "ALA2_BIASED_DEFAULTS", "ala2_biased_reference",
           "ala2_biased_reference_dir",
           "assemble_ala2_biased_reference", "load_bias", "make_ala2_biased_reference", "run_metadynamics",
           "ImportanceWeights", "importance_weights", "kish_ess", "reweighted_mean", "energy_histogram",
           "wasserstein_1d", "free_energy_profile", "free_energy_difference",
           "mbar_log_weights", "mbar_expectation", "mbar_histogram",
           "fold_chirality", "flow_integration_error", "quadrature_nodes", "ZMatrix", "ICFlow", "ALA2_ZMATRIX",
           "train_ic_flow", "load_ic_flow", "ramachandran_report", "ala2_reference_angles",
           "load_flow", "draw_samples", "write_samples", "read_samples", "report_samples", "SAMPLE_FORMAT",
           "Proposal", "GaussianKernel", "IndependenceProposal", "ConditionalFlowProposal", "LargeStepMH",
           "LargeStepState", "run_chain", "read_chain", "ChainResult", "CHAIN_FORMAT", "ConditionalCouplingFlow",
           "load_transition", "transition_pairs", "TransitionModule", "train_transition", "sample_chain",
           "compare_runs", "load_dihedral_series", "TorusKernel", "TorsionProposal", "pivot_groups",
           "set_dihedrals", "TorusKernelModule", "torsion_pairs", "train_torsion_kernel", "load_torsion_kernel",
           "TORSION_FORMAT", "train_kernel"]

_LAZY = {"FlowDataModule": "FlowDataModule", "FlowModule": "FlowModule", "train_flow": "train",
         "load_positions": "load_positions"}


def __getattr__(name: str):
    # the training pieces import Lightning: only when asked for, so targets and MCMC import fast
    if name in ("TransitionModule", "train_transition"):
        from . import _transition_train

        return getattr(_transition_train, name)
    if name in ("TorusKernelModule", "torsion_pairs", "train_torsion_kernel", "load_torsion_kernel", "TORSION_FORMAT",
                "train_kernel"):
        from . import _torsion_train

        return getattr(_torsion_train, name)
    if name in _LAZY:
        from . import _train

        return getattr(_train, _LAZY[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
