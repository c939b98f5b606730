"""Committee uncertainty on acac: train N members at 300 K, test at 300 K and 600 K.

Reports, per test set, the Spearman rank correlation between each frame's largest per-atom force standard deviation
(committee spread) and its largest force error, and how many 600 K frames a threshold set on the 300 K spread flags.

    COMPSCOPE_DATA=../shared/data python benchmarks/forcefield_committee_acac.py --n 3 --minutes 10
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

if not __package__:  # run as `python benchmarks/<name>.py`: put the repository root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import ROOT, WORK, write_result  # noqa: E402


def main() -> None:
    from compscope.data import dataset_path
    from compscope.forcefield import evaluate_models, train_committee

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=3)
    ap.add_argument("--minutes", type=float, default=10.0, help="wall-clock budget per member")
    ap.add_argument("--parallel", type=int, default=1)
    ap.add_argument("--preset", default="small")
    args = ap.parse_args()
    out = WORK / f"acac_committee_{args.n}x{args.minutes:g}min"
    out.mkdir(parents=True, exist_ok=True)
    cfg = yaml.safe_load((ROOT / "configs" / "forcefield" / "ethanol.yaml").read_text())
    cfg["model"]["preset"] = args.preset
    cfg["dtype"] = "float32"
    cfg["data"]["init_args"].update({
                        "train": str(dataset_path("acac", "train_300K.xyz")), "test": None, "n_valid": 50,
                        "e0": str(dataset_path("acac", "isolated_atoms.xyz"))})
    cfg["trainer"].update({"max_time_minutes": args.minutes, "early_stopping_patience": 0, "progress_bar": False})
    cfg_path = out / "member.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    models = train_committee(cfg_path, n=args.n, out=out, parallel=args.parallel)
    res300 = evaluate_models(models, dataset_path("acac", "test_MD_300K.xyz"), threshold=1e9)
    thr = res300["uncertainty"]["max_force_std"]  # the largest spread seen in-distribution
    res600 = evaluate_models(models, dataset_path("acac", "test_MD_600K.xyz"), threshold=thr)
    payload = {"members": args.n, "minutes_per_member": args.minutes, "preset": args.preset,
               "test_300K": res300, "test_600K": res600, "threshold_from_300K_max_std": thr}
    path = write_result(f"forcefield_committee_acac_{args.n}x{args.minutes:g}min", payload, seed=0)
    for name, r in (("300K", res300), ("600K", res600)):
        u = r["uncertainty"]
        print(f"{name}: F MAE {r['forces_mae_meV_A']:.1f} meV/Å, mean max-std {u['mean_force_std']:.3f} eV/Å, "
              f"Spearman(std, error) {u.get('spearman_std_vs_max_force_error', float('nan')):.2f}, "
              f"flagged {u['flagged']}/{r['frames']}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
