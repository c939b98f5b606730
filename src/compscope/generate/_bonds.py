"""EDM's distance-based bond-order rule for QM9 (Hoogeboom et al. 2022, ``qm9/bond_analyze.py``).

Typical bond lengths (pm) come from the wiredchemist / chemistry-reference tables that G-SchNet and EDM use;
a pair is bonded with order k when its distance is below ``length_k + margin_k`` (and below every lower
order's threshold). The margins 10 / 5 / 3 pm were tuned by EDM to maximise the stability of real QM9.
Only the QM9 elements (H, C, N, O, F) are tabulated here.
"""

from __future__ import annotations

import numpy as np

ELEMENTS = ("H", "C", "N", "O", "F")
MARGINS_PM = (10.0, 5.0, 3.0)
# valences that make an atom "stable" (EDM's allowed_bonds)
VALENCE = {"H": 1, "C": 4, "N": 3, "O": 2, "F": 1}

# single-bond lengths in pm, symmetric, rows/cols in ELEMENTS order
_SINGLE = np.array([
    #  H    C    N    O    F
    [74, 109, 101, 96, 92],   # H
    [109, 154, 147, 143, 135],  # C
    [101, 147, 145, 140, 136],  # N
    [96, 143, 140, 148, 142],  # O
    [92, 135, 136, 142, 142],  # F
], dtype=np.float64)
# double and triple bonds exist only for these pairs
_DOUBLE = {("C", "C"): 134, ("C", "N"): 129, ("C", "O"): 120, ("N", "N"): 125, ("N", "O"): 121, ("O", "O"): 121}
_TRIPLE = {("C", "C"): 120, ("C", "N"): 116, ("C", "O"): 113, ("N", "N"): 110}


def _table(pairs: dict[tuple[str, str], float]) -> np.ndarray:
    t = np.full((len(ELEMENTS), len(ELEMENTS)), -np.inf)
    for (a, b), v in pairs.items():
        i, j = ELEMENTS.index(a), ELEMENTS.index(b)
        t[i, j] = t[j, i] = v
    return t


def thresholds_pm() -> np.ndarray:
    """``(3, 5, 5)`` distance thresholds in pm for bond orders 1, 2, 3 (``-inf`` where the order cannot occur).

    Compare ``100 * distance_in_angstrom < threshold`` exactly as EDM does.
    """
    tables = [_SINGLE, _table(_DOUBLE), _table(_TRIPLE)]
    return np.stack([t + m for t, m in zip(tables, MARGINS_PM)])


def valence_array() -> np.ndarray:
    """``(5,)`` allowed valence per element index."""
    return np.array([VALENCE[e] for e in ELEMENTS], dtype=np.int64)
