"""Large-step Metropolis-Hastings: exactness on a 2D double well (chi^2 against the exact density), the reverse
kernel term, batched = sequential, NaN energies, exploration mode, independence MH with a flow, resume."""

import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import ndtr

from compscope.errors import ResumeError, RunExistsError
from compscope.sampling import (
    DoubleWell4,
    EquivariantCNF,
    GaussianKernel,
    IndependenceProposal,
    LargeStepMH,
    SamplingInputError,
    Target,
    read_chain,
    run_chain,
)

A, B = 2.5, 0.6  # u(x, y) = A (x^2 - 1)^2 + B x + y^2 / 2: barrier ~2.5 kT, the right well ~1.2 kT higher


class DoubleWell2D(Target):
    """A tilted 2D double well in kT; ``nan_beyond``: the energy is NaN for x > that (a region OpenMM cannot
    evaluate)."""

    name = "dw2d"
    n_particles, dim = 1, 2

    def __init__(self, nan_beyond: float | None = None):
        self.nan_beyond = nan_beyond

    def _energy(self, x):
        px, py = x[:, 0, 0], x[:, 0, 1]
        u = A * (px**2 - 1) ** 2 + B * px + 0.5 * py**2
        if self.nan_beyond is not None:
            u = torch.where(px > self.nan_beyond, torch.full_like(u, math.nan), u)
        return u


_GRID = np.linspace(-3.5, 3.5, 200_001)
_PX = np.exp(-(A * (_GRID**2 - 1) ** 2 + B * _GRID))
_CDF = np.cumsum(_PX) / _PX.sum()
# 12 x bins of equal exact probability (every cell expects >= 250 of 20000 draws: chi^2 is then chi^2-distributed)
X_EDGES = np.interp(np.linspace(0, 1, 13), _CDF, _GRID)
X_EDGES[0], X_EDGES[-1] = -np.inf, np.inf
Y_EDGES = np.array([-np.inf, -1.0, 0.0, 1.0, np.inf])


def exact_samples(n: int, seed: int) -> torch.Tensor:
    """Exact draws: x by inverse CDF on a fine grid (plus jitter inside the cell), y ~ N(0, 1)."""
    rng = np.random.default_rng(seed)
    i = np.searchsorted(_CDF, rng.random(n))
    x = _GRID[i] + (rng.random(n) - 0.5) * (_GRID[1] - _GRID[0])
    return torch.as_tensor(np.stack([x, rng.standard_normal(n)], -1)[:, None, :])


def exact_bin_probs() -> np.ndarray:
    """Exact probabilities of the (x, y) bins."""
    return np.outer(np.full(12, 1 / 12), np.diff(ndtr(Y_EDGES)))


def chi2_per_dof(x: torch.Tensor) -> float:
    """Pearson chi^2 / dof of iid samples (n, 1, 2) against the exact bin probabilities."""
    ix = np.searchsorted(X_EDGES, x[:, 0, 0].numpy()) - 1
    iy = np.searchsorted(Y_EDGES, x[:, 0, 1].numpy()) - 1
    h = np.bincount(ix * 4 + iy, minlength=48).reshape(12, 4)
    e = exact_bin_probs() * len(x)
    return float(((h - e) ** 2 / e).sum() / (e.size - 1))


# The chains start from exact draws, so after any number of cycles their states are exact iid draws iff the kernel
# leaves the density invariant; chi^2/dof of n iid draws has mean 1 and sd sqrt(2 / 47) = 0.21. Measured spread:
# exact draws of 10 seeds gave 0.78-1.43 (mean 1.02, sd 0.18); the bound is mean + 6 sd of that spread. The broken
# samplers below land far outside it (seed 0: kernel taken as symmetric 585, reverse term dropped 940, exploration
# mode 734).
BOUND = 2.2
KERNEL = dict(scale=0.9, shift=(0.6, 0.0), contraction=0.3)  # asymmetric: drifts right, pulls to the origin


def _run(sampler, n=20_000, cycles=6, seed=0, target=None):
    target = target or DoubleWell2D()
    state = sampler.init(target, exact_samples(n, seed))
    g = torch.Generator().manual_seed(seed)
    for _ in range(cycles):
        state = sampler.step(target, state, g)
    return state


@pytest.mark.parametrize("n_proposals,n_local,local", [(1, 0, "mala"), (4, 0, "mala"), (4, 2, "mala"),
                                                       (4, 2, "hmc")])
def test_mh_with_an_asymmetric_kernel_keeps_the_exact_density(n_proposals, n_local, local):
    args = {"step_size": 0.05} if local == "mala" else {"name": "hmc", "step_size": 0.3, "n_leapfrog": 5}
    mh = LargeStepMH(GaussianKernel(**KERNEL), n_proposals=n_proposals, mh_steps=4, n_local=n_local, local=args)
    state = _run(mh)
    assert chi2_per_dof(state.x) < BOUND
    acc = state.acceptance.mean().item()
    assert 0.1 < acc < 0.9 and (state.mh_steps == 24).all()
    if n_local:
        assert state.local_accepted.sum() > 0


class DropReverse(LargeStepMH):
    def __init__(self, *a, variant, **k):
        super().__init__(*a, **k)
        self.variant = variant

    def log_accept_ratio(self, u_x, u_y, log_q_fwd, log_q_rev):
        if self.variant == "symmetric":  # the kernel treated as symmetric: no proposal densities at all
            return super().log_accept_ratio(u_x, u_y, log_q_fwd, log_q_fwd)
        return super().log_accept_ratio(u_x, u_y, log_q_fwd, torch.zeros_like(log_q_rev))  # reverse term dropped


@pytest.mark.parametrize("variant", ["symmetric", "no_reverse"])
def test_dropping_the_reverse_kernel_density_fails_the_chi2_test(variant):
    mh = DropReverse(GaussianKernel(**KERNEL), n_proposals=4, mh_steps=4, variant=variant)
    assert chi2_per_dof(_run(mh).x) > 5 * BOUND


def test_batched_proposals_equal_sequential_steps_in_distribution():
    """One cycle of 6 MH steps from one point: 6 proposals at once (first accepted) or one at a time."""
    target = DoubleWell2D()
    x0 = torch.tensor([[[-1.0, 0.0]]], dtype=torch.float64).expand(20_000, 1, 2).clone()

    def end_x(n_proposals, mh_steps, seed):
        mh = LargeStepMH(GaussianKernel(**KERNEL), n_proposals=n_proposals, mh_steps=mh_steps)
        s = mh.step(target, mh.init(target, x0), torch.Generator().manual_seed(seed))
        return s.x[:, 0, 0].numpy(), s

    batched, sb = end_x(6, 6, 1)
    sequential, ss = end_x(1, 6, 2)
    assert stats.ks_2samp(batched, sequential).pvalue > 1e-3
    assert (sb.mh_steps == 6).all() and (ss.mh_steps == 6).all()
    assert sb.proposals.sum() < ss.proposals.sum() * 1.6  # batching wastes only the proposals after an acceptance
    # the test can tell kernels apart: three steps are not six
    assert stats.ks_2samp(batched, end_x(1, 3, 3)[0]).pvalue < 1e-6


class _Gaussian2D:
    """A broad Gaussian ``q(y)`` (a stand-in flow) for independence MH on the 2D double well."""

    def __init__(self, scale=(1.3, 1.2), shift=(0.3, 0.0)):
        self.scale, self.shift = torch.tensor(scale, dtype=torch.float64), torch.tensor(shift, dtype=torch.float64)

    def sample(self, n, generator=None):
        y = self.shift + self.scale * torch.randn((n, 1, 2), generator=generator, dtype=torch.float64)
        return y, self.log_prob(y)

    def log_prob(self, y):
        z = (y[:, 0] - self.shift) / self.scale
        return (-0.5 * z.pow(2) - torch.log(self.scale) - 0.5 * math.log(2 * math.pi)).sum(-1)


@pytest.mark.parametrize("reuse", [True, False])
def test_independence_mh_reusing_every_draw_is_exact(reuse):
    """Independence proposals are reusable: the k draws of a batch are k sequential MH steps (none discarded).
    Started from exact draws the chain stays exact either way; reuse evaluates k proposals per k steps."""
    mh = LargeStepMH(IndependenceProposal(_Gaussian2D()), n_proposals=8, reuse_draws=reuse)
    state = _run(mh, cycles=3)
    assert chi2_per_dof(state.x) < BOUND
    assert (state.mh_steps == 24).all()
    if reuse:
        assert (state.proposals == 24).all() and state.accepted.max() > 1
    else:
        assert state.proposals.sum() > 24 * len(state.x) * 1.2  # draws after an acceptance are discarded


def test_reused_draws_equal_one_proposal_per_step_in_distribution():
    """One cycle of 6 independence-MH steps from one point: 6 reused draws of one batch, or 6 batches of one."""
    target = DoubleWell2D()
    x0 = torch.tensor([[[-1.0, 0.0]]], dtype=torch.float64).expand(20_000, 1, 2).clone()

    def end_x(n_proposals, mh_steps, seed):
        mh = LargeStepMH(IndependenceProposal(_Gaussian2D()), n_proposals=n_proposals, mh_steps=mh_steps)
        return mh.step(target, mh.init(target, x0), torch.Generator().manual_seed(seed)).x[:, 0, 0].numpy()

    assert stats.ks_2samp(end_x(6, 6, 1), end_x(1, 6, 2)).pvalue > 1e-3
    assert stats.ks_2samp(end_x(6, 6, 1), end_x(1, 1, 3)).pvalue < 1e-6  # one step is not six


def test_nan_energies_are_rejected_and_counted():
    target = DoubleWell2D(nan_beyond=1.2)
    mh = LargeStepMH(GaussianKernel(**KERNEL), n_proposals=4)
    x0 = exact_samples(2000, 4)
    x0[:, 0, 0] = x0[:, 0, 0].clamp(max=1.0)
    state = mh.init(target, x0)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        state = mh.step(target, state, g)
    assert torch.isfinite(state.energy).all() and (state.x[:, 0, 0] <= 1.2).all()
    assert state.n_nonfinite.sum() > 100
    assert (state.n_nonfinite <= state.mh_steps - state.accepted).all()  # a NaN proposal is a rejection


def test_exploration_mode_is_labelled_and_biased():
    mh = LargeStepMH(GaussianKernel(**KERNEL), n_proposals=2, metropolize=False)
    assert not mh.exact and mh.config()["exact"] is False
    state = _run(mh, n=5000)
    assert (state.accepted == state.mh_steps).all()  # every step accepted: not a Boltzmann sampler
    assert chi2_per_dof(state.x) > 5 * BOUND


class WideGaussian:
    """A normalised Gaussian 'flow' on R^2 (sample/log_prob interface of a Boltzmann generator)."""

    def __init__(self, scale=1.5):
        self.scale = scale

    def sample(self, n, generator=None):
        x = self.scale * torch.randn(n, 1, 2, generator=generator, dtype=torch.float64)
        return x, self.log_prob(x)

    def log_prob(self, x):
        return -0.5 * (x / self.scale).pow(2).sum((1, 2)) - 2 * math.log(self.scale) - math.log(2 * math.pi)


def test_independence_mh_with_a_flow_is_exact():
    mh = LargeStepMH(IndependenceProposal(WideGaussian()), n_proposals=4)
    state = _run(mh, n=20_000, cycles=3)
    assert chi2_per_dof(state.x) < BOUND
    np.testing.assert_allclose(state.log_q, WideGaussian().log_prob(state.x))  # the cached log q(x) is right


def test_independence_mh_with_an_equivariant_flow_on_dw4():
    torch.manual_seed(0)
    flow = EquivariantCNF(4, 2, hidden=8, num_layers=1, n_steps=3).double()
    target = DoubleWell4()
    mh = LargeStepMH(IndependenceProposal(flow), n_proposals=3, n_local=1, local={"step_size": 1e-3})
    x0 = torch.tensor([[[-2.0, -2.0], [2.0, -2.0], [2.0, 2.0], [-2.0, 2.0]]], dtype=torch.float64).repeat(4, 1, 1)
    state = mh.init(target, x0)
    state = mh.step(target, state, torch.Generator().manual_seed(0))
    assert (state.mh_steps == 3).all() and torch.isfinite(state.energy).all()
    torch.testing.assert_close(state.log_q, flow.log_prob(state.x).detach().double())


def _sampler():
    return LargeStepMH(GaussianKernel(**KERNEL), n_proposals=3, n_local=1, local={"step_size": 0.05})


def test_resume_after_kill_is_bitwise_identical(tmp_path):
    target = DoubleWell2D()
    x0 = exact_samples(16, 7)
    full = run_chain(target, x0, _sampler(), 20, burn_in=4, thin=2, seed=3, out=tmp_path / "full.h5",
                     checkpoint_every=3, system="dw2d")

    class Kill(Exception):
        pass

    def kill_at_11(cycle, n, state):
        if cycle == 11:
            raise Kill

    with pytest.raises(Kill):
        run_chain(target, x0, _sampler(), 20, burn_in=4, thin=2, seed=3, out=tmp_path / "part.h5",
                  checkpoint_every=3, system="dw2d", progress=kill_at_11)
    with pytest.raises(RunExistsError):
        run_chain(target, x0, _sampler(), 20, burn_in=4, thin=2, seed=3, out=tmp_path / "part.h5", system="dw2d")
    part = run_chain(target, x0, _sampler(), 20, burn_in=4, thin=2, seed=3, out=tmp_path / "part.h5",
                     checkpoint_every=3, system="dw2d", resume=True)
    a, b = read_chain(tmp_path / "full.h5"), read_chain(tmp_path / "part.h5", system="dw2d")
    assert a["positions"].shape == (8, 16, 1, 2)
    for key in ("positions", "energy", "cycle", "accepted"):
        np.testing.assert_array_equal(a[key], b[key])
    assert full.counters == part.counters
    for k in ("mh_steps", "accepted", "proposals", "n_nonfinite", "local_accepted", "cycles_done", "n_kept"):
        assert a["attrs"][k] == b["attrs"][k]
    # the chain may grow; other settings, another system or another format are refused
    longer = run_chain(target, x0, _sampler(), 24, burn_in=4, thin=2, seed=3, out=tmp_path / "part.h5",
                       checkpoint_every=3, system="dw2d", resume=True)
    assert longer.positions.shape[0] == 10
    with pytest.raises(ResumeError, match="seed"):
        run_chain(target, x0, _sampler(), 30, burn_in=4, thin=2, seed=4, out=tmp_path / "part.h5",
                  system="dw2d", resume=True)
    with pytest.raises(ResumeError, match="alanine"):
        run_chain(target, x0, _sampler(), 30, burn_in=4, thin=2, seed=3, out=tmp_path / "part.h5",
                  system="alanine-dipeptide", resume=True)
    with pytest.raises(SamplingInputError, match="not 'alanine-dipeptide'"):
        read_chain(tmp_path / "full.h5", system="alanine-dipeptide")


def test_bad_settings():
    with pytest.raises(SamplingInputError, match="n_proposals"):
        LargeStepMH(GaussianKernel(1.0), n_proposals=0)
    with pytest.raises(SamplingInputError, match="Proposal"):
        LargeStepMH(WideGaussian())
    with pytest.raises(SamplingInputError, match="scale"):
        GaussianKernel(scale=-1.0)
    with pytest.raises(SamplingInputError, match="not finite"):
        LargeStepMH(GaussianKernel(1.0)).init(DoubleWell2D(nan_beyond=0.0), torch.ones(2, 1, 2,
                                                                                      dtype=torch.float64))
