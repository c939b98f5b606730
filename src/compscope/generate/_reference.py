"""Reference SMILES of the QM9 training split for novelty (EDM's ``retrieve_qm9_smiles``), cached."""

from __future__ import annotations

import logging
import os

from ._qm9 import edm_splits, load_qm9
from .metrics import training_smiles

log = logging.getLogger(__name__)


def qm9_train_smiles(path: str | os.PathLike | None = None, split: str = "train") -> set[str]:
    """SMILES of the QM9 ``split`` molecules via our bond rule + RDKit (valid ones), cached as text."""
    from compscope.data import data_dir

    cache = data_dir(path) / "qm9" / f"{split}_smiles_edm_v1.txt"
    if cache.exists():
        return set(cache.read_text().split())
    q = load_qm9(path)
    rows = edm_splits()[split]
    mols = [(x.numpy(), t.numpy()) for x, t in q.molecules(rows)]
    smiles = training_smiles(mols)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text("\n".join(sorted(smiles)) + "\n")
    except OSError as e:
        log.warning("could not cache %s (%s)", cache, e)
    return smiles
