"""Equilibrium start frames (and an independent check) for the dense alanine-dipeptide reference (issue #22).

The slow basin 1[0 < phi < 2.2] relaxes in ~3.5 ns in amber14 + OBC2 at 300 K, as long as one dense replica runs, so
the 1 µs dense reference inherits that basin's population from its start frames. Starting it from frames of an
implicit-solvent replica exchange at 300 K (the setting of ``cg_speed``: 4 temperatures 300-1000 K, OpenMM CPU, H
bonds rigid) starts it near equilibrium instead of from one PDB structure; the same frames are an OpenMM-engine
sample to check the finished reference against (``md_reference_dense --openmm``).

Two verbs:

- ``run``: run (or extend) replica-exchange run ``--run K`` (seed K) in ``WORK/remd_obc/run_0K`` until it has used
  ``--cpu-s`` CPU seconds; start several in parallel processes for several runs (one core each);
- ``write``: the 300 K frames after 10 % burn-in of every run in ``WORK/remd_obc`` to ``--out`` in the reference
  layout (``replicas/XXXX/positions, phi, psi, time_ps``; each run cut into ``--blocks`` groups, which the checks
  treat as replicas). Readable while runs go on.

Usage::

    python -m benchmarks.ala2_remd_starts run --work W --run 0 --cpu-s 800 &
    python -m benchmarks.ala2_remd_starts run --work W --run 1 --cpu-s 800 &
    wait; python -m benchmarks.ala2_remd_starts write --work W --out starts.h5
    compscope md reference alanine-dipeptide --engine dense --starts starts.h5 ...
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from benchmarks.cg_speed import REMD_OBC_SETTING, remd_obc_spec

EXCHANGE_PS = REMD_OBC_SETTING["steps_per_iteration"] * REMD_OBC_SETTING["timestep_fs"] / 1000.0


def run(work: Path, k: int, cpu_s: float) -> dict:
    from compscope.sampling import run_replica_exchange

    return run_replica_exchange(remd_obc_spec(work / "remd_obc" / f"run_{k:02d}", k), max_cpu_s=cpu_s)


def write(work: Path, out: Path, blocks: int) -> dict:
    runs = sorted((work / "remd_obc").glob("run_*"))
    if not runs:
        raise SystemExit(f"no replica-exchange run in {work / 'remd_obc'}: run the `run` verb first")
    before = os.environ.get("HDF5_USE_FILE_LOCKING")
    os.environ["HDF5_USE_FILE_LOCKING"] = "FALSE"  # read runs that are still writing (HDF5 reads it at each open)
    try:
        return _write(runs, out, blocks)
    finally:  # not for the rest of the process: other files keep their locks
        if before is None:
            os.environ.pop("HDF5_USE_FILE_LOCKING")
        else:
            os.environ["HDF5_USE_FILE_LOCKING"] = before


def _write(runs: list[Path], out: Path, blocks: int) -> dict:
    import h5py

    from compscope.analysis import ALANINE_DIPEPTIDE_PHI, ALANINE_DIPEPTIDE_PSI, basin_indicator, dihedral_angles
    from compscope.sampling import read_replica_exchange_run

    summary, g = [], 0
    tmp = out.with_suffix(".tmp.h5")
    with h5py.File(tmp, "w") as h5:
        h5.attrs.update(engine="openmmtools ParallelTemperingSampler, OpenMM CPU, amber14 + OBC2, H bonds rigid",
                        setting=json.dumps(REMD_OBC_SETTING), frames="300 K state, every exchange, 10 % burn-in")
        for rd in runs:
            head = read_replica_exchange_run(rd, 0)
            if head is None:
                continue
            n_it = int(head["n_iterations"])
            pos = read_replica_exchange_run(rd, n_it // 10)["positions"]
            phi = dihedral_angles(pos, ALANINE_DIPEPTIDE_PHI)
            psi = dihedral_angles(pos, ALANINE_DIPEPTIDE_PSI)
            slow = basin_indicator(phi).astype(int)  # the slow basin 1[0 < phi < 2.2]
            entries = int(slow[0] + (np.diff(slow) > 0).sum())
            summary.append({"run": rd.name, "iterations": n_it, "frames": int(len(pos)),
                            "slow_basin": float(slow.mean()), "slow_entries": entries})
            for idx in np.array_split(np.arange(len(pos)), max(1, min(blocks, len(pos)))):
                grp = h5.create_group(f"replicas/{g:04d}")
                grp["positions"], grp["phi"], grp["psi"] = pos[idx], phi[idx], psi[idx]
                grp["time_ps"] = EXCHANGE_PS * np.arange(len(idx))
                g += 1
    tmp.replace(out)
    return {"out": str(out), "groups": g, "runs": summary}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("verb", choices=["run", "write"])
    ap.add_argument("--work", type=Path, required=True, help="folder of the runs (WORK/remd_obc/run_XX)")
    ap.add_argument("--run", type=int, default=0, help="run: index and seed of the run")
    ap.add_argument("--cpu-s", type=float, default=800.0, help="run: CPU seconds of the run in all (a rerun extends)")
    ap.add_argument("--out", type=Path, default=None, help="write: the reference-layout HDF5 file")
    ap.add_argument("--blocks", type=int, default=4, help="write: groups per run")
    args = ap.parse_args(argv)
    if args.verb == "run":
        print(json.dumps(run(args.work, args.run, args.cpu_s)))
    else:
        if args.out is None:
            ap.error("write needs --out")
        print(json.dumps(write(args.work, args.out, args.blocks), indent=1))


if __name__ == "__main__":
    main()
