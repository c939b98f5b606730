"""``compscope sample compare chain.h5 md.h5``: a large-step chain against MD (or another chain) on alanine dipeptide.

Both files are reduced to per-trajectory series of the backbone dihedrals (chain files: every chain is a
trajectory, positions -> phi/psi by :func:`compscope.analysis.backbone_dihedrals`; ``compscope md reference``
files: every replica, their stored phi/psi) and scored with :mod:`compscope.analysis`: ESS of the slow basin
indicator ``1[0 <= phi < 2.2]``, of phi and of TIC0 (TICA fitted on the second file; first-zero and batch-means
estimators), ESS per second of the run's wall-clock (the chain file's sampling seconds; the MD replicas' summed
``wall_s``), entries into the slow basin, time to first visit of every basin, basin populations, and the JS
divergence of the 64 x 64 Ramachandran histograms and the phi free-energy profile error of the first file against
the second. Writes ``compare.json``, ``ess_per_s.png`` (bar chart), ``ramachandran.png`` (side by side) and
``phi_profile.png`` (overlay).

A chain file made in exploration mode (no Metropolis correction) is reported, and labelled, as not exact.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from compscope.analysis import (
    ALANINE_DIPEPTIDE_BASINS,
    backbone_dihedrals,
    basin_entries,
    basin_indicator,
    basin_labels,
    basin_populations,
    ess_batch_means,
    ess_first_zero,
    first_visit_times,
    free_energy_profile_1d,
    profile_error,
    ramachandran_histogram,
    ramachandran_js,
)

from ._errors import SamplingInputError
from ._files import open_h5

__all__ = ["load_dihedral_series", "compare_runs"]


def load_dihedral_series(path: str | Path) -> dict:
    """``{phi (n_traj, T), psi (n_traj, T), wall_s, kind, exact, label}`` of a chain or MD reference file.

    MD replicas of different lengths are cut to the shortest (ESS estimators pool equal-length chains)."""
    path = Path(path)
    h5 = open_h5(path, "pass files of `compscope sample chain` or `compscope md reference`")
    with h5:
        if h5.attrs.get("format") == "compscope-chain/1":
            from ._chain import read_chain

            c = read_chain(path)
            from ._chain import SYSTEMS

            if c["config"].get("system") not in SYSTEMS:
                raise SamplingInputError(f"{path} is a chain of {c['config'].get('system')!r}",
                                         hint=f"compare chains of {', '.join(SYSTEMS)}")
            pos = c["positions"]  # (T, chains, n, 3)
            if len(pos) < 4:
                raise SamplingInputError(f"{path} holds only {len(pos)} kept states", hint="run the chain longer")
            t, b = pos.shape[:2]
            phi, psi = backbone_dihedrals(pos.reshape(t * b, *pos.shape[2:]))
            return {"phi": phi.reshape(t, b).T, "psi": psi.reshape(t, b).T, "wall_s": float(c["attrs"]["wall_s"]),
                    "kind": "chain", "exact": bool(c["attrs"].get("exact", True)),
                    "acceptance": c["attrs"]["accepted"] / max(c["attrs"]["mh_steps"], 1),
                    "energy_evaluations": int(c["attrs"]["proposals"]), "label": path.stem}
        if "replicas" in h5:
            reps = h5["replicas"]
            n = min(len(reps[r]["phi"]) for r in reps)
            phi = np.stack([reps[r]["phi"][:n] for r in reps])
            psi = np.stack([reps[r]["psi"][:n] for r in reps])
            wall = float(sum(reps[r].attrs.get("wall_s", math.nan) for r in reps))
            return {"phi": phi, "psi": psi, "wall_s": wall, "kind": "md", "exact": True, "acceptance": None,
                    "energy_evaluations": int(sum(reps[r].attrs.get("steps", 0) for r in reps)),
                    "label": path.stem}
    raise SamplingInputError(f"{path} is neither a compscope chain file nor an MD reference file",
                             hint="pass files of `compscope sample chain` or `compscope md reference`")


def _metrics(s: dict) -> dict:
    ind = basin_indicator(s["phi"])
    lab = basin_labels(s["phi"], s["psi"])
    nb = len(ALANINE_DIPEPTIDE_BASINS)
    first = first_visit_times(lab, nb)  # in saved frames
    ess = {"basin_first_zero": ess_first_zero(ind), "basin_batch_means": ess_batch_means(ind),
           "phi_first_zero": ess_first_zero(np.sin(s["phi"])), "psi_first_zero": ess_first_zero(np.sin(s["psi"]))}
    wall = s["wall_s"]
    missed = int(np.isinf(first).any(1).sum())
    return {"label": s["label"], "kind": s["kind"], "exact": s["exact"], "n_trajectories": int(s["phi"].shape[0]),
            "frames_per_trajectory": int(s["phi"].shape[1]), "wall_s": wall, "acceptance": s["acceptance"],
            "energy_evaluations": s["energy_evaluations"], "ess": ess,
            # MD: steps (one force evaluation each); chains: proposals evaluated (MALA steps not included)
            "energy_evaluations_per_basin_ess": (s["energy_evaluations"] / ess["basin_first_zero"]
                                                 if ess["basin_first_zero"] > 0 else math.inf),
            "ess_per_s": {k: (v / wall if wall and wall > 0 else math.nan) for k, v in ess.items()},
            "slow_basin_entries": int(basin_entries(lab, nb - 1).sum()),
            "populations": dict(zip([b.name for b in ALANINE_DIPEPTIDE_BASINS], basin_populations(lab, nb).tolist())),
            "first_visit_frames": {b.name: float(np.median(first[:, k])) for k, b in
                                   enumerate(ALANINE_DIPEPTIDE_BASINS)},
            "trajectories_missing_a_basin": missed}


def _features(s: dict) -> list[np.ndarray]:
    return [np.stack([np.cos(p), np.sin(p), np.cos(q), np.sin(q)], -1) for p, q in zip(s["phi"], s["psi"])]


def _tic0_ess(a: dict, b: dict, res: dict) -> dict:
    """ESS (and ESS/s) of TIC0, TICA fitted on the second run (cos/sin of phi and psi; lag T/4, at most 10)."""
    from compscope.analysis import AnalysisInputError, fit_tica

    lag = int(max(1, min(10, b["phi"].shape[1] // 4)))
    try:
        model = fit_tica(_features(b), lagtime=lag, dim=1)
    except AnalysisInputError as err:  # deeptime missing, or trajectories too short
        return {"note": str(err)}
    out = {"lag_frames": lag, "timescale_frames": float(model.timescales[0])}
    for key, s in (("first", a), ("second", b)):
        tic = np.stack([t[:, 0] for t in model.transform(_features(s))])
        ess = ess_first_zero(tic)
        res[key]["ess"]["tic0_first_zero"] = ess
        wall = s["wall_s"]
        res[key]["ess_per_s"]["tic0_first_zero"] = ess / wall if wall and wall > 0 else math.nan
    return out


def compare_runs(first: str | Path, second: str | Path, out: str | Path | None = None, bins: int = 64) -> dict:
    """Metrics of both files, the JS divergence and phi-profile error of ``first`` against ``second``; plots."""
    a, b = load_dihedral_series(first), load_dihedral_series(second)
    res = {"first": _metrics(a), "second": _metrics(b)}
    res["tic0"] = _tic0_ess(a, b, res)
    res["ramachandran_js"] = ramachandran_js(a["phi"], a["psi"], b["phi"], b["psi"], bins=bins)
    pa = free_energy_profile_1d(a["phi"], bins=bins, periodic=True)
    pb = free_energy_profile_1d(b["phi"], bins=bins, periodic=True)
    res["phi_profile_error_kT"] = profile_error(pa, pb)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "compare.json").write_text(json.dumps(res, indent=2, default=float))
        _plots(a, b, pa, pb, res, out, bins)
    return res


def _plots(a, b, pa, pb, res, out: Path, bins: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    la, lb = (f"{s['label']}{'' if s['exact'] else ' (exploration, NOT exact)'}" for s in (a, b))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    keys = ["basin_first_zero", "basin_batch_means", "phi_first_zero"]
    x = np.arange(len(keys))
    for k, (name, lab) in enumerate((("first", la), ("second", lb))):
        ax.bar(x + 0.4 * k - 0.2, [res[name]["ess_per_s"][q] for q in keys], 0.4, label=lab)
    ax.set_xticks(x, keys)
    ax.set_yscale("log")
    ax.set_ylabel("ESS / s")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "ess_per_s.png", dpi=120)
    plt.close(fig)
    fig, axes = plt.subplots(1, 2, figsize=(8, 4), sharey=True)
    for ax, s, lab in zip(axes, (a, b), (la, lb)):
        h = ramachandran_histogram(s["phi"], s["psi"], bins)
        with np.errstate(divide="ignore"):
            f = -np.log(h)
        ax.imshow((f - f[np.isfinite(f)].min()).T, origin="lower", extent=[-np.pi, np.pi, -np.pi, np.pi],
                  vmax=8, cmap="viridis")
        ax.set_title(lab, fontsize=8)
        ax.set_xlabel("phi (rad)")
    axes[0].set_ylabel("psi (rad)")
    fig.suptitle(f"Ramachandran -log p (kT); JS = {res['ramachandran_js']:.4f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "ramachandran.png", dpi=120)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for p, lab in ((pa, la), (pb, lb)):
        ax.plot(p["centres"], p["free_energy"], label=lab)
    ax.set_xlabel("phi (rad)")
    ax.set_ylabel("F (kT)")
    ax.set_ylim(0, 12)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "phi_profile.png", dpi=120)
    plt.close(fig)
