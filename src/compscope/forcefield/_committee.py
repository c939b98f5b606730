"""Committees of models (different seeds): training fan-out and uncertainty-aware evaluation."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import numpy as np

from compscope.models.artifacts import load_model

log = logging.getLogger(__name__)


def _member_config(config: str | Path | dict[str, Any], seed_offset: int, out: Path) -> dict[str, Any]:
    from compscope.train import load_yaml

    cfg = copy.deepcopy(load_yaml(config) if not isinstance(config, dict) else config)
    cfg["seed"] = int(cfg.get("seed", 0)) + seed_offset  # the data split and shuffle follow it
    cfg["out"] = str(out / f"member_{seed_offset}")
    cfg.setdefault("trainer", {})["progress_bar"] = False
    return cfg


def _fit_member(cfg: dict[str, Any], base: str, threads: int | None) -> str:
    from compscope.runtime import configure_threads

    from ._fit import fit

    if threads is not None and not cfg.setdefault("trainer", {}).get("num_threads"):
        cfg["trainer"]["num_threads"] = threads  # members side by side share the free cores
    configure_threads(threads)
    resume = (Path(cfg["out"]) / "checkpoints" / "last.ckpt").exists() and not (Path(cfg["out"]) / "model.pt").exists()
    if (Path(cfg["out"]) / "model.pt").exists():
        return str(Path(cfg["out"]) / "model.pt")
    return str(fit(cfg, resume=resume, base=Path(base)) / "model.pt")


def train_committee(
    config: str | Path | dict[str, Any], n: int = 4, out: str | Path = "runs/committee", parallel: int = 1,
    base: str | Path | None = None,
) -> list[Path]:
    """Train ``n`` members (seed, seed+1, ...); with ``parallel > 1`` they run as Ray tasks.

    ``config`` is a YAML path or a loaded config (then relative paths are relative to ``base``). Members already
    finished are skipped, unfinished ones resume: rerunning the command continues a committee.
    """
    out = Path(out)
    if base is None:
        base = Path(config).resolve().parent if not isinstance(config, dict) else Path(".")
    base = str(base)
    cfgs = [_member_config(config, i, out) for i in range(n)]
    if parallel <= 1:
        return [Path(_fit_member(c, base, None)) for c in cfgs]  # compscope's choice (compscope.runtime)
    import ray

    from compscope.runtime import resolve_threads

    threads = max(1, resolve_threads()[0] // parallel)
    ray.init(num_cpus=parallel, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=1)(_fit_member)
        return [Path(p) for p in ray.get([task.remote(c, base, threads) for c in cfgs])]
    finally:
        ray.shutdown()


def evaluate_models(paths: list[Path], data: Path, out: Path | None = None, energy_key: str = "energy",
                    forces_key: str = "forces", batch_size: int = 32, threshold: float = 0.1) -> dict[str, Any]:
    """Error table of one model or a committee (mean prediction) on ``data``, with per-frame force std.

    Frames whose largest per-atom force standard deviation exceeds ``threshold`` (eV/Å) are flagged.
    """
    from compscope.data import load_graphs, read_extxyz, write_extxyz

    from ._evaluate import error_table, predict

    models = [load_model(p) for p in paths]
    cutoff = max(m.cutoff for m in models)
    graphs = load_graphs(data, cutoff, energy_key=energy_key, forces_key=forces_key, require_labels=False)
    preds = [predict(m, graphs, batch_size=batch_size, progress=len(graphs) > 200) for m in models]
    mean = dict(preds[0])
    mean["pred_energy"] = np.mean([p["pred_energy"] for p in preds], axis=0)
    mean["pred_e_per_atom"] = mean["pred_energy"] / mean["num_atoms"]
    frames = [np.stack([p["forces_per_frame"][i] for p in preds]) for i in range(len(graphs))]  # (M, n_i, 3)
    mean["forces_per_frame"] = [f.mean(axis=0) for f in frames]
    mean["pred_forces"] = np.concatenate(mean["forces_per_frame"])
    table = error_table(mean, by_config_type=True)
    extra: dict[str, np.ndarray] = {}
    if len(models) > 1:
        # per-atom force std: sqrt(mean over members of |F_m - F_mean|^2)
        std = [np.sqrt(np.mean(np.sum((f - f.mean(axis=0)) ** 2, axis=-1), axis=0)) for f in frames]
        max_std = np.array([s.max() for s in std])
        extra["force_std_max"] = max_std
        flagged = np.nonzero(max_std > threshold)[0]
        table["uncertainty"] = {
            "models": len(models),
            "threshold_eV_A": threshold,
            "flagged": int(len(flagged)),
            "flagged_frames": flagged.tolist()[:1000],
            "max_force_std": float(max_std.max()),
            "mean_force_std": float(max_std.mean()),
        }
        if "ref_forces_per_frame" in mean:
            err = np.array([np.abs(mean["forces_per_frame"][i] - mean["ref_forces_per_frame"][i]).max()
                            for i in range(len(graphs))])
            from scipy.stats import spearmanr

            table["uncertainty"]["spearman_std_vs_max_force_error"] = float(spearmanr(max_std, err).statistic)
    if out is not None:
        write_extxyz(out, read_extxyz(data), energies=mean["pred_energy"], forces=mean["forces_per_frame"],
                     energy_key="pred_energy", forces_key="pred_forces", extra_info=extra)
    return table
