"""Short side-by-side training probes of force-field recipe variants on rMD17 ethanol (a benchmark, not a test).

Each variant is ``configs/forcefield/ethanol.yaml`` with dotted overrides (``model.max_ell=3``), trained on the
benchmark split (950 train / 50 valid, seed 0, as ``forcefield_rmd17.py``) for ``--minutes`` of wall-clock with one
torch thread, ``--parallel`` variants at a time (one per core). The JSON holds every variant's validation force MAE
per epoch and at equal wall-clock marks, so variants are compared per epoch (sample efficiency) and per second
(what a fixed budget buys). ``--mace-run`` adds mace-torch's per-epoch validation curve from an earlier
``forcefield_rmd17.py`` run directory for reference. Runs resume (rerun the same command).

Short probes rank recipes by early learning; the 120-min benchmark decides. Usage:

    COMPSCOPE_DATA=../shared/data python benchmarks/forcefield_probe.py --minutes 10 --tag ell \\
        --variant shipped= --variant ell2="model.max_ell=2,model.product_l_max=1"
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

if not __package__:  # run as `python benchmarks/<name>.py`: put the repository root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import ROOT, WORK, write_result  # noqa: E402
from benchmarks.forcefield_rmd17 import prepare_data  # noqa: E402


def parse_overrides(text: str) -> dict[str, object]:
    """``"model.max_ell=3,task.lr=0.005"`` -> ``{"model.max_ell": 3, "task.lr": 0.005}`` (values parsed as YAML)."""
    out: dict[str, object] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or key.count(".") != 1:
            raise SystemExit(f"override {item!r}: write SECTION.KEY=VALUE, e.g. model.max_ell=3")
        parsed = yaml.safe_load(value)
        if isinstance(parsed, str):  # YAML 1.1 reads "5e-3" as a string
            try:
                parsed = float(parsed)
            except ValueError:
                pass
        out[key] = parsed
    return out


def train_one(name: str, overrides: dict[str, object], minutes: float, out: Path) -> None:
    from compscope.data import dataset_path
    from compscope.forcefield import fit

    files = prepare_data()
    cfg = yaml.safe_load((ROOT / "configs" / "forcefield" / "ethanol.yaml").read_text())
    cfg["out"] = str(out)
    cfg["data"]["init_args"].update({
                        "train": str(files["train"]), "valid": str(files["valid"]), "test": None, "n_valid": None,
                        "energy_key": "REF_energy", "forces_key": "REF_forces",
                        "e0": str(dataset_path("rmd17", "isolated_atoms.xyz"))})
    cfg["trainer"].update({"max_time_minutes": minutes, "num_threads": 1, "progress_bar": False,
                           "early_stopping_patience": 0})
    for key, value in overrides.items():
        section, field = key.split(".")
        node = cfg[section] if section == "trainer" else cfg[section].setdefault("init_args", {})
        node[field] = value
    if not (out / "model.pt").exists():
        fit(cfg, resume=(out / "checkpoints" / "last.ckpt").exists())


def curve(run: Path) -> list[dict]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [{"epoch": r["epoch"], "time_s": r["time_s"], "val_f_mae_meV_A": r["val_f_mae_meV_A"],
             "val_e_mae_meV_atom": r["val_e_mae_meV_atom"], "lr": r["lr"]} for r in rows]


def mace_curve(run: Path) -> list[dict]:
    """mace-torch's per-epoch validation force MAE (meV/Å) from its results/*_train.txt."""
    rows = []
    for path in sorted((run / "results").glob("*_train.txt")):
        for line in path.read_text().splitlines():
            r = json.loads(line)
            if r.get("mode") == "eval" and r.get("epoch") is not None:
                rows.append({"epoch": r["epoch"], "val_f_mae_meV_A": 1000 * r["mae_f"],
                             "val_e_mae_meV_atom": 1000 * r["mae_e_per_atom"]})
    return rows


def at_marks(rows: list[dict], key: str, marks: list[float]) -> dict[str, float | None]:
    """Validation force MAE of the last row with ``key`` <= each mark (None before the first row and past the
    run's end)."""
    out = {}
    for m in marks:
        seen = [r for r in rows if r[key] <= m]
        out[str(m)] = seen[-1]["val_f_mae_meV_A"] if seen and rows[-1][key] >= m * 0.98 else None
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=OVERRIDES",
                    help="variant name and comma-separated SECTION.KEY=VALUE overrides (repeatable)")
    ap.add_argument("--parallel", type=int, default=2, help="variants trained at once (one thread each)")
    ap.add_argument("--tag", default="probe", help="work dirs probe_TAG_NAME, result sweeps/forcefield_probe_TAG.json")
    ap.add_argument("--mace-run", default=None, help="a mace_* run dir of forcefield_rmd17.py (reference curve)")
    ap.add_argument("--note", action="append", default=[], help="free text stored in the JSON's notes (repeatable)")
    ap.add_argument("--one", nargs=2, metavar=("NAME", "OVERRIDES"), help=argparse.SUPPRESS)  # worker mode
    args = ap.parse_args()
    if args.one:
        name, text = args.one
        train_one(name, parse_overrides(text), args.minutes, WORK / f"probe_{args.tag}_{name}")
        return
    variants = dict(v.partition("=")[::2] for v in (args.variant or ["shipped="]))
    for text in variants.values():
        parse_overrides(text)  # fail before any training
    prepare_data()
    queue, running = list(variants.items()), []
    while queue or running:
        while queue and len(running) < args.parallel:
            name, text = queue.pop(0)
            log = open(WORK / f"probe_{args.tag}_{name}.log", "w")  # noqa: SIM115 - closed when the run ends
            cmd = [sys.executable, __file__, "--minutes", str(args.minutes), "--tag", args.tag, "--one", name, text]
            running.append((name, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log))
        time.sleep(5)
        for item in [r for r in running if r[1].poll() is not None]:
            running.remove(item)
            item[2].close()
            if item[1].returncode:
                raise SystemExit(f"variant {item[0]} failed: see {WORK / f'probe_{args.tag}_{item[0]}.log'}")
    marks_s = [60 * args.minutes * f for f in (0.25, 0.5, 0.75, 1.0)]
    results = {}
    for name, text in variants.items():
        run = WORK / f"probe_{args.tag}_{name}"
        rows = curve(run)
        results[name] = {"overrides": parse_overrides(text), "epochs": rows[-1]["epoch"] + 1,
                         "s_per_epoch": rows[-1]["time_s"] / (rows[-1]["epoch"] + 1),
                         "val_f_at_seconds": at_marks(rows, "time_s", marks_s),
                         "val_f_at_epochs": at_marks(rows, "epoch", [10, 20, 40, 80, 160, 320]),
                         "final": rows[-1], "curve": rows}
        print(name, results[name]["epochs"], "epochs, final val F", round(rows[-1]["val_f_mae_meV_A"], 2))
    payload = {"minutes": args.minutes, "threads_per_variant": 1, "parallel": args.parallel, "variants": results}
    if args.mace_run:
        mace = mace_curve(Path(args.mace_run))
        payload["mace_reference"] = {"run": args.mace_run,
                                     "val_f_at_epochs": at_marks(mace, "epoch", [10, 20, 40, 80, 160, 320])}
    print(f"wrote {write_result(f'forcefield_probe_{args.tag}', payload, notes=args.note, sweep=True)}")


if __name__ == "__main__":
    main()
