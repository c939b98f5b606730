"""Alanine-dipeptide mode coverage: Ramachandran (phi, psi) histograms, Jensen-Shannon divergence, basin populations.

:func:`ramachandran_report` compares flow samples (raw and importance-reweighted) with a reference (the 300 K
replica, or every replica reweighted by MBAR, of :mod:`._ala2_reference`): the population of the C7ax / alpha_L
basin 0 < phi < 2.2 rad of each with its standard error, and the Jensen-Shannon divergence of the 64 x 64
(phi, psi) probability histograms on [-pi, pi)^2 (nats; histograms and divergence from :mod:`compscope.analysis`).
With ``out`` it draws the three free-energy surfaces side by side (``ramachandran.png``) and the phi profiles
(``phi_profile.png``). :func:`ala2_reference_angles` reads phi, psi and weights from a reference file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from compscope.analysis import js_divergence
from compscope.analysis import ramachandran_histogram as _histogram

from ._errors import SamplingInputError
from ._estimators import reweighted_mean
from ._openmm_target import ALA2_BASIN

__all__ = ["ramachandran_histogram", "ramachandran_report", "ala2_reference_angles"]

def ramachandran_histogram(phi: np.ndarray, psi: np.ndarray, log_w: np.ndarray | None = None,
                           bins: int = 64) -> np.ndarray:
    """(bins, bins) probability histogram of (phi, psi) on [-pi, pi)^2 weighted by ``exp(log_w)`` (-inf: dropped);
    :func:`compscope.analysis.ramachandran_histogram` with log weights."""
    w = None
    if log_w is not None:
        lw = np.asarray(log_w, dtype=np.float64)
        ok = np.isfinite(lw)
        if not ok.any():
            raise SamplingInputError("every weight is zero (log w = -inf)", hint="no valid flow sample to histogram")
        w = np.where(ok, np.exp(np.where(ok, lw, 0.0) - lw[ok].max()), 0.0)
    return _histogram(phi, psi, bins=bins, weights=w)


def _basin(phi: np.ndarray, log_w: np.ndarray | None) -> dict[str, float]:
    ind = ((phi > ALA2_BASIN[0]) & (phi < ALA2_BASIN[1])).astype(np.float64)
    m, se = reweighted_mean(ind, log_w)
    return {"mean": m, "se": se}


def ramachandran_report(phi: np.ndarray, psi: np.ndarray, log_w: np.ndarray, ref_phi: np.ndarray | None = None,
                        ref_psi: np.ndarray | None = None, ref_log_w: np.ndarray | None = None,
                        ref_basin: dict | None = None, out: str | Path | None = None, bins: int = 64,
                        ref_label: str = "reference") -> dict[str, Any]:
    """Basin populations and Ramachandran JS divergences of flow samples vs a reference; plots with ``out``.

    Args:
        phi, psi, log_w: the flow samples' dihedrals (rad) and log importance weights (-inf: invalid sample).
        ref_phi, ref_psi, ref_log_w: the reference's dihedrals and (MBAR) log weights (None: equal weights).
        ref_basin: the reference's basin population with its error bar, if known better than from its frames
            (the replica-exchange summary's block/run errors), as ``{"mean", "se"}``.

    Returns:
        ``basin_flow``, ``basin_reweighted`` (``{"mean", "se"}``; the standard error by the delta method),
        ``basin_reference``, ``js_flow`` and ``js_reweighted`` (64 x 64 histograms against the reference's), and
        ``plots`` with ``out``.
    """
    phi, psi, log_w = (np.asarray(a, dtype=np.float64) for a in (phi, psi, log_w))
    rep: dict[str, Any] = {"basin": list(ALA2_BASIN), "bins": int(bins),
                           "basin_flow": _basin(phi, None), "basin_reweighted": _basin(phi, log_w)}
    h_flow = ramachandran_histogram(phi, psi, None, bins)
    h_rw = ramachandran_histogram(phi, psi, log_w, bins)
    h_ref = None
    if ref_phi is not None:
        h_ref = ramachandran_histogram(ref_phi, ref_psi, ref_log_w, bins)
        rep["basin_reference"] = ref_basin or _basin(np.asarray(ref_phi, dtype=np.float64), ref_log_w)
        rep["js_flow"] = js_divergence(h_flow, h_ref)
        rep["js_reweighted"] = js_divergence(h_rw, h_ref)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        panels = [("flow", h_flow), ("flow reweighted", h_rw)] + ([(ref_label, h_ref)] if h_ref is not None else [])
        rep["plots"] = [str(_surface_plot(out / "ramachandran.png", panels, rep)),
                        str(_phi_plot(out / "phi_profile.png", panels))]
    return rep


def _free_energy(h: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        f = -np.log(h)
    finite = np.isfinite(f)
    return np.where(finite, f - (f[finite].min() if finite.any() else 0.0), np.nan)


def _surface_plot(path: Path, panels: list, rep: dict) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels) + 1, 3.9), squeeze=False, layout="constrained")
    edges = np.linspace(-np.pi, np.pi, panels[0][1].shape[0] + 1)
    for ax, (label, h) in zip(axes[0], panels, strict=True):
        im = ax.pcolormesh(edges, edges, _free_energy(h).T, cmap="viridis", vmin=0, vmax=10, shading="flat")
        for v in ALA2_BASIN:
            ax.axvline(v, color="w", lw=0.7, ls="--")
        key = {"flow": "basin_flow", "flow reweighted": "basin_reweighted"}.get(label, "basin_reference")
        b = rep.get(key)
        title = label if b is None else f"{label}: basin {100 * b['mean']:.2f} ± {100 * b['se']:.2f} %"
        js = {"flow": rep.get("js_flow"), "flow reweighted": rep.get("js_reweighted")}.get(label)
        ax.set_title(title + ("" if js is None else f"\nJS {js:.4f}"), fontsize=9)
        ax.set(xlabel="phi (rad)", ylabel="psi (rad)")
    fig.colorbar(im, ax=axes[0].tolist(), label="free energy (kT)")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _phi_plot(path: Path, panels: list) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    edges = np.linspace(-np.pi, np.pi, panels[0][1].shape[0] + 1)
    for (label, h), style in zip(panels, ({"ls": "--"}, {}, {"color": "k"}), strict=False):
        ax.stairs(_free_energy(h.sum(1)), edges, label=label, **style)
    ax.set(xlabel="phi (rad)", ylabel="free energy (kT)")
    ax.legend(frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def ala2_reference_angles(path: str | Path, use_mbar: bool = True) -> dict[str, Any]:
    """phi, psi (rad) and log weights of an alanine-dipeptide ``reference.h5`` (:func:`assemble_ala2_reference`).

    ``use_mbar``: every replica's frames with their MBAR weights at 300 K when the file holds them, else the 300 K
    frames with equal weights. Returns ``phi``, ``psi``, ``log_w``, ``label`` and ``basin`` (the summary's basin
    population with the larger of its block / run errors, or None).
    """
    import json

    import h5py

    with h5py.File(path, "r") as h5:
        summary = json.loads(h5.attrs["summary"]) if "summary" in h5.attrs else {}
        if use_mbar and "all_replicas" in h5:
            g = h5["all_replicas"]
            d = {"phi": g["phi"][:], "psi": g["psi"][:], "log_w": g["log_w"][:], "label": "reference (REMD, MBAR)"}
            s = summary.get("mbar", {})
        elif "phi" in h5:
            d = {"phi": h5["phi"][:], "psi": h5["psi"][:], "log_w": None, "label": "reference (REMD, 300 K)"}
            s = summary
        else:
            raise SamplingInputError(f"{path}: no phi/psi datasets (not an alanine-dipeptide reference)",
                                     hint="pass the reference.h5 of `compscope sample reference ala2`")
    if "basin_population" in s:
        errs = [e for e in (s.get("basin_error_blocks"), s.get("basin_error_runs")) if e is not None]
        d["basin"] = {"mean": float(s["basin_population"]), "se": float(max(errs)) if errs else float("nan")}
    else:
        d["basin"] = None
    return d
