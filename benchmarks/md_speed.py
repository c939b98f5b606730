"""MD speed: ns/day and atom-steps/s for ethanol, compscope (batched replicas) vs mace-torch through ASE.

Both sides run Langevin MD of rMD17 ethanol at 300 K, 0.5 fs, in the same invocation, on models of the same
size (2 interactions, 32x0e+32x1o features, l_max 2, correlation 3, r_max 5 Å):

- compscope: the trained benchmark force field (``--model``, a package from ``compscope train``), 1 replica and
  64 replicas batched in one graph, through :func:`compscope.md.simulate` (monitors on);
- mace-torch: a MACE model of the same size built in ``.venv-mace`` (mace-torch pins an older e3nn, so it lives
  in its own venv), run through ``MACECalculator`` + ``ase.md.langevin.Langevin``; for 64 replicas ASE steps 64
  ``Atoms`` one after another (it has no batching), which is how such a workflow runs with ASE today.

Weights do not change the cost of a forward/backward pass, so the MACE model is freshly initialised.
Also measured: OpenMM's own speed for the alanine-dipeptide reference generator (vacuum, Reference and CPU
platforms) and a short Ray-parallel generation run (µs generated).

Usage:
    COMPSCOPE_DATA=/work/shared/data nice -n 10 python benchmarks/md_speed.py --model PATH/model.pt
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if not __package__:  # run as `python benchmarks/<name>.py`: put the repository root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import ROOT, write_result  # noqa: E402

MACE_PY = ROOT / ".venv-mace" / "bin" / "python"
TARGETS = {"ns_per_day_ratio_1_replica": 2.0, "atom_steps_ratio_many_replicas": 20.0}
"""compscope over mace-torch: ns/day of one replica, atom-steps/s of the batched replicas (stored in the JSON)."""

MACE_SCRIPT = r"""
import json, sys, time
import numpy as np
import torch
from ase import units
from ase.io import read
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
from e3nn import o3
from mace import modules
from mace.calculators import MACECalculator

args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
torch.set_default_dtype(getattr(torch, args["dtype"]))
model = modules.MACE(
    r_max=5.0, num_bessel=8, num_polynomial_cutoff=6, max_ell=2,
    interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
    interaction_cls_first=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
    num_interactions=2, num_elements=3, hidden_irreps=o3.Irreps("32x0e+32x1o"), MLP_irreps=o3.Irreps("16x0e"),
    gate=torch.nn.functional.silu, atomic_energies=np.zeros(3), avg_num_neighbors=8.0, atomic_numbers=[1, 6, 8],
    correlation=3, radial_MLP=[64, 64],
)
n_params = sum(p.numel() for p in model.parameters())
torch.save(model, args["path"])
calc = MACECalculator(model_paths=args["path"], device="cpu", default_dtype=args["dtype"])
start = read(args["start"], 0)
out = {"n_params": n_params}
for reps, steps in ((1, args["steps_1"]), (args["replicas"], args["steps_many"])):
    systems = []
    for k in range(reps):
        a = start.copy()
        a.calc = calc
        MaxwellBoltzmannDistribution(a, temperature_K=300, rng=np.random.default_rng(k))
        Stationary(a)
        systems.append(Langevin(a, 0.5 * units.fs, temperature_K=300, friction=0.01 / units.fs,
                                rng=np.random.default_rng(k)))
    for dyn in systems[:1]:
        dyn.run(5)  # warm-up
    t0 = time.perf_counter()
    for dyn in systems:
        dyn.run(steps)
    wall = time.perf_counter() - t0
    out[str(reps)] = {"replicas": reps, "steps": steps, "wall_s": wall,
                      "ns_per_day": steps * 0.5e-6 / wall * 86400.0,
                      "atom_steps_per_s": reps * steps * len(start) / wall}
print("RESULT" + json.dumps(out))
"""


def train_benchmark_model(model_path: Path, minutes: float, threads: int) -> None:
    """Train the benchmark force field (configs/forcefield/ethanol.yaml, float32, rMD17 ethanol 950/50 split) for
    ``minutes`` of wall-clock if ``model_path`` is missing; resumes an interrupted training."""
    import yaml

    from benchmarks.forcefield_rmd17 import prepare_data
    from compscope.data import dataset_path
    from compscope.forcefield import fit

    out = model_path.parent
    files = prepare_data()
    cfg = yaml.safe_load((ROOT / "configs" / "forcefield" / "ethanol.yaml").read_text())
    cfg.update({"out": str(out), "dtype": "float32"})
    cfg["data"]["init_args"].update({
                        "train": str(files["train"]), "valid": str(files["valid"]), "test": str(files["test"]),
                        "n_valid": None, "energy_key": "REF_energy", "forces_key": "REF_forces",
                        "e0": str(dataset_path("rmd17", "isolated_atoms.xyz"))})
    cfg["trainer"].update({"max_time_minutes": minutes, "num_threads": threads, "progress_bar": False,
                           "early_stopping_patience": 0})
    fit(cfg, resume=(out / "checkpoints" / "last.ckpt").exists())


def run_compscope(model_path: str, start, replicas: int, steps: int, dtype: str) -> dict:
    import torch

    from compscope.md import load_potential, simulate

    model = load_potential(model_path, dtype=getattr(torch, dtype))
    simulate(model, start, steps=5, dt=0.5, temperature=300.0, replicas=replicas)  # warm-up
    res = simulate(model, start, steps=steps, dt=0.5, temperature=300.0, replicas=replicas, integrator="langevin")
    n_params = sum(p.numel() for p in model.parameters())
    return {"replicas": replicas, "steps": steps, "wall_s": res.wall_s, "ns_per_day": res.ns_per_day,
            "ns_per_day_aggregate": res.ns_per_day * replicas, "atom_steps_per_s": res.atom_steps_per_s,
            "n_stable": res.n_stable, "n_params": n_params, "warmup_steps_not_timed": res.warmup_steps}


def run_mace(start_path: str, replicas: int, steps_1: int, steps_many: int, dtype: str, threads: int) -> dict:
    if not MACE_PY.exists():
        return {"error": f"{MACE_PY} missing: python -m venv .venv-mace && .venv-mace/bin/pip install "
                         "torch==2.13.0 && .venv-mace/bin/pip install mace-torch"}
    with tempfile.TemporaryDirectory() as tmp:
        args = {"threads": threads, "dtype": dtype, "path": str(Path(tmp) / "mace.model"), "start": start_path,
                "replicas": replicas, "steps_1": steps_1, "steps_many": steps_many}
        # e3nn 0.4.4 (pinned by mace-torch) loads its constants with a torch.load that predates weights_only
        env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
        p = subprocess.run([str(MACE_PY), "-c", MACE_SCRIPT, json.dumps(args)], capture_output=True, text=True,
                           timeout=7200, env=env)
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT")]
    if p.returncode or not line:
        return {"error": (p.stderr or p.stdout)[-2000:]}
    return json.loads(line[0][len("RESULT"):])


def run_openmm_reference(steps: int, gen_replicas: int, gen_steps: int) -> dict:
    import shutil

    from compscope.md.reference import generate_alanine_dipeptide, run_replica

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for platform in ("Reference", "CPU"):
            spec = {"replica": 0, "seed": 0, "steps": steps, "dt_fs": 1.0, "temperature": 300.0,
                    "save_every": steps, "solvent": "vacuum", "platform": platform,
                    "shard": str(Path(tmp) / f"{platform}.npz"), "chunk_frames": 1}
            import numpy as np

            with np.load(run_replica(spec)) as z:
                wall = float(z["wall_s"])
            out[f"vacuum_{platform}"] = {"steps": steps, "wall_s": wall, "ns_per_day": steps * 1e-6 / wall * 86400}
        info = generate_alanine_dipeptide(Path(tmp) / "ala.h5", replicas=gen_replicas, steps=gen_steps,
                                          save_every=100, workers=os.cpu_count(), platform="CPU", plot=False)
        out["generator"] = {k: info[k] for k in ("new_replicas", "total_frames", "total_ns", "ns_per_day", "wall_s")}
        out["generator"]["us_generated"] = info["total_ns"] / 1000.0
        shutil.rmtree(Path(tmp) / "ala.h5.parts", ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "benchmarks/work/md/ethanol_small/model.pt"))
    ap.add_argument("--start", default=None, help="ethanol extxyz (default: rmd17/ethanol_test.xyz)")
    ap.add_argument("--steps-1", type=int, default=300)
    ap.add_argument("--steps-many", type=int, default=60)
    ap.add_argument("--mace-steps-many", type=int, default=10)
    ap.add_argument("--replicas", type=int, default=64)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--train-minutes", type=float, default=15.0,
                    help="training budget of the benchmark force field when --model does not exist yet")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--result", default="md_speed", help="name of the JSON in benchmarks/results/")
    ap.add_argument("--sweep", action="store_true",
                    help="a variant of the headline run (other threads, dtype...): write to benchmarks/results/sweeps/")
    ap.add_argument("--skip-openmm", action="store_true", help="leave out the OpenMM reference part")
    ap.add_argument("--openmm-steps", type=int, default=20000)
    ap.add_argument("--gen-replicas", type=int, default=4)
    ap.add_argument("--gen-steps", type=int, default=50000)
    args = ap.parse_args()

    from ase.io import read

    from compscope.data import dataset_path
    from compscope.runtime import configure_threads

    configure_threads(args.threads)
    if not Path(args.model).exists():
        train_benchmark_model(Path(args.model), args.train_minutes, args.threads)
    start_path = args.start or str(dataset_path("rmd17", "ethanol_test.xyz"))
    start = read(start_path, 0)
    t0 = time.time()
    ours = {"1": run_compscope(args.model, start, 1, args.steps_1, args.dtype),
            str(args.replicas): run_compscope(args.model, start, args.replicas, args.steps_many, args.dtype)}
    print("compscope", json.dumps(ours, indent=1))
    mace = run_mace(start_path, args.replicas, args.steps_1, args.mace_steps_many, args.dtype, args.threads)
    print("mace", json.dumps(mace, indent=1))
    ratios = {}
    if "error" not in mace:
        r = str(args.replicas)
        ratios = {
            "ns_per_day_1_replica": ours["1"]["ns_per_day"] / mace["1"]["ns_per_day"],
            f"atom_steps_per_s_{r}_replicas": ours[r]["atom_steps_per_s"] / mace[r]["atom_steps_per_s"],
        }
        ratios["target_1_replica_2x_met"] = ratios["ns_per_day_1_replica"] >= TARGETS["ns_per_day_ratio_1_replica"]
        ratios[f"target_{r}_replicas_20x_met"] = (ratios[f"atom_steps_per_s_{r}_replicas"]
                                                  >= TARGETS["atom_steps_ratio_many_replicas"])
    omm = None if args.skip_openmm else run_openmm_reference(args.openmm_steps, args.gen_replicas, args.gen_steps)
    print("openmm", json.dumps(omm, indent=1))
    path = write_result(args.result, {
        "system": "rMD17 ethanol (9 atoms), Langevin 300 K, dt 0.5 fs", "dtype": args.dtype, "threads": args.threads,
        "model": args.model, "compscope": ours, "mace_torch_ase": mace, "ratio_compscope_over_mace": ratios,
        "openmm_alanine_dipeptide": omm, "total_wall_s": time.time() - t0, "targets": TARGETS,
    }, seed=0, sweep=args.sweep)
    print(path)


if __name__ == "__main__":
    main()
