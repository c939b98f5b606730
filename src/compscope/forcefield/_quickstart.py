"""``compscope quickstart``: the main job on bundled data in about three minutes on two CPU cores."""

from __future__ import annotations

import json
import time
from pathlib import Path

BUNDLED = Path(__file__).parent / "bundled"


def quickstart_config(out: Path, minutes: float) -> dict:
    return {
        "seed": 0,
        "dtype": "float32",
        "out": str(out / "run"),
        "model": {"preset": "small", "r_max": 5.0},
        "data": {
            "train": str(BUNDLED / "ethanol_train_200.xyz"),
            "test": str(BUNDLED / "ethanol_test_100.xyz"),
            "n_valid": 20,
            "batch_size": 5,
            "valid_batch_size": 20,
        },
        "task": {"lr": 0.01, "forces_weight": 100.0, "energy_weight": 1.0, "ema_decay": 0.99,
                 "scheduler": "plateau", "scheduler_patience": 5},
        "trainer": {"max_epochs": 1000, "max_time_minutes": minutes, "early_stopping_patience": 0},
    }


def run_quickstart(out: Path, minutes: float = 2.0, md_steps: int = 2000) -> dict:
    from rich.console import Console

    from ._evaluate import print_error_table
    from ._fit import fit

    console = Console()
    out = Path(out)
    run = out / "run"
    if (run / "model.pt").exists():
        console.print(f"[yellow]{run} already holds a trained model; reusing it (delete it to retrain)[/]")
    else:
        resume = (run / "checkpoints" / "last.ckpt").exists()
        console.rule("1/3 training a small equivariant force field on 180 rMD17 ethanol frames")
        fit(quickstart_config(out, minutes), resume=resume)
    table = json.loads((run / "errors.json").read_text())
    print_error_table(table, title="quickstart errors (EMA weights)")
    summary = {"run": str(run), "errors": table}
    if md_steps > 0:
        console.rule(f"2/3 short MD: {md_steps} steps of 0.5 fs Langevin at 300 K with the trained model")
        summary["md"] = _short_md(run / "model.pt", out / "md.xyz", md_steps)
        console.print(summary["md"])
    console.rule("3/3 files")
    for name in ("model.pt", "parity.png", "learning_curves.png", "metrics.jsonl", "errors.json"):
        console.print(f"  {run / name}")
    if md_steps > 0:
        console.print(f"  {out / 'md.xyz'}")
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def _short_md(model_path: Path, traj_path: Path, steps: int) -> dict:
    """A short Langevin run with the trained model through the ASE calculator."""
    import numpy as np
    from ase import units
    from ase.io import read, write
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

    from ._calculator import Calculator

    atoms = read(BUNDLED / "ethanol_test_100.xyz", 0)
    atoms.calc = Calculator(model_path, dtype="float32")
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    Stationary(atoms)
    dyn = Langevin(atoms, 0.5 * units.fs, temperature_K=300, friction=0.01 / units.fs, rng=np.random.default_rng(0))
    frames, temps = [], []

    def record():
        frames.append(atoms.copy())
        temps.append(atoms.get_temperature())

    dyn.attach(record, interval=max(1, steps // 100))
    t0 = time.time()
    dyn.run(steps)
    wall = time.time() - t0
    write(traj_path, frames, format="extxyz")
    d = atoms.get_all_distances()
    return {
        "steps": steps,
        "ns_per_day": steps * 0.5e-6 / (wall / 86400),
        "mean_temperature_K": float(np.mean(temps[len(temps) // 2:])),
        "min_distance_A": float(d[np.triu_indices(len(atoms), 1)].min()),
    }
