"""Reverse-KL (energy-based) training of the equivariant flow: the loss against its closed form on a Gaussian
target, descent toward the known optimum, NaN/inf energies left out and counted, the config route with init_from."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from compscope.errors import ConfigError
from compscope.sampling import FlowModule, GaussianMixture, SamplingInputError, Target, train_flow
from compscope.train import read_metrics

from .conftest import FIXTURES

N, DIM, S = 3, 2, 2.0  # 3 particles in 2D; target: isotropic Gaussian of sd S (mean-free subspace: K = 4 dims)
K, D = (N - 1) * DIM, N * DIM


def _module(dtype=torch.float64, **kw) -> FlowModule:
    torch.manual_seed(0)
    m = FlowModule({"n_particles": N, "dim": DIM, "hidden": 16, "num_layers": 1, "n_steps": 3},
                   target="dw4", loss="reverse_kl", train_steps=3, **kw)
    m.flow.to(dtype)
    return m


def _gaussian() -> GaussianMixture:
    return GaussianMixture(torch.zeros(1, D), [S], n_particles=N, dim=DIM)


def _kl_per_dof(sd: float) -> float:
    """E_q[u + log q] / dof for q = N(0, sd^2) on the K-dim mean-free subspace and u = -log N(0, S^2 I_D)."""
    kl = 0.5 * K * (sd**2 / S**2 - 1 - 2 * math.log(sd / S))  # KL(q || p restricted to the subspace)
    return (kl + (D - K) * (math.log(S) + 0.5 * math.log(2 * math.pi))) / K


def _loss(m: FlowModule, n: int = 1000) -> float:
    with torch.no_grad():
        x, log_q = m.flow.sample(n)
    return float((m.target.energy(x) + log_q).mean() / K)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_reverse_kl_matches_closed_form_and_descends_to_the_optimum(dtype):
    m = _module(dtype)
    m.target = _gaussian()
    # untrained flow ~ identity: q = base N(0, 1) on the subspace
    start = _loss(m)
    assert start == pytest.approx(_kl_per_dof(1.0), abs=0.03)
    optimum = _kl_per_dof(S)
    assert start - optimum > 0.3
    # the training loss (Hutchinson, backpropagated through the solver) is an unbiased estimate of the same value
    torch.manual_seed(1)
    est = m.reverse_kl_loss(500)[0].item()
    assert est == pytest.approx(start, abs=0.06)
    opt = torch.optim.Adam(m.parameters(), lr=5e-3)
    for _ in range(40):
        loss, bad = m.reverse_kl_loss(32)
        assert bad == 0
        opt.zero_grad()
        loss.backward()
        opt.step()
    end = _loss(m)
    assert end - optimum < 0.35 * (start - optimum)  # most of the way to KL = 0
    assert end >= optimum - 0.02  # never below the minimum (up to Monte Carlo error)
    with torch.no_grad():
        x, _ = m.flow.sample(1000)
    assert x.pow(2).sum((1, 2)).mean().item() / K == pytest.approx(S**2, rel=0.4)  # spread moved toward S^2


class _HalfNaN(Target):
    """Gaussian energy, NaN where the first coordinate is positive, +inf where the second is above 1."""

    name = "halfnan"

    def __init__(self):
        self.n_particles, self.dim = N, DIM

    def _energy(self, x):
        u = 0.5 * x.pow(2).sum((1, 2))
        u = torch.where(x[:, 0, 0] > 0, torch.full_like(u, float("nan")), u)
        return torch.where(x[:, 0, 1] > 1, torch.full_like(u, float("inf")), u)


def test_nan_and_inf_energies_are_left_out_and_counted():
    m = _module()
    m.target = _HalfNaN()
    torch.manual_seed(3)
    loss, bad = m.reverse_kl_loss(200)
    assert 60 < bad < 140 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in m.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)

    class AllNaN(_HalfNaN):
        def _energy(self, x):
            return torch.full(x.shape[:1], float("nan"), dtype=x.dtype)

    m.target = AllNaN()
    assert m.reverse_kl_loss(16) == (None, 16)
    with warnings.catch_warnings():  # self.log outside a Trainer only warns
        warnings.simplefilter("ignore")
        assert m.training_step(torch.zeros(16, N, DIM, dtype=torch.float64), 0) is None  # the step is skipped
    with pytest.raises(SamplingInputError, match="flow of"):
        m.target = GaussianMixture(torch.zeros(1, 8), [1.0], n_particles=4, dim=2)
    with pytest.raises(ConfigError, match="target"):
        FlowModule({"n_particles": N, "dim": DIM}, loss="reverse_kl")


def test_sample_with_graph_matches_the_detached_sample():
    m = _module()
    x1, lq1 = m.flow.sample(5, generator=torch.Generator().manual_seed(0))
    x2, lq2 = m.flow.sample(5, generator=torch.Generator().manual_seed(0), create_graph=True)
    assert lq2.requires_grad and not lq1.requires_grad
    assert torch.allclose(x1, x2.detach()) and torch.allclose(lq1, lq2.detach())


def test_reverse_kl_fine_tune_through_the_config(tmp_path):
    data = str(FIXTURES / "dw4_test_300.npy")
    base = {"seed": 0, "flow": {"hidden": 8, "num_layers": 1, "n_steps": 2},
            "data": {"target": "dw4", "train": data, "valid": data, "n_train": 32, "n_valid": 16, "batch_size": 16},
            "module": {"lr": 1e-3, "loss": "flow_matching"},
            "trainer": {"max_epochs": 1, "progress_bar": False, "num_threads": 1}}
    train_flow(base, out=tmp_path / "fm")
    tune = {**base, "init_from": str(tmp_path / "fm"),
            "module": {"lr": 1e-4, "loss": "reverse_kl", "train_steps": 2, "hutchinson": True, "energy_high": 1e3}}
    train_flow(tune, out=tmp_path / "rkl")
    rows = read_metrics(tmp_path / "rkl")
    assert np.isfinite(rows[-1]["val_nll"])
    assert any("train_invalid" in r for r in rows) and any(np.isfinite(r.get("train_loss", np.nan)) for r in rows)
