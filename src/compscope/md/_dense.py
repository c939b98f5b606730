"""Fast MD of many copies of one small molecule: dense (R, n, 3) tensors, one potential call per step.

:func:`simulate` moves a batched :class:`~compscope.data.AtomicGraph` through an :class:`MDState` every step: a
neighbour-list check, a pruned graph, a state object, a monitor call. For a coarse-grained molecule of a few beads
that bookkeeping costs more than the physics. :func:`simulate_dense` keeps the R replicas in ``(R, n, 3)`` tensors,
calls the potential's ``energy_forces(x)`` once per step for the whole batch (no neighbour list: potentials of this
contract see every pair of a molecule) and steps with the integrator's ``step_dense`` (the same arithmetic and
random stream as ``apply``). Everything else is the engine of :func:`simulate`: the stability monitor (called at
the end of every chunk of steps, at least every ``check_every`` steps, on an :class:`MDState` built there), the
HDF5 layout (:class:`H5Trajectory`, frames gathered in preallocated arrays and written in blocks), restart files,
``--resume`` with the same guard, the per-replica summary. The result is an :class:`MDResult` with CPU seconds
beside wall seconds.

Dense potential contract: ``energy_forces(x (B, n, 3)) -> (energy (B,), forces (B, n, 3))``, detached, in the
dtype of ``x`` (:class:`compscope.models.CGPotential` has it).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from ase import units

from ._checks import MDInputError, check_start, check_timestep
from ._integrators import Integrator, make_integrator
from ._masses import masses_digest
from ._monitors import StabilityMonitor, summary_table
from ._runner import (
    CONFIG,
    H5,
    RESTART,
    RESUME_UNSAFE,
    SUMMARY,
    WARMUP_STEPS,
    MDResult,
    _atoms_list,
    _progress,
    _restart_payload,
    _save_failed,
    init_state,
    peak_rss_gib,
)
from ._state import MDState
from ._trajectory import H5Trajectory, TrajectoryError, load_restart, save_restart

__all__ = ["simulate_dense", "supports_dense"]

log = logging.getLogger(__name__)

DEFAULT_CHECK_EVERY = 50
"""Steps between stability checks of :func:`simulate_dense` when no monitor is given (a blow-up is caught within
this many steps and the replica reset to its frame at the last passing check)."""


def supports_dense(potential) -> bool:
    """True when ``potential`` has the dense contract ``energy_forces(x (B, n, 3)) -> (energy, forces)``."""
    return callable(getattr(potential, "energy_forces", None))


def _complete_graph(graph, n: int):
    """``graph`` with every intra-molecule pair as an edge (the monitor's minimum distance sees all pairs)."""
    r = graph.num_graphs
    ii, jj = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    off = ii != jj
    base = (torch.arange(r) * n)[:, None]
    send, recv = (base + ii[off]).reshape(-1), (base + jj[off]).reshape(-1)
    order = torch.argsort(recv, stable=True)
    edge_index = torch.stack([send[order], recv[order]])
    return replace(graph, edge_index=edge_index,
                   cell_shifts=torch.zeros(edge_index.shape[1], 3, dtype=graph.positions.dtype),
                   cutoff=float("inf"))


class _Frames:
    """Preallocated frame buffers written to the HDF5 file as one block."""

    def __init__(self, size: int, n_atoms: int, n_rep: int):
        self.size, self.n = int(size), 0
        self.step = np.zeros(size, np.int64)
        self.pos = np.zeros((size, n_atoms, 3))
        self.vel = np.zeros((size, n_atoms, 3))
        self.frc = np.zeros((size, n_atoms, 3))
        self.obs = {k: np.zeros((size, n_rep)) for k in ("potential_energy", "kinetic_energy", "temperature",
                                                          "conserved_energy", "active", "volume")}

    def add(self, step: int, x, p, f, e, masses, active, removed_dof: int, conserved) -> None:
        k = self.n
        n_at = x.shape[1]
        self.step[k] = step
        self.pos[k] = x.reshape(-1, 3).double().numpy()
        self.vel[k] = (p / masses * units.fs).reshape(-1, 3).double().numpy()  # Å/fs
        self.frc[k] = f.reshape(-1, 3).double().numpy()
        act = active.reshape(-1)
        ke = (0.5 * (p * p).sum(-1) / masses[..., 0]).sum(-1).double()  # (R,)
        epot = torch.where(act, e, torch.zeros_like(e)).double()
        dof = max(3.0 * n_at - removed_dof, 1.0)
        self.obs["potential_energy"][k] = epot.numpy()
        self.obs["kinetic_energy"][k] = ke.numpy()
        self.obs["temperature"][k] = (2.0 * ke / (dof * units.kB)).numpy()
        self.obs["conserved_energy"][k] = (epot + ke).numpy() if conserved is None else conserved
        self.obs["active"][k] = act.double().numpy()
        self.n += 1

    def flush(self, h5: H5Trajectory | None, dt_fs: float) -> None:
        if h5 is not None and self.n:
            n = self.n
            h5.write_block(self.step[:n], self.step[:n] * dt_fs / 1000.0, self.pos[:n], self.vel[:n],
                           self.frc[:n], {k: v[:n] for k, v in self.obs.items()})
        self.n = 0


def simulate_dense(
    potential,
    start,
    steps: int,
    dt: float = 2.0,
    temperature: float = 300.0,
    replicas: int = 1,
    integrator: str | Integrator = "langevin",
    friction: float = 0.01,
    seed: int = 0,
    out: str | Path | None = None,
    traj_every: int = 100,
    resume: bool = False,
    monitor: StabilityMonitor | None = None,
    dtype: torch.dtype | None = None,
    progress: bool = False,
    check_inputs: bool = True,
    block_frames: int = 1000,
    flush_seconds: float = 60.0,
    initial_momenta: str = "maxwell-boltzmann",
) -> MDResult:
    """Run MD of ``replicas`` copies of one small molecule on dense tensors (module docstring).

    Args:
        potential: a module with ``energy_forces(x (B, n, 3)) -> (energy (B,), forces (B, n, 3))`` and ``cutoff``
            (only recorded in ``run.json``).
        start: an :class:`ase.Atoms` (copied ``replicas`` times), a list of them (one per replica, same atoms in
            the same order), or an extxyz path (as :func:`compscope.md.simulate`).
        steps: total number of steps (with ``resume``: the run continues up to this step).
        dt: time step, fs.
        temperature: K (initial Maxwell-Boltzmann momenta and thermostat).
        replicas: copies of a single start structure.
        integrator: ``langevin`` (BAOAB) or ``nve`` (velocity Verlet), or such an :class:`Integrator`.
        friction: Langevin friction, 1/fs.
        seed: seed of the initial momenta and of the Langevin noise (the same streams as :func:`simulate`).
        out: folder for ``trajectory.h5``, ``restart.pt``, ``run.json``, ``summary.json``.
        traj_every: steps between saved frames.
        resume: continue the run in ``out`` from its restart file.
        monitor: stability monitor (default: :class:`StabilityMonitor` with ``check_every`` =
            :data:`DEFAULT_CHECK_EVERY`); it runs at the end of every chunk of steps.
        dtype: float dtype (default: the potential's).
        progress: show a progress bar.
        check_inputs: refuse overlapping atoms/unknown elements, warn on a large ``dt``.
        block_frames: frames gathered in memory before they are written (and a restart file saved).
        flush_seconds: write the gathered frames (and a restart file) at least this often.
        initial_momenta: ``maxwell-boltzmann`` or ``atoms``.

    Returns:
        :class:`MDResult` (``cpu_s`` and ``wall_s`` of the whole call; ``ns_per_day`` per replica after the
        warm-up steps).
    """
    if not supports_dense(potential):
        raise MDInputError(f"{type(potential).__name__} has no energy_forces(x) method: the dense engine needs "
                           "potentials of one small molecule", hint="use compscope.md.simulate (any potential)")
    if steps < 0 or traj_every < 1 or block_frames < 1:
        raise MDInputError(f"need steps >= 0, traj_every >= 1 and block_frames >= 1, got {steps}, {traj_every}, "
                           f"{block_frames}")
    atoms_list, replicas = _atoms_list(start, replicas)
    n = len(atoms_list[0])
    z0 = atoms_list[0].get_atomic_numbers()
    if any(len(a) != n or (a.get_atomic_numbers() != z0).any() for a in atoms_list):
        raise MDInputError("the dense engine runs copies of one molecule: every start structure must have the same "
                           "atoms in the same order", hint="use compscope.md.simulate for different systems")
    if any(a.pbc.any() for a in atoms_list):
        raise MDInputError("the dense engine has no periodic boundaries (molecules only)",
                           hint="use compscope.md.simulate for periodic systems")
    if check_inputs:
        check_start(atoms_list[:1] if all(a is atoms_list[0] for a in atoms_list) else atoms_list, potential)
        check_timestep(dt, np.concatenate([a.get_atomic_numbers() for a in atoms_list]),
                       np.concatenate([a.get_masses() for a in atoms_list]))
    integ = integrator if isinstance(integrator, Integrator) else make_integrator(
        integrator, dt, temperature, seed=seed, **({"friction": friction} if integrator == "langevin" else {}))
    if type(integ).step_dense is Integrator.step_dense:
        integ.step_dense(None, None, None, None, None)  # raises: this integrator has no dense step
    monitor = monitor or StabilityMonitor(check_every=DEFAULT_CHECK_EVERY)
    out_dir = Path(out) if out is not None else None
    if resume and out_dir is None:
        raise MDInputError("--resume needs --out: the folder of the run to continue")

    # the start state (momenta: the same draws as compscope.md.simulate for this seed)
    state, _ = init_state(potential, atoms_list, temperature, seed, dtype, 0.0, initial_momenta,
                          evaluate_forces=False)
    dtype = state.positions.dtype
    state = state.replace(graph=_complete_graph(state.graph, n))
    cfg = {"integrator": integ.config(), "replicas": replicas,
           "atomic_numbers": [a.get_atomic_numbers().tolist() for a in atoms_list],
           "potential": type(potential).__name__, "cutoff": float(potential.cutoff), "skin": 0.0,
           "dtype": str(dtype), "engine": "dense", "masses": masses_digest(atoms_list)}
    restart = None
    if resume:
        restart = _resume(out_dir, cfg)
        state = state.replace(graph=state.graph.with_positions(restart["positions"]), momenta=restart["momenta"],
                              active=restart["active"], step=int(restart["step"]),
                              thermostat=restart["thermostat"])
        integ.set_rng_state(restart["rng"])
    else:
        state = integ.init(state)

    masses = state.masses.view(replicas, n, 1)
    integ.dense_setup(masses)

    def energy_forces(x):
        e, f = potential.energy_forces(x)
        return e.to(dtype), f.to(dtype)

    x = state.positions.detach().view(replicas, n, 3)
    p = state.momenta.detach().view(replicas, n, 3)
    act = state.active.view(replicas, 1, 1)
    e, f = energy_forces(x)
    f = torch.where(act, f, 0.0)
    if check_inputs and not (bool(torch.isfinite(e).all()) and bool(torch.isfinite(f).all())):
        raise MDInputError("the potential returns NaN/inf energies or forces for the start structure(s)",
                           hint="check the model file and the start structure")

    def to_state(x, p, f, e, act, step) -> MDState:
        return state.replace(graph=state.graph.with_positions(x.reshape(-1, 3)), momenta=p.reshape(-1, 3),
                             forces=f.reshape(-1, 3), energy=torch.where(act.view(-1), e, torch.zeros_like(e)),
                             active=act.view(-1), step=step)

    state = to_state(x, p, f, e, act, state.step)
    monitor.setup(state, integ, reference=None if restart is None else restart.get("monitor"),
                  temperature_K=temperature)
    if restart is not None and "good_positions" in restart:
        monitor.good_positions, monitor.good_momenta = restart["good_positions"], restart["good_momenta"]
        monitor.good_step = restart["good_step"]

    h5 = None
    files: dict[str, str] = {}
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / CONFIG).write_text(json.dumps(cfg, indent=1))
        h5 = _open_h5(state, integ, out_dir, resume, block_frames)
        files = {"hdf5": str(out_dir / H5), "restart": str(out_dir / RESTART)}
    frames = _Frames(min(block_frames, steps // traj_every + 2), replicas * n, replicas)

    def conserved_of(st: MDState):
        c = integ.conserved(st)
        return None if c is None else c.detach().double().numpy()

    def flush(st: MDState) -> None:
        frames.flush(h5, integ.dt_fs)
        if out_dir is not None:
            save_restart(out_dir / RESTART, _restart_payload(st, integ, monitor))

    if not resume:
        frames.add(state.step, x, p, f, e, masses, act, integ.removed_dof, conserved_of(state))
    step = start_step = state.step
    every = monitor.check_every
    warmup = min(WARMUP_STEPS, max(0, steps - start_step) // 10)
    t0, c0 = time.perf_counter(), time.process_time()
    t_steady = c_steady = None
    if warmup == 0:
        t_steady, c_steady = t0, c0
    t_flush = t_bar = t0
    use_fused = True
    with _progress(progress) as bar:
        task = bar.add_task("md", total=steps, completed=start_step, nsday=0.0, rate=0.0, rss=peak_rss_gib(),
                            stable=f"{replicas}/{replicas} stable")
        while step < steps:
            if not bool(act.any()):
                log.warning("all replicas stopped at step %d", step)
                break
            # a chunk ends at every saved frame and at every check of the monitor
            k = min(traj_every - step % traj_every, every - step % every, steps - step)
            with torch.no_grad():
                fused = _fused_steps(potential, integ, x, p, f, act, k) if use_fused else None
                use_fused = fused is not None or k < 2  # a potential that declines once declines for the run
                if fused is not None:
                    x, p, f, e = fused
                else:
                    for _ in range(k):
                        x, p, f, e = integ.step_dense(x, p, f, energy_forces, act)
            step += k
            state, new = monitor.check(to_state(x, p, f, e, act, step))
            if new:
                x = state.positions.view(replicas, n, 3)
                p, f = state.momenta.view(replicas, n, 3), state.forces.view(replicas, n, 3)
                act = state.active.view(replicas, 1, 1)
                e = state.energy
                if out_dir is not None:
                    _save_failed(out_dir, monitor, state, new, integ)
            if t_steady is None and step - start_step >= warmup:
                t_steady, c_steady = time.perf_counter(), time.process_time()
                warmup = step - start_step  # the clock of the reported speed starts at the end of a chunk
            if step % traj_every == 0 or step == steps:
                frames.add(step, x, p, f, e, masses, act, integ.removed_dof, conserved_of(state))
            now = time.perf_counter()
            if frames.n == frames.size or now - t_flush > flush_seconds:
                flush(state)
                t_flush = now
            if progress and now - t_bar > 0.5:
                t_bar = now
                el = max(now - t0, 1e-9)
                bar.update(task, completed=step, nsday=(step - start_step) * integ.dt_fs * 1e-6 / el * 86400.0,
                           rate=(step - start_step) * replicas * n / el, rss=peak_rss_gib(),
                           stable=f"{int(act.sum())}/{replicas} stable")
    state = to_state(x, p, f, e, act, step)
    flush(state)
    t_end, c_end = time.perf_counter(), time.process_time()
    if h5 is not None:
        h5.close()
    wall, cpu = t_end - t0, c_end - c0
    done = step - start_step
    if t_steady is None or done - warmup < 1:
        t_steady, c_steady, warmup = t0, c0, 0
    steady = max(t_end - t_steady, 1e-12)
    ns_day = (done - warmup) * integ.dt_fs * 1e-6 / steady * 86400.0
    rows = summary_table(replicas, step, integ.dt_fs, monitor.violations)
    result = MDResult(state=state, summary=rows, violations=list(monitor.violations), steps=step, wall_s=wall,
                      ns_per_day=ns_day, atom_steps_per_s=(done - warmup) * replicas * n / steady, out=out_dir,
                      files=files, warmup_steps=warmup,
                      ns_per_day_incl_warmup=done * integ.dt_fs * 1e-6 / max(wall, 1e-12) * 86400.0, cpu_s=cpu,
                      ns_per_day_cpu=(done - warmup) * integ.dt_fs * 1e-6 / max(c_end - c_steady, 1e-12) * 86400.0)
    if out_dir is not None:
        summary = {"steps": step, "dt_fs": integ.dt_fs, "replicas": replicas, "n_stable": result.n_stable,
                   "engine": "dense", "wall_s": wall, "cpu_s": cpu, "ns_per_day": ns_day,
                   "ns_per_day_cpu": result.ns_per_day_cpu, "atom_steps_per_s": result.atom_steps_per_s,
                   "speed_note": f"ns_per_day (per replica) and atom_steps_per_s leave out the first {warmup} steps "
                                 "(warm-up); ns_per_day_cpu divides by this process's CPU seconds",
                   "warmup_steps": warmup, "ns_per_day_incl_warmup": result.ns_per_day_incl_warmup,
                   "atoms": replicas * n, "peak_rss_gib": peak_rss_gib(), "replica_summary": rows}
        (out_dir / SUMMARY).write_text(json.dumps(summary, indent=1))
        files["summary"] = str(out_dir / SUMMARY)
    return result


def _fused_steps(potential, integ: Integrator, x, p, f, act, k: int):
    """``k`` steps in the potential's own compiled loop (``dense_md_steps``, e.g. a CG model's fused kernel), or
    None (then the caller steps one at a time). The integrator's random draws are those of ``k`` single steps, in
    their order, so both paths follow the same trajectory; when the potential declines they are put back."""
    hook = getattr(potential, "dense_md_steps", None)
    if hook is None or k < 2:
        return None
    state = integ.rng_state()
    args = integ.fused_args(k, x)  # None: an integrator without such a form (nothing drawn)
    out = None if args is None else hook(x, p, f, act, **args)
    if out is None:
        integ.set_rng_state(state)  # the draws go back: the step-by-step path takes them again
    return out


def _resume(out_dir: Path, cfg: dict) -> dict:
    old = json.loads((out_dir / CONFIG).read_text()) if (out_dir / CONFIG).exists() else None
    if old is None:
        raise MDInputError(f"--resume: {out_dir / CONFIG} not found; is {out_dir} the --out folder of a run?")
    from compscope.train import check_unchanged  # the one resume guard (loaded on resume only: lightning)

    check_unchanged(old, cfg, unsafe=(*RESUME_UNSAFE, "engine"), where=str(out_dir),
                    defaults={"engine": "graph", "masses": cfg["masses"]},
                    hint="resuming would mix two different simulations: use the original settings, or a new --out "
                         "folder")
    try:
        return load_restart(out_dir / RESTART)
    except TrajectoryError as err:
        raise MDInputError(f"--resume: {err}", hint="start a new run (the dense engine resumes from restart.pt "
                                                    "only)") from err


def _open_h5(state: MDState, integ: Integrator, out_dir: Path, resume: bool, block_frames: int) -> H5Trajectory:
    g = state.graph
    args = (g.atomic_numbers.numpy(), g.batch.numpy(), state.masses.double().numpy(), g.cell.double().numpy(),
            g.pbc.numpy(), integ.dt_fs)
    chunk = max(1, min(block_frames, 2**16 // max(1, g.num_nodes)))  # ~1.5 MiB chunks of frames
    if resume and (out_dir / H5).exists():
        try:
            h5 = H5Trajectory(out_dir / H5, *args, append=True)
            h5.truncate(state.step)
            return h5
        except (TrajectoryError, OSError, KeyError) as err:
            bad = out_dir / (H5 + ".corrupt")
            log.warning("%s; moved to %s and starting a new HDF5 file at step %d", err, bad, state.step)
            (out_dir / H5).replace(bad)
    return H5Trajectory(out_dir / H5, *args, append=False, chunk_frames=chunk)
