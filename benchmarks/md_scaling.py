"""Large periodic systems: the water force field against mace-torch, MD throughput and memory vs box size, stability.

Parts (``--parts``, comma-separated; each writes its own JSON so a long part can be rerun alone):

- ``water``: compscope (``compscope forcefield train configs/forcefield/water.yaml``) and mace-torch trained side by
  side on the same 304 train / 16 valid frames of ``water`` (deepmd-kit's liquid water, 192 atoms, periodic) for the
  same budget (CPU seconds by default, ``--clock cpu``) and thread count; test errors on the 80 test frames, per
  element. Writes ``md_scaling_water_<tag>.json``.
- ``throughput``: MD (Langevin) of the water cell replicated to 192 ... 10^6 atoms: µs/atom/step, atom-steps/s and
  peak RSS per atom, float32 and float64, 1 and 2 threads, each size in a fresh process (peak RSS is per process);
  mace-torch (its ASE calculator on a model of the same size, in ``.venv-mace``) on the same boxes, same run.
  Writes ``md_scaling.json``.
- ``stability``: NVT (Langevin, 300 K) of a 12,288-atom box (4x4x4 cells) with the trained water model; density and
  O-O g(r) against the training frames'. Resumable in chunks (``--stability-ps 100 --stability-dt 2
  --stability-masses deuterium``). Writes ``md_scaling_stability.json`` (or ``--stability-result``).
- ``stability-dt``: the check of that step: the 192-atom box with standard masses at 0.5 fs and deuterium at 1 and
  2 fs; mean potential energy, temperature and O-O g(r) side by side. Writes ``md_scaling_stability_dt.json``.
- ``density-npt``: the model's own density at 300 K and 1 bar (NPT of the 192-atom cell, D2O masses, 1 fs; the H2O
  mass density from the volume) against the DFT frames'. Writes ``md_scaling_density_npt.json``.

    COMPSCOPE_DATA=../shared/data python -m benchmarks.md_scaling --parts water --budget-minutes 30
    python -m benchmarks.md_scaling --parts throughput --model benchmarks/work/md_scaling/ours_water_30min/model.pt
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from ase.io import read

if not __package__:  # run as `python benchmarks/<name>.py`: put the repository root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import ROOT, WORK, write_result  # noqa: E402

OUT = WORK / "md_scaling"
DEFAULT_PLAN = ";".join([
    "compscope,192,float32,1,5", "mace,192,float32,1,3", "compscope,1536,float32,1,3", "mace,1536,float32,1,2",
    "compscope,1536,float64,1,2", "compscope,1536,float32,2,3", "compscope,12288,float32,1,1",
    "mace,12288,float32,1,1", "compscope,12288,float32,2,1", "compscope,98304,float32,1,1",
])
"""The measurements of the throughput part: code, atoms, dtype, threads, timed steps (after one warm-up step), and
optionally the preset (default ``small``) and ``network`` (radial MLPs per edge instead of MD's default radial tables
in float32; keys end in ``/network``)."""
TARGETS = {
    "force_mae_ratio_vs_mace": 0.8,  # compscope's test force MAE over mace-torch's, same budget and threads
    "linear_scaling_us_per_atom_step_spread": 0.2,  # 1.5k -> 100k atoms, within 20 %
    "atom_steps_per_s_100k_2_threads": 1e4,
    "atom_steps_ratio_vs_mace": 3.0,
    "bytes_per_atom_1M_in_24GiB": 24 * 2**30 / 1e6,
    "stability_ps": 100.0,
}
"""The issue's targets (#23), stored in the JSON."""


def _data_env() -> dict[str, str]:
    env = dict(os.environ)
    shared = ROOT.parents[1] / "shared" / "data"  # a worktree next to the shared folder
    if "COMPSCOPE_DATA" not in env and (shared / "water").exists():
        env["COMPSCOPE_DATA"] = str(shared)
    return env


def prepare_water(n_valid: int = 16, seed: int = 0) -> dict[str, Path]:
    """train/valid/test extxyz with REF_energy/REF_forces keys (both codes read the same files)."""
    from benchmarks.forcefield_rmd17 import _write_ref
    from compscope.data import dataset_path

    os.environ.setdefault("COMPSCOPE_DATA", _data_env().get("COMPSCOPE_DATA", ""))
    out = OUT / "water"
    out.mkdir(parents=True, exist_ok=True)
    files = {k: out / f"{k}.xyz" for k in ("train", "valid", "test")}
    if all(p.exists() for p in files.values()):
        return files
    frames = read(dataset_path("water", "water_train.extxyz"), ":")
    perm = np.random.default_rng(seed).permutation(len(frames))
    sets = {"valid": [frames[i] for i in perm[:n_valid]], "train": [frames[i] for i in perm[n_valid:]],
            "test": read(dataset_path("water", "water_test.extxyz"), ":")}
    for name, fr in sets.items():
        _write_ref(fr, files[name])
    return files


# ------------------------------------------------------------------------------------------------
def _tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its live descendants (from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            fields = (p / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(p.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)  # ppid, utime+stime
    total, todo = 0.0, [pid]
    while todo:
        q = todo.pop()
        if q in stats:
            total += stats[q][1]
        todo.extend(c for c, (ppid, _) in stats.items() if ppid == q)
    return total


class CPUClock:
    """Polls the CPU time of a process tree every few seconds (the last value seen is kept after it exits)."""

    def __init__(self, pid: int, every: float = 5.0):
        self.pid, self.seconds, self._stop = pid, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)
        self._thread.start()

    def _run(self, every: float) -> None:
        while not self._stop.is_set():
            self.seconds = max(self.seconds, _tree_cpu_seconds(self.pid))
            self._stop.wait(every)

    def stop(self) -> float:
        self.seconds = max(self.seconds, _tree_cpu_seconds(self.pid))
        self._stop.set()
        return self.seconds


def _spent(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {"wall_s": 0.0, "cpu_s": 0.0}


def train_ours(files, budget: float, threads: int, tag: str, dtype: str, clock_kind: str = "cpu") -> dict:
    """``compscope forcefield train configs/forcefield/water.yaml`` on the benchmark split, then test errors."""
    out = OUT / f"ours_water_{tag}"
    timing = out.parent / f"ours_water_{tag}.timing.json"
    spent = _spent(timing)
    if not (out / "model.pt").exists():
        cmd = [sys.executable, "-m", "compscope", "forcefield", "train", str(ROOT / "configs/forcefield/water.yaml"),
               "--out", str(out)]
        sets = {"dtype": dtype, "data.init_args.train": files["train"], "data.init_args.valid": files["valid"],
                "data.init_args.test": "null", "data.init_args.n_valid": "null",
                "data.init_args.energy_key": "REF_energy", "data.init_args.forces_key": "REF_forces",
                "trainer.max_time_minutes": budget, "trainer.budget_clock": clock_kind, "trainer.num_threads": threads,
                "trainer.progress_bar": "false"}
        for k, v in sets.items():
            cmd += ["--set", f"{k}={v}"]
        if (out / "checkpoints" / "last.ckpt").exists():
            cmd.append("--resume")
        t0 = time.time()
        with open(out.parent / f"ours_water_{tag}.log", "a") as log:
            proc = subprocess.Popen(cmd, env={**_data_env(), "COMPSCOPE_NUM_THREADS": str(threads)}, stdout=log,
                                    stderr=subprocess.STDOUT)
            clock = CPUClock(proc.pid)
            proc.wait()
            cpu = clock.stop()
        spent = {"wall_s": spent["wall_s"] + time.time() - t0, "cpu_s": spent["cpu_s"] + cpu}
        timing.write_text(json.dumps(spent))
        if proc.returncode:
            raise RuntimeError(f"compscope training failed ({proc.returncode}): see {out.parent}/ours_water_{tag}.log")
    return {**evaluate_ours(out / "model.pt", files["test"], threads), **spent,
            "epochs": _epochs(out), "run_dir": str(out)}


def _epochs(out: Path) -> int:
    from compscope.train import read_metrics

    rows = read_metrics(out)
    return int(rows[-1]["epoch"]) + 1 if rows else 0


def evaluate_ours(model_path: Path, test: Path, threads: int) -> dict:
    from compscope.data import load_graphs
    from compscope.forcefield import error_table, predict
    from compscope.models.artifacts import load_model
    from compscope.runtime import configure_threads

    configure_threads(threads)
    model = load_model(model_path)
    graphs = load_graphs(test, model.cutoff, energy_key="REF_energy", forces_key="REF_forces")
    t0 = time.perf_counter()
    table = error_table(predict(model, graphs, batch_size=4))
    return {**table, "params": int(sum(p.numel() for p in model.parameters())),
            "ms_per_frame": (time.perf_counter() - t0) / len(graphs) * 1000}


def train_mace(files, budget: float, threads: int, tag: str, dtype: str, venv: Path, clock_kind: str = "cpu") -> dict:
    """mace-torch with the settings of the compscope config (r_max 5, 32x0e+32x1o, correlation 3, 2 layers, batch 1,
    AMSGrad lr 0.01, EMA 0.99, forces weight 100), E0s by least squares ("average"), same budget: wall seconds, or
    with ``clock_kind="cpu"`` the CPU seconds of its process tree (polled; stopped when spent), as compscope's
    ``trainer.budget_clock: cpu`` counts them."""
    from benchmarks.forcefield_rmd17 import _mace_epochs, mace_train_command

    out = OUT / f"mace_water_{tag}"
    out.mkdir(parents=True, exist_ok=True)
    base = mace_train_command(venv, out, files, "average", dtype, batch_size=1, valid_batch_size=8)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    model_file = out / "mace_final.model"
    timing = out / "timing.json"
    spent = _spent(timing)
    if not model_file.exists():
        left = budget * 60 - spent["cpu_s" if clock_kind == "cpu" else "wall_s"]
        if left > 5:
            t0 = time.time()
            with open(out / "mace_stdout.log", "a") as log:
                proc = subprocess.Popen(base + ["--max_num_epochs", "100000"], env=env, stdout=log,
                                        stderr=subprocess.STDOUT, text=True)
                clock = CPUClock(proc.pid, every=2.0)
                while proc.poll() is None:
                    used = clock.seconds if clock_kind == "cpu" else time.time() - t0
                    if used >= left:
                        proc.terminate()
                        proc.wait()
                        break
                    time.sleep(1.0)
                    if int(time.time() - t0) % 60 == 0:  # what is spent survives a kill of this benchmark
                        timing.write_text(json.dumps({"wall_s": spent["wall_s"] + time.time() - t0,
                                                      "cpu_s": spent["cpu_s"] + clock.seconds}))
                cpu = clock.stop()
            if proc.returncode not in (0, -15) and _mace_epochs(out / "checkpoints") < 0:
                raise RuntimeError(f"mace-torch stopped with exit code {proc.returncode}: see {out}/mace_stdout.log")
            spent = {"wall_s": spent["wall_s"] + time.time() - t0, "cpu_s": spent["cpu_s"] + cpu}
            timing.write_text(json.dumps(spent))
        done = _mace_epochs(out / "checkpoints")
        if done < 0:
            raise RuntimeError(f"mace-torch finished no epoch in {budget} min: see {out}/mace_stdout.log")
        fin = subprocess.run(base + ["--max_num_epochs", str(max(done, 1))], env=env, capture_output=True, text=True)
        models = sorted(p for p in out.glob("*.model") if "compiled" not in p.name)
        if not models:
            raise RuntimeError("mace produced no model:\n" + fin.stdout[-3000:] + fin.stderr[-3000:])
        models[0].rename(model_file)
    res = subprocess.run([str(venv / "bin" / "python"), str(ROOT / "benchmarks" / "helpers" / "mace_eval.py"),
                          str(model_file), str(files["test"]), str(threads)], env=env, capture_output=True, text=True)
    if res.returncode:
        raise RuntimeError("mace evaluation failed:\n" + res.stderr[-3000:])
    return {**json.loads(res.stdout.strip().splitlines()[-1]), **spent,
            "epochs": _mace_epochs(out / "checkpoints") + 1, "run_dir": str(out)}


def _result(future) -> dict:
    """A side's result, or what went wrong (the other side's numbers are still written)."""
    try:
        return future.result()
    except RuntimeError as err:
        return {"error": str(err)}


def part_water(args) -> Path:
    from concurrent.futures import ThreadPoolExecutor

    files = prepare_water()
    tag = args.run_name or f"{args.budget_minutes:g}min"
    load_before = list(os.getloadavg())
    with ThreadPoolExecutor(2) as pool:  # side by side: both see the same machine load
        fo = pool.submit(train_ours, files, args.budget_minutes, args.threads, tag, args.dtype, args.clock)
        fm = pool.submit(train_mace, files, args.budget_minutes, args.threads, tag, args.dtype, Path(args.mace_venv),
                         args.clock)
        ours, mace = _result(fo), _result(fm)
    ratios: dict = {}
    if "error" not in ours and "error" not in mace:
        ratios = {"force_mae_ours_over_mace": ours["forces_mae_meV_A"] / mace["forces_mae_meV_A"],
                  "energy_mae_ours_over_mace": ours["energy_mae_meV_atom"] / mace["energy_mae_meV_atom"],
                  "cpu_seconds_ours_over_mace": ours["cpu_s"] / max(mace["cpu_s"], 1e-9)}
        ratios["target_0.8_met"] = ratios["force_mae_ours_over_mace"] <= TARGETS["force_mae_ratio_vs_mace"]
    payload = {"data": "water (deepmd-kit example, 192 atoms, periodic): 304 train / 16 valid (seed 0), 80 test",
               "budget_minutes": args.budget_minutes, "budget_clock": args.clock, "threads": args.threads,
               "dtype": args.dtype,
               "loadavg_at_start": load_before, "results": {"compscope": ours, "mace": mace, "ratios": ratios},
               "targets": TARGETS}
    path = write_result(f"md_scaling_water_{tag}", payload, seed=0, notes=args.note)
    print(json.dumps(payload["results"], indent=1, default=float))
    return path


# ------------------------------------------------------------------------------------------------
SIZES = {192: (1, 1, 1), 1536: (2, 2, 2), 12288: (4, 4, 4), 98304: (8, 8, 8), 1119744: (18, 18, 18)}
"""Atoms -> replication of the 192-atom water cell."""

ONE_SIZE = r"""
import json, resource, sys, time
args = json.loads(sys.argv[1])
import os
os.environ["COMPSCOPE_NUM_THREADS"] = str(args["threads"])
import numpy as np
import torch
from ase.io import read
from compscope.runtime import configure_threads
configure_threads(args["threads"])
base_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
from compscope.md import simulate
from compscope.models import build_model
dtype = getattr(torch, args["dtype"])
preset = args.get("preset", "small")
if args["model"]:
    from compscope.md import load_potential
    model = load_potential(args["model"], dtype=dtype)
else:
    torch.manual_seed(0)
    extra = {"r_max": 5.0} if preset == "small" else {}  # `local` keeps its 6 Å
    model = build_model(preset=preset, species=[1, 8], avg_num_neighbors=50.0, **extra).to(dtype).eval()
atoms = read(args["start"], 0).repeat(args["reps"])
chunk = args.get("atom_chunk", "auto")
if args.get("progress_log"):  # one line per block (big boxes: minutes per force call), with the memory so far
    import logging
    class _Mem(logging.Filter):
        def filter(self, record):
            record.msg = f"{record.msg} | peak RSS %.2f GiB, load %.1f"
            record.args = (*record.args, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                           os.getloadavg()[0])
            return True
    handler = logging.FileHandler(args["progress_log"])
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    handler.addFilter(_Mem())
    logging.getLogger("compscope.models._blocks").addHandler(handler)
    logging.getLogger("compscope.models._blocks").setLevel(logging.DEBUG)
t0 = time.perf_counter()
if n_warm := args.get("warm", 1):  # compiles kernels (numba caches them on disk for the next processes)
    simulate(model, atoms, steps=n_warm, dt=0.5, temperature=300.0, integrator="langevin", check_inputs=False,
             atom_chunk=chunk, radial_table=args.get("radial_table", "auto"))
t_warm = time.perf_counter() - t0
rss_before_kib = int([ln for ln in open("/proc/self/status") if ln.startswith("VmRSS")][0].split()[1])
c0, w0 = time.process_time(), time.perf_counter()
res = simulate(model, atoms, steps=args["steps"], dt=0.5, temperature=300.0, integrator="langevin",
               check_inputs=False, atom_chunk=chunk, radial_table=args.get("radial_table", "auto"))
call_cpu, call_wall = time.process_time() - c0, time.perf_counter() - w0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
n = len(atoms)
st = res.state
edges = res.edges if res.edges is not None else st.graph.num_edges  # big boxes: the evaluator's own (sorted) list
state_bytes = sum(t.numel() * t.element_size() for t in (st.positions, st.momenta, st.masses, st.forces,
                  st.ref_positions, st.graph.atomic_numbers, st.graph.batch))
state_bytes += edges * (2 * 8 + 3 * st.positions.element_size())  # edge_index (int64) + cell_shifts
calls = args["steps"] + 1  # force calls: the start's and one per step
steps_wall = res.wall_s if args["steps"] else call_wall
print("RESULT" + json.dumps({
    "atoms": n, "steps": args["steps"], "preset": preset, "wall_s": steps_wall,
    "atom_steps_per_s": n * max(args["steps"], 1) / steps_wall,
    "us_per_atom_step": steps_wall / (n * max(args["steps"], 1)) * 1e6, "warm_up_call_s": t_warm,
    "call_wall_s": call_wall, "call_cpu_s": call_cpu, "force_calls": calls,
    "cpu_us_per_atom_force_call": call_cpu / (n * calls) * 1e6,
    "wall_us_per_atom_force_call": call_wall / (n * calls) * 1e6,
    "edge_chunk": getattr(model, "edge_chunk_size", None), "edges_per_atom_with_skin": edges / n,
    "block_atoms": res.block_atoms, "blocks": res.blocks,
    "state_bytes_per_atom": state_bytes / n,
    "peak_rss_gib": peak / 2**20, "peak_rss_bytes_per_atom": peak * 1024 / n,
    "peak_rss_above_start_bytes_per_atom": (peak - base_kib) * 1024 / n,
    "rss_before_run_gib": rss_before_kib / 2**20,
    "radial_table_intervals": getattr(model, "radial_table_intervals", None),
    "params": int(sum(p.numel() for p in model.parameters())), "loadavg": list(os.getloadavg())}))
"""

MACE_ONE_SIZE = r"""
import json, os, resource, sys, time
args = json.loads(sys.argv[1])
import numpy as np
import torch
torch.set_num_threads(args["threads"])
torch.set_default_dtype(getattr(torch, args["dtype"]))
base_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
from ase import units
from ase.io import read
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from e3nn import o3
from mace import modules
from mace.calculators import MACECalculator
torch.manual_seed(0)
model = modules.MACE(  # the size of compscope's `small` preset: 32x0e+32x1o, 2 layers, correlation 3, l <= 2
    r_max=5.0, num_bessel=8, num_polynomial_cutoff=6, max_ell=2,
    interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
    interaction_cls_first=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
    num_interactions=2, num_elements=2, hidden_irreps=o3.Irreps("32x0e+32x1o"), MLP_irreps=o3.Irreps("16x0e"),
    gate=torch.nn.functional.silu, atomic_energies=np.zeros(2), avg_num_neighbors=50.0, atomic_numbers=[1, 8],
    correlation=3, radial_MLP=[64, 64])
path = args["path"]
torch.save(model, path)
calc = MACECalculator(model_paths=path, device="cpu", default_dtype=args["dtype"])
atoms = read(args["start"], 0).repeat(args["reps"])
atoms.calc = calc
MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
dyn = Langevin(atoms, 0.5 * units.fs, temperature_K=300, friction=0.01 / units.fs, rng=np.random.default_rng(0))
t0 = time.perf_counter()
dyn.run(1)
t_warm = time.perf_counter() - t0
t0, c0 = time.perf_counter(), time.process_time()
dyn.run(args["steps"])
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
n = len(atoms)
print("RESULT" + json.dumps({
    "atoms": n, "steps": args["steps"], "wall_s": wall, "atom_steps_per_s": n * args["steps"] / wall,
    "us_per_atom_step": wall / (n * args["steps"]) * 1e6, "warm_up_call_s": t_warm,
    "cpu_s": cpu, "cpu_us_per_atom_step": cpu / (n * args["steps"]) * 1e6,
    "peak_rss_gib": peak / 2**20, "peak_rss_bytes_per_atom": peak * 1024 / n,
    "peak_rss_above_start_bytes_per_atom": (peak - base_kib) * 1024 / n,
    "params": int(sum(p.numel() for p in model.parameters())), "loadavg": list(os.getloadavg())}))
"""


def _run_one(code: str, python: str, args: dict, timeout: float) -> dict:
    import tempfile

    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "OMP_NUM_THREADS": str(args["threads"]),
           "PYTHONPATH": str(ROOT / "src")}
    with tempfile.TemporaryDirectory() as tmp:
        args = {**args, "path": str(Path(tmp) / "mace.model")}
        try:
            p = subprocess.run([python, "-c", code, json.dumps(args)], capture_output=True, text=True,
                               timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            return {"error": f"over the {timeout:.0f} s limit of one measurement"}
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT")]
    if p.returncode or not line:
        return {"error": (p.stderr or p.stdout)[-1500:], "returncode": p.returncode}
    return json.loads(line[0][len("RESULT"):])


def part_throughput(args) -> Path:
    """Each (code, size, dtype, threads) in its own process, cached in the work folder (rerun to continue)."""
    from compscope.data import dataset_path

    os.environ.setdefault("COMPSCOPE_DATA", _data_env().get("COMPSCOPE_DATA", ""))
    start = str(dataset_path("water", "water_test.extxyz"))
    OUT.mkdir(parents=True, exist_ok=True)
    cache = Path(args.cache) if args.cache else OUT / "throughput_cache.json"
    done = json.loads(cache.read_text()) if cache.exists() else {}
    plan = []  # (code, atoms, dtype, threads, steps)
    for spec in args.plan.split(";"):
        code, atoms, dtype, threads, steps, *rest = spec.split(",")
        plan.append((code, int(atoms), dtype, int(threads), int(steps), rest[0] if rest else "small",
                     rest[1] if len(rest) > 1 else "auto"))
    for code, n, dtype, threads, steps, preset, table in plan:
        # 7th field "network": the radial MLPs evaluated per edge (radial_table=None), the path before session 31
        key = (f"{code}/{n}/{dtype}/{threads}t" + ("" if preset == "small" else f"/{preset}")
               + ("" if table == "auto" else f"/{table}"))
        if key in done and "error" not in done[key]:
            continue
        print(f"{key}: {steps} steps ...", flush=True)
        one = {"start": start, "reps": SIZES[n], "dtype": dtype, "threads": threads, "steps": steps, "preset": preset,
               "radial_table": None if table == "network" else "auto",
               # one untimed step for compscope: a process's first call loads the kernels, builds the radial tables
               "model": args.model, "warm": 1 if (n <= 1536 or code == "compscope") else 0,
               "progress_log": str(OUT / (key.replace("/", "_") + ".log"))}
        if code == "compscope":
            res = _run_one(ONE_SIZE, sys.executable, one, args.timeout)
        else:
            res = _run_one(MACE_ONE_SIZE, str(Path(args.mace_venv) / "bin" / "python"), one, args.timeout)
        done[key] = res
        cache.write_text(json.dumps(done, indent=1))
        print(f"  {json.dumps(res)[:400]}", flush=True)
    partial = {key: _progress_summary(Path(path)) for key, path in (a.split("=", 1) for a in args.attach_progress)}
    payload = {"system": "water cell (192 atoms, 12.44 Å) replicated; Langevin 300 K, dt 0.5 fs",
               "model": args.model or "untrained `small` preset (32x0e+32x1o, 2 layers, correlation 3, l <= 2), "
                                      "r_max 5 Å, H and O (rows marked /local: the `local` preset, one layer, "
                                      "r_max 6 Å)", "plan": args.plan, "runs": done,
               "summary": _throughput_summary(done), "targets": TARGETS,
               **({"partial_runs": partial} if partial else {})}
    return write_result(args.result_name, payload, seed=0, notes=args.note)


def _progress_summary(path: Path) -> dict:
    """What the per-block progress log of a blocked measurement that was stopped before its end shows: blocks done
    of the total, atoms per block, peak RSS so far, load, seconds per block."""
    import re
    from datetime import datetime

    pat = re.compile(r"^(\S+ \S+) block (\d+) of (\d+): (\d+) owned atoms, (\d+) evaluated, (\d+) edges \| "
                     r"peak RSS ([\d.]+) GiB, load ([\d.]+)")
    rows = [m.groups() for ln in path.read_text().splitlines() if (m := pat.match(ln))]
    if not rows:
        return {"log": str(path), "blocks_done": 0}
    times = [datetime.strptime(r[0], "%Y-%m-%d %H:%M:%S,%f") for r in rows]
    return {"log": path.name, "blocks_done": int(rows[-1][1]), "blocks_total": int(rows[-1][2]),
            "owned_atoms_per_block": [int(r[3]) for r in rows], "evaluated_atoms_per_block": [int(r[4]) for r in rows],
            "edges_per_block": [int(r[5]) for r in rows], "peak_rss_gib": max(float(r[6]) for r in rows),
            "peak_rss_gib_after_first_block": float(rows[0][6]), "loadavg": [float(r[7]) for r in rows],
            "wall_s_per_block": (times[-1] - times[0]).total_seconds() / max(len(rows) - 1, 1)}


def _throughput_summary(done: dict) -> dict:
    """Rows per (code, dtype, threads, preset) and size; compscope/mace ratios at equal size (wall and CPU); the
    linear-scaling spread 1,536 -> 98,304 atoms; the 10^6-atom peak memory against 24 GiB."""
    ok = {k: v for k, v in done.items() if "error" not in v}
    out: dict = {}

    def cpu_us(v: dict) -> float | None:  # CPU µs per atom and force call (compscope) or step (mace)
        return v.get("cpu_us_per_atom_force_call", v.get("cpu_us_per_atom_step"))

    for k, v in ok.items():
        code, n, dtype, threads, *preset = k.split("/")
        out.setdefault("/".join([code, dtype, threads, *preset]), {})[n] = {
            "us_per_atom_step": v["us_per_atom_step"], "atom_steps_per_s": v["atom_steps_per_s"],
            "cpu_us_per_atom_step": cpu_us(v), "peak_rss_bytes_per_atom": v["peak_rss_bytes_per_atom"],
            "peak_rss_gib": v["peak_rss_gib"], "state_bytes_per_atom": v.get("state_bytes_per_atom"),
            "block_atoms": v.get("block_atoms"),
            "blocks": {g: {"grid": b.get("grid"), "blocks": b.get("blocks"),
                           "evaluated_over_owned": b.get("evaluated_atoms", 0) / int(n)}
                       for g, b in (v.get("blocks") or {}).items()}}
    ratios, cpu_ratios = {}, {}
    for k, v in ok.items():
        code, n, dtype, threads, *preset = k.split("/")
        m = ok.get(f"mace/{n}/{dtype}/{threads}")
        if code == "compscope" and m and not preset:
            ratios[f"{n}/{dtype}/{threads}"] = v["atom_steps_per_s"] / m["atom_steps_per_s"]
            if cpu_us(v) and cpu_us(m):
                cpu_ratios[f"{n}/{dtype}/{threads}"] = cpu_us(m) / cpu_us(v)
    out["atom_steps_ratio_compscope_over_mace"] = ratios
    out["cpu_speed_ratio_compscope_over_mace"] = cpu_ratios
    row = out.get("compscope/float32/1t", {})
    if "1536" in row and "98304" in row:
        a, b = row["1536"]["us_per_atom_step"], row["98304"]["us_per_atom_step"]
        out["linear_scaling_spread_1536_to_98304"] = abs(b - a) / a
        if row["1536"]["cpu_us_per_atom_step"] and row["98304"]["cpu_us_per_atom_step"]:
            a, b = row["1536"]["cpu_us_per_atom_step"], row["98304"]["cpu_us_per_atom_step"]
            out["linear_scaling_spread_cpu_1536_to_98304"] = abs(b - a) / a
    million = {k: v for k, v in ok.items() if k.split("/")[1] == "1119744"}
    if million:
        out["one_million_atoms"] = {k: {"peak_rss_gib": v["peak_rss_gib"], "fits_24_gib": v["peak_rss_gib"] < 24,
                                        "state_bytes_per_atom": v.get("state_bytes_per_atom"),
                                        "block_atoms": v.get("block_atoms")} for k, v in million.items()}
    return out


HEAVY_WATER = {"standard": None, "deuterium": 2.014}  # hydrogen mass (amu) of the stability runs


def _water_start(masses: str):
    """The first test frame of the water set with standard or deuterium hydrogen masses (static properties of the
    classical Boltzmann distribution, density and g(r), do not depend on masses; D2O allows twice the step)."""
    from compscope.data import dataset_path
    from compscope.md import with_hydrogen_mass

    start = read(dataset_path("water", "water_test.extxyz"), 0)
    return start if HEAVY_WATER[masses] is None else with_hydrogen_mass(start, HEAVY_WATER[masses])


def _water_model(args):
    """``(path, float32 potential)`` of the stability parts' water model (``--model`` or the water run's), with the
    data path and thread count set."""
    import torch

    from compscope.md import load_potential
    from compscope.runtime import configure_threads

    os.environ.setdefault("COMPSCOPE_DATA", _data_env().get("COMPSCOPE_DATA", ""))
    configure_threads(args.threads)
    model_path = args.model or str(OUT / f"ours_water_{args.run_name or f'{args.budget_minutes:g}min'}" / "model.pt")
    return model_path, load_potential(model_path, dtype=torch.float32)


def _run_chunked(model, start, out: Path, steps: int, dt: float, every: int, supercell, chunk: int, seed: int = 0,
                 monitor=None, initial_momenta: str = "maxwell-boltzmann"):
    """``simulate`` to ``steps`` in resumable chunks of ``chunk`` steps (restart every ``every`` steps), one log
    line per chunk (simulated ps, atom-steps/s, temperature, potential energy per atom)."""
    import torch

    from compscope.md import read_h5_observables, simulate

    done = 0
    if (out / "trajectory.h5").exists():
        done = int(read_h5_observables(out / "trajectory.h5")["step"][-1])
    res = None
    while done < steps or res is None:
        target = min(steps, done + chunk) if done < steps else steps
        t0 = time.time()
        res = simulate(model, start, steps=target, dt=dt, temperature=300.0, integrator="langevin", friction=0.01,
                       supercell=supercell, out=out, traj_every=every, extxyz=False, plots=False,
                       resume=(out / "restart.pt").exists(), dtype=torch.float32, seed=seed, monitor=monitor,
                       initial_momenta=initial_momenta)
        obs = read_h5_observables(out / "trajectory.h5")
        n = obs["positions"].shape[1]
        print(f"{time.strftime('%H:%M:%S')} step {target}/{steps} ({target * dt / 1000:.2f} ps) "
              f"{(target - done) * n / max(time.time() - t0, 1e-9):.0f} atom-steps/s, "
              f"T {obs['temperature'][-1].item():.1f} K, "
              f"E_pot/atom {obs['potential_energy'][-1].item() / n:.4f} eV, violations {len(res.violations)}",
              flush=True)
        done = target
        if res.violations:
            break
    return res


def _block_mean(x: np.ndarray, blocks: int = 5) -> tuple[float, float]:
    """Mean and standard error from ``blocks`` contiguous blocks."""
    b = np.array([c.mean() for c in np.array_split(np.asarray(x, float), blocks)])
    return float(x.mean()), float(b.std(ddof=1) / np.sqrt(len(b)))


def part_stability_dt(args) -> Path:
    """Is the stability run's step safe? The 192-atom box for ``--dt-check-ps`` ps each with standard masses at
    0.5 fs and deuterium masses at 1 and 2 fs (Langevin BAOAB, 300 K): mean potential energy per atom (block
    errors), mean temperature and O-O g(r) must agree (configurational averages do not depend on masses)."""

    from compscope.md import radial_distribution, read_h5_observables

    model_path, model = _water_model(args)
    rows = {}
    for masses, dt in (("standard", 0.5), ("deuterium", 1.0), ("deuterium", 2.0)):
        out = OUT / f"stability_dt_{masses}_{dt:g}fs"
        steps = int(round(args.dt_check_ps * 1000 / dt))
        res = _run_chunked(model, _water_start(masses), out, steps, dt, every=max(1, int(round(20 / dt))),
                           supercell=None, chunk=steps, seed=0)
        obs = read_h5_observables(out / "trajectory.h5")
        keep = obs["time_ps"] >= args.dt_check_ps / 5  # the first fifth is equilibration
        n = obs["positions"].shape[1]
        epot, epot_se = _block_mean(np.ravel(obs["potential_energy"][keep]) / n)
        temp, temp_se = _block_mean(np.ravel(obs["temperature"][keep]))
        frames = [a for a, k in zip(_h5_frames(out / "trajectory.h5"), keep) if k]
        r, g = radial_distribution(frames, r_max=6.0, n_bins=60, pair=(8, 8))
        rows[f"{masses}/{dt:g}fs"] = {
            "hydrogen_mass_amu": HEAVY_WATER[masses] or 1.008, "dt_fs": dt, "steps": res.steps,
            "frames_used": int(keep.sum()), "violations": [v.to_dict() for v in res.violations],
            "epot_eV_per_atom": epot, "epot_se": epot_se, "temperature_K": temp, "temperature_se": temp_se,
            "g_OO": g.tolist(), "g_OO_first_peak": float(g.max()), "atom_steps_per_s": res.atom_steps_per_s}
    base = rows["standard/0.5fs"]
    for v in rows.values():
        v["epot_shift_vs_standard_0.5fs_in_se"] = (v["epot_eV_per_atom"] - base["epot_eV_per_atom"]) / max(
            np.hypot(v["epot_se"], base["epot_se"]), 1e-12)
        v["g_OO_max_abs_diff_vs_standard_0.5fs"] = float(np.abs(np.array(v["g_OO"]) - np.array(base["g_OO"])).max())
    payload = {"system": "water cell (192 atoms, 12.44 Å), Langevin BAOAB 300 K, friction 0.01/fs, float32",
               "model": model_path, "ps_each": args.dt_check_ps, "r": r.tolist(), "runs": rows, "targets": TARGETS}
    return write_result("md_scaling_stability_dt", payload, seed=0, notes=args.note)


def part_density_npt(args) -> Path:
    """The water model's own density: NPT (Langevin + stochastic cell rescaling, 1 bar, 300 K) of the 192-atom
    cell with D2O masses for ``--npt-ps`` ps at ``--npt-dt`` fs; the H2O mass density (64 x 18.015 amu / V) of the
    last two thirds, block errors, against the DFT frames' (their fixed cell)."""
    import torch

    from compscope.data import dataset_path
    from compscope.md import density_g_cm3, read_h5_observables, simulate

    model_path, model = _water_model(args)
    dt = args.npt_dt
    out = OUT / f"density_npt_{dt:g}fs"
    steps = int(round(args.npt_ps * 1000 / dt))
    start = _water_start("deuterium")
    t0 = time.process_time()
    res = simulate(model, start, steps=steps, dt=dt, temperature=300.0, integrator="npt", out=out,
                   traj_every=max(1, int(round(50 / dt))), extxyz=False, plots=False,
                   resume=(out / "restart.pt").exists(), dtype=torch.float32, seed=0)
    obs = read_h5_observables(out / "trajectory.h5")
    keep = obs["time_ps"] >= args.npt_ps / 3
    n_water = int((start.get_atomic_numbers() == 8).sum())
    vol = np.ravel(obs["volume"])[keep]  # Å^3
    rho = n_water * 18.015 / vol * 1.66053906660  # g/cm^3 (amu/Å^3 -> g/cm^3)
    mean, se = _block_mean(rho)
    train = read(dataset_path("water", "water_train.extxyz"), "::8")
    payload = {"system": f"water cell (64 H2O), NPT: Langevin BAOAB + stochastic cell rescaling, 300 K, 1 bar, "
                         f"dt {dt:g} fs, D2O masses, float32",
               "model": model_path, "steps": res.steps, "simulated_ps": res.steps * dt * 1e-3, "n_stable": res.n_stable,
               "frames_used": int(keep.sum()), "density_h2o_g_cm3": mean, "density_se": se,
               "density_training_g_cm3": float(np.mean([density_g_cm3(a) for a in train])),
               "temperature_K_mean": float(np.mean(np.ravel(obs["temperature"])[keep])),
               "cpu_s": time.process_time() - t0, "targets": TARGETS}
    return write_result("md_scaling_density_npt", payload, seed=0, notes=args.note)


def part_stability(args) -> Path:
    """NVT (Langevin BAOAB, 300 K) of a 4x4x4 water box (12,288 atoms) with the trained water model for
    ``--stability-ps`` ps at ``--stability-dt`` fs with ``--stability-masses`` hydrogens, resumable in chunks; density
    and O-O g(r) of the second half against the training frames'."""

    from compscope.data import dataset_path
    from compscope.md import density_g_cm3, radial_distribution

    model_path, model = _water_model(args)
    dt = args.stability_dt
    out = OUT / (args.stability_out or "stability_12k")
    steps = int(round(args.stability_ps * 1000 / dt)) if args.stability_ps else args.stability_steps
    every = max(1, int(round(args.stability_every_ps * 1000 / dt)))
    if args.stability_report_only:  # what the (possibly unfinished) run has so far, without running it
        sfile = out / "summary.json"  # written at the end of each chunk
        summary = json.loads(sfile.read_text()) if sfile.exists() else {
            "n_stable": None, "atom_steps_per_s": None, "replica_summary": []}
        from types import SimpleNamespace

        from compscope.md import read_h5_observables

        res = SimpleNamespace(steps=int(read_h5_observables(out / "trajectory.h5")["step"][-1]),
                              n_stable=summary["n_stable"], violations=[],
                              atom_steps_per_s=summary["atom_steps_per_s"])
        unstable = [r for r in summary["replica_summary"] if not r["stable"]]
    else:
        from compscope.md import StabilityMonitor

        # a continuation starts from a saved frame with its momenta (e.g. a stopped run's last good frame), the
        # box as it is; --stability-reactive leaves the bond check out (a proton hopping to the next oxygen
        # "stretches" the start's O-H bond although nothing blew up); every other check stays on
        start = (read(args.stability_start) if args.stability_start else _water_start(args.stability_masses))
        if args.stability_start and HEAVY_WATER[args.stability_masses] is not None:
            from compscope.md import with_hydrogen_mass

            start = with_hydrogen_mass(start, HEAVY_WATER[args.stability_masses])  # extxyz keeps no masses
        monitor = StabilityMonitor(max_bond_stretch=None) if args.stability_reactive else None
        res = _run_chunked(model, start, out, steps, dt, every, None if args.stability_start else (4, 4, 4),
                           chunk=every * 5, seed=args.stability_seed, monitor=monitor,
                           initial_momenta="atoms" if args.stability_start else "maxwell-boltzmann")
        unstable = [v.to_dict() for v in res.violations]
    frames = _h5_frames(out / "trajectory.h5")
    half = frames[len(frames) // 2:]  # the second half of the saved frames
    train = read(dataset_path("water", "water_train.extxyz"), "::8")  # 40 of the 320 training frames
    r, g_md = radial_distribution(half, r_max=6.0, n_bins=60, pair=(8, 8))
    _, g_ref = radial_distribution(train, r_max=6.0, n_bins=60, pair=(8, 8))
    obs = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {}
    payload = {
        "system": f"water 4x4x4 (12,288 atoms), Langevin BAOAB 300 K, friction 0.01/fs, dt {dt:g} fs, "
                  f"{args.stability_masses} hydrogen masses, float32",
        "model": model_path, "steps": res.steps, "dt_fs": dt, "hydrogen_masses": args.stability_masses,
        "simulated_ps": res.steps * dt * 1e-3, "target_ps": steps * dt * 1e-3, "complete": res.steps >= steps,
        "n_stable": res.n_stable, "violations": unstable,
        "atom_steps_per_s_last_chunk": res.atom_steps_per_s, "peak_rss_gib": obs.get("peak_rss_gib"),
        "density_g_cm3": {"md": density_g_cm3(half[-1]), "training": float(np.mean([density_g_cm3(a) for a in train])),
                          "note": "NVT: the cell is fixed, so the density is the start's by construction"},
        "g_OO": {"r": r.tolist(), "md": g_md.tolist(), "training": g_ref.tolist(),
                 "first_peak_r_md": float(r[np.argmax(g_md)]), "first_peak_r_training": float(r[np.argmax(g_ref)]),
                 "first_peak_height_md": float(g_md.max()), "first_peak_height_training": float(g_ref.max()),
                 "max_abs_diff": float(np.abs(g_md - g_ref).max()),
                 "frames_md": len(half), "frames_training": len(train)},
        "temperature_K_last": float(_h5_temperature(out / "trajectory.h5")), "targets": TARGETS,
        "start": args.stability_start or "first test frame, 4x4x4", "bond_check": not args.stability_reactive,
        "water_ions": _water_ions(frames, every * dt * 1e-3),
    }
    return write_result(args.stability_result or "md_scaling_stability", payload, seed=args.stability_seed,
                        notes=args.note)


def _water_ions(frames: list, frame_ps: float, r_oh: float = 1.25) -> dict:
    """Oxygens with other than two hydrogens within ``r_oh`` Å in each saved frame: hydronium (3) / hydroxide (1)
    ions, the trace of a proton transfer (neutral water at 300 K has essentially none on these time scales)."""
    from ase.neighborlist import neighbor_list

    counts = []
    for a in frames:
        z = a.get_atomic_numbers()
        i, j = neighbor_list("ij", a, r_oh)
        oh = (z[i] == 8) & (z[j] == 1)
        n_h = np.bincount(i[oh], minlength=len(a))[z == 8]
        counts.append(int((n_h != 2).sum()))
    counts = np.asarray(counts)
    return {"frames": len(counts), "frame_ps": frame_ps, "frames_with_ions": int((counts > 0).sum()),
            "max_ions": int(counts.max()) if len(counts) else 0,
            "first_frame_with_ions": int(np.argmax(counts > 0)) if (counts > 0).any() else None,
            "per_frame": counts.tolist()}


def _h5_frames(path: Path) -> list:
    """Every saved frame of an HDF5 trajectory as ASE Atoms, read one frame at a time."""
    import h5py
    from ase import Atoms

    with h5py.File(path, "r", locking=False) as f:  # a running job may be writing it: complete frames only
        p = f["particles/all"]
        z, cell = p["species"][:], p["box/edges"][0]
        pos = p["position/value"]
        n = int(f.attrs.get("n_frames", pos.shape[0]))
        return [Atoms(numbers=z, positions=pos[t], cell=cell, pbc=True) for t in range(n)]


def _h5_temperature(path: Path) -> float:
    from compscope.md import read_h5_observables

    return float(np.ravel(read_h5_observables(path)["temperature"])[-1])


# ------------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="water",
                    help="comma-separated: water, throughput, stability, stability-dt, density-npt")
    ap.add_argument("--budget-minutes", type=float, default=30.0, help="water: training budget of each code")
    ap.add_argument("--threads", type=int, default=1, help="water: torch threads of each code")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                    help="water: what the budget counts (cpu: each side's CPU seconds, fair on a shared machine)")
    ap.add_argument("--dtype", default="float32", help="water: training dtype of both codes")
    ap.add_argument("--mace-venv", default=str(ROOT / ".venv-mace"))
    ap.add_argument("--run-name", default=None, help="water: tag of the run folders (default: the budget)")
    ap.add_argument("--note", action="append", default=[], help="free text stored in the JSON's notes")
    ap.add_argument("--model", default=None, help="throughput/stability: model file (default: throughput an untrained "
                                                  "`small` model; stability the water run's model.pt)")
    ap.add_argument("--plan", default=DEFAULT_PLAN, help="throughput: 'code,atoms,dtype,threads,steps;...'")
    ap.add_argument("--timeout", type=float, default=1800.0, help="throughput: limit of one measurement (s)")
    ap.add_argument("--stability-steps", type=int, default=200, help="stability: steps (when --stability-ps is 0)")
    ap.add_argument("--stability-ps", type=float, default=0.0, help="stability: simulated ps (0: --stability-steps)")
    ap.add_argument("--stability-dt", type=float, default=0.5, help="stability: time step, fs")
    ap.add_argument("--stability-masses", choices=sorted(HEAVY_WATER), default="standard",
                    help="stability: hydrogen masses (deuterium: D2O, same static properties, twice the step)")
    ap.add_argument("--stability-every-ps", type=float, default=0.5, help="stability: ps between saved frames")
    ap.add_argument("--stability-out", default=None, help="stability: run folder name under the work folder")
    ap.add_argument("--stability-result", default=None, help="stability: result JSON name")
    ap.add_argument("--stability-start", default=None,
                    help="stability: continue from this extxyz frame (positions and momenta, e.g. a stopped run's "
                         "failed_replica_0.extxyz: its last good frame) instead of the 4x4x4 start")
    ap.add_argument("--stability-reactive", action="store_true",
                    help="stability: no bond check (protons may hop between oxygens); the other checks stay")
    ap.add_argument("--stability-seed", type=int, default=0, help="stability: seed of the thermostat")
    ap.add_argument("--stability-report-only", action="store_true",
                    help="stability: write the JSON from what the run folder holds (an unfinished run too)")
    ap.add_argument("--npt-ps", type=float, default=30.0, help="density-npt: simulated ps")
    ap.add_argument("--npt-dt", type=float, default=1.0, help="density-npt: time step, fs")
    ap.add_argument("--dt-check-ps", type=float, default=10.0, help="stability-dt: simulated ps of each run")
    ap.add_argument("--cache", default=None, help="throughput: the cache of finished measurements (default "
                                                  "benchmarks/work/md_scaling/throughput_cache.json)")
    ap.add_argument("--result-name", default="md_scaling", help="throughput: name of the result JSON")
    ap.add_argument("--attach-progress", action="append", default=[], metavar="KEY=LOG",
                    help="throughput: also summarise the per-block progress log of a measurement stopped before its "
                         "end (stored under partial_runs/KEY)")
    args = ap.parse_args()
    for part in args.parts.split(","):
        if part == "water":
            print("wrote", part_water(args))
        elif part == "throughput":
            print("wrote", part_throughput(args))
        elif part == "stability":
            print("wrote", part_stability(args))
        elif part == "stability-dt":
            print("wrote", part_stability_dt(args))
        elif part == "density-npt":
            print("wrote", part_density_npt(args))
        else:
            raise SystemExit(f"unknown part {part!r}")


if __name__ == "__main__":
    main()
