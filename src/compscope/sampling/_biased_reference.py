"""Alanine-dipeptide 300 K reference by MD under a fixed (phi, psi) bias with exact reweighting, resumable, cached.

Two stages, both on the ``md reference`` molecule (:func:`compscope.integrations.openmm_systems.
alanine_dipeptide_system`, amber14, vacuum, no constraints, as the replica-exchange reference and the Boltzmann
target):

1. **Well-tempered metadynamics** with OpenMM's own :class:`openmm.app.Metadynamics` on phi and psi (two
   ``CustomTorsionForce`` collective variables, periodic) for ``metad_ns`` nanoseconds. Its final bias grid
   ``V(phi, psi)`` (kJ/mol, ``grid x grid`` points on ``[-pi, pi]^2``, first and last rows equal) is stored in
   ``<out>/bias.npz`` with the metadynamics' CV trace and the bias at every ``metad_snapshot_ps`` (its drift tells
   how converged the bias is; the bias need not be converged: any fixed bias gives exact weights).
2. **MD under that frozen bias**: a :class:`TorsionBias` adds ``V`` as a ``CustomCompoundBondForce`` of the two
   dihedrals through a periodic ``Continuous2DFunction`` (the same table type the metadynamics uses, so the same
   spline), in its own force group. ``n_runs`` independent runs (seeds ``seed * 1000 + run + 1``, each minimised,
   given velocities and equilibrated for ``equil_ps`` that are discarded) go round-robin in chunks of ``chunk_ps``
   on one core (``LangevinMiddleIntegrator``), so that all runs have the same length whenever the job is stopped.
   Every ``frame_ps`` a frame (phi, psi and OpenMM's bias energy) is recorded; after each chunk the run's
   frames are written to ``runs/run_XX/chunk_NNNNN.npz`` and an OpenMM checkpoint plus ``progress.json``
   replace the old ones (a chunk written after the last checkpoint is dropped on resume).

The sampled density is exactly ``p_b ∝ exp(-(U + V) / kT)``, so ``w ∝ exp(+V / kT)`` reweights it to the
Boltzmann distribution ``∝ exp(-U / kT)`` without approximation (importance sampling with a fixed proposal).
``V`` for the weights is computed in Python by :meth:`TorsionBias.energy` (the periodic bicubic spline that
OpenMM's ``Continuous2DFunction`` evaluates); :func:`assemble_ala2_biased_reference` checks it against the
recorded OpenMM energies frame by frame and refuses a mismatch.

``<out>/reference.h5`` (:func:`assemble_ala2_biased_reference`): datasets ``phi``, ``psi`` (rad), ``bias``
(kJ/mol, Python), ``bias_openmm`` (kJ/mol, recorded), ``log_weight`` (``V / kT``, unnormalised), ``run``,
``time_ps`` and ``bias_grid``; attributes ``config`` (JSON), ``kT_kjmol``, ``n_frames``. The loader
:func:`ala2_biased_reference` returns ``phi``, ``psi``, ``weight`` (normalised to sum 1), ``log_weight``,
``run`` and ``time_ps`` as numpy arrays.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path

import numpy as np

from ._errors import SamplingInputError
from ._estimators import kish_ess as _kish_fraction
from ._files import run_lock
from ._openmm_target import ALA2_PHI, ALA2_PSI, MOLAR_GAS_CONSTANT_KJ, dihedral_angles

__all__ = ["TorsionBias", "ALA2_BIASED_DEFAULTS", "ala2_biased_reference_dir", "make_ala2_biased_reference",
           "run_metadynamics", "assemble_ala2_biased_reference", "ala2_biased_reference", "load_bias"]

log = logging.getLogger(__name__)

ALA2_BIASED_DEFAULTS = {
    "temperature": 300.0,  # K
    "timestep_fs": 1.0,  # no constraints (the replica-exchange reference's step)
    "collision_rate_ps": 1.0,
    "platform": "Reference",  # double precision; faster than CPU for 22 atoms
    # stage 1: well-tempered metadynamics on (phi, psi)
    "metad_ns": 5.0,
    "bias_factor": 5.0,  # gamma: the biased run samples ~ p^(1/gamma) along (phi, psi)
    "height_kjmol": 1.0,  # initial Gaussian height
    "width_rad": 0.35,  # Gaussian width (standard deviation) per variable
    "deposit_ps": 0.5,  # one Gaussian every deposit_ps
    "grid": 91,  # grid points per variable on [-pi, pi] (both ends: spacing 2 pi / 90)
    "metad_snapshot_ps": 250.0,  # the bias is kept every snapshot_ps (its drift measures convergence)
    # stage 2: MD under the frozen bias
    "n_runs": 4,
    "run_ns": 100.0,  # per run (a target: the runs stay equally long whenever the job stops)
    "equil_ps": 20.0,  # per run, discarded
    "frame_ps": 0.2,
    "chunk_ps": 200.0,  # round-robin unit and checkpoint interval
    "seed": 0,
}
"""Defaults of :func:`make_ala2_biased_reference` (each one can be overridden; ``--set key=value`` on the CLI)."""

_SAFE = {"run_ns"}  # settings a resumed run may change (a longer run_ns extends every run)
_BIAS_GROUP = 31  # the frozen bias's force group: its energy alone is read at every frame


def ala2_biased_reference_dir(seed: int = 0, path: str | Path | None = None) -> Path:
    """``<data dir>/sampling/ala2_biased_seed<S>`` (data dir: ``path`` > ``$COMPSCOPE_DATA`` > cache)."""
    from compscope.data.datasets import data_dir

    return data_dir(path) / "sampling" / f"ala2_biased_seed{int(seed)}"


class TorsionBias:
    """A fixed periodic bias ``V(phi, psi)`` in kJ/mol on a ``G x G`` grid over ``[-pi, pi]^2``.

    ``values[i, j]`` is ``V`` at ``phi = -pi + i h``, ``psi = -pi + j h`` (``h = 2 pi / (G - 1)``); the first and
    last rows and columns must be equal (the same angle). Between grid points ``V`` is the periodic bicubic spline:
    knot derivatives ``dV/dphi``, ``dV/dpsi`` and ``d2V/dphi dpsi`` from periodic cubic splines along each axis,
    bicubic Hermite interpolation within each cell. :meth:`force` is the OpenMM force that applies it (a
    ``CustomCompoundBondForce`` of the two dihedrals with a periodic ``Continuous2DFunction``, which evaluates
    the same spline), :meth:`energy` evaluates it in numpy.
    """

    def __init__(self, values, phi_atoms=ALA2_PHI, psi_atoms=ALA2_PSI):
        v = np.asarray(values, dtype=np.float64)
        if v.ndim != 2 or v.shape[0] != v.shape[1] or v.shape[0] < 4 or not np.isfinite(v).all():
            raise SamplingInputError(f"a bias grid must be a finite square (G, G) array with G >= 4, got {v.shape}",
                                     hint="pass the metadynamics bias grid (kJ/mol) indexed [phi, psi]")
        if not (np.allclose(v[0], v[-1], rtol=0, atol=1e-9) and np.allclose(v[:, 0], v[:, -1], rtol=0, atol=1e-9)):
            raise SamplingInputError("a periodic bias grid needs equal first and last rows and columns",
                                     hint="both ends are the same angle (-pi == pi)")
        v = v.copy()
        v[-1], v[:, -1] = v[0], v[:, 0]  # exactly equal (rounding differences of the ends would break the spline)
        self.values = v
        self.phi_atoms, self.psi_atoms = tuple(int(a) for a in phi_atoms), tuple(int(a) for a in psi_atoms)
        g = v.shape[0]
        self.h = 2 * math.pi / (g - 1)
        from scipy.interpolate import CubicSpline

        knots = np.linspace(-math.pi, math.pi, g)
        d = lambda a, axis: CubicSpline(knots, a, axis=axis, bc_type="periodic")(knots, 1)  # noqa: E731
        self._fx = d(v, 0)
        self._fy = d(v, 1)
        self._fxy = d(self._fx, 1)

    @property
    def grid(self) -> int:
        return int(self.values.shape[0])

    def energy(self, phi, psi) -> np.ndarray:
        """``V`` (kJ/mol) at angles ``phi``, ``psi`` (rad, any shape, any range: wrapped)."""
        phi = np.asarray(phi, dtype=np.float64)
        psi = np.asarray(psi, dtype=np.float64)
        g = self.grid
        sx = np.mod(phi + math.pi, 2 * math.pi) / self.h
        sy = np.mod(psi + math.pi, 2 * math.pi) / self.h
        i = np.clip(np.floor(sx).astype(int), 0, g - 2)
        j = np.clip(np.floor(sy).astype(int), 0, g - 2)
        t, u = sx - i, sy - j
        h = self.h

        def basis(s):  # Hermite basis: values at 0 and 1, derivatives at 0 and 1 (times the cell width)
            s2, s3 = s * s, s * s * s
            return (2 * s3 - 3 * s2 + 1, -2 * s3 + 3 * s2, (s3 - 2 * s2 + s) * h, (s3 - s2) * h)

        a0, a1, b0, b1 = basis(t)
        c0, c1, d0, d1 = basis(u)
        out = np.zeros(np.broadcast(t, u).shape)
        for di, ax, bx in ((0, a0, b0), (1, a1, b1)):
            for dj, ay, by in ((0, c0, d0), (1, c1, d1)):
                ii, jj = i + di, j + dj
                out += (self.values[ii, jj] * ax * ay + self._fx[ii, jj] * bx * ay + self._fy[ii, jj] * ax * by
                        + self._fxy[ii, jj] * bx * by)
        return out

    def energy_from_positions(self, positions_A) -> np.ndarray:
        """``V`` (kJ/mol) of frames (batch, n_atoms, 3) in Å (their phi and psi)."""
        x = np.asarray(positions_A, dtype=np.float64)
        return self.energy(dihedral_angles(x, self.phi_atoms), dihedral_angles(x, self.psi_atoms))

    def force(self, group: int = _BIAS_GROUP):
        """The OpenMM force applying ``V`` (kJ/mol) to the two dihedrals, in force group ``group``."""
        import openmm as mm

        g = self.grid
        f = mm.CustomCompoundBondForce(8, "bias(dihedral(p1, p2, p3, p4), dihedral(p5, p6, p7, p8))")
        # Continuous2DFunction's values are x-fastest: values[i + G j] = V(x_i, y_j)
        f.addTabulatedFunction("bias", mm.Continuous2DFunction(g, g, self.values.T.ravel().tolist(), -math.pi,
                                                                math.pi, -math.pi, math.pi, True))
        f.addBond(list(self.phi_atoms) + list(self.psi_atoms), [])
        f.setForceGroup(int(group))
        f.setName("compscope_torsion_bias")
        return f


def _system(extra_force=None):
    from compscope.integrations.openmm_systems import alanine_dipeptide_system

    pdb, system = alanine_dipeptide_system("vacuum", constraints=None)
    if extra_force is not None:
        system.addForce(extra_force)
    return pdb, system


def _platform(name: str):
    import openmm as mm

    plat = mm.Platform.getPlatformByName(name)
    return plat, ({"Threads": "1"} if name == "CPU" else {})


def _savez(path: Path, **arrays) -> None:
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # readers assembling at the same time do not collide
    write(tmp)
    os.replace(tmp, path)


def run_metadynamics(cfg: dict, out: str | Path) -> dict:
    """Stage 1: well-tempered metadynamics on (phi, psi); writes ``<out>/bias.npz`` and returns its summary.

    Not resumable (minutes): an interrupted stage 1 starts over. The bias grid is ``-(gamma - 1) / gamma`` times
    OpenMM's free-energy estimate (``Metadynamics.getFreeEnergy``), i.e. the bias the simulation felt at its end.
    """
    import openmm as mm
    import openmm.unit as unit
    from openmm import app

    out = Path(out)
    T = float(cfg["temperature"])
    gamma = float(cfg["bias_factor"])
    dt_ps = float(cfg["timestep_fs"]) / 1000.0
    cvs = []
    for atoms in (ALA2_PHI, ALA2_PSI):
        f = mm.CustomTorsionForce("theta")
        f.addTorsion(*atoms, [])
        cvs.append(app.BiasVariable(f, -math.pi, math.pi, float(cfg["width_rad"]), True, int(cfg["grid"])))
    pdb, system = _system()
    frequency = max(1, round(float(cfg["deposit_ps"]) / dt_ps))
    meta = app.Metadynamics(system, cvs, T * unit.kelvin, gamma, float(cfg["height_kjmol"]) * unit.kilojoule_per_mole,
                            frequency)
    integ = mm.LangevinMiddleIntegrator(T * unit.kelvin, float(cfg["collision_rate_ps"]) / unit.picosecond,
                                        dt_ps * unit.picosecond)
    seed = int(cfg["seed"]) * 1000
    integ.setRandomNumberSeed(seed + 1 if seed + 1 < 2**31 else 1)
    plat, props = _platform(cfg["platform"])
    sim = app.Simulation(pdb.topology, system, integ, plat, props)
    sim.context.setPositions(pdb.positions)
    sim.minimizeEnergy(maxIterations=500)
    sim.context.setVelocitiesToTemperature(T * unit.kelvin, seed + 2)
    n_total = round(float(cfg["metad_ns"]) * 1000.0 / dt_ps)
    snap = max(frequency, round(float(cfg["metad_snapshot_ps"]) / dt_ps) // frequency * frequency)
    t0, c0 = time.perf_counter(), time.process_time()
    cv_trace, snapshots, done = [], [], 0
    factor = -(gamma - 1.0) / gamma
    while done < n_total:
        n = min(snap, n_total - done)
        for _ in range(n // frequency):  # a CV sample at every deposition
            meta.step(sim, frequency)
            cv_trace.append(meta.getCollectiveVariables(sim))
        if n % frequency:
            meta.step(sim, n % frequency)
        done += n
        fe = meta.getFreeEnergy().value_in_unit(unit.kilojoule_per_mole)  # (psi, phi) grid
        snapshots.append(factor * np.asarray(fe).T)
        log.info("metadynamics: %.2f of %.2f ns", done * dt_ps / 1000, n_total * dt_ps / 1000)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    bias = snapshots[-1]
    bias = bias - bias.max()  # a constant does not change the weights; 0 at the most biased point
    cv = np.asarray(cv_trace)
    summary = {"metad_ns": n_total * dt_ps / 1000.0, "wall_s": wall, "cpu_s": cpu,
               "n_gaussians": int(len(cv_trace)), "bias_range_kjmol": float(bias.max() - bias.min())}
    _atomic(out / "bias.npz", lambda p: _savez(p, bias=bias, snapshots=np.asarray(snapshots),
                                                   cv=cv, summary=json.dumps(summary)))
    return summary


def load_bias(out: str | Path) -> tuple[TorsionBias, dict]:
    """The frozen bias of stage 1 in ``out`` and its summary (plus the snapshots and CV trace)."""
    f = Path(out) / "bias.npz"
    if not f.exists():
        raise SamplingInputError(f"{f} does not exist (stage 1, metadynamics, has not finished)",
                                 hint="run `compscope sample reference ala2-biased` (or --resume) first")
    try:
        with np.load(f) as z:
            bias, snaps, cv, summary = z["bias"], z["snapshots"], z["cv"], json.loads(str(z["summary"]))
    except (OSError, ValueError, KeyError) as e:
        raise SamplingInputError(f"{f} is not a readable bias file ({e})",
                                 hint="delete it and resume: stage 1 runs again (minutes)") from e
    return TorsionBias(bias), {**summary, "snapshots": snaps, "cv": cv}


def _run_dir(out: Path, r: int) -> Path:
    return out / "runs" / f"run_{r:02d}"


def _progress(run_dir: Path) -> dict:
    f = run_dir / "progress.json"
    return json.loads(f.read_text()) if f.exists() else {"chunks": 0, "frames": 0, "wall_s": 0.0, "cpu_s": 0.0}


class _BiasedRun:
    """One stage-2 run: its OpenMM context (restored from its checkpoint) and the chunk loop."""

    def __init__(self, cfg: dict, bias: TorsionBias, run_dir: Path, r: int):
        import openmm as mm
        import openmm.unit as unit

        self.cfg, self.dir, self.r = cfg, run_dir, r
        self.dir.mkdir(parents=True, exist_ok=True)
        T = float(cfg["temperature"])
        dt_ps = float(cfg["timestep_fs"]) / 1000.0
        self.frame_steps = max(1, round(float(cfg["frame_ps"]) / dt_ps))
        self.frames_per_chunk = max(1, round(float(cfg["chunk_ps"]) / float(cfg["frame_ps"])))
        self.frame_ps = self.frame_steps * dt_ps
        pdb, system = _system(bias.force())
        self.integ = mm.LangevinMiddleIntegrator(T * unit.kelvin, float(cfg["collision_rate_ps"]) / unit.picosecond,
                                                 dt_ps * unit.picosecond)
        seed = int(cfg["seed"]) * 1000 + r + 1
        self.integ.setRandomNumberSeed(seed)
        plat, props = _platform(cfg["platform"])
        self.ctx = mm.Context(system, self.integ, plat, props)
        self.progress = _progress(self.dir)
        ck = self.dir / "checkpoint.chk"
        if self.progress["chunks"] > 0 and ck.exists():
            self.ctx.loadCheckpoint(ck.read_bytes())
        else:
            self.progress = {"chunks": 0, "frames": 0, "wall_s": 0.0, "cpu_s": 0.0}
            self.ctx.setPositions(pdb.positions)
            mm.LocalEnergyMinimizer.minimize(self.ctx, 1.0, 500)
            self.ctx.setVelocitiesToTemperature(T * unit.kelvin, seed)
            self.integ.step(round(float(cfg["equil_ps"]) / dt_ps))
        for f in self.dir.glob("chunk_*.npz"):  # chunks written after the last checkpoint: sampled again
            if int(f.stem.split("_")[1]) >= self.progress["chunks"]:
                f.unlink()

    def chunk(self) -> None:
        t0, c0 = time.perf_counter(), time.process_time()
        n = self.frames_per_chunk
        phi, psi, v = np.empty(n), np.empty(n), np.empty(n)
        pos = np.empty((n, self.ctx.getSystem().getNumParticles(), 3))
        for k in range(n):
            self.integ.step(self.frame_steps)
            st = self.ctx.getState(getPositions=True, getEnergy=True, groups={_BIAS_GROUP})
            pos[k] = st.getPositions(asNumpy=True)._value
            v[k] = st.getPotentialEnergy()._value  # kJ/mol, the bias alone
        phi[:] = dihedral_angles(pos, ALA2_PHI)
        psi[:] = dihedral_angles(pos, ALA2_PSI)
        c = self.progress["chunks"]
        t_ps = (self.progress["frames"] + np.arange(1, n + 1)) * self.frame_ps
        _atomic(self.dir / f"chunk_{c:05d}.npz",
                lambda p: _savez(p, phi=phi, psi=psi, bias_openmm=v, time_ps=t_ps))
        _atomic(self.dir / "checkpoint.chk", lambda p: p.write_bytes(self.ctx.createCheckpoint()))
        self.progress.update(chunks=c + 1, frames=self.progress["frames"] + n,
                             wall_s=self.progress["wall_s"] + time.perf_counter() - t0,
                             cpu_s=self.progress["cpu_s"] + time.process_time() - c0,
                             updated=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        _atomic(self.dir / "progress.json", lambda p: p.write_text(json.dumps(self.progress)))


def _lock(out: Path):
    return run_lock(out, "ala2_biased_reference")


def _chunks_needed(cfg: dict) -> int:
    return max(1, math.ceil(float(cfg["run_ns"]) * 1000.0 / float(cfg["chunk_ps"]) - 1e-9))


def make_ala2_biased_reference(out: str | Path | None = None, resume: bool = False, *,
                               data_path: str | Path | None = None, max_chunks: int | None = None,
                               progress=None, **settings) -> tuple[Path, dict]:
    """Run (or continue) both stages; returns ``reference.h5`` and a summary (:func:`assemble_ala2_biased_reference`).

    Args:
        out: run folder (default :func:`ala2_biased_reference_dir` of ``seed``).
        resume: continue the run in ``out`` (settings other than ``run_ns`` must be unchanged).
        data_path: data directory for the default ``out``.
        max_chunks: stop every run at this many chunks (it stays resumable), as an interrupted job would.
        progress: optional callable ``progress(done_chunks, total_chunks, message)`` (CLI progress line).
        **settings: any key of :data:`ALA2_BIASED_DEFAULTS`.
    """
    import yaml

    from compscope.errors import ResumeError, RunExistsError
    from compscope.train import check_unchanged

    unknown = sorted(set(settings) - set(ALA2_BIASED_DEFAULTS))
    if unknown:
        raise SamplingInputError(f"unknown setting(s) {', '.join(unknown)} of the biased alanine-dipeptide reference",
                                 hint=f"use {', '.join(ALA2_BIASED_DEFAULTS)}")
    cfg = {**ALA2_BIASED_DEFAULTS, **settings}
    for k in ("metad_ns", "run_ns", "frame_ps", "chunk_ps", "timestep_fs", "bias_factor", "width_rad"):
        if not float(cfg[k]) > 0:
            raise SamplingInputError(f"{k} must be positive, got {cfg[k]}", hint=f"default {ALA2_BIASED_DEFAULTS[k]}")
    if float(cfg["bias_factor"]) <= 1 or int(cfg["n_runs"]) < 1 or int(cfg["grid"]) < 8:
        raise SamplingInputError("bias_factor must exceed 1, n_runs be >= 1 and grid >= 8",
                                 hint="e.g. bias_factor=6, n_runs=4, grid=91")
    out = Path(out) if out is not None else ala2_biased_reference_dir(int(cfg["seed"]), data_path)
    cfg_file = out / "config.yaml"
    if cfg_file.exists():
        saved = yaml.safe_load(cfg_file.read_text())
        if not resume:
            raise RunExistsError(f"{out} already holds a biased alanine-dipeptide reference run",
                                 hint="pass --resume to continue or extend it, or choose another --out")
        check_unchanged(saved, cfg, safe=_SAFE, where=str(out))
    elif resume:
        raise ResumeError(f"--resume: nothing to resume in {out} (no config.yaml)",
                          hint="run once without --resume first, or point --out at the run's folder")
    lock = _lock(out)
    try:
        _atomic(cfg_file, lambda p: p.write_text(yaml.safe_dump(cfg, sort_keys=False)))
        if not (out / "bias.npz").exists():
            if progress:
                progress(0, 1, f"stage 1: metadynamics, {cfg['metad_ns']} ns")
            s = run_metadynamics(cfg, out)
            log.info("metadynamics done: %s", s)
        bias, _ = load_bias(out)
        total = _chunks_needed(cfg)
        target = total if max_chunks is None else min(total, int(max_chunks))
        runs = [_BiasedRun(cfg, bias, _run_dir(out, r), r) for r in range(int(cfg["n_runs"]))]
        while True:
            todo = [rn for rn in runs if rn.progress["chunks"] < target]
            if not todo:
                break
            rn = min(todo, key=lambda x: (x.progress["chunks"], x.r))  # round robin: the shortest run first
            rn.chunk()
            if progress:
                done = sum(min(x.progress["chunks"], total) for x in runs)
                progress(done, total * len(runs), f"run {rn.r}: {rn.progress['frames'] * rn.frame_ps / 1000:.2f} ns")
    finally:
        lock.close()
    return assemble_ala2_biased_reference(out)


def _read_runs(out: Path, cfg: dict) -> list[dict]:
    runs = []
    for r in range(int(cfg["n_runs"])):
        d = _run_dir(out, r)
        n = _progress(d)["chunks"]
        parts = []
        for c in range(n):
            f = d / f"chunk_{c:05d}.npz"
            try:
                with np.load(f) as z:
                    parts.append({k: np.asarray(z[k]) for k in ("phi", "psi", "bias_openmm", "time_ps")})
            except (OSError, ValueError, KeyError) as e:
                raise SamplingInputError(f"{f} is missing or unreadable ({e})",
                                         hint="resume the run (`compscope sample reference ala2-biased --resume`); "
                                              "a corrupt chunk must be deleted with every later one") from e
        if parts:
            runs.append({k: np.concatenate([p[k] for p in parts]) for k in parts[0]} | {"run": r})
    return runs


def assemble_ala2_biased_reference(out: str | Path, path: str | Path | None = None) -> tuple[Path, dict]:
    """Write ``<out>/reference.h5`` (or ``path``) from whatever the runs in ``out`` hold; returns it and a summary.

    Works while the job is still going (only finished chunks are read). Refuses frames whose Python bias differs
    from OpenMM's recorded one by more than 1e-6 kJ/mol (the weights would not be those of the sampled density).
    """
    import h5py
    import yaml

    out = Path(out)
    if not (out / "config.yaml").exists():
        raise SamplingInputError(f"{out} holds no biased alanine-dipeptide reference (no config.yaml)",
                                 hint="run `compscope sample reference ala2-biased` first")
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    bias, meta = load_bias(out)
    runs = _read_runs(out, cfg)
    if not runs:
        raise SamplingInputError(f"{out} holds no biased-MD frames yet",
                                 hint="run (or resume) `compscope sample reference ala2-biased` for longer")
    phi = np.concatenate([r["phi"] for r in runs])
    psi = np.concatenate([r["psi"] for r in runs])
    v_mm = np.concatenate([r["bias_openmm"] for r in runs])
    run = np.concatenate([np.full(len(r["phi"]), r["run"]) for r in runs])
    t_ps = np.concatenate([r["time_ps"] for r in runs])
    v = bias.energy(phi, psi)
    dev = float(np.abs(v - v_mm).max())
    if dev > 1e-6:
        raise SamplingInputError(f"the Python bias differs from OpenMM's recorded bias by {dev:.3g} kJ/mol",
                                 hint="the bias grid and the runs do not belong together; start a new run folder")
    kT = MOLAR_GAS_CONSTANT_KJ * float(cfg["temperature"])
    log_w = v / kT
    final = Path(path) if path is not None else out / "reference.h5"
    progresses = [_progress(_run_dir(out, r["run"])) for r in runs]
    summary = {"n_frames": int(len(phi)), "n_runs": len(runs), "kish_ess": _kish_fraction(log_w) * len(log_w),
               "biased_ns_per_run": [float(r["time_ps"][-1] / 1000.0) for r in runs],
               "md_wall_s": float(sum(p["wall_s"] for p in progresses)),
               "md_cpu_s": float(sum(p["cpu_s"] for p in progresses)),
               "max_bias_mismatch_kjmol": dev,
               "metadynamics": {k: meta[k] for k in ("metad_ns", "wall_s", "cpu_s", "n_gaussians",
                                                     "bias_range_kjmol")}}

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as h5:
            h5["phi"], h5["psi"] = phi, psi
            h5["bias"], h5["bias_openmm"] = v, v_mm
            h5["bias"].attrs["unit"] = h5["bias_openmm"].attrs["unit"] = "kJ/mol"
            h5["log_weight"] = log_w
            h5["run"], h5["time_ps"] = run, t_ps
            h5["bias_grid"] = bias.values
            h5.attrs["config"] = json.dumps(cfg)
            h5.attrs["summary"] = json.dumps(summary)
            h5.attrs["kT_kjmol"] = kT
            h5.attrs["n_frames"] = len(phi)

    final.parent.mkdir(parents=True, exist_ok=True)
    _atomic(final, write)
    return final, summary


def ala2_biased_reference(path: str | Path | None = None, *, seed: int = 0, assemble: bool = True) -> dict:
    """The biased-MD alanine-dipeptide reference at 300 K, reweighted: ``phi``, ``psi``, ``weight`` and more.

    Args:
        path: a run folder (default :func:`ala2_biased_reference_dir` of ``seed``) or a ``reference.h5``.
        seed: the default folder's seed.
        assemble: for a run folder, (re)write ``reference.h5`` when the runs hold frames it lacks.

    Returns:
        numpy arrays ``phi``, ``psi`` (rad, (N,)), ``weight`` (normalised importance weights, sum 1),
        ``log_weight`` (``V / kT``, unnormalised), ``run`` (independent run of each frame), ``time_ps``; and
        ``kish_ess`` (Kish effective sample size of the weights, frames), ``config``, ``summary`` and ``file``
        (the HDF5 read).
    """
    import h5py

    p = Path(path) if path is not None else ala2_biased_reference_dir(seed)
    h5file = p if p.suffix == ".h5" else p / "reference.h5"
    if p.suffix != ".h5" and assemble and (p / "config.yaml").exists():
        stamp = max([f.stat().st_mtime for f in p.glob("runs/run_*/progress.json")], default=0.0)
        if not h5file.exists() or h5file.stat().st_mtime < stamp:
            assemble_ala2_biased_reference(p)
    if not h5file.exists():
        raise SamplingInputError(f"no biased alanine-dipeptide reference at {h5file}",
                                 hint="make it with `compscope sample reference ala2-biased` (hours; resumable "
                                      "with --resume), or pass the folder/HDF5 it was written to")
    try:
        with h5py.File(h5file, "r") as h5:
            d = {k: np.asarray(h5[k]) for k in ("phi", "psi", "log_weight", "run", "time_ps")}
            cfg, summary = json.loads(h5.attrs["config"]), json.loads(h5.attrs["summary"])
    except (OSError, KeyError, ValueError) as e:
        raise SamplingInputError(f"{h5file} is not a readable biased reference ({e})",
                                 hint="delete it; the loader writes it again from the run folder") from e
    n = len(d["phi"])
    if n == 0 or any(len(d[k]) != n for k in d) or not np.isfinite(d["log_weight"]).all():
        raise SamplingInputError(f"{h5file} is inconsistent (datasets of different lengths or non-finite weights)",
                                 hint="delete it; the loader writes it again from the run folder")
    lw = d["log_weight"]
    w = np.exp(lw - lw.max())
    d["weight"] = w / w.sum()
    d.update(kish_ess=_kish_fraction(lw) * n, config=cfg, summary=summary, file=str(h5file))
    return d
