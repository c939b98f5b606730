"""Which test trajectories carry a neural PDE solver's accumulated error, and how does it follow the coefficients?

For E3 (alpha, beta, gamma drawn per trajectory) the mean accumulated error can be dominated by a few hard
trajectories (near-inviscid shocks, strong dispersion). This script rolls trained solvers out on the test split,
scores every trajectory alone, and reports per solver: the share of the total error held by the worst 10 % of
trajectories, the Spearman rank correlation of the error with each coefficient, the mean error per quartile of
each coefficient, and the same for the classical WENO5 solver and the hold-last yardstick on the same
trajectories. Not a test: a diagnostic (a probe), written to ``benchmarks/results/sweeps/<name>.json`` + ``.png``
(``--note`` adds to its ``notes``).

    nice -n 5 python -m benchmarks.pde_error_breakdown \
        --checkpoints benchmarks/.pde_runs/2048/E3_nx50_fno-small/checkpoints/best.ckpt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

if not __package__:  # run as `python benchmarks/<name>.py`: put the repository root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import SWEEPS, write_result  # noqa: E402
from benchmarks.pde_mp_pde import N0, hold_last, weno_inputs  # noqa: E402
from compscope.pde import trajectory_errors  # noqa: E402


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman rank correlation (None when one side is constant, e.g. alpha in E1)."""
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def breakdown(err: np.ndarray, cond: np.ndarray, names: tuple[str, ...]) -> dict:
    """Summary of per-trajectory errors ``err`` (B,) against coefficients ``cond`` (B, P)."""
    order = np.sort(err)[::-1]
    top = max(1, len(err) // 10)
    out = {"mean": float(err.mean()), "median": float(np.median(err)),
           "top10pct_share": float(order[:top].sum() / err.sum()),
           "mean_without_top10pct": float(order[top:].mean()), "by_coefficient": {}}
    for j, name in enumerate(names):
        c = cond[:, j]
        if np.ptp(c) == 0:
            continue
        edges = np.quantile(c, [0.0, 0.25, 0.5, 0.75, 1.0])
        q = np.clip(np.searchsorted(edges, c, side="right") - 1, 0, 3)
        out["by_coefficient"][name] = {
            "spearman": spearman(c, err),
            "quartile_edges": edges.tolist(),
            "quartile_mean_error": [float(err[q == i].mean()) for i in range(4)],
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoints", nargs="+", required=True, help="trained solvers of one cell (same eq, nx)")
    ap.add_argument("--n-test", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default=None)
    ap.add_argument("--name", default=None, help="JSON name (default pde_error_breakdown_<eq>_nx<nx>)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--note", action="append", default=[],
                    help="free text added to the JSON's notes (repeatable)")
    a = ap.parse_args()

    from compscope.pde import evaluate, generate, get_equation, load_split, weno_solve_batch
    from compscope.runtime import configure_threads

    configure_threads(a.threads)
    solvers, eq_name, nx = {}, None, None
    for ckpt in a.checkpoints:
        res = evaluate(ckpt, n_test=a.n_test, seed=a.seed, cache=a.cache, timing=False)
        if eq_name is not None and (res["equation"], res["nx"]) != (eq_name, nx):
            raise SystemExit(f"{ckpt} is for {res['equation']} nx={res['nx']}, the first for {eq_name} nx={nx}: "
                             "give checkpoints of one cell")
        eq_name, nx = res["equation"], res["nx"]
        label = Path(ckpt).resolve().parents[1].name
        solvers[label] = trajectory_errors(res["prediction"], res["reference"], N0)
    eq = get_equation(eq_name)
    path = generate(eq.name, "test", a.n_test, a.seed, a.cache, progress=False)
    te = load_split(path, nx)
    ref = te["u"]
    cond = te["cond"]  # (B, P) in eq.param_names order
    u0, args = weno_inputs(eq, nx, te["params"])
    solvers["WENO5"] = trajectory_errors(weno_solve_batch(u0, eq.times, *args), ref, N0)
    solvers["hold-last"] = trajectory_errors(hold_last(ref), ref, N0)

    names = eq.param_names
    result = {"equation": eq.name, "nx": nx, "n_test": a.n_test, "given_steps": N0, "param_names": list(names),
              "checkpoints": a.checkpoints,
              "solvers": {k: breakdown(v, cond, names) for k, v in solvers.items()},
              "per_trajectory": {"cond": cond.tolist(), **{k: v.tolist() for k, v in solvers.items()}}}
    name = a.name or f"pde_error_breakdown_{eq.name}_nx{nx}"
    out = write_result(name, result, seed=a.seed, notes=a.note, sweep=True)
    _plot(solvers, cond, names, SWEEPS / f"{name}.png", f"{eq.name} nx={nx}: accumulated error per test trajectory")
    for k, s in result["solvers"].items():
        corr = ", ".join(f"{n} {v['spearman']:+.2f}" for n, v in s["by_coefficient"].items())
        print(f"{k}: mean {s['mean']:.3g}, median {s['median']:.3g}, worst 10% hold {s['top10pct_share']:.0%}; "
              f"Spearman {corr}")
    print(out)


def _plot(solvers: dict, cond: np.ndarray, names, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [j for j in range(cond.shape[1]) if np.ptp(cond[:, j]) > 0]
    fig, axes = plt.subplots(1, max(1, len(cols)), figsize=(4.2 * max(1, len(cols)), 3.6), squeeze=False,
                             sharey=True)
    for ax, j in zip(axes[0], cols):
        for label, err in solvers.items():
            ax.scatter(cond[:, j], err, s=9, alpha=0.7, label=label)
        ax.set_xlabel(names[j])
        ax.set_yscale("log")
    if not cols:  # fixed coefficients (E1): the trajectories ranked by error instead
        ax = axes[0, 0]
        for label, err in solvers.items():
            ax.plot(np.sort(err)[::-1], marker=".", ms=3, lw=0.8, label=label)
        ax.set_xlabel("test trajectory, by decreasing error")
        ax.set_yscale("log")
    axes[0, 0].set_ylabel("accumulated error (t >= 50)")
    axes[0, -1].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
