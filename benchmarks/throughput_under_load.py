"""MD and training throughput with a competing busy process beside them: compscope's thread defaults vs the old ones.

On a shared machine, more compute threads than free cores, or OpenMP threads that spin while they wait, make every
parallel region wait for a thread the OS has parked (issue 19, item 6: the quickstart's MD ran 17x slower under
load). This script measures, in one run:

- **MD**: the quickstart's MD (4 replicas of rMD17 ethanol, Langevin 300 K, 0.5 fs, float32) with a small
  force field (preset ``small``, trained here for a minute on the bundled 200 frames, cached in
  ``benchmarks/work/throughput_under_load``): ns/day per replica after the warm-up steps
  (:attr:`compscope.md.MDResult.ns_per_day` leaves out the first ``WARMUP_STEPS``);
- **training**: optimiser steps/s of the same force field's training (batch 5, EMA on), through
  :func:`compscope.train.fit`, timing the training batches after the first few;

each **idle** and **loaded** (one pure-Python spin loop started by this script, not pinned, beside it), for

- ``new``: compscope's defaults (:mod:`compscope.runtime`: threads from the free cores, passive OpenMP wait);
- ``old``: what ran before them (torch's default thread count, one per core, and the OpenMP runtime's default
  spin-then-sleep wait: torch imported before compscope, ``COMPSCOPE_NUM_THREADS`` and the OpenMP variables unset).

Every measurement is a fresh process (the wait policy is fixed when torch loads OpenMP), repeated ``--repeats``
times with the configurations interleaved; the JSON keeps every value, the medians and the loaded/idle ratios
(the target: above 0.4 for ``new``). "Idle" means no spinner of ours: other work on a shared machine still counts,
so each measurement records the busy cores seen just before it, and the CPU share the measured process got
(CPU seconds per wall second: below 1 when other work takes its core, above 1 when idle threads spin).

Usage:
    nice -n 10 python -m benchmarks.throughput_under_load [--repeats 3] [--md-steps 300] [--train-steps 40]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if not __package__:  # run as `python benchmarks/<name>.py`: put the repository root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import ROOT, WORK, write_result  # noqa: E402

TARGET_RATIO = 0.4
"""Loaded over idle throughput that compscope's defaults must keep (2 cores, one of them busy)."""
MODES = ("old", "new")
CONDITIONS = ("idle", "loaded")
# variables a worker starts without, so that each mode sets (or leaves) them itself
_CLEAN = ("COMPSCOPE_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS",
          "OMP_WAIT_POLICY", "KMP_BLOCKTIME", "GOMP_SPINCOUNT")
SPIN = "while True:\n    pass\n"


def _bundled() -> Path:
    import compscope.forcefield

    return Path(compscope.forcefield.__file__).parent / "bundled"


def train_config(out: Path, trainer: dict) -> dict:
    """The quickstart's training recipe (preset ``small``, float32, 180 train / 20 valid frames, batch 5)."""
    bundled = _bundled()
    return {
        "seed": 0, "dtype": "float32", "out": str(out),
        "model": {"preset": "small"},
        "data": {"init_args": {"train": str(bundled / "ethanol_train_200.xyz"), "n_valid": 20, "batch_size": 5,
                               "valid_batch_size": 20}},
        "task": {"init_args": {"lr": 0.01, "forces_weight": 100.0, "energy_weight": 1.0}},
        "trainer": {"ema_decay": 0.99, "early_stopping_patience": 0, "progress_bar": False, **trainer},
    }


def prepare_model(work: Path, minutes: float) -> Path:
    """The MD model: the quickstart recipe trained for ``minutes`` (kept in ``work`` and reused)."""
    model = work / "model" / "model.pt"
    if not model.exists():
        from compscope.forcefield import fit

        fit(train_config(work / "model", {"max_epochs": 1000, "max_time_minutes": minutes}))
    return model


def step_times(durations: list[float], warmup: int) -> float:
    """Steps per second over the steps after the first ``warmup`` (each duration one step's seconds)."""
    kept = durations[warmup:]
    if not kept:
        raise ValueError(f"{len(durations)} steps timed, none after the {warmup} warm-up steps")
    return len(kept) / sum(kept)


def summarize(values: list[float]) -> dict:
    """Median, min, max and every value."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "values": values}


# ------------------------------------------------------------------------------------------------- worker side
def worker(spec: dict) -> dict:
    """One measurement in this (fresh) process: MD ns/day, then training steps/s, in ``spec["mode"]``."""
    if spec["mode"] == "old":
        wait_at_load = os.environ.get("OMP_WAIT_POLICY")  # what OpenMP reads when torch loads it
        import torch  # first: OpenMP starts with its own defaults (no compscope wait policy)

        threads = torch.get_num_threads()  # torch's default: one per core
    else:
        from compscope.runtime import configure_threads

        threads = configure_threads()  # compscope's default: the free cores
        wait_at_load = os.environ.get("OMP_WAIT_POLICY")  # torch (OpenMP) is loaded after this
    import lightning as L
    import torch
    from ase.io import read

    from compscope.forcefield import build, load_model, resolve_config
    from compscope.md import simulate
    from compscope.runtime import thread_report
    from compscope.train import RunDir, TrainerConfig, fit

    out: dict = {"mode": spec["mode"], "threads": threads, "omp_wait_policy_at_torch_load": wait_at_load}
    md_steps, train_steps = spec["md_steps"][spec["mode"]], spec["train_steps"][spec["mode"]]
    model = load_model(spec["model"])
    atoms = read(_bundled() / "ethanol_test_100.xyz", 0)
    c0, w0 = time.process_time(), time.perf_counter()
    res = simulate(model, atoms, steps=md_steps, dt=0.5, temperature=300.0, replicas=4, seed=0)
    cpu_share = (time.process_time() - c0) / (time.perf_counter() - w0)
    out["md"] = {"ns_per_day": res.ns_per_day, "warmup_steps": res.warmup_steps, "steps": res.steps,
                 "wall_s": res.wall_s, "n_stable": res.n_stable, "ns_per_day_incl_warmup": res.ns_per_day_incl_warmup,
                 "cpu_share": cpu_share}

    class StepTimer(L.Callback):
        def __init__(self) -> None:
            self.durations: list[float] = []
            self.cpu: list[float] = []

        def on_train_batch_start(self, *_args) -> None:
            self.t, self.c = time.perf_counter(), time.process_time()

        def on_train_batch_end(self, *_args) -> None:
            self.durations.append(time.perf_counter() - self.t)
            self.cpu.append(time.process_time() - self.c)

    warmup = spec["train_warmup"]
    trainer = {"max_steps": warmup + train_steps, "max_epochs": -1, "monitor": None,
               "num_threads": threads if spec["mode"] == "old" else None}
    cfg = resolve_config(train_config(Path(spec["out"]) / "train", trainer))
    run = RunDir(cfg["out"], resume=False, config=cfg).start()
    data, task = build(cfg)
    timer = StepTimer()
    fit(task, data, run, TrainerConfig(**cfg["trainer"]), callbacks=[timer])
    out["train"] = {"steps_per_s": step_times(timer.durations, warmup), "steps_timed": len(timer.durations) - warmup,
                    "warmup_steps": warmup,
                    "cpu_share": sum(timer.cpu[warmup:]) / max(sum(timer.durations[warmup:]), 1e-12)}
    out["runtime"] = thread_report()
    out["torch_threads_at_end"] = torch.get_num_threads()
    return out


# ------------------------------------------------------------------------------------------------- parent side
def measure(mode: str, loaded: bool, spec: dict, timeout: float) -> dict:
    """Run one worker process (beside a spinning process when ``loaded``); returns its result."""
    from compscope.runtime import busy_cores

    env = {k: v for k, v in os.environ.items() if k not in _CLEAN}
    spinner = subprocess.Popen([sys.executable, "-c", SPIN]) if loaded else None
    try:
        if spinner is not None:
            time.sleep(1.0)  # running, and visible to /proc/stat, before the worker starts
        busy = busy_cores(0.5)
        load1 = os.getloadavg()[0]
        with tempfile.TemporaryDirectory() as tmp:
            args = json.dumps({**spec, "mode": mode, "out": tmp})
            p = subprocess.run([sys.executable, "-m", "benchmarks.throughput_under_load", "--worker", args],
                               cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT")]
    if p.returncode or not line:
        raise RuntimeError(f"worker {mode} loaded={loaded} failed:\n{(p.stderr or p.stdout)[-3000:]}")
    res = json.loads(line[-1][len("RESULT"):])
    res.update(loaded=loaded, busy_cores_before=busy, loadavg_1min_before=load1)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="measurements of each (mode, condition)")
    ap.add_argument("--md-steps", type=int, default=300, help="MD steps per measurement (the first 10 not timed)")
    ap.add_argument("--md-steps-old", type=int, default=60, help="MD steps of the old defaults (slow under load)")
    ap.add_argument("--train-steps", type=int, default=40, help="training steps timed per measurement")
    ap.add_argument("--train-steps-old", type=int, default=10, help="training steps timed with the old defaults")
    ap.add_argument("--train-warmup", type=int, default=5, help="training steps before the timed ones")
    ap.add_argument("--train-minutes", type=float, default=1.0, help="training of the MD model (once, cached)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds one measurement may take")
    ap.add_argument("--result", default="throughput_under_load", help="name of the JSON in benchmarks/results/")
    ap.add_argument("--sweep", action="store_true", help="write to benchmarks/results/sweeps/ (a variant)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker is not None:
        print("RESULT" + json.dumps(worker(json.loads(args.worker)), default=float), flush=True)
        return

    from compscope.runtime import available_cores, configure_threads

    configure_threads()
    work = WORK / "throughput_under_load"
    model = prepare_model(work, args.train_minutes)
    spec = {"model": str(model), "md_steps": {"new": args.md_steps, "old": args.md_steps_old},
            "train_steps": {"new": args.train_steps, "old": args.train_steps_old}, "train_warmup": args.train_warmup}
    t0 = time.time()
    runs: list[dict] = []
    for rep in range(args.repeats):
        for loaded in (False, True):
            for mode in (MODES if rep % 2 == 0 else MODES[::-1]):  # alternate which mode goes first
                r = measure(mode, loaded, spec, args.timeout)
                r["repeat"] = rep
                runs.append(r)
                print(f"repeat {rep} {mode:3s} {'loaded' if loaded else 'idle  '} threads {r['threads']} "
                      f"busy {r['busy_cores_before']:.2f}: MD {r['md']['ns_per_day']:.3f} ns/day, "
                      f"train {r['train']['steps_per_s']:.2f} steps/s", flush=True)

    results: dict = {}
    for mode in MODES:
        cell: dict = {}
        for what, key in (("md", "ns_per_day"), ("train", "steps_per_s")):
            vals = {c: [r[what][key] for r in runs if r["mode"] == mode and r["loaded"] == (c == "loaded")]
                    for c in CONDITIONS}
            per_repeat = [lo / idle for idle, lo in zip(vals["idle"], vals["loaded"], strict=True)]
            cell[what] = {"unit": key, "idle": summarize(vals["idle"]), "loaded": summarize(vals["loaded"]),
                          "ratio_loaded_over_idle": statistics.median(vals["loaded"]) / statistics.median(vals["idle"]),
                          "ratio_per_repeat": summarize(per_repeat),
                          "cpu_share_median": {c: statistics.median(
                              r[what].get("cpu_share", float("nan")) for r in runs
                              if r["mode"] == mode and r["loaded"] == (c == "loaded")) for c in CONDITIONS}}
        cell["threads"] = {c: sorted({r["threads"] for r in runs
                                      if r["mode"] == mode and r["loaded"] == (c == "loaded")}) for c in CONDITIONS}
        results[mode] = cell
    targets_met = {what: results["new"][what]["ratio_loaded_over_idle"] > TARGET_RATIO for what in ("md", "train")}
    speedup_loaded = {what: results["new"][what]["loaded"]["median"] / results["old"][what]["loaded"]["median"]
                      for what in ("md", "train")}
    for mode in MODES:
        print(mode, {w: round(results[mode][w]["ratio_loaded_over_idle"], 3) for w in ("md", "train")})
    path = write_result(args.result, {
        "system": "rMD17 ethanol (9 atoms): MD of 4 replicas, Langevin 300 K, 0.5 fs; training batch 5, EMA; float32",
        "model": "preset small trained on the bundled 180 frames for --train-minutes (MD), the same recipe (training)",
        "available_cores": available_cores(), "repeats": args.repeats, "md_steps": spec["md_steps"],
        "train_steps": spec["train_steps"], "train_warmup_steps": args.train_warmup,
        "modes": {"new": "compscope.runtime defaults: threads from the free cores, OMP_WAIT_POLICY=PASSIVE",
                  "old": "torch default threads (one per core), OpenMP default wait (torch loaded before compscope)"},
        "load": "one pure-Python spin loop (not pinned) started by the script beside the measured process",
        "results": results, "speedup_new_over_old_loaded": speedup_loaded,
        "target_ratio": TARGET_RATIO, "target_met": targets_met, "runs": runs, "total_wall_s": time.time() - t0,
    }, seed=0, sweep=args.sweep, notes=[
        "speeds after warm-up: MD leaves out the first min(10, steps // 10) steps (WARMUP_STEPS of compscope.md), "
        f"training the first {args.train_warmup} steps; training speed times the training batches only",
        "the old defaults run fewer steps (--md-steps-old, --train-steps-old): under load they are many times slower",
        "each measurement is a fresh process; 'idle' is without our spinner, on a machine other work may share: "
        "runs[*].busy_cores_before says how busy it was",
    ])
    print(path)


if __name__ == "__main__":
    main()
