"""Predictions on a data set, error tables (per config_type), uncertainty flags."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import torch

from compscope.data import AtomicGraph
from compscope.data import keys as K


def predict(model, graphs: list[AtomicGraph], batch_size: int = 32, progress: bool = False) -> dict[str, Any]:
    """Energies and forces of ``model`` on ``graphs`` next to their references (if any).

    Returns arrays: ``pred_energy`` (G,), ``pred_forces`` (N_total, 3), per-frame lists ``forces_per_frame``,
    and when labelled ``ref_energy``, ``ref_forces``, per-atom energies, plus ``config_type`` (G,).
    """
    dtype = next(model.parameters()).dtype if any(True for _ in model.parameters()) else torch.float64
    dtype = getattr(model, "dtype", dtype)
    pe, pf, re, rf, nat, ctype, zs = [], [], [], [], [], [], []
    iterator = range(0, len(graphs), batch_size)
    if progress:
        from rich.progress import track

        iterator = track(iterator, description="predicting")
    for start in iterator:
        chunk = graphs[start:start + batch_size]
        batch = AtomicGraph.collate(chunk).to(dtype=dtype)
        out = model(batch, compute_forces=True)
        pe.append(out[K.ENERGY].detach().double().numpy())
        forces = out[K.FORCES].detach().double().numpy()
        sizes = batch.num_atoms.tolist()
        pf.extend(np.split(forces, np.cumsum(sizes)[:-1]))
        nat.extend(sizes)
        zs.extend(np.split(batch.atomic_numbers.numpy(), np.cumsum(sizes)[:-1]))
        for g in chunk:
            ctype.append((g.info or [{}])[0].get("config_type", "all"))
            if g.energy is not None:
                re.append(float(g.energy))
            if g.forces is not None:
                rf.append(g.forces.double().numpy())
    res: dict[str, Any] = {
        "pred_energy": np.concatenate(pe),
        "forces_per_frame": pf,
        "pred_forces": np.concatenate(pf),
        "num_atoms": np.array(nat),
        "config_type": ctype,
        "numbers_per_frame": zs,
    }
    res["pred_e_per_atom"] = res["pred_energy"] / res["num_atoms"]
    if len(re) == len(graphs):
        res["ref_energy"] = np.array(re)
        res["ref_e_per_atom"] = res["ref_energy"] / res["num_atoms"]
    if len(rf) == len(graphs):
        res["ref_forces_per_frame"] = rf
        res["ref_forces"] = np.concatenate(rf)
    return res


def _errors(pred: dict[str, Any], frames: np.ndarray) -> dict[str, float]:
    out: dict[str, float] = {"frames": int(len(frames))}
    if "ref_energy" in pred:
        de = (pred["pred_energy"] - pred["ref_energy"])[frames] / pred["num_atoms"][frames]
        out["energy_mae_meV_atom"] = float(1000 * np.mean(np.abs(de)))
        out["energy_rmse_meV_atom"] = float(1000 * np.sqrt(np.mean(de**2)))
    if "ref_forces" in pred:
        df = np.concatenate([pred["forces_per_frame"][i] - pred["ref_forces_per_frame"][i] for i in frames])
        out["forces_mae_meV_A"] = float(1000 * np.mean(np.abs(df)))
        out["forces_rmse_meV_A"] = float(1000 * np.sqrt(np.mean(df**2)))
        if "numbers_per_frame" in pred:
            out["per_element"] = _per_element(df, np.concatenate([pred["numbers_per_frame"][i] for i in frames]))
    return out


def _per_element(df: np.ndarray, numbers: np.ndarray) -> dict[str, dict[str, float]]:
    """Force errors (meV/Å) of the atoms of each element, keyed by its symbol: ``df`` (N, 3), ``numbers`` (N,)."""
    from ase.data import chemical_symbols

    out = {}
    for z in np.unique(numbers):
        d = df[numbers == z]
        out[chemical_symbols[int(z)]] = {"atoms": int(len(d)), "forces_mae_meV_A": float(1000 * np.mean(np.abs(d))),
                                         "forces_rmse_meV_A": float(1000 * np.sqrt(np.mean(d**2)))}
    return out


def error_table(pred: dict[str, Any], by_config_type: bool = False) -> dict[str, Any]:
    """Energy MAE/RMSE (meV/atom) and force MAE/RMSE (meV/Å), overall and per ``config_type``."""
    n = len(pred["pred_energy"])
    table = _errors(pred, np.arange(n))
    if by_config_type:
        groups: dict[str, list[int]] = defaultdict(list)
        for i, c in enumerate(pred["config_type"]):
            groups[str(c)].append(i)
        if len(groups) > 1:
            table["per_config_type"] = {c: _errors(pred, np.array(idx)) for c, idx in groups.items()}
    return table


def print_error_table(table: dict[str, Any], title: str = "errors") -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    cols = ["set", "frames", "E MAE (meV/atom)", "E RMSE (meV/atom)", "F MAE (meV/Å)", "F RMSE (meV/Å)"]
    for c in cols:
        t.add_column(c, justify="right")

    def row(name, d):
        f = [d.get(k) for k in ("energy_mae_meV_atom", "energy_rmse_meV_atom", "forces_mae_meV_A", "forces_rmse_meV_A")]
        t.add_row(name, str(d.get("frames", "")), *["-" if v is None else f"{v:.3f}" for v in f])

    def rows(name, d):
        row(name, d)
        for c, sub in d.get("per_config_type", {}).items():
            row(f"  {name}:{c}" if name != "all" else f"  {c}", sub)
        for el, sub in d.get("per_element", {}).items():  # force errors of one element's atoms
            t.add_row(f"  {el} atoms", str(sub["atoms"]), "-", "-", f"{sub['forces_mae_meV_A']:.3f}",
                      f"{sub['forces_rmse_meV_A']:.3f}")

    for name, d in table.items():
        if isinstance(d, dict) and "frames" in d:
            rows(name, d)
    if "frames" in table:
        rows("all", table)
    Console().print(t)
