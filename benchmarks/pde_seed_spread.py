"""Run-to-run spread of one neural-solver cell over seeds, next to the paper's number.

Each seed of :mod:`benchmarks.pde_budget_curve` is an independent replicate: its own training, validation and *test*
trajectories and its own initialisation. The accumulated error is a mean over heavy-tailed per-trajectory errors,
so one seed's number moves by tens of per cent; this script reads the seeds' JSONs (run them first) and writes
their mean, standard deviation and the standard error of the mean beside the paper's MP-PDE error.

    python -m benchmarks.pde_budget_curve --equation E1-authors --nx 40 --model fno-small --budgets 2048x32 \\
        --lr 3e-4 --seed 1        # and --seed 2; seed 0 is the curve itself
    python -m benchmarks.pde_seed_spread --equation E1-authors --nx 40 --model fno-small --lr 3e-4 --seeds 0 1 2

Reads the curves from ``benchmarks/results/sweeps/``. A spread is a headline cell (the README quotes it):
writes ``benchmarks/results/pde_seeds_<eq>_nx<nx>_<model><recipe>.json``; ``--sweep`` writes one that is not
quoted to ``results/sweeps/``; ``--note`` adds to its ``notes``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

if not __package__:  # run as `python benchmarks/<name>.py`: put the repository root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import SWEEPS, write_result  # noqa: E402
from benchmarks.pde_budget_curve import curve_name, find_point  # noqa: E402
from benchmarks.pde_mp_pde import paper_cell  # noqa: E402
from compscope.pde import cell_key, get_equation  # noqa: E402


def spread(errors: list[float]) -> dict:
    """Mean, sample standard deviation and standard error of the mean of per-seed errors."""
    e = np.asarray(errors, dtype=float)
    if e.size < 2:
        raise ValueError(f"{e.size} seed(s): a spread needs at least two")
    sd = float(e.std(ddof=1))
    return {"n_seeds": int(e.size), "mean": float(e.mean()), "sd": sd, "se_of_mean": sd / np.sqrt(e.size),
            "min": float(e.min()), "max": float(e.max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--equation", required=True)
    ap.add_argument("--nx", type=int, required=True)
    ap.add_argument("--model", default="fno-small")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--max-unroll", type=int, default=2)
    ap.add_argument("--augment", action="store_true")
    ap.add_argument("--ema-decay", type=float, default=0.0)
    ap.add_argument("--budget", default="2048x32", help="NxR point of the curves to compare")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--sweep", action="store_true", help="a spread the README does not quote: write to results/sweeps/")
    ap.add_argument("--note", action="append", default=[],
                    help="free text added to the JSON's notes (repeatable)")
    a = ap.parse_args()
    eq = get_equation(a.equation)
    n_train, repeat = (int(v) for v in a.budget.split("x"))
    runs, missing = [], []
    for seed in a.seeds:
        name = curve_name(eq.name, a.nx, a.model, a.lr, a.max_unroll, a.augment, a.ema_decay, seed)
        path = SWEEPS / f"{name}.json"
        points = json.loads(path.read_text())["points"] if path.exists() else []
        point = find_point(points, n_train, repeat, a.epochs)
        if point is None:
            missing.append(f"{name} ({a.budget}x{a.epochs})")
            continue
        runs.append({"seed": seed, "error": point["error"], "error_se": point.get("error_se"), "json": path.name})
    if missing:
        raise SystemExit("no result for: " + ", ".join(missing) + " - run benchmarks/pde_budget_curve.py with those "
                         "seeds first")
    key = cell_key(eq.name, a.nx)
    paper = (paper_cell(key) or {}).get("MP-PDE") or [None]
    stats = spread([r["error"] for r in runs])
    out = {"cell": key, "model": a.model, "lr": a.lr, "max_unroll": a.max_unroll, "augment": a.augment,
           "ema_decay": a.ema_decay, "budget": a.budget, "epochs": a.epochs, "seeds": runs, **stats,
           "paper_mp_pde_error": paper[0],
           "seeds_at_or_below_paper": None if paper[0] is None else sum(r["error"] <= paper[0] for r in runs)}
    base = curve_name(eq.name, a.nx, a.model, a.lr, a.max_unroll, a.augment, a.ema_decay)
    path = write_result(base.replace("pde_budget_", "pde_seeds_"), out, sweep=a.sweep,
                        notes=["each seed draws its own train/valid/test trajectories and initialisation", *a.note])
    print(f"{key} {a.model}: {stats['mean']:.3f} ± {stats['se_of_mean']:.3f} (sd {stats['sd']:.3f}, "
          f"{stats['n_seeds']} seeds); paper MP-PDE {paper[0]}")
    print(path)


if __name__ == "__main__":
    main()
