"""Alanine dipeptide Boltzmann generator: internal-coordinate coupling flow vs replica exchange, cost per basin sample.

Trains (or resumes) :class:`compscope.sampling.ICFlow` (circular spline couplings on the 60 internal coordinates,
exact Z-matrix Jacobian) by maximum likelihood on the 300 K replica-exchange frames of
:func:`compscope.sampling.assemble_ala2_reference` (per run: the first 80 % of the frames train, the last 20 % test,
a time split), draws ``--n`` samples with their exact log-density, evaluates their amber14 energies through OpenMM
and reports: test NLL (nats per frame and per internal degree of freedom, Cartesian modulo rigid motions), Kish
ESS, energy W1/W2 (flow and reweighted) against the 300 K frames, the C7ax / alpha_L basin population (flow,
reweighted, reference by MBAR over every replica), the 64 x 64 Ramachandran Jensen-Shannon divergence against the
MBAR reference, the fraction of mirror-image (D-alanine) samples, training time and samples/s; then the cost per
effective sample of the basin indicator 1[0 < phi < 2.2 rad] of the flow (training + drawing CPU seconds) beside
replica exchange's (its CPU seconds over the effective samples its error bar corresponds to).

    python -m benchmarks.sampling_bg_ala2                     # train (budget --minutes, resumable), draw, report
    python -m benchmarks.sampling_bg_ala2 --minutes 0         # only evaluate the run as it stands

The reference is frozen into the run folder at the first start (``reference.h5``), so a resumed run trains on the
same frames while the replica exchange goes on. Writes ``benchmarks/results/sampling_bg_ala2.json`` and the report
plots (``sampling_bg_ala2_ramachandran.png``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

if not __package__:  # run as `python benchmarks/<name>.py`: put the repository root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import RESULTS, WORK, write_result  # noqa: E402

# sized for the shared 2-core machine: 0.13 CPU-s per step (8 transforms, (256, 256), 16 bins, batch 256: 0.48)
FLOW = {"transforms": 6, "hidden": (128, 128), "bins": 8, "box_sigmas": 8.0}
TRAIN = {"steps": 6000, "batch_size": 128, "lr": 1e-3, "eval_every": 250}
# the Cartesian E(n)-equivariant CNF (--flow cartesian): EGNN field, one atom type per atom, flow matching with
# rotation/reflection alignment of base to data (atoms distinguishable: no permutations); 0.36 CPU-s per step
# (hidden 64, 4 layers, batch 64, float32). div_nodes/div_panels: the quadrature of the exact divergence used by
# validation (drawing takes --div-nodes/--div-panels/--n-steps, chosen by flow_integration_error)
ECNF = {"hidden": 64, "num_layers": 4, "n_steps": 20, "atom_types": list(range(22)), "div_nodes": 4,
        "div_panels": 2}
ECNF_MODULE = {"loss": "flow_matching", "alignment": "rotation", "lr": 5e-4, "sigma": 0.0}
ECNF_TRAINER = {"max_epochs": 1000000, "budget_clock": "cpu", "val_check_interval": 1000, "checkpoint_minutes": 10,
                "ema_decay": 0.999, "gradient_clip_val": 1.0, "num_threads": 1, "progress_bar": False}


def _ecnf_config(out: Path, minutes: float, seed: int) -> dict:
    """The ``compscope sample train`` config of the Cartesian flow (train/test frames as .npy in ``out``)."""
    return {"seed": seed, "flow": ECNF,
            "data": {"target": "ala2", "train": str(out / "train.npy"), "valid": str(out / "test.npy"),
                     "n_valid": 16, "batch_size": 64},
            "module": ECNF_MODULE, "trainer": {**ECNF_TRAINER, "max_time_minutes": minutes}}


def _train_ecnf(out: Path, train, test, minutes: float, seed: int):
    """Train (or resume: the budget ``minutes`` is CPU minutes summed over resumes) the Cartesian flow in
    ``out / "flow"``."""
    import numpy as np

    from compscope.sampling import train_flow

    for name, x in (("train", train), ("test", test)):
        if not (out / f"{name}.npy").exists():
            np.save(out / f"{name}.npy", x.float().reshape(len(x), -1).numpy())
    resume = (out / "flow" / "checkpoints" / "last.ckpt").exists()
    return train_flow(_ecnf_config(out, minutes, seed), out=out / "flow", resume=resume)


def _split(h5_path: Path):
    import h5py
    import numpy as np
    import torch

    with h5py.File(h5_path) as h5:
        pos, run = h5["positions"][:], h5["run"][:]
    tr, te = [], []
    for r in np.unique(run):
        idx = np.flatnonzero(run == r)
        cut = int(0.8 * len(idx))
        tr.append(idx[:cut])
        te.append(idx[cut:])
    x = torch.as_tensor(pos, dtype=torch.float64)
    return x[np.concatenate(tr)], x[np.concatenate(te)]


def _cpu_per_step(flow, train, n: int = 10) -> float:
    """Process CPU seconds of one maximum-likelihood step (a copy of the flow, the benchmark's batch size)."""
    import copy
    import math

    import torch

    model = copy.deepcopy(flow).train()
    z = model._to_box(model.zmatrix.to_internal(train[:4096])).float()
    z = z[(z.abs() < math.pi).all(-1)]
    opt = torch.optim.Adam(model.flow.parameters(), lr=1e-5)
    t0 = time.process_time()
    for _ in range(n):
        idx = torch.randint(len(z), (TRAIN["batch_size"],))
        loss = -model.flow().log_prob(z[idx]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (time.process_time() - t0) / n


def _ic_part(a, out: Path, train, test, target) -> dict:
    """Train (or resume) and draw the internal-coordinate flow: samples, timings and its payload entries."""
    import json

    import torch

    from compscope.sampling import load_ic_flow, train_ic_flow

    if a.minutes > 0:
        train_ic_flow(train, test[:2000], out / "flow", time_budget_s=60 * a.minutes, seed=a.seed,
                      **{**TRAIN, "eval_every": a.eval_every}, **FLOW)
    hist = json.loads((out / "flow" / "history.json").read_text())
    train_wall = hist[-1]["wall_s"]
    flow = load_ic_flow(out / "flow")
    # training CPU seconds: recorded by train_ic_flow (process time), or, for runs from before it did, the
    # measured CPU time of a training step here times the steps done (validation passes left out)
    cpu_per_step = _cpu_per_step(flow, train)
    # a run resumed with a version that records cpu_s: the steps before the first record are estimated
    first = next((h for h in hist if h.get("cpu_s")), None)
    if first is None:
        train_s = hist[-1]["step"] * cpu_per_step
    else:
        prev = max([h["step"] for h in hist if h["step"] < first["step"]], default=0)
        train_s = hist[-1]["cpu_s"] + prev * cpu_per_step
    with torch.no_grad():
        lq_test = flow.log_prob(test)
    ok = torch.isfinite(lq_test)
    nll = float(-lq_test[ok].mean())
    nll_se = float(lq_test[ok].std() / ok.sum() ** 0.5)

    torch.manual_seed(a.seed + 1)
    t0 = time.process_time()
    xs, lqs = [], []
    with torch.no_grad():
        for i in range(0, a.n, 1000):
            x, lq = flow.sample(min(1000, a.n - i))
            xs.append(x)
            lqs.append(lq)
    t_flow = time.process_time() - t0
    x, lq = torch.cat(xs), torch.cat(lqs)
    t0 = time.process_time()
    with torch.no_grad():
        u = target.energy(x).double()
    t_energy = time.process_time() - t0
    return {"x": x, "lq": lq, "u": u, "t_flow": t_flow, "t_energy": t_energy, "train_s": train_s,
            "flow": "internal-coordinate coupling flow (compscope.sampling.ICFlow: Z-matrix, 60 ICs; zuko NCSF "
                    f"circular rational-quadratic spline couplings, {FLOW}), maximum likelihood on REMD 300 K frames",
            "training": {**TRAIN, "steps_done": hist[-1]["step"], "cpu_s": train_s, "wall_s": train_wall,
                         "cpu_s_recorded_from_step": first["step"] if first else None,
                         "cpu_s_per_step_measured": cpu_per_step,
                         "n_train_frames": len(train), "n_test_frames": len(test),
                         "val_nll_curve": [(h["step"], round(h["val_nll"], 3)) for h in hist]},
            "test_nll": nll, "test_nll_se": nll_se, "test_nll_per_dof": nll / 60.0,
            "test_frames_outside_support": int((~ok).sum())}


# solver settings (n_steps, div_nodes, div_panels) tried for drawing, against a fine float64 solve
ECNF_SOLVERS = [(10, 2, 1), (10, 3, 1), (20, 3, 1), (20, 4, 1), (20, 3, 2), (20, 4, 2)]
ECNF_SOLVER_REFERENCE = (40, 8, 4)
# published alanine-dipeptide Boltzmann generators (GPU-trained), Kish ESS in %
PUBLISHED_ALA2 = {
    "TBG (Klein et al., NeurIPS 2023, transferable Boltzmann generators; equivariant CNF)": {"ess_percent": 6.0},
    "ECNF++ (Tan et al., 2025, scalable equivariant Boltzmann generators)": {"ess_percent": 27.5},
    "FALCON (few-step flow, 2025)": {"ess_percent": [6.7, 9.7]},
}


def _ecnf_part(a, out: Path, train, test, target) -> dict:
    """Draw from the trained Cartesian flow with the cheapest solver whose log q error passes the check: samples,
    timings and its payload entries (test NLL on ``--n-test`` frames, the solver check, the training record)."""
    import json
    import math

    import numpy as np
    import torch

    from compscope.sampling import draw_samples, flow_integration_error, load_flow

    flow, info = load_flow(out / "flow")
    rows = [json.loads(line) for line in (out / "flow" / "metrics.jsonl").read_text().splitlines() if line.strip()]
    timing_file = out / "flow" / "train_time.json"  # written when a run ends within its budget
    if timing_file.exists():
        timing = json.loads(timing_file.read_text())
    else:  # a run stopped from outside: the CPU seconds its checkpoint's timer recorded (budget_clock cpu)
        spent = torch.load(info["checkpoint"], map_location="cpu", weights_only=False)["callbacks"]["Timer"]
        timing = {"train_seconds": sum(spent["time_elapsed"].values())}
    c0 = time.process_time()
    check = flow_integration_error(flow, a.check_draws, ECNF_SOLVERS, reference=ECNF_SOLVER_REFERENCE,
                                   seed=10_000 + a.seed, reference_dtype=torch.float64)
    check_cpu = time.process_time() - c0
    passed = [r for r in check[:-1] if r["log_q_centred_rms"] <= a.max_log_q_error]
    chosen = min(passed, key=lambda r: r["cpu_s_per_draw"]) if passed else check[-2]
    steps, nodes, panels = chosen["n_steps"], chosen["div_nodes"], chosen["div_panels"]
    flow.div_panels = panels
    idx = np.linspace(0, len(test) - 1, min(a.n_test, len(test))).astype(int)
    c0 = time.process_time()
    # the folded density on L-alanine is 2 q (fold_chirality): log q + log 2
    lq_test = flow.log_prob(test[idx].to(torch.float32), n_steps=steps, div_nodes=nodes).double() + math.log(2.0)
    test_cpu = time.process_time() - c0
    s = draw_samples(flow, target, a.n, batch_size=a.batch, seed=a.seed + 1, n_steps=steps, div_nodes=nodes)
    x = torch.as_tensor(s["positions"])
    c0 = time.process_time()
    k = min(a.n, 500)
    with torch.no_grad():
        target.energy(x[:k])
    t_energy = (time.process_time() - c0) * a.n / k  # the energies' share of draw_samples' CPU seconds
    return {"x": x, "lq": torch.as_tensor(s["log_q"]), "u": torch.as_tensor(s["energy"]),
            "t_flow": s["cpu_seconds"] - t_energy, "t_energy": t_energy, "train_s": timing["train_seconds"],
            "flow": "Cartesian E(n)-equivariant CNF (compscope.sampling.EquivariantCNF: EGNN field, one atom type per "
                    f"atom, mean-free Gaussian base; {ECNF}), equivariant flow matching ({ECNF_MODULE}) on REMD "
                    "300 K frames; D-alanine draws mirrored onto L (log q + log 2)",
            "training": {**ECNF_TRAINER, "batch_size": 64, "steps_done": info["global_step"],
                         "checkpoint": info["checkpoint"], "cpu_s": timing["train_seconds"],
                         "wall_s": rows[-1]["time_s"] if rows else None,
                         "n_train_frames": len(train), "n_test_frames": len(test),
                         "val_nll_curve": [(r["step"], round(r["val_nll"], 3)) for r in rows if "val_nll" in r]},
            "test_nll": float(-lq_test.mean()), "test_nll_se": float(lq_test.std() / len(lq_test) ** 0.5),
            "test_nll_per_dof": float(-lq_test.mean()) / 63.0, "test_nll_frames": len(idx),
            "test_nll_cpu_s": test_cpu,
            "solver": {"n_steps": steps, "div_nodes": nodes, "div_panels": panels, "dtype": "float32 (log w float64)",
                       "max_log_q_centred_rms": a.max_log_q_error, "check_draws": a.check_draws,
                       "check_cpu_s": check_cpu, "check": check},
            "exact_log_q_cpu_s_per_sample": chosen["cpu_s_per_draw"],
            "mirrored_before_folding": s["mirrored_fraction"], "published": PUBLISHED_ALA2}


def main(argv: list[str] | None = None) -> Path:
    import json

    import numpy as np
    import torch

    from compscope.analysis import free_energy_profile_1d, profile_error
    from compscope.sampling import (
        ALA2_BASIN,
        ALA2_PHI,
        ALA2_PSI,
        ala2_reference_angles,
        ala2_reference_dir,
        alanine_dipeptide,
        assemble_ala2_reference,
        dihedral_angles,
        importance_weights,
        kish_ess,
        ramachandran_report,
        reweighted_mean,
        wasserstein_1d,
        write_samples,
    )

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None, help="run folder (default: under the work folder)")
    p.add_argument("--minutes", type=float, default=25.0, help="training budget of this call (0: evaluate only)")
    p.add_argument("--n", type=int, default=10000, help="samples drawn for ESS and the basin")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=TRAIN["eval_every"], help="validation (and budget check) steps")
    p.add_argument("--flow", choices=("ic", "cartesian"), default="ic",
                   help="ic: internal-coordinate coupling flow; cartesian: E(n)-equivariant CNF (flow matching)")
    p.add_argument("--train-only", action="store_true", help="train (or resume) and stop before drawing")
    p.add_argument("--batch", type=int, default=250, help="cartesian: draws per batch")
    p.add_argument("--n-test", type=int, default=100, help="cartesian: test frames of the exact NLL")
    p.add_argument("--check-draws", type=int, default=8, help="cartesian: draws of the solver check")
    p.add_argument("--max-log-q-error", type=float, default=0.05,
                   help="cartesian: largest centred RMS log q error (nats) of the chosen solver against a fine one")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    if a.out is None:
        a.out = WORK / "sampling" / ("ala2_icflow_seed0" if a.flow == "ic" else "ala2_ecnf_seed0")
    out = a.out
    out.mkdir(parents=True, exist_ok=True)
    ref_h5 = out / "reference.h5"
    if not ref_h5.exists():  # freeze the reference the flow trains on
        path, _ = assemble_ala2_reference(ala2_reference_dir(0), path=out / "reference.h5.tmp.h5")
        shutil.move(path, ref_h5)
    train, test = _split(ref_h5)
    if a.flow == "cartesian" and a.minutes > 0:
        _train_ecnf(out, train, test, a.minutes, a.seed)
        if a.train_only:
            return out
    target = alanine_dipeptide()
    part = _ic_part(a, out, train, test, target) if a.flow == "ic" else _ecnf_part(a, out, train, test, target)
    x, lq, u, t_flow, t_energy, train_s = (part.pop(k) for k in ("x", "lq", "u", "t_flow", "t_energy", "train_s"))
    iw = importance_weights(u.numpy(), lq.numpy())
    samples = {"positions": x.numpy(), "log_q": lq.numpy(), "energy": u.numpy(), "log_w": iw.log_w}
    write_samples(out / "samples.h5", samples, {"target": "ala2", "model": str(out / "flow"), "seed": a.seed,
                                                 "samples_per_s": a.n / (t_flow + t_energy)})
    # bootstrap spread of the ESS over the proposals
    rng = np.random.default_rng(a.seed)
    ess_boot = [kish_ess(iw.log_w[rng.integers(0, a.n, a.n)]) for _ in range(200)]
    phi = dihedral_angles(x.numpy(), ALA2_PHI)
    psi = dihedral_angles(x.numpy(), ALA2_PSI)
    ref = ala2_reference_angles(ref_h5)
    rep = ramachandran_report(phi, psi, iw.log_w, ref["phi"], ref["psi"], ref["log_w"], ref_basin=ref["basin"],
                              out=out / "report", ref_label=ref["label"])
    result_name = "sampling_bg_ala2" if a.flow == "ic" else "sampling_bg_ala2_ecnf"
    fig = RESULTS / f"{result_name}_ramachandran.png"
    shutil.copy(out / "report" / "ramachandran.png", fig)
    import h5py

    with h5py.File(ref_h5) as h5:
        u_ref = h5["energy"][:]
        ref_pos = h5["positions"][:]
        summary = json.loads(h5.attrs["summary"])
    # chirality: the improper dihedral N-CA-C-CB has one sign for L-alanine (the reference's)
    chi = dihedral_angles(x.numpy(), (6, 7, 9, 8))
    chi_ref = np.sign(np.median(dihedral_angles(ref_pos, (6, 7, 9, 8))))
    mirror = float(np.mean(np.sign(chi) != chi_ref))
    # the reweighted phi free-energy profile against the reference's (MBAR) on its populated bins (p >= 1e-3)
    okw = np.isfinite(iw.log_w)
    wf = np.exp(iw.log_w[okw] - iw.log_w[okw].max())
    prof = free_energy_profile_1d(phi[okw], bins=36, weights=wf, periodic=True)
    ref_w = None if ref["log_w"] is None else np.exp(ref["log_w"] - np.max(ref["log_w"]))
    prof_ref = free_energy_profile_1d(ref["phi"], bins=36, weights=ref_w, periodic=True)
    phi_err = profile_error(prof, prof_ref, min_prob=1e-3)
    uf = u.numpy()[np.isfinite(u.numpy())]
    bw = rep["basin_reweighted"]
    p_b = bw["mean"]
    # effective samples of the reweighted basin estimate: the delta method's p (1 - p) / se^2, capped by the Kish
    # ESS (with a handful of dominant weights the delta-method se is itself unreliable and can be far too small)
    n_eff_delta = p_b * (1 - p_b) / bw["se"] ** 2 if bw["se"] > 0 else float("inf")
    n_eff_basin = min(n_eff_delta, iw.ess * a.n) if iw.ess > 0 else None
    br = rep["basin_reference"]
    z_basin = (p_b - br["mean"]) / float(np.hypot(bw["se"], br["se"]))
    flow_cpu = train_s + t_flow + t_energy
    # replica exchange: CPU seconds of all runs over the effective samples of its quoted (larger) error
    remd_wall = float(sum(summary["wall_s_per_run"]))
    remd = {}
    for name, s in {"300K_replica": summary, "mbar_all_replicas": summary["mbar"]}.items():
        err = max(e for e in (s["basin_error_blocks"], s["basin_error_runs"]) if e is not None)
        pp = s["basin_population"]
        neff = pp * (1 - pp) / err**2
        remd[name] = {"basin_population": pp, "error": err, "n_effective_basin": neff,
                      "cpu_s_per_effective_basin_sample": remd_wall / neff}
    payload = {
        "system": "alanine dipeptide (ACE-ALA-NME), amber14, vacuum, no constraints, 300 K",
        **part,
        "n_samples": a.n, "n_invalid": iw.n_invalid,
        "ess": iw.ess, "ess_bootstrap_sd": float(np.std(ess_boot)),
        "energy_mean_flow_kT": float(uf.mean()), "energy_mean_reweighted_kT": reweighted_mean(u.numpy(), iw.log_w)[0],
        "energy_mean_reference_kT": float(u_ref.mean()),
        "energy_w1_flow": wasserstein_1d(uf, u_ref, 1), "energy_w2_flow": wasserstein_1d(uf, u_ref, 2),
        "energy_w1_reweighted": wasserstein_1d(u.numpy(), u_ref, 1, log_w_a=iw.log_w),
        "energy_w2_reweighted": wasserstein_1d(u.numpy(), u_ref, 2, log_w_a=iw.log_w),
        "basin": f"{ALA2_BASIN[0]} < phi < {ALA2_BASIN[1]} rad",
        "basin_flow": rep["basin_flow"], "basin_reweighted": rep["basin_reweighted"],
        "basin_reference": rep["basin_reference"],
        "ramachandran_js_flow": rep["js_flow"], "ramachandran_js_reweighted": rep["js_reweighted"],
        "phi_profile_error_kT": {**phi_err, "bins": 36, "min_reference_prob": 1e-3},
        "mirror_image_fraction": mirror,
        "draw_cpu_s": t_flow, "energy_cpu_s": t_energy, "samples_per_s": a.n / (t_flow + t_energy),
        "flow_samples_per_s_without_energy": a.n / t_flow,
        "cost_per_effective_basin_sample": {
            "flow_cpu_s": flow_cpu / n_eff_basin if n_eff_basin else None,
            "flow_cpu_s_drawing_only": (t_flow + t_energy) / n_eff_basin if n_eff_basin else None,
            "flow_n_effective_basin": n_eff_basin, "flow_n_effective_basin_delta_method": n_eff_delta,
            "flow_basin_z_vs_reference": z_basin,
            "flow_estimate_usable": bool(abs(z_basin) < 3 and iw.ess * a.n >= 100),
            "replica_exchange": remd,
        },
        "reference": {"file": str(ref_h5), "iterations_per_run": summary["iterations_per_run"],
                      "basin_300K": [summary["basin_population"], summary["basin_error_blocks"],
                                     summary["basin_error_runs"]],
                      "basin_mbar": [summary["mbar"]["basin_population"], summary["mbar"]["basin_error_blocks"],
                                     summary["mbar"]["basin_error_runs"]]},
        "figure": str(fig.relative_to(RESULTS.parents[1])),
        "notes": [
            "the flow is trained on replica-exchange frames: its cost per effective basin sample excludes the cost "
            "of making those frames (flow_cpu_s counts training + drawing + OpenMM energies only); a Boltzmann "
            "generator without data (energy-based training) would not have that debt",
            "replica exchange's effective samples: p (1 - p) / error^2 with its larger (block / run) error; its "
            "seconds are the wall time of its runs' iterations summed over runs (1 core each, niced; 0.86 s per "
            "iteration against ~0.77 s on an idle core, so close to CPU time)",
            "flow training seconds are CPU seconds (the niced job got 5-20 % of a core on the loaded machine, so "
            "its wall time, training.wall_s, is 5-20x longer); when the run did not record them (runs from before "
            "train_ic_flow kept cpu_s) they are steps_done x cpu_s_per_step_measured (a step timed here)",
            "flow effective basin samples: p (1 - p) / se^2 with the delta-method se of the self-normalised "
            "estimate, capped by the Kish ESS; flow_estimate_usable is false when the reweighted basin population "
            "disagrees with the reference by 3 combined standard errors or more or the Kish ESS is under 100 "
            "samples: then its cost per effective sample is not a cost of a correct answer",
            "NLL: nats per frame of the Cartesian density modulo rigid motions (the Z-matrix volume factor included, "
            "the constant volume of translations x rotations left out)",
            "mirror_image_fraction: samples whose improper dihedral N-CA-C-CB has the sign opposite to the "
            "reference's (D-alanine); the internal-coordinate flow is not reflection-symmetric, so it is near 0",
        ],
    }
    if a.flow == "cartesian":
        payload["notes"] = [n for n in payload["notes"] if not n.startswith(("mirror_image_fraction", "NLL:"))] + [
            "NLL: nats per frame of the folded (L-alanine) Cartesian density on the 63-dimensional mean-free "
            "subspace (rotations not factored out), on test_nll_frames frames of the time-split test set; not "
            "comparable with the internal-coordinate flow's NLL (60 internal coordinates, rigid motions removed)",
            "log q is exact up to the solver error stated in `solver` (RK4 positions, Gauss-Legendre quadrature of the "
            "exact 66-coordinate divergence in float32, checked against a fine float64 solve; log w in float64); "
            "exact_log_q_cpu_s_per_sample is that solver's CPU seconds per draw",
            "mirror_image_fraction is 0 after folding; mirrored_before_folding is the share of D-alanine draws of "
            "the reflection-symmetric flow (about one half)",
            "training cpu_s: CPU seconds of the training process (budget_clock cpu; validation passes included)"]
    path = write_result(result_name, payload, seed=a.seed)
    print(json.dumps({k: payload[k] for k in ("test_nll", "ess", "basin_reweighted", "basin_reference",
                                              "ramachandran_js_reweighted", "samples_per_s")}, indent=1))
    return path


if __name__ == "__main__":
    main()
