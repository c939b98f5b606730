"""Slow collective variables by TICA (time-lagged independent component analysis) through ``deeptime``.

TICA finds the linear combinations of features with maximal autocorrelation at a lag ``tau`` (Pérez-Hernández et
al., J. Chem. Phys. 139, 015102 (2013)); TIC0 is the slowest. The estimation is deeptime's (``deeptime``, on PyPI,
the ``analysis`` extra), with kinetic-map scaling; this module only builds features and keeps a fitted model with
its lag and feature names. Features of a molecule: :func:`dihedral_features` (cos/sin of dihedrals, periodic-safe)
or :func:`distance_features` (pairwise distances of chosen atoms, rotation-invariant).

Fit on the *reference* trajectories and project every sampler's frames with the same model, so that TIC0 means the
same coordinate for all of them. The sign of each component is fixed so that its correlation with the first
feature is non-negative (deeptime leaves it arbitrary).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ._dihedrals import dihedral_angles
from ._errors import AnalysisInputError

__all__ = ["TICAModel", "fit_tica", "dihedral_features", "distance_features"]


def dihedral_features(positions, dihedrals) -> np.ndarray:
    """``[cos a_1, sin a_1, cos a_2, ...]`` (batch, 2 m) for dihedrals ``(m, 4)`` of frames (batch, n_atoms, 3)."""
    ang = np.asarray(dihedral_angles(np.asarray(positions, dtype=np.float64), np.asarray(dihedrals).reshape(-1, 4)))
    return np.stack([np.cos(ang), np.sin(ang)], -1).reshape(ang.shape[0], -1)


def distance_features(positions, atoms=None) -> np.ndarray:
    """Pairwise distances (batch, k (k - 1) / 2) between ``atoms`` (default all) of frames (batch, n_atoms, 3)."""
    x = np.asarray(positions, dtype=np.float64)
    if x.ndim != 3 or x.shape[-1] != 3:
        raise AnalysisInputError(f"positions have shape {x.shape}; need (batch, n_atoms, 3)", hint="Cartesian frames")
    if atoms is not None:
        x = x[:, list(atoms)]
    i, j = np.triu_indices(x.shape[1], 1)
    return np.linalg.norm(x[:, i] - x[:, j], axis=-1)


def _trajs(features) -> list[np.ndarray]:
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().double().numpy()
    if isinstance(features, np.ndarray):
        features = [features] if features.ndim == 2 else list(features)
    out = [np.asarray(f, dtype=np.float64) for f in features]
    if not out or any(f.ndim != 2 for f in out) or len({f.shape[1] for f in out}) != 1:
        raise AnalysisInputError("TICA features must be trajectories of shape (n_frames, n_features), all with the "
                                 "same number of features", hint="pass one (T, d) array per trajectory")
    if any(not np.isfinite(f).all() for f in out):
        raise AnalysisInputError("TICA features have NaN/inf values", hint="drop the frames that failed")
    return out


@dataclass
class TICAModel:
    """A fitted TICA model: ``transform`` projects features onto the slow components.

    Attributes:
        lagtime: the lag in frames.
        dim: number of components kept.
        timescales: implied timescales of the kept components, in frames (``-lag / log |lambda|``).
        singular_values: their time-lagged autocorrelations ``lambda``.
    """

    lagtime: int
    dim: int
    timescales: np.ndarray
    singular_values: np.ndarray
    _model: object = field(repr=False)
    _sign: np.ndarray = field(repr=False)

    def transform(self, features) -> np.ndarray:
        """Projections (n_frames, dim) of (n_frames, n_features), or a list of them for a list of trajectories."""
        if isinstance(features, (list, tuple)):
            return [self.transform(f) for f in features]
        f = _trajs(features)[0]
        return self._model.transform(f)[:, : self.dim] * self._sign


def fit_tica(features, lagtime: int, dim: int = 2) -> TICAModel:
    """Fit TICA (deeptime, kinetic-map scaling) on trajectories of features.

    Args:
        features: one (T, d) array, a (n_traj, T, d) array or a list of (T_i, d) arrays (lagged pairs never cross
            trajectories).
        lagtime: lag in frames (>= 1, shorter than every trajectory).
        dim: components kept.
    """
    try:
        from deeptime.decomposition import TICA
    except ImportError as e:  # pragma: no cover - deeptime is in the analysis extra
        raise AnalysisInputError("TICA needs the deeptime package", hint="pip install 'compscope[analysis]'") from e
    trajs = _trajs(features)
    lagtime = int(lagtime)
    if lagtime < 1 or any(len(t) <= lagtime for t in trajs):
        raise AnalysisInputError(f"lag {lagtime} frames for trajectories of {min(len(t) for t in trajs)} frames",
                                 hint="use 1 <= lagtime < the shortest trajectory's length")
    dim = int(min(dim, trajs[0].shape[1]))
    model = TICA(lagtime=lagtime, dim=dim, scaling="kinetic_map").fit(trajs).fetch_model()
    proj = np.concatenate([model.transform(t)[:, :dim] for t in trajs])
    first = np.concatenate([t[:, 0] for t in trajs])
    corr = np.array([np.corrcoef(proj[:, k], first)[0, 1] if proj[:, k].std() > 0 else 1.0 for k in range(dim)])
    sign = np.where(np.nan_to_num(corr, nan=1.0) < 0, -1.0, 1.0)
    sv = np.asarray(model.singular_values[:dim], dtype=np.float64)
    with np.errstate(divide="ignore"):
        ts = -lagtime / np.log(np.abs(sv))
    return TICAModel(lagtime=lagtime, dim=dim, timescales=ts, singular_values=sv, _model=model, _sign=sign)
