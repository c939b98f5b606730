"""`compscope sample ...` verbs: Boltzmann sampling targets, reference MCMC samples (and, later, flows).

``compscope sample train CONFIG [--out DIR] [--resume] [--set key=value ...]`` trains an E(n)-equivariant flow by
maximum likelihood (:func:`compscope.sampling.train_flow`, configs in ``configs/sampling/``);
``compscope sample reference dw4|lj13|lj55 [--out DIR] [--resume] [--set key=value ...]`` runs the reference MCMC
(:func:`compscope.sampling.make_reference`); ``--set`` keys are its arguments (``n_samples``, ``n_chains``,
``burn_in``, ``thin``, ``seed``, ``dtype``, ``checkpoint_every``, ``sampler.name``, ``sampler.step_size``, ...).
``compscope sample reference ala2 ...`` runs the alanine-dipeptide replica exchange
(:func:`compscope.sampling.make_ala2_reference`; keys: ``n_runs``, ``n_iterations``, ``n_replicas``, ``t_max``, ...)
and prints the C7ax/alpha_L basin population with its error bars.
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
    target: str = typer.Argument(..., help="dw4, lj13, lj55 (MCMC) or ala2 (alanine dipeptide, replica exchange)"),
    out: Path | None = typer.Option(None, "--out", help="run folder (default: <data dir>/sampling/<name>_...)"),
    resume: bool = typer.Option(False, "--resume", help="continue an interrupted run in the output folder "
                                                        "(refuses changed settings other than n_steps)"),
    overrides: list[str] | None = typer.Option(None, "--set", help=SET_OPTION_HELP.replace(
        "trainer.max_epochs=5", "n_samples=100000")),
) -> None:
    """Reference samples by long MCMC, cached in HDF5; prints the file and a summary (energies in kT).

    Examples: --set n_samples=100000, --set sampler.name=hmc --set sampler.n_leapfrog=10, --set seed=1;
    ala2: --set n_iterations=40000, --set n_runs=4.
    """
    import logging

    from compscope.sampling import REFERENCE_DEFAULTS, get_target, make_reference, read_reference
    from compscope.train import accepted_arguments

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if target.lower() == "ala2":
        _reference_ala2(out, resume, overrides)
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


def _reference_ala2(out: Path | None, resume: bool, overrides: list[str] | None) -> None:
    from compscope.sampling import ALA2_REFERENCE_DEFAULTS, make_ala2_reference

    cfg = load_config(None, overrides)
    unknown = sorted(set(cfg) - set(ALA2_REFERENCE_DEFAULTS))
    if unknown:
        raise ConfigError(f"--set: unknown key(s) {unknown}",
                          hint=f"allowed keys: {', '.join(sorted(ALA2_REFERENCE_DEFAULTS))}")
    path, summary = make_ala2_reference(out, resume=resume, **cfg)
    typer.echo(json.dumps({"file": str(path), **summary}, indent=2))
