"""Alanine-dipeptide 300 K reference by replica exchange: C7ax/alpha_L basin population, exchange rates, cost.

Reads (default) or runs the replica-exchange reference of :func:`compscope.sampling.make_ala2_reference`
(openmmtools parallel tempering, amber14 vacuum, unconstrained, 8 replicas 300-1000 K, independent runs as Ray
tasks) in its cache folder ``<data dir>/sampling/ala2_remd_seed<S>`` and reports the population of the basin
0 < phi < 2.2 rad at 300 K with error bars from blocks and from the independent runs, the basin population at
every temperature, the neighbour exchange acceptance, the number of samples, simulated time and wall time, and the
command that resumes the run. Reading works while the run is still going (the numbers are then "so far").

    python -m benchmarks.sampling_ala2_reference                 # read the cached run as it stands
    python -m benchmarks.sampling_ala2_reference --run           # run (or resume) it to the end first: hours
    python -m benchmarks.sampling_ala2_reference --burn-in 100   # a look at a young run

Writes ``benchmarks/results/sampling_ala2_reference.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if not __package__:  # run as `python benchmarks/<name>.py`: put the repository root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import RESULTS, WORK, write_result  # noqa: E402

RESUME = "nice -n 15 compscope sample reference ala2 --resume"
"""The command that continues the cached run (same settings; ``--set n_iterations=N`` extends it)."""


def main(argv: list[str] | None = None) -> Path:
    import json

    from compscope.sampling import (
        ALA2_REFERENCE_DEFAULTS,
        ala2_reference_dir,
        assemble_ala2_reference,
        make_ala2_reference,
    )

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None, help="run folder (default: the cache folder of --seed)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run", action="store_true", help="run or resume the reference to the end before reading")
    p.add_argument("--burn-in", type=int, default=None, help="override the configured burn-in when reading")
    p.add_argument("--n-blocks", type=int, default=10, help="blocks per run for the block error bar")
    a = p.parse_args(argv)
    out = a.out or ala2_reference_dir(a.seed)
    if a.run:
        make_ala2_reference(out, resume=(out / "config.yaml").exists(), seed=a.seed)
    look = WORK / "sampling" / "ala2_reference_look.h5"
    look.parent.mkdir(parents=True, exist_ok=True)
    _, s = assemble_ala2_reference(out, n_blocks=a.n_blocks, burn_in=a.burn_in, path=look)
    cfg = {**ALA2_REFERENCE_DEFAULTS, **_config(out)}
    done, target = sum(s["iterations_per_run"]), int(cfg["n_iterations"]) * int(cfg["n_runs"])
    wall = sum(s["wall_s_per_run"])
    s_per_it = wall / max(done, 1)  # CPU-seconds per iteration of one run (all replicas), on this machine
    err = s["basin_error_blocks"] if s["basin_error_runs"] is None else max(s["basin_error_blocks"],
                                                                            s["basin_error_runs"])
    payload = {
        "system": "alanine dipeptide (ACE-ALA-NME), amber14, vacuum, no constraints, 300 K",
        "method": "openmmtools ParallelTemperingSampler (Langevin, all-pairs Gibbs swaps), "
                  f"{cfg['n_replicas']} replicas {cfg['t_min']}-{cfg['t_max']} K geometric, "
                  f"{cfg['steps_per_iteration']} x {cfg['timestep_fs']} fs per iteration, {cfg['n_runs']} independent "
                  "runs as Ray tasks",
        "run_folder": str(out),
        "config": cfg,
        "basin": "0 < phi < 2.2 rad (C7ax / alpha_L)",
        "basin_population": s["basin_population"],
        "basin_population_error": err,
        "basin_population_error_blocks": s["basin_error_blocks"],
        "basin_population_error_runs": s["basin_error_runs"],
        "basin_population_per_run": s["basin_population_per_run"],
        "basin_population_per_temperature": dict(zip([str(t) for t in s["temperatures_K"]],
                                                     s["basin_population_per_temperature"])),
        "cis_peptide_fraction_per_temperature": dict(zip([str(t) for t in s["temperatures_K"]],
                                                         s["cis_fraction_per_temperature"])),
        # MBAR over every replica reweighted to 300 K (pymbar): the second estimator, with its own error bars
        "mbar_all_replicas": {k: v for k, v in s["mbar"].items()},
        "phi_profile_block_error_kT": s["phi_profile_error_kT"],
        "basin_entries_300K": s["basin_entries_300K"],
        "n_effective_basin_blocks": s["n_effective"],
        # effective samples of the basin indicator from the quoted (larger) error, and their cost: the number the
        # flow's wall time per effective sample is compared with (issue 20)
        "n_effective_basin": (s["basin_population"] * (1 - s["basin_population"]) / err**2 if err and err == err
                              else None),
        "cpu_s_per_effective_basin_sample": (wall * err**2 / (s["basin_population"] * (1 - s["basin_population"]))
                                             if err and err == err and 0 < s["basin_population"] < 1 else None),
        "n_samples_300K": s["n_samples"],
        "burn_in_iterations": s["burn_in"],
        "iterations_per_run": s["iterations_per_run"],
        "iterations_target_per_run": s["iterations_target"],
        "complete": s["complete"],
        "temperatures_K": s["temperatures_K"],
        "neighbour_exchange_acceptance": s["neighbour_acceptance"],
        "simulated_ns_300K": s["simulated_ns_300K"],
        "simulated_ns_all_replicas": s["simulated_ns_all_replicas"],
        "wall_s_per_run": s["wall_s_per_run"],
        "cpu_s_per_iteration": s_per_it,
        "cpu_h_to_finish": (target - done) * s_per_it / 3600.0,
        # the error falls as 1/sqrt(time): CPU hours (all runs) for a 10 % relative error on the population
        "cpu_h_for_10pct_error": (wall / 3600.0 * (err / (0.1 * s["basin_population"])) ** 2
                                  if s["basin_population"] > 0 and err == err else None),
        "energy_mean_kT": s["energy_mean_kT"],
        "energy_sd_kT": s["energy_sd_kT"],
        "resume_command": RESUME,
        "notes": [
            "mbar_all_replicas: every replica's frames reweighted to 300 K by MBAR; its block error is solved "
            "again per block (no gain over the 300 K replica alone while the basin crossings, slow at every "
            "temperature, dominate the error); phi_profile_block_error_kT: block standard error of F(phi) on the "
            "36 bins populated by both estimators",
            "error bar: the larger of the block standard error (each run cut into n_blocks consecutive blocks) "
            "and the standard error of the independent runs' populations",
            "wall time is the sum over runs of the time spent in openmmtools iterations (each run one core, niced "
            "to 15 on a shared 2-core machine: timings are pessimistic)",
        ] + ([] if s["complete"] else ["run still going or interrupted: numbers so far; resume with resume_command"]),
    }
    payload["figure"] = str(_plot(look, RESULTS / "sampling_ala2_reference.png").relative_to(RESULTS.parents[1]))
    path = write_result("sampling_ala2_reference", payload, seed=a.seed)
    print(json.dumps({k: payload[k] for k in ("basin_population", "basin_population_error", "n_samples_300K",
                                              "iterations_per_run", "neighbour_exchange_acceptance")}, indent=1))
    return path


def _plot(h5_path: Path, png: Path) -> Path:
    """Ramachandran free energy at 300 K with the basin marked, and each run's running basin population."""
    import h5py
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with h5py.File(h5_path) as h5:
        phi, psi, run, it = h5["phi"][:], h5["psi"][:], h5["run"][:], h5["iteration"][:]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(9.5, 4))
    h, xe, ye = np.histogram2d(phi, psi, bins=60, range=[[-np.pi, np.pi], [-np.pi, np.pi]], density=True)
    with np.errstate(divide="ignore"):
        f = -np.log(h)
    f -= f[np.isfinite(f)].min()
    im = ax.pcolormesh(xe, ye, np.where(np.isfinite(f), f, np.nan).T, cmap="viridis", shading="flat")
    fig.colorbar(im, ax=ax, label="free energy (kT)")
    for v in (0.0, 2.2):
        ax.axvline(v, color="w", lw=0.8, ls="--")
    ax.set(xlabel="phi (rad)", ylabel="psi (rad)", title=f"300 K, {len(phi)} frames (replica exchange)")
    for r in np.unique(run):
        m = run == r
        ind = ((phi[m] > 0) & (phi[m] < 2.2)).astype(float)
        bx.plot(it[m], 100 * np.cumsum(ind) / np.arange(1, m.sum() + 1), label=f"run {r}")
    bx.set(xlabel="iteration (0.5 ps per replica)", ylabel="running basin population (%)",
           title="0 < phi < 2.2 rad at 300 K")
    bx.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png


def _config(out: Path) -> dict:
    import yaml

    return yaml.safe_load((out / "config.yaml").read_text())


if __name__ == "__main__":
    main()
