"""Reverse communication of ghost-atom forces: what LAMMPS's ``fix external`` does not do.

Each rank evaluates its energy ``E_r`` (the sum of its *owned* atoms' energies) on owned + ghost atoms, so
``-dE_r/dx`` is also nonzero on ghosts: those forces belong to the ghosts' owners, on this or another rank
(a ghost is a periodic image or a copy of a neighbour's atom). ``fix external`` calls back after LAMMPS's own
reverse communication and adds forces to owned atoms only, so :class:`GhostReducer` sums them onto the owners.

Owners are found by atom ID (tag) through a distributed directory, rebuilt whenever LAMMPS re-neighbours: tag
``t`` is registered on rank ``t mod P`` by its owner, ghosts ask that rank for their owner, and the owners learn
which of their atoms each rank will send. Every step is then one ``Alltoallv`` of ``3 x (unique ghost tags)``
doubles; no rank ever holds a global array (memory and traffic scale with the ghosts, as LAMMPS's own comm).
"""

from __future__ import annotations

import numpy as np

__all__ = ["GhostReducer", "lookup"]


def lookup(keys: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Index into ``keys`` (unique ints) of each ``query`` value, or -1 where absent.

    Examples:
        >>> lookup(np.array([7, 3, 9]), np.array([9, 7, 4])).tolist()
        [2, 0, -1]
    """
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    pos = np.searchsorted(sk, query)
    pos = np.minimum(pos, max(len(sk) - 1, 0))
    found = (sk[pos] == query) if len(sk) else np.zeros(len(query), dtype=bool)
    return np.where(found, order[pos] if len(sk) else -1, -1)


class GhostReducer:
    """Adds forces computed on ghost atoms to the atoms they copy (this rank's or other ranks').

    Args:
        comm: an mpi4py communicator (the one LAMMPS runs on), or ``None`` for a single rank.

    Call :meth:`setup` (collectively) after every re-neighbouring with the tags of owned and ghost atoms, then
    :meth:`reduce` (collectively) every step.
    """

    def __init__(self, comm=None):
        self.comm = comm
        self.size = 1 if comm is None else comm.Get_size()
        self.rank = 0 if comm is None else comm.Get_rank()

    # -- set-up --------------------------------------------------------------------------------------------------
    def _alltoallv(self, send: np.ndarray, counts: np.ndarray, dtype, width: int = 1):
        """Send ``send`` (rows grouped by destination, ``counts`` rows each); returns received rows and counts."""
        from mpi4py import MPI

        counts = np.ascontiguousarray(counts, dtype=np.int64)
        rcounts = np.empty(self.size, dtype=np.int64)
        self.comm.Alltoall([counts, MPI.INT64_T], [rcounts, MPI.INT64_T])
        recv = np.empty((int(rcounts.sum()),) + ((width,) if width > 1 else ()), dtype=dtype)
        self._exchange(np.ascontiguousarray(send, dtype=dtype), counts, recv, rcounts, width)
        return recv, rcounts

    def _exchange(self, send, counts, recv, rcounts, width):
        from mpi4py import MPI

        mtype = MPI.DOUBLE if send.dtype == np.float64 else MPI.INT64_T
        sc, rc = counts * width, rcounts * width
        sd = np.concatenate([[0], np.cumsum(sc)[:-1]])
        rd = np.concatenate([[0], np.cumsum(rc)[:-1]])
        self.comm.Alltoallv([send, (sc, sd), mtype], [recv, (rc, rd), mtype])

    def setup(self, owned_tags: np.ndarray, ghost_tags: np.ndarray) -> None:
        """Find the owner of every ghost (collective). ``owned_tags`` (nlocal,), ``ghost_tags`` (nghost,).

        Raises:
            RuntimeError: a ghost's tag is owned by no rank (atom IDs must be unique and set).
        """
        owned_tags = np.asarray(owned_tags, dtype=np.int64)
        ghost_tags = np.asarray(ghost_tags, dtype=np.int64)
        self.unique, self.inverse = np.unique(ghost_tags, return_inverse=True)
        local = lookup(owned_tags, self.unique)
        self.self_mask = local >= 0  # ghosts that are images of this rank's own atoms
        self.self_index = local[self.self_mask]
        remote = self.unique[~self.self_mask]
        if self.size == 1:
            if len(remote):
                raise RuntimeError(f"{len(remote)} ghost atoms (tags {remote[:5].tolist()}) have no owner")
            self.send_order = np.zeros(0, dtype=np.int64)
            return
        # 1. directory: owners register their tags on rank tag % P
        dest = owned_tags % self.size
        order = np.argsort(dest, kind="stable")
        reg, reg_counts = self._alltoallv(owned_tags[order], np.bincount(dest, minlength=self.size), np.int64)
        reg_owner = np.repeat(np.arange(self.size), reg_counts)
        # 2. ghosts ask the directory for their owners
        qdest = remote % self.size
        qorder = np.argsort(qdest, kind="stable")
        queries, q_counts = self._alltoallv(remote[qorder], np.bincount(qdest, minlength=self.size), np.int64)
        where = lookup(reg, queries)
        if (where < 0).any():
            raise RuntimeError(f"ghost tags {queries[where < 0][:5].tolist()} are owned by no rank")
        answers = np.empty(len(remote), dtype=np.int64)
        self._exchange(reg_owner[where].astype(np.int64), q_counts, answers, np.bincount(qdest, minlength=self.size),
                       1)
        owner = np.empty(len(remote), dtype=np.int64)
        owner[qorder] = answers
        # 3. owners learn which of their atoms each rank sends (in the order it will send them)
        remote_pos = np.flatnonzero(~self.self_mask)  # positions in self.unique
        sorder = np.argsort(owner, kind="stable")
        self.send_order = remote_pos[sorder]
        self.send_counts = np.bincount(owner, minlength=self.size).astype(np.int64)
        wanted, self.recv_counts = self._alltoallv(self.unique[self.send_order], self.send_counts, np.int64)
        self.recv_index = lookup(owned_tags, wanted)
        if (self.recv_index < 0).any():
            raise RuntimeError("a rank sent forces for atoms this rank does not own")

    # -- every step ----------------------------------------------------------------------------------------------
    def reduce(self, f_owned: np.ndarray, f_ghost: np.ndarray) -> None:
        """Add ``f_ghost`` (nghost, 3) to the owners' rows of ``f_owned`` (nlocal, 3) on every rank (in place;
        collective)."""
        per_tag = np.zeros((len(self.unique), 3))
        for d in range(3):
            per_tag[:, d] = np.bincount(self.inverse, weights=f_ghost[:, d], minlength=len(self.unique))
        f_owned[self.self_index] += per_tag[self.self_mask]  # unique tags: no repeated rows
        if self.size == 1:
            return
        recv = np.empty((int(self.recv_counts.sum()), 3))
        self._exchange(np.ascontiguousarray(per_tag[self.send_order]), self.send_counts, recv, self.recv_counts, 3)
        np.add.at(f_owned, self.recv_index, recv)
