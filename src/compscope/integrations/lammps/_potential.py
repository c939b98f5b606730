"""A compscope potential inside LAMMPS on every MPI rank: ``fix external`` over owned + ghost atoms, exact.

Spatial decomposition of a message-passing potential (Musaelian et al. 2023 for Allegro; the MACE/NequIP LAMMPS
interfaces): the total energy is a sum of per-atom energies, ``E = sum_i e_i``, and ``e_i`` depends only on atoms
within the model's receptive field ``R = num_interactions x r_max`` of atom ``i``. Rank ``r`` owns atoms ``O_r``
and sees ghost copies of every atom within the ghost cutoff ``R + skin`` of its sub-domain (LAMMPS's
``comm_modify cutoff``; the skin covers the motion between re-neighbourings), so it can evaluate
``E_r = sum_{i in O_r} e_i`` exactly on its local graph (no periodic cell: ghosts are explicit images). Then
``F_k = -sum_r dE_r/dx_k`` summed over the copies of atom ``k`` (:class:`~._ghosts.GhostReducer`) is the exact
force, ``sum_r E_r`` the exact energy and ``sum_r sum_k x_k (x) (-dE_r/dx_k)`` the exact virial of the periodic
system; 1, 2 or 10^4 ranks give the same numbers up to float round-off.

Only what the owned energies need is evaluated: an edge (radius ``r_max``) is kept when one of its atoms is
within ``L - 1`` hops of an owned atom (``L`` layers), and atoms further out are dropped, which is exact for any
model whose per-atom energy is built from ``L`` rounds of messages along edges (either direction).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from compscope.data import keys as K
from compscope.models import local_graph  # the same owned + halo graph as blocked evaluation in one process

from ._errors import LammpsModelError
from ._ghosts import GhostReducer

__all__ = ["LammpsPotential", "layers_of", "local_graph", "rank_device"]


def rank_device(device: str) -> str:
    """``"cuda"`` -> ``"cuda:<local rank>"`` (one GPU per rank on a node; the local rank from MPICH, Open MPI or
    Slurm); any other value unchanged.

    Examples:
        >>> rank_device("cpu")
        'cpu'
    """
    import os

    if device != "cuda":
        return device
    for var in ("MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "PMI_LOCAL_RANK"):
        if var in os.environ:
            count = max(torch.cuda.device_count(), 1)
            return f"cuda:{int(os.environ[var]) % count}"
    return "cuda:0"


def layers_of(model) -> int:
    """Message-passing depth ``L = ceil(receptive_field / cutoff)`` of a potential (1 for a pair potential).

    Raises:
        LammpsModelError: the model has no ``cutoff`` or does not say how far it sees (``receptive_field``).
    """
    cutoff = getattr(model, "cutoff", None)
    field = getattr(model, "receptive_field", None)
    if cutoff is None or not cutoff > 0:
        raise LammpsModelError(f"{type(model).__name__} has no positive `cutoff`: it is not a compscope potential",
                               hint="pass a model trained by `compscope forcefield train` (model.pt / .jit.pt)")
    if field is None:
        raise LammpsModelError(
            f"{type(model).__name__} does not say how far an atom's energy sees (no `receptive_field`), so the "
            "ghost shell that makes domain decomposition exact is unknown",
            hint="re-export a compiled model with this compscope version (`compscope forcefield export RUN "
                 "--out m.jit.pt`), or give the module a `receptive_field` attribute (layers x cutoff, Å)")
    return max(1, math.ceil(float(field) / float(cutoff) - 1e-9))


class LammpsPotential:
    """Runs ``model`` as the force field of a LAMMPS instance, on every rank of its communicator.

    Args:
        lmp: a ``lammps.lammps`` instance, box and atoms defined (``read_data``), ``units metal``.
        model: a compscope potential (``cutoff``, ``receptive_field``, ``forward(graph) -> {node_energy, ...}``).
        type_numbers: atomic number of each LAMMPS atom type (index 0 = type 1).
        comm: the mpi4py communicator LAMMPS runs on (``None``: one rank).
        skin: LAMMPS neighbour skin (Å); the ghost cutoff is ``receptive_field + skin``.
        fix_id: ID of the ``fix external``.
        device: where the model runs (``"cuda:0"``: this rank's GPU); positions go there and forces come back.

    :meth:`install` issues the LAMMPS commands (neighbour settings, ghost cutoff, the fix); after that any
    integrator (``fix nve``/``nvt``/``npt``/``langevin``), ``run`` or ``minimize`` uses the model. Timings per rank
    are in :attr:`timers` (s), sizes of the last step in :attr:`sizes`.
    """

    def __init__(self, lmp, model: torch.nn.Module, type_numbers, comm=None, skin: float = 1.0,
                 fix_id: str = "compscope", device: str | torch.device = "cpu"):
        self.lmp = lmp
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.layers = layers_of(model)
        self.cutoff = float(model.cutoff)
        self.receptive_field = self.layers * self.cutoff
        self.skin = float(skin)
        self.fix_id = fix_id
        self.comm = comm if comm is not None and comm.Get_size() > 1 else None
        self.dtype = next((p.dtype for p in model.parameters()), None) or getattr(model, "dtype", torch.float64)
        self.type_numbers = np.concatenate([[0], np.asarray(type_numbers, dtype=np.int64)])  # index by type
        self.reducer = GhostReducer(self.comm)
        self._tags: np.ndarray | None = None
        self.timers = {"graph": 0.0, "model": 0.0, "comm": 0.0, "setup": 0.0, "cpu": 0.0, "cpu_compute": 0.0,
                       "wall": 0.0, "calls": 0}
        self.sizes: dict[str, int] = {}
        self.energy = 0.0
        self.virial = np.zeros(6)
        self.on_step = None  # optional hook(ntimestep, potential) called after each evaluation
        self.error: BaseException | None = None

    @property
    def ghost_cutoff(self) -> float:
        return self.receptive_field + self.skin

    def install(self) -> None:
        lmp = self.lmp
        lmp.command(f"neighbor {self.skin} bin")
        lmp.command("neigh_modify every 1 delay 0 check yes")
        lmp.command(f"comm_modify cutoff {self.ghost_cutoff}")
        lmp.command(f"fix {self.fix_id} all external pf/callback 1 1")
        lmp.command(f"fix_modify {self.fix_id} energy yes virial yes")
        lmp.set_fix_external_callback(self.fix_id, self._callback, self)

    # -----------------------------------------------------------------------------------------------------------
    def _callback(self, caller, ntimestep, nlocal, tag, x, fext) -> None:
        # ctypes swallows exceptions raised in a callback and LAMMPS would go on with zero forces: never that
        c0, w0 = time.process_time(), time.perf_counter()
        try:
            self._evaluate(ntimestep, nlocal, fext)
            self.timers["cpu"] += time.process_time() - c0  # this rank's CPU seconds in the model callback
            self.timers["wall"] += time.perf_counter() - w0
        except BaseException as err:  # noqa: BLE001 - every failure must stop the run
            self.error = err
            self.on_error(err)

    def on_error(self, err: BaseException) -> None:
        """What a failed force evaluation does: print the traceback and abort all ranks (replace to change)."""
        import sys
        import traceback

        traceback.print_exception(type(err), err, err.__traceback__, file=sys.stderr)
        sys.stderr.flush()
        _abort(1)

    def _evaluate(self, ntimestep, nlocal, fext) -> None:
        lmp = self.lmp
        t0 = time.perf_counter()
        nghost = int(lmp.extract_global("nghost"))
        m = nlocal + nghost
        tags = np.array(lmp.numpy.extract_atom("id", nelem=m), dtype=np.int64).reshape(m)
        changed = self._tags is None or len(self._tags) != m or not np.array_equal(self._tags, tags)
        if self.comm is not None:
            changed = bool(self.comm.allreduce(int(changed), op=_mpi_max()))
        if changed:  # LAMMPS re-neighboured: new ghosts, new owners
            self.reducer.setup(tags[:nlocal], tags[nlocal:])
            types = np.array(lmp.numpy.extract_atom("type", nelem=m), dtype=np.int64).reshape(m)
            self._numbers = self.type_numbers[types]
            self._tags = tags
        t1, c1 = time.perf_counter(), time.process_time()
        pos = np.array(lmp.numpy.extract_atom("x", nelem=m, dim=3), dtype=np.float64).reshape(m, 3)
        graph, kept = local_graph(pos, self._numbers, nlocal, self.cutoff, self.layers, self.dtype)
        if self.device.type != "cpu":
            graph = graph.to(self.device)
        t2 = time.perf_counter()
        leaf = graph.positions.requires_grad_(True)
        out = self.model(graph, compute_forces=False)
        if K.NODE_ENERGY not in out:
            raise LammpsModelError(f"{type(self.model).__name__} returns no per-atom energies ({K.NODE_ENERGY})",
                                   hint="the LAMMPS route needs E = sum of per-atom energies; use a compscope "
                                        "force-field model")
        e_owned = out[K.NODE_ENERGY][:nlocal].to(torch.float64).sum()
        (grad,) = torch.autograd.grad(e_owned, leaf, allow_unused=True)
        forces = np.zeros((m, 3))
        if grad is not None:
            forces[kept] = -grad.detach().to(device="cpu", dtype=torch.float64).numpy()
        t3 = time.perf_counter()
        self.timers["cpu_compute"] += time.process_time() - c1  # graph + model, no waiting on other ranks
        virial = np.einsum("ka,kb->ab", pos[kept], forces[kept])  # this rank's share of sum_k x_k (x) F_k
        f_owned = forces[:nlocal].copy()
        self.reducer.reduce(f_owned, forces[nlocal:])
        fext[:] = f_owned
        # LAMMPS adds a fix's global energy and virial to the totals after its own sums over ranks: hand it the
        # totals on every rank (one Allreduce of 7 doubles)
        mine = np.array([float(e_owned.detach()), virial[0, 0], virial[1, 1], virial[2, 2], virial[0, 1],
                         virial[0, 2], virial[1, 2]])
        total = mine
        if self.comm is not None:
            total = np.empty_like(mine)
            self.comm.Allreduce(mine, total)
        lmp.fix_external_set_energy_global(self.fix_id, float(total[0]))
        lmp.fix_external_set_virial_global(self.fix_id, [float(v) for v in total[1:]])
        t4 = time.perf_counter()
        self.energy = float(total[0])
        self.virial = total[1:]  # xx yy zz xy xz yz, eV
        tm = self.timers
        tm["setup"] += t1 - t0
        tm["graph"] += t2 - t1
        tm["model"] += t3 - t2
        tm["comm"] += t4 - t3
        tm["calls"] += 1
        self.sizes = {"nlocal": int(nlocal), "nghost": nghost, "kept_atoms": int(len(kept)),
                      "edges": graph.num_edges}
        if self.on_step is not None:
            self.on_step(ntimestep, self)


def _abort(code: int) -> None:
    """Abort every rank of the job (a rank that stops alone would leave the others waiting forever)."""
    import os

    try:
        from mpi4py import MPI

        MPI.COMM_WORLD.Abort(code)
    finally:
        os._exit(code)


def _mpi_max():
    from mpi4py import MPI

    return MPI.MAX
