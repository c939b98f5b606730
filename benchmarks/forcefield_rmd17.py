"""rMD17 ethanol force-field benchmark: compscope vs mace-torch at the same CPU wall-clock budget.

950 train / 50 valid frames (seed 0) from rMD17 ethanol train, test on the 1000 test frames. Both models train for
``--budget-minutes`` of wall-clock with ``--threads`` torch threads each; runs checkpoint and resume (rerun the same
command after an interruption). mace-torch runs in its own virtualenv (``--mace-venv``, default ``.venv-mace``)
because it pins an older e3nn.

    COMPSCOPE_DATA=../shared/data python benchmarks/forcefield_rmd17.py --budget-minutes 30
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from ase.io import read, write

if not __package__:  # run as `python benchmarks/<name>.py`: put the repository root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import ROOT, WORK, write_result  # noqa: E402

TARGETS = {
    "force_mae_meV_A_120min": 5.0,  # compscope's test force MAE after 120 min
    "energy_mae_meV_atom": 0.5,
    "force_mae_ratio_vs_mace": 0.8,  # compscope's force MAE over mace-torch's, same budget
    "published_gpu": {"MACE": 2.1, "Allegro": 2.1, "NequIP": 2.8},  # published force MAE (meV/Å), GPU training
}
"""The benchmark's targets and the published numbers it is read against (stored in the JSON)."""


def _write_ref(frames, path: Path) -> None:
    """extxyz with REF_energy/REF_forces keys: both codes read them the same way."""
    clean = []
    for a in frames:
        b = a.copy()
        b.info["REF_energy"] = a.get_potential_energy()
        b.arrays["REF_forces"] = a.get_forces()
        b.calc = None
        clean.append(b)
    write(path, clean, format="extxyz")


def prepare_data(seed: int = 0) -> dict[str, Path]:
    from compscope.data import dataset_path

    out = WORK / "rmd17"
    out.mkdir(parents=True, exist_ok=True)
    files = {k: out / f"{k}.xyz" for k in ("train", "valid", "test")}
    if all(p.exists() for p in files.values()):
        return files
    frames = read(dataset_path("rmd17", "ethanol_train.xyz"), ":")
    test = read(dataset_path("rmd17", "ethanol_test.xyz"), ":")
    perm = np.random.default_rng(seed).permutation(len(frames))
    sets = {"valid": [frames[i] for i in perm[:50]], "train": [frames[i] for i in perm[50:]], "test": test}
    for name, fr in sets.items():
        _write_ref(fr, files[name])
    return files


def prepare_acac(seed: int = 0) -> dict[str, Path]:
    """acac: train_300K split 450/50 (seed), tests at 300 K and 600 K, REF_ keys."""
    from compscope.data import dataset_path

    out = WORK / "acac"
    out.mkdir(parents=True, exist_ok=True)
    files = {k: out / f"{k}.xyz" for k in ("train", "valid", "test_300K", "test_600K")}
    if all(p.exists() for p in files.values()):
        return files
    frames = read(dataset_path("acac", "train_300K.xyz"), ":")
    perm = np.random.default_rng(seed).permutation(len(frames))
    sets = {"valid": [frames[i] for i in perm[:50]], "train": [frames[i] for i in perm[50:]],
            "test_300K": read(dataset_path("acac", "test_MD_300K.xyz"), ":"),
            "test_600K": read(dataset_path("acac", "test_MD_600K.xyz"), ":")}
    for name, fr in sets.items():
        _write_ref(fr, files[name])
    return files


def isolated_e0(dataset: str = "rmd17", train: Path | None = None) -> dict[int, float]:
    """Isolated-atom energies by atomic number, only of the elements in ``train`` when given (mace-torch sizes its
    E0 table by the training elements and fails on extra ones, e.g. the N atom that rMD17's file also lists)."""
    from compscope.data import dataset_path

    keep = None if train is None else {int(z) for a in read(train, ":") for z in a.numbers}
    return {int(a.numbers[0]): float(a.get_potential_energy())
            for a in read(dataset_path(dataset, "isolated_atoms.xyz"), ":") if keep is None or a.numbers[0] in keep}


def elapsed_seconds(out: Path) -> float:
    """Training wall time of a run folder, summed over resumes (the last metrics row's ``time_s``)."""
    from compscope.train import read_metrics

    rows = read_metrics(out)
    return float(rows[-1]["time_s"]) if rows else 0.0


# ------------------------------------------------------------------------------------------------
def run_ours(files, budget: float, threads: int, tag: str, dtype: str, scheduler: str | None = None) -> dict:
    from compscope.data import dataset_path, load_graphs
    from compscope.forcefield import error_table, fit, predict
    from compscope.models.artifacts import load_model

    out = WORK / f"ours_{tag}"
    cfg = yaml.safe_load((ROOT / "configs" / "forcefield" / "ethanol.yaml").read_text())
    cfg["out"] = str(out)
    cfg["dtype"] = dtype
    if scheduler:
        cfg["task"]["init_args"]["scheduler"] = scheduler
    cfg["data"]["init_args"].update({
                        "train": str(files["train"]), "valid": str(files["valid"]), "test": None, "n_valid": None,
                        "energy_key": "REF_energy", "forces_key": "REF_forces",
                        "e0": str(dataset_path("rmd17", "isolated_atoms.xyz"))})
    cfg["trainer"].update({"max_time_minutes": budget, "num_threads": threads, "progress_bar": False,
                           "early_stopping_patience": 0})
    if not (out / "model.pt").exists():
        resume = (out / "checkpoints" / "last.ckpt").exists()
        t0 = time.time()
        fit(cfg, resume=resume)
        print(f"ours trained in {time.time() - t0:.0f}s this segment", flush=True)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    epochs = rows[-1]["epoch"] + 1
    model = load_model(out / "model.pt")
    from compscope.runtime import configure_threads

    configure_threads(threads)
    graphs = load_graphs(files["test"], model.cutoff, energy_key="REF_energy", forces_key="REF_forces")
    table = error_table(predict(model, graphs, batch_size=50))
    from compscope.integrations.ase import Calculator

    atoms = read(files["test"], 0)
    atoms.calc = Calculator(model)
    atoms.get_forces()
    t0 = time.perf_counter()
    for i in range(50):
        atoms.positions[0, 0] += 1e-4 * (-1) ** i
        atoms.get_forces()
    ms = (time.perf_counter() - t0) / 50 * 1000
    return {**table, "params": int(sum(p.numel() for p in model.parameters())), "epochs": epochs,
            "train_seconds": elapsed_seconds(out), "configs_per_s": epochs * 950 / max(1e-9, elapsed_seconds(out)),
            "ms_per_frame_ase": ms, "run_dir": str(out)}


# ------------------------------------------------------------------------------------------------
def _mace_epochs(ckpt_dir: Path) -> int:
    eps = [int(m.group(1)) for p in ckpt_dir.glob("*.pt") if (m := re.search(r"epoch-(\d+)", p.name))]
    return max(eps) if eps else -1


def mace_train_command(venv: Path, out: Path, files, e0s: str, dtype: str, batch_size: int,
                       valid_batch_size: int) -> list[str]:
    """``mace_run_train`` with the settings of compscope's configs (r_max 5, 32x0e+32x1o, max_L 1, correlation 3,
    2 layers, AMSGrad lr 0.01, EMA 0.99, forces weight 100, CPU), resumable (``--restart_latest``)."""
    return [
        str(venv / "bin" / "mace_run_train"), "--name", "mace", "--work_dir", str(out), "--seed", "0",
        "--train_file", str(files["train"]), "--valid_file", str(files["valid"]),
        "--energy_key", "REF_energy", "--forces_key", "REF_forces", "--E0s", e0s,
        "--model", "MACE", "--hidden_irreps", "32x0e + 32x1o", "--r_max", "5.0", "--max_L", "1",
        "--correlation", "3", "--num_interactions", "2", "--batch_size", str(batch_size),
        "--valid_batch_size", str(valid_batch_size),
        "--lr", "0.01", "--ema", "--ema_decay", "0.99", "--amsgrad", "--energy_weight", "1", "--forces_weight", "100",
        "--scheduler_patience", "10", "--default_dtype", dtype, "--device", "cpu", "--eval_interval", "1",
        "--error_table", "PerAtomMAE", "--restart_latest",
    ]


def run_mace(files, budget: float, threads: int, tag: str, venv: Path, dtype: str, dataset: str = "rmd17",
             tests: dict[str, Path] | None = None) -> dict:
    """Train mace-torch on ``files`` (train/valid) for ``budget`` minutes; errors on ``files["test"]`` (or on each
    of ``tests``, keyed by name)."""
    out = WORK / f"mace_{tag}"
    out.mkdir(parents=True, exist_ok=True)
    e0 = isolated_e0(dataset, files["train"])
    bin_dir = venv / "bin"
    # acac's isolated-atom energies sit eV per atom away from its MD energies (another DFT setting): both codes
    # fit E0s by least squares there ("average" in mace-torch), isolated atoms on rMD17
    e0s = "average" if dataset == "acac" else repr(dict(sorted(e0.items())))
    base = mace_train_command(venv, out, files, e0s, dtype, batch_size=5, valid_batch_size=25)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    model_file = out / "mace_final.model"
    timing = out / "timing.json"
    spent = json.loads(timing.read_text())["seconds"] if timing.exists() else 0.0
    if not model_file.exists():
        left = budget * 60 - spent
        if left > 5:
            t0 = time.time()
            # output to a file: an unread pipe fills up and blocks the trainer, and a crash must leave its reason
            with open(out / "mace_stdout.log", "a") as log:
                proc = subprocess.Popen(base + ["--max_num_epochs", "100000"], env=env, stdout=log,
                                        stderr=subprocess.STDOUT, text=True)
                try:
                    proc.wait(timeout=left)
                except subprocess.TimeoutExpired:
                    proc.terminate()
                    proc.wait()
            if proc.returncode not in (0, -15) and _mace_epochs(out / "checkpoints") < 0:
                raise RuntimeError(f"mace-torch stopped with exit code {proc.returncode}: "
                                   f"see {out / 'mace_stdout.log'}")
            spent += time.time() - t0
            timing.write_text(json.dumps({"seconds": spent}))
        # finish: restart from the last checkpoint with max_num_epochs reached -> evaluates and writes the model
        done = _mace_epochs(out / "checkpoints")
        fin = subprocess.run(base + ["--max_num_epochs", str(max(done, 1))], env=env, capture_output=True, text=True)
        models = sorted(out.glob("*.model"))
        if not models:
            raise RuntimeError("mace produced no model:\n" + fin.stdout[-3000:] + fin.stderr[-3000:])
        models[0].rename(model_file) if models[0] != model_file else None
    def evaluate(test: Path) -> dict:
        res = subprocess.run([str(bin_dir / "python"), str(ROOT / "benchmarks" / "helpers" / "mace_eval.py"),
                              str(model_file), str(test), str(threads)], env=env, capture_output=True, text=True,
                             check=True)
        return json.loads(res.stdout.strip().splitlines()[-1])

    epochs = _mace_epochs(out / "checkpoints") + 1
    n_train = _n_frames(files["train"])
    info = {"epochs": epochs, "train_seconds": spent, "configs_per_s": epochs * n_train / max(1e-9, spent),
            "run_dir": str(out)}
    if tests:
        return {**{name: evaluate(path) for name, path in tests.items()}, **info}
    return {**evaluate(files["test"]), **info}


def _n_frames(path: Path) -> int:
    return len(read(path, ":"))


def run_acac(files, budget: float, threads: int, dtype: str, tag: str) -> dict:
    """Temperature extrapolation (compscope): train at 300 K, test at 300 K and 600 K."""
    from compscope.data import load_graphs
    from compscope.forcefield import error_table, fit, predict
    from compscope.models.artifacts import load_model

    out = WORK / f"ours_acac_{tag}"
    cfg = yaml.safe_load((ROOT / "configs" / "forcefield" / "ethanol.yaml").read_text())
    cfg["out"] = str(out)
    cfg["dtype"] = dtype
    cfg["data"]["init_args"].update({
                        "train": str(files["train"]), "valid": str(files["valid"]), "test": None, "n_valid": None,
                        "energy_key": "REF_energy", "forces_key": "REF_forces",
                        "e0": "least_squares"})  # see run_mace: acac's isolated-atom energies do not fit its MD
    cfg["trainer"].update({"max_time_minutes": budget, "num_threads": threads, "progress_bar": False,
                           "early_stopping_patience": 0})
    if not (out / "model.pt").exists():
        fit(cfg, resume=(out / "checkpoints" / "last.ckpt").exists())
    model = load_model(out / "model.pt")
    res = {}
    for name in ("test_300K", "test_600K"):
        graphs = load_graphs(files[name], model.cutoff, energy_key="REF_energy", forces_key="REF_forces")
        res[name] = error_table(predict(model, graphs, batch_size=50))
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return {**res, "epochs": rows[-1]["epoch"] + 1, "train_seconds": elapsed_seconds(out),
            "params": int(sum(p.numel() for p in model.parameters())), "run_dir": str(out)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget-minutes", type=float, default=30.0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per model (both run at once)")
    ap.add_argument("--models", default="ours,mace")
    ap.add_argument("--dtype", default="float64")
    ap.add_argument("--mace-venv", default=str(ROOT / ".venv-mace"))
    ap.add_argument("--note", action="append", default=[],
                    help="free text stored in the JSON's notes (e.g. machine load during training; repeatable)")
    ap.add_argument("--scheduler", default=None, help="override the config's LR schedule (e.g. plateau, cosine_time)")
    ap.add_argument("--run-name", default=None,
                    help="work dirs ours_NAME/mace_NAME and result forcefield_rmd17_NAME.json (default: the budget, "
                         "e.g. 30min); an existing run of that name is resumed or reused")
    ap.add_argument("--sweep", action="store_true",
                    help="a variant (e.g. another schedule): write the JSON to benchmarks/results/sweeps/")
    ap.add_argument("--acac-minutes", type=float, default=0.0, help="also run the acac extrapolation (0 = skip)")
    args = ap.parse_args()
    tag = args.run_name or f"{args.budget_minutes:g}min"
    files = prepare_data()
    results: dict = {}
    models = args.models.split(",")
    from concurrent.futures import ThreadPoolExecutor

    if args.budget_minutes > 0:  # 0: only the acac extrapolation
        # both models train at the same time with the same thread count, so they see the same machine load
        with ThreadPoolExecutor(2) as pool:
            futs = {}
            if "mace" in models:
                futs["mace"] = pool.submit(run_mace, files, args.budget_minutes, args.threads, tag,
                                           Path(args.mace_venv), args.dtype)
            if "ours" in models:
                futs["compscope"] = pool.submit(run_ours, files, args.budget_minutes, args.threads, tag, args.dtype,
                                                args.scheduler)
            for k, f in futs.items():
                results[k] = f.result()
    if "compscope" in results and "mace" in results:
        c, m = results["compscope"], results["mace"]
        results["ratios"] = {
            "force_mae_ours_over_mace": c["forces_mae_meV_A"] / m["forces_mae_meV_A"],
            "energy_mae_ours_over_mace": c["energy_mae_meV_atom"] / m["energy_mae_meV_atom"],
            "inference_speedup_ours": m["ms_per_frame_ase"] / c["ms_per_frame_ase"],
            "training_throughput_ratio_ours_over_mace": c["configs_per_s"] / m["configs_per_s"],
        }
    if args.acac_minutes > 0:
        acac = prepare_acac()
        acac_tag = f"{tag}_acac{args.acac_minutes:g}min"
        tests = {k: acac[k] for k in ("test_300K", "test_600K")}
        with ThreadPoolExecutor(2) as pool:  # side by side again, same budget and threads
            futs = {}
            if "ours" in models:
                futs["compscope"] = pool.submit(run_acac, acac, args.acac_minutes, args.threads, args.dtype, acac_tag)
            if "mace" in models:
                futs["mace"] = pool.submit(run_mace, acac, args.acac_minutes, args.threads, acac_tag,
                                           Path(args.mace_venv), args.dtype, "acac", tests)
            results["acac_extrapolation"] = {k: f.result() for k, f in futs.items()}
    path = write_result(f"forcefield_rmd17_{tag}", {"budget_minutes": args.budget_minutes, "threads": args.threads,
                                                     "dtype": args.dtype, "scheduler": args.scheduler or "config",
                                                     "results": results, "targets": TARGETS},
                        seed=0, notes=args.note, sweep=args.sweep)
    print(json.dumps(results, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
