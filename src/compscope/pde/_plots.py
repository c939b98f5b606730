"""Plots: x-t images of rollouts (reference, prediction, error) and the error-vs-runtime breakeven plot."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from ._equations import parse_cell_key

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


ERROR_FLOOR = 1e-8  # errors below this (round-off of exact solvers) are drawn on the floor line


def plot_error_vs_runtime(cells: dict, path: str | Path) -> Path:
    """The breakeven plot: one panel per equation, accumulated error against ms per trajectory (single, log-log).

    Colour = solver (same in every panel; open markers classical, filled neural), marker = resolution nx,
    a line joins one solver's resolutions. Errors below :data:`ERROR_FLOOR` are drawn on a dotted floor line.
    Where a cell carries the paper's numbers (``cell["paper"]``: ``{method: [error, seconds]}``), the paper's
    MP-PDE is a black star (its runtime is on the authors' hardware, not this CPU). An ``error_se`` draws one
    standard error of the mean over the test trajectories as an error bar. Cells whose error or
    runtime is NaN are skipped, so a partial benchmark still plots."""
    plt = _plt()
    from matplotlib.lines import Line2D

    eqs = sorted({parse_cell_key(k)[0] for k in cells})  # "E1" < "E1-authors" < "E2"
    nxs = sorted({parse_cell_key(k)[1] for k in cells}, reverse=True)
    solvers = sorted({s for c in cells.values() for s in (*c.get("classical", {}), *c.get("neural", {}))})
    colors = dict(zip(solvers, plt.cm.tab10(np.arange(len(solvers)) % 10)))
    markers = dict(zip(nxs, "osD^vP*X"))
    per_row = max(Counter(e.split("-")[0] for e in eqs).values(), default=1)  # E1 beside E1-authors
    ncol = per_row if per_row > 1 else min(3, max(1, len(eqs)))
    nrow = -(-max(1, len(eqs)) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.4 * nrow + 0.9), squeeze=False)
    paper_shown = floored = False
    for ax, eq in zip(axes.flat, eqs):
        panel_floored = False
        keys = sorted((k for k in cells if parse_cell_key(k)[0] == eq), key=lambda k: -parse_cell_key(k)[1])
        for solver in solvers:
            xs, ys = [], []
            for key in keys:
                cell = cells[key]
                r = {**cell.get("classical", {}), **cell.get("neural", {})}.get(solver)
                if r is None:
                    continue
                err, ms = r.get("error", np.nan), 1e3 * r.get("s_per_traj_single", np.nan)
                if not (np.isfinite(err) and np.isfinite(ms)):
                    continue
                panel_floored |= err < ERROR_FLOOR
                err = max(err, ERROR_FLOOR)
                neural = solver in cell.get("neural", {})
                ax.loglog(ms, err, markers[parse_cell_key(key)[1]], color=colors[solver],
                          mfc=colors[solver] if neural else "none", ms=7)
                se = r.get("error_se")
                if se and err > ERROR_FLOOR:  # one standard error of the mean over the test trajectories
                    ax.errorbar(ms, err, yerr=[[min(se, 0.9 * err)], [se]], color=colors[solver], lw=0.8,
                                capsize=2)
                xs.append(ms)
                ys.append(err)
            if len(xs) > 1:
                ax.loglog(xs, ys, "-", color=colors[solver], lw=0.8, alpha=0.6)
        for key in keys:
            mp = (cells[key].get("paper") or {}).get("MP-PDE")
            if mp and mp[0] is not None and mp[1]:
                ax.loglog(1e3 * mp[1], mp[0], markers[parse_cell_key(key)[1]], color="k", ms=5, alpha=0.7)
                ax.loglog(1e3 * mp[1], mp[0], "*", color="k", ms=11, mfc="none")
                paper_shown = True
        if panel_floored:
            ax.axhline(ERROR_FLOOR, color="0.6", ls=":", lw=0.8)
            floored = True
        ax.set_title(eq)
        ax.grid(True, which="major", alpha=0.3)
    for ax in list(axes.flat)[len(eqs):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("ms per trajectory (single, this CPU)")
    for ax in axes[:, 0]:
        ax.set_ylabel("accumulated error")
    handles = [Line2D([], [], ls="-", marker="o", color=colors[s], label=s) for s in solvers]
    handles += [Line2D([], [], ls="", marker=markers[n], color="0.3", label=f"nx={n}") for n in nxs]
    if paper_shown:
        handles.append(Line2D([], [], ls="", marker="*", color="k", mfc="none", ms=11,
                              label="paper MP-PDE (their hardware)"))
    legend_cols = max(1, min(6, len(handles)))
    fig.legend(handles=handles, loc="lower center", ncol=legend_cols, fontsize=8, frameon=False)
    note = f"; errors < {ERROR_FLOOR:g} on the dotted line" if floored else ""
    fig.suptitle(f"open: classical, filled: neural; lower-left is better{note}", fontsize=10)
    rows_legend = -(-len(handles) // legend_cols)
    fig.tight_layout(rect=(0, 0.035 * rows_legend + 0.02, 1, 1))
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
