"""Running MD: set up replicas, integrate with monitors, write trajectories/restarts, resume.

The Python entry point is :func:`simulate`; ``compscope md run`` calls it.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from ase import units

from compscope.data import AtomicGraph
from compscope.models import DEFAULT_BLOCK_MEMORY_GIB

from ._checks import MDInputError, check_start, check_timestep
from ._forces import ForceEvaluator
from ._integrators import Integrator, make_integrator
from ._masses import masses_digest, with_hydrogen_mass
from ._monitors import StabilityMonitor, Violation, summary_table
from ._state import MDState, kinetic_energy, maxwell_boltzmann, temperature
from ._trajectory import (
    ExtxyzTrajectory,
    H5Trajectory,
    TrajectoryError,
    load_restart,
    repair_extxyz,
    save_restart,
)

__all__ = ["init_state", "simulate", "MDResult", "state_to_atoms", "make_supercells", "check_periodic_support"]

log = logging.getLogger(__name__)

RESTART = "restart.pt"
H5 = "trajectory.h5"
XYZ = "trajectory.extxyz"
CONFIG = "run.json"
SUMMARY = "summary.json"
WARMUP_STEPS = 10
AUTO_CHUNK = 400_000
"""Edges (or edge pairs) per chunk of ``edge_chunk="auto"``: ~0.1 GiB of float32 radial-MLP activations."""
AUTO_CHUNK_ATOMS = 5_000
"""Boxes above this many atoms get chunked messages under ``edge_chunk="auto"``."""
"""Steps left out of the reported speed (first calls: lazy initialisation, kernel compilation, caches); a run
of n steps leaves out ``min(WARMUP_STEPS, n // 10)``."""


def _potential_dtype(potential: torch.nn.Module, default: torch.dtype) -> torch.dtype:
    for p in potential.parameters():
        if p.is_floating_point():
            return p.dtype
    return default


def init_state(
    potential: torch.nn.Module,
    atoms_list: list,
    temperature_K: float = 300.0,
    seed: int = 0,
    dtype: torch.dtype | None = None,
    skin: float = 0.5,
    initial_momenta: str = "maxwell-boltzmann",
    evaluate_forces: bool = True,
    block_atoms: int | None = None,
) -> tuple[MDState, ForceEvaluator]:
    """Batch ``atoms_list`` (one entry per replica) into an :class:`MDState` with forces evaluated.

    Args:
        potential: force-field module (``cutoff``, ``forward(graph)``).
        atoms_list: G structures (copies of one molecule for replicas, or different systems).
        temperature_K: Maxwell-Boltzmann temperature of the initial momenta.
        seed: seed of the initial momenta.
        dtype: float dtype of positions/momenta (default: the potential's parameter dtype, else float64).
        skin: Verlet skin, Å.
        initial_momenta: ``"maxwell-boltzmann"`` (zero net momentum per replica) or ``"atoms"`` (take
            ``atoms.get_momenta()``).
        evaluate_forces: evaluate energies and forces (off: zeros, for engines that evaluate the potential
            their own way).
        block_atoms: evaluate periodic structures in blocks of about this many atoms with their halo
            (:class:`ForceEvaluator`); no neighbour list of the whole box is built then.
    """
    dtype = dtype or _potential_dtype(potential, torch.float64)
    evaluate = ForceEvaluator(potential, skin=skin, block_atoms=block_atoms)
    blocked = block_atoms is not None and all(a.pbc.any() for a in atoms_list)
    # a big box evaluated in spatial order lists its neighbours in that order (ForceEvaluator.sort_min_atoms)
    blocked = blocked or evaluate.sorts_box(len(atoms_list), sum(len(a) for a in atoms_list),
                                            all(a.pbc.all() for a in atoms_list), dtype)
    graphs = [_edgeless_graph(a, evaluate.radius, dtype) if blocked else
              AtomicGraph.from_atoms(a, evaluate.radius, energy_key=None, forces_key=None, stress_key=None,
                                     dtype=dtype) for a in atoms_list]
    graph = AtomicGraph.collate(graphs)
    masses = torch.as_tensor(np.concatenate([a.get_masses() for a in atoms_list]), dtype=dtype)
    G = graph.num_graphs
    if initial_momenta == "atoms":
        p = torch.as_tensor(np.concatenate([a.get_momenta() for a in atoms_list]), dtype=dtype)
    elif initial_momenta == "maxwell-boltzmann":
        gen = torch.Generator().manual_seed(int(seed))
        p = maxwell_boltzmann(masses.double(), graph.batch, G, temperature_K, generator=gen).to(dtype)
    else:
        raise MDInputError(f"initial_momenta must be 'maxwell-boltzmann' or 'atoms', got {initial_momenta!r}")
    n = graph.num_nodes
    state = MDState(graph=graph, momenta=p, masses=masses, forces=torch.zeros(n, 3, dtype=dtype),
                    energy=torch.zeros(G, dtype=dtype), active=torch.ones(G, dtype=torch.bool),
                    ref_positions=graph.positions.clone())
    return (evaluate(state) if evaluate_forces else state), evaluate


def _edgeless_graph(atoms, radius: float, dtype: torch.dtype) -> AtomicGraph:
    """The MD graph of ``atoms`` without a neighbour list (blocked evaluation lists neighbours per block)."""
    n = len(atoms)
    return AtomicGraph(
        positions=torch.as_tensor(atoms.get_positions(), dtype=dtype),
        atomic_numbers=torch.as_tensor(atoms.get_atomic_numbers(), dtype=torch.long),
        edge_index=torch.zeros(2, 0, dtype=torch.long), cell_shifts=torch.zeros(0, 3, dtype=dtype),
        batch=torch.zeros(n, dtype=torch.long), cell=torch.as_tensor(atoms.cell.array, dtype=dtype).unsqueeze(0),
        pbc=torch.as_tensor(atoms.get_pbc()).unsqueeze(0), cutoff=float(radius))


def state_to_atoms(state: MDState) -> list:
    """One :class:`ase.Atoms` per replica with momenta, energy and forces attached."""
    from ase.calculators.singlepoint import SinglePointCalculator

    g = state.graph
    out = []
    for k, atoms in enumerate(AtomicGraph.to_atoms(g.with_positions(g.positions.detach()))):
        sl = (g.batch == k).nonzero().flatten()
        atoms.set_momenta(state.momenta[sl].detach().double().numpy())
        atoms.calc = SinglePointCalculator(atoms, energy=float(state.energy[k]),
                                           forces=state.forces[sl].detach().double().numpy())
        out.append(atoms)
    return out


@dataclass
class MDResult:
    """What :func:`simulate` returns."""

    state: MDState
    summary: list[dict]
    violations: list[Violation]
    steps: int
    wall_s: float
    ns_per_day: float  # simulated ns per replica per wall-clock day, after the warm-up steps
    atom_steps_per_s: float  # after the warm-up steps
    out: Path | None = None
    files: dict[str, str] = field(default_factory=dict)
    observables: dict[str, np.ndarray] = field(default_factory=dict)
    warmup_steps: int = 0  # steps left out of ns_per_day and atom_steps_per_s
    ns_per_day_incl_warmup: float | None = None  # over every step of this call (wall_s)
    cpu_s: float | None = None  # this process's CPU seconds over the call (simulate_dense)
    ns_per_day_cpu: float | None = None  # per replica per CPU day of this process, after the warm-up (simulate_dense)
    block_atoms: int | None = None  # evaluated atoms per block of a blocked run (None: whole boxes)
    blocks: dict = field(default_factory=dict)  # per structure: grid, blocks, evaluated atoms of the last call
    edges: int | None = None  # neighbour-list edges held (with the skin): state.graph's, or the evaluator's own list

    @property
    def n_stable(self) -> int:
        return sum(r["stable"] for r in self.summary)


def _observables(state: MDState, integ: Integrator) -> dict[str, np.ndarray]:
    G = state.num_graphs
    ke = kinetic_energy(state.momenta, state.masses, state.batch, G)
    cons = integ.conserved(state)
    return {
        "potential_energy": state.energy.detach().double().numpy(),
        "kinetic_energy": ke.detach().double().numpy(),
        "temperature": temperature(state.momenta, state.masses, state.batch, G, integ.removed_dof)
        .detach().double().numpy(),
        "conserved_energy": (cons if cons is not None else state.energy + ke).detach().double().numpy(),
        "active": state.active.double().numpy(),
        "volume": torch.linalg.det(state.graph.cell.double()).abs().numpy(),  # Å^3 (changes under NPT)
    }


def _progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("[bold]MD"), BarColumn(), MofNCompleteColumn(), TextColumn("steps"),
                    TextColumn("{task.fields[nsday]:.2f} ns/day"), TextColumn("{task.fields[rate]:.3g} atom-steps/s"),
                    TextColumn("RSS {task.fields[rss]:.2f} GiB"), TextColumn("{task.fields[stable]}"),
                    TimeRemainingColumn(), disable=not enabled, transient=False)


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far (GiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def _run_config(atoms_list, integ: Integrator, replicas: int, potential, skin: float, dtype) -> dict:
    return {
        "integrator": integ.config(), "replicas": replicas,
        "atomic_numbers": [a.get_atomic_numbers().tolist() for a in atoms_list],
        "potential": type(potential).__name__, "cutoff": float(potential.cutoff), "skin": skin, "dtype": str(dtype),
        "masses": masses_digest(atoms_list),
    }


# settings a resumed MD run must share with the run it continues (cutoff and skin may change: same physics)
RESUME_UNSAFE = ("integrator", "replicas", "atomic_numbers", "potential", "dtype", "masses")


def simulate(
    potential: torch.nn.Module,
    start,
    steps: int,
    dt: float = 0.5,
    temperature: float = 300.0,
    replicas: int = 1,
    integrator: str | Integrator = "langevin",
    friction: float = 0.01,
    seed: int = 0,
    out: str | Path | None = None,
    traj_every: int = 100,
    extxyz: bool = True,
    resume: bool = False,
    monitor: StabilityMonitor | None = None,
    skin: float = 0.5,
    dtype: torch.dtype | None = None,
    progress: bool = False,
    plots: bool = False,
    initial_momenta: str = "maxwell-boltzmann",
    check_inputs: bool = True,
    supercell: tuple[int, int, int] | None = None,
    edge_chunk: int | str | None = "auto",
    atom_chunk: int | str | None = "auto",
    block_memory_gib: float = DEFAULT_BLOCK_MEMORY_GIB,
    radial_table: int | str | None = "auto",
    hydrogen_mass: float | None = None,
    repartition: bool = False,
) -> MDResult:
    """Run MD of ``replicas`` copies of ``start`` (or of each structure in a list) with stability monitors.

    Args:
        potential: force-field module (``cutoff``; ``forward(graph) -> {energy, forces}``).
        start: an :class:`ase.Atoms`, a list of them (one per replica), or a path to an extxyz/xyz file
            (its last frame, or all frames when ``replicas`` equals their number).
        steps: total number of steps (with ``resume``: the run continues up to this step).
        dt: time step, fs.
        temperature: K; initial Maxwell-Boltzmann temperature and thermostat target.
        replicas: copies of a single start structure, batched in one graph.
        integrator: ``nve``, ``langevin``, ``nhc``, ``npt`` (Langevin + stochastic cell rescaling at 1 bar; an
            :class:`StochasticCellRescaling` for other settings) or an :class:`Integrator`.
        friction: Langevin friction, 1/fs.
        seed: seed of initial velocities and Langevin noise.
        out: folder for ``trajectory.h5``, ``trajectory.extxyz``, ``restart.pt``, ``summary.json`` and plots.
        traj_every: steps between saved frames (and restart files).
        extxyz: also write the extxyz trajectory.
        resume: continue the run in ``out`` from its restart file (or its last complete frame).
        monitor: stability monitor (default :class:`StabilityMonitor` with its defaults).
        skin: Verlet skin, Å.
        dtype: float dtype (default: the potential's).
        progress: show a rich progress bar with ns/day.
        plots: write PNG plots of the traces and bond-length distributions to ``out``.
        initial_momenta: ``maxwell-boltzmann`` or ``atoms``.
        check_inputs: refuse overlapping atoms/unknown elements and warn on a large ``dt``.
        supercell: replicate each (periodic) start structure ``(na, nb, nc)`` times along its lattice vectors.
        edge_chunk: evaluate the model's messages in chunks of this many edges (memory-lean inference on big
            boxes; same forces), for potentials with an ``edge_chunk_size`` attribute; ``"auto"``:
            :data:`AUTO_CHUNK` edges for boxes above :data:`AUTO_CHUNK_ATOMS` atoms; ``None``: all at once.
        atom_chunk: evaluate periodic boxes in blocks of atoms with their halo (receptive field), at most about
            this many evaluated atoms (block + halo) per block: exact forces, energies and stress, the memory of one
            block whatever the box size, no neighbour list of the whole box (:func:`compscope.models.block_evaluate`).
            ``"auto"``: blocks only when one force call of the whole box would need more than ``block_memory_gib``
            (:func:`compscope.models.auto_block_atoms`), as big as that budget allows; ``None``: never.
        block_memory_gib: memory budget of one force call (GiB) for ``atom_chunk="auto"``.
        radial_table: read the model's radial MLPs from spline tables of this many intervals (inference on the
            CPU; no per-edge radial activations: ~2x faster, a third of the memory; deviation from the network
            ~1e-9 relative, below float32 round-off), for potentials with a ``radial_table_intervals`` attribute;
            ``"auto"``: tables of :data:`compscope.nn.DEFAULT_TABLE_INTERVALS` intervals in float32, the network
            itself in float64 (where the table's deviation would exceed round-off); ``None``: the network.
        hydrogen_mass: give the hydrogens this mass (amu) for a longer step (:func:`with_hydrogen_mass`: density,
            g(r) and other static properties are unchanged; dynamics are not); ``None``: the structures' masses.
        repartition: with ``hydrogen_mass``, take the added mass from the bonded heavy atoms (HMR, total mass kept)
            instead of making the hydrogens heavier (isotope substitution).

    Returns:
        :class:`MDResult` with the final state, the per-replica stability summary and the speed.
    """
    if steps < 0:
        raise MDInputError(f"steps must be >= 0, got {steps}")
    if traj_every < 1:
        raise MDInputError(f"traj_every must be >= 1, got {traj_every}")
    atoms_list, replicas = _atoms_list(start, replicas)
    if supercell is not None:
        atoms_list = make_supercells(atoms_list, supercell)
    if hydrogen_mass is not None:
        atoms_list = [with_hydrogen_mass(a, hydrogen_mass, repartition) for a in atoms_list]
    if any(a.pbc.any() for a in atoms_list):
        check_periodic_support(potential)
    _set_edge_chunk(potential, edge_chunk, sum(len(a) for a in atoms_list))
    _set_radial_table(potential, radial_table, dtype)
    block_atoms = _block_atoms(potential, atom_chunk, atoms_list, dtype, block_memory_gib)
    if check_inputs:
        check_start(atoms_list[:1] if all(a is atoms_list[0] for a in atoms_list) else atoms_list, potential)
        check_timestep(dt, np.concatenate([a.get_atomic_numbers() for a in atoms_list]),
                       np.concatenate([a.get_masses() for a in atoms_list]))
    integ = integrator if isinstance(integrator, Integrator) else make_integrator(
        integrator, dt, temperature, seed=seed,
        **({"friction": friction} if integrator in ("langevin", "npt") else {}))
    monitor = monitor or StabilityMonitor()
    out_dir = Path(out) if out is not None else None
    if resume and out_dir is None:
        raise MDInputError("--resume needs --out: the folder of the run to continue")

    state, evaluate = init_state(potential, atoms_list, temperature, seed, dtype, skin, initial_momenta,
                                 block_atoms=block_atoms)
    if block_atoms is not None:
        log.info("blocked evaluation: at most ~%d evaluated atoms per block, grids %s", block_atoms,
                 {g: s.get("grid") for g, s in evaluate.block_stats.items()})
    dtype = state.positions.dtype
    cfg = _run_config(atoms_list, integ, replicas, potential, skin, dtype)
    restart = None
    if resume:
        old = json.loads((out_dir / CONFIG).read_text()) if (out_dir / CONFIG).exists() else None
        if old is None:
            raise MDInputError(f"--resume: {out_dir / CONFIG} not found; is {out_dir} the --out folder of a run?")
        from compscope.train import check_unchanged  # the one resume guard (loaded on resume only: lightning)

        check_unchanged(old, cfg, unsafe=RESUME_UNSAFE, where=str(out_dir),
                        defaults={"masses": cfg["masses"]},  # runs begun before masses were recorded: not checked
                        hint="resuming would mix two different simulations: use the original settings, or a new "
                             "--out folder")
        try:
            restart = load_restart(out_dir / RESTART)
        except TrajectoryError as err:
            log.warning("%s; falling back to the last complete extxyz frame", err)
            restart = None
        state, restart = _restore(state, evaluate, integ, restart, out_dir, replicas)
    else:
        state = integ.init(state)
    if check_inputs:
        _check_finite_start(state, potential)
    monitor.setup(state, integ, reference=None if restart is None else restart.get("monitor"),
                  temperature_K=temperature)
    if restart is not None and "good_positions" in restart:
        monitor.good_positions, monitor.good_momenta = restart["good_positions"], restart["good_momenta"]
        monitor.good_step = restart["good_step"]

    h5 = xyz = None
    files: dict[str, str] = {}
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / CONFIG).write_text(json.dumps(cfg, indent=1))
        h5, xyz = _open_writers(state, integ, out_dir, resume, extxyz, replicas)
        files = {"hdf5": str(out_dir / H5), "restart": str(out_dir / RESTART)}
        if extxyz:
            files["extxyz"] = str(out_dir / XYZ)

    def save_frame(st: MDState) -> None:
        if h5 is None:
            return
        obs = _observables(st, integ)
        vel = (st.momenta / st.masses[:, None] * units.fs).detach().double().numpy()  # Å/fs
        h5.write(st.step, st.step * integ.dt_fs / 1000.0, st.positions.detach().double().numpy(), vel,
                 st.forces.detach().double().numpy(), obs)
        if xyz is not None:
            xyz.write(state_to_atoms(st), st.step, st.step * integ.dt_fs)
        save_restart(out_dir / RESTART, _restart_payload(st, integ, monitor))

    if not resume:
        save_frame(state)
    start_step = state.step
    warmup = min(WARMUP_STEPS, max(0, steps - start_step) // 10)
    t0 = time.perf_counter()
    t_steady = t0 if warmup == 0 else None  # the clock of the reported speed starts after the warm-up steps
    n_atoms = state.graph.num_nodes
    with _progress(progress) as bar:
        task = bar.add_task("md", total=steps, completed=start_step, nsday=0.0, rate=0.0, rss=peak_rss_gib(),
                            stable=f"{replicas}/{replicas} stable")
        while state.step < steps:
            if not bool(state.active.any()):
                log.warning("all replicas stopped at step %d", state.step)
                break
            state = integ.apply(state, evaluate)
            state, new = monitor.check(state)
            if t_steady is None and state.step - start_step >= warmup:
                t_steady = time.perf_counter()
            if new and out_dir is not None:
                _save_failed(out_dir, monitor, state, new, integ)
            if state.step % traj_every == 0 or state.step == steps:
                save_frame(state)
            if t_steady is not None and (state.step % 10 == 0 or state.step == steps or state.step % traj_every == 0):
                el = max(time.perf_counter() - t_steady, 1e-9)
                n_steady = state.step - start_step - warmup
                nsday = n_steady * integ.dt_fs * 1e-6 / el * 86400.0
                rate = n_steady * n_atoms / el
                if progress:
                    bar.update(task, completed=state.step, nsday=nsday, rate=rate, rss=peak_rss_gib(),
                               stable=f"{int(state.active.sum())}/{replicas} stable")
                if state.step % traj_every == 0 and n_steady > 0:
                    log.info("step %d: %.4g atom-steps/s, %.3f ns/day, peak RSS %.2f GiB, %d/%d replicas stable",
                             state.step, rate, nsday, peak_rss_gib(), int(state.active.sum()), replicas)
    t_end = time.perf_counter()
    wall = t_end - t0
    done = state.step - start_step
    if t_steady is None or done - warmup < 1:  # stopped during the warm-up: the whole call is all there is
        t_steady, warmup = t0, 0
    steady = max(t_end - t_steady, 1e-12)
    ns_day = (done - warmup) * integ.dt_fs * 1e-6 / steady * 86400.0
    rows = summary_table(replicas, state.step, integ.dt_fs, monitor.violations)
    result = MDResult(state=state, summary=rows, violations=list(monitor.violations), steps=state.step, wall_s=wall,
                      ns_per_day=ns_day, atom_steps_per_s=(done - warmup) * n_atoms / steady, out=out_dir,
                      files=files, warmup_steps=warmup,
                      ns_per_day_incl_warmup=done * integ.dt_fs * 1e-6 / max(wall, 1e-12) * 86400.0,
                      block_atoms=evaluate.block_atoms, blocks=dict(evaluate.block_stats),
                      edges=evaluate.held_edges(state.graph))
    if h5 is not None:
        h5.close()
    if xyz is not None:
        xyz.close()
    if out_dir is not None:
        summary = {"steps": state.step, "dt_fs": integ.dt_fs, "replicas": replicas, "n_stable": result.n_stable,
                   "wall_s": wall, "ns_per_day": ns_day, "atom_steps_per_s": result.atom_steps_per_s,
                   "speed_note": f"ns_per_day and atom_steps_per_s leave out the first {warmup} steps (warm-up)",
                   "warmup_steps": warmup, "ns_per_day_incl_warmup": result.ns_per_day_incl_warmup,
                   "evaluator_rebuilds": evaluate.rebuilds, "atoms": n_atoms, "peak_rss_gib": peak_rss_gib(),
                   "block_atoms": evaluate.block_atoms,
                   "blocks": {str(g): {k: (list(v) if isinstance(v, tuple) else v) for k, v in st.items()}
                              for g, st in evaluate.block_stats.items()},
                   "replica_summary": rows}
        (out_dir / SUMMARY).write_text(json.dumps(summary, indent=1))
        files["summary"] = str(out_dir / SUMMARY)
        if plots:
            from ._plots import plot_run

            files.update(plot_run(out_dir / H5, out_dir, monitor.bonds.numpy(), dt_fs=integ.dt_fs))
    return result


def _atoms_list(start, replicas: int) -> tuple[list, int]:
    """The start structures of :func:`simulate`'s ``start`` argument (copies, one per replica) and their number."""
    from ase import Atoms

    if isinstance(start, (str, Path)):
        from compscope.data import read_extxyz

        frames = read_extxyz(start)
        atoms_list = frames if (len(frames) == replicas and replicas > 1) else [frames[-1]] * replicas
    elif isinstance(start, Atoms):
        atoms_list = [start] * replicas
    else:
        atoms_list = list(start)
        replicas = len(atoms_list)
    if replicas < 1:
        raise MDInputError(f"replicas must be >= 1, got {replicas}")
    return [a.copy() for a in atoms_list], replicas


def _check_finite_start(state: MDState, potential) -> None:
    """Refuse to start from a state whose energy or forces are already NaN/inf: no step could be trusted."""
    per_atom = (~torch.isfinite(state.forces).all(-1)).to(torch.long)  # (N,)
    bad_atoms = torch.zeros_like(state.energy, dtype=torch.long).index_add(0, state.batch, per_atom)  # (G,)
    bad = ~torch.isfinite(state.energy) | (bad_atoms > 0)  # (G,)
    if bool(bad.any()):
        which = torch.nonzero(bad).flatten().tolist()
        n_bad = sum(int((~torch.isfinite(p)).sum()) for p in potential.parameters()) \
            if isinstance(potential, torch.nn.Module) else 0
        raise MDInputError(
            f"the potential returns NaN/inf energies or forces for the start structure of replica(s) {which}"
            + (f"; {n_bad} of its weights are NaN/inf" if n_bad else "")
            + ": check the model file (a training run that diverged writes NaN weights) and the start structure")


def _restart_payload(state: MDState, integ: Integrator, monitor: StabilityMonitor) -> dict:
    return {
        "step": state.step, "positions": state.positions.detach().clone(), "momenta": state.momenta.detach().clone(),
        "active": state.active.clone(), "thermostat": {k: v.clone() for k, v in state.thermostat.items()},
        "rng": integ.rng_state(), "cell": state.graph.cell.detach().clone(),
        "monitor": monitor.reference(), "good_positions": monitor.good_positions,
        "good_momenta": monitor.good_momenta, "good_step": monitor.good_step, "integrator": integ.config(),
    }


def _restore(state: MDState, evaluate, integ: Integrator, restart: dict | None, out_dir: Path, replicas: int):
    """Set ``state`` from a restart file, or from the last complete frame of the extxyz trajectory."""
    if restart is None:
        xyz = out_dir / XYZ
        if not xyz.exists():
            raise MDInputError(f"--resume: neither {out_dir / RESTART} nor {xyz} can be used; start a new run")
        kept, _ = repair_extxyz(xyz, n_replicas=replicas)
        if kept == 0:
            raise MDInputError(f"--resume: {xyz} has no complete frame; start a new run")
        from ase.io import read

        last = read(xyz, index=f"{kept - replicas}:{kept}")
        step = int(last[0].info["step"])
        log.warning("resuming from the last complete extxyz frame (step %d); thermostat variables and the random "
                    "stream restart fresh", step)
        dtype = state.positions.dtype
        pos = torch.as_tensor(np.concatenate([a.get_positions() for a in last]), dtype=dtype)
        mom = torch.as_tensor(np.concatenate([a.get_momenta() for a in last]), dtype=dtype)
        state = state.replace(graph=state.graph.with_positions(pos), momenta=mom, step=step)
        state = integ.init(state)
    else:
        step = int(restart["step"])
        graph = state.graph.with_positions(restart["positions"])
        if "cell" in restart:  # NPT changes the cell; restart files before NPT existed have none
            from dataclasses import replace as _replace

            graph = _replace(graph, cell=restart["cell"].to(graph.cell.dtype))
        state = state.replace(graph=graph, momenta=restart["momenta"],
                              active=restart["active"], step=step, thermostat=restart["thermostat"])
        integ.set_rng_state(restart["rng"])
        xyz = out_dir / XYZ
        if xyz.exists():
            repair_extxyz(xyz, max_step=step, n_replicas=replicas)
    state = evaluate(state.replace(ref_positions=torch.full_like(state.positions, float("inf"))))
    act = state.active[state.batch][:, None]
    state = state.replace(forces=torch.where(act, state.forces, torch.zeros_like(state.forces)))
    return state, restart


def _open_writers(state: MDState, integ: Integrator, out_dir: Path, resume: bool, extxyz: bool, replicas: int):
    g = state.graph
    args = (g.atomic_numbers.numpy(), g.batch.numpy(), state.masses.double().numpy(), g.cell.double().numpy(),
            g.pbc.numpy(), integ.dt_fs)
    h5 = None
    if resume and (out_dir / H5).exists():
        try:
            h5 = H5Trajectory(out_dir / H5, *args, append=True)
            h5.truncate(state.step)
        except (TrajectoryError, OSError, KeyError) as err:
            bad = out_dir / (H5 + ".corrupt")
            log.warning("%s; moved to %s and starting a new HDF5 file at step %d", err, bad, state.step)
            (out_dir / H5).replace(bad)
            h5 = None
    if h5 is None:
        h5 = H5Trajectory(out_dir / H5, *args, append=False)
    xyz = ExtxyzTrajectory(out_dir / XYZ, append=resume) if extxyz else None
    return h5, xyz


def _save_failed(out_dir: Path, monitor: StabilityMonitor, state: MDState, new: list[Violation], integ) -> None:
    """Write each stopped replica's last good frame as ``failed_replica_<g>.extxyz`` plus a JSON record."""
    from ase.io import write

    good = state.replace(graph=state.graph.with_positions(monitor.good_positions), momenta=monitor.good_momenta)
    atoms = state_to_atoms(good)
    for v in new:
        a = atoms[v.replica]
        a.calc = None
        a.info.update({"step": v.last_good_step, "replica": v.replica, "stopped_at_step": v.step,
                       "reason": v.reason})
        write(out_dir / f"failed_replica_{v.replica}.extxyz", a, format="extxyz")
    (out_dir / "violations.json").write_text(json.dumps([v.to_dict() for v in monitor.violations], indent=1))


def make_supercells(atoms_list: list, repeats) -> list:
    """Each structure replicated ``repeats = (na, nb, nc)`` times along its lattice vectors (periodic only)."""
    reps = tuple(int(r) for r in repeats)
    if len(reps) != 3 or min(reps) < 1:
        raise MDInputError(f"supercell needs three positive integers (na nb nc), got {tuple(repeats)}")
    out = []
    for k, a in enumerate(atoms_list):
        bad = [ax for ax, r in zip("abc", reps) if r > 1 and not a.pbc["abc".index(ax)]]
        if bad:
            raise MDInputError(f"supercell {reps}: start structure {k} is not periodic along {bad}",
                               hint="give a structure with a cell and pbc along every direction to replicate "
                                    "(extxyz: Lattice=... pbc=\"T T T\"), or 1 for the non-periodic directions")
        out.append(a.repeat(reps))
    return out


def check_periodic_support(potential) -> None:
    """Refuse a periodic system for a potential that says it has no periodic boundary support
    (``supports_pbc = False``: e.g. a model that ignores cell shifts and would see a wrong, unwrapped geometry)."""
    if getattr(potential, "supports_pbc", True) is False:
        raise MDInputError(
            f"{type(potential).__name__} does not support periodic boundary conditions, and the start structure "
            "is periodic", hint="use a periodic force field (compscope.models.EquivariantPotential supports "
                                "them), or a non-periodic start structure (no Lattice / pbc=\"F F F\")")


def _block_atoms(potential, atom_chunk, atoms_list, dtype, memory_gib: float) -> int | None:
    """Evaluated atoms per block of ``simulate(atom_chunk=...)`` (``None``: no blocks)."""
    from compscope.models import auto_block_atoms

    if atom_chunk is None:
        return None
    if atom_chunk == "auto":
        if not all(a.pbc.any() for a in atoms_list):
            return None
        dtype = dtype or _potential_dtype(potential, torch.float64)
        sizes = [auto_block_atoms(potential, len(a), abs(a.get_volume()), dtype, memory_gib) for a in atoms_list]
        sizes = [s for s in sizes if s is not None]
        return min(sizes) if sizes else None
    if isinstance(atom_chunk, str) or int(atom_chunk) < 1:
        raise MDInputError(f"atom_chunk must be a positive number of atoms, 'auto' or None, got {atom_chunk!r}")
    return int(atom_chunk)


def _set_radial_table(potential, radial_table, dtype) -> None:
    if not hasattr(potential, "radial_table_intervals"):
        return
    from compscope.nn import DEFAULT_TABLE_INTERVALS

    if radial_table == "auto":
        dtype = dtype or _potential_dtype(potential, torch.float64)
        radial_table = DEFAULT_TABLE_INTERVALS if dtype == torch.float32 else None
    elif radial_table is not None and (isinstance(radial_table, str) or int(radial_table) < 1):
        raise MDInputError(f"radial_table must be a positive number of intervals, 'auto' or None, got "
                           f"{radial_table!r}")
    potential.radial_table_intervals = None if radial_table is None else int(radial_table)


def _set_edge_chunk(potential, edge_chunk, n_atoms: int) -> None:
    if not hasattr(potential, "edge_chunk_size"):
        return
    if edge_chunk == "auto":
        edge_chunk = AUTO_CHUNK if n_atoms > AUTO_CHUNK_ATOMS else None
    elif edge_chunk is not None and int(edge_chunk) < 1:
        raise MDInputError(f"edge_chunk must be a positive number of edges, 'auto' or None, got {edge_chunk}")
    potential.edge_chunk_size = None if edge_chunk is None else int(edge_chunk)
