"""Neural PDE solver error against training budget on one MP-PDE cell: how far is the paper's number?

Trains one model preset on one cell (equation x nx) at increasing budgets (training trajectories x passes per
epoch x epochs = optimiser steps), evaluates each on the same 128 test trajectories, and fits a power law
error ~ a * steps^-b through the points with the most training trajectories, to estimate the steps (and
CPU-hours at the measured step time) the paper's error would need. The fit is an extrapolation, labelled as
such in the JSON; the points are measured.

    nice -n 5 python -m benchmarks.pde_budget_curve --equation E1 --nx 50 --model fno-small \
        --budgets 256x8 2048x8 2048x32 2048x64

``NxR`` = N training trajectories, R random windows per trajectory and epoch (``--repeat``); every budget is its
own run directory under ``--runs`` and resumes from its last checkpoint; finished budgets are skipped on a rerun.
A curve is a tuning sweep: writes ``benchmarks/results/sweeps/pde_budget_<eq>_nx<nx>_<model><recipe>.json`` +
``.png`` (``--note`` adds to its ``notes``; a rerun keeps the notes already there). Anchor: the paper's Table 1
(MP-PDE and FNO-PF errors of the cell, from ``pde_mp_pde.PAPER``) and our classical solver's error from the
headline ``benchmarks/results/pde_mp_pde.json`` when that cell is there.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

if not __package__:  # run as `python benchmarks/<name>.py`: put the repository root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import RESULTS, ROOT, SWEEPS, write_result  # noqa: E402
from benchmarks.pde_mp_pde import PAPER_BUDGET, neural_config, optimizer_steps, paper_cell  # noqa: E402
from compscope.pde import ACCELERATORS, cell_key  # noqa: E402

NOTE = ("points are measured (train_wall_s is Lightning's training stage incl. validation, summed over resumes, "
        "without loading the data); the fit and its step / CPU-hour estimates are an extrapolation")
"""The first note of every curve's JSON."""


def curve_name(equation: str, nx: int, model: str, lr: float = 1e-3, max_unroll: int = 2, augment: bool = False,
               ema_decay: float = 0.0, seed: int = 0) -> str:
    """JSON name of one curve. Another recipe is another curve (its own JSON and run folders; the default recipe
    keeps the plain name); another seed is a repeat, not a point of the same curve."""
    recipe = "" if (lr, max_unroll) == (1e-3, 2) else f"_lr{lr:g}_pf{max_unroll}"
    recipe += "_aug" if augment else ""
    recipe += f"_ema{ema_decay:g}" if ema_decay else ""
    recipe += f"_seed{seed}" if seed else ""
    return f"pde_budget_{equation}_nx{nx}_{model}{recipe}"


def find_point(points: list[dict], n_train: int, repeat: int, epochs: int) -> dict | None:
    """The point of a curve measured at one budget (training trajectories x repeat x epochs), or None."""
    return next((p for p in points if (p["n_train"], p["repeat"], p["epochs"]) == (n_train, repeat, epochs)), None)


def power_law(steps, errors) -> tuple[float, float] | None:
    """Least-squares fit of log(error) = log(a) - b log(steps); None with fewer than two distinct budgets."""
    s, e = np.log(np.asarray(steps, float)), np.log(np.asarray(errors, float))
    if len(np.unique(s)) < 2:
        return None
    slope, intercept = np.polyfit(s, e, 1)
    return float(np.exp(intercept)), float(-slope)


def steps_for(error: float, fit: tuple[float, float] | None) -> float | None:
    """Steps at which the fitted power law reaches ``error`` (None if the fit does not decrease)."""
    if fit is None or fit[1] <= 0:
        return None
    a, b = fit
    return float((a / error) ** (1.0 / b))


def plot(points: list[dict], fit, n_fit: int, targets: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    st = np.array([p["optimizer_steps"] for p in points], float)
    for n in sorted({p["n_train"] for p in points}):
        sel = [p for p in points if p["n_train"] == n]
        ax.loglog([p["optimizer_steps"] for p in sel], [p["error"] for p in sel], "o" if n == n_fit else "s",
                  color="C3", mfc="C3" if n == n_fit else "none", ms=8, label=f"ours, {n} training trajectories")
    hi = max([st.max() * 4] + [v for v in (targets.get("paper_steps"),) if v])
    if fit is not None:
        xs = np.geomspace(min(p["optimizer_steps"] for p in points if p["n_train"] == n_fit), hi, 50)
        ax.loglog(xs, fit[0] * xs ** -fit[1], "--", color="C3", lw=1,
                  label=f"fit ({n_fit} traj.): error = {fit[0]:.3g} steps^-{fit[1]:.2f}, extrapolated")
    styles = {"paper MP-PDE": ("k", "-"), "paper FNO-PF": ("0.4", "-."), "our classical": ("C0", ":")}
    for name, (color, ls) in styles.items():
        if targets.get(name) is not None:
            ax.axhline(targets[name], color=color, ls=ls, lw=1, label=f"{name} {targets[name]:.3g}")
    if targets.get("paper_steps"):
        ax.axvline(targets["paper_steps"], color="0.6", ls="-", lw=0.8, label="paper's optimiser steps")
    ax.set_xlabel("optimiser steps (batch 16)")
    ax.set_ylabel("accumulated error (test set)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--equation", default="E1")
    ap.add_argument("--nx", type=int, default=50)
    ap.add_argument("--model", default="fno-small")
    ap.add_argument("--budgets", nargs="+", default=["256x8", "2048x8", "2048x32"],
                    help="NxR: N training trajectories, R windows per trajectory and epoch")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--n-valid", type=int, default=32)
    ap.add_argument("--n-test", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--max-unroll", type=int, default=2, help="pushforward depth (the authors' recipe: 1)")
    ap.add_argument("--augment", action="store_true", help="mirror-image augmentation (E1/E2 only)")
    ap.add_argument("--ema-decay", type=float, default=0.0, help="weight EMA decay per step (0 = off)")
    ap.add_argument("--runs", default=str(ROOT / "benchmarks" / ".pde_runs" / "budget"))
    ap.add_argument("--cache", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--accelerator", default="cpu", choices=ACCELERATORS,
                    help="where the neural solvers train (evaluation and runtimes stay on the CPU)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--note", action="append", default=[],
                    help="free text added to the JSON's notes (how the run went; repeatable)")
    a = ap.parse_args()
    budgets = []
    for b in a.budgets:
        n, _, r = b.partition("x")
        if not (n.isdigit() and r.isdigit()):
            ap.error(f"budget {b!r} is not NxR (e.g. 2048x8)")
        budgets.append((int(n), int(r)))

    from compscope.pde import evaluate, get_equation, train
    from compscope.runtime import configure_threads

    configure_threads(a.threads)
    eq = get_equation(a.equation)
    if a.nx not in eq.resolutions:
        ap.error(f"{eq.name} has resolutions {eq.resolutions}, not {a.nx}")
    key = cell_key(eq.name, a.nx)
    name = curve_name(eq.name, a.nx, a.model, a.lr, a.max_unroll, a.augment, a.ema_decay, a.seed)
    recipe = name.removeprefix(f"pde_budget_{eq.name}_nx{a.nx}_{a.model}")
    prev = SWEEPS / f"{name}.json"
    old = json.loads(prev.read_text()) if prev.exists() else {}
    points = old.get("points", [])
    notes = [*old.get("notes", []), *(n for n in a.note if n not in old.get("notes", []))]
    paper = paper_cell(key) or {}
    main_json = RESULTS / "pde_mp_pde.json"
    classical = None
    if main_json.exists():
        cl = json.loads(main_json.read_text()).get("cells", {}).get(key, {}).get("classical", {})
        errs = [v["error"] for v in cl.values() if np.isfinite(v.get("error", np.nan))]
        classical = min(errs) if errs else None
    targets = {"paper MP-PDE": (paper.get("MP-PDE") or [None])[0], "paper FNO-PF": (paper.get("FNO-PF") or [None])[0],
               "our classical": classical, "paper_steps": PAPER_BUDGET["optimizer_steps"]}
    for n_train, repeat in budgets:
        steps = optimizer_steps(n_train, repeat, a.batch_size, a.epochs)
        if find_point(points, n_train, repeat, a.epochs) is not None:
            continue
        run = Path(a.runs) / f"{eq.name}_nx{a.nx}_{a.model}{recipe}_{n_train}x{repeat}x{a.epochs}"
        last = run / "checkpoints" / "last.ckpt"
        cfg = neural_config(eq.name, a.nx, a.model, n_train=n_train, n_valid=a.n_valid, seed=a.seed, cache=a.cache,
                            epochs=a.epochs, batch_size=a.batch_size, repeat=repeat, max_unroll=a.max_unroll,
                            lr=a.lr, augment=a.augment, ema_decay=a.ema_decay, accelerator=a.accelerator,
                            threads=a.threads)
        fitted = train(cfg, out=run, resume=last.exists())
        ckpt, train_s = fitted.best, fitted.train_seconds  # training time summed over resumes
        res = evaluate(ckpt, eq.name, a.nx, n_test=a.n_test, seed=a.seed, cache=a.cache, timing=False)
        points.append({"n_train": n_train, "repeat": repeat, "epochs": a.epochs, "optimizer_steps": steps,
                       "error": res["accumulated_error"], "error_se": res["accumulated_error_se"],
                       "checkpoint": str(ckpt),
                       "train_wall_s": train_s, "s_per_step": train_s / steps})
        points.sort(key=lambda p: p["optimizer_steps"])
        print(key, a.model, steps, "steps ->", res["accumulated_error"], f"({train_s} s)", flush=True)
    # the fit uses the points with the most training trajectories only: fewer trajectories is a different
    # (data-limited) curve, and mixing them overstates the slope
    n_fit = max((p["n_train"] for p in points), default=0)
    fitted = [p for p in points if p["n_train"] == n_fit]
    fit = power_law([p["optimizer_steps"] for p in fitted], [p["error"] for p in fitted])
    step_s = float(np.median([p["s_per_step"] for p in points])) if points else None
    estimates = {}
    for label in ("paper MP-PDE", "paper FNO-PF"):
        need = steps_for(targets[label], fit) if targets[label] else None
        estimates[label] = {"error": targets[label], "steps_extrapolated": need,
                            "cpu_hours_extrapolated": None if need is None or step_s is None else need * step_s / 3600}
    write_result(name, {
        "cell": key, "model": a.model, "epochs": a.epochs, "batch_size": a.batch_size, "lr": a.lr,
        "max_unroll": a.max_unroll, "augment": a.augment, "ema_decay": a.ema_decay,
        "n_test": a.n_test, "accelerator": a.accelerator, "points": points, "targets": targets,
        "power_law_fit": None if fit is None else {"a": fit[0], "b": fit[1], "form": "error = a * steps^-b",
                                                   "n_train": n_fit, "points": len(fitted)},
        "median_s_per_step": step_s, "extrapolation": estimates,
    }, seed=a.seed, sweep=True, notes=[NOTE, *(n for n in notes if n != NOTE)])
    plot(points, fit, n_fit, targets, SWEEPS / f"{name}.png",
         f"{a.model}{recipe} on {key}: error vs training budget (CPU, {a.epochs} epochs)")
    print(json.dumps(estimates, indent=1))


if __name__ == "__main__":
    main()
