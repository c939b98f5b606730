"""CG alanine dipeptide: score the models of ``+ibi`` cells before their IBI steps (issue #22 attribution).

The first IBI run of a ``cg_alanine ... +ibi`` cell (``<tag>_ibi0_traj.h5`` in its work folder) is a CG run of the
trained model before any correction of its (phi, psi) term: the same replicas and length as the evaluation run,
another seed. This script compares those runs with each fold's held-out block exactly as ``cg_alanine`` compares
its evaluation runs (same burn-in, same ``compscope.cg.compare``), so the gain of the IBI steps can be read off
without training again.

Usage::

    python -m benchmarks.cg_alanine_unrefined --work /work/cg-runs/acc2/final --method denoising+ofm+ibi \\
        --folds 1 2 3 0 --name cg_alanine_10k_cmap_unrefined
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmarks._common import write_result


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", required=True, help="the --work folder of the cg_alanine run")
    ap.add_argument("--method", default="denoising+ofm+ibi")
    ap.add_argument("--folds", type=int, nargs="+", default=[1, 2, 3, 0])
    ap.add_argument("--size", type=int, default=10000)
    ap.add_argument("--burn-frames", type=int, default=50)
    ap.add_argument("--name", default="cg_alanine_10k_cmap_unrefined")
    args = ap.parse_args(argv)

    from benchmarks.cg_alanine import _burned, _held_out, _summary
    from compscope.cg import compare

    work = Path(args.work)
    runs = []
    for fold in args.folds:
        tag = f"f{fold}_{args.method}_{args.size}"
        traj = work / f"{tag}_ibi0_traj.h5"
        if not traj.exists():
            continue
        held = work / f"f{fold}_held.h5"
        if not held.exists():
            _held_out(work / "cg.h5", fold, held)
        out = work / f"{tag}_ibi0_eval.h5"
        _burned(str(traj), args.burn_frames, out)
        cmp = compare(out, held)
        runs.append({"fold": fold, "method": args.method.replace("+ibi", "") + " (before IBI)",
                     "n_train": args.size,
                     **{k: v for k, v in cmp.items() if not k.startswith(("js bond", "js angle"))},
                     "bond_js_max": float(np.max([v for k, v in cmp.items() if k.startswith("js bond")])),
                     "angle_js_max": float(np.max([v for k, v in cmp.items() if k.startswith("js angle")]))})
    return write_result(args.name, {"settings": vars(args), "summary": _summary(runs), "runs": runs}, sweep=True,
                        notes=["CG runs of the trained models before the IBI steps (the first IBI run of each cell)"])


if __name__ == "__main__":
    print(main())
