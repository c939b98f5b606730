"""How good is the dense-engine 1 µs alanine-dipeptide reference (issue #22)? Checked against the OpenMM one.

The dense reference (``compscope md reference alanine-dipeptide --engine dense``: flexible X-H bonds, hydrogens
repartitioned to 3.024 amu, BAOAB 2 fs, the numba amber14 + OBC2 of ``integrations.openmm_numba``) samples the same
Boltzmann distribution over positions as the OpenMM reference (H bonds rigid) up to the constraint: the
conformational statistics below must agree within their errors. The script reports, in one JSON:

- size: replicas, ns per replica, frames, total ns (a partial report from the run folder ``<file>.dense/`` while the
  campaign runs: ``complete`` false);
- populations of the three basins of ``compscope.analysis.ALANINE_DIPEPTIDE_BASINS`` in both references, each with
  its standard error over independent replicas, and the slow basin 1[0 < phi < 2.2] in more detail: entries, the
  first and second half of every replica (relaxation from the start frames), block errors;
- Ramachandran JS (64 x 64 and 61 x 61) between the references, beside the same JS between two disjoint sets of
  dense replicas of the OpenMM reference's size: the sampling noise that JS has at that size;
- the slow-basin indicator's ESS and, with the measured cost per simulated ns (``--ns-per-day``, default:
  ``md_obc_numba.json``'s dense rate per core), its ESS per CPU second: the all-atom number the CG sampler is
  compared with. With few transitions the autocorrelation estimators (first-zero, batch means) only see the
  chains' length; the two-state estimate uses the counted entries and exits (rates k_in, k_out; integrated
  autocorrelation time 2 / (k_in + k_out)) and is the one to quote;
- a PNG: both free-energy surfaces and the slow-basin population against time.

Usage::

    python -m benchmarks.md_reference_dense --dense /path/ala2_obc_dense.h5 --openmm /path/ala2_obc.h5
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from benchmarks._common import RESULTS, write_result


def read_reference(path: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """phi, psi (R, T) of a reference file (one group per replica; replicas cut to the shortest)."""
    import h5py

    with h5py.File(path, "r") as h5:
        groups = sorted(h5["replicas"])
        t = min(h5[f"replicas/{g}/phi"].shape[0] for g in groups)
        phi = np.stack([h5[f"replicas/{g}/phi"][:t] for g in groups])
        psi = np.stack([h5[f"replicas/{g}/psi"][:t] for g in groups])
        dt = np.diff(h5[f"replicas/{groups[0]}/time_ps"][:2])
        meta = {k: (v.item() if hasattr(v, "item") else v) for k, v in h5.attrs.items()}
    meta["frame_ps"] = float(dt[0]) if len(dt) else 1.0
    return phi, psi, meta


def read_run_folder(folder: Path, equilibrate_ps: float) -> tuple[np.ndarray, np.ndarray, dict]:
    """phi, psi (R, T) of the frames after ``equilibrate_ps`` of an unfinished dense run folder."""
    import h5py

    from compscope.analysis import backbone_dihedrals

    with h5py.File(folder / "trajectory.h5", "r") as h5:
        t = h5["particles/all/position/time"][:]
        pos = h5["particles/all/position/value"]
        n_rep = int(h5["particles/all/replica"][:].max()) + 1
        keep = np.flatnonzero(t >= equilibrate_ps - 1e-9)
        phi, psi = np.empty((n_rep, len(keep))), np.empty((n_rep, len(keep)))
        for j, i in enumerate(keep):
            a, b = backbone_dihedrals(np.asarray(pos[i]).reshape(n_rep, -1, 3))
            phi[:, j], psi[:, j] = a, b
    frame_ps = float(t[1] - t[0]) if len(t) > 1 else 1.0
    return phi, psi, {"frame_ps": frame_ps, "equilibrate_ps": equilibrate_ps}


def read_dense(path: Path, equilibrate_ps: float = 20.0) -> tuple[np.ndarray, np.ndarray, dict]:
    """phi, psi (R, T) and metadata of a dense reference: the finished file, or while the campaign runs, its run
    folder ``<file>.dense/`` (``meta["complete"]`` says which)."""
    path = Path(path)
    if path.exists():
        phi, psi, meta = read_reference(path)
        return phi, psi, {**meta, "complete": True}
    run = path.with_name(path.name + ".dense")
    if not (run / "trajectory.h5").exists():
        raise SystemExit(f"neither {path} nor its run folder {run} exists")
    phi, psi, meta = read_run_folder(run, equilibrate_ps)
    return phi, psi, {**meta, "complete": False}


def _populations(phi: np.ndarray, psi: np.ndarray) -> dict:
    """Each basin's population with its standard error over replicas (rows of phi/psi are independent runs)."""
    from compscope.analysis import ALANINE_DIPEPTIDE_BASINS, basin_indicator

    out = {}
    for b in ALANINE_DIPEPTIDE_BASINS:
        per = basin_indicator(phi, psi, b).reshape(phi.shape).mean(1)
        out[b.name] = {"population": float(per.mean()), "se_replicas": float(per.std(ddof=1) / np.sqrt(len(per)))}
    return out


def _slow(phi: np.ndarray, frame_ps: float) -> dict:
    from compscope.analysis import basin_indicator, effective_sample_size, ess_two_state

    ind = basin_indicator(phi).reshape(phi.shape).astype(np.float64)
    half = phi.shape[1] // 2
    two = ess_two_state(ind)
    t_in, t_out = ind[:, :-1].sum() * frame_ps, (1.0 - ind[:, :-1]).sum() * frame_ps  # ps with a successor
    per = ind.mean(1)
    return {"population": float(ind.mean()), "se_replicas": float(per.std(ddof=1) / np.sqrt(len(per))),
            "first_half": float(ind[:, :half].mean()), "second_half": float(ind[:, half:].mean()),
            "started_in_basin": float(ind[:, 0].mean()), "replicas_visiting": int(ind.any(1).sum()),
            "entries": two["n01"], "exits": two["n10"],
            "mean_dwell_in_ps": t_in / two["n10"] if two["n10"] else None,
            "mean_time_between_entries_ps": t_out / two["n01"] if two["n01"] else None,
            "ess_two_state": two["ess"],
            "ess_first_zero": float(effective_sample_size(ind)) if ind.std() > 0 else 0.0,
            "ess_batch_means": float(effective_sample_size(ind, "batch_means")) if ind.std() > 0 else 0.0,
            "frame_ps": frame_ps}


def _js(phi_a, psi_a, phi_b, psi_b) -> dict:
    from compscope.analysis import ramachandran_js

    return {f"js_{b}": ramachandran_js(phi_a.ravel(), psi_a.ravel(), phi_b.ravel(), psi_b.ravel(), bins=b)
            for b in (64, 61)}


def _plot(phi_d, psi_d, phi_o, psi_o, frame_ps: float, path: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from compscope.analysis import basin_indicator, ramachandran_histogram

    fig, ax = plt.subplots(1, 3, figsize=(13, 4))
    for a, (p, s, title) in zip(ax[:2], ((phi_d, psi_d, "dense engine"), (phi_o, psi_o, "OpenMM"))):
        h = ramachandran_histogram(p.ravel(), s.ravel(), 64)
        f = np.where(h > 0, -np.log(np.where(h > 0, h, 1.0)), np.nan)
        im = a.imshow((f - np.nanmin(f)).T, origin="lower", extent=[-180, 180, -180, 180], cmap="viridis",
                      vmax=8)
        a.set(xlabel="phi (deg)", ylabel="psi (deg)", title=f"{title}: {p.size * frame_ps / 1000:.0f} ns")
    fig.colorbar(im, ax=ax[:2], label="free energy (kT)")
    ind = basin_indicator(phi_d).reshape(phi_d.shape)
    t = np.arange(phi_d.shape[1]) * frame_ps / 1000
    ax[2].plot(t, 100 * ind.mean(0), lw=0.8, label="dense, mean over replicas")
    ind_o = basin_indicator(phi_o).reshape(phi_o.shape)
    ax[2].axhline(100 * ind_o.mean(), color="k", ls="--", lw=1, label="OpenMM, all frames")
    ax[2].set(xlabel="time in each replica (ns)", ylabel="slow basin 0 < phi < 2.2 (%)",
              title="slow-basin population")
    ax[2].legend(fontsize=8)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return str(path)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dense", type=Path, required=True,
                    help="the dense reference file (while it runs: the same path; its <file>.dense/ folder is read)")
    ap.add_argument("--openmm", type=Path, required=True,
                    help="an OpenMM-engine sample in the reference layout: `compscope md reference` (MD) or "
                         "`benchmarks.ala2_remd_starts write` (300 K frames of replica exchange)")
    ap.add_argument("--equilibrate-ps", type=float, default=20.0, help="dropped from a run folder's frames")
    ap.add_argument("--ns-per-day", type=float, default=None,
                    help="dense engine ns/day per core (default: md_obc_numba.json's 500-replica rate)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="md_reference_dense")
    args = ap.parse_args(argv)

    phi_d, psi_d, meta = read_dense(args.dense, args.equilibrate_ps)
    complete = meta["complete"]
    phi_o, psi_o, meta_o = read_reference(args.openmm)
    frame = meta["frame_ps"]
    rate = args.ns_per_day
    if rate is None:
        rows = json.loads((RESULTS / "md_obc_numba.json").read_text())["dense_md"]
        rate = max(rows, key=lambda r: r["replicas"])["ns_per_day_all_replicas_cpu"]
    rng = np.random.default_rng(args.seed)
    n_o = phi_o.size * meta_o["frame_ps"] / 1000  # ns of the OpenMM reference
    per_rep_ns = phi_d.shape[1] * frame / 1000
    k = max(1, min(phi_d.shape[0] // 2, int(round(n_o / per_rep_ns))))  # dense replicas of the OpenMM size
    pick = rng.permutation(phi_d.shape[0])
    noise = _js(phi_d[pick[:k]], psi_d[pick[:k]], phi_d[pick[k:2 * k]], psi_d[pick[k:2 * k]])
    # the OpenMM sample's own noise: its even against its odd groups (replicas, or blocks of replica-exchange runs)
    self_noise = _js(phi_o[0::2], psi_o[0::2], phi_o[1::2], psi_o[1::2]) if len(phi_o) > 1 else None
    slow = _slow(phi_d, frame)
    cpu_s = phi_d.size * frame / 1000 / rate * 86400.0
    slow["cpu_s_at_measured_rate"] = cpu_s
    slow["ess_two_state_per_cpu_s"] = slow["ess_two_state"] / cpu_s
    slow["ess_first_zero_per_cpu_s"] = slow["ess_first_zero"] / cpu_s
    png = _plot(phi_d, psi_d, phi_o, psi_o, frame, RESULTS / f"{args.name}.png")
    payload = {
        "complete": complete, "dense": str(args.dense), "openmm": str(args.openmm),
        "dense_size": {"replicas": int(phi_d.shape[0]), "ns_per_replica": per_rep_ns,
                       "total_ns": phi_d.size * frame / 1000, "frames": int(phi_d.size)},
        "openmm_size": {"replicas": int(phi_o.shape[0]), "total_ns": n_o, "frames": int(phi_o.size)},
        "populations": {"dense": _populations(phi_d, psi_d), "openmm": _populations(phi_o, psi_o)},
        "slow_basin_dense": slow, "slow_basin_openmm": _slow(phi_o, meta_o["frame_ps"]),
        "ramachandran_dense_vs_openmm": _js(phi_d, psi_d, phi_o, psi_o),
        "ramachandran_noise_at_openmm_size": {**noise, "replicas_each": k},
        "ramachandran_openmm_halves": self_noise, "dense_starts": meta.get("starts"),
        "dense_ns_per_day_per_core": rate, "png": png,
        "notes": ["dense: flexible X-H bonds, hydrogens 3.024 amu (repartitioned), BAOAB 2 fs; OpenMM: H bonds rigid "
                  "(LangevinMiddle 2 fs): the same potential and temperature, positions sampled from the same "
                  "Boltzmann distribution up to the bond constraints",
                  "standard errors over replicas treat every replica (or replica-exchange block) as an independent "
                  "run; the dense replicas start from evenly spaced frames of the file in dense_starts (20 ps "
                  "equilibration dropped), so the first-half vs second-half populations show how far 5 ns relax a "
                  "start-frame bias",
                  "ramachandran_openmm_halves: JS between the even and the odd groups of the OpenMM sample, its own "
                  "noise at half its size; for a replica-exchange sample (decorrelated by the exchanges) it is the "
                  "fairer noise scale than ramachandran_noise_at_openmm_size, which counts only its simulated ns",
                  "the slow basin's ESS estimators need transitions: with few entries and exits (counted here) "
                  "both the first-zero and the batch-means ESS are set by the chains' length, not by the physics, "
                  "and are upper bounds"],
    }
    print(json.dumps({k: payload[k] for k in ("dense_size", "populations", "slow_basin_dense",
                                              "ramachandran_dense_vs_openmm", "ramachandran_noise_at_openmm_size")},
                     indent=1, default=float))
    print(write_result(args.name, payload, seed=args.seed))


if __name__ == "__main__":
    main()
