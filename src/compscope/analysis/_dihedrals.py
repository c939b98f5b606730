"""Dihedral angles from Cartesian positions, and the backbone dihedrals of alanine dipeptide (ACE-ALA-NME).

The one implementation every package uses (sampling, md, cg): numpy in, numpy out; torch in, torch out (and
differentiable). The atom indices refer to the committed ``alanine-dipeptide.pdb``
(:mod:`compscope.integrations.openmm_systems`, whose ``ALANINE_PHI``/``ALANINE_PSI`` are the same numbers; a test
keeps them equal: this layer may not import ``integrations``).
"""

from __future__ import annotations

import numpy as np
import torch

from ._errors import AnalysisInputError

__all__ = ["dihedral_angles", "backbone_dihedrals", "ALANINE_DIPEPTIDE_PHI", "ALANINE_DIPEPTIDE_PSI"]

#: atom indices (0-based, PDB order) of phi = C(ACE)-N-CA-C and psi = N-CA-C-N(NME) in alanine dipeptide
ALANINE_DIPEPTIDE_PHI = (1, 6, 7, 9)
ALANINE_DIPEPTIDE_PSI = (6, 7, 9, 16)


def dihedral_angles(x: torch.Tensor | np.ndarray, indices) -> torch.Tensor | np.ndarray:
    """Dihedral angles in (-pi, pi] of atoms ``indices = (i, j, k, l)`` (or several, shape (m, 4)).

    Args:
        x: positions (batch, n_atoms, 3) or (n_atoms, 3), torch or numpy (the result has the same type).
        indices: one quadruple, or (m, 4).

    Returns:
        (batch,) for one quadruple, (batch, m) for several (no batch axis for a single frame). IUPAC sign
        convention: looking along j -> k, the angle from the i-j bond to the k-l bond, clockwise positive.

    Examples:
        >>> import numpy as np
        >>> x = np.array([[1.0, 0, 0], [0, 0, 0], [0, 1, 0], [0, 1, 1]])  # i-j along x, k-l along z
        >>> round(float(np.degrees(dihedral_angles(x, (0, 1, 2, 3)))), 6)
        -90.0
    """
    is_np = isinstance(x, np.ndarray)
    t = torch.as_tensor(x)
    single = t.ndim == 2
    if single:
        t = t.unsqueeze(0)
    if t.ndim != 3 or t.shape[-1] != 3:
        raise AnalysisInputError(f"positions have shape {tuple(torch.as_tensor(x).shape)}; need (batch, n_atoms, 3)",
                                 hint="pass Cartesian positions of molecules")
    idx = torch.as_tensor(indices, dtype=torch.long)
    one = idx.ndim == 1
    idx = idx.reshape(-1, 4)
    if idx.numel() and (idx.min() < 0 or idx.max() >= t.shape[1]):
        raise AnalysisInputError(f"dihedral atom indices {idx.tolist()} out of range for {t.shape[1]} atoms",
                                 hint="use 0-based atom indices")
    p0, p1, p2, p3 = (t[:, idx[:, c]] for c in range(4))  # (batch, m, 3)
    b0, b1, b2 = p0 - p1, p2 - p1, p3 - p2
    b1n = b1 / b1.norm(dim=-1, keepdim=True)
    v = b0 - (b0 * b1n).sum(-1, keepdim=True) * b1n
    w = b2 - (b2 * b1n).sum(-1, keepdim=True) * b1n
    ang = torch.atan2((torch.cross(b1n, v, dim=-1) * w).sum(-1), (v * w).sum(-1))  # (batch, m)
    if one:
        ang = ang[:, 0]
    if single:
        ang = ang[0]
    return ang.numpy() if is_np else ang


def backbone_dihedrals(x: torch.Tensor | np.ndarray, phi=ALANINE_DIPEPTIDE_PHI, psi=ALANINE_DIPEPTIDE_PSI):
    """``(phi, psi)`` in radians of frames ``x`` (batch, n_atoms, 3); alanine dipeptide's atoms by default."""
    ang = dihedral_angles(x, (tuple(phi), tuple(psi)))
    return ang[..., 0], ang[..., 1]
