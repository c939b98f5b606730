"""CG alanine dipeptide (issue #22): force matching vs denoising force matching, cross-validated by trajectory blocks.

For each held-out block (``--folds``), method (``--methods``) and training-set size (``--sizes``) the script maps
the reference (backbone map), trains the CG potential with a wall-clock budget, runs Langevin CG replicas on the MD
engine's dense path (``compscope.md.simulate_dense``) and compares them with the held-out block: Ramachandran JS
(64 x 64 and 61 x 61 bins), free-energy MSE in (kcal/mol)^2 on bins populated in both, bond/angle JS, the ESS of the
basin indicator 1[0 < phi < 2.2 rad] per wall-clock and CPU second (``compscope.analysis``), CG ns/day (wall and CPU
clock), and the all-atom speeds beside them (``benchmarks/cg_speed.py`` measures them in one run): implicit solvent from
the reference's own timing (same code, one core) and explicit solvent (TIP3P, PME) from a short run here.

A reference that is still being generated gives a partial result; the JSON says how many ns it had
(``reference_ns``) and ``partial: true`` until the reference reaches ``--target-ns``.

Methods (``--methods``): ``force_matching`` (plain: the aggregated force map), ``denoising`` (force matching plus
denoising score matching), each with ``+ofm`` for the optimised force map (``compscope.cg.optimised_force_map``,
fitted on the fold's training frames only, one CG file per fold). ``--model fast`` is the prior + CGnet-style MLP
(``model.feature_net``), ``equivariant`` the equivariant network. The CG replicas start from training frames; the
first ``--burn-frames`` frames of each are left out of the comparison. ``--cmap '{}'`` puts the 2-D (phi, psi)
torsion term in every method's prior (``model.cmap``, Boltzmann-inverted from the fold's training frames; JSON keys
``bins``, ``pseudocount``, ``smoothing``, ``order``), ``--noise`` with several values is a denoising sigma schedule,
``--ensemble K`` trains K seeds of every cell (each with the full ``--minutes``) and simulates their force average
(``compscope.cg.average_models``: one model, one model's MD cost). A method with ``+ibi`` (needs ``--cmap``) adds
``--refine N`` iterative-Boltzmann-inversion steps on the (phi, psi) term after training
(``compscope.cg.refine_cmap``): each simulates the model (``--replicas`` x ``--refine-steps``, other seeds; with
``--refine-damping``, a list gives each step its own value) and
corrects the term towards the training frames' (phi, psi) histogram (the same 10^4 frames; never the held-out
block); its CPU time is reported apart.

The reference's own floor is reported per fold (``reference_floor``): the JS and MSE of the held-out block against
the other three blocks. ``evaluation_floor`` is what an exact CG model would score under this protocol: windows of the
reference itself, as many and as long as the CG evaluation's replicas after burn-in, drawn from the training blocks
(``--floor-draws`` draws), compared with the held-out block like a CG run. Targets below it cannot be told apart
from the reference's own sampling noise. Each run also reports its JS against the whole reference
(``ramachandran_js_64_vs_reference``; the training frames are 1 % of it at 10^4 of 10^6 frames), which the held-out
block's unconverged slow basin does not dominate.

Usage::

    python -m benchmarks.cg_alanine --ref /path/ala2_obc.h5 --folds 0 --sizes 1000 --minutes 3 --name cg_alanine

Folds side by side on two cores: run ``--folds 0 1 --name A`` and ``--folds 2 3 --name B`` (same ``--work``), then
``python -m benchmarks.cg_alanine --merge results/A.json results/B.json --name cg_alanine``.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._common import reference_core_seconds, reference_ns, write_result


def _cg_run(model_path, start: Path, replicas: int, steps: int, dt: float, traj_every: int, seed: int,
            out: Path, start_frames: np.ndarray | None = None) -> dict:
    """CG replicas of a model (a file, or a model in memory) from frames of the CG file ``start``."""
    from ase import Atoms

    from compscope.cg import load_cg, write_cg_trajectory
    from compscope.md import StabilityMonitor, load_potential, simulate_dense

    if isinstance(model_path, (str, Path)):
        pot = load_potential(model_path)
    else:
        pot = model_path.eval()
        for p in pot.parameters():
            p.requires_grad_(False)
    data = load_cg(start)
    frames = np.concatenate(data.positions)
    pool = np.arange(len(frames)) if start_frames is None else np.asarray(start_frames)
    pick = np.random.default_rng(seed).choice(pool, size=replicas, replace=False)
    atoms = [Atoms(numbers=pot.atomic_numbers, positions=frames[i]) for i in pick]
    t0 = time.perf_counter()
    res = simulate_dense(pot, atoms, steps=steps, dt=dt, temperature=300.0, friction=0.01, seed=seed,
                         out=out.with_suffix(""), traj_every=traj_every, monitor=StabilityMonitor(check_every=50))
    wall = time.perf_counter() - t0
    import h5py

    with h5py.File(out.with_suffix("") / "trajectory.h5", "r") as f:
        n = int(f.attrs["n_frames"])
        pos = f["particles/all/position/value"][:n]
        saved = f["particles/all/position/step"][:n]
    x = pos.reshape(n, replicas, -1, 3).transpose(1, 0, 2, 3)
    # frames of each replica before its monitor stopped it
    stable = np.array([n if r.get("stopped_at_step") is None else int((saved < r["stopped_at_step"]).sum())
                       for r in res.summary])
    write_cg_trajectory(out, x, stable, data.cgmap, temperature_K=300.0, dt_fs=dt, traj_every=traj_every)
    return {"wall_s": wall, "cpu_s": res.cpu_s, "n_stable": res.n_stable, "replicas": replicas, "steps": steps,
            "dt_fs": dt, "ns_per_day_per_replica": res.ns_per_day, "ns_per_day_all_replicas": res.ns_per_day * replicas,
            "ns_per_day_all_replicas_cpu": res.ns_per_day_cpu * replicas,
            "traj": str(out), "x": x, "stable_frames": stable}


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", default=None, help="reference HDF5 of `compscope md reference --solvent obc`")
    ap.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--methods", nargs="+", default=["force_matching", "denoising"])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000, 0], help="0: all frames")
    ap.add_argument("--minutes", type=float, default=10.0, help="training budget per run")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="cpu", help="what the training budget counts")
    ap.add_argument("--model", choices=["fast", "equivariant"], default="fast")
    ap.add_argument("--noise", type=float, nargs="+", default=[0.02], help="denoising sigma(s), Å (several: schedule)")
    ap.add_argument("--cmap", default=None, help="JSON of model.cmap (the 2-D torsion prior term), e.g. '{}'")
    ap.add_argument("--max-epochs", type=int, default=100000,
                    help="epochs at most (the time budget usually ends training first; small sets overfit)")
    ap.add_argument("--ensemble", type=int, default=1, help="seeds per cell, their forces averaged")
    ap.add_argument("--refine", type=int, default=2, help="IBI steps on the (phi, psi) term of +ibi methods")
    ap.add_argument("--refine-steps", type=int, nargs="+", default=None,
                    help="steps per replica of each IBI run (several: one per IBI step, the last one repeats)")
    ap.add_argument("--refine-damping", type=float, nargs="+", default=[1.0],
                    help="damping of each IBI step (several: one per step, the last one repeats)")
    ap.add_argument("--denoising-weight", type=float, default=0.5)
    ap.add_argument("--dihedral-order", type=int, default=3, help="harmonics of the Boltzmann-inverted dihedral prior")
    ap.add_argument("--dihedral-pseudocount", type=float, default=1.0, help="per histogram bin of the dihedral prior")
    ap.add_argument("--burn-frames", type=int, default=50, help="frames of each CG replica left out")
    ap.add_argument("--replicas", type=int, default=10)
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--dt", type=float, default=4.0)
    ap.add_argument("--traj-every", type=int, default=250)
    ap.add_argument("--start", type=int, default=0, help="skip the first runs of the grid (resume by hand)")
    ap.add_argument("--floor-only", action="store_true",
                    help="only the reference's floors (block vs rest, and the evaluation floor): no training")
    ap.add_argument("--floor-draws", type=int, default=5, help="draws of the evaluation floor (reference windows)")
    ap.add_argument("--explicit-seconds", type=float, default=60.0)
    ap.add_argument("--target-ns", type=float, default=1000.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="cg_alanine")
    ap.add_argument("--work", default=None, help="folder for runs (default: a temporary one)")
    ap.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                    help="combine result files of this script run in parallel on disjoint folds into --name")
    ap.add_argument("--rescore", default=None, metavar="JSON",
                    help="add the whole-reference JS to the runs of an earlier result of this script, from their "
                         "evaluation files (TAG_eval.h5) in --work folders; writes --name")
    args = ap.parse_args(argv)
    if args.merge:
        return merge([Path(f) for f in args.merge], args.name)
    if args.rescore:
        if not args.ref or not args.work:
            ap.error("--rescore needs --ref (the same reference) and --work (folders holding the runs' files)")
        return rescore(Path(args.rescore), Path(args.ref), [Path(w) for w in args.work.split(",")], args.name)
    if not args.ref:
        ap.error("--ref is required (or --merge)")

    import h5py

    from compscope.analysis import basin_indicator, effective_sample_size, js_divergence, ramachandran_histogram
    from compscope.cg import (
        backbone_dihedrals,
        compare,
        fold_split,
        free_energy_mse,
        map_reference,
        split_frames,
        train,
    )
    from compscope.md.reference import explicit_solvent_speed

    work = Path(args.work or tempfile.mkdtemp(prefix="cg_alanine_"))
    work.mkdir(parents=True, exist_ok=True)
    with h5py.File(args.ref, "r") as f:
        reps = f["replicas"]
        ref_ns = reference_ns(f)
        dense = str(f.attrs.get("engine", "")).startswith("compscope.md.simulate_dense")
        rates = [float(reps[r].attrs.get("ns_per_day", 0.0)) for r in reps]
        # OpenMM replicas each ran on a core of their own; the dense engine's ran together on one core and each
        # stores its share of that core's ns/day
        aa_rate = float(np.sum(rates) if dense else np.mean(rates))
        phi_ref = np.concatenate([reps[r]["phi"][:] for r in reps])
        # all-atom basin-indicator ESS per wall second of one core (replicas as independent chains)
        n_min = min(len(reps[r]["phi"]) for r in reps)
        aa_ess = effective_sample_size(np.stack([basin_indicator(reps[r]["phi"][:n_min]) for r in reps]))
        aa_wall = reference_core_seconds(f)[0]
        psi_ref = np.concatenate([reps[r]["psi"][:] for r in reps])
        lengths = [len(reps[r]["phi"]) for r in reps]
    # the reference's own floor: each held-out block against the other three
    floor = {}
    for fold in args.folds:
        tr, he = fold_split(lengths, fold)
        floor[str(fold)] = {}
        for bins in (64, 61):
            ha = ramachandran_histogram(phi_ref[he], psi_ref[he], bins)
            hb = ramachandran_histogram(phi_ref[tr], psi_ref[tr], bins)
            floor[str(fold)][f"js_{bins}"] = js_divergence(ha, hb)
            floor[str(fold)][f"mse_{bins}"] = free_energy_mse(ha, hb)
    window = args.steps // args.traj_every + 1 - args.burn_frames  # frames per CG replica in the comparison
    eval_floor = {str(fold): evaluation_floor(phi_ref, psi_ref, lengths, fold, args.replicas, window,
                                              draws=args.floor_draws, seed=args.seed) for fold in args.folds}
    if args.floor_only:
        means = {k: float(np.mean([f[k] for f in eval_floor.values()]))
                 for k in ("js_64", "js_61", "mse_64", "mse_61", "js_64_vs_reference")}
        return write_result(args.name, {
            "reference_ns": ref_ns, "reference_frames": int(sum(lengths)),
            "reference_basin_population": float(basin_indicator(phi_ref).mean()),
            "held_out_basin_population": {str(f): float(basin_indicator(phi_ref[fold_split(lengths, f)[1]]).mean())
                                          for f in args.folds},
            "reference_floor": floor, "evaluation_floor": eval_floor, "evaluation_floor_mean": means,
            "training_frames_floor": training_frames_floor(phi_ref, psi_ref, lengths, args.folds, args.sizes),
            "settings": vars(args)}, seed=args.seed)
    cg_file = work / "cg.h5"
    info = map_reference(args.ref, "backbone", cg_file)
    ref_hist = _ramachandran(phi_ref, psi_ref)
    explicit = explicit_solvent_speed(seconds=args.explicit_seconds)
    runs: list[dict] = []

    def save() -> Path:  # after every run: an interrupted benchmark keeps what it measured
        payload = {
            "partial": ref_ns < args.target_ns or len(runs) < len(args.folds) * len(args.methods) * len(args.sizes),
            "reference_ns": ref_ns, "reference_frames": info["n_frames"],
            "reference_basin_population": float(basin_indicator(phi_ref).mean()),
            "allatom_implicit_ns_per_day_one_core": aa_rate,
            "allatom_implicit_basin_ess_per_s": aa_ess / max(aa_wall, 1e-9),
            "allatom_explicit": explicit, "reference_floor": floor, "evaluation_floor": eval_floor,
            "summary": _summary(runs),
            "settings": vars(args), "runs": runs,
        }
        notes = []
        if ref_ns < args.target_ns:
            notes.append(f"partial reference: {ref_ns:.0f} of {args.target_ns:.0f} ns (the implicit-solvent campaign "
                         "is still running); numbers do not test the issue's targets")
        return write_result(args.name, payload, seed=args.seed, notes=notes)

    path = save()
    model = {"net": None, "feature_net": {}} if args.model == "fast" else {}
    model.update(dihedral_order=args.dihedral_order, dihedral_pseudocount=args.dihedral_pseudocount,
                 cmap=None if args.cmap is None else json.loads(args.cmap))
    noise = args.noise[0] if len(args.noise) == 1 else list(args.noise)
    grid = [(fold, method, size) for fold in args.folds for method in args.methods for size in args.sizes]
    for k, (fold, method, size) in enumerate(grid):
        if k < args.start:
            continue
        loss, *extras = method.split("+")
        if loss not in ("force_matching", "denoising") or set(extras) - {"ofm", "ibi"} or \
                len(set(extras)) < len(extras):
            raise SystemExit(f"unknown method {method!r}: force_matching or denoising, optionally +ofm, +ibi")
        fmap = "ofm" if "ofm" in extras else ""
        train_idx, _ = fold_split(lengths, fold)  # the training blocks: CG runs start from their frames
        tr = split_frames(lengths, fold, n_train=size or None)[0]  # the run's training frames: the map's and IBI's too
        data_file = cg_file
        if fmap == "ofm":  # the optimised force map, fitted on this run's training frames only
            data_file = work / f"cg_f{fold}_ofm_{size or 'all'}.h5"
            if not data_file.exists():
                map_reference(args.ref, "backbone", data_file, force_map="optimised", fit_frames=tr)
        tag = f"f{fold}_{method}_{size or 'all'}"
        t0 = time.process_time()
        members, steps = [], 0
        for m in range(args.ensemble):
            cfg = {"seed": args.seed + m, "model": model,
                   "data": {"path": str(data_file), "fold": fold, "n_train": size or None, "n_valid": 2000,
                            "batch_size": 64},
                   "module": {"loss": loss, "noise": noise, "denoising_weight": args.denoising_weight},
                   "trainer": {"max_epochs": args.max_epochs, "max_time_minutes": args.minutes,
                               "budget_clock": args.clock, "progress_bar": False, "ema_decay": 0.99}}
            res = train(cfg, out=work / (tag if m == 0 else f"{tag}_seed{m}"))
            members.append(res.run.file("model.pt"))
            steps += res.trainer.global_step
        model_file = members[0]
        if len(members) > 1:  # one model whose forces are the members' mean
            from compscope.cg import average_models
            from compscope.models.artifacts import load_model, save_package

            model_file = save_package(average_models([load_model(p) for p in members]), work / f"{tag}_ensemble.pt")
        train_cpu = time.process_time() - t0
        t0 = time.process_time()
        refine_stopped, refined = None, 0
        if "ibi" in extras and args.refine:
            from compscope.cg import ibi_refine, load_cg
            from compscope.models.artifacts import load_model, save_package

            data_x = np.concatenate(load_cg(data_file).positions)[tr]
            res = ibi_refine(load_model(model_file), data_x, _ibi_sampler(args, data_file, work / tag, train_idx),
                             args.refine, damping=args.refine_damping,
                             on_step=functools.partial(_save_step, work / tag, save_package),
                             **(json.loads(args.cmap) if args.cmap else {}))
            refined, refine_stopped = res.steps, res.stopped
            if refined:  # each corrected model was saved as TAG_ibi{k}.pt: the last one is evaluated
                model_file = work / f"{tag}_ibi{refined}.pt"
            if refine_stopped:  # the model blew up in every replica: evaluate it as it is, keep the grid going
                print(refine_stopped, flush=True)
        refine_cpu = time.process_time() - t0
        final = work / f"{tag}_final.pt"  # the model this run evaluates (after any IBI): cg_stability, cg_speed take it
        shutil.copyfile(model_file, final)
        sim = _cg_run(model_file, data_file, args.replicas, args.steps, args.dt,
                      args.traj_every, args.seed, work / f"{tag}_traj.h5", start_frames=train_idx)
        # the held-out block as the reference of this fold; the CG run after its burn-in
        held = work / f"f{fold}_held.h5"
        _held_out(cg_file, fold, held)
        run = {"fold": fold, "method": method, "n_train": int(len(tr)), "size": size or "all",
               "train_steps": steps, "train_cpu_s": train_cpu, "ensemble": args.ensemble,
               "refine_steps": refined, "refine_cpu_s": refine_cpu, "model_file": str(final),
               "cg_ns_per_day": sim["ns_per_day_all_replicas"], "cg_stable": sim["n_stable"],
               "cg_ns_per_day_cpu": sim["ns_per_day_all_replicas_cpu"], "dt_fs": args.dt}
        if refine_stopped:
            run["refine_stopped"] = refine_stopped
        cg_x = _after_burn_in(sim, args.burn_frames)
        if not len(cg_x):  # nothing to score: the metrics are missing (None), not made up
            run.update({k: None for k in _METRICS}, failed=f"no CG frame after burn-in ({sim['n_stable']} of "
                                                             f"{args.replicas} replicas stable)")
        else:
            cg_eval = work / f"{tag}_eval.h5"
            _burned(sim["traj"], args.burn_frames, cg_eval)
            cmp = compare(cg_eval, held, png=work / f"{tag}.png")
            phi, _ = backbone_dihedrals(cg_x)
            # ESS over the replicas that stayed stable to the end (all of them in a healthy run)
            whole_runs = sim["x"][sim["stable_frames"] == sim["x"].shape[1]]
            ess = None
            if len(whole_runs):
                rphi, _ = backbone_dihedrals(whole_runs.reshape(-1, 5, 3))
                ess = effective_sample_size(basin_indicator(rphi.reshape(len(whole_runs), -1)))
            run.update({"cg_slow_basin_population": float(basin_indicator(phi).mean()),
                        **{k: v for k, v in cmp.items() if not k.startswith(("js bond", "js angle"))},
                        **_js_vs_reference(cg_eval, ref_hist),
                        "bond_js_max": max(v for k, v in cmp.items() if k.startswith("js bond")),
                        "angle_js_max": max(v for k, v in cmp.items() if k.startswith("js angle")),
                        "cg_basin_ess_per_s": None if ess is None else ess / sim["wall_s"],
                        "cg_basin_ess_per_cpu_s": None if ess is None else ess / sim["cpu_s"]})
        runs.append(run)
        print(json.dumps(runs[-1]))
        path = save()
    return path


def merge(files: list[Path], name: str) -> Path:
    """One result from several of this script's results on disjoint folds of the same reference (runs side by side
    on separate cores): runs and reference floors concatenated, the summary recomputed, partial if any part was."""
    docs = [json.loads(Path(f).read_text()) for f in files]
    if len({(d["reference_ns"], d["reference_frames"]) for d in docs}) != 1:
        raise SystemExit("the files come from different references (reference_ns / reference_frames differ)")
    seen = [set(map(int, d["reference_floor"])) for d in docs]  # each part's --folds
    if any(a & b for i, a in enumerate(seen) for b in seen[i + 1:]):
        raise SystemExit("the files share folds: merge results of disjoint --folds only")
    runs = sorted((r for d in docs for r in d["runs"]), key=lambda r: (r["fold"], r["method"], r["n_train"]))
    payload = {k: v for k, v in docs[0].items() if k not in _PROVENANCE}
    payload.update(partial=any(d["partial"] for d in docs), runs=runs, summary=_summary(runs),
                   reference_floor={k: v for d in docs for k, v in d["reference_floor"].items()},
                   evaluation_floor={k: v for d in docs for k, v in d.get("evaluation_floor", {}).items()},
                   merged_from=[{"file": Path(f).name, "command": d["command"], "date": d["date"],
                                 "folds": sorted(folds)} for f, d, folds in zip(files, docs, seen)])
    payload["settings"] = {**docs[0]["settings"], "folds": sorted(set().union(*seen))}
    notes = sorted({n for d in docs for n in d.get("notes", [])})
    return write_result(name, payload, seed=docs[0].get("seed"), notes=notes)


def rescore(result: Path, ref: Path, works: list[Path], name: str) -> Path:
    """An earlier result with each run's Ramachandran JS against the whole reference added (from the run's
    evaluation file, the frames its held-out comparison used) and the summary recomputed."""
    import h5py

    doc = json.loads(result.read_text())
    with h5py.File(ref, "r") as f:
        reps = f["replicas"]
        frames = sum(len(reps[r]["phi"]) for r in reps)
        if frames != doc["reference_frames"]:
            raise SystemExit(f"{ref} has {frames} frames, {result.name} was measured on {doc['reference_frames']}")
        phi_ref = np.concatenate([reps[r]["phi"][:] for r in reps])
        psi_ref = np.concatenate([reps[r]["psi"][:] for r in reps])
    hist = _ramachandran(phi_ref, psi_ref)
    for run in doc["runs"]:
        if run.get("failed"):  # nothing was scored, there is no evaluation file
            continue
        # results before "size" was recorded gave all the reference's frames as n_train for "all"
        size = run.get("size", run["n_train"] if run["n_train"] < frames else "all")
        tag = f"f{run['fold']}_{run['method']}_{size}"
        found = [w / f"{tag}_eval.h5" for w in works if (w / f"{tag}_eval.h5").exists()]
        if not found:
            raise SystemExit(f"no {tag}_eval.h5 in {', '.join(map(str, works))}: give the runs' --work folders")
        run.update(_js_vs_reference(found[0], hist))
    payload = {k: v for k, v in doc.items() if k not in _PROVENANCE}
    payload.update(summary=_summary(doc["runs"]), rescored_from={"command": doc["command"], "date": doc["date"]})
    return write_result(name, payload, seed=doc.get("seed"), notes=doc.get("notes", []))


#: a result file's own provenance, which a derived result (merge, rescore) writes afresh
_PROVENANCE = ("benchmark", "date", "command", "seed", "machine", "versions", "notes")


def _ramachandran(phi: np.ndarray, psi: np.ndarray) -> dict:
    from compscope.analysis import ramachandran_histogram

    return {b: ramachandran_histogram(phi, psi, b) for b in (64, 61)}


def _js_vs_reference(eval_file: Path, ref_hist: dict) -> dict:
    """Ramachandran JS (64 and 61 bins) of a run's compared frames (stable, after burn-in) against the whole
    reference's histograms."""
    from compscope.analysis import js_divergence
    from compscope.cg import backbone_dihedrals, read_frames

    hist = _ramachandran(*backbone_dihedrals(read_frames(eval_file)[0]))
    return {f"ramachandran_js_{b}_vs_reference": js_divergence(hist[b], ref_hist[b]) for b in ref_hist}


_METRICS = ("cg_slow_basin_population", "ramachandran_js_64", "free_energy_mse_64", "ramachandran_js_61",
            "free_energy_mse_61", "ramachandran_js_64_vs_reference", "ramachandran_js_61_vs_reference", "bond_js_max",
            "angle_js_max", "cg_basin_ess_per_s", "cg_basin_ess_per_cpu_s")


def _save_step(prefix: Path, save, k: int, model) -> None:
    """``on_step`` of :func:`compscope.cg.ibi_refine`: the model after IBI step ``k`` as ``PREFIX_ibi{k}.pt``."""
    save(model, prefix.with_name(f"{prefix.name}_ibi{k}.pt"))


def _ibi_sampler(args, data_file: Path, prefix: Path, start_frames: np.ndarray):
    """The sampler of :func:`compscope.cg.ibi_refine` for IBI step ``k``: ``args.replicas`` CG replicas of the
    step's length (``--refine-steps``) from training-block frames, trajectory ``PREFIX_ibi{k}_traj.h5``, the
    frames after burn-in of the replicas that stayed stable."""
    from compscope.cg import per_step

    def sample(model, k: int) -> np.ndarray:
        sim = _cg_run(model, data_file, args.replicas, per_step(args.refine_steps or [args.steps], k), args.dt,
                      args.traj_every, args.seed + 1000 + k, prefix.with_name(f"{prefix.name}_ibi{k}_traj.h5"),
                      start_frames=start_frames)
        return _after_burn_in(sim, args.burn_frames)

    return sample


def _after_burn_in(sim: dict, burn: int) -> np.ndarray:
    """(N, n_beads, 3): each replica's frames after the burn-in and before its monitor stopped it."""
    x = sim["x"]
    parts = [x[r, burn:n] for r, n in enumerate(sim["stable_frames"]) if n > burn]
    return np.concatenate(parts) if parts else np.empty((0, *x.shape[2:]))


def evaluation_floor(phi: np.ndarray, psi: np.ndarray, lengths: list[int], fold: int, replicas: int, window: int,
                     draws: int = 5, seed: int = 0) -> dict:
    """The score of an exact CG model under the protocol: ``draws`` times, ``replicas`` windows of ``window``
    consecutive reference frames (whole replicas when shorter), from replicas of the training blocks only, against
    the held-out block ``fold`` (Ramachandran JS and free-energy MSE on 64 x 64 and 61 x 61 bins; JS on 64 x 64
    against the whole reference too)."""
    from compscope.analysis import js_divergence, ramachandran_histogram
    from compscope.cg import fold_split, free_energy_mse

    if replicas < 1 or window < 1 or draws < 1:
        raise SystemExit(f"evaluation floor: replicas={replicas}, window={window}, draws={draws} must be >= 1")
    _, held = fold_split(lengths, fold)
    ref = _ramachandran(phi[held], psi[held])
    whole = ramachandran_histogram(phi, psi, 64)
    scores: dict[str, list[float]] = {}
    for idx in floor_windows(lengths, fold, replicas, window, draws, seed):
        hists = _ramachandran(phi[idx], psi[idx])
        for b, h in hists.items():
            scores.setdefault(f"js_{b}", []).append(js_divergence(h, ref[b]))
            scores.setdefault(f"mse_{b}", []).append(free_energy_mse(h, ref[b]))
        # against the whole reference, which holds these windows: a lower bound of what a model can score there
        scores.setdefault("js_64_vs_reference", []).append(js_divergence(hists[64], whole))
    out = {k: float(np.mean(v)) for k, v in scores.items()}
    out.update({f"{k}_std": float(np.std(v)) for k, v in scores.items()})
    out.update(draws=draws, replicas=replicas, window_frames=window,
               training_replicas=len(_training_replicas(lengths, fold)))
    return out


def training_frames_floor(phi: np.ndarray, psi: np.ndarray, lengths: list[int], folds: list[int],
                          sizes: list[int]) -> dict:
    """What the training frames themselves score: Ramachandran JS (64 x 64) of each fold's ``size`` training frames
    (the frames a run trains on, :func:`compscope.cg.split_frames`; 0: all) against the held-out block and against
    the whole reference. A model that only reproduced its training histogram would score this."""
    from compscope.analysis import js_divergence, ramachandran_histogram
    from compscope.cg import split_frames

    whole = ramachandran_histogram(phi, psi, 64)
    out: dict = {}
    for size in sizes:
        row = {}
        for fold in folds:
            tr, _, held = split_frames(lengths, fold, n_train=size or None)
            h = ramachandran_histogram(phi[tr], psi[tr], 64)
            row[str(fold)] = {"n_train": int(len(tr)),
                              "js_64": js_divergence(h, ramachandran_histogram(phi[held], psi[held], 64)),
                              "js_64_vs_reference": js_divergence(h, whole)}
        row["js_64_mean"] = float(np.mean([row[str(f)]["js_64"] for f in folds]))
        row["js_64_vs_reference_mean"] = float(np.mean([row[str(f)]["js_64_vs_reference"] for f in folds]))
        out[str(size or "all")] = row
    return out


def _training_replicas(lengths: list[int], fold: int) -> list[int]:
    """Reference replicas with no frame in the held-out block ``fold``."""
    from compscope.cg import fold_split

    _, held = fold_split(lengths, fold)
    is_held = np.zeros(int(sum(lengths)), bool)
    is_held[held] = True
    starts = np.cumsum([0, *lengths[:-1]])
    return [r for r, (s, n) in enumerate(zip(starts, lengths)) if not is_held[s:s + n].any()]


def floor_windows(lengths: list[int], fold: int, replicas: int, window: int, draws: int, seed: int = 0):
    """Yield the frame indices of each draw of :func:`evaluation_floor`: ``replicas`` windows of ``window``
    consecutive frames from reference replicas with no held-out frame."""
    cands = _training_replicas(lengths, fold)
    if not cands:
        raise SystemExit(f"fold {fold}: every reference replica has held-out frames; no training windows to draw")
    starts = np.cumsum([0, *lengths[:-1]])
    rng = np.random.default_rng(seed)
    for _ in range(draws):
        idx = []
        for r in rng.choice(cands, size=replicas, replace=len(cands) < replicas):
            w = min(window, lengths[r])
            o = starts[r] + int(rng.integers(0, lengths[r] - w + 1))
            idx.append(np.arange(o, o + w))
        yield np.concatenate(idx)


def _summary(runs: list[dict]) -> dict:
    """Mean and spread over folds of each (method, training size): JS, MSE, the folds it covers. A run with no CG
    frame to score has None metrics; any such fold makes its cell's means None (a failure is not averaged away)."""
    out: dict = {}
    for r in runs:
        # keyed by the requested size: "all" is a few frames more or less on each fold
        out.setdefault(f"{r['method']}@{r.get('size', r['n_train'])}", []).append(r)

    def stat(f, xs):
        return None if any(x is None for x in xs) else float(f(xs))

    summ = {}
    for key, rs in out.items():
        js = [r["ramachandran_js_64"] for r in rs]
        mse = [r["free_energy_mse_64"] for r in rs]
        summ[key] = {"folds": [r["fold"] for r in rs], "js_64": js, "mse_64": mse, "js_64_mean": stat(np.mean, js),
                     "js_64_std": stat(np.std, js), "mse_64_mean": stat(np.mean, mse),
                     "mse_64_std": stat(np.std, mse),
                     "js_61_mean": stat(np.mean, [r["ramachandran_js_61"] for r in rs]),
                     "failed_folds": [r["fold"] for r in rs if r.get("failed")]}
        # per-fold lists of what every run reports (older results lack some): a blown-up CG run shows here
        for src, dst in (("ramachandran_js_64_vs_reference", "js_64_vs_reference"), ("cg_stable", "stable_replicas"),
                         ("cg_slow_basin_population", "slow_basin"), ("bond_js_max", "bond_js_max"),
                         ("angle_js_max", "angle_js_max")):
            if all(src in r for r in rs):
                summ[key][dst] = [r[src] for r in rs]
        if "js_64_vs_reference" in summ[key]:
            summ[key]["js_64_vs_reference_mean"] = stat(np.mean, summ[key]["js_64_vs_reference"])
    return summ


def _burned(traj: str, burn: int, out: Path) -> None:
    """A copy of a ``cg simulate`` trajectory file without the first ``burn`` frames of each replica."""
    import h5py

    with h5py.File(traj, "r") as src, h5py.File(out, "w") as f:
        for k, v in src.attrs.items():
            f.attrs[k] = v
        x = src["positions"][:]
        keep = src["stable_frames"][:] if "stable_frames" in src else np.full(len(x), x.shape[1])
        b = min(burn, max(x.shape[1] - 1, 0))
        f["positions"] = x[:, b:]
        f["stable_frames"] = np.maximum(np.asarray(keep) - b, 0)


def _held_out(cg_file: Path, fold: int, out: Path) -> None:
    """A CG file holding only the frames of block ``fold`` (the comparison's reference)."""
    import h5py

    from compscope.cg import fold_split, load_cg

    d = load_cg(cg_file)
    _, held = fold_split([len(p) for p in d.positions], fold)
    x = np.concatenate(d.positions)[held]
    with h5py.File(cg_file, "r") as src, h5py.File(out, "w") as f:
        for k, v in src.attrs.items():
            f.attrs[k] = v
        f["replicas/0000/positions"] = x


if __name__ == "__main__":
    print(main())
