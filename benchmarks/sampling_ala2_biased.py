"""Alanine-dipeptide 300 K reference by MD under a frozen metadynamics bias, exactly reweighted: how converged it is.

Reads (default) or runs the reference of :func:`compscope.sampling.make_ala2_biased_reference` (stage 1: OpenMM
well-tempered metadynamics on phi/psi; stage 2: independent LangevinMiddle runs under the frozen bias, weights
``exp(+V/kT)``) in its cache folder ``<data dir>/sampling/ala2_biased_seed<S>`` and reports:

* the metadynamics' length and cost, and the drift of its bias over its last part;
* the biased MD's simulated time and CPU time, the Kish ESS of the weights;
* the C7ax/alpha_L basin population (0 < phi < 2.2 rad) with error bars from blocks and from the independent runs;
* two independent halves (the first and the second half of the runs): Ramachandran JS (64x64) and phi free-energy
  profile difference between them, also at a quarter and a half of each run's length (JS of noise falls as 1/N);
* agreement with the replica-exchange reference (:func:`compscope.sampling.assemble_ala2_reference`, if cached):
  basin population within the error bars, Ramachandran JS and phi profile difference against it, and the JS of
  REMD's own two runs against each other (the scale of REMD's noise, which dominates the JS against it).

    python -m benchmarks.sampling_ala2_biased             # read the cached run as it stands (works while it runs)
    python -m benchmarks.sampling_ala2_biased --run       # run (or resume) it to its run_ns first: hours

Writes ``benchmarks/results/sampling_ala2_biased.json`` and ``sampling_ala2_biased.png`` (Ramachandran free
energy in kT, phi profiles of the halves and of REMD, each run's running basin population).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if not __package__:  # run as `python benchmarks/<name>.py`: put the repository root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import RESULTS, WORK, write_result  # noqa: E402

RESUME = "nice -n 15 compscope sample reference ala2-biased --resume"
"""The command that continues the cached run (same settings; ``--set run_ns=N`` extends every run)."""

BINS = 64  # Ramachandran histogram and phi profile bins (issue #21's 64 x 64)


def _js(a: dict, b: dict) -> float:
    from compscope.analysis import ramachandran_js

    return ramachandran_js(a["phi"], a["psi"], b["phi"], b["psi"], bins=BINS, weights_a=a.get("w"),
                           weights_b=b.get("w"))


def _profile(d: dict) -> dict:
    from compscope.analysis import free_energy_profile_1d

    return free_energy_profile_1d(d["phi"], bins=BINS, periodic=True, weights=d.get("w"))


def _perr(a: dict, b: dict) -> dict:
    from compscope.analysis import profile_error

    e = profile_error(_profile(a), _profile(b))
    return {"rmse_kT": e["rmse"], "max_abs_kT": e["max_abs"], "n_bins": e["n_bins"]}


def _subset(ref: dict, mask) -> dict:
    return {"phi": ref["phi"][mask], "psi": ref["psi"][mask], "w": ref["weight"][mask], "run": ref["run"][mask]}


def _halves(ref: dict, fraction: float = 1.0) -> tuple[dict, dict]:
    """Runs [0, n/2) against runs [n/2, n), each run cut to its first ``fraction`` of frames."""
    import numpy as np

    runs = np.unique(ref["run"])
    keep = np.zeros(len(ref["phi"]), bool)
    for r in runs:
        idx = np.flatnonzero(ref["run"] == r)
        keep[idx[: max(1, int(round(fraction * len(idx))))]] = True
    a = keep & np.isin(ref["run"], runs[: len(runs) // 2])
    b = keep & np.isin(ref["run"], runs[len(runs) // 2:])
    return _subset(ref, a), _subset(ref, b)


def _metad_drift(meta: dict, cfg: dict) -> dict:
    """RMS change (kT) of the metadynamics free-energy estimate F = -gamma/(gamma-1) V between snapshots, over the
    grid points within 8 kT of the minimum of the final estimate (a constant shift removed)."""
    import numpy as np

    from compscope.sampling import MOLAR_GAS_CONSTANT_KJ

    kT = MOLAR_GAS_CONSTANT_KJ * float(cfg["temperature"])
    g = float(cfg["bias_factor"])
    snaps = -g / (g - 1) * np.asarray(meta["snapshots"]) / kT
    if len(snaps) < 2:
        return {"n_snapshots": int(len(snaps))}
    final = snaps[-1] - snaps[-1].min()
    sel = final < 8.0
    out = {"n_snapshots": int(len(snaps)), "snapshot_ps": float(cfg["metad_snapshot_ps"]),
           "n_grid_points": int(sel.sum())}
    for label, k in (("last_snapshot", len(snaps) - 2), ("half_way", len(snaps) // 2 - 1)):
        d = (snaps[-1] - snaps[max(k, 0)])[sel]
        d = d - d.mean()
        out[f"rms_change_kT_since_{label}"] = float(np.sqrt((d**2).mean()))
    return out


def main(argv: list[str] | None = None) -> Path:
    import json

    import numpy as np

    from compscope.sampling import (
        ala2_biased_reference,
        ala2_biased_reference_dir,
        ala2_reference_dir,
        assemble_ala2_reference,
        basin_population,
        load_bias,
        make_ala2_biased_reference,
    )

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None, help="run folder (default: the cache folder of --seed)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run", action="store_true", help="run or resume the reference to its run_ns before reading")
    p.add_argument("--n-blocks", type=int, default=10, help="blocks per run for the block error bar")
    p.add_argument("--no-remd", action="store_true", help="skip the comparison with the replica-exchange reference")
    a = p.parse_args(argv)
    out = a.out or ala2_biased_reference_dir(a.seed)
    if a.run:
        make_ala2_biased_reference(out, resume=(out / "config.yaml").exists(), seed=a.seed)
    ref = ala2_biased_reference(out)
    cfg, s = ref["config"], ref["summary"]
    _, meta = load_bias(out)
    n = len(ref["phi"])
    pop = basin_population(ref["phi"], ref["run"], n_blocks=a.n_blocks, weights=ref["weight"])
    err = max(pop["error_blocks"], pop["error_runs"] or 0.0)
    ess_run = {}
    for r in np.unique(ref["run"]):
        lw = ref["log_weight"][ref["run"] == r]
        w = np.exp(lw - lw.max())
        ess_run[str(int(r))] = float(w.sum() ** 2 / (w**2).sum())
    halves = {}
    for frac in (0.25, 0.5, 1.0):
        ha, hb = _halves(ref, frac)
        halves[f"{frac:g}"] = {"ramachandran_js": _js(ha, hb), "phi_profile": _perr(ha, hb),
                               "basin_population": [float((h["w"] * ((h["phi"] > 0) & (h["phi"] < 2.2))).sum()
                                                          / h["w"].sum()) for h in (ha, hb)],
                               "n_frames_per_half": [int(len(ha["phi"])), int(len(hb["phi"]))]}
    biased_ns = float(sum(s["biased_ns_per_run"]))
    payload = {
        "system": "alanine dipeptide (ACE-ALA-NME), amber14, vacuum, no constraints, 300 K",
        "method": f"stage 1: OpenMM well-tempered metadynamics on (phi, psi), bias factor {cfg['bias_factor']}, "
                  f"{cfg['metad_ns']} ns; stage 2: {cfg['n_runs']} independent LangevinMiddle runs "
                  f"({cfg['timestep_fs']} fs, {cfg['collision_rate_ps']}/ps) under the frozen bias "
                  "(CustomCompoundBondForce, periodic Continuous2DFunction), frames every "
                  f"{cfg['frame_ps']} ps, weights exp(+V/kT); one core, round-robin chunks",
        "run_folder": str(out),
        "config": cfg,
        "metadynamics": {**s["metadynamics"], "drift": _metad_drift(meta, cfg)},
        "biased_md": {"ns_per_run": s["biased_ns_per_run"], "ns_total": biased_ns, "cpu_s": s["md_cpu_s"],
                      "wall_s": s["md_wall_s"], "ns_per_cpu_hour": biased_ns / max(s["md_cpu_s"], 1e-9) * 3600,
                      "target_ns_per_run": float(cfg["run_ns"]),
                      "complete": min(s["biased_ns_per_run"]) >= float(cfg["run_ns"]) - 1e-9},
        "n_frames": n,
        "kish_ess": ref["kish_ess"],
        "kish_ess_fraction": ref["kish_ess"] / n,
        "kish_ess_per_run": ess_run,
        "max_bias_mismatch_python_vs_openmm_kjmol": s["max_bias_mismatch_kjmol"],
        "basin": "0 < phi < 2.2 rad (C7ax / alpha_L)",
        "basin_population": pop["population"],
        "basin_population_error": err,
        "basin_population_error_blocks": pop["error_blocks"],
        "basin_population_error_runs": pop["error_runs"],
        "basin_population_per_run": pop["per_run"],
        "basin_entries": pop["entries"],
        "halves": halves,
        "half_vs_half_js": halves["1"]["ramachandran_js"],
        "half_vs_half_phi_profile_rmse_kT": halves["1"]["phi_profile"]["rmse_kT"],
        "half_vs_half_phi_profile_max_kT": halves["1"]["phi_profile"]["max_abs_kT"],
        # the JS of two samples of one density is noise ~ 1/N (see halves at a quarter and a half of the length):
        # the biased-MD time (all runs) at which the half-vs-half JS would reach 0.002 and 0.001
        "ns_for_half_vs_half_js": {str(t): biased_ns * halves["1"]["ramachandran_js"] / t for t in (0.002, 0.001)},
        "resume_command": RESUME,
        "notes": [
            "error bar: the larger of the block standard error (each run cut into n_blocks consecutive blocks, "
            "weighted populations) and the standard error of the independent runs' populations",
            "halves: runs [0, n/2) against runs [n/2, n); the JS of two finite samples of the same density is "
            "pure noise and falls as 1/N (compare the quarter, half and full lengths)",
            "CPU and wall time: the runs' own process time; one core niced to 15 on a shared 2-core machine",
        ] + ([] if min(s["biased_ns_per_run"]) >= float(cfg["run_ns"]) - 1e-9
             else ["run still going or stopped early (all runs equally long): numbers so far; resume with "
                   "resume_command"]),
    }
    remd = None
    remd_dir = ala2_reference_dir(a.seed)
    if not a.no_remd and (remd_dir / "config.yaml").exists():
        import h5py

        look = WORK / "sampling" / "ala2_reference_look.h5"
        look.parent.mkdir(parents=True, exist_ok=True)
        _, rs = assemble_ala2_reference(remd_dir, path=look)
        with h5py.File(look) as h5:
            remd = {"phi": h5["phi"][:], "psi": h5["psi"][:], "run": h5["run"][:]}
        rerr = rs["basin_error_blocks"] if rs["basin_error_runs"] is None else max(rs["basin_error_blocks"],
                                                                                 rs["basin_error_runs"])
        full = _subset(ref, np.ones(n, bool))
        runs = np.unique(remd["run"])
        cmp = {"remd_iterations_per_run": rs["iterations_per_run"], "remd_n_frames": int(len(remd["phi"])),
               "remd_basin_population": rs["basin_population"], "remd_basin_population_error": rerr,
               "basin_difference": pop["population"] - rs["basin_population"],
               "basin_z": (pop["population"] - rs["basin_population"]) / float(np.hypot(err, rerr)),
               "basin_within_remd_error": abs(pop["population"] - rs["basin_population"]) <= rerr,
               "ramachandran_js": _js(full, remd), "phi_profile": _perr(full, remd)}
        if len(runs) >= 2:
            r0, r1 = ({k: v[remd["run"] == r] for k, v in remd.items()} for r in runs[:2])
            cmp["remd_run0_vs_run1_js"] = _js(r0, r1)
            cmp["remd_run0_vs_run1_phi_profile"] = _perr(r0, r1)
        payload["vs_replica_exchange"] = cmp
        payload["notes"].append(
            "vs_replica_exchange: the JS against REMD is dominated by REMD's own finite-sample noise (its two runs "
            "differ from each other by remd_run0_vs_run1_js), not by a difference of the densities")
    payload["figure"] = str(_plot(ref, remd, RESULTS / "sampling_ala2_biased.png").relative_to(RESULTS.parents[1]))
    path = write_result("sampling_ala2_biased", payload, seed=a.seed)
    keys = ("basin_population", "basin_population_error", "kish_ess", "half_vs_half_js",
            "half_vs_half_phi_profile_rmse_kT")
    print(json.dumps({**{k: payload[k] for k in keys}, "biased_ns": biased_ns,
                      "vs_replica_exchange": payload.get("vs_replica_exchange")}, indent=1, default=float))
    return path


def _plot(ref: dict, remd: dict | None, png: Path) -> Path:
    import matplotlib
    import numpy as np

    from compscope.analysis import ramachandran_histogram

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx, cx) = plt.subplots(1, 3, figsize=(14, 4))
    h = ramachandran_histogram(ref["phi"], ref["psi"], bins=BINS, weights=ref["weight"])
    with np.errstate(divide="ignore"):
        f = -np.log(h)
    f -= f[np.isfinite(f)].min()
    e = np.linspace(-np.pi, np.pi, BINS + 1)
    im = ax.pcolormesh(e, e, np.where(np.isfinite(f), f, np.nan).T, cmap="viridis", shading="flat", vmax=15)
    fig.colorbar(im, ax=ax, label="free energy (kT)")
    for v in (0.0, 2.2):
        ax.axvline(v, color="w", lw=0.8, ls="--")
    ax.set(xlabel="phi (rad)", ylabel="psi (rad)", title=f"300 K, biased MD reweighted ({len(ref['phi'])} frames)")
    ha, hb = _halves(ref)
    for d, label in ((ha, "runs, first half"), (hb, "runs, second half")) + (((remd, "replica exchange"),)
                                                                          if remd is not None else ()):
        pr = _profile(d)
        bx.plot(pr["centres"], pr["free_energy"], label=label)
    bx.set(xlabel="phi (rad)", ylabel="F(phi) (kT)", title="phi free-energy profile", ylim=(0, 20))
    bx.legend(fontsize=8)
    for r in np.unique(ref["run"]):
        m = ref["run"] == r
        w = ref["weight"][m]
        ind = ((ref["phi"][m] > 0) & (ref["phi"][m] < 2.2)).astype(float)
        cx.plot(ref["time_ps"][m] / 1000, 100 * np.cumsum(w * ind) / np.cumsum(w), label=f"run {r}")
    cx.set(xlabel="biased MD time (ns)", ylabel="running basin population (%)", title="0 < phi < 2.2 rad, reweighted",
           ylim=(0, 10))
    cx.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png


if __name__ == "__main__":
    main()
