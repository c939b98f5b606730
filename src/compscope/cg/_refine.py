"""Correcting a trained CG model's 2-D torsion term towards the training frames' (phi, psi) distribution.

Force matching learns the mean force frame by frame; with few frames its errors add up along the paths between
basins, so basin populations drift even where each force is close. One iterative-Boltzmann-inversion step on the
(phi, psi) marginal (Reith et al., J. Comput. Chem. 24, 1624 (2003)) fixes the populations the model samples
without touching the rest: simulate the model, histogram its (phi, psi), add ``kT ln(p_model / p_data)``
(smoothed, clipped, as the same Fourier series) to the prior's 2-D torsion term (:func:`compscope.cg.cmap_correction`).
Only the training frames enter, never the held-out block. The simulation is the caller's (the task layer does not
run MD): ``refine_cmap`` takes the model's frames.
"""

from __future__ import annotations

import numpy as np
import torch

from compscope.errors import ConfigError

from ._compare import backbone_dihedrals
from ._ensemble import _prior_kwargs
from ._prior import CMAP_DEFAULTS, cmap_correction, kT_eV

__all__ = ["refine_cmap"]


def refine_cmap(model: torch.nn.Module, model_frames: np.ndarray, data_frames: np.ndarray,
                temperature: float = 300.0, damping: float = 1.0, max_kT: float = 3.0,
                **cmap: float) -> torch.nn.Module:
    """A copy of the fast CG ``model`` (prior with one 2-D torsion term on beads 0-4, feature network) whose term is
    corrected by ``damping`` times one IBI step from frames it sampled (M, 5, 3) towards ``data_frames`` (T, 5, 3).

    Args:
        cmap: :func:`~compscope.cg.cmap_fit` settings of the correction's histograms and series
            (default :data:`~compscope.cg.CMAP_DEFAULTS`; ``order`` at most the term's).
    """
    from compscope.models import build_model

    prior = model.prior
    if len(prior.cmap) != 1 or prior.cmap[0].tolist() != [0, 1, 2, 3, 1, 2, 3, 4]:
        raise ConfigError("refine_cmap needs a model whose prior has the backbone's (phi, psi) term",
                          hint="train with model.cmap: {} on a backbone map")
    if getattr(model, "net", None) is not None:
        raise ConfigError("refine_cmap takes fast CG models (model.feature_net, no model.net)")
    if not 0 < damping <= 1:
        raise ConfigError(f"damping={damping}: must be in (0, 1]")
    opts = {**CMAP_DEFAULTS, **cmap}
    modes = [tuple(m) for m in prior.cmap_modes.tolist()]
    angles = [np.stack(backbone_dihedrals(np.asarray(x)), 1) for x in (model_frames, data_frames)]
    da, db = cmap_correction(*angles, kT_eV(temperature), max_kT=max_kT, **opts)
    from ._prior import cmap_modes

    pos = {m: i for i, m in enumerate(modes)}
    extra = [m for m in map(tuple, cmap_modes(opts["order"])) if m not in pos]
    if extra:
        raise ConfigError(f"refine_cmap order={opts['order']} has modes the model's term lacks",
                          hint="use an order at most the model's model.cmap order")
    kw = _prior_kwargs(prior)
    a, b = np.asarray(kw["cmap_cos"], dtype=np.float64), np.asarray(kw["cmap_sin"], dtype=np.float64)
    for j, m in enumerate(map(tuple, cmap_modes(opts["order"]))):
        a[0, pos[m]] += damping * da[j]
        b[0, pos[m]] += damping * db[j]
    kw["cmap_cos"], kw["cmap_sin"] = a.tolist(), b.tolist()
    fn = model.feature_net
    feat = None if fn is None else {
        "hidden": [layer.out_features for layer in fn.mlp if isinstance(layer, torch.nn.Linear)][:-1],
        "activation": "tanh" if isinstance(fn.mlp[1], torch.nn.Tanh) else "silu", "angles": fn.angles.tolist(),
        "dihedrals": fn.dihedrals.tolist(), "feature_mean": fn.feature_mean.tolist(),
        "feature_std": fn.feature_std.tolist()}
    out = build_model("CGPotential", bead_z=list(model.atomic_numbers), prior=kw, net=None,
                      energy_scale=model.energy_scale, feature_net=feat).to(next(model.parameters()).dtype)
    if fn is not None:
        out.feature_net.load_state_dict(fn.state_dict())
    return out.eval()
