"""E-NF: exact log-density against a brute-force Jacobian, Hutchinson unbiasedness, E(n)/permutation invariance of
log q, sample/log_prob consistency, float32/float64."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from compscope.nn import divergence_exact, divergence_hutchinson
from compscope.sampling import EquivariantCNF, SamplingInputError
from compscope.sampling._flow import mean_free_log_normal, quadrature_nodes
from compscope.testing._physics import random_rotation


def _flow(n=3, dim=2, steps=8, seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    # init_gain 1: an O(1) vector field, far from the identity map (the trained regime, not the trivial one)
    return EquivariantCNF(n, dim, hidden=8, num_layers=2, init_gain=1.0, coords_range=3.0, n_steps=steps).to(dtype)


def _subspace_basis(n: int, dim: int) -> torch.Tensor:
    """Orthonormal basis (n dim, (n-1) dim) of the zero-centre-of-mass subspace."""
    p = torch.eye(n * dim, dtype=torch.float64) - torch.kron(torch.full((n, n), 1.0 / n, dtype=torch.float64),
                                                            torch.eye(dim, dtype=torch.float64))
    u, s, _ = torch.linalg.svd(p)
    return u[:, : (n - 1) * dim]


def test_log_density_matches_brute_force_jacobian():
    # change of variables with the full Jacobian of the sampling map z -> x (autograd through the RK4 solver) in
    # the (n-1) dim subspace; the CNF's integrated divergence agrees up to the O(h^4) RK4 error, which shrinks
    # ~16x per halving of the step
    n, dim = 3, 2
    q = _subspace_basis(n, dim)
    gen = torch.Generator().manual_seed(1)
    z_sub = torch.randn(1, (n - 1) * dim, generator=gen, dtype=torch.float64)
    errors = []
    for steps in (4, 8, 16):
        flow = _flow(n, dim, steps)
        for zs in z_sub:
            z = (q @ zs).reshape(1, n, dim)

            def push(v, flow=flow):
                x, _ = flow.integrate((q @ v).reshape(1, n, dim), 0.0, 1.0, create_graph=True, divergence=False)
                return q.T @ x.reshape(-1)

            jac = torch.autograd.functional.jacobian(push, zs)
            brute = mean_free_log_normal(z) - torch.linalg.slogdet(jac)[1]
            x, a = flow.integrate(z, 0.0, 1.0)
            cnf = mean_free_log_normal(z) - a
            errors.append((steps, (cnf - brute).abs().item()))
            # and the inverse direction (log_prob from data) gives the same density at x
            if steps == 16:
                torch.testing.assert_close(flow.log_prob(x), cnf, rtol=0, atol=1e-4)
    err = {s: max(e for t, e in errors if t == s) for s in (4, 8, 16)}
    assert err[16] < 1e-5, err
    assert err[4] / err[16] > 30, err  # fourth order: ideally 256


def test_divergence_estimators():
    flow = _flow(3, 2)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 3, 2, generator=gen, dtype=torch.float64).requires_grad_(True)
    v = flow.field(0.3, x)
    exact = divergence_exact(v, x)
    jac = torch.stack([torch.autograd.functional.jacobian(lambda y: flow.field(0.3, y[None])[0], xi).reshape(6, 6)
                       for xi in x.detach()])
    torch.testing.assert_close(exact, torch.diagonal(jac, dim1=1, dim2=2).sum(1), rtol=1e-10, atol=1e-10)
    # Hutchinson with centred Rademacher probes: unbiased for the divergence in the subspace (= the full trace of
    # the projected field); the mean of 400 probes within 5 standard errors
    probes = []
    for _ in range(400):
        eps = torch.randint(0, 2, x.shape, generator=gen).double() * 2 - 1
        eps = eps - eps.mean(1, keepdim=True)
        probes.append(divergence_hutchinson(v, x, eps).detach())
    probes = torch.stack(probes)
    se = probes.std(0) / math.sqrt(len(probes))
    assert ((probes.mean(0) - exact.detach()).abs() < 5 * se + 1e-12).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_log_q_is_invariant(dtype):
    flow = _flow(3, 3, steps=3, dtype=dtype)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 3, generator=gen, dtype=torch.float64).to(dtype)
    base = flow.log_prob(x)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)
    for reflect in (False, True):
        r = random_rotation(gen, reflect=reflect).to(dtype)
        torch.testing.assert_close(flow.log_prob(x @ r.T + torch.tensor([1.0, -2.0, 0.5], dtype=dtype)), base, **tol)
    perm = torch.tensor([2, 0, 1])
    torch.testing.assert_close(flow.log_prob(x[:, perm]), base, **tol)
    assert base.dtype == dtype and torch.isfinite(base).all()


def test_identity_flow_gives_the_base_density():
    flow = EquivariantCNF(3, 2, hidden=8, num_layers=1, n_steps=2).double()
    for p in flow.field.egnn.layers.parameters():
        torch.nn.init.zeros_(p)  # phi_x = 0: v = 0, the flow is the identity
    x = torch.randn(6, 3, 2, dtype=torch.float64)
    x = x - x.mean(1, keepdim=True)
    torch.testing.assert_close(flow.log_prob(x), mean_free_log_normal(x), rtol=0, atol=1e-12)


def test_sample_and_log_prob_agree():
    # forward (base -> data) and backward (data -> base) integrations give one density, up to the RK4 error
    flow = _flow(3, 2, steps=12)
    x, log_q = flow.sample(4, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(flow.log_prob(x), log_q, rtol=0, atol=1e-4)
    with pytest.raises(SamplingInputError):
        flow.sample(0)
    with pytest.raises(SamplingInputError, match="shape"):
        flow.log_prob(torch.zeros(2, 4, 2, dtype=torch.float64))


def _brute_log_q(flow, z, q, steps=48):
    """Change of variables with the autograd Jacobian of the fine-step RK4 map z -> x in the mean-free subspace."""
    n, dim = z.shape[1], z.shape[2]

    def push(v):
        x, _ = flow.integrate((q @ v).reshape(1, n, dim), 0.0, 1.0, n_steps=steps, create_graph=True,
                              divergence=False)
        return q.T @ x.reshape(-1)

    jac = torch.autograd.functional.jacobian(push, q.T @ z.reshape(-1))
    return (mean_free_log_normal(z) - torch.linalg.slogdet(jac)[1]).item()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_quadrature_log_density_matches_brute_force_jacobian(dtype):
    # the exact divergence by composite Gauss-Legendre in time along the RK4 path (div_nodes) against the change of
    # variables with the brute-force Jacobian of a fine-step solve (float64 flow): the error falls with the nodes,
    # the sample/log_prob directions agree, and float32 stays within float32 round-off of the float64 truth
    n, dim = 3, 2
    q = _subspace_basis(n, dim)
    flow64 = _flow(n, dim, steps=8)
    gen = torch.Generator().manual_seed(3)
    zs = [q @ torch.randn((n - 1) * dim, generator=gen, dtype=torch.float64) for _ in range(2)]
    truth = torch.tensor([_brute_log_q(flow64, z.reshape(1, n, dim), q) for z in zs], dtype=torch.float64)
    z = torch.stack(zs).reshape(2, n, dim)
    flow = _flow(n, dim, steps=8, dtype=dtype)
    errors = {}
    for nodes, panels in ((2, 1), (4, 2), (6, 2)):
        flow.div_panels = panels
        x, a = flow.integrate(z.to(dtype), 0.0, 1.0, div_nodes=nodes)
        errors[nodes] = ((mean_free_log_normal(z) - a.double()) - truth).abs().max().item()
    tol = 2e-3 if dtype == torch.float32 else 1e-4
    assert errors[6] < tol, errors
    if dtype == torch.float64:
        assert errors[2] > errors[4] > errors[6], errors  # the quadrature error is real and shrinks with the nodes
    # both directions with the quadrature: log_prob(x) of a draw is its log q
    flow = _flow(n, dim, steps=16, dtype=dtype)
    flow.div_nodes, flow.div_panels = 8, 3
    x, log_q = flow.sample(3, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(flow.log_prob(x), log_q, rtol=0, atol=tol)
    assert log_q.dtype == dtype
    # the per-stage path is still available (div_nodes=None) and agrees
    torch.testing.assert_close(flow.log_prob(x, div_nodes=None, n_steps=48), log_q, rtol=0, atol=tol)


def test_quadrature_nodes_and_bad_input():
    t, w = quadrature_nodes(5, 2)
    assert len(t) == 10 and (np.diff(t) > 0).all() and 0 < t[0] and t[-1] < 1
    for k in range(10):  # exact for polynomials of degree 2 * 5 - 1 on each panel
        assert abs((w * t**k).sum() - 1 / (k + 1)) < 1e-13
    for bad in (0, -2, 1.5):
        with pytest.raises(SamplingInputError, match="div_nodes"):
            EquivariantCNF(3, 2, div_nodes=bad)


def test_flow_integration_error_against_a_float64_reference():
    # a float32 flow checked against a fine float64 solve on the same base draws: the quadrature error shrinks with
    # the nodes down to float32 round-off, the positions agree, and the reference is solved in float64
    from compscope.sampling import flow_integration_error

    flow = _flow(4, 2, steps=8, dtype=torch.float32)
    rows = flow_integration_error(flow, 3, [(8, 1, 1), (24, 8, 3)], reference=(48, 12, 4), seed=1,
                                  reference_dtype=torch.float64)
    coarse, fine, ref = rows
    assert ref["reference"]["dtype"] == "torch.float64" and ref["reference"]["div_panels"] == 4
    assert fine["log_q_centred_rms"] < 1e-3 < coarse["log_q_rms"] and fine["log_q_max"] < coarse["log_q_max"]
    assert 0 < fine["log_q_rms"] and fine["x_rms"] < 1e-4 and fine["cpu_s_per_draw"] > 0
    assert next(flow.parameters()).dtype == torch.float32 and flow.div_panels == 1  # the flow is left as it was
