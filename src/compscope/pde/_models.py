"""Neural PDE solvers: MP-PDE (Brandstetter et al. 2022, Sec. 2) and an FNO baseline (Li et al. 2021).

Both map a window of K past time steps to the next K (temporal bundling, paper Sec. 2.3) and share the
output rule u(t_k) = u(t_last) + k dt d_k (paper Eq. 10), so either plugs into the same training loop
(pushforward trick) and rollout.

Shapes (B trajectories, K time window, N grid points, P PDE coefficients):
    forward(u (B, K, N), x (N,), t (B,) time of the last input step, cond (B, P)) -> (B, K, N)
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from compscope.errors import ConfigError
from compscope.train import instantiate, normalize_spec

__all__ = ["MPPDE", "FNO1d", "MODEL_REGISTRY", "EQUATION_ARGS", "build_model", "model_spec", "mesh_edges",
           "count_parameters"]


def _mlp(din: int, dh: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(din, dh), nn.SiLU(), nn.Linear(dh, dh), nn.SiLU())


def mesh_edges(n: int, neighbors: int, periodic: bool) -> torch.Tensor:
    """Edges (2, E) [sender, receiver] of the 1D mesh graph: each node receives from the ``neighbors``
    nearest nodes on each side (wrapping around on a periodic domain)."""
    recv, send = [], []
    for i in range(n):
        for o in range(-neighbors, neighbors + 1):
            j = i + o
            if o == 0:
                continue
            if periodic:
                j %= n
            elif not 0 <= j < n:
                continue
            recv.append(i)
            send.append(j)
    return torch.tensor([send, recv], dtype=torch.long)


class _MPLayer(nn.Module):
    """One message-passing step (paper Eqs. 8-9): m_ij = phi(h_i, h_j, u_i - u_j, x_i - x_j, theta),
    h_i <- h_i + psi(h_i, mean_j m_ij, theta), then instance normalisation over the nodes."""

    def __init__(self, hidden: int, window: int, n_params: int) -> None:
        super().__init__()
        self.phi = _mlp(2 * hidden + window + 1 + n_params, hidden)
        self.psi = _mlp(2 * hidden + n_params, hidden)
        self.norm = nn.InstanceNorm1d(hidden)

    def forward(self, h, u, dx, cond, send, recv, deg):
        # h (B, N, H), u (B, N, K), dx (E, 1), cond (B, P)
        B, E = h.shape[0], send.shape[0]
        c_e = cond[:, None, :].expand(B, E, cond.shape[-1])
        m = self.phi(torch.cat([h[:, recv], h[:, send], u[:, recv] - u[:, send], dx.expand(B, E, 1), c_e], -1))
        agg = torch.zeros_like(h).index_add_(1, recv, m) / deg  # (B, N, H)
        c_n = cond[:, None, :].expand(B, h.shape[1], cond.shape[-1])
        h = h + self.psi(torch.cat([h, agg, c_n], -1))
        return self.norm(h.transpose(1, 2)).transpose(1, 2)


class MPPDE(nn.Module):
    """Message-passing neural PDE solver on the 1D mesh graph.

    Args:
        time_window: K, steps in and out (temporal bundling).
        dt: stored time step.
        domain_length: L; relative positions are wrapped to [-L/2, L/2) on a periodic domain.
        periodic: periodic domain (then absolute positions are not an input, so the solver is exactly
            equivariant to cyclic grid shifts).
        n_params: number of PDE coefficients the solver is conditioned on.
        tmax: time horizon (time input is t / tmax).
        hidden: node feature width.
        layers: message-passing steps.
        neighbors: nodes on each side a node receives messages from.
    """

    def __init__(self, time_window: int = 25, dt: float = 4.0 / 249, domain_length: float = 16.0,
                 periodic: bool = True, n_params: int = 3, tmax: float = 4.0, hidden: int = 128,
                 layers: int = 6, neighbors: int = 3) -> None:
        super().__init__()
        self.config = dict(time_window=time_window, dt=dt, domain_length=domain_length, periodic=periodic,
                           n_params=n_params, tmax=tmax, hidden=hidden, layers=layers, neighbors=neighbors)
        self.K, self.dt, self.L, self.periodic, self.tmax = time_window, dt, domain_length, periodic, tmax
        self.neighbors = neighbors
        n_in = time_window + 1 + n_params + (0 if periodic else 1)
        self.encoder = _mlp(n_in, hidden)
        self.layers = nn.ModuleList(_MPLayer(hidden, time_window, n_params) for _ in range(layers))
        # 1D CNN decoder over the feature axis (paper Sec. 2.3): H -> K outputs
        l1 = (hidden - 16) // 3 + 1
        if l1 < time_window:
            raise ValueError(f"hidden={hidden} is too small for time_window={time_window}: need "
                             f"(hidden - 16) // 3 + 1 >= time_window, e.g. hidden >= {3 * time_window + 13}")
        self.decoder = nn.Sequential(nn.Conv1d(1, 8, 16, stride=3), nn.SiLU(), nn.Conv1d(8, 1, l1 - time_window + 1))
        self._edges: dict[tuple[int, str], torch.Tensor] = {}

    def _graph(self, x: torch.Tensor):
        key = (x.shape[0], str(x.device))
        if key not in self._edges:
            self._edges[key] = mesh_edges(x.shape[0], self.neighbors, self.periodic).to(x.device)
        send, recv = self._edges[key]
        dx = x[recv] - x[send]
        if self.periodic:
            dx = torch.remainder(dx + 0.5 * self.L, self.L) - 0.5 * self.L
        deg = torch.bincount(recv, minlength=x.shape[0]).clamp(min=1).to(x.dtype)[None, :, None]
        return send, recv, (dx / self.L)[:, None], deg

    def forward(self, u: torch.Tensor, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        B, K, N = u.shape
        send, recv, dx, deg = self._graph(x)
        un = u.transpose(1, 2)  # (B, N, K)
        feats = [un, (t / self.tmax)[:, None, None].expand(B, N, 1), cond[:, None, :].expand(B, N, cond.shape[-1])]
        if not self.periodic:
            feats.append((x / self.L)[None, :, None].expand(B, N, 1))
        h = self.encoder(torch.cat(feats, -1))  # (B, N, H)
        for layer in self.layers:
            h = layer(h, un, dx, cond, send, recv, deg)
        d = self.decoder(h.reshape(B * N, 1, -1)).reshape(B, N, K)  # (B, N, K)
        steps = self.dt * torch.arange(1, K + 1, dtype=u.dtype, device=u.device)  # (K,)
        return u[:, -1:, :] + (steps[None, :, None] * d.transpose(1, 2))  # (B, K, N)


class _SpectralConv1d(nn.Module):
    """Fourier layer: multiply the lowest ``modes`` Fourier coefficients by learned complex matrices."""

    def __init__(self, width: int, modes: int) -> None:
        super().__init__()
        self.modes = modes
        scale = 1.0 / (width * width)
        # real storage (in, out, modes, 2) so DDP all-reduces plain real tensors
        self.weight = nn.Parameter(scale * torch.randn(width, width, modes, 2))

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # (B, C, N)
        n = h.shape[-1]
        hf = torch.fft.rfft(h, dim=-1)  # (B, C, n//2+1)
        m = min(self.modes, hf.shape[-1])
        w = torch.view_as_complex(self.weight[:, :, :m].contiguous())
        out = torch.zeros_like(hf)
        out[..., :m] = torch.einsum("bim,iom->bom", hf[..., :m], w)
        return torch.fft.irfft(out, n=n, dim=-1)


class FNO1d(nn.Module):
    """Fourier neural operator baseline with the same bundling and output rule as :class:`MPPDE`.

    Args:
        time_window, dt, domain_length, periodic, n_params, tmax: as :class:`MPPDE`.
        width: channels.
        modes: Fourier modes kept per layer (capped at N/2 + 1).
        layers: Fourier layers.
    """

    def __init__(self, time_window: int = 25, dt: float = 4.0 / 249, domain_length: float = 16.0,
                 periodic: bool = True, n_params: int = 3, tmax: float = 4.0, width: int = 64,
                 modes: int = 20, layers: int = 4) -> None:
        super().__init__()
        self.config = dict(time_window=time_window, dt=dt, domain_length=domain_length, periodic=periodic,
                           n_params=n_params, tmax=tmax, width=width, modes=modes, layers=layers)
        self.K, self.dt, self.L, self.periodic, self.tmax = time_window, dt, domain_length, periodic, tmax
        n_in = time_window + 1 + n_params + (0 if periodic else 1)
        self.lift = nn.Conv1d(n_in, width, 1)
        self.spectral = nn.ModuleList(_SpectralConv1d(width, modes) for _ in range(layers))
        self.pointwise = nn.ModuleList(nn.Conv1d(width, width, 1) for _ in range(layers))
        self.project = nn.Sequential(nn.Conv1d(width, 128, 1), nn.GELU(), nn.Conv1d(128, time_window, 1))

    def forward(self, u: torch.Tensor, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        B, K, N = u.shape
        feats = [u, (t / self.tmax)[:, None, None].expand(B, 1, N), cond[:, :, None].expand(B, cond.shape[-1], N)]
        if not self.periodic:
            feats.append((x / self.L)[None, None, :].expand(B, 1, N))
        h = self.lift(torch.cat(feats, 1))  # (B, W, N)
        for i, (sc, pw) in enumerate(zip(self.spectral, self.pointwise)):
            h = sc(h) + pw(h)
            if i < len(self.spectral) - 1:
                h = nn.functional.gelu(h)
        d = self.project(h)  # (B, K, N)
        steps = self.dt * torch.arange(1, K + 1, dtype=u.dtype, device=u.device)
        return u[:, -1:, :] + steps[None, :, None] * d


# named presets (pdearena-style MODEL_REGISTRY): reproducible sizes by name, each a class_path spec
MODEL_REGISTRY: dict[str, dict] = {
    "mp-pde": {"class_path": "compscope.pde.MPPDE", "init_args": dict(hidden=128, layers=6, neighbors=3)},  # paper
    "mp-pde-small": {"class_path": "compscope.pde.MPPDE", "init_args": dict(hidden=96, layers=4, neighbors=3)},
    "mp-pde-tiny": {"class_path": "compscope.pde.MPPDE", "init_args": dict(hidden=88, layers=2, neighbors=2)},
    "fno": {"class_path": "compscope.pde.FNO1d", "init_args": dict(width=64, modes=20, layers=4)},
    "fno-small": {"class_path": "compscope.pde.FNO1d", "init_args": dict(width=48, modes=16, layers=4)},
    "fno-tiny": {"class_path": "compscope.pde.FNO1d", "init_args": dict(width=16, modes=8, layers=2)},
}

# what the equation and the module set; a model section that sets them would disagree with the data
EQUATION_ARGS = ("time_window", "dt", "domain_length", "periodic", "n_params", "tmax")


def model_spec(spec: str | Mapping) -> dict:
    """The ``{"class_path", "init_args"}`` form of a model section (a preset name, ``{"preset", "init_args"}``
    or a class_path spec); raises :class:`~compscope.errors.ConfigError` for a section that sets what the
    equation fixes."""
    spec = normalize_spec(spec, MODEL_REGISTRY, section="model")
    clash = sorted(set(spec["init_args"]) & set(EQUATION_ARGS))
    if clash:
        raise ConfigError(f"config section 'model': {clash} come from the equation and the module",
                          hint="set module.time_window for K; the equation fixes dt, domain length, boundaries "
                               "and the number of coefficients")
    return spec


def build_model(spec: str | Mapping, **equation_args) -> nn.Module:
    """Build a model from a preset name (:data:`MODEL_REGISTRY`), ``{"preset", "init_args"}`` or
    ``{"class_path": ..., "init_args": {...}}`` with :func:`compscope.train.instantiate`.

    ``equation_args`` (time_window, dt, domain_length, periodic, n_params, tmax) come from the equation; the
    section may not set them (:func:`model_spec`).
    """
    return instantiate(model_spec(spec), default_module="compscope.pde", section="model", **equation_args)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters of a model."""
    return sum(p.numel() for p in model.parameters())
