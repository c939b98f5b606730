"""The shared core of continuous normalizing flows and flow matching (used by ``generate`` and ``sampling``).

- :func:`time_grid` and :func:`ode_solve`: fixed-step Euler or classical RK4 over a grid of times, for a state that
  is a tensor or a tuple of tensors (positions and features; positions and the integrated divergence);
- :func:`divergence_exact` (one autograd pass per coordinate) and :func:`divergence_hutchinson` (unbiased, one
  probe) of a vector field, for the instantaneous change of variables ``d log q / dt = -div v``;
- :func:`integrate_divergence`: the state by RK4 with the field alone and ``int div v dt`` by composite
  Gauss-Legendre quadrature of the exact divergence at the path's states (:func:`quadrature_nodes`), far fewer
  exact divergences than RK4 of the augmented state (4 per step), which dominate the cost of exact log-densities;
- :func:`straight_path`: the conditional flow-matching path ``x_t = (1 - t) x_0 + t x_1`` and its constant target
  velocity ``x_1 - x_0`` (Lipman et al., ICLR 2023);
- equivariant alignment of base draws to data (Klein, Krämer & Noé, NeurIPS 2023): :func:`kabsch` (optimal
  orthogonal map, batched), :func:`align_permutation` (Hungarian on squared distances) and :func:`equivariant_ot`
  (minibatch OT pairing on rotation-aligned costs, then per-pair permutation + rotation alignment).

Point clouds are ``(batch, n_points, dim)``; times are floats or tensors broadcastable to the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

__all__ = ["time_grid", "ode_solve", "divergence_exact", "divergence_hutchinson", "integrate_divergence",
           "quadrature_nodes", "straight_path", "kabsch", "align_permutation", "equivariant_ot"]

State = torch.Tensor | tuple[torch.Tensor, ...]


def time_grid(n_steps: int, t0: float = 0.0, t1: float = 1.0, power: float = 1.0,
              dtype: torch.dtype | None = None) -> torch.Tensor:
    """``n_steps + 1`` times from ``t0`` to ``t1``; ``power > 1`` crowds them toward ``t1``
    (``t_k = t0 + (t1 - t0) (k / K)^(1/p)``; for ``t0 = 0, t1 = 1`` exactly ``linspace(0, 1) ** (1/p)``)."""
    s = torch.linspace(0.0, 1.0, int(n_steps) + 1, dtype=dtype) ** (1.0 / power)
    return s if (t0, t1) == (0.0, 1.0) else t0 + (t1 - t0) * s


def _axpy(state: State, h, k: State) -> State:
    if isinstance(state, tuple):
        return tuple(s + h * d for s, d in zip(state, k))
    return state + h * k


def _combine(state: State, h, k1: State, k2: State, k3: State, k4: State) -> State:
    if isinstance(state, tuple):
        return tuple(s + h / 6 * (a + 2 * b + 2 * c + d) for s, a, b, c, d in zip(state, k1, k2, k3, k4))
    return state + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


def ode_solve(f: Callable[[torch.Tensor | float, State], State], state: State, grid: torch.Tensor | Sequence[float],
              method: str = "rk4", step_start: Callable[[State], State] | None = None) -> State:
    """Integrate ``d state / dt = f(t, state)`` over ``grid`` (fixed steps ``h_k = grid[k+1] - grid[k]``).

    Args:
        f: the right-hand side; gets the step's time as ``grid``'s element (a 0-d tensor or a float).
        state: a tensor or a tuple of tensors.
        grid: increasing or decreasing times (``time_grid``, or floats).
        method: ``euler`` or ``rk4`` (classical fourth order).
        step_start: applied to the state at the start of each step (e.g. detaching it).
    """
    if method not in ("euler", "rk4"):
        raise ValueError(f"method={method!r}: use 'euler' or 'rk4'")
    for k in range(len(grid) - 1):
        t, h = grid[k], grid[k + 1] - grid[k]
        if step_start is not None:
            state = step_start(state)
        if method == "euler":
            state = _axpy(state, h, f(t, state))
            continue
        k1 = f(t, state)
        k2 = f(t + h / 2, _axpy(state, h / 2, k1))
        k3 = f(t + h / 2, _axpy(state, h / 2, k2))
        k4 = f(t + h, _axpy(state, h, k3))
        state = _combine(state, h, k1, k2, k3, k4)
    return state


def divergence_exact(v: torch.Tensor, x: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
    """``sum_i dv_i/dx_i`` (batch,) by one autograd pass per coordinate (``x`` requires grad; ``v = f(x)``
    row-wise independent across the batch)."""
    flat_v = v.reshape(len(v), -1)
    div = torch.zeros(len(v), dtype=v.dtype, device=v.device)
    for i in range(flat_v.shape[1]):
        (g,) = torch.autograd.grad(flat_v[:, i].sum(), x, create_graph=create_graph, retain_graph=True)
        div = div + g.reshape(len(v), -1)[:, i]
    return div


def divergence_hutchinson(v: torch.Tensor, x: torch.Tensor, noise: torch.Tensor,
                          create_graph: bool = False) -> torch.Tensor:
    """Unbiased estimate ``eps^T (dv/dx) eps`` (batch,) of the divergence with a fixed noise ``eps`` (same shape
    as ``x``; centred Rademacher or Gaussian noise projected on the mean-free subspace)."""
    (g,) = torch.autograd.grad((v * noise).sum(), x, create_graph=create_graph, retain_graph=True)
    return (g * noise).sum(tuple(range(1, g.ndim)))


def quadrature_nodes(nodes: int, panels: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Composite Gauss-Legendre rule on the flow time ``[0, 1]``: ``nodes`` points on each of ``panels`` panels
    with boundaries ``(k / panels)^(1/2)``, narrower toward the data end ``t = 1``, where the divergence of a
    trained flow changes fastest (measured on LJ13 flow-matching flows). Returns increasing times and weights
    (summing to 1)."""
    if int(nodes) != nodes or nodes < 1 or int(panels) != panels or panels < 1:
        raise ValueError(f"nodes={nodes!r}, panels={panels!r}: both must be positive integers")
    s, w = np.polynomial.legendre.leggauss(int(nodes))
    edges = np.linspace(0.0, 1.0, int(panels) + 1) ** 0.5
    t = np.concatenate([a + (b - a) * (s + 1) / 2 for a, b in zip(edges[:-1], edges[1:])])
    return t, np.concatenate([(b - a) / 2 * w for a, b in zip(edges[:-1], edges[1:])])


def integrate_divergence(field: Callable[[float, torch.Tensor], torch.Tensor], x: torch.Tensor, n_steps: int,
                         nodes: int, panels: int = 1, reverse: bool = False,
                         divergence: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                         field_divergence: Callable[[float, torch.Tensor], torch.Tensor] | None = None,
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x(end), int div v dt)`` of ``dx/dt = field(t, x)`` over the flow time ``[0, 1]`` (``reverse``: from 1
    down to 0, the integral then taken from 1 to 0, i.e. negative of the forward one), no graph kept.

    ``x`` is integrated by classical RK4 with the field alone over the uniform grid of ``n_steps`` merged with the
    quadrature nodes; the divergence integral by the composite Gauss-Legendre rule of :func:`quadrature_nodes`
    (``nodes`` per panel, ``panels`` panels) applied to the exact divergence at the path's states at the nodes:
    ``nodes * panels`` divergences per draw instead of ``4 n_steps``. Both errors vanish as steps and nodes grow
    (RK4 ``O(h^4)``; Gauss-Legendre exact for polynomials in ``t`` of degree ``2 nodes - 1`` per panel).

    Args:
        field: ``v = field(t, x)`` of ``x``'s shape, rows (first axis) independent draws.
        x: (batch, ...) start states (at ``t = 0``, or ``t = 1`` when ``reverse``).
        divergence: ``div(v, x)`` (batch,) with ``x`` requiring grad (default :func:`divergence_exact`; e.g. a
            graph-batched divergence for molecules of different sizes).
        field_divergence: ``div = field_divergence(t, x)`` (batch,), the exact divergence computed by the field
            itself without autograd (e.g. :func:`compscope.nn.egnn_update_divergence` for EGNN fields, far
            cheaper); replaces ``divergence`` when given.
    """
    div_fn = divergence_exact if divergence is None else divergence
    s_nodes, w_nodes = quadrature_nodes(nodes, panels)
    s_grid = np.unique(np.concatenate([np.linspace(0.0, 1.0, int(n_steps) + 1), s_nodes]))
    if reverse:  # data -> base: walk the flow time from 1 down to 0
        s_grid = s_grid[::-1]
    at_node = {int(np.nonzero(s_grid == s)[0][0]): float(w) for s, w in zip(s_nodes, w_nodes)}
    grid = [float(s) for s in s_grid]
    a = torch.zeros(len(x), dtype=x.dtype, device=x.device)
    x = x.detach()
    sign = -1.0 if reverse else 1.0
    for k in range(len(grid)):
        if k in at_node and field_divergence is not None:
            with torch.no_grad():
                a = a + sign * at_node[k] * field_divergence(grid[k], x).detach()
        elif k in at_node:
            with torch.enable_grad():
                xk = x.clone().requires_grad_(True)
                div = div_fn(field(grid[k], xk), xk)
            a = a + sign * at_node[k] * div.detach()
        if k + 1 < len(grid):
            with torch.no_grad():
                x = ode_solve(field, x, grid[k:k + 2], "rk4")
    return x, a


def straight_path(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x_t, u_t)``: the point ``(1 - t) x0 + t x1`` of the straight conditional path and its velocity
    ``x1 - x0`` (``t`` broadcastable to ``x0``)."""
    return (1 - t) * x0 + t * x1, x1 - x0


def kabsch(x: torch.Tensor, y: torch.Tensor, proper: bool = False) -> torch.Tensor:
    """Orthogonal matrices ``R`` (batch, dim, dim) minimising ``|x R - y|^2`` for centred point clouds
    ``x, y`` (batch, n, dim); ``proper=True`` restricts to rotations (det +1), otherwise reflections are allowed
    (the O(n) orbit of an E(n)-equivariant flow)."""
    h = x.transpose(1, 2) @ y  # (b, d, d)
    u, _, vt = torch.linalg.svd(h)
    if proper:
        d = torch.sign(torch.linalg.det(u @ vt))
        u = torch.cat([u[..., :-1], u[..., -1:] * d[:, None, None]], -1)
    return u @ vt


def align_permutation(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Permutation indices (batch, n) such that ``x[b, perm[b]]`` is closest to ``y[b]`` in summed squared
    distance (Hungarian algorithm, :func:`scipy.optimize.linear_sum_assignment`)."""
    from scipy.optimize import linear_sum_assignment

    cost = torch.cdist(y.detach().double(), x.detach().double()).pow(2).cpu().numpy()  # (b, n_y, n_x)
    return torch.as_tensor(np.stack([linear_sum_assignment(c)[1] for c in cost]), device=x.device)


def _centre(x: torch.Tensor) -> torch.Tensor:
    return x - x.mean(1, keepdim=True)


def equivariant_ot(x0: torch.Tensor, x1: torch.Tensor, permute: bool = True, rotate: bool = True,
                   pair: bool = True, n_iter: int = 2) -> torch.Tensor:
    """Base draws ``x0`` re-paired and aligned to data ``x1`` (both (batch, n, dim), centred on return).

    1. ``pair``: minibatch optimal transport, a Hungarian assignment of base to data draws on the squared
       distance after optimal orthogonal alignment of every (base, data) pair (batched Kabsch; plain squared
       distance when not ``rotate``);
    2. each paired base draw is aligned to its data draw by ``n_iter`` rounds of the optimal permutation
       (``permute``, Hungarian on particle distances) and the optimal orthogonal map (``rotate``, Kabsch).

    The per-pair permutation is not part of the pairing cost (``batch^2`` Hungarian problems per step), only of
    the final alignment.

    The base density is invariant under both, so the pairs stay draws of the base; the straight paths between
    them are shorter, the regression target of flow matching less noisy (Klein, Krämer & Noé, NeurIPS 2023).
    """
    from scipy.optimize import linear_sum_assignment

    x0, x1 = _centre(x0.detach()), _centre(x1.detach())
    b = len(x0)
    if pair and b > 1:
        a = x0[:, None].expand(b, b, *x0.shape[1:]).reshape(b * b, *x0.shape[1:])
        d = x1[None].expand(b, b, *x1.shape[1:]).reshape(b * b, *x1.shape[1:])
        a, d = a.double(), d.double()
        if rotate:
            a = a @ kabsch(a, d)
        cost = ((a - d) ** 2).sum((1, 2)).reshape(b, b)  # [base i, data j]
        rows, cols = linear_sum_assignment(cost.cpu().numpy())
        order = torch.as_tensor(rows[np.argsort(cols)], device=x0.device)  # base index for each data draw
        x0 = x0[order]
    for _ in range(int(n_iter) if (permute or rotate) else 0):
        if permute:
            perm = align_permutation(x0, x1)
            x0 = torch.gather(x0, 1, perm[..., None].expand_as(x0))
        if rotate:
            x0 = x0 @ kabsch(x0.double(), x1.double()).to(x0.dtype)
    return x0
