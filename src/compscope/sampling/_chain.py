"""A resumable large-step chain run: :class:`LargeStepMH` cycles written to one HDF5 file, killed and resumed bitwise.

:func:`run_chain` runs ``n_cycles`` cycles of every chain and keeps every ``thin``-th state after ``burn_in``
cycles. With ``out`` it writes ``chain.h5`` (layout below) and a checkpoint beside it (``chain.h5.ckpt``: chain
state, RNG state, counters; written to a temporary file and renamed, so a kill never leaves half a checkpoint).
A resumed run truncates the file to the last checkpoint and replays from there: its file is **bitwise identical**
to an uninterrupted run with the same seed (tested). The settings that decide the samples (target, sampler,
chains, seed, burn-in, thinning, dtype) must not change on resume; ``n_cycles`` may grow.

HDF5 layout::

    /                 attrs: format "compscope-chain/1", config (JSON), exact (bool; False = exploration mode),
                      system, n_kept, cycles_done, wall_s (sampling seconds over all sessions), and the counters
                      mh_steps, accepted, proposals, n_nonfinite, local_accepted (summed over chains)
    /positions        (n_kept, n_chains, n_particles, dim) float32/float64, the target's length unit (Å for
                      molecules)
    /energy           (n_kept, n_chains) kT
    /cycle            (n_kept,) cycle index of each kept state
    /wall_s           (n_kept,) sampling seconds (all sessions) when the state was reached
    /accepted         (n_kept, n_chains) cumulative accepted MH steps of each chain at that state
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from compscope.errors import ResumeError, RunExistsError

from ._errors import SamplingInputError
from ._files import open_h5
from ._largestep import LargeStepMH, LargeStepState
from ._targets import Target, check_positions

__all__ = ["CHAIN_FORMAT", "ChainResult", "run_chain", "read_chain", "read_chain_config", "sample_chain", "SYSTEMS"]

log = logging.getLogger(__name__)

CHAIN_FORMAT = "compscope-chain/1"
_COUNTERS = ("mh_steps", "accepted", "proposals", "n_nonfinite", "local_accepted")
_SAFE = ("n_cycles", "checkpoint_every")


@dataclass
class ChainResult:
    """What :func:`run_chain` returns: the kept states (from the file when ``out`` was given) and counters.

    Shapes: positions (n_kept, n_chains, n, dim); energy (n_kept, n_chains); acceptance (n_chains,)."""

    positions: np.ndarray
    energy: np.ndarray
    acceptance: np.ndarray
    counters: dict
    wall_s: float
    exact: bool
    path: Path | None = None


def _ckpt_path(out: Path) -> Path:
    return out.with_name(out.name + ".ckpt")


def run_chain(target: Target, x0: torch.Tensor, sampler: LargeStepMH, n_cycles: int, *, burn_in: int = 0,
              thin: int = 1, seed: int = 0, out: str | Path | None = None, resume: bool = False,
              checkpoint_every: int = 100, system: str | None = None,
              progress: Callable[[int, int, LargeStepState], None] | None = None) -> ChainResult:
    """Run ``len(x0)`` chains for ``n_cycles`` cycles of ``sampler``.

    Args:
        target: the Boltzmann density.
        x0: initial positions (n_chains, n_particles, dim).
        sampler: a :class:`LargeStepMH`.
        n_cycles: total cycles per chain (burn-in included); may grow on resume.
        burn_in: cycles whose states are not kept (MALA's step size is adapted during them).
        thin: keep every ``thin``-th state after burn-in.
        seed: of the one ``torch.Generator`` behind every random number.
        out: the chain file (``.h5``); None keeps everything in memory.
        resume: continue the chain in ``out`` (refused if it holds another system or other settings).
        checkpoint_every: cycles between checkpoints (kept states are flushed then).
        system: a name stored in the file and checked on resume (e.g. ``alanine-dipeptide``).
        progress: called as ``progress(cycle, n_cycles, state)`` after every cycle (progress bars).
    """
    if n_cycles < 1 or burn_in < 0 or thin < 1 or checkpoint_every < 1 or burn_in >= n_cycles:
        raise SamplingInputError(f"need n_cycles >= 1, 0 <= burn_in < n_cycles, thin >= 1, checkpoint_every >= 1; "
                                 f"got {n_cycles}, {burn_in}, {thin}, {checkpoint_every}",
                                 hint="e.g. --steps 1000 with burn_in=100")
    x0 = check_positions(x0, target.n_particles, target.dim, "initial positions")
    gen = torch.Generator().manual_seed(int(seed))
    config = {"format": CHAIN_FORMAT, "system": system, "target": target.config(), "sampler": sampler.config(),
              "n_chains": len(x0), "n_particles": target.n_particles, "dim": target.dim,
              "dtype": str(x0.dtype).replace("torch.", ""), "seed": int(seed), "burn_in": int(burn_in),
              "thin": int(thin), "n_cycles": int(n_cycles), "checkpoint_every": int(checkpoint_every)}
    h5 = None
    state, cycle0, n_kept, wall0 = None, 0, 0, 0.0
    if out is not None:
        out = Path(out)
        ck = _ckpt_path(out)
        if resume:
            state, cycle0, n_kept, wall0 = _resume(out, ck, config, gen)
        elif out.exists() or ck.exists():
            raise RunExistsError(f"{out} already exists", hint="pass --resume to continue it, or choose another --out")
        h5 = _open(out, config, x0, n_kept, fresh=not resume)
    if state is None:
        state = sampler.init(target, x0)
    buf: dict[str, list] = {"positions": [], "energy": [], "cycle": [], "wall_s": [], "accepted": []}
    t0 = time.perf_counter()
    stop = n_cycles

    def flush(cycle: int) -> None:
        nonlocal n_kept
        if h5 is None:
            return
        if buf["positions"]:
            n = n_kept + len(buf["positions"])
            for key, vals in buf.items():
                h5[key].resize(n, axis=0)
                h5[key][n_kept:n] = np.stack(vals)
                vals.clear()
            n_kept = n
        wall = wall0 + time.perf_counter() - t0
        _attrs(h5, state, n_kept, cycle, wall)
        h5.flush()
        tmp = ck.with_name(ck.name + ".tmp")
        torch.save({"state": state.as_dict(), "rng": gen.get_state(), "cycle": cycle, "n_kept": n_kept,
                    "wall_s": wall}, tmp)
        os.replace(tmp, ck)

    try:
        for cycle in range(cycle0, stop):
            before = state.local_accepted.sum().item()
            state = sampler.step(target, state, gen)
            if cycle < burn_in and sampler.n_local:
                done = (state.local_accepted.sum().item() - before) / (sampler.n_local * len(state.x))
                sampler.adapt_local(state, done)
            elif cycle >= burn_in and (cycle - burn_in + 1) % thin == 0:
                buf["positions"].append(state.x.numpy().copy())
                buf["energy"].append(state.energy.numpy().copy())
                buf["cycle"].append(cycle + 1)
                buf["wall_s"].append(wall0 + time.perf_counter() - t0)
                buf["accepted"].append(state.accepted.numpy().copy())
            if progress is not None:
                progress(cycle + 1, n_cycles, state)
            if (cycle + 1) % checkpoint_every == 0:
                flush(cycle + 1)
        flush(stop)
        wall = wall0 + time.perf_counter() - t0
        if h5 is not None:
            pos, en = h5["positions"][:], h5["energy"][:]
        else:
            pos = np.stack(buf["positions"]) if buf["positions"] else np.zeros((0,) + tuple(x0.shape))
            en = np.stack(buf["energy"]) if buf["energy"] else np.zeros((0, len(x0)))
    finally:
        if h5 is not None:
            h5.close()
    counters = {k: int(getattr(state, k).sum()) for k in _COUNTERS} | {"cycles": stop}
    return ChainResult(pos, en, state.acceptance.numpy(), counters, wall, sampler.exact, out)


def _resume(out: Path, ck: Path, config: dict, gen: torch.Generator):
    from compscope.train import check_unchanged

    if not ck.exists() or not out.exists():
        raise ResumeError(f"--resume: no chain to resume at {out} (no {ck.name})",
                          hint="run once without --resume first")
    saved = read_chain_config(out)
    if saved.get("system") != config["system"]:
        raise ResumeError(f"{out} holds a chain of {saved.get('system')!r}, not {config['system']!r}",
                          hint="resume it with the system it was started with, or choose another --out")
    flat = lambda d: {k: json.dumps(v, sort_keys=True) for k, v in d.items()}  # noqa: E731
    check_unchanged(flat(saved), flat(config), safe=_SAFE, where=str(out))
    c = torch.load(ck, weights_only=False)
    gen.set_state(c["rng"])
    return LargeStepState(**c["state"]), int(c["cycle"]), int(c["n_kept"]), float(c["wall_s"])


def _open(path: Path, config: dict, x0: torch.Tensor, n_kept: int, fresh: bool):
    import h5py

    if fresh:
        path.parent.mkdir(parents=True, exist_ok=True)
        h5 = h5py.File(path, "w")
        dt = np.float32 if x0.dtype == torch.float32 else np.float64
        b, n, d = x0.shape
        h5.create_dataset("positions", (0, b, n, d), maxshape=(None, b, n, d), dtype=dt, chunks=(1, b, n, d))
        h5.create_dataset("energy", (0, b), maxshape=(None, b), dtype=dt)
        h5.create_dataset("cycle", (0,), maxshape=(None,), dtype=np.int64)
        h5.create_dataset("wall_s", (0,), maxshape=(None,), dtype=np.float64)
        h5.create_dataset("accepted", (0, b), maxshape=(None, b), dtype=np.int64)
        h5.attrs["format"] = CHAIN_FORMAT
        h5.attrs["config"] = json.dumps(config, sort_keys=True)
        h5.attrs["exact"] = bool(config["sampler"].get("exact", True))
        h5.attrs["system"] = str(config["system"])
        return h5
    h5 = h5py.File(path, "a")
    for key in ("positions", "energy", "cycle", "wall_s", "accepted"):
        h5[key].resize(n_kept, axis=0)  # drop states written after the last checkpoint
    h5.attrs["config"] = json.dumps(config, sort_keys=True)
    return h5


def _attrs(h5, state: LargeStepState, n_kept: int, cycle: int, wall: float) -> None:
    h5.attrs["n_kept"] = n_kept
    h5.attrs["cycles_done"] = cycle
    h5.attrs["wall_s"] = wall
    for k in _COUNTERS:
        h5.attrs[k] = int(getattr(state, k).sum())


def read_chain_config(path: str | Path) -> dict:
    """The config stored in a chain file (refuses files of another format)."""
    with open_h5(path, "pass a file written by `compscope sample chain`", CHAIN_FORMAT) as h5:
        return json.loads(h5.attrs["config"])


def read_chain(path: str | Path, system: str | None = None) -> dict:
    """Positions, energies and metadata of a chain file; ``system`` (if given) must match the file's."""
    import h5py

    cfg = read_chain_config(path)
    if system is not None and cfg.get("system") != system:
        raise SamplingInputError(f"{path} is a chain of {cfg.get('system')!r}, not {system!r}",
                                 hint="compare chains of the same system")
    with h5py.File(path, "r") as h5:
        out = {k: h5[k][:] for k in ("positions", "energy", "cycle", "wall_s", "accepted")}
        out["attrs"] = {k: (v.item() if hasattr(v, "item") else v) for k, v in h5.attrs.items() if k != "config"}
    out["config"] = cfg
    return out


#: the systems of ``compscope sample chain``: name -> the solvent of its amber14 target (a kernel is trained for one
#: of them: its ``system`` must match the chain's)
SYSTEMS = {"alanine-dipeptide": "vacuum", "alanine-dipeptide-obc": "obc"}


def sample_chain(model: str | Path, system: str, n_cycles: int, n_chains: int, out: str | Path, *,
                 n_proposals: int = 16, n_local: int = 0, local_step_size: float = 1e-4, burn_in: int = 0,
                 thin: int = 1, seed: int = 0, resume: bool = False, checkpoint_every: int = 50,
                 metropolize: bool = True, platform: str = "Reference", local: dict | None = None,
                 reuse_draws: bool = True,
                 progress: Callable[[int, int, LargeStepState], None] | None = None) -> ChainResult:
    """``compscope sample chain``: the large-step sampler of ``model`` on ``system``, written to ``out``.

    ``model`` is a learned transition kernel (``model.pt`` or run folder of
    :func:`compscope.sampling.train_transition`, or a torsion kernel of :func:`train_torsion_kernel`; MH with the
    learned proposal) or a Boltzmann-generator flow
    (run folder or ``.ckpt`` of ``compscope sample train``; independence MH). Every chain starts from the
    committed alanine-dipeptide structure. ``platform``: the target's (``Reference``, ``CPU`` or ``numba``, see
    :class:`~compscope.sampling.OpenMMTarget`); ``local``: the local sampler's arguments (default
    ``{"step_size": local_step_size}``, MALA; ``{"name": "hmc", "step_size": ..., "n_leapfrog": ...}`` for HMC);
    ``reuse_draws``: see :class:`LargeStepMH`.
    """
    from ._largestep import ConditionalFlowProposal, IndependenceProposal
    from ._openmm_target import alanine_dipeptide
    from ._transition import load_transition

    if system not in SYSTEMS:
        raise SamplingInputError(f"unknown system {system!r}", hint=f"choose one of {', '.join(SYSTEMS)}")
    target = alanine_dipeptide(platform=platform, solvent=SYSTEMS[system])
    p = Path(model)
    kernel_file = p / "model.pt" if p.is_dir() else p
    doc = _kernel_doc(kernel_file)
    if doc is not None and doc.get("format") == "compscope-torsion-kernel/1":
        from ._torsion_train import load_torsion_kernel

        proposal, _ = load_torsion_kernel(kernel_file, system=system, n_atoms=target.n_particles, doc=doc)
    elif kernel_file.suffix == ".pt" and kernel_file.exists():
        kernel, _ = load_transition(kernel_file, system=system, n_atoms=target.n_particles, doc=doc)
        proposal = ConditionalFlowProposal(kernel)
    else:
        from ._draw import load_flow

        flow, info = load_flow(p, dtype=torch.float64)
        if getattr(flow, "n_particles", None) != target.n_particles:
            raise SamplingInputError(f"{p} is a flow of {getattr(flow, 'n_particles', '?')} particles, not the "
                                     f"{target.n_particles} atoms of {system}", hint="use a model of this molecule")
        proposal = IndependenceProposal(flow)
    from compscope.integrations.openmm_systems import alanine_dipeptide_system

    pdb, _ = alanine_dipeptide_system()
    x = torch.as_tensor(np.asarray(pdb.getPositions(asNumpy=True)._value) * 10.0, dtype=torch.float64)
    x0 = (x - x.mean(0))[None].repeat(int(n_chains), 1, 1)
    sampler = LargeStepMH(proposal, n_proposals=n_proposals, n_local=n_local,
                          local=dict(local) if local is not None else {"step_size": local_step_size},
                          metropolize=metropolize, reuse_draws=reuse_draws)
    return run_chain(target, x0, sampler, n_cycles, burn_in=burn_in, thin=thin, seed=seed, out=out, resume=resume,
                     checkpoint_every=checkpoint_every, system=system, progress=progress)


def _kernel_doc(path: Path) -> dict | None:
    """The content of a kernel's ``model.pt``, read once (None when it is not a readable ``.pt`` dict: the loaders
    then report the file with their own message)."""
    if path.suffix != ".pt" or not path.is_file():
        return None
    try:
        doc = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # noqa: BLE001 - the loaders report unreadable files with their own message
        return None
    return doc if isinstance(doc, dict) else None
