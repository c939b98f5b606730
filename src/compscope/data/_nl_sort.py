"""Receiver-major edge order of a neighbour list in O(E) (counting sort), compiled with numba on first use."""

from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True, nogil=True)
def receiver_order(send: np.ndarray, recv: np.ndarray, n_nodes: int) -> np.ndarray:  # pragma: no cover - compiled
    """The permutation ``np.lexsort((send, recv))`` (by receiver, then sender; ties keep their order): a counting
    sort by receiver and a stable insertion sort of each receiver's few senders."""
    n_edges = send.shape[0]
    start = np.zeros(n_nodes + 1, dtype=np.int64)
    for e in range(n_edges):
        start[recv[e] + 1] += 1
    for a in range(n_nodes):
        start[a + 1] += start[a]
    fill = start[:-1].copy()
    order = np.empty(n_edges, dtype=np.int64)
    for e in range(n_edges):
        r = recv[e]
        order[fill[r]] = e
        fill[r] += 1
    for a in range(n_nodes):
        lo, hi = start[a], start[a + 1]
        for k in range(lo + 1, hi):
            v = order[k]
            sv = send[v]
            m = k - 1
            while m >= lo and send[order[m]] > sv:
                order[m + 1] = order[m]
                m -= 1
            order[m + 1] = v
    return order
