"""Plots saved at the end of training: parity plots and learning curves (PNG)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def parity_plot(path: str | Path, panels: list[tuple[str, np.ndarray, np.ndarray, str]]) -> Path:
    """One parity panel per (title, reference, prediction, unit)."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4.2), squeeze=False)
    for ax, (title, ref, pred, unit) in zip(axes[0], panels):
        ref, pred = np.ravel(ref), np.ravel(pred)
        lo, hi = float(min(ref.min(), pred.min())), float(max(ref.max(), pred.max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.scatter(ref, pred, s=3, alpha=0.5)
        mae = float(np.mean(np.abs(pred - ref)))
        ax.set_title(f"{title}\nMAE {mae:.4g} {unit}")
        ax.set_xlabel(f"reference ({unit})")
        ax.set_ylabel(f"predicted ({unit})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def learning_curves(path: str | Path, metrics_jsonl: str | Path, keys: list[str]) -> Path:
    """Plot per-epoch metrics from a JSON-lines file (one dict per epoch) on log axes."""
    plt = _plt()
    rows = [json.loads(line) for line in Path(metrics_jsonl).read_text().splitlines() if line.strip()]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.8), squeeze=False)
    for ax, key in zip(axes[0], keys):
        pts = [(r["epoch"], r[key]) for r in rows if key in r and r[key] is not None]
        if pts:
            ep, val = zip(*pts)
            ax.plot(ep, val, marker="o", ms=2)
            if min(val) > 0:
                ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title(key)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
