"""Learned transition kernel: exact, normalised, equivariant log-density; pairs split by trajectory; training."""

import math

import h5py
import numpy as np
import pytest
import torch

from compscope.sampling import (
    ConditionalCouplingFlow,
    ConditionalFlowProposal,
    LargeStepMH,
    SamplingInputError,
    load_transition,
    transition_pairs,
)


def _flow(n_atoms, seed=0, **kw):
    torch.manual_seed(seed)
    ref = torch.randn(n_atoms, 3, dtype=torch.float64) * 2
    f = ConditionalCouplingFlow(ref, hidden=16, num_layers=4, **kw).double()
    with torch.no_grad():  # leave the identity initialisation: a kernel with non-trivial couplings
        for layer in f.layers:
            layer.net[-1].weight.normal_(0, 0.3)
            layer.net[-1].bias.normal_(0, 0.3)
        f.log_sigma.normal_(math.log(0.3), 0.2)
    return f


def _rotation(seed):
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)))
    return q * torch.linalg.det(q)


def test_sample_log_prob_agree_and_centroid_is_kept():
    f = _flow(6)
    x = torch.randn(5, 6, 3, dtype=torch.float64)
    y, lq = f.sample(x, 4, generator=torch.Generator().manual_seed(1))
    assert y.shape == (5, 4, 6, 3) and lq.shape == (5, 4)
    torch.testing.assert_close(f.log_prob(y.reshape(20, 6, 3), x.repeat_interleave(4, 0)), lq.reshape(20))
    torch.testing.assert_close(y.mean(2), x.mean(1, keepdim=True).expand(5, 4, 3))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_log_prob_is_rotation_and_translation_invariant(dtype):
    f = _flow(5).to(dtype)
    x = torch.randn(4, 5, 3, dtype=torch.float64)
    y, _ = f.sample(x.to(dtype), 1, generator=torch.Generator().manual_seed(2))
    y = y[:, 0].double()
    r, t = _rotation(3), torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    a = f.log_prob(y.to(dtype), x.to(dtype))
    b = f.log_prob((y @ r.T + t).to(dtype), (x @ r.T + t).to(dtype))
    torch.testing.assert_close(a, b, atol=1e-3 if dtype == torch.float32 else 1e-9, rtol=0)


def test_density_integrates_to_one():
    """Two atoms: the density lives on the 3 coordinates of z = (d_0 - d_1) / sqrt(2) (d_1 = -d_0); integrate it on
    a grid of d_0 (the map d_0 -> z has Jacobian 2^(3/2))."""
    f = _flow(2, seed=4)
    x = torch.tensor([[[0.0, 0.0, 0.0], [1.5, 0.3, -0.2]]], dtype=torch.float64)
    g = torch.linspace(-1.8, 1.8, 49, dtype=torch.float64)
    d = torch.stack(torch.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    y = x.expand(len(d), 2, 3).clone()
    y[:, 0] += d
    y[:, 1] -= d
    # the density is w.r.t. the first atom's displacement in the frame of x: a rotation, unit Jacobian
    p = torch.exp(f.log_prob(y, x.expand(len(d), 2, 3)))
    assert (p.sum() * (g[1] - g[0]) ** 3 * 2**1.5).item() == pytest.approx(1.0, abs=0.01)


def _write_md(path, n_rep=5, n_frames=40, n_atoms=4, seed=0):
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as h5:
        h5["atomic_numbers"] = np.full(n_atoms, 6)
        for r in range(n_rep):
            g = h5.create_group(f"replicas/{r:04d}")
            g["positions"] = np.cumsum(0.05 * rng.standard_normal((n_frames, n_atoms, 3)), 0) + np.arange(
                n_atoms)[None, :, None] * 1.5 + r * 100.0  # replica r lives near x = 100 r: its pairs are traceable
            g["time_ps"] = 0.1 * np.arange(1, n_frames + 1)


def test_pairs_are_split_by_trajectory(tmp_path):
    path = tmp_path / "md.h5"
    _write_md(path)
    p = transition_pairs(path, lag_ps=0.5, fractions=(0.6, 0.2, 0.2), seed=1)
    assert p["lag_frames"] == 5 and p["frame_ps"] == pytest.approx(0.1)
    reps = p["replicas"]
    assert sorted(reps["train"] + reps["valid"] + reps["test"]) == [f"{r:04d}" for r in range(5)]
    assert len(reps["train"]) == 3 and len(reps["valid"]) == len(reps["test"]) == 1
    for split in ("train", "valid", "test"):
        x0, x1 = p[split]
        assert len(x0) == 35 * len(reps[split])
        owners = {int(round(v / 100)) for v in x0[:, 0, 0].tolist()}
        assert owners == {int(r) for r in reps[split]}  # every pair comes from its split's trajectories
        torch.testing.assert_close(x0.mean(1), x1.mean(1))
    with h5py.File(path) as h5:
        raw = h5["replicas"][reps["test"][0]]["positions"][:]
    np.testing.assert_allclose(p["test"][0][0].numpy(), raw[0])
    with pytest.raises(SamplingInputError, match="multiple"):
        transition_pairs(path, lag_ps=0.25)
    with pytest.raises(SamplingInputError, match="does not exist"):
        transition_pairs(tmp_path / "none.h5", lag_ps=0.5)


@pytest.mark.slow
def test_training_reaches_the_entropy_of_a_known_kernel(tmp_path):
    """Pairs y = x + N(0, 0.05^2) noise (centroid kept): the best NLL per dof is 0.5 log(2 pi e 0.05^2)."""
    from compscope.sampling import train_transition

    rng = np.random.default_rng(0)
    n, s = 4000, 0.05
    x0 = torch.as_tensor(rng.standard_normal((n, 4, 3)) + np.arange(4)[None, :, None] * 1.5)
    noise = torch.as_tensor(s * rng.standard_normal((n, 4, 3)))
    x1 = x0 + noise - noise.mean(1, keepdim=True)
    # in the kernel's centroid-free coordinates z = Q^T d (Q orthonormal) the noise is N(0, s^2) in each of 9 dof
    best = 0.5 * np.log(2 * np.pi * np.e * s**2)
    half = n // 2
    pairs = {"train": (x0[:half], x1[:half]), "valid": (x0[half:], x1[half:]), "test": (x0[:0], x1[:0]),
             "replicas": {"train": ["a"], "valid": ["b"], "test": []}, "lag_frames": 1, "frame_ps": 1.0}
    model, _ = train_transition(pairs, tmp_path / "run", flow={"hidden": 32, "num_layers": 2, "init_scale": 0.2},
                                lr=3e-3, batch_size=200, trainer={"max_epochs": 15, "progress_bar": False},
                                system="toy")
    loaded, meta = load_transition(tmp_path / "run", system="toy", n_atoms=4)
    assert meta["lag_ps"] == 1.0 and meta["replicas"]["valid"] == ["b"]
    nll = -loaded.log_prob(x1[half:], x0[half:]).mean().item() / loaded.dof
    assert nll == pytest.approx(best, abs=0.1)
    with pytest.raises(SamplingInputError, match="trained on 'toy'"):
        load_transition(tmp_path / "run", system="alanine-dipeptide")
    with pytest.raises(SamplingInputError, match="4 atoms, not 22"):
        load_transition(tmp_path / "run", n_atoms=22)
    with pytest.raises(SamplingInputError, match="4 atoms"):
        loaded.log_prob(torch.zeros(1, 22, 3, dtype=torch.float64), torch.zeros(1, 22, 3, dtype=torch.float64))


def test_mh_with_the_learned_kernel_on_alanine_dipeptide():
    pytest.importorskip("openmm")
    from compscope.integrations.openmm_systems import alanine_dipeptide_system
    from compscope.sampling import alanine_dipeptide

    pdb, _ = alanine_dipeptide_system()
    x = torch.as_tensor(np.array(pdb.getPositions(asNumpy=True)._value) * 10.0)[None].repeat(3, 1, 1)
    target = alanine_dipeptide()
    f = ConditionalCouplingFlow(x[0], hidden=16, num_layers=2, init_scale=0.003).double()
    mh = LargeStepMH(ConditionalFlowProposal(f), n_proposals=4)
    state = mh.init(target, x)
    state = mh.step(target, state, torch.Generator().manual_seed(0))
    assert (state.mh_steps == 4).all() and state.accepted.sum() > 0  # 0.003 Å moves: often accepted
    assert torch.isfinite(state.energy).all()
