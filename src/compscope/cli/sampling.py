"""`compscope sample ...` verbs: Boltzmann sampling targets, reference MCMC samples (and, later, flows).

``compscope sample train CONFIG [--out DIR] [--resume] [--set key=value ...]`` trains an E(n)-equivariant flow by
maximum likelihood (:func:`compscope.sampling.train_flow`, configs in ``configs/sampling/``);
``compscope sample draw MODEL --n N --out samples.h5 [--batch B] [--seed S]`` draws from a trained flow (positions,
exact log q, energy in kT, log importance weights; :func:`compscope.sampling.draw_samples`);
``compscope sample report samples.h5 [--reference dw4/test] [--out DIR]`` prints ESS, mean energies and energy
Wasserstein distances (flow and reweighted vs reference) and plots the energy histograms (alanine dipeptide:
also basin populations, Ramachandran JS divergence and plots against a replica-exchange ``reference.h5``)
(:func:`compscope.sampling.report_samples`);
``compscope sample reference dw4|lj13|lj55 [--out DIR] [--resume] [--set key=value ...]`` runs the reference MCMC
(:func:`compscope.sampling.make_reference`); ``--set`` keys are its arguments (``n_samples``, ``n_chains``,
``burn_in``, ``thin``, ``seed``, ``dtype``, ``checkpoint_every``, ``sampler.name``, ``sampler.step_size``, ...).
``compscope sample reference ala2 ...`` runs the alanine-dipeptide replica exchange
(:func:`compscope.sampling.make_ala2_reference`; keys: ``n_runs``, ``n_iterations``, ``n_replicas``, ``t_max``, ...)
and prints the C7ax/alpha_L basin population with its error bars.
``compscope sample reference ala2-biased ...`` runs MD under a frozen well-tempered-metadynamics bias on (phi, psi)
and reweights it exactly (:func:`compscope.sampling.make_ala2_biased_reference`; keys: ``run_ns``, ``n_runs``,
``metad_ns``, ``bias_factor``, ...; progress line, ``--resume``).
``compscope sample kernel CONFIG [--out DIR] [--resume] [--set key=value ...]`` trains a transition kernel on MD
pairs (``kind: torsion``: phi/psi pivot moves from a learned torus density; ``kind: cartesian``: the coupling flow;
:func:`compscope.sampling.train_kernel`, configs in ``configs/sampling/``);
``compscope sample chain MODEL --system alanine-dipeptide --steps N --chains C --out chain.h5 [--resume]`` runs the
exact large-step sampler (:func:`compscope.sampling.sample_chain`); ``compscope sample compare chain.h5 md.h5``
scores it against MD (:func:`compscope.sampling.compare_runs`).
Errors (with their hints) are printed by the root command group (:class:`compscope.cli._common.CompscopeGroup`).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from compscope.errors import ConfigError

from ._common import SET_OPTION_HELP, load_config

app = typer.Typer(help="Boltzmann sampling: targets in kT, reference MCMC (MALA/HMC), Boltzmann generators.",
                  no_args_is_help=True)


@app.command()
def reference(
    target: str = typer.Argument(..., help="dw4, lj13, lj55 (MCMC), ala2 (alanine dipeptide, replica exchange) or "
                                           "ala2-biased (alanine dipeptide, MD under a fixed metadynamics bias, "
                                           "reweighted)"),
    out: Path | None = typer.Option(None, "--out", help="run folder (default: <data dir>/sampling/<name>_...)"),
    resume: bool = typer.Option(False, "--resume", help="continue an interrupted run in the output folder "
                                                        "(refuses changed settings other than n_steps)"),
    overrides: list[str] | None = typer.Option(None, "--set", help=SET_OPTION_HELP.replace(
        "trainer.max_epochs=5", "n_samples=100000")),
) -> None:
    """Reference samples by long MCMC, cached in HDF5; prints the file and a summary (energies in kT).

    Examples: --set n_samples=100000, --set sampler.name=hmc --set sampler.n_leapfrog=10, --set seed=1;
    ala2: --set n_iterations=40000, --set n_runs=4; ala2-biased: --set run_ns=200 (extends on --resume).
    """
    import logging

    from compscope.sampling import REFERENCE_DEFAULTS, get_target, make_reference, read_reference
    from compscope.train import accepted_arguments

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if target.lower() == "ala2":
        _reference_ala2(out, resume, overrides)
        return
    if target.lower() == "ala2-biased":
        _reference_ala2_biased(out, resume, overrides)
        return
    get_target(target)  # unknown names fail here, with the list of known ones
    cfg = load_config(None, overrides)
    allowed = accepted_arguments(make_reference)[0] - {"target", "out", "resume"}
    unknown = sorted(set(cfg) - allowed)
    if unknown:
        raise ConfigError(f"--set: unknown key(s) {unknown}", hint=f"allowed keys: {', '.join(sorted(allowed))}")
    if isinstance(cfg.get("sampler"), dict) and "name" not in cfg["sampler"]:
        cfg["sampler"] = {**REFERENCE_DEFAULTS[target.lower()]["sampler"], **cfg["sampler"]}
    path = make_reference(target, out=out, resume=resume, **cfg)
    ref = read_reference(path)
    e = ref["energy"].double()
    summary = {"file": str(path), "n_samples": len(e), "energy_mean_kT": round(e.mean().item(), 4),
               "energy_sd_kT": round(e.std().item(), 4), "acceptance": round(float(ref["attrs"]["acceptance"]), 4),
               "step_size": float(ref["attrs"]["step_size"])}
    typer.echo(json.dumps(summary, indent=2))


@app.command()
def train(
    config: Path = typer.Argument(..., help="YAML with the sections flow, data, module, trainer (configs/sampling/)"),
    resume: bool = typer.Option(False, "--resume", help="continue the run in the output folder (refuses changed "
                                                        "settings other than budgets and hardware)"),
    out: Path | None = typer.Option(None, "--out", help="run folder (default: the config's out)"),
    overrides: list[str] | None = typer.Option(None, "--set", help=SET_OPTION_HELP),
) -> None:
    """Train an E(n)-equivariant flow (E-NF) by maximum likelihood; prints the best checkpoint.

    Examples: --set module.lr=3e-4, --set data.n_train=10000, --set trainer.max_epochs=5.
    """
    from compscope.sampling import train_flow

    result = train_flow(load_config(config, overrides), out=out, resume=resume)
    typer.echo(result.best)


@app.command()
def kernel(
    config: Path = typer.Argument(..., help="YAML with kind, data (md, lag_ps), kernel, trainer "
                                            "(configs/sampling/torsion_kernel.yaml)"),
    resume: bool = typer.Option(False, "--resume", help="continue the run in the output folder"),
    out: Path | None = typer.Option(None, "--out", help="run folder (default: the config's out)"),
    overrides: list[str] | None = typer.Option(None, "--set", help=SET_OPTION_HELP),
) -> None:
    """Train a transition kernel for `sample chain` on MD pairs at lag tau; prints its model.pt.

    Examples: --set data.md=md.h5, --set data.lag_ps=100, --set kernel.uniform=0.1, --set trainer.max_epochs=50.
    """
    from compscope.sampling import train_kernel

    _, result = train_kernel(load_config(config, overrides), out=None if out is None else str(out), resume=resume)
    typer.echo(result.run.model)


def _reference_ala2(out: Path | None, resume: bool, overrides: list[str] | None) -> None:
    from compscope.sampling import ALA2_REFERENCE_DEFAULTS, make_ala2_reference

    cfg = load_config(None, overrides)
    unknown = sorted(set(cfg) - set(ALA2_REFERENCE_DEFAULTS))
    if unknown:
        raise ConfigError(f"--set: unknown key(s) {unknown}",
                          hint=f"allowed keys: {', '.join(sorted(ALA2_REFERENCE_DEFAULTS))}")
    path, summary = make_ala2_reference(out, resume=resume, **cfg)
    typer.echo(json.dumps({"file": str(path), **summary}, indent=2))


def _reference_ala2_biased(out: Path | None, resume: bool, overrides: list[str] | None) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from compscope.sampling import ALA2_BIASED_DEFAULTS, basin_population, make_ala2_biased_reference

    cfg = load_config(None, overrides)
    unknown = sorted(set(cfg) - set(ALA2_BIASED_DEFAULTS))
    if unknown:
        raise ConfigError(f"--set: unknown key(s) {unknown}",
                          hint=f"allowed keys: {', '.join(sorted(ALA2_BIASED_DEFAULTS))}")
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  TextColumn("{task.fields[info]}"), transient=True) as bar:
        task = bar.add_task("ala2-biased chunks", total=None, info="")

        def progress(done, total, message):
            bar.update(task, completed=done, total=total, info=message)

        path, summary = make_ala2_biased_reference(out, resume=resume, progress=progress, **cfg)
    from compscope.sampling import ala2_biased_reference

    ref = ala2_biased_reference(path)
    pop = basin_population(ref["phi"], ref["run"], weights=ref["weight"])
    summary["basin_population"] = {k: pop[k] for k in ("population", "error_blocks", "error_runs", "per_run")}
    typer.echo(json.dumps({"file": str(path), **summary}, indent=2))


@app.command()
def draw(
    model: Path = typer.Argument(..., help="run folder of `compscope sample train` (or one of its .ckpt files)"),
    n: int = typer.Option(10000, "--n", help="number of samples"),
    out: Path = typer.Option(Path("samples.h5"), "--out", help="HDF5 file to write"),
    batch: int = typer.Option(1000, "--batch", help="samples per batch (memory: exact divergence per batch)"),
    seed: int = typer.Option(0, "--seed", help="seed of the base draws"),
    n_steps: int | None = typer.Option(None, "--n-steps", help="RK4 steps (default: the flow's n_steps)"),
    dtype: str = typer.Option("float64", "--dtype", help="float64 (default: accurate log q) or float32"),
) -> None:
    """Draw N samples with their exact log-density, energy (kT) and log importance weight into an HDF5 file
    (threads: ``compscope --threads N sample draw ...``)."""
    import torch
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from compscope.sampling import draw_samples, load_flow, write_samples

    if dtype not in ("float32", "float64"):
        raise ConfigError(f"--dtype {dtype}: use float32 or float64")
    flow, info = load_flow(model, dtype=getattr(torch, dtype))
    with Progress(TextColumn("drawing"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeRemainingColumn(), transient=True) as bar:
        task = bar.add_task("draw", total=n)
        res = draw_samples(flow, info["target"], n, batch_size=batch, seed=seed, n_steps=n_steps,
                           progress=lambda k: bar.update(task, completed=k))
    attrs = {"target": info["target"], "model": info["checkpoint"], "flow": info["flow"], "seed": seed,
             "n_steps": n_steps or flow.n_steps, "dtype": dtype, "seconds": res["seconds"],
             "samples_per_s": res["samples_per_s"], "n_invalid": res["n_invalid"],
             "mirrored_fraction": res["mirrored_fraction"], "epoch": info["epoch"]}
    path = write_samples(out, res, attrs)
    from compscope.sampling import kish_ess

    typer.echo(json.dumps({"file": str(path), "n": n, "n_invalid": res["n_invalid"],
                           "ess": round(kish_ess(res["log_w"]), 5), "samples_per_s": round(res["samples_per_s"], 1)},
                          indent=2))


@app.command()
def report(
    samples: Path = typer.Argument(..., help="samples.h5 of `compscope sample draw`"),
    reference: str | None = typer.Option(None, "--reference", help="reference samples: a shipped split "
                                         "(dw4/test, split:lj13/test), a reference.h5 or a .npy of frames"),
    out: Path | None = typer.Option(None, "--out", help="folder for report.json and energy_hist.png"),
    bins: int = typer.Option(60, "--bins", help="histogram bins"),
) -> None:
    """ESS, mean energies and energy Wasserstein distances of flow samples (raw and reweighted) vs a reference."""
    import torch
    from rich.console import Console
    from rich.table import Table

    from compscope.sampling import get_target, read_samples, report_samples

    data = read_samples(samples)
    target = data["attrs"].get("target")
    ref = None
    if reference is not None:
        from compscope.sampling import load_positions

        source = reference if reference.endswith((".h5", ".npy")) or reference.startswith("split:") \
            else f"split:{reference}"
        x = load_positions(source, target)
        with torch.no_grad():
            ref = get_target(target).energy(x).double().numpy()
    angles = None
    if target == "ala2" and reference is not None and reference.endswith(".h5"):
        from compscope.sampling import ala2_reference_angles

        angles = ala2_reference_angles(reference)  # every replica reweighted by MBAR when the file has them
    rep = report_samples(data, ref, out=out, bins=bins, angles_reference=angles)

    def pm(d):
        return f"{d['mean']:.3f} ± {d['se']:.3f}"

    table = Table(title=f"{samples.name}: {target}, {rep['n']} samples")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    rows = [("Kish ESS", f"{100 * rep['ess']:.2f} %"), ("invalid (NaN/inf) samples", str(rep["n_invalid"])),
            ("mean energy, flow (kT)", pm(rep["energy_flow"])),
            ("mean energy, reweighted (kT)", pm(rep["energy_reweighted"]))]
    if ref is not None:
        rows += [("mean energy, reference (kT)", pm(rep["energy_reference"])),
                 ("energy W1 flow / reweighted (kT)", f"{rep['w1_flow']:.3f} / {rep['w1_reweighted']:.3f}"),
                 ("energy W2 flow / reweighted (kT)", f"{rep['w2_flow']:.3f} / {rep['w2_reweighted']:.3f}")]
    if "ramachandran" in rep:
        ra = rep["ramachandran"]

        def pct(d):
            return f"{100 * d['mean']:.2f} ± {100 * d['se']:.2f} %"

        rows += [("basin 0<phi<2.2, flow", pct(ra["basin_flow"])),
                 ("basin 0<phi<2.2, reweighted", pct(ra["basin_reweighted"]))]
        if "js_flow" in ra:
            rows += [("basin 0<phi<2.2, reference", pct(ra["basin_reference"])),
                     ("Ramachandran JS 64x64 flow / reweighted", f"{ra['js_flow']:.4f} / {ra['js_reweighted']:.4f}")]
    if "samples_per_s" in data["attrs"]:
        rows.append(("samples/s (draw)", f"{data['attrs']['samples_per_s']:.1f}"))
    for r in rows:
        table.add_row(*r)
    Console().print(table)
    if out is not None:
        typer.echo(f"wrote {out / 'report.json'} and {', '.join(rep['plots'])}")


@app.command()
def chain(
    model: Path = typer.Argument(..., help="a learned transition kernel (model.pt / run folder of train_transition) "
                                           "or a Boltzmann-generator flow (run folder / .ckpt of `sample train`)"),
    system: str = typer.Option("alanine-dipeptide", "--system",
                                help="alanine-dipeptide (vacuum) or alanine-dipeptide-obc (implicit solvent)"),
    steps: int = typer.Option(..., "--steps", help="cycles per chain (each: --proposals MH steps + --local MALA)"),
    chains: int = typer.Option(8, "--chains", help="independent chains, run as one batch"),
    out: Path = typer.Option(..., "--out", help="the chain file (.h5); its checkpoint is <out>.ckpt"),
    resume: bool = typer.Option(False, "--resume", help="continue the chain in --out (--steps may grow)"),
    proposals: int = typer.Option(16, "--proposals", help="proposals drawn at once per state (first accepted)"),
    local: int = typer.Option(0, "--local", help="local moves (MALA or HMC) after the MH steps of every cycle"),
    local_step: float = typer.Option(1e-4, "--local-step", help="MALA step size (Å^2/kT) or HMC leapfrog step"),
    local_sampler: str = typer.Option("mala", "--local-sampler", help="the local move: mala or hmc"),
    local_leapfrog: int = typer.Option(10, "--local-leapfrog", help="leapfrog steps per HMC move"),
    burn_in: int = typer.Option(0, "--burn-in", help="cycles not kept"),
    thin: int = typer.Option(1, "--thin", help="keep every THIN-th cycle"),
    seed: int = typer.Option(0, "--seed", help="random seed"),
    explore: bool = typer.Option(False, "--explore", help="exploration mode: no Metropolis correction, NOT exact"),
    platform: str = typer.Option("Reference", "--platform",
                                 help="energy: OpenMM platform (Reference, CPU) or numba (same System, batched)"),
    checkpoint_every: int = typer.Option(50, "--checkpoint-every", help="cycles between checkpoints"),
) -> None:
    """Exact large-step sampling: MH with a learned kernel (or a flow) as proposal; progress with live acceptance."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from compscope.sampling import sample_chain

    if explore:
        typer.echo("EXPLORATION MODE: no Metropolis correction; the chain does NOT sample the Boltzmann density",
                   err=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  TextColumn("{task.fields[info]}")) as bar:
        task = bar.add_task("chain", total=steps, info="")

        def progress(cycle, total, state):
            acc = state.accepted.sum().item() / max(state.mh_steps.sum().item(), 1)
            bar.update(task, completed=cycle, info=f"acceptance {100 * acc:.2f} %, "
                                                   f"NaN/inf proposals {int(state.n_nonfinite.sum())}")

        local_args = ({"name": "hmc", "step_size": local_step, "n_leapfrog": local_leapfrog}
                      if local_sampler.lower() == "hmc" else {"name": local_sampler, "step_size": local_step})
        res = sample_chain(model, system, steps, chains, out, n_proposals=proposals, n_local=local,
                           local_step_size=local_step, burn_in=burn_in, thin=thin, seed=seed, resume=resume,
                           checkpoint_every=checkpoint_every, metropolize=not explore, platform=platform,
                           local=local_args, progress=progress)
    c = res.counters
    typer.echo(f"wrote {out}: {res.positions.shape[0]} states x {res.positions.shape[1]} chains, acceptance "
               f"{100 * c['accepted'] / max(c['mh_steps'], 1):.2f} % of {c['mh_steps']} MH steps, "
               f"{c['n_nonfinite']} NaN/inf proposals rejected, {res.wall_s:.1f} s"
               + ("" if res.exact else " [EXPLORATION MODE: not exact]"))


@app.command()
def compare(
    first: Path = typer.Argument(..., help="a chain file of `compscope sample chain` (or an MD reference file)"),
    second: Path = typer.Argument(..., help="an MD reference file of `compscope md reference` (or a chain file)"),
    out: Path | None = typer.Option(None, "--out", help="folder for compare.json and the plots"),
    bins: int = typer.Option(64, "--bins", help="Ramachandran / phi-profile bins per axis"),
) -> None:
    """Table of ESS, ESS/s, basin visits and JS divergence of two runs; ESS/s bars, Ramachandran, phi profile."""
    from rich.console import Console
    from rich.table import Table

    from compscope.sampling import compare_runs

    res = compare_runs(first, second, out=out, bins=bins)
    a, b = res["first"], res["second"]
    table = Table(title=f"{first.name} vs {second.name} (alanine dipeptide)")
    table.add_column("quantity")
    for s in (a, b):
        table.add_column(s["label"] + ("" if s["exact"] else " (NOT exact)"), justify="right")

    def row(name, f):
        table.add_row(name, *(f(s) for s in (a, b)))

    row("trajectories x frames", lambda s: f"{s['n_trajectories']} x {s['frames_per_trajectory']}")
    row("wall-clock (s)", lambda s: f"{s['wall_s']:.1f}")
    row("acceptance", lambda s: "-" if s["acceptance"] is None else f"{100 * s['acceptance']:.2f} %")
    row("ESS basin (first zero / batch means)",
        lambda s: f"{s['ess']['basin_first_zero']:.1f} / {s['ess']['basin_batch_means']:.1f}")
    row("ESS/s basin indicator", lambda s: f"{s['ess_per_s']['basin_first_zero']:.3g}")
    row("ESS/s sin(phi)", lambda s: f"{s['ess_per_s']['phi_first_zero']:.3g}")
    if "tic0_first_zero" in a["ess_per_s"]:
        row("ESS/s TIC0", lambda s: f"{s['ess_per_s']['tic0_first_zero']:.3g}")
    row("energy evaluations per basin ESS", lambda s: f"{s['energy_evaluations_per_basin_ess']:.3g}")
    row("entries into C7ax/alpha_L", lambda s: str(s["slow_basin_entries"]))
    row("trajectories missing a basin", lambda s: str(s["trajectories_missing_a_basin"]))
    for name in a["populations"]:
        row(f"population {name}", lambda s, n=name: f"{100 * s['populations'][n]:.2f} %")
    Console().print(table)
    e = res["phi_profile_error_kT"]
    typer.echo(f"Ramachandran JS (64x64) = {res['ramachandran_js']:.4f}; phi profile error: RMS {e['rmse']:.3f} kT, "
               f"max {e['max_abs']:.3f} kT")
    if out is not None:
        typer.echo(f"wrote {out / 'compare.json'}, ess_per_s.png, ramachandran.png, phi_profile.png")
