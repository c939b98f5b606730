"""Boltzmann generator benchmark: the E(n)-equivariant CNF trained by equivariant flow matching on DW4, LJ13, LJ55.

Trains :class:`compscope.sampling.EquivariantCNF` with ``loss: flow_matching`` (Klein, Krämer & Noé 2023:
minibatch OT on rotation-aligned costs, then per-pair Hungarian permutation + Kabsch alignment) under a
wall-clock budget on this CPU, then:

- test NLL on the test split (exact divergence; nats per configuration and per degree of freedom of the
  mean-free subspace, ``(n - 1) dim``);
- ``--n-samples`` flow samples with exact ``log q`` (``compscope.sampling.draw_samples``, RK4), their Kish ESS,
  energy W2 (flow vs test split and reweighted vs test split), mean energies; drawn in saved chunks
  (``sample_chunks/`` in the run folder, resumable) and optionally stopped by a CPU budget
  (``--draw-cpu-minutes``: the JSON states the count reached);
- the solver of the test NLL and the draws: ``--sample-steps`` RK4 steps and either the exact divergence at every
  RK4 stage (default) or ``--div-nodes``/``--div-panels`` composite Gauss-Legendre quadrature of the exact
  divergence along the RK4 path (10 divergences per draw instead of 80: LJ13), in ``--dtype``;
  ``--check-integration N`` measures its log q error against a 40-step solve on N draws;
- training wall time (the trainer's budget clock, summed over resumes) and samples/s.

One seed per run: ``--seed S`` trains in ``benchmarks/work/sampling_bg_<sys>_seed<S>`` and writes
``results/sweeps/sampling_bg_<sys>_seed<S>.json``; ``--aggregate`` collects those into the headline
``results/sampling_bg_<sys>.json`` (every seed's row and the mean ± standard error over seeds of the test NLL,
ESS and energy W2; the training budget of each seed is stated, and a mix of budgets is flagged).
``--loss reverse_kl --init-from RUN`` fine-tunes a trained run by reverse KL with the target's energy
(``--tag`` names it: ``sweeps/sampling_bg_<sys>_<tag>.json``, with the ESS of the run it started from).

Every stage is resumable: the run folder holds the Lightning checkpoints (``--resume`` is automatic when
``checkpoints/last.ckpt`` exists; the time budget is summed over resumes), the samples are written to
``samples.h5`` and the test NLL to ``test_nll.json`` in the run folder, and a rerun reuses them.

    nice -n 15 python -m benchmarks.sampling_bg --system dw4 --seed 1 --minutes 20   # sweeps/..._dw4_seed1.json
    python -m benchmarks.sampling_bg --system dw4 --aggregate                        # sampling_bg_dw4.json
    python -m benchmarks.sampling_bg --system lj13 --seed 0 --minutes 30             # training data: our MCMC
    python -m benchmarks.sampling_bg --system dw4 --seed 1 --partial                 # JSON from what exists
    python -m benchmarks.sampling_bg --system lj13 --seed 0 --minutes 15 --out RUN --eval-only --n-samples 100000
        --draw-cpu-minutes 6 --chunk 250 --n-test 300 --div-nodes 5 --div-panels 2 --sample-steps 4
        --dtype float32 --check-integration 4                                         # LJ13 evaluation as committed

LJ13 trains on the project's own MCMC samples (``compscope sample reference lj13 --set n_samples=6000 --set
n_chains=300``, the default ``--train``); the shipped LJ13 val/test splits are only used for validation and
test. LJ55 has no shipped split: train, validation and test are all our MCMC (``--train/--valid/--test``).

Published numbers are stored beside ours with their source (:data:`PUBLISHED`); values that could not be read
in a source with this session's search tools are ``None`` with a note, never guessed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if not __package__:  # run as `python benchmarks/<name>.py`: put the repository root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import SWEEPS, WORK, write_result  # noqa: E402

PUBLISHED = {
    "sources": {
        "EqFM": "Klein, Krämer & Noé, Equivariant flow matching, NeurIPS 2023 (arXiv:2306.15030), tables for DW4, "
                "LJ13, LJ55: NLL and ESS of likelihood-, OT- and equivariant-OT-flow-matching-trained CNFs (GPU)",
        "E-NF": "Garcia Satorras, Hoogeboom, Fuchs, Posner & Welling, E(n) Equivariant Normalizing Flows, "
                "NeurIPS 2021 (arXiv:2105.09016), Table: DW4 / LJ13 NLL vs number of training samples",
    },
    "dw4": {"EqFM_equivariant_OT_FM": {"nll": None, "ess_percent": None},
            "E-NF": {"nll": None}},
    "lj13": {"EqFM_equivariant_OT_FM": {"nll": None, "ess_percent": None},
             "E-NF": {"nll": None}},
    "note": "Not filled: no source with the tables could be read with the search tools. Session 1 found only "
            "the abstracts (arxiv/ar5iv/NeurIPS text pages). Session 2 (2026-12-05) tried the pages corpus "
            "(the NeurIPS full-text files of both papers and ar5iv 2306.15030 are indexed, but only their "
            "opening is returned, which holds no table), the code corpus and the authors' repositories "
            "(vgsatorras/en_flows README: commands only, no numbers) and the issues corpus; the only DW4/LJ13 "
            "NLL values found were run comments in a third-party fork (Kalyan0821/ecnf-baseline-neurips-2023, "
            "commands.sh: not a published table, and in another convention), not used. The values stay None "
            "rather than quoted from memory. Fill them from the papers' tables (and check their NLL "
            "convention: mean-free subspace, per configuration) before comparing.",
}
"""Published results with their source."""

SYSTEMS = {
    "dw4": {"train": "split:dw4/train", "valid": "split:dw4/val", "test": "split:dw4/test",
            "flow": {"hidden": 32, "num_layers": 3, "n_steps": 20}, "batch_size": 128, "n_valid": 100,
            "val_every": 500, "targets": {"ess_percent": 50.0, "train_cpu_minutes": 60.0}},
    # no shipped LJ13 training split: our MCMC (compscope sample reference lj13 --set n_samples=6000
    # --set n_chains=300); exact NLL costs 39 autograd passes per field evaluation: small validation set
    "lj13": {"train": "reference:lj13/mala/6000/0", "valid": "split:lj13/val", "test": "split:lj13/test",
             "flow": {"hidden": 32, "num_layers": 3, "n_steps": 20}, "batch_size": 64, "n_valid": 16,
             "val_every": 1000, "targets": {"ess_percent": 30.0, "train_cpu_minutes": 60.0}},
    "lj55": {"train": None, "valid": None, "test": None,  # all three from our MCMC (--train/--valid/--test)
             "flow": {"hidden": 32, "num_layers": 3, "n_steps": 20}, "batch_size": 16, "n_valid": 4,
             "val_every": 1000, "targets": {"ess_percent": 5.0}},
}


def source(spec: str | None) -> str | None:
    """``reference:<name>/<sampler>/<n>/<seed>``: the cached ``reference.h5`` of ``compscope sample reference``."""
    if spec is None or not spec.startswith("reference:"):
        return spec
    from compscope.sampling import reference_dir

    name, sampler, n, seed = spec[len("reference:"):].split("/")
    return str(reference_dir(name, sampler, int(n), int(seed)) / "reference.h5")


def config(system: str, minutes: float, train: str | None, seed: int, n_train: int | None,
           valid: str | None = None, loss: str = "flow_matching", init_from: str | None = None,
           batch_size: int | None = None, clock: str = "cpu") -> dict:
    s = SYSTEMS[system]
    module = {"loss": "flow_matching", "alignment": "equivariant", "lr": 5e-4, "sigma": 0.0}
    if loss == "reverse_kl":  # fine-tuning by the energy: backpropagation through 4 RK4 steps, one probe
        module = {"loss": "reverse_kl", "lr": 3e-4, "hutchinson": True, "train_steps": 4, "energy_high": 1e3}
    cfg = {
        "seed": seed,
        "flow": s["flow"],
        "data": {"target": system, "train": source(train or s["train"]), "valid": source(valid or s["valid"]),
                 "n_train": n_train, "n_valid": s["n_valid"], "batch_size": batch_size or s["batch_size"]},
        "module": module,
        "trainer": {"max_epochs": 10_000, "max_time_minutes": minutes, "val_check_interval": s["val_every"],
                    "checkpoint_minutes": 5, "ema_decay": 0.999, "gradient_clip_val": 1.0, "num_threads": 1,
                    "progress_bar": False, "monitor": "val_nll", "budget_clock": clock},
    }
    if init_from is not None:
        cfg["init_from"] = init_from
    if loss == "reverse_kl":  # a few hundred steps: a shorter EMA and more frequent validation
        cfg["trainer"].update(ema_decay=0.99, val_check_interval=100)
    return cfg


def test_nll(flow, system: str, source: str, n: int, batch: int = 250, n_steps: int | None = None) -> dict:
    """Exact NLL of the first ``n`` frames of ``source`` (the flow's ``div_nodes``/``div_panels`` solver)."""
    import torch

    from compscope.sampling import load_positions

    x = load_positions(source, system)[:n].to(next(flow.parameters()).dtype)
    nll = torch.cat([-flow.log_prob(x[i:i + batch], n_steps=n_steps).detach()
                     for i in range(0, len(x), batch)]).double()
    dof = (flow.n_particles - 1) * flow.dim
    return {"n": len(x), "nll": nll.mean().item(), "nll_se": (nll.std() / len(nll) ** 0.5).item(),
            "nll_per_dof": nll.mean().item() / dof, "dof": dof, "source": source}


def draw_chunks(flow, system: str, n: int, folder: Path, chunk: int, seed: int, n_steps: int | None,
                cpu_budget_s: float | None) -> dict:
    """``n`` draws in chunks of ``chunk``, each saved to ``folder/chunk_<k>.npz`` with its wall and CPU seconds (a
    rerun skips the saved ones; chunk ``k`` uses seed ``seed * 100_003 + k``); stops early once the chunks' CPU
    seconds reach ``cpu_budget_s`` (at least one chunk is drawn). Returns
    :func:`compscope.sampling.draw_samples`'s dict over all chunks."""
    import numpy as np

    from compscope.sampling import draw_samples, importance_weights

    folder.mkdir(parents=True, exist_ok=True)
    parts, k = [], 0
    while sum(len(p["log_q"]) for p in parts) < n:
        f = folder / f"chunk_{k:05d}.npz"
        if f.exists():
            parts.append(dict(np.load(f)))
        else:
            if parts and cpu_budget_s is not None and sum(float(p["cpu_seconds"]) for p in parts) >= cpu_budget_s:
                break
            b = min(chunk, n - sum(len(p["log_q"]) for p in parts))
            d = draw_samples(flow, system, b, batch_size=b, seed=seed * 100_003 + k, n_steps=n_steps)
            part = {key: np.asarray(d[key]) for key in ("positions", "log_q", "energy", "seconds", "cpu_seconds")}
            np.savez(folder / f"chunk_{k:05d}.tmp.npz", **part)
            (folder / f"chunk_{k:05d}.tmp.npz").replace(f)
            parts.append(part)
            print(f"drew {sum(len(p['log_q']) for p in parts)} / {n}", flush=True)
        k += 1
    u = np.concatenate([p["energy"] for p in parts])
    lq = np.concatenate([p["log_q"] for p in parts])
    iw = importance_weights(u, lq)
    sec = sum(float(p["seconds"]) for p in parts)
    cpu = sum(float(p["cpu_seconds"]) for p in parts)
    return {"positions": np.concatenate([p["positions"] for p in parts]), "log_q": lq, "energy": u,
            "log_w": iw.log_w, "n_invalid": iw.n_invalid, "seconds": sec, "cpu_seconds": cpu,
            "samples_per_s": len(lq) / sec, "samples_per_cpu_s": len(lq) / cpu, "n_chunks": len(parts)}


SUMMARY_KEYS = {"test_nll": ("test_nll", "nll"), "test_nll_per_dof": ("test_nll", "nll_per_dof"),
                "ess_percent": ("ess_percent",), "energy_w2_flow": ("energy_w2_flow",),
                "energy_w2_reweighted": ("energy_w2_reweighted",), "train_seconds": ("train_seconds",),
                "samples_per_s": ("samples_per_s",), "samples_per_cpu_s": ("samples_per_cpu_s",)}


def _get(doc: dict, path: tuple[str, ...]):
    for k in path:
        if not isinstance(doc, dict) or doc.get(k) is None:
            return None
        doc = doc[k]
    return doc


def seed_row(doc: dict, file: str) -> dict:
    """One seed's numbers from its sweep JSON."""
    row = {"seed": doc.get("seed"), "file": file,
           "budget_minutes": _get(doc, ("config", "trainer", "max_time_minutes")),
           "budget_clock": _get(doc, ("config", "trainer", "budget_clock")) or "wall",
           "global_step": doc.get("global_step"), "n_test": _get(doc, ("test_nll", "n")),
           "test_nll_se": _get(doc, ("test_nll", "nll_se")), "n_samples": doc.get("n_samples"),
           "n_invalid": doc.get("n_invalid"), "ess_percent_bootstrap_sd": doc.get("ess_percent_bootstrap_sd"),
           "solver": doc.get("solver")}
    row.update({k: _get(doc, path) for k, path in SUMMARY_KEYS.items()})
    return row


def summarise(rows: list[dict]) -> dict:
    """Mean, standard error over seeds (sd / sqrt(n), ddof 1), min, max and n of every headline quantity."""
    import numpy as np

    out = {}
    for k in SUMMARY_KEYS:
        v = np.array([r[k] for r in rows if r.get(k) is not None], dtype=float)
        if len(v):
            out[k] = {"mean": float(v.mean()), "se": float(v.std(ddof=1) / len(v) ** 0.5) if len(v) > 1 else None,
                      "min": float(v.min()), "max": float(v.max()), "n_seeds": int(len(v))}
    return out


def aggregate(system: str, notes: list[str], folder: Path = SWEEPS, out_folder: Path | None = None) -> Path:
    """The headline ``sampling_bg_<system>.json`` from the per-seed sweep JSONs (module docstring)."""
    files = sorted(folder.glob(f"sampling_bg_{system}_seed*.json"))
    if not files:
        raise SystemExit(f"no {folder}/sampling_bg_{system}_seed*.json: run seeds first (--seed S)")
    docs = [json.loads(f.read_text()) for f in files]
    rows = [seed_row(d, f.name) for d, f in zip(docs, files)]
    budgets = sorted({r["budget_minutes"] for r in rows if r["budget_minutes"] is not None})
    notes = list(notes)
    if len(budgets) > 1:
        notes.append(f"the seeds had different training budgets ({budgets} min, see each row): the spread over "
                     f"seeds mixes seed and budget; per-budget subsets: "
                     + "; ".join(f"{b} min: seeds {[r['seed'] for r in rows if r['budget_minutes'] == b]}"
                                 for b in budgets))
    clocks = sorted({r["budget_clock"] for r in rows})
    if len(clocks) > 1:
        notes.append("budgets on different clocks (see each row's budget_clock): wall minutes on a 1-thread run "
                     "equal CPU minutes only on an idle core")
    targets = SYSTEMS[system]["targets"]
    summary = summarise(rows)
    checks = {}
    if "ess_percent" in summary:
        checks["ess_percent_target"] = targets.get("ess_percent")
        checks["ess_target_met_by_every_seed"] = summary["ess_percent"]["min"] >= targets.get("ess_percent", 0)
    if "train_cpu_minutes" in targets and "train_seconds" in summary:
        checks["train_cpu_minutes_target"] = targets["train_cpu_minutes"]
        checks["train_time_target_met"] = summary["train_seconds"]["max"] / 60 <= targets["train_cpu_minutes"]
    payload = {"system": system, "n_seeds": len(rows), "budget_minutes": budgets,
               "summary_over_seeds": summary, "targets": checks, "seeds": rows,
               "published": PUBLISHED, "per_seed_files": [f"sweeps/{f.name}" for f in files]}
    notes.append("mean ± se over independently trained seeds (se = sd / sqrt(n_seeds)); each seed's test NLL "
                 "se is over test frames, its ESS bootstrap sd over proposals")
    return write_result(f"sampling_bg_{system}", payload, notes=notes, folder=out_folder)


def cost_probe(system: str, batch: int = 16, n_div: int = 1) -> dict:
    """Seconds per MALA step (the reference defaults' chain count), per flow-matching step (the benchmark's
    batch) and per field evaluation with the exact divergence (``n_particles * dim`` passes) or one Hutchinson
    probe, in float64 and float32, on one thread; the exact log q of one sample is extrapolated to 20 RK4 steps
    (80 field evaluations with the divergence). Every time is given as wall-clock seconds and as this process's
    CPU seconds (``*_cpu_s``): on a shared machine the wall time includes waiting for a core, the CPU time is what
    an idle core would take."""
    import os

    import torch

    from compscope.nn import divergence_exact, divergence_hutchinson
    from compscope.sampling import (
        REFERENCE_DEFAULTS,
        ChainState,
        EquivariantCNF,
        FlowModule,
        get_sampler,
        get_target,
        initial_positions,
    )

    t = get_target(system)
    d = REFERENCE_DEFAULTS[system]
    out = {"loadavg_start": list(os.getloadavg()), "n_chains": d["n_chains"], "fm_batch": batch,
           "dof": (t.n_particles - 1) * t.dim, "divergence_passes": t.n_particles * t.dim}
    x0 = initial_positions(t, d["n_chains"], 0)
    smp = get_sampler(d["sampler"])
    st = ChainState.init(t, x0, smp.step_size)
    g = torch.Generator().manual_seed(0)
    st, _ = smp.step(t, st, g)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(3):
        st, _ = smp.step(t, st, g)
    out["mala_step_s"] = (time.perf_counter() - t0) / 3
    out["mala_step_cpu_s"] = (time.process_time() - c0) / 3
    steps = d["burn_in"] + d["n_samples"] // d["n_chains"] * d["thin"]
    out["reference_default_steps"] = steps
    out["reference_default_hours_extrapolated"] = steps * out["mala_step_s"] / 3600
    out["reference_default_cpu_hours_extrapolated"] = steps * out["mala_step_cpu_s"] / 3600
    torch.manual_seed(0)
    m = FlowModule({"n_particles": t.n_particles, "dim": t.dim, **SYSTEMS[system]["flow"]},
                   loss="flow_matching").double()
    opt = torch.optim.AdamW(m.parameters(), 5e-4)
    times, cpu = [], []
    for _ in range(3):
        t0, c0 = time.perf_counter(), time.process_time()
        loss = m.flow_matching_loss(x0[:batch].double())
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    out["fm_step_s"], out["fm_step_cpu_s"] = min(times[1:]), min(cpu[1:])
    for dt in (torch.float64, torch.float32):
        f = EquivariantCNF(t.n_particles, t.dim, **SYSTEMS[system]["flow"]).to(dt)
        x = x0[:n_div].to(dt).requires_grad_(True)
        k = str(dt).split(".")[1]
        out[k] = {}
        for clock, suffix in ((time.perf_counter, "s"), (time.process_time, "cpu_s")):
            t0 = clock()
            v = f.field(0.5, x)
            tf = clock() - t0
            t0 = clock()
            divergence_exact(v, x)
            te = clock() - t0
            t0 = clock()
            divergence_hutchinson(v, x, torch.randint(0, 2, x.shape, generator=g).to(dt) * 2 - 1)
            th = clock() - t0
            out[k].update({f"field_eval_{suffix}": tf / n_div, f"exact_divergence_{suffix}": te / n_div,
                           f"hutchinson_divergence_{suffix}": th / n_div,
                           f"exact_log_q_per_sample_{suffix}_20_rk4": 80 * (tf + te) / n_div,
                           f"hutchinson_log_q_per_sample_{suffix}_20_rk4": 80 * (tf + th) / n_div})
    out["loadavg_end"] = list(os.getloadavg())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--system", default="dw4", choices=sorted(SYSTEMS))
    ap.add_argument("--minutes", type=float, default=55.0, help="training budget (summed over resumes)")
    ap.add_argument("--clock", default="cpu", choices=["cpu", "wall"],
                    help="what --minutes counts: CPU minutes of the training process (comparable on a shared "
                         "machine) or wall minutes (seeds 0 and 1 of DW4 were trained on the wall clock, 1 thread)")
    ap.add_argument("--train", default=None, help="training data (default: the system's, see SYSTEMS)")
    ap.add_argument("--valid", default=None, help="validation data (default: the system's)")
    ap.add_argument("--test", default=None, help="test data for the NLL and energy W2 (default: the system's)")
    ap.add_argument("--n-train", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=None, help="frames (reverse KL: draws) per step")
    ap.add_argument("--n-samples", type=int, default=10_000)
    ap.add_argument("--n-test", type=int, default=2000, help="test-split frames for the NLL")
    ap.add_argument("--sample-steps", type=int, default=None, help="RK4 steps for drawing (default: the flow's)")
    ap.add_argument("--div-nodes", type=int, default=None,
                    help="Gauss-Legendre nodes per panel of the exact divergence along the RK4 path, for the test NLL "
                         "and the draws (default: the divergence at every RK4 stage)")
    ap.add_argument("--div-panels", type=int, default=1, help="panels of the composite Gauss-Legendre rule")
    ap.add_argument("--dtype", default="float64", choices=["float32", "float64"],
                    help="precision of the test NLL and the draws")
    ap.add_argument("--draw-cpu-minutes", type=float, default=None,
                    help="stop drawing (and the test NLL) when this many CPU minutes are spent on it, summed over "
                         "resumes; the JSON states the counts reached")
    ap.add_argument("--chunk", type=int, default=500, help="draws per saved chunk (resumable drawing)")
    ap.add_argument("--check-integration", type=int, default=0,
                    help="measure the log q error of the draw settings against 40 RK4 steps with the divergence "
                         "at every stage, on this many draws (float64)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--loss", default="flow_matching", choices=["flow_matching", "reverse_kl"])
    ap.add_argument("--init-from", default=None, help="run folder whose flow starts this run (fine-tuning)")
    ap.add_argument("--tag", default=None, help="run name instead of seed<S> (e.g. rkl_seed1 for a fine-tune)")
    ap.add_argument("--out", type=Path, default=None,
                    help="run folder (default benchmarks/work/sampling_bg_<sys>_<tag or seedS>)")
    ap.add_argument("--partial", action="store_true", help="write the JSON from what exists, train/draw nothing")
    ap.add_argument("--eval-only", action="store_true",
                    help="do not train (or resume training): evaluate the run folder's checkpoint")
    ap.add_argument("--aggregate", action="store_true",
                    help="write the headline sampling_bg_<sys>.json from the seeds' sweep JSONs; nothing runs")
    ap.add_argument("--name", default=None, help="result name (default sampling_bg_<system>_<tag or seedS>)")
    ap.add_argument("--cost", action="store_true",
                    help="measure the cost per MCMC step, training step and exact log q (sweeps/..._cost.json)")
    ap.add_argument("--note", action="append", default=[], help="a note to store in the JSON (repeatable)")
    a = ap.parse_args()
    if a.aggregate:
        print(aggregate(a.system, a.note))
        return
    if a.cost:
        from compscope.runtime import configure_threads

        configure_threads(1)
        print(write_result(f"sampling_bg_{a.system}_cost", {"system": a.system, "cost": cost_probe(a.system)},
                           notes=a.note, sweep=True))
        return

    import numpy as np
    import torch

    from compscope.runtime import configure_threads
    from compscope.sampling import (
        get_target,
        load_flow,
        load_positions,
        read_samples,
        report_samples,
        train_flow,
        write_samples,
    )
    from compscope.train import read_metrics

    configure_threads(1)
    tag = a.tag or f"seed{a.seed}"
    out = a.out or WORK / f"sampling_bg_{a.system}_{tag}"
    cfg = config(a.system, a.minutes, a.train, a.seed, a.n_train, a.valid, a.loss, a.init_from, a.batch_size,
                 a.clock)
    test_source = source(a.test or SYSTEMS[a.system]["test"])
    notes = list(a.note)
    for k in ("train", "valid"):
        if cfg["data"][k] is None:
            raise SystemExit(f"{a.system}: no default {k} data; pass --{k} <reference.h5> "
                             f"(compscope sample reference {a.system})")
    if test_source is None:
        raise SystemExit(f"{a.system}: no default test data; pass --test <reference.h5>")
    if not a.partial and not a.eval_only:
        resume = (out / "checkpoints" / "last.ckpt").exists()
        train_flow(cfg, out=out, resume=resume)
    timing = json.loads((out / "train_time.json").read_text()) if (out / "train_time.json").exists() else {}
    rows = read_metrics(out) if (out / "metrics.jsonl").exists() else []
    val = [r for r in rows if "val_nll" in r]
    dtype = getattr(torch, a.dtype)
    flow, info = load_flow(out, dtype=dtype)
    flow.div_nodes, flow.div_panels = a.div_nodes, a.div_panels
    solver = {"n_steps": a.sample_steps or flow.n_steps, "div_nodes": a.div_nodes, "div_panels": a.div_panels,
              "dtype": a.dtype}
    if timing.get("train_seconds") is None:
        notes.append("training budget not complete (interrupted or --partial): train_seconds unknown")

    budget = None if a.draw_cpu_minutes is None else 60 * a.draw_cpu_minutes
    nll_file = out / "test_nll.json"
    if nll_file.exists():
        nll = json.loads(nll_file.read_text())
    elif not a.partial:
        t0, c0 = time.perf_counter(), time.process_time()
        nll = test_nll(flow, a.system, test_source, a.n_test, batch=100, n_steps=a.sample_steps)
        nll.update(seconds=time.perf_counter() - t0, cpu_seconds=time.process_time() - c0, solver=solver)
        nll_file.write_text(json.dumps(nll, indent=2))
    else:
        nll = None

    samples_file = out / "samples.h5"
    if samples_file.exists():
        samples = read_samples(samples_file)
    elif not a.partial:
        samples = draw_chunks(flow, a.system, a.n_samples, out / "sample_chunks", a.chunk, a.seed, a.sample_steps,
                              budget)
        write_samples(samples_file, samples, {"target": a.system, "model": info["checkpoint"],
                                              "seconds": samples["seconds"], "cpu_seconds": samples["cpu_seconds"],
                                              "samples_per_s": samples["samples_per_s"],
                                              "samples_per_cpu_s": samples["samples_per_cpu_s"], **solver})
        samples["attrs"] = {k: samples[k] for k in ("seconds", "cpu_seconds", "samples_per_s", "samples_per_cpu_s")}
    else:
        samples = None

    integration = None
    if a.check_integration and not a.partial:
        from compscope.sampling import flow_integration_error

        f64, _ = load_flow(out, dtype=torch.float64)
        f64.div_panels = a.div_panels
        integration = flow_integration_error(
            f64, a.check_integration, [(a.sample_steps or flow.n_steps, a.div_nodes, a.div_panels), (20, None)],
            reference=(40, None), seed=10_000 + a.seed)

    payload = {"system": a.system, "config": cfg, "run_folder": str(out), "checkpoint": info["checkpoint"],
               "epoch": info["epoch"], "global_step": info["global_step"],
               "train_seconds": timing.get("train_seconds"), "val_nll_curve": [
                   {"step": r.get("step"), "val_nll": r["val_nll"]} for r in val],
               "test_nll": nll, "solver": solver, "log_q_integration_error": integration,
               "published": PUBLISHED}
    if a.loss == "reverse_kl":
        payload["train_invalid_per_check"] = [r["train_invalid"] for r in rows if "train_invalid" in r]
    if samples is not None:
        ref = get_target(a.system).energy(load_positions(test_source, a.system)).double().numpy()
        rep = report_samples(samples, ref, out=out / "report")
        payload.update({"n_samples": rep["n"], "n_invalid": rep["n_invalid"], "ess_percent": 100 * rep["ess"],
                        "energy": {k: rep[k] for k in ("energy_flow", "energy_reweighted", "energy_reference")},
                        "energy_w2_flow": rep["w2_flow"], "energy_w2_reweighted": rep["w2_reweighted"],
                        "energy_w1_flow": rep["w1_flow"], "energy_w1_reweighted": rep["w1_reweighted"],
                        "samples_per_s": float(samples["attrs"]["samples_per_s"]),
                        "samples_per_cpu_s": samples["attrs"].get("samples_per_cpu_s"),
                        "sample_steps": a.sample_steps or flow.n_steps})
        # bootstrap spread of the ESS over proposals (not over independent trainings: --aggregate does that)
        rng = np.random.default_rng(0)
        from compscope.sampling import kish_ess

        lw = np.asarray(samples["log_w"])
        boots = [kish_ess(lw[rng.integers(0, len(lw), len(lw))]) for _ in range(200)]
        payload["ess_percent_bootstrap_sd"] = 100 * float(np.std(boots))
        # invalid samples (non-finite energy or log q) are counted in n_invalid, never dropped from the ESS
        finite = np.isfinite(samples["energy"])
        payload["energy_above_1e3_kT"] = int((np.asarray(samples["energy"])[finite] > 1e3).sum())
    else:
        notes.append("no samples drawn yet")
    if a.init_from is not None:
        start = Path(a.init_from) / "samples.h5"
        if start.exists():
            s0 = read_samples(start)
            from compscope.sampling import kish_ess

            payload["init_from_ess_percent"] = 100 * kish_ess(np.asarray(s0["log_w"]))
            payload["init_from_n_samples"] = int(len(s0["log_w"]))
    notes.append("2-core CPU shared with other jobs (nice 15); timings are wall-clock under that load")
    path = write_result(a.name or f"sampling_bg_{a.system}_{tag}", payload, seed=a.seed, notes=notes, sweep=True)
    print(path)


if __name__ == "__main__":
    main()
