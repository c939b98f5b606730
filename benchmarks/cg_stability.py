"""CG stability (issue #22): R replicas x T of a CG model at the chosen step, resumable over sessions, with a report.

Runs :func:`compscope.md.simulate_dense` (BAOAB Langevin, the engine's stability monitor every ``--check-every``
steps) in chunks of ``--chunk-ns`` per replica until every replica has ``--ns``; a rerun continues from the run
folder's restart file, ``--report-only`` writes the JSON from the folder as it is (``complete`` false while the run
is short of its target). The report, from the saved frames (``--frame-ps`` apart):

- replicas still stable (the monitor stops a replica at a bond stretch, close contact, temperature runaway or NaN;
  its last good frame is kept), simulated ns per replica, CPU seconds and ns/day of the whole batch;
- every prior bond's length over all frames: minimum, maximum and the largest deviation from the prior's rest
  length in units of the bond's thermal width ``sqrt(kT / k)``, beside the same numbers in the training frames;
- phi/psi: slow-basin population and transitions (``compscope.analysis.ess_two_state``) and, with ``--ref``, the
  Ramachandran JS (64 x 64) of all frames against the reference's frames.

Usage::

    COMPSCOPE_NUM_THREADS=1 python -m benchmarks.cg_stability --model runs/cg/model.pt --cg cg.h5 \\
        --replicas 10 --ns 1000 --dt 4 --out work/cg_stability --ref ala2_obc_dense.h5

On two cores: the same command with ``--parts 2 --part 0`` and ``--parts 2 --part 1`` in two processes (replicas
0-4 and 5-9, same start frames, seeds SEED and SEED + 1, folders OUT/part_0 and OUT/part_1), then ``--parts 2
--report-only`` for one report over both.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from benchmarks._common import write_result


def _bond_stats(x: np.ndarray, bonds: np.ndarray, r0: np.ndarray, width: np.ndarray) -> list[dict]:
    """Per bond: min / max length over frames x (F, n, 3) and the largest |r - r0| in thermal widths."""
    rows = []
    for (i, j), a, w in zip(bonds, r0, width):
        r = np.linalg.norm(x[:, j] - x[:, i], axis=-1)
        rows.append({"beads": [int(i), int(j)], "r0": float(a), "thermal_width": float(w), "min": float(r.min()),
                     "max": float(r.max()), "max_deviation_widths": float(np.abs(r - a).max() / w)})
    return rows


def _frames(run: Path, replicas: int, n_beads: int) -> tuple[np.ndarray, np.ndarray]:
    """Saved positions (R, T, n, 3) of the run folder and the step of each frame."""
    import h5py

    with h5py.File(run / "trajectory.h5", "r") as h5:
        n = int(h5.attrs["n_frames"])
        pos = h5["particles/all/position/value"][:n]
        step = h5["particles/all/position/step"][:n]
    return pos.reshape(n, replicas, n_beads, 3).transpose(1, 0, 2, 3), step


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="CG model (model.pt or run folder)")
    ap.add_argument("--cg", required=True, help="the model's training CG file (start frames, bond statistics)")
    ap.add_argument("--replicas", type=int, default=10)
    ap.add_argument("--ns", type=float, default=1000.0, help="ns per replica")
    ap.add_argument("--dt", type=float, default=4.0, help="fs")
    ap.add_argument("--chunk-ns", type=float, default=10.0, help="ns per replica between progress lines")
    ap.add_argument("--frame-ps", type=float, default=10.0, help="ps between saved frames")
    ap.add_argument("--check-every", type=int, default=500, help="steps between the monitor's checks")
    ap.add_argument("--ref", default=None, help="all-atom reference HDF5 (its phi/psi) for the Ramachandran JS")
    ap.add_argument("--out", required=True, help="run folder (resumed when it holds a run)")
    ap.add_argument("--report-only", action="store_true", help="write the JSON from the run folder, run nothing")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="cg_stability")
    ap.add_argument("--note", default="")
    ap.add_argument("--parts", type=int, default=1,
                    help="split the replicas over this many processes (run folders OUT/part_K, seeds SEED + K)")
    ap.add_argument("--part", type=int, default=None, help="with --parts: the part this process runs (0-based)")
    args = ap.parse_args(argv)
    if args.parts < 1 or args.replicas < args.parts:
        ap.error(f"--parts must be between 1 and --replicas ({args.replicas})")
    if args.parts > 1 and args.part is None and not args.report_only:
        ap.error("--parts > 1 runs one part per process: give --part K (0 to parts - 1), or --report-only")
    if args.part is not None and not 0 <= args.part < args.parts:
        ap.error(f"--part must be in 0..{args.parts - 1}")

    import torch
    from ase import Atoms, units

    from compscope.analysis import basin_indicator, ess_two_state, ramachandran_js
    from compscope.cg import backbone_dihedrals, load_cg
    from compscope.md import StabilityMonitor, load_potential, read_h5_observables, simulate_dense

    torch.set_num_threads(1)
    pot = load_potential(args.model)
    data = load_cg(args.cg)
    train = np.concatenate(data.positions)
    every = max(1, int(round(args.frame_ps * 1000.0 / args.dt)))
    total = int(round(args.ns * 1e6 / args.dt / every)) * every
    chunk = max(every, int(round(args.chunk_ns * 1e6 / args.dt / every)) * every)
    # the same start frames whatever the split; part k runs its slice of them with seed + k
    pick = np.random.default_rng(args.seed).choice(len(train), size=args.replicas, replace=False)
    slices = np.array_split(np.arange(args.replicas), args.parts)
    folders = [Path(args.out)] if args.parts == 1 else [Path(args.out) / f"part_{k}" for k in range(args.parts)]

    def steps_done(run: Path) -> int:
        if (run / "trajectory.h5").exists() and (run / "restart.pt").exists():
            return int(read_h5_observables(run / "trajectory.h5")["step"][-1])
        return 0

    def cpu_of(run: Path) -> float:
        return json.loads((run / "cpu.json").read_text())["cpu_s"] if (run / "cpu.json").exists() else 0.0

    if not args.report_only:
        k = args.part or 0
        run, mine, seed = folders[k], slices[k], args.seed + (k if args.parts > 1 else 0)
        run.mkdir(parents=True, exist_ok=True)
        done, cpu = steps_done(run), cpu_of(run)
        starts = [Atoms(numbers=pot.atomic_numbers, positions=train[pick[i]]) for i in mine]
        while done < total:
            target = min(total, done + chunk)
            c0 = time.process_time()
            res = simulate_dense(pot, starts, steps=target, dt=args.dt, temperature=300.0, replicas=len(mine),
                                 friction=0.01, seed=seed, out=run, traj_every=every,
                                 resume=(run / "restart.pt").exists(), check_inputs=False,
                                 monitor=StabilityMonitor(check_every=args.check_every))
            cpu += time.process_time() - c0
            (run / "cpu.json").write_text(json.dumps({"cpu_s": cpu}))
            done = target
            print(f"{time.strftime('%H:%M:%S')} {done * args.dt * 1e-6:.4g} of {total * args.dt * 1e-6:.4g} ns per "
                  f"replica, {res.n_stable}/{len(mine)} stable, {cpu:.0f} CPU-s", flush=True)
            if res.n_stable == 0:
                break
    # the report: every part that has run, its replicas numbered as in the unsplit run
    parts = [(k, f) for k, f in enumerate(folders) if (f / "summary.json").exists()]
    if not parts:
        raise SystemExit(f"no run in {args.out} yet: run it (with --part K for each part) before --report-only")
    good, stopped, n_stable, cpu, dones, ns_all, busy = [], {}, 0, 0.0, [], 0.0, []
    for k, run in list(parts):
        summary = json.loads((run / "summary.json").read_text())
        try:  # a part still running holds its trajectory file locked for writing: report without it
            x, step = _frames(run, len(slices[k]), len(pot.atomic_numbers))
            n_done = steps_done(run)
        except OSError as err:
            print(f"part {k} is busy ({type(err).__name__}): reported without it; run --report-only after it ends")
            busy.append(k)
            parts.remove((k, run))
            continue
        for r in summary["replica_summary"]:
            if r.get("stopped_at_step") is not None:
                stopped[int(slices[k][r["replica"]])] = r["stopped_at_step"]
        good += [x[j][step < stopped.get(int(i), np.inf)] for j, i in enumerate(slices[k])]
        n_stable += summary["n_stable"]
        cpu += cpu_of(run)
        dones.append(n_done)
        ns_all += dones[-1] * args.dt * 1e-6 * len(slices[k])
    if not parts:
        raise SystemExit(f"every part in {args.out} is busy (running): --report-only after they end")
    done = min(dones)
    frames = np.concatenate(good)
    prior = pot.prior
    bonds = prior.bonds.cpu().numpy().reshape(-1, 2)
    r0, k = prior.bond_r0.detach().double().numpy(), prior.bond_k.detach().double().numpy()
    width = np.sqrt(units.kB * 300.0 / np.maximum(k, 1e-12))  # E = k (r - r0)^2 / 2 in eV/A^2
    phi, psi = backbone_dihedrals(frames)
    chains = [backbone_dihedrals(g)[0] for g in good if len(g) > 1]
    t_min = min(len(c) for c in chains)
    two = ess_two_state(basin_indicator(np.stack([c[:t_min] for c in chains])).astype(np.float64))
    ns_done = done * args.dt * 1e-6
    payload = {"complete": done >= total and len(parts) == args.parts and n_stable == args.replicas,
               "model": str(args.model), "replicas": args.replicas, "n_stable": n_stable, "dt_fs": args.dt,
               "parts": args.parts, "parts_reported": [k for k, _ in parts], "parts_busy": busy,
               "simulated_ns_per_replica": ns_done, "target_ns_per_replica": args.ns,
               "stopped": {str(r): s for r, s in stopped.items()}, "frames": int(len(frames)),
               "frame_ps": every * args.dt / 1000.0, "check_every_steps": args.check_every,
               "cpu_s": cpu, "ns_per_day_all_replicas_cpu": ns_all / max(cpu, 1e-9) * 86400.0,
               "bonds_run": _bond_stats(frames, bonds, r0, width), "bonds_training": _bond_stats(train, bonds, r0,
                                                                                              width),
               "slow_basin": {"population": float(basin_indicator(phi).mean()), "entries": two["n01"],
                              "exits": two["n10"], "ess_two_state": two["ess"]}}
    if args.ref:
        from benchmarks.md_reference_dense import read_reference

        rphi, rpsi, _ = read_reference(Path(args.ref))
        payload["ramachandran_js_64_vs_reference"] = ramachandran_js(phi, psi, rphi.ravel(), rpsi.ravel())
        payload["reference"] = str(args.ref)
    notes = [args.note] if args.note else []
    path = write_result(args.name, payload, seed=args.seed, notes=notes)
    print(json.dumps({k: payload[k] for k in ("complete", "n_stable", "simulated_ns_per_replica", "cpu_s")}))
    return path


if __name__ == "__main__":
    print(main())
