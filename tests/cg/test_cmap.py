"""The two-dimensional (phi, psi) torsion term of the CG prior: the Boltzmann-inversion fit recovers a known 2-D
potential, forces are -grad E (autograd and the fused kernel, float32 and float64), the energy is periodic and
continuous across the +-pi seam, invariant under rigid motions but chiral, and no 1-D term double-counts it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import units

from compscope.cg import CGDataError, cmap_fit, cmap_modes, feature_net_kwargs, fit_prior, load_cg, resolve_config
from compscope.errors import ConfigError
from compscope.models import CGPrior, build_model, dihedral_angles
from compscope.models.artifacts import load_model, save_package
from compscope.testing import assert_forces_are_gradients, random_rotation

KT = float(units.kB * 300.0)


def _series(a, b, order, phi, psi):
    m = np.asarray(cmap_modes(order), dtype=float)
    th = np.multiply.outer(phi, m[:, 0]) + np.multiply.outer(psi, m[:, 1])
    return np.cos(th) @ np.asarray(a) + np.sin(th) @ np.asarray(b)


def _chain(phi: np.ndarray, psi: np.ndarray) -> np.ndarray:
    """Five beads (bond 1.5 Å, angles 110 deg) whose dihedrals 0-1-2-3 and 1-2-3-4 are phi and psi."""
    n = len(phi)
    x = np.zeros((n, 5, 3))
    theta = np.deg2rad(110.0)
    for t in range(n):
        pts = [np.array([1.5, 0, 0]) @ np.array([[np.cos(theta), np.sin(theta), 0], [0, 0, 0], [0, 0, 1]]),
               np.zeros(3), np.array([1.5, 0, 0])]
        for tors in (phi[t], psi[t]):  # NeRF: place the next bead from the last three
            a, b, c = pts[-3], pts[-2], pts[-1]
            bc = (c - b) / np.linalg.norm(c - b)
            nrm = np.cross(b - a, bc)
            nrm /= np.linalg.norm(nrm)
            d2 = 1.5 * np.array([-np.cos(theta), np.sin(theta) * np.cos(tors), np.sin(theta) * np.sin(tors)])
            pts.append(c + np.stack([bc, np.cross(nrm, bc), nrm], 1) @ d2)
        x[t] = pts
    return x


def test_chain_builder_gives_the_asked_dihedrals():
    phi, psi = np.array([-1.2, 2.9, 0.3]), np.array([2.5, -0.7, -3.0])
    ang = dihedral_angles(torch.as_tensor(_chain(phi, psi)), torch.tensor([[0, 1, 2, 3], [1, 2, 3, 4]])).numpy()
    np.testing.assert_allclose(ang, np.stack([phi, psi], 1), atol=1e-10)


def test_cmap_fit_recovers_a_known_two_dimensional_potential():
    """(phi, psi) drawn from exp(-U/kT) with U = a cos(phi + psi) + b sin(2 phi - psi) + c cos(psi): the fit's
    coefficients of those modes are a, b, c and the others vanish (no smoothing; many frames)."""
    a, b, c = 0.02, -0.015, 0.01
    g = np.linspace(-np.pi, np.pi, 361)[:-1] + np.pi / 360
    pp, qq = np.meshgrid(g, g, indexing="ij")
    u = a * np.cos(pp + qq) + b * np.sin(2 * pp - qq) + c * np.cos(qq)
    w = np.exp(-u / KT).ravel()
    idx = np.random.default_rng(0).choice(len(w), size=2_000_000, p=w / w.sum())
    jitter = np.random.default_rng(1).uniform(-np.pi / 360, np.pi / 360, (2, len(idx)))
    phi, psi = pp.ravel()[idx] + jitter[0], qq.ravel()[idx] + jitter[1]
    cos, sin = cmap_fit(phi, psi, KT, bins=72, pseudocount=1e-3, smoothing=0.0, order=4)
    modes = [tuple(m) for m in cmap_modes(4)]
    expect_cos, expect_sin = np.zeros(len(modes)), np.zeros(len(modes))
    expect_cos[modes.index((1, 1))] = a
    expect_sin[modes.index((2, -1))] = b
    expect_cos[modes.index((0, 1))] = c
    np.testing.assert_allclose(cos, expect_cos, atol=1.5e-3)
    np.testing.assert_allclose(sin, expect_sin, atol=1.5e-3)


@pytest.fixture(scope="module")
def frames(cg_file):
    return np.concatenate(load_cg(cg_file).positions)


def _prior(frames, **cmap):
    return fit_prior(frames, 300.0, dihedrals=True, fourier_order=3, cmap=cmap)


def test_cmap_replaces_the_one_dimensional_terms_it_covers(frames):
    fit = _prior(frames, order=6, bins=36)
    assert fit["cmap"] == [[0, 1, 2, 3, 1, 2, 3, 4]]
    assert "dihedrals" not in fit  # both backbone dihedrals are covered: no double counting
    assert len(fit["cmap_modes"]) == len(fit["cmap_cos"][0]) == 6 + 6 * 13
    plain = fit_prior(frames, 300.0, dihedrals=True)
    assert len(plain["dihedrals"]) == 2 and "cmap" not in plain
    # a longer chain: consecutive pairs, the left-over dihedral keeps its 1-D term
    six = np.concatenate([frames, frames[:, -1:] + np.array([1.2, 0.5, 0.3])], axis=1)
    fit6 = fit_prior(six, 300.0, dihedrals=True, cmap={"order": 4, "bins": 24})
    assert fit6["cmap"] == [[0, 1, 2, 3, 1, 2, 3, 4]] and fit6["dihedrals"] == [[2, 3, 4, 5]]


def test_fitted_cmap_energy_is_the_series_at_the_frames_angles(frames):
    fit = _prior(frames, order=8, bins=36, smoothing=0.1)
    prior = CGPrior(5, **{k: v for k, v in fit.items() if k.startswith("cmap")}).double()
    x = torch.as_tensor(frames[::5])
    ang = dihedral_angles(x, torch.tensor([[0, 1, 2, 3], [1, 2, 3, 4]])).numpy()
    want = _series(fit["cmap_cos"][0], fit["cmap_sin"][0], 8, ang[:, 0], ang[:, 1])
    np.testing.assert_allclose(prior(x).numpy(), want, atol=1e-12)
    # the basin the data sit in is lower than the region they never visit (phi ~ +2, psi ~ -2)
    assert want.mean() < _series(fit["cmap_cos"][0], fit["cmap_sin"][0], 8, np.array([2.0]), np.array([-2.0]))[0] - KT


def _model(frames, dtype, feature_net=True):
    torch.manual_seed(0)
    feat = feature_net_kwargs(frames, {"hidden": [16, 8]}) if feature_net else None
    return build_model("CGPotential", bead_z=[6, 7, 6, 6, 7], prior=_prior(frames, order=10, bins=48), net=None,
                       energy_scale=KT, feature_net=feat).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cmap_forces_are_minus_gradient_and_fused_kernel_agrees(frames, dtype):
    model = _model(frames, dtype)
    # beside the data: frames across the whole torus, including the +-pi seam
    rng = np.random.default_rng(2)
    seam = np.array([np.pi - 1e-7, -np.pi + 1e-7])
    x = np.concatenate([frames[::9][:16], _chain(np.r_[rng.uniform(-np.pi, np.pi, 14), seam],
                                                 np.r_[rng.uniform(-np.pi, np.pi, 14), seam[::-1]])])
    x = torch.as_tensor(x, dtype=dtype)
    model.fused_kernels = False
    e_ref, f_ref = model.energy_forces(x)
    model.fused_kernels = True
    e, f = model.energy_forces(x)
    tol = {torch.float64: 1e-10, torch.float32: 5e-4}[dtype]
    scale = max(1.0, float(f_ref.abs().max()))
    assert torch.allclose(e, e_ref, atol=tol * max(1.0, float(e_ref.abs().max())), rtol=0)
    assert torch.allclose(f, f_ref, atol=tol * scale, rtol=0)
    # central finite differences of the fused kernel's energy (float64 steps for float32 too: compare to the
    # float64 model's derivative at the float32 model's accuracy)
    x64 = x.double()
    m64 = _model(frames, torch.float64)
    h = 1e-5
    fd = torch.zeros_like(x64[:4])
    for a in range(5):
        for d in range(3):
            dx = torch.zeros_like(x64[:4])
            dx[:, a, d] = h
            fd[:, a, d] = -(m64.energy_forces(x64[:4] + dx)[0] - m64.energy_forces(x64[:4] - dx)[0]) / (2 * h)
    fd_tol = 1e-6 if dtype == torch.float64 else 5e-4
    assert torch.allclose(f[:4].double(), fd, atol=fd_tol * max(1.0, float(fd.abs().max())), rtol=0)
    if dtype == torch.float64:
        assert_forces_are_gradients(model, model.make_graph(x[:2]), n_atoms=5)


def test_cmap_energy_is_periodic_and_continuous_across_the_seam(frames):
    model = _model(frames, torch.float64, feature_net=False)
    d = 1e-6
    pairs = [(np.pi - d, 0.5, -np.pi + d, 0.5), (-1.0, np.pi - d, -1.0, -np.pi + d)]
    for p1, q1, p2, q2 in pairs:
        e = model.energy_forces(torch.as_tensor(_chain(np.array([p1, p2]), np.array([q1, q2]))))[0]
        assert abs(float(e[0] - e[1])) < 1e-4
    # phi and phi + 2 pi k give one geometry; the series alone is 2 pi periodic in both angles
    fit = _prior(frames, order=6, bins=36)
    phi, psi = np.array([0.3, -2.0]), np.array([1.1, 2.7])
    e0 = _series(fit["cmap_cos"][0], fit["cmap_sin"][0], 6, phi, psi)
    e1 = _series(fit["cmap_cos"][0], fit["cmap_sin"][0], 6, phi + 2 * np.pi, psi - 4 * np.pi)
    np.testing.assert_allclose(e0, e1, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cmap_prior_is_invariant_under_rigid_motion_but_chiral(frames, dtype):
    model = _model(frames, dtype)
    x = torch.as_tensor(frames[:6], dtype=dtype)
    e, f = model.energy_forces(x)
    gen = torch.Generator().manual_seed(3)
    tol = 1e-9 if dtype == torch.float64 else 3e-4
    for _ in range(3):
        rot = random_rotation(gen).to(dtype)
        e2, f2 = model.energy_forces(x @ rot.T + 10 * torch.randn(3, generator=gen).to(dtype))
        torch.testing.assert_close(e2, e, atol=tol * max(1.0, float(e.abs().max())), rtol=0)
        torch.testing.assert_close(f2, f @ rot.T, atol=tol * max(1.0, float(f.abs().max())), rtol=0)
    model.feature_net = None
    model.prior = CGPrior(5, **{k: v for k, v in _prior(frames, order=10, bins=48).items()
                                if k.startswith("cmap")}).to(dtype)
    assert float((model.energy_forces(-x)[0] - model.energy_forces(x)[0]).abs().max()) > 1e-3  # mirror: L vs D


def test_cmap_model_package_round_trip(frames, tmp_path):
    model = _model(frames, torch.float64)
    again = load_model(save_package(model, tmp_path / "cg.pt"))
    x = torch.as_tensor(frames[:4])
    for a, b in zip(model.energy_forces(x), again.energy_forces(x)):
        torch.testing.assert_close(a, b)


def test_cmap_bad_input(frames):
    with pytest.raises(CGDataError, match="order"):
        fit_prior(frames, 300.0, cmap={"bins": 16, "order": 8})
    with pytest.raises(CGDataError, match="pseudocount"):
        cmap_fit(np.zeros(10), np.zeros(10), KT, pseudocount=0.0)
    with pytest.raises(CGDataError, match="unknown"):
        fit_prior(frames, 300.0, cmap={"width": 3})
    with pytest.raises(ConfigError, match="coefficients"):
        CGPrior(5, cmap=[[0, 1, 2, 3, 1, 2, 3, 4]], cmap_modes=[[1, 0]], cmap_cos=[[0.1, 0.2]], cmap_sin=[[0.0]])
    with pytest.raises(ConfigError, match="model.cmap"):
        resolve_config({"model": {"cmap": {"bins": 64, "smooth": 1}}})
    full = resolve_config({"model": {"cmap": {"order": 10}}})
    assert full["model"]["cmap"] == {"bins": 64, "pseudocount": 0.01, "smoothing": 0.05, "order": 10}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_seed_ensemble_is_the_members_mean(frames, dtype):
    """average_models: one fast model whose energies and forces are the members' mean (fused kernel and autograd)."""
    from compscope.cg import average_models

    prior = _prior(frames, order=6, bins=36)
    feat = feature_net_kwargs(frames, {"hidden": [16, 8], "activation": "silu"})
    members = []
    for seed in range(3):
        torch.manual_seed(seed)
        members.append(build_model("CGPotential", bead_z=[6, 7, 6, 6, 7], prior=prior, net=None,
                                   energy_scale=KT, feature_net=feat).to(dtype))
    ens = average_models(members)
    assert ens.feature_net.mlp[0].out_features == 48
    x = torch.as_tensor(frames[::11], dtype=dtype)
    e_m, f_m = (torch.stack(t).mean(0) for t in zip(*[m.energy_forces(x) for m in members]))
    tol = {torch.float64: 1e-10, torch.float32: 2e-4}[dtype]
    for fused in (True, False):
        ens.fused_kernels = fused
        e, f = ens.energy_forces(x)
        assert torch.allclose(e, e_m, atol=tol * max(1.0, float(e_m.abs().max())), rtol=0)
        assert torch.allclose(f, f_m, atol=tol * max(1.0, float(f_m.abs().max())), rtol=0)
    assert not torch.allclose(members[0].energy_forces(x)[1], f_m, atol=1e-3)  # the members do differ
    other = build_model("CGPotential", bead_z=[6, 7, 6, 6, 7], prior=fit_prior(frames, 300.0), net=None,
                        energy_scale=KT, feature_net=feat).to(dtype)
    with pytest.raises(ConfigError, match="prior"):
        average_models([members[0], other])
    with pytest.raises(ConfigError, match="fast CG models"):
        average_models([build_model("CGPotential", bead_z=[6, 7, 6, 6, 7], prior=prior)])


def _draw(u, n, seed):
    """(phi, psi) pairs (n, 2) drawn from exp(-u(phi, psi)/kT) on a fine grid (jittered within a cell)."""
    g = np.linspace(-np.pi, np.pi, 181)[:-1] + np.pi / 180
    pp, qq = np.meshgrid(g, g, indexing="ij")
    w = np.exp(-u(pp, qq) / KT).ravel()
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(w), size=n, p=w / w.sum())
    return np.stack([pp.ravel()[idx], qq.ravel()[idx]], 1) + rng.uniform(-np.pi / 180, np.pi / 180, (n, 2))


def test_cmap_correction_is_the_free_energy_difference():
    """Model angles from exp(-U_m/kT), data angles from exp(-U_d/kT): one IBI step dU = U_d - U_m (up to a constant)
    where both are populated; identical samples give no correction."""
    from compscope.cg import cmap_correction

    def u_model(p, q):
        return 0.02 * np.cos(p) + 0.01 * np.cos(q)

    def u_data(p, q):
        return u_model(p, q) + 0.015 * np.cos(p + q) - 0.01 * np.sin(2 * q)

    m, d = _draw(u_model, 400_000, 0), _draw(u_data, 200_000, 1)
    opts = {"bins": 36, "pseudocount": 0.1, "smoothing": 0.0, "order": 4}
    a, b = cmap_correction(m, d, KT, **opts)
    g = np.linspace(-np.pi, np.pi, 40)
    pp, qq = np.meshgrid(g, g, indexing="ij")
    got = _series(a, b, 4, pp, qq)
    want = u_data(pp, qq) - u_model(pp, qq)
    assert np.abs((got - got.mean()) - (want - want.mean())).max() < 0.15 * KT
    a0, b0 = cmap_correction(d, d, KT, **opts)
    assert np.abs(_series(a0, b0, 4, pp, qq)).max() < 1e-12
    with pytest.raises(CGDataError, match="angles"):
        cmap_correction(m[:1], d, KT)


def test_refine_cmap_moves_only_the_torsion_term(frames):
    from compscope.cg import refine_cmap

    model = _model(frames, torch.float64)
    rng = np.random.default_rng(4)
    other = _chain(rng.normal(1.0, 0.3, 500), rng.normal(-1.0, 0.3, 500))  # a basin the data never visit
    new = refine_cmap(model, other, frames, order=6, bins=36)
    x = torch.as_tensor(np.concatenate([frames[:5], other[:5]]))
    de = (new.energy_forces(x)[0] - model.energy_forces(x)[0]).numpy()
    assert de[5:].mean() - de[:5].mean() > 1.0 * KT  # the model's over-visited basin is raised against the data's
    model.prior = CGPrior(5)
    new.prior = CGPrior(5)
    torch.testing.assert_close(new.energy_forces(x), model.energy_forces(x))  # the network is unchanged
    with pytest.raises(ConfigError, match="order"):
        refine_cmap(_model(frames, torch.float64), other, frames, order=11)
    with pytest.raises(ConfigError, match="backbone"):
        refine_cmap(build_model("CGPotential", bead_z=[6, 7, 6, 6, 7], prior=fit_prior(frames, 300.0),
                                feature_net=feature_net_kwargs(frames, {})), other, frames)


def test_ibi_refine_steps_schedule_fixed_point_and_blow_up(frames):
    """ibi_refine: the data's own frames are its fixed point (no correction); a damping schedule scales each step's
    correction; a sample with no frame stops it with a message and keeps the last model; resume continues."""
    from compscope.cg import ibi_refine, refine_cmap

    model = _model(frames, torch.float64)
    coef = lambda m: np.asarray(m.prior.cmap_cos.detach())  # noqa: E731
    rng = np.random.default_rng(4)
    other = _chain(rng.normal(1.0, 0.3, 500), rng.normal(-1.0, 0.3, 500))
    # the model "samples" the data's own distribution: nothing to correct
    res = ibi_refine(model, frames, lambda m, k: frames, 2, order=6, bins=36)
    assert res.steps == 2 and res.stopped is None and [h["step"] for h in res.history] == [0, 1]
    assert res.history[0]["js_64_vs_data"] == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(coef(res.model), coef(model), atol=1e-12)
    # damping schedule [1, 0.5]: the second step applies half of what a full step would
    seen, saved = [], []
    res = ibi_refine(model, frames, lambda m, k: seen.append(k) or other, 2, damping=[1.0, 0.5],
                     on_step=lambda k, m: saved.append(k), order=6, bins=36)
    assert seen == [0, 1] and saved == [1, 2]
    one = refine_cmap(model, other, frames, order=6, bins=36)
    full = refine_cmap(one, other, frames, order=6, bins=36)
    assert np.abs(coef(full) - coef(one)).max() > 1e-3  # a real correction to halve
    np.testing.assert_allclose(coef(res.model) - coef(one), 0.5 * (coef(full) - coef(one)), atol=1e-8)
    # resume after step 1: the same model as uninterrupted
    again = ibi_refine(one, frames, lambda m, k: other, 2, damping=[1.0, 0.5], first_step=1, order=6, bins=36)
    assert again.steps == 2 and [h["step"] for h in again.history] == [1]
    np.testing.assert_allclose(coef(again.model), coef(res.model), atol=1e-12)
    # a model that blew up: no frames -> stop with a message, the last model kept
    res = ibi_refine(model, frames, lambda m, k: other if k == 0 else other[:0], 3, order=6, bins=36)
    assert res.steps == 1 and "IBI step 1" in res.stopped
    with pytest.raises(ConfigError, match="first_step"):
        ibi_refine(model, frames, lambda m, k: frames, 2, first_step=3)
    with pytest.raises(ConfigError, match="backbone"):  # refused before any sampling
        ibi_refine(build_model("CGPotential", bead_z=[6, 7, 6, 6, 7], prior=fit_prior(frames, 300.0),
                               feature_net=feature_net_kwargs(frames, {})), frames, lambda m, k: 1 / 0, 1)
