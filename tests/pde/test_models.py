import pytest
import torch

from compscope.pde import MODEL_REGISTRY, MPPDE, FNO1d, build_model

EQ = dict(time_window=25, dt=4.0 / 249, domain_length=16.0, n_params=3, tmax=4.0)


def _inputs(B=3, N=40, P=3, dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    u = torch.randn(B, 25, N, generator=g, dtype=dtype)
    x = (torch.arange(N, dtype=dtype) + 0.5) * 16.0 / N
    return u, x, torch.rand(B, generator=g, dtype=dtype), torch.rand(B, P, generator=g, dtype=dtype)


@pytest.mark.parametrize("name", list(MODEL_REGISTRY))
@pytest.mark.parametrize("periodic", [True, False])
def test_shapes(name, periodic):
    model = build_model(name, periodic=periodic, **EQ)
    for N in (40, 50):
        u, x, t, c = _inputs(N=N, dtype=torch.float32)
        assert model(u, x, t, c).shape == (3, 25, N)


@pytest.mark.parametrize("cls,kw", [(MPPDE, dict(hidden=88, layers=2, neighbors=2)),
                                    (FNO1d, dict(width=16, modes=8, layers=2))])
def test_shift_equivariance_on_periodic_domain(cls, kw):
    torch.manual_seed(0)
    model = cls(periodic=True, **EQ, **kw).double().eval()
    u, x, t, c = _inputs()
    out = model(u, x, t, c)
    for s in (1, 7, 23):
        shifted = model(torch.roll(u, s, dims=-1), x, t, c)
        torch.testing.assert_close(shifted, torch.roll(out, s, dims=-1), rtol=1e-10, atol=1e-10)


def test_nonperiodic_model_sees_positions():
    torch.manual_seed(0)
    model = MPPDE(periodic=False, **EQ, hidden=88, layers=2).double().eval()
    u, x, t, c = _inputs()
    assert not torch.allclose(model(torch.roll(u, 5, -1), x, t, c), torch.roll(model(u, x, t, c), 5, -1))


def test_output_starts_from_last_input_step():
    # u(t_k) = u(t_last) + k dt d_k: with the decoder silenced the solver repeats the last step
    model = MPPDE(**EQ, hidden=88, layers=2).double()
    for p in model.decoder[-1].parameters():
        torch.nn.init.zeros_(p)
    u, x, t, c = _inputs()
    torch.testing.assert_close(model(u, x, t, c), u[:, -1:].expand(-1, 25, -1))


def test_bad_model_configs():
    with pytest.raises(ValueError, match="hidden=32 is too small"):
        MPPDE(**EQ, hidden=32)
    with pytest.raises(ValueError, match="preset .gnn. unknown"):
        build_model("gnn", **EQ)
    with pytest.raises(ValueError, match="class_path"):
        build_model({"init_args": {}}, **EQ)
