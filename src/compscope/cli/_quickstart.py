"""``compscope quickstart``: the main job on bundled data in about three minutes on two CPU cores.

It spans capabilities (force field, then MD), so it lives with the CLI and uses their public APIs only.
"""

from __future__ import annotations

import json
from pathlib import Path

BUNDLED = Path(__file__).resolve().parents[1] / "forcefield" / "bundled"


def quickstart_config(out: Path, minutes: float) -> dict:
    """The quickstart's training config (the shipped config's format: sections of ``init_args``)."""
    return {
        "seed": 0,
        "dtype": "float32",
        "out": str(out / "run"),
        "model": {"preset": "small"},  # r_max: the model's default cutoff
        "data": {"init_args": {
            "train": str(BUNDLED / "ethanol_train_200.xyz"),
            "test": str(BUNDLED / "ethanol_test_100.xyz"),
            "n_valid": 20,
            "batch_size": 5,
            "valid_batch_size": 20,
        }},
        "task": {"init_args": {"lr": 0.01, "forces_weight": 100.0, "energy_weight": 1.0, "scheduler": "plateau",
                               "scheduler_patience": 5}},
        "trainer": {"max_epochs": 1000, "max_time_minutes": minutes, "early_stopping_patience": 0,
                    "ema_decay": 0.99},
    }


def run_quickstart(out: Path, minutes: float = 2.0, md_steps: int = 1000) -> dict:
    """Train (or reuse) the quickstart model, print its errors, run a short MD; returns the summary it writes to
    ``OUT/summary.json``."""
    from rich.console import Console

    from compscope.forcefield import fit, print_error_table

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
        console.rule(f"2/3 short MD: 4 replicas x {md_steps} steps of 0.5 fs Langevin at 300 K, stability monitors on")
        summary["md"] = _short_md(run / "model.pt", out / "md", md_steps)
        console.print(summary["md"])
    console.rule("3/3 files")
    for name in ("model.pt", "parity.png", "learning_curves.png", "metrics.jsonl", "errors.json"):
        console.print(f"  {run / name}")
    for name, path in summary.get("md", {}).get("files", {}).items():
        console.print(f"  {path}  ({name})")
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def _short_md(model_path: Path, out: Path, steps: int) -> dict:
    """A short Langevin run of 4 replicas with the trained model through compscope.md (monitors on)."""
    from ase.io import read

    from compscope.md import simulate
    from compscope.models.artifacts import load_model

    model = load_model(model_path)
    atoms = read(BUNDLED / "ethanol_test_100.xyz", 0)
    res = simulate(model, atoms, steps=steps, dt=0.5, temperature=300.0, replicas=4, out=out,
                   traj_every=max(1, steps // 50), progress=True, plots=True, resume=(out / "restart.pt").exists())
    return {
        "steps": res.steps,
        "replicas": 4,
        "stable_replicas": res.n_stable,
        "ns_per_day_per_replica": round(res.ns_per_day, 3),
        "speed_after_warmup_steps": res.warmup_steps,
        "files": res.files,
    }
