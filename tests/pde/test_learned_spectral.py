"""The learned-correction spectral solver: zero network = spectral_solve, conservation, translation and mirror
equivariance, gradients through the unroll, float32, exact coarse averages, bad input, a tiny training run."""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from compscope.errors import CompscopeError
from compscope.pde import (
    EquationMismatchError,
    FastLearnedSpectral,
    LearnedSpectral,
    LearnedSpectralSolver,
    NonFiniteInputError,
    ResolutionError,
    cell_averages_to_points,
    coarsen,
    get_equation,
    interpolant_cell_averages,
    load_learned_spectral,
    points_to_cell_average,
    resolve_spectral_config,
    spectral_forcing_points,
    spectral_solve,
    spectral_split,
    train_learned_spectral,
)


def _batch(name="E3", B=3, split=2):
    eq = get_equation(name)
    ps = [eq.sample(np.random.default_rng([0, split, i])) for i in range(B)]
    p = {k: np.stack([np.asarray(q[k], dtype=np.float64) for q in ps]) for k in ps[0]}
    return eq, p, np.stack([p["alpha"], p["beta"], p["gamma"]], 1)


def _randomise(model, scale=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for q in model.parameters():
            q.copy_(scale * torch.randn(q.shape, generator=g, dtype=q.dtype))
    return model


def _forcing(p):
    return {k: p[k] for k in ("A", "omega", "phi", "l")}


@pytest.mark.parametrize("name", ["E3", "E2"])
def test_zero_network_is_the_spectral_solver(name):
    eq, p, cond = _batch(name)
    times = eq.times[:40]
    u0 = spectral_forcing_points(p, eq.L, 40)
    ref = spectral_solve(u0, times, p["alpha"], p["beta"], p["gamma"], eq.L, *_forcing(p).values())
    model = LearnedSpectral(name, 40)  # the last layer starts at zero
    with torch.no_grad():
        out = model.solve(torch.tensor(u0), times, torch.tensor(cond), _forcing(p)).numpy()
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-12)
    fast = FastLearnedSpectral(model).solve(u0, times, cond, *_forcing(p).values())
    np.testing.assert_allclose(fast, ref, rtol=0, atol=1e-13)


@pytest.mark.parametrize("inputs", ["u", "highpass"])
def test_random_closure_conserves_mass_and_numpy_matches_torch(inputs):
    eq, p, cond = _batch("E3")
    times = eq.times[:60]
    u0 = spectral_forcing_points(p, eq.L, 32)
    model = _randomise(LearnedSpectral("E3", 32, hidden=8, inputs=inputs), scale=1.0)
    with torch.no_grad():
        out = model.solve(torch.tensor(u0), times, torch.tensor(cond), _forcing(p)).numpy()
    ref = spectral_solve(u0, times, p["alpha"], p["beta"], p["gamma"], eq.L, *_forcing(p).values())
    assert np.abs(out - ref).max() > 1e-3  # the closure does something
    fast = FastLearnedSpectral(model).solve(u0, times, cond, *_forcing(p).values())
    np.testing.assert_allclose(fast, out, rtol=0, atol=1e-11)
    # zero-mean forcing: the mean of the cell averages is constant to round-off
    mass = out.sum(-1) * eq.L / 32
    assert np.abs(mass - mass[:, :1]).max() < 1e-12


def test_translation_equivariance_of_the_step():
    eq, p, cond = _batch("E3", B=2)
    model = _randomise(LearnedSpectral("E3", 25, hidden=8))
    rng = np.random.default_rng(1)
    state = torch.tensor(rng.normal(size=(2, 25)) * 0.5)
    c = torch.tensor(cond)
    out = model.advance(state, 0.0, 0.05, c, None)
    for m in (1, 7):
        shifted = model.advance(state.roll(m, -1), 0.0, 0.05, c, None)
        np.testing.assert_allclose(shifted.detach().numpy(), out.roll(m, -1).detach().numpy(), atol=1e-12)


def test_mirror_equivariance_where_the_equation_has_it():
    eq, p, cond = _batch("E2", B=2)
    model = _randomise(LearnedSpectral("E2", 25, hidden=8))
    assert model.mirror
    state = torch.tensor(np.random.default_rng(2).normal(size=(2, 25)) * 0.5)
    c = torch.tensor(cond)
    out = model.advance(state, 0.0, 0.05, c, None)
    mirrored = model.advance(-state.flip(-1), 0.0, 0.05, c, None)
    np.testing.assert_allclose(mirrored.detach().numpy(), (-out.flip(-1)).detach().numpy(), atol=1e-12)
    # forced: the reflected draw (omega -> -omega, phi -> -phi) gives the reflected trajectory
    q = eq.reflected_params(p)
    times = eq.times[:20]
    u = FastLearnedSpectral(model).solve(spectral_forcing_points(p, eq.L, 25), times, cond, *_forcing(p).values())
    v = FastLearnedSpectral(model).solve(spectral_forcing_points(q, eq.L, 25), times, cond, *_forcing(q).values())
    np.testing.assert_allclose(v, eq.reflect(u), atol=1e-11)
    with pytest.raises(CompscopeError, match="not mirror-symmetric"):
        LearnedSpectral("E3", 25, mirror=True)


def test_gradient_through_the_unroll_matches_finite_differences():
    eq, p, cond = _batch("E3", B=2)
    model = _randomise(LearnedSpectral("E3", 16, hidden=4, layers=2, kernel=3), scale=0.2)
    u0 = torch.tensor(points_to_cell_average(spectral_forcing_points(p, eq.L, 16), eq.L))
    c = torch.tensor(cond)
    times = eq.times[:4]

    def loss():
        state, total = u0, 0.0
        for a, b in zip(times[:-1], times[1:], strict=True):
            state = model.advance(state, a, b, c, _forcing(p))
            total = total + (state**2).mean()
        return total

    model.zero_grad()
    loss().backward()
    w = model.net.convs[0].weight
    direction = torch.tensor(np.random.default_rng(3).normal(size=w.shape))
    analytic = float((w.grad * direction).sum())
    assert abs(analytic) > 1e-8
    h = 1e-6
    with torch.no_grad():
        w += h * direction
        up = float(loss())
        w -= 2 * h * direction
        down = float(loss())
        w += h * direction
    assert analytic == pytest.approx((up - down) / (2 * h), rel=1e-5)


def test_per_trajectory_clocks_equal_separate_advances():
    eq, p, cond = _batch("E3", B=2)
    model = _randomise(LearnedSpectral("E3", 25, hidden=8))
    state = torch.tensor(np.random.default_rng(4).normal(size=(2, 25)) * 0.3)
    c = torch.tensor(cond)
    t0, t1 = torch.tensor([0.1, 0.7], dtype=torch.float64), torch.tensor([0.15, 0.75], dtype=torch.float64)
    both = model.advance(state, t0, t1, c, _forcing(p))
    for b in range(2):
        one = model.advance(state[b:b + 1], float(t0[b]), float(t1[b]), c[b:b + 1],
                            {k: v[b:b + 1] for k, v in _forcing(p).items()})
        # one common step for the batch vs each its own: both land on t1, the stepping differs only when
        # the Courant limit binds (not here: the span is below the step limit)
        np.testing.assert_allclose(both[b].detach().numpy(), one[0].detach().numpy(), atol=1e-12)
    with pytest.raises(CompscopeError, match="one time span"):
        model.advance(state, t0, torch.tensor([0.15, 0.8], dtype=torch.float64), c, _forcing(p))


def test_float32_matches_float64_and_conserves_mass():
    eq, p, cond = _batch("E3")
    times = eq.times[:60]
    u0 = spectral_forcing_points(p, eq.L, 32)
    m64 = _randomise(LearnedSpectral("E3", 32, hidden=8), scale=0.2)
    m32 = _randomise(LearnedSpectral("E3", 32, hidden=8), scale=0.2).float()
    with torch.no_grad():
        a = m64.solve(torch.tensor(u0), times, torch.tensor(cond), _forcing(p)).numpy()
        b = m32.solve(torch.tensor(u0, dtype=torch.float32), times, torch.tensor(cond, dtype=torch.float32),
                      _forcing(p))
    assert b.dtype == torch.float32
    b = b.double().numpy()
    assert np.abs(a - b).max() < 1e-4 * np.abs(a).max()
    mass = b.sum(-1) * eq.L / 32
    assert np.abs(mass - mass[:, :1]).max() < 1e-4


def test_exact_coarse_cell_averages():
    L = 16.0
    rng = np.random.default_rng(5)
    fine = rng.normal(size=(2, 200))
    np.testing.assert_allclose(interpolant_cell_averages(fine, L, 25), coarsen(fine, 25), atol=1e-13)
    np.testing.assert_allclose(interpolant_cell_averages(fine, L, 200), fine, atol=1e-13)
    # a band-limited function on grids that do not nest: its exact cell averages
    k = 2 * np.pi * 3 / L
    x200 = (np.arange(200) + 0.5) * L / 200
    avg = lambda x, h: np.sin(k * x + 0.3) * np.sinc(k * h / (2 * np.pi))  # noqa: E731
    x32 = (np.arange(32) + 0.5) * L / 32
    np.testing.assert_allclose(interpolant_cell_averages(avg(x200, L / 200), L, 32), avg(x32, L / 32), atol=1e-13)
    pts = rng.normal(size=(2, 40))
    np.testing.assert_allclose(cell_averages_to_points(points_to_cell_average(pts, L), L), pts, atol=1e-12)


def test_bad_input():
    eq, p, cond = _batch("E3", B=1)
    model = LearnedSpectral("E3", 25)
    u0 = spectral_forcing_points(p, eq.L, 25)
    u0[0, 3] = np.nan
    with pytest.raises(NonFiniteInputError):
        model.solve(torch.tensor(u0), eq.times[:3], torch.tensor(cond), _forcing(p))
    with pytest.raises(NonFiniteInputError):
        FastLearnedSpectral(model).solve(u0, eq.times[:3], cond, *_forcing(p).values())
    with pytest.raises(ResolutionError, match="too coarse"):
        LearnedSpectral("E3", 6)
    with pytest.raises(ResolutionError, match="not a periodic"):
        LearnedSpectral("WE1", 40)
    with pytest.raises(EquationMismatchError, match="E3 at nx=25.*E3 at nx=50"):
        model.check("E3", 50)


def test_tiny_training_run_loads_and_refuses_another_cell(tmp_path):
    cfg = {"seed": 0, "model": {"hidden": 4, "layers": 2, "kernel": 3},
           "data": {"equation": "E3", "nx": 16, "nx_fine": 48, "n_train": 4, "n_valid": 2, "cache": str(tmp_path),
                    "batch_size": 2, "max_ref_gap": None},
           "module": {"unroll": [1, 2], "lr": 1e-2},
           "trainer": {"max_epochs": 1, "progress_bar": False, "num_threads": 1}}
    result = train_learned_spectral(cfg, out=tmp_path / "run")
    model = load_learned_spectral(result.best, "E3", 16)
    assert any(float(q.detach().abs().max()) > 0 for q in model.net.convs[-1].parameters())  # trained off zero
    with pytest.raises(EquationMismatchError, match="E3 at nx=16"):
        load_learned_spectral(result.best, "E3", 25)
    d = spectral_split("E3", "valid", 2, 0, 16, 48, tmp_path)
    fine = spectral_split("E3", "valid", 2, 0, None, 48, tmp_path)["u"]
    np.testing.assert_allclose(d["u"], coarsen(fine, 16), atol=1e-12)  # 48 nests 16: block averages
    assert d["ref_gap"].shape == (2,) and (d["ref_gap"] > 0).all()
    # the data-start variant of the loss (the learned FV's: pushforward, noise) runs too
    cfg["module"] = {"unroll": [1], "start": "data", "pushforward": 2, "noise": 0.01}
    train_learned_spectral(cfg, out=tmp_path / "run_data")


def test_highpass_closure_vanishes_on_resolved_states():
    eq, p, cond = _batch("E3", B=2)
    x = (np.arange(48) + 0.5) * eq.L / 48
    smooth = np.stack([np.sin(2 * np.pi * 3 * x / eq.L + b) for b in (0.0, 1.0)])  # mode 3 < 48 / 6
    rough = smooth + 0.1 * np.cos(2 * np.pi * 12 * x / eq.L)  # mode 12 >= 8: in the closure's band
    c = torch.tensor(cond)
    learned = _randomise(LearnedSpectral("E3", 48, hidden=8))
    plain = _randomise(LearnedSpectral("E3", 48, hidden=8, inputs="u"))
    for u, zero in ((smooth, True), (rough, False)):
        flux = learned.flux(torch.tensor(u), c).detach().numpy()
        spread = np.abs(flux - flux.mean(-1, keepdims=True)).max()  # a constant flux has no divergence
        assert (spread < 1e-13) == zero, spread
    flux = plain.flux(torch.tensor(smooth), c).detach().numpy()
    assert np.abs(flux - flux.mean(-1, keepdims=True)).max() > 1e-3


CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs" / "pde").glob("learned_spectral_*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_configs_build(path):
    cfg = resolve_spectral_config(yaml.safe_load(path.read_text()))
    module = LearnedSpectralSolver(cfg["data"]["equation"], cfg["data"]["nx"], model=cfg["model"], **cfg["module"])
    assert isinstance(module.fv, LearnedSpectral) and module.fv.nx == cfg["data"]["nx"]
    assert cfg["trainer"]["budget_clock"] == "cpu" and cfg["out"]
