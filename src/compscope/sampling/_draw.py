"""Drawing from a trained flow and reporting on the draws: ``compscope sample draw`` / ``compscope sample report``.

:func:`load_flow` reads what :func:`compscope.sampling.train_flow` writes (a run folder, or one of its Lightning
checkpoints: ``checkpoints/best.ckpt`` first, the weights validation saw, else ``last.ckpt``), with the shared
artifact conventions of :mod:`compscope.models.artifacts` (extension check, ``ArtifactError`` /
``ArtifactNotFoundError``, ``torch.load(weights_only=True)``); no Lightning import is needed to sample.

:func:`draw_samples` pushes base draws through the flow in batches with the **exact** divergence and evaluates the
target: ``positions``, ``log_q``, ``energy`` (kT) and ``log_w = -energy - log_q`` (:mod:`._estimators`: a
configuration with a non-finite coordinate, energy or log q gets ``log_w = -inf`` and is counted).
:func:`write_samples` / :func:`read_samples` keep them in HDF5; :func:`report_samples` summarises a file against
reference samples (ESS, mean energies, energy W1/W2 of the flow and of the reweighted flow) and plots the energy
histograms.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from ._errors import SamplingInputError
from ._estimators import energy_histogram, importance_weights, reweighted_mean, wasserstein_1d
from ._files import open_h5
from ._flow import EquivariantCNF, fold_chirality
from ._targets import get_target

__all__ = ["load_flow", "draw_samples", "write_samples", "read_samples", "report_samples", "SAMPLE_FORMAT"]

SAMPLE_FORMAT = "compscope-samples/1"
_HINT = "pass a run folder of `compscope sample train` or its checkpoints/best.ckpt / last.ckpt"


def _run_config(ckpt: Path) -> dict:
    for folder in (ckpt.parent, ckpt.parent.parent):
        f = folder / "config.yaml"
        if f.exists():
            return yaml.safe_load(f.read_text()) or {}
    return {}


def load_flow(path: str | Path, dtype: torch.dtype | None = None) -> tuple[EquivariantCNF, dict[str, Any]]:
    """The flow of a training run, in eval mode, and its info ``{target, checkpoint, flow, module, epoch,
    global_step}``.

    Args:
        path: a run folder (its ``checkpoints/best.ckpt``, else ``last.ckpt``) or a ``.ckpt``.
        dtype: cast to this dtype (default: the saved one).

    Raises:
        ArtifactNotFoundError: no such file, or a run folder without checkpoints (not trained yet).
        ArtifactError: not a checkpoint of a sampling flow (another task's model, a damaged file).
    """
    from compscope.models.artifacts import ArtifactError, ArtifactNotFoundError, artifact_kind

    p = Path(path)
    if p.is_dir():
        found = [p / "checkpoints" / n for n in ("best.ckpt", "last.ckpt") if (p / "checkpoints" / n).exists()]
        if not found:
            raise ArtifactNotFoundError(f"{p} holds no trained flow (no checkpoints/best.ckpt or last.ckpt)",
                                        hint="train it first: compscope sample train CONFIG --out " + str(p))
        p = found[0]
    if not p.exists():
        raise ArtifactNotFoundError(f"model file {p} not found", hint=_HINT)
    if artifact_kind(p) != "checkpoint":
        raise ArtifactError(f"{p}: a sampling flow is loaded from a Lightning checkpoint (.ckpt) or a run folder",
                            hint=_HINT)
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for foreign or damaged files
        raise ArtifactError(f"{p}: not a readable checkpoint ({type(exc).__name__}: {exc})", hint=_HINT) from exc
    hp = ckpt.get("hyper_parameters", {}) if isinstance(ckpt, dict) else {}
    if not isinstance(hp.get("flow"), dict) or "state_dict" not in ckpt:
        raise ArtifactError(f"{p}: this checkpoint holds no sampling flow (no `flow` hyper-parameter)",
                            hint=_HINT + "; models of other tasks load with their own commands")
    target = hp.get("target") or (_run_config(p).get("data") or {}).get("target")
    if target is None:
        raise ArtifactError(f"{p}: the checkpoint does not name its target and no config.yaml is beside it",
                            hint="keep the checkpoint inside its run folder")
    t = get_target(target)
    flow_kwargs = dict(hp["flow"])
    if (flow_kwargs.get("n_particles"), flow_kwargs.get("dim")) != (t.n_particles, t.dim):
        raise ArtifactError(f"{p}: the flow is for {flow_kwargs.get('n_particles')} x {flow_kwargs.get('dim')} "
                            f"positions but its target {target} has {t.n_particles} x {t.dim}", hint=_HINT)
    state = {k[len("flow."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("flow.")}
    saved = next((v.dtype for v in state.values() if v.is_floating_point()), torch.float32)
    try:
        flow = EquivariantCNF(**flow_kwargs).to(saved)
        flow.load_state_dict(state)
    except (TypeError, RuntimeError) as err:
        raise ArtifactError(f"{p}: the saved weights do not fit the saved flow arguments ({err})",
                            hint="the checkpoint was written by an incompatible compscope version") from err
    info = {"target": str(target), "checkpoint": str(p), "flow": flow_kwargs,
            "module": {k: v for k, v in hp.items() if k != "flow"}, "epoch": ckpt.get("epoch"),
            "global_step": ckpt.get("global_step")}
    return flow.to(dtype or saved).eval(), info


ALA2_L_IMPROPER = ((6, 7, 9, 8), -1.0)
"""Improper dihedral N-CA-C-CB of alanine dipeptide and its sign for L-alanine (the committed PDB: -2.14 rad)."""


def draw_samples(flow: EquivariantCNF, target, n: int, batch_size: int = 1000, seed: int = 0,
                 n_steps: int | None = None, progress: Callable[[int], None] | None = None,
                 div_nodes: int | None = 0) -> dict[str, Any]:
    """``n`` flow samples with exact ``log q``, their energies (kT) and log weights, and the timing.

    Returns ``{positions (n, p, d), log_q (n,), energy (n,), log_w (n,), n_invalid, seconds, samples_per_s,
    mirrored_fraction}`` (numpy, float64). ``progress(k)`` is called with the number of samples done after each
    batch. Alanine dipeptide (target ``ala2``): the E(n) flow's density is reflection-symmetric, so D-alanine
    samples are mirrored onto L-alanine and every ``log q`` gains log 2 (:func:`fold_chirality`;
    ``mirrored_fraction`` is the share that was mirrored, about one half). ``div_nodes``: Gauss-Legendre nodes of
    the exact divergence along the RK4 path (:meth:`EquivariantCNF.integrate`; 0: the flow's default, None: the
    divergence at every RK4 stage). ``cpu_seconds`` is this process's CPU time for the draws.
    """
    if n < 1 or batch_size < 1:
        raise SamplingInputError(f"n={n}, batch_size={batch_size}: both must be positive", hint="e.g. --n 10000")
    t = get_target(target) if isinstance(target, str) else target
    g = torch.Generator().manual_seed(int(seed))
    xs, lqs, us = [], [], []
    t0, c0 = time.perf_counter(), time.process_time()
    done, mirrored = 0, 0.0
    while done < n:
        b = min(batch_size, n - done)
        x, log_q = flow.sample(b, n_steps=n_steps, generator=g, div_nodes=div_nodes)
        if getattr(t, "name", None) == "ala2":  # an O(n)-invariant flow: fold D- onto L-alanine, log q + log 2
            x, log_q, frac = fold_chirality(x, log_q, *ALA2_L_IMPROPER)
            mirrored += frac * b
        ok = torch.isfinite(x).reshape(b, -1).all(1)
        u = torch.full((b,), float("nan"), dtype=x.dtype)
        if ok.any():
            with torch.no_grad():
                u[ok] = t.energy(x[ok]).to(x.dtype)
        xs.append(x.double().numpy())
        lqs.append(log_q.double().numpy())
        us.append(u.double().numpy())
        done += b
        if progress is not None:
            progress(done)
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    u, lq = np.concatenate(us), np.concatenate(lqs)
    iw = importance_weights(u, lq)
    return {"positions": np.concatenate(xs), "log_q": lq, "energy": u, "log_w": iw.log_w,
            "n_invalid": iw.n_invalid, "seconds": seconds, "samples_per_s": n / seconds,
            "cpu_seconds": cpu_seconds, "samples_per_cpu_s": n / max(cpu_seconds, 1e-9),
            "mirrored_fraction": mirrored / n}


def write_samples(path: str | Path, samples: dict[str, Any], attrs: dict[str, Any]) -> Path:
    """HDF5 with datasets ``positions``, ``log_q``, ``energy``, ``log_w`` and JSON-encoded attributes (written to
    a temporary file first, then moved into place)."""
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as h5:
        for k in ("positions", "log_q", "energy", "log_w"):
            h5.create_dataset(k, data=np.asarray(samples[k], dtype=np.float64))
        h5.attrs["format"] = SAMPLE_FORMAT
        for k, v in attrs.items():
            h5.attrs[k] = json.dumps(v)
    tmp.replace(path)
    return path


def read_samples(path: str | Path) -> dict[str, Any]:
    """``{positions, log_q, energy, log_w, attrs}`` of a file of :func:`write_samples`."""
    with open_h5(path, f"pass the samples.h5 written by `compscope sample draw MODEL --out {Path(path).name}`",
                 SAMPLE_FORMAT) as h5:
        out = {k: h5[k][:] for k in ("positions", "log_q", "energy", "log_w")}
        out["attrs"] = {k: json.loads(v) for k, v in h5.attrs.items() if k != "format"}
    return out


def _mean(values, log_w=None) -> dict[str, float]:
    m, se = reweighted_mean(values, log_w)
    return {"mean": m, "se": se}


def report_samples(samples: dict[str, Any], reference: np.ndarray | None = None, out: str | Path | None = None,
                   bins: int = 60, angles_reference: dict | None = None) -> dict[str, Any]:
    """Summary of flow samples (:func:`read_samples`), against reference energies (kT) when given.

    Returns ``n``, ``n_invalid``, ``ess`` (Kish, fraction of all proposals), ``energy_flow`` / ``energy_reweighted``
    / ``energy_reference`` (mean and standard error), ``w1_flow``, ``w2_flow``, ``w1_reweighted``, ``w2_reweighted``
    (energy distances to the reference, kT) and, with ``out``, ``plots`` (``energy_hist.png``) and ``report.json``
    written there. Alanine-dipeptide samples (target ``ala2``) also get ``ramachandran``
    (:func:`compscope.sampling.ramachandran_report`: basin populations flow / reweighted / reference, JS divergence
    of the 64 x 64 Ramachandran histograms, ``ramachandran.png`` and ``phi_profile.png``) against
    ``angles_reference`` (``{phi, psi, log_w, label, basin}`` of :func:`compscope.sampling.ala2_reference_angles`).
    """
    u, lw = np.asarray(samples["energy"]), np.asarray(samples["log_w"])
    ok = np.isfinite(lw)
    from ._estimators import kish_ess

    rep: dict[str, Any] = {"n": int(len(u)), "n_invalid": int((~ok).sum()), "ess": kish_ess(lw),
                           "energy_flow": _mean(u[np.isfinite(u)]), "energy_reweighted": _mean(u, lw)}
    if reference is not None:
        ref = np.asarray(reference, dtype=np.float64)
        rep["energy_reference"] = _mean(ref)
        uf = u[np.isfinite(u)]
        rep.update({"w1_flow": wasserstein_1d(uf, ref, 1), "w2_flow": wasserstein_1d(uf, ref, 2),
                    "w1_reweighted": wasserstein_1d(u, ref, 1, log_w_a=lw),
                    "w2_reweighted": wasserstein_1d(u, ref, 2, log_w_a=lw)})
    rama = None
    if samples.get("attrs", {}).get("target") == "ala2":
        from ._openmm_target import ALA2_PHI, ALA2_PSI, dihedral_angles
        from ._ramachandran import ramachandran_report

        pos = np.asarray(samples["positions"], dtype=np.float64)
        a = angles_reference or {}
        rama = ramachandran_report(dihedral_angles(pos, ALA2_PHI), dihedral_angles(pos, ALA2_PSI), lw,
                                   a.get("phi"), a.get("psi"), a.get("log_w"), ref_basin=a.get("basin"), out=out,
                                   ref_label=a.get("label", "reference"))
        rep["ramachandran"] = {k: v for k, v in rama.items() if k != "plots"}
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        rep["plots"] = [str(_energy_plot(out / "energy_hist.png", u, lw, None if reference is None else ref, bins))]
        rep["plots"] += rama["plots"] if rama is not None else []
        (out / "report.json").write_text(json.dumps(rep, indent=2))
    return rep


def _energy_plot(path: Path, u: np.ndarray, lw: np.ndarray, ref: np.ndarray | None, bins: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finite = u[np.isfinite(u)]
    pool = finite if ref is None else np.concatenate([finite, ref])
    lo, hi = np.quantile(pool, [0.001, 0.995])
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for label, (edges, dens), style in (
            ("flow", energy_histogram(u, bins, (lo, hi)), dict(color="C0", ls="--")),
            ("flow reweighted", energy_histogram(u, bins, (lo, hi), log_w=lw), dict(color="C1")),
            *((("reference", energy_histogram(ref, bins, (lo, hi)), dict(color="k", lw=1.2)),) if ref is not None
              else ())):
        ax.stairs(dens, edges, label=label, **style)
    ax.set_xlabel("energy u (kT)")
    ax.set_ylabel("density")
    ax.legend(frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
