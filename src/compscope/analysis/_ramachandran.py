"""Ramachandran histograms on the torus and the Jensen-Shannon divergence between two of them.

Histograms are probabilities over ``bins x bins`` cells of ``[-pi, pi)^2`` (64 x 64 as in issue #21; 61 x 61
as in some Boltzmann-generator papers), optionally weighted (reweighted Boltzmann-generator samples).
The JS divergence ``JS(p, q) = KL(p || m) / 2 + KL(q || m) / 2`` with ``m = (p + q) / 2`` is in nats by default
(``base=2`` gives bits, bounded by 1). It is the divergence, not its square root (scipy's ``jensenshannon``
returns the distance ``sqrt(JS)``; a test checks the two agree).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ._errors import AnalysisInputError

__all__ = ["ramachandran_histogram", "js_divergence", "ramachandran_js"]


def _angles(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    a = np.asarray(x, dtype=np.float64).ravel()
    if not np.isfinite(a).all():
        raise AnalysisInputError(f"{name} has non-finite values", hint="drop the frames that failed")
    return a


def ramachandran_histogram(phi, psi, bins: int = 64, weights=None) -> np.ndarray:
    """Probabilities (bins, bins) of (phi, psi) over ``[-pi, pi)^2``, rows indexed by phi; sums to 1.

    Args:
        phi, psi: angles in radians (any shape, same size); values are wrapped into ``[-pi, pi)``.
        bins: cells per axis.
        weights: optional non-negative weight per frame (self-normalised).
    """
    p, s = _angles(phi, "phi"), _angles(psi, "psi")
    if p.shape != s.shape or p.size == 0:
        raise AnalysisInputError(f"phi ({p.size}) and psi ({s.size}) need the same, non-zero number of frames",
                                 hint="one (phi, psi) pair per frame")
    w = None
    if weights is not None:
        w = _angles(weights, "weights")
        if w.shape != p.shape or (w < 0).any() or w.sum() <= 0:
            raise AnalysisInputError("weights must be non-negative, one per frame, with a positive sum",
                                     hint="pass normalised importance weights")
    wrap = lambda a: (a + math.pi) % (2 * math.pi) - math.pi  # noqa: E731
    h, _, _ = np.histogram2d(wrap(p), wrap(s), bins=int(bins), range=[[-math.pi, math.pi]] * 2, weights=w)
    return h / h.sum()


def js_divergence(p, q, base: float | None = None) -> float:
    """Jensen-Shannon divergence of two histograms of the same shape (each normalised here), nats by default."""
    a = np.asarray(p, dtype=np.float64)
    b = np.asarray(q, dtype=np.float64)
    if a.shape != b.shape:
        raise AnalysisInputError(f"histograms of shapes {a.shape} and {b.shape}", hint="use the same bins for both")
    if (a < 0).any() or (b < 0).any() or a.sum() <= 0 or b.sum() <= 0:
        raise AnalysisInputError("histograms must be non-negative with a positive sum", hint="pass counts or probs")
    a, b = a / a.sum(), b / b.sum()
    m = 0.5 * (a + b)

    def kl(x):
        nz = x > 0
        return float((x[nz] * np.log(x[nz] / m[nz])).sum())

    js = 0.5 * kl(a) + 0.5 * kl(b)
    return max(js, 0.0) / (math.log(base) if base else 1.0)


def ramachandran_js(phi_a, psi_a, phi_b, psi_b, bins: int = 64, weights_a=None, weights_b=None) -> float:
    """JS divergence (nats) between the Ramachandran histograms of two sets of frames (e.g. a chain vs reference)."""
    return js_divergence(ramachandran_histogram(phi_a, psi_a, bins, weights_a),
                         ramachandran_histogram(phi_b, psi_b, bins, weights_b))
