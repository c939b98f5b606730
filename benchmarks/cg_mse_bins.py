"""Free-energy MSE of a `cg_alanine` result on bins populated with at least c held-out frames, beside the exact model.

Issue #22 asks for the Ramachandran free-energy MSE on "populated bins" <= 0.1 (kcal/mol)^2. `cg_alanine` scores
every bin populated in both histograms, and an exact CG model (windows of the reference itself,
:func:`benchmarks.cg_alanine.evaluation_floor`) scores 0.17 that way: the free energy of a bin holding a handful of
correlated frames is noise, and an unweighted mean over bins counts each such bin as much as a basin's. This script
rescores the runs of an earlier result (their evaluation files, the frames the held-out comparison used) and the
exact model on bins with at least ``c`` frames of the held-out block, for several ``c``, and says how much of the
block's probability those bins hold, so that "populated" can be chosen knowingly::

    python -m benchmarks.cg_mse_bins --result benchmarks/results/cg_alanine_1us_10000.json \\
        --ref ala2_obc_dense.h5 --work acc_v3,acc_v3_23 --min-counts 1 10 100 1000
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from benchmarks._common import write_result


def _counts(phi: np.ndarray, psi: np.ndarray, bins: int) -> np.ndarray:
    from compscope.analysis import ramachandran_histogram

    return ramachandran_histogram(phi, psi, bins) * len(phi)


def _scores(h: np.ndarray, ref: np.ndarray, min_counts: list[int]) -> dict:
    from compscope.cg import free_energy_mse

    out = {}
    for c in min_counts:
        where = ref >= c
        both = where & (h > 0)
        out[str(c)] = {"mse": free_energy_mse(h / h.sum(), ref / ref.sum(), where=where) if both.any() else None,
                       "bins": int(both.sum())}
    return out


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--result", required=True, help="a cg_alanine result JSON")
    ap.add_argument("--ref", required=True, help="the reference HDF5 it was measured on")
    ap.add_argument("--work", required=True, help="comma-separated folders holding the runs' TAG_eval.h5 files")
    ap.add_argument("--min-counts", type=int, nargs="+", default=[1, 10, 100, 1000])
    ap.add_argument("--bins", type=int, default=64)
    ap.add_argument("--draws", type=int, default=10, help="draws of the exact model (reference windows)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default=None, help="result name (default: the result's name + _mse_bins)")
    args = ap.parse_args(argv)
    if min(args.min_counts) < 1:
        ap.error("--min-counts: each at least 1 (1 is cg_alanine's own MSE: every bin populated in both)")
    import h5py

    from benchmarks.cg_alanine import floor_windows
    from compscope.cg import backbone_dihedrals, fold_split, read_frames

    result = Path(args.result)
    doc = json.loads(result.read_text())
    with h5py.File(args.ref, "r") as f:
        reps = f["replicas"]
        names = sorted(reps)
        lengths = [len(reps[r]["phi"]) for r in names]
        if sum(lengths) != doc["reference_frames"]:
            raise SystemExit(f"{args.ref} has {sum(lengths)} frames, {result.name} was measured on "
                             f"{doc['reference_frames']}")
        phi = np.concatenate([reps[r]["phi"][:] for r in names])
        psi = np.concatenate([reps[r]["psi"][:] for r in names])
    works = [Path(w) for w in args.work.split(",")]
    st = doc["settings"]
    window = st["steps"] // st["traj_every"] + 1 - st["burn_frames"]  # as cg_alanine's comparison
    blocks, runs = {}, []
    for fold in sorted({r["fold"] for r in doc["runs"]}):
        _, held = fold_split(lengths, fold)
        ref = _counts(phi[held], psi[held], args.bins)
        kept = {str(c): float(ref[ref >= c].sum() / ref.sum()) for c in args.min_counts}
        draws = [_scores(_counts(phi[idx], psi[idx], args.bins), ref, args.min_counts)
                 for idx in floor_windows(lengths, fold, st["replicas"], window, args.draws, args.seed)]
        floor = {c: {"mse": float(np.mean([d[c]["mse"] for d in draws])),
                     "mse_std": float(np.std([d[c]["mse"] for d in draws]))} for c in kept}
        blocks[str(fold)] = {"frames": int(len(held)), "probability_in_bins": kept, "exact_model": floor}
        for run in doc["runs"]:
            if run["fold"] != fold or run.get("failed"):
                continue
            tag = f"f{fold}_{run['method']}_{run.get('size', run['n_train'])}"
            found = [w / f"{tag}_eval.h5" for w in works if (w / f"{tag}_eval.h5").exists()]
            if not found:
                raise SystemExit(f"no {tag}_eval.h5 in {', '.join(map(str, works))}: give the runs' --work folders")
            x = read_frames(found[0])[0]
            runs.append({"fold": fold, "method": run["method"], "size": run.get("size", run["n_train"]),
                         "cg_frames": len(x), **{"by_min_count": _scores(_counts(*backbone_dihedrals(x), args.bins),
                                                                          ref, args.min_counts)}})
    summary = {}
    for r in runs:
        summary.setdefault(f"{r['method']}@{r['size']}", []).append(r)
    summary = {k: {c: float(np.mean([r["by_min_count"][c]["mse"] for r in rs])) for c in map(str, args.min_counts)}
               for k, rs in summary.items()}
    summary["exact_model"] = {str(c): float(np.mean([b["exact_model"][str(c)]["mse"] for b in blocks.values()]))
                              for c in args.min_counts}
    summary["probability_in_bins"] = {str(c): float(np.mean([b["probability_in_bins"][str(c)]
                                                             for b in blocks.values()])) for c in args.min_counts}
    return write_result(args.name or f"{result.stem}_mse_bins", {
        "result": result.name, "reference_frames": int(sum(lengths)), "bins": args.bins,
        "min_counts": args.min_counts, "window_frames": window, "replicas": st["replicas"], "draws": args.draws,
        "blocks": blocks, "runs": runs, "summary": summary, "target_mse": 0.1}, seed=args.seed)


if __name__ == "__main__":
    print(main())
