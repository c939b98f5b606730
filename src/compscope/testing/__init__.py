"""The physics test kit: reusable assertions for every model (equivariance, gradients, smoothness, batching)."""

from ._physics import (
    FLOAT_TOLERANCE,
    assert_batch_consistent,
    assert_e3_equivariant,
    assert_e3_equivariant_pbc,
    assert_forces_are_gradients,
    assert_permutation_equivariant,
    assert_separable,
    assert_smooth_cutoff,
    assert_stress_is_strain_derivative,
    check_potential,
    convergence_order,
    random_rotation,
    transform_graph,
)

__all__ = [
    "FLOAT_TOLERANCE", "assert_batch_consistent", "assert_e3_equivariant", "assert_e3_equivariant_pbc",
    "assert_forces_are_gradients", "assert_permutation_equivariant", "assert_separable", "assert_smooth_cutoff",
    "assert_stress_is_strain_derivative", "check_potential", "convergence_order", "random_rotation", "transform_graph",
]
