"""Equivariant building blocks on e3nn: radial bases, interactions, products, gates, readouts, forces, EGNN, and
the shared continuous-flow core (ODE solve, divergences, flow-matching paths, equivariant alignment)."""

from ._cnf import (
    align_permutation,
    divergence_exact,
    divergence_hutchinson,
    equivariant_ot,
    integrate_divergence,
    kabsch,
    ode_solve,
    quadrature_nodes,
    straight_path,
    time_grid,
)
from ._egnn_trace import egnn_update_divergence
from ._forces import forces_and_stress, potential_outputs, prepare_strain
from ._fused import edge_pairs, fused_available
from ._gate import Gate, gate_for
from ._geometry import edge_geometry, edges_within, geometry_supported
from ._interaction import Interaction
from ._linear import ElementLinear
from ._mlp import ScalarMLP
from ._product import ProductBasis
from ._radial import BesselBasis, PolynomialCutoff, RadialEmbedding
from ._radial_table import DEFAULT_INTERVALS as DEFAULT_TABLE_INTERVALS
from ._radial_table import RadialTable
from ._readout import LinearReadout, MLPReadout
from ._scatter import scatter_sum
from ._tensor_product import ChannelwiseTensorProduct
from .egnn import EGNN, EGNNLayer

__all__ = [
    "EGNN", "EGNNLayer",
    "ChannelwiseTensorProduct", "ElementLinear", "Gate", "ScalarMLP",
    "forces_and_stress", "potential_outputs", "prepare_strain", "gate_for", "Interaction",
    "ProductBasis", "BesselBasis", "PolynomialCutoff", "RadialEmbedding", "LinearReadout", "MLPReadout",
    "scatter_sum", "edge_pairs", "fused_available", "RadialTable", "DEFAULT_TABLE_INTERVALS", "edge_geometry",
    "edges_within", "geometry_supported",
    "time_grid", "ode_solve", "divergence_exact", "divergence_hutchinson", "straight_path", "kabsch",
    "align_permutation", "equivariant_ot", "integrate_divergence", "quadrature_nodes",
    "egnn_update_divergence",
]
