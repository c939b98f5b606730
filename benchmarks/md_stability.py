"""MD stability: 10 replicas x 100 ps of ethanol at 500 K (0.5 fs) with the benchmark force field.

Target: 10/10 replicas stable (no monitor violation). Reports each replica's stable time, and the bond-length
and bond-angle distributions of the stable replicas against the rMD17 ethanol test set (mean, std and the
1-D Wasserstein distance per bond/angle type), with a PNG of the histograms.

The run checkpoints (``restart.pt`` every ``--traj-every`` steps); re-running the same command resumes it.
``--ps`` shortens the run when the machine's time does not allow 100 ps (the JSON records what was run).

Usage:
    COMPSCOPE_DATA=/work/shared/data nice -n 10 python benchmarks/md_stability.py --model PATH/model.pt
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

if not __package__:  # run as `python benchmarks/<name>.py`: put the repository root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import ROOT, write_result  # noqa: E402


def _angles(bonds: np.ndarray) -> np.ndarray:
    """Bonded angle triples (i, j, k) with j the central atom, shape (A, 3)."""
    nb: dict[int, set[int]] = {}
    for i, j in bonds:
        nb.setdefault(int(i), set()).add(int(j))
        nb.setdefault(int(j), set()).add(int(i))
    out = []
    for j, ns in nb.items():
        ns = sorted(ns)
        for a in range(len(ns)):
            for b in range(a + 1, len(ns)):
                out.append((ns[a], j, ns[b]))
    return np.asarray(out, dtype=int)


def geometry(pos: np.ndarray, species: np.ndarray, bonds: np.ndarray, angles: np.ndarray) -> dict[str, np.ndarray]:
    """Bond lengths (Å) and angles (deg) by type over frames ``pos`` (T, n, 3)."""
    from ase.data import chemical_symbols as sym

    out: dict[str, list] = {}
    for i, j in bonds:
        a, b = sorted([sym[species[i]], sym[species[j]]])
        out.setdefault(f"{a}-{b}", []).append(np.linalg.norm(pos[:, j] - pos[:, i], axis=-1))
    for i, j, k in angles:
        a, c = sorted([sym[species[i]], sym[species[k]]])
        u, v = pos[:, i] - pos[:, j], pos[:, k] - pos[:, j]
        cos = (u * v).sum(-1) / np.linalg.norm(u, axis=-1) / np.linalg.norm(v, axis=-1)
        out.setdefault(f"{a}-{sym[species[j]]}-{c}", []).append(np.degrees(np.arccos(np.clip(cos, -1, 1))))
    return {k: np.concatenate(v) for k, v in out.items()}


def find_bonds_from(atoms) -> np.ndarray:
    from compscope.data import AtomicGraph
    from compscope.md import find_bonds

    return find_bonds(AtomicGraph.from_atoms(atoms, 3.0)).numpy()


def plot(md: dict, ref: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted(md)
    n = len(keys)
    cols = 4
    fig, axes = plt.subplots((n + cols - 1) // cols, cols, figsize=(3.2 * cols, 2.4 * ((n + cols - 1) // cols)))
    for ax, k in zip(axes.ravel(), keys):
        lo, hi = np.percentile(np.concatenate([md[k], ref[k]]), [0.1, 99.9])
        ax.hist(ref[k], bins=50, range=(lo, hi), density=True, color="0.6", label="rMD17 test")
        ax.hist(md[k], bins=50, range=(lo, hi), density=True, histtype="step", color="C3", lw=1.5, label="MD 500 K")
        ax.set_title(k, fontsize=9)
        ax.set_yticks([])
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    axes.ravel()[0].legend(fontsize=7)
    fig.suptitle("ethanol: bond lengths (Å) and angles (deg), MD vs rMD17 test set", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "benchmarks/work/md/ethanol_small/model.pt"))
    ap.add_argument("--replicas", type=int, default=10)
    ap.add_argument("--ps", type=float, default=100.0)
    ap.add_argument("--dt", type=float, default=0.5)
    ap.add_argument("--temperature", type=float, default=500.0)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--traj-every", type=int, default=100)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/work/md/stability"))
    ap.add_argument("--fresh", action="store_true", help="start over instead of resuming an existing run")
    ap.add_argument("--max-minutes", type=float, default=None,
                    help="stop (resumably) after this wall time; the JSON records how far the run got")
    ap.add_argument("--chunk-ps", type=float, default=0.5, help="ps between budget checks")
    args = ap.parse_args()

    import torch
    from ase.io import read
    from scipy.stats import wasserstein_distance

    from compscope.data import dataset_path
    from compscope.md import load_potential, read_h5_observables, simulate
    from compscope.runtime import configure_threads

    configure_threads(args.threads)
    test_path = dataset_path("rmd17", "ethanol_test.xyz")
    ref_frames = read(test_path, ":")
    start = ref_frames[0]
    out = Path(args.out)
    steps = int(round(args.ps * 1000.0 / args.dt))
    model = load_potential(args.model, dtype=getattr(torch, args.dtype))
    resume = (out / "restart.pt").exists() and not args.fresh
    t0 = time.time()
    chunk = max(args.traj_every, int(round(args.chunk_ps * 1000.0 / args.dt)) // args.traj_every * args.traj_every)
    done = 0
    if resume:
        from compscope.md import load_restart

        done = int(load_restart(out / "restart.pt")["step"])
    while True:
        target = min(steps, done + chunk)
        res = simulate(model, start, steps=target, dt=args.dt, temperature=args.temperature, replicas=args.replicas,
                       integrator="langevin", friction=0.01, out=out, traj_every=args.traj_every, resume=resume,
                       progress=True, plots=target >= steps, extxyz=False, seed=0)
        done, resume = res.steps, True
        over = args.max_minutes is not None and time.time() - t0 > 60.0 * args.max_minutes
        if done >= steps or res.n_stable == 0 or over:
            break
    if target < steps:
        from compscope.md import plot_run

        plot_run(out / "trajectory.h5", out, find_bonds_from(start), dt_fs=args.dt)
    wall = time.time() - t0

    bonds = find_bonds_from(start)
    angles = _angles(bonds)
    species = start.get_atomic_numbers()
    obs = read_h5_observables(out / "trajectory.h5")
    n = len(start)
    # every replica contributes its frames up to its last good step (all of them for stable replicas)
    burn = max(1, len(obs["step"]) // 10)  # drop the first 10 % (equilibration at 500 K)
    T = len(obs["step"])
    pos_all = obs["positions"].reshape(T, args.replicas, n, 3)
    good = obs["step"][:, None] <= np.array([r["stable_steps"] for r in res.summary])[None, :]  # (T, R)
    good[:burn] = False
    pos = pos_all[good]  # (frames, n, 3)
    md = geometry(pos, species, bonds, angles) if len(pos) else {}
    ref = geometry(np.stack([a.get_positions() for a in ref_frames]), species, bonds, angles)
    dist = {k: {"md_mean": float(md[k].mean()), "md_std": float(md[k].std()), "ref_mean": float(ref[k].mean()),
                "ref_std": float(ref[k].std()), "wasserstein": float(wasserstein_distance(md[k], ref[k]))}
            for k in sorted(md)}
    png = out / "geometry_vs_rmd17.png"
    if md:
        plot(md, ref, png)
    payload = {
        "system": "rMD17 ethanol", "temperature_K": args.temperature, "dt_fs": args.dt, "replicas": args.replicas,
        "target_ps": args.ps, "steps": res.steps, "simulated_ps_per_replica": res.steps * args.dt / 1000.0,
        "n_stable": res.n_stable,
        "target_10_of_10_stable_met": res.n_stable == args.replicas and res.steps * args.dt >= 100_000.0,
        "complete": res.steps >= steps,
        "replica_summary": res.summary, "wall_s_this_invocation": wall,
        "ns_per_day_per_replica_last_chunk": res.ns_per_day,
        "model": args.model, "dtype": args.dtype, "frames_used": int(len(pos)),
        "reference": "rMD17 ethanol test set (1000 frames)", "distributions": dist,
        "plots": [str(png), str(out / "energy_temperature.png")],
    }
    print(write_result("md_stability", payload, seed=0))


if __name__ == "__main__":
    main()
