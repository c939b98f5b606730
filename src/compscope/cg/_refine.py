"""Correcting a trained CG model's 2-D torsion term towards the training frames' (phi, psi) distribution.

Force matching learns the mean force frame by frame; with few frames its errors add up along the paths between
basins, so basin populations drift even where each force is close. One iterative-Boltzmann-inversion step on the
(phi, psi) marginal (Reith et al., J. Comput. Chem. 24, 1624 (2003)) fixes the populations the model samples
without touching the rest: simulate the model, histogram its (phi, psi), add ``kT ln(p_model / p_data)``
(smoothed, clipped, as the same Fourier series) to the prior's 2-D torsion term (:func:`compscope.cg.cmap_correction`).
Only the training frames enter, never the held-out block. The simulation is the caller's (the task layer does not
run MD): ``refine_cmap`` takes the model's frames, :func:`ibi_refine` a function that samples a model
(``compscope cg refine`` and ``benchmarks/cg_alanine.py`` pass one that runs the MD engine).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from compscope.errors import ConfigError

from ._compare import backbone_dihedrals
from ._ensemble import _prior_kwargs
from ._prior import CMAP_DEFAULTS, cmap_correction, kT_eV

__all__ = ["refine_cmap", "ibi_refine", "IBIResult", "per_step"]


def per_step(values: Sequence, step: int):
    """The value of step ``step`` in a per-step schedule whose last value repeats (IBI damping, run lengths)."""
    return values[min(step, len(values) - 1)]


def _check_refinable(model: torch.nn.Module) -> None:
    """Refuse a model whose (phi, psi) term cannot be corrected: no 2-D backbone term, or a message-passing net."""
    prior = getattr(model, "prior", None)
    cmap = getattr(prior, "cmap", None)
    if cmap is None or len(cmap) != 1 or cmap[0].tolist() != [0, 1, 2, 3, 1, 2, 3, 4]:
        raise ConfigError("refine_cmap needs a model whose prior has the backbone's (phi, psi) term",
                          hint="train with model.cmap: {} on a backbone map (configs/cg/ala2_backbone_fast_cmap.yaml)")
    if getattr(model, "net", None) is not None:
        raise ConfigError("refine_cmap takes fast CG models (model.feature_net, no model.net)")


@dataclass
class IBIResult:
    """What :func:`ibi_refine` did: the last model, the corrections applied, why it stopped early (None: it did
    not), and per step the model's sample size and its Ramachandran JS (64 x 64) against the data frames."""

    model: torch.nn.Module
    steps: int
    stopped: str | None = None
    history: list[dict] = field(default_factory=list)


def ibi_refine(model: torch.nn.Module, data_frames: np.ndarray,
               sample: Callable[[torch.nn.Module, int], np.ndarray], steps: int,
               damping: float | Sequence[float] = 1.0, temperature: float = 300.0,
               on_step: Callable[[int, torch.nn.Module], None] | None = None, first_step: int = 0,
               **cmap: float) -> IBIResult:
    """``steps`` IBI corrections of a fast CG model's (phi, psi) term towards ``data_frames`` (T, 5, 3).

    Each step samples the current model with the caller's ``sample(model, step)`` (frames (M, 5, 3) of its stable
    replicas after burn-in) and applies :func:`refine_cmap`. A sample with no frame (the model blew up in every
    replica) stops the refinement with a message instead of raising: the caller keeps the last model.

    Args:
        damping: one value, or one per step (the last one repeats).
        on_step: called as ``on_step(k, model)`` after correction ``k`` (1-based), e.g. to save each model.
        first_step: resume: ``model`` is the model after ``first_step`` corrections; steps ``first_step`` to
            ``steps - 1`` are run (their damping and the sampler's step index as in an uninterrupted run).
        cmap: :func:`refine_cmap` settings.
    """
    from compscope.analysis import js_divergence, ramachandran_histogram

    _check_refinable(model)  # before the first (long) CG run, not after it
    if steps < 0 or not 0 <= first_step <= steps:
        raise ConfigError(f"steps={steps}, first_step={first_step}: need 0 <= first_step <= steps")
    damp = [float(damping)] if np.isscalar(damping) else [float(d) for d in damping]
    if not damp:
        raise ConfigError("damping: give one value or one per step")
    target = ramachandran_histogram(*backbone_dihedrals(np.asarray(data_frames)), 64)
    out = IBIResult(model=model, steps=first_step)
    for k in range(first_step, steps):
        x = np.asarray(sample(out.model, k))
        if not len(x):
            out.stopped = (f"IBI step {k}: the model's sample has no frame (every replica blew up or none passed "
                           "burn-in)")
            return out
        js = js_divergence(ramachandran_histogram(*backbone_dihedrals(x), 64), target)
        out.history.append({"step": k, "frames": int(len(x)), "js_64_vs_data": float(js)})
        out.model = refine_cmap(out.model, x, data_frames, temperature=temperature,
                                damping=per_step(damp, k), **cmap)
        out.steps = k + 1
        if on_step is not None:
            on_step(k + 1, out.model)
    return out


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

    _check_refinable(model)
    prior = model.prior
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
