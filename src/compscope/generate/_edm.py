"""E(3) Equivariant Diffusion Model (EDM; Hoogeboom, Satorras, Vignac & Welling, ICML 2022)."""

from __future__ import annotations

import torch

from ._batch import MolBatch, com_free_noise
from ._model import MoleculeGenerator
from ._schedule import PolynomialSchedule


def _sum_per_graph(v: torch.Tensor, mb: MolBatch) -> torch.Tensor:
    return torch.zeros(mb.num_graphs, dtype=v.dtype, device=v.device).index_add(0, mb.batch, v)


class EDM(MoleculeGenerator):
    """EDM: variance-preserving diffusion of CoM-free positions and continuous atom features, eps-prediction.

    ``z_t = alpha_t [x, h] + sigma_t eps`` (EDM eq. 4) with the polynomial schedule; the network predicts
    ``eps`` and is trained with the simplified L2 objective (EDM eq. 17). Sampling runs the ancestral
    chain ``p(z_s | z_t)`` (EDM Alg. 2) from ``t = 1`` to ``0`` and decodes ``x = z_0 / alpha_0`` and
    ``argmax`` of the one-hot channels.

    Args:
        timesteps: T of the training chain (EDM: 1000).
        sample_steps: number of denoising steps at sampling (default ``timesteps``; fewer steps skip
            along the same schedule).
        noise_precision: s of the polynomial schedule (EDM: 1e-5).
        **kwargs: see :class:`MoleculeGenerator` (hidden, num_layers, condition, ...).
    """

    def __init__(self, timesteps: int = 1000, sample_steps: int | None = None, noise_precision: float = 1e-5,
                 **kwargs):
        super().__init__(**kwargs)
        self.schedule = PolynomialSchedule(timesteps, noise_precision)
        self.timesteps = timesteps
        self.sample_steps = sample_steps or timesteps

    @staticmethod
    def _alpha_sigma(gamma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.sqrt(torch.sigmoid(-gamma)), torch.sqrt(torch.sigmoid(gamma))

    def loss(self, mb: MolBatch) -> torch.Tensor:
        x, h = self.encode(mb)
        t = torch.randint(0, self.timesteps + 1, (mb.num_graphs,), device=x.device).to(x.dtype) / self.timesteps
        alpha, sigma = self._alpha_sigma(self.schedule(t))  # (G,)
        a, s = alpha[mb.batch, None], sigma[mb.batch, None]
        eps_x = com_free_noise(mb.batch, mb.num_graphs, x)  # (N, 3)
        eps_h = torch.randn_like(h)  # (N, 6)
        pred_x, pred_h = self.dynamics(a * x + s * eps_x, a * h + s * eps_h, t, mb, self.context_of(mb))
        err = ((pred_x - eps_x) ** 2).sum(-1) + ((pred_h - eps_h) ** 2).sum(-1)  # (N,)
        per_mol = _sum_per_graph(err, mb) / (mb.n_atoms.to(x.dtype) * (3 + h.shape[1]))
        return per_mol.mean()

    @torch.no_grad()
    def sample_batch(self, mb: MolBatch, generator: torch.Generator | None = None) -> MolBatch:
        dtype = next(self.parameters()).dtype
        n, g = len(mb.batch), mb.num_graphs
        ctx = self.context_of(mb)
        z_x = com_free_noise(mb.batch, g, torch.empty(0, dtype=dtype, device=mb.batch.device))
        z_h = torch.randn(n, 6, dtype=dtype, device=z_x.device)
        grid = torch.linspace(1.0, 0.0, self.sample_steps + 1, dtype=torch.float64)
        for k in range(self.sample_steps):
            t, s = grid[k], grid[k + 1]
            gamma_t = self.schedule(t.reshape(1)).to(dtype)
            gamma_s = self.schedule(s.reshape(1)).to(dtype)
            eps_x, eps_h = self.dynamics(z_x, z_h, t.to(dtype).expand(g), mb, ctx)
            # p(z_s | z_t), EDM App. A: sigma^2_{t|s} = sigma_t^2 - alpha_{t|s}^2 sigma_s^2
            sigma2_ts = -torch.expm1(torch.nn.functional.softplus(gamma_s) - torch.nn.functional.softplus(gamma_t))
            log_a2_t, log_a2_s = torch.nn.functional.logsigmoid(-gamma_t), torch.nn.functional.logsigmoid(-gamma_s)
            alpha_ts = torch.exp(0.5 * (log_a2_t - log_a2_s))
            sigma_t, sigma_s = torch.sqrt(torch.sigmoid(gamma_t)), torch.sqrt(torch.sigmoid(gamma_s))
            coef = sigma2_ts / alpha_ts / sigma_t
            std = torch.sqrt(sigma2_ts) * sigma_s / sigma_t
            z_x = (z_x - coef * eps_x) / alpha_ts + std * com_free_noise(mb.batch, g, z_x)
            z_h = (z_h - coef * eps_h) / alpha_ts + std * torch.randn_like(z_h)
        # p(x | z_0)
        gamma_0 = self.schedule(torch.zeros(1, dtype=torch.float64)).to(dtype)
        alpha0, sigma0 = self._alpha_sigma(gamma_0)
        eps_x, eps_h = self.dynamics(z_x, z_h, torch.zeros(g, dtype=dtype), mb, ctx)
        x = z_x / alpha0 - sigma0 / alpha0 * eps_x
        h = z_h / alpha0 - sigma0 / alpha0 * eps_h
        mb.x, mb.types = x, self.decode(h)
        return mb
