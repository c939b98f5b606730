"""Launching a LAMMPS run on P MPI ranks from Python (what ``compscope md lammps`` calls) and reading its result."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._data import read_data_header, resolve_types
from ._errors import LammpsError, LammpsInputError, LammpsModelError, LammpsNotAvailableError
from ._mpi import mpi_environment, mpiexec_path

__all__ = ["LammpsResult", "run_lammps", "ENSEMBLES"]

ENSEMBLES = ("nve", "nvt", "langevin")
_ERRORS = {c.__name__: c for c in (LammpsError, LammpsInputError, LammpsModelError, LammpsNotAvailableError)}


@dataclass
class LammpsResult:
    """What a run left in its folder.

    Attributes:
        out: the run folder (``log.lammps``, ``mpi.log``, ``result.json``, ``final.npz``, ``traj.lammpstrj``).
        summary: ``result.json``: ranks, natoms, steps, energy (eV), loop_s, atom_steps_per_s, per-rank timings,
            sizes (owned, ghost, kept atoms, edges) and peak RSS, the thermo table (``metal`` units).
        final: positions (Å), velocities (Å/ps, LAMMPS metal), forces (eV/Å) and types of the last step, rows
            ordered by atom ID (when gathered).
    """

    out: Path
    summary: dict
    final: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def load(cls, out: str | Path) -> LammpsResult:
        out = Path(out)
        summary = json.loads((out / "result.json").read_text())
        final = {}
        if (out / "final.npz").exists():
            with np.load(out / "final.npz") as z:
                final = {k: z[k] for k in z.files}
        return cls(out=out, summary=summary, final=final)

    @property
    def energy(self) -> float:
        """Potential energy (eV) of the last step."""
        return float(self.summary["energy"])

    @property
    def forces(self) -> np.ndarray:
        """(N, 3) eV/Å by atom ID."""
        return self.final["forces"]

    def drift_per_atom_per_ns(self) -> float | None:
        """Slope of the total energy (least squares over the thermo rows) in eV/atom/ns, or ``None`` (< 3 rows)."""
        th = self.summary["thermo"]
        if len(th["step"]) < 3:
            return None
        t_ns = np.asarray(th["step"]) * self.summary["dt_fs"] * 1e-6
        slope = np.polyfit(t_ns, np.asarray(th["etotal"]), 1)[0]
        return float(slope / self.summary["natoms"])


def run_lammps(
    model: str | Path,
    data: str | Path,
    out: str | Path,
    ranks: int = 2,
    elements: Sequence[str] | None = None,
    steps: int = 0,
    dt: float = 0.5,
    temperature: float = 0.0,
    ensemble: str = "nve",
    tdamp: float = 100.0,
    seed: int = 12345,
    thermo_every: int = 10,
    dump_every: int = 0,
    skin: float = 1.0,
    dtype: str | None = None,
    threads: int = 1,
    device: str = "cpu",
    gather: bool = True,
    extra_commands: Sequence[str] = (),
    progress_every: int = 0,
    timeout: float | None = None,
    echo: bool = False,
) -> LammpsResult:
    """Run ``model`` on the LAMMPS data file ``data`` over ``ranks`` MPI ranks (spatial decomposition).

    Args:
        model: compscope model file (``model.pt``, ``.jit.pt``, ``.ckpt`` or run folder).
        data: LAMMPS data file (``atom_style atomic``, ``units metal``, periodic box).
        out: run folder (created).
        ranks: MPI ranks.
        elements: element of each atom type (``["O", "H"]``); default: from the data file's masses.
        steps: MD steps (0: one force evaluation).
        dt: time step in fs (converted to LAMMPS's ps).
        temperature: K; > 0 draws Maxwell-Boltzmann velocities (``velocity create``, same on any rank count).
        ensemble: ``nve`` (velocity Verlet), ``nvt`` (Nose-Hoover chain, damping ``tdamp`` fs) or ``langevin``.
        skin: neighbour skin (Å): ghost cutoff = receptive field + skin, re-neighbouring when an atom moved skin/2.
        dtype: ``float32``/``float64`` model dtype (default: the saved one).
        threads: compute threads per rank.
        device: ``cpu``, or ``cuda`` for one GPU per rank (``cuda:<local rank>``).
        gather: write ``final.npz`` (positions, velocities and forces of every atom on rank 0).
        extra_commands: more LAMMPS commands issued before ``run`` (computes, dumps, ``fix npt``...).
        progress_every: rank 0 prints step, atom-steps/s and memory every this many steps.
        timeout: seconds before the job is killed.
        echo: copy the ranks' output to this process's stdout (it is always in ``out/mpi.log``).

    Raises:
        LammpsInputError: bad data file / type map / options. LammpsModelError: a model the route cannot run.
        LammpsNotAvailableError: LAMMPS or MPI missing. LammpsError: the run failed (LAMMPS's message).
    """
    from compscope.models.artifacts import load_model

    from ._potential import layers_of

    if ensemble not in ENSEMBLES:
        raise LammpsInputError(f"unknown ensemble {ensemble!r}", hint=f"use one of {', '.join(ENSEMBLES)}")
    if ranks < 1 or threads < 1 or steps < 0:
        raise LammpsInputError(f"ranks and threads must be >= 1 and steps >= 0 (got {ranks}, {threads}, {steps})")
    if ensemble != "nve" and temperature <= 0:
        raise LammpsInputError(f"ensemble {ensemble} needs a temperature > 0 K", hint="pass --temperature 300")
    data = Path(data).resolve()
    header = read_data_header(data)
    pot = load_model(model)
    layers_of(pot)  # refuse a model the route cannot run before any rank starts
    type_numbers = resolve_types(header, elements, pot.species, source=str(data))
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for stale in list(out.glob("error.rank*.json")) + [out / "result.json", out / "final.npz"]:
        stale.unlink(missing_ok=True)
    spec = dict(model=str(Path(model).resolve()), data=str(data), out=str(out), type_numbers=type_numbers,
                steps=int(steps), dt_fs=float(dt), temperature=float(temperature), ensemble=ensemble,
                tdamp_fs=float(tdamp), seed=int(seed), thermo_every=int(thermo_every), dump_every=int(dump_every),
                skin=float(skin), dtype=dtype, threads=int(threads), device=str(device), gather=bool(gather),
                extra_commands=list(extra_commands), progress_every=int(progress_every))
    (out / "spec.json").write_text(json.dumps(spec, indent=1))
    cmd = [mpiexec_path(), "-n", str(int(ranks)), sys.executable, "-m", "compscope.integrations.lammps",
           str(out / "spec.json")]
    with (out / "mpi.log").open("w") as log, subprocess.Popen(
            cmd, env=mpi_environment(threads), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            cwd=out) as proc:
        timer = threading.Timer(timeout, proc.kill) if timeout else None
        if timer is not None:
            timer.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                log.flush()
                if echo:
                    sys.stdout.write(line)
                    sys.stdout.flush()
            rc = proc.wait()
        except BaseException:  # Ctrl-C: mpiexec forwards SIGTERM to the ranks, so none is left running
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
        finally:
            if timer is not None:
                timer.cancel()
        if timer is not None and rc < 0 and not timer.is_alive() and not (out / "result.json").exists():
            raise LammpsError(f"the LAMMPS run did not finish in {timeout} s and was killed",
                              hint=f"see {out / 'mpi.log'}; raise the timeout or run fewer steps")
    errors = sorted(out.glob("error.rank*.json"))
    if errors:
        info = json.loads(errors[0].read_text())
        cls = _ERRORS.get(info["kind"], LammpsError)
        hint = info.get("hint") or f"LAMMPS's log: {out / 'log.lammps'}; all ranks' output: {out / 'mpi.log'}"
        raise cls(f"rank {info['rank']} ({info['stage']}): {info['message']}", hint=hint)
    if rc != 0 or not (out / "result.json").exists():
        tail = "".join((out / "mpi.log").read_text().splitlines(keepends=True)[-15:])
        raise LammpsError(f"the MPI job exited with code {rc}:\n{tail}", hint=f"see {out / 'mpi.log'}")
    return LammpsResult.load(out)
