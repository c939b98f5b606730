"""PNG grid of generated molecules (RDKit 2D depictions of the valid ones) with their metrics."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .metrics import Metrics, Molecule, analyse


def grid_entries(molecules: Sequence[Molecule], n: int = 24) -> tuple[list, list[str]]:
    """The first ``n`` valid molecules (largest fragment) as RDKit molecules, hydrogens implicit, and their
    legends (canonical SMILES, ``(stable)`` when every atom has its valence)."""
    from rdkit import Chem

    rep = analyse(molecules[: max(n * 4, n)])
    shown = [(s, bool(st)) for s, st in zip(rep.smiles, rep.mol_stable) if s is not None][:n]
    mols = [Chem.MolFromSmiles(s) for s, _ in shown]  # parsing drops the explicit hydrogens of EDM's SMILES
    return mols, [f"{Chem.MolToSmiles(m)}{' (stable)' if st else ''}"[:40] for m, (_, st) in zip(mols, shown)]


def molecule_grid(molecules: Sequence[Molecule], path: str | Path, metrics: Metrics | None = None,
                  n: int = 24, per_row: int = 6, title: str = "") -> Path:
    """Draw up to ``n`` valid molecules (largest fragment) with the set's metrics in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rdkit.Chem import Draw

    mols, legends = grid_entries(molecules, n)
    path = Path(path)
    fig_title = title + ("\n" + str(metrics) if metrics is not None else "")
    if mols:
        img = Draw.MolsToGridImage(mols, molsPerRow=per_row, subImgSize=(220, 180), legends=legends)
        rows = (len(mols) + per_row - 1) // per_row
        fig, ax = plt.subplots(figsize=(per_row * 2.2, rows * 1.8 + 0.8), dpi=100)
        ax.imshow(img)
    else:
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.text(0.5, 0.5, "no valid molecules to draw", ha="center", va="center")
    ax.axis("off")
    ax.set_title(fig_title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
