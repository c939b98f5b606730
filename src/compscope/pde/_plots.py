"""Plots: x-t images of rollouts (reference, prediction, error) and the error-vs-runtime breakeven plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["plot_rollout", "plot_error_vs_runtime"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_rollout(ref: np.ndarray, pred: np.ndarray, x: np.ndarray, t: np.ndarray, path: str | Path,
                 title: str = "") -> Path:
    """Three x-t images of one trajectory: reference (nt, nx), prediction (nt, nx), and their difference."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(12, 4), sharey=True)
    vmax = float(np.nanmax(np.abs(ref)))
    ext = [float(x[0]), float(x[-1]), float(t[-1]), float(t[0])]
    for ax, data, name, cmap, lim in ((axes[0], ref, "reference", "RdBu_r", vmax),
                                      (axes[1], pred, "prediction", "RdBu_r", vmax),
                                      (axes[2], pred - ref, "error", "PuOr", None)):
        lim = lim or float(np.nanmax(np.abs(data))) or 1.0
        im = ax.imshow(data, aspect="auto", extent=ext, cmap=cmap, vmin=-lim, vmax=lim, interpolation="nearest")
        ax.set_title(name)
        ax.set_xlabel("x")
        fig.colorbar(im, ax=ax, fraction=0.046)
    axes[0].set_ylabel("t")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_error_vs_runtime(cells: dict, path: str | Path) -> Path:
    """Accumulated error against ms per trajectory (single), one marker per solver, one colour per cell."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 5))
    markers = {"WENO5": "s", "spectral": "D", "Chebyshev": "^", "mp-pde": "o", "fno": "P"}
    colors = plt.cm.tab20(np.linspace(0, 1, max(1, len(cells))))
    for color, (key, cell) in zip(colors, sorted(cells.items())):
        pts = {**cell.get("classical", {}), **cell.get("neural", {})}
        for solver, r in pts.items():
            err, ms = r.get("error", np.nan), 1e3 * r.get("s_per_traj_single", np.nan)
            if np.isfinite(err) and np.isfinite(ms) and err > 0:
                filled = solver in cell.get("neural", {})
                mark = next((m for name, m in markers.items() if solver.startswith(name)), "x")  # mp-pde-small
                ax.loglog(ms, err, mark, color=color, mfc=color if filled else "none",
                          ms=8, label=f"{key} {solver}")
    ax.set_xlabel("wall-clock per trajectory, single (ms, this CPU)")
    ax.set_ylabel("accumulated error")
    ax.set_title("filled: neural, open: classical; lower-left is better")
    ax.legend(fontsize=6, ncol=2, loc="best")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
