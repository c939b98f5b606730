"""The test kit: physics assertions for every potential and a kill-and-resume harness for every resumable command.

Physics: equivariance, forces and stress as derivatives, smooth cutoff, batching, separability, isolated atoms
(:func:`check_potential` runs them all). Resume: :func:`kill_and_resume` and :func:`kill_and_resume_training`.
"""

from ._physics import (
    FLOAT_TOLERANCE,
    assert_batch_consistent,
    assert_e3_equivariant,
    assert_e3_equivariant_pbc,
    assert_forces_are_gradients,
    assert_isolated_atoms,
    assert_permutation_equivariant,
    assert_separable,
    assert_smooth_cutoff,
    assert_stress_is_strain_derivative,
    assert_supercell_extensive,
    check_potential,
    convergence_order,
    random_rotation,
    transform_graph,
)
from ._resume import (
    KillResumeResult,
    RunRecord,
    all_of,
    assert_same_metrics,
    assert_same_weights,
    checkpoint_step_at_least,
    cli_command,
    file_appears,
    kill_and_resume,
    kill_and_resume_training,
    output_matches,
    rows_at_least,
)

__all__ = [
    "FLOAT_TOLERANCE", "assert_batch_consistent", "assert_e3_equivariant", "assert_e3_equivariant_pbc",
    "assert_forces_are_gradients", "assert_isolated_atoms",
    "assert_permutation_equivariant", "assert_separable", "assert_smooth_cutoff",
    "assert_stress_is_strain_derivative", "assert_supercell_extensive", "check_potential", "convergence_order",
    "random_rotation", "transform_graph",
    "KillResumeResult", "RunRecord", "all_of", "assert_same_metrics", "assert_same_weights", "checkpoint_step_at_least",
    "cli_command", "file_appears", "kill_and_resume", "kill_and_resume_training", "output_matches", "rows_at_least",
]
