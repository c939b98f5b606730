"""PNG plots of an MD run: energy and temperature traces, bond-length distributions."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._trajectory import read_h5_observables

__all__ = ["plot_run", "plot_bond_lengths"]


def _bond_lengths(positions: np.ndarray, bonds: np.ndarray, cell: np.ndarray, pbc: np.ndarray,
                  replica: np.ndarray) -> np.ndarray:
    """(T, B) bond lengths with the minimum image along periodic directions."""
    d = positions[:, bonds[:, 1]] - positions[:, bonds[:, 0]]  # (T, B, 3)
    rep = replica[bonds[:, 0]]
    if pbc.any():
        for b in range(len(bonds)):
            p = pbc[rep[b]]
            if p.any():
                c = np.where(p[:, None], cell[rep[b]], np.eye(3))
                f = d[:, b] @ np.linalg.inv(c)
                f = np.where(p, f - np.round(f), f)
                d[:, b] = f @ c
    return np.linalg.norm(d, axis=-1)


def plot_bond_lengths(lengths: dict[str, np.ndarray], path: str | Path, reference: dict[str, np.ndarray] | None = None,
                      title: str = "bond-length distributions") -> Path:
    """Histogram per bond type (e.g. ``"C-H"``), optionally against reference distributions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = sorted(lengths)
    fig, axes = plt.subplots(1, max(1, len(kinds)), figsize=(3.2 * max(1, len(kinds)), 3), squeeze=False)
    for ax, k in zip(axes[0], kinds):
        ax.hist(lengths[k], bins=60, density=True, alpha=0.7, label="MD")
        if reference is not None and k in reference:
            ax.hist(reference[k], bins=60, density=True, histtype="step", color="k", label="reference")
        ax.set_xlabel(f"{k} length (Å)")
        ax.set_yticks([])
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def bond_types(species: np.ndarray, bonds: np.ndarray) -> np.ndarray:
    """Label such as ``"C-H"`` for each bond (B,)."""
    from ase.data import chemical_symbols

    out = []
    for i, j in bonds:
        a, b = sorted([chemical_symbols[int(species[i])], chemical_symbols[int(species[j])]])
        out.append(f"{a}-{b}")
    return np.asarray(out)


def plot_run(h5_path: str | Path, out_dir: str | Path, bonds: np.ndarray, dt_fs: float | None = None) -> dict[str, str]:
    """Write ``energy_temperature.png`` and ``bond_lengths.png`` for the run stored in ``h5_path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    obs = read_h5_observables(h5_path)
    out_dir = Path(out_dir)
    t = obs["time_ps"]
    fig, ax = plt.subplots(3, 1, figsize=(7, 7), sharex=True)
    G = obs["temperature"].shape[1] if obs["temperature"].ndim == 2 else 1
    for g in range(G):
        alive = obs["active"][:, g] > 0
        mk = "." if len(t) < 50 else None  # a few frames: show the points
        ax[0].plot(t[alive], obs["potential_energy"][alive, g], lw=0.8, marker=mk)
        ax[1].plot(t[alive], obs["conserved_energy"][alive, g] - obs["conserved_energy"][0, g], lw=0.8, marker=mk)
        ax[2].plot(t[alive], obs["temperature"][alive, g], lw=0.8, marker=mk)
    ax[0].set_ylabel("E_pot (eV)")
    ax[1].set_ylabel("ΔE_conserved (eV)")
    ax[2].set_ylabel("T (K)")
    ax[2].set_xlabel("time (ps)")
    fig.suptitle(f"{G} replica(s)", fontsize=9)
    fig.tight_layout()
    p1 = out_dir / "energy_temperature.png"
    fig.savefig(p1, dpi=110)
    plt.close(fig)
    files = {"energy_temperature_png": str(p1)}
    if len(bonds):
        if len(bonds) > 2000:  # a big box: an evenly spaced sample of its bonds shows the same distributions
            bonds = bonds[np.linspace(0, len(bonds) - 1, 2000).astype(int)]
        L = _bond_lengths(obs["positions"], bonds, obs["cell"], obs["pbc"], obs["replica"])  # (T, B)
        kinds = bond_types(obs["species"], bonds)
        lengths = {k: L[:, kinds == k].ravel() for k in np.unique(kinds)}
        files["bond_lengths_png"] = str(plot_bond_lengths(lengths, out_dir / "bond_lengths.png"))
    return files
