"""Rollouts and the metrics of the MP-PDE paper.

The accumulated error (paper Table 1) is, per trajectory, sum over predicted time steps of the spatial mean of
the squared error, averaged over trajectories; like the authors' evaluation, the first ``2 K`` steps are given
(ground truth) and steps ``2K .. nt-1`` are scored, for neural and classical solvers alike.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from compscope.errors import CompscopeError

__all__ = ["rollout", "accumulated_error", "per_step_error", "RolloutDivergedError", "time_per_trajectory",
           "trajectory_errors"]


class RolloutDivergedError(CompscopeError, FloatingPointError):
    """A rollout produced NaN/inf; ``step`` is the first stored time step that is not finite."""

    def __init__(self, step: int, trajectory: int) -> None:
        super().__init__(f"rollout diverged: non-finite values at time step {step} (trajectory {trajectory})",
                         hint="the model is unstable at this horizon: train longer or with more pushforward "
                              "unrolling (module.max_unroll), or evaluate a shorter horizon")
        self.step = step
        self.trajectory = trajectory


@torch.no_grad()
def rollout(model: torch.nn.Module, u_given: torch.Tensor, x: torch.Tensor, times: torch.Tensor,
            cond: torch.Tensor, nt: int) -> torch.Tensor:
    """Autoregressive rollout from the given steps.

    Args:
        model: a bundled solver (forward(u (B, K, N), x, t, cond) -> (B, K, N)).
        u_given: (B, n0, N) known steps, n0 >= K (the last K are the first input window).
        x: (N,) grid; times: (nt,) stored times; cond: (B, P).
        nt: total steps to return.

    Returns:
        (B, nt, N): the given steps followed by predictions.

    Raises:
        RolloutDivergedError: at the first non-finite step (which step and which trajectory).
    """
    K = model.K
    B, n0, N = u_given.shape
    out = torch.empty(B, nt, N, dtype=u_given.dtype, device=u_given.device)
    out[:, :n0] = u_given
    s = n0
    while s < nt:
        inp = out[:, s - K:s]
        pred = model(inp, x, times[s - 1].expand(B), cond)
        take = min(K, nt - s)
        out[:, s:s + take] = pred[:, :take]
        bad = ~torch.isfinite(pred[:, :take])
        if bad.any():
            b, k, _ = torch.nonzero(bad)[0].tolist()
            raise RolloutDivergedError(step=s + k, trajectory=b)
        s += take
    return out


def per_step_error(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Spatial-mean squared error per time step, averaged over trajectories: (B, nt, N) x2 -> (nt,)."""
    pred, ref = np.asarray(pred, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} != reference shape {ref.shape}")
    return ((pred - ref) ** 2).mean(axis=-1).mean(axis=0)


def trajectory_errors(pred: np.ndarray, ref: np.ndarray, start: int) -> np.ndarray:
    """Accumulated error of each trajectory: sum over steps ``start..nt-1`` of the spatial-mean squared error,
    (B, nt, N) x2 -> (B,)."""
    pred, ref = np.asarray(pred, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} != reference shape {ref.shape}")
    return ((pred - ref) ** 2).mean(axis=-1)[:, start:].sum(axis=-1)


def accumulated_error(pred: np.ndarray, ref: np.ndarray, start: int) -> float:
    """Sum over steps ``start..nt-1`` of the spatial-mean squared error, mean over trajectories."""
    return float(trajectory_errors(pred, ref, start).mean())


def time_per_trajectory(fn, n_traj: int, repeats: int = 3) -> float:
    """Best-of-``repeats`` wall-clock seconds of ``fn()`` divided by ``n_traj`` (fn solves n_traj at once)."""
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best / n_traj
