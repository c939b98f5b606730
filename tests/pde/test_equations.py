import numpy as np
import pytest

from compscope.errors import CompscopeError
from compscope.pde import (
    EQUATIONS,
    ResolutionError,
    UnknownEquationError,
    cell_key,
    check_resolution,
    forcing_cell_average,
    get_equation,
    parse_cell_key,
    periodic_grid,
)


def test_unknown_equation_lists_valid_names():
    with pytest.raises(UnknownEquationError, match="unknown equation 'E4'") as err:
        get_equation("E4")
    assert "E1, E2, E3, E1-authors, E2-authors, E3-authors, WE1, WE2, WE3" in err.value.hint
    assert isinstance(err.value, CompscopeError) and isinstance(err.value, ValueError)
    assert get_equation("we2").name == "WE2"
    assert get_equation("e3-AUTHORS").name == "E3-authors"


@pytest.mark.parametrize("nx", [30, 64, 0, 201])
def test_resolution_must_divide_reference(nx):
    with pytest.raises(ResolutionError, match="does not divide the reference grid"):
        check_resolution(get_equation("E1"), nx)


def test_paper_resolutions_accepted():
    for eq in EQUATIONS.values():
        for nx in eq.resolutions:
            assert check_resolution(eq, nx) == nx
    with pytest.raises(ResolutionError, match="too small"):
        check_resolution(get_equation("WE1"), 3)


def test_cell_key_round_trip_and_malformed_keys():
    for eq in EQUATIONS.values():
        for nx in eq.resolutions:
            assert parse_cell_key(cell_key(eq.name, nx)) == (eq.name, nx)
    assert cell_key("WE3", 20) == "WE3/nx20"
    for bad in ("E1", "E1/nx", "E1/nxabc", "/nx100", "E1-nx100"):
        with pytest.raises(ValueError, match="malformed cell key"):
            parse_cell_key(bad)


def test_periodic_grid_does_not_repeat_endpoint():
    x = periodic_grid(16.0, 100)
    assert x[0] > 0 and x[-1] < 16.0
    np.testing.assert_allclose(np.diff(x), 0.16)
    np.testing.assert_allclose((x[-1] + 0.16) % 16.0, x[0], atol=1e-12)  # one step past the end wraps to x[0]


def test_sampling_is_seeded_and_in_range():
    eq = get_equation("E3")
    a = eq.sample(np.random.default_rng([0, 1]))
    b = eq.sample(np.random.default_rng([0, 1]))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    draws = [eq.sample(np.random.default_rng(i)) for i in range(200)]
    A = np.concatenate([d["A"] for d in draws])
    assert -0.5 <= A.min() and A.max() <= 0.5
    om = np.concatenate([d["omega"] for d in draws])
    assert -0.4 <= om.min() and om.max() <= 0.4
    assert set(np.concatenate([d["l"] for d in draws]).astype(int)) == {1, 2, 3}
    assert all(0 <= d["alpha"] <= 3 and 0 <= d["beta"] <= 0.4 and 0 <= d["gamma"] <= 1 for d in draws)
    authors = [get_equation("E3-authors").sample(np.random.default_rng(i)) for i in range(200)]
    assert set(np.concatenate([d["l"] for d in authors]).astype(int)) == {1, 2}  # torch.randint(1, 3) in their script
    assert all(0 <= d["alpha"] <= 6 and 0.1 <= d["beta"] <= 0.4 and 0 <= d["gamma"] <= 1 for d in authors)
    assert max(d["alpha"] for d in authors) > 3  # the script's range, wider than the paper's text
    assert get_equation("E3-authors").tmax == 2.0 and get_equation("E3").tmax == 4.0
    for name in ("E1", "E2"):  # the authors' E1/E2 differ from ours only in the wave numbers
        ours, theirs = get_equation(name), get_equation(f"{name}-authors")
        assert theirs.wave_numbers == (1, 2) and ours.wave_numbers == (1, 2, 3)
        assert (theirs.alpha, theirs.beta, theirs.gamma, theirs.tmax) == (ours.alpha, ours.beta, ours.gamma, ours.tmax)
    e1 = get_equation("E1").sample(np.random.default_rng(0))
    assert (e1["alpha"], e1["beta"], e1["gamma"]) == (1.0, 0.0, 0.0)


def test_forcing_cell_average_matches_quadrature():
    p = get_equation("E1").sample(np.random.default_rng(3))
    nx, L = 40, 16.0
    h = L / nx
    xq, wq = np.polynomial.legendre.leggauss(8)
    x = periodic_grid(L, nx)
    pts = x[:, None] + 0.5 * h * xq[None, :]
    k = 2 * np.pi * p["l"] / L
    f = np.sum(p["A"] * np.sin(0.7 * p["omega"] + k * pts[..., None] + p["phi"]), -1)
    np.testing.assert_allclose(forcing_cell_average(p, L, nx, 0.7), (f * wq).sum(1) / 2, atol=1e-13)


def test_wave_boundary_sampling():
    assert get_equation("WE1").sample(np.random.default_rng(0))["b_left"] == 0.0
    assert get_equation("WE2").sample(np.random.default_rng(0))["a_right"] == 0.0
    kinds = set()
    for i in range(60):
        p = get_equation("WE3").sample(np.random.default_rng(i))
        kinds.add((float(p["a_left"]) in (0.0, 1.0)) and (float(p["b_left"]) in (0.0, 1.0)))
        np.testing.assert_allclose(p["a_left"] ** 2 + p["b_left"] ** 2, 1.0)
    assert kinds == {True, False}  # Dirichlet/Neumann and Robin both occur


@pytest.mark.parametrize("name", ["E1-authors", "E2"])
def test_mirror_image_is_an_exact_symmetry_of_burgers_data(name):
    """-u(t, L - x) solves the equation with the forcing (A, -omega, l, -phi): the augmentation is exact."""
    from compscope.pde._generate import solve_reference

    eq = get_equation(name)
    p = eq.sample(np.random.default_rng(1))
    a, b = solve_reference(eq, p), solve_reference(eq, eq.reflected_params(p))
    assert eq.reflection_symmetric
    for nx in (200, *eq.resolutions):
        np.testing.assert_allclose(b[nx], eq.reflect(a[nx]), atol=1e-10)
    assert np.abs(a[50]).max() > 1.0  # a real solution, not a trivially symmetric one


def test_dispersion_breaks_the_mirror_symmetry():
    from compscope.pde._generate import solve_reference

    eq = get_equation("E3")
    assert not eq.reflection_symmetric and not get_equation("E3-authors").reflection_symmetric
    p = {**eq.sample(np.random.default_rng(1)), "gamma": np.asarray(0.5)}
    a, b = solve_reference(eq, p), solve_reference(eq, eq.reflected_params(p))
    assert np.abs(b[50] - eq.reflect(a[50])).max() > 0.5
