"""Comparison metrics: shift-invariant free-energy MSE; the shared JS divergence (compscope.analysis) as cg uses it."""

from __future__ import annotations

import numpy as np
import pytest

from compscope.analysis import js_divergence, ramachandran_histogram, ramachandran_js
from compscope.cg import free_energy_mse


def test_js_divergence_bounds_and_symmetry():
    p = np.array([0.5, 0.5, 0.0, 0.0])
    q = np.array([0.0, 0.0, 0.3, 0.7])
    assert js_divergence(p, p) == 0.0
    assert js_divergence(p, q) == pytest.approx(np.log(2))
    r = np.array([0.25, 0.25, 0.25, 0.25])
    assert js_divergence(p, r) == pytest.approx(js_divergence(r, p))


def test_free_energy_mse_is_shift_invariant_in_kcal():
    rng = np.random.default_rng(0)
    p = rng.random((8, 8)) + 0.1
    p /= p.sum()
    assert free_energy_mse(p, p * 3.0) == pytest.approx(0.0, abs=1e-20)  # a constant factor is a free-energy shift
    q = p.copy()
    q[0, 0] *= np.e  # one bin lower by kT
    kT = 0.0019872042586 * 300.0
    d = np.zeros(64)
    d[0] = -kT
    assert free_energy_mse(p, q / q.sum()) == pytest.approx(((d - d.mean()) ** 2).mean())
    # ``where`` scores only the masked bins: leaving out the changed bin leaves a pure shift, MSE 0
    mask = np.ones((8, 8), bool)
    mask[0, 0] = False
    assert free_energy_mse(p, q / q.sum(), where=mask) == pytest.approx(0.0, abs=1e-20)
    mask[:] = False
    mask[0, :2] = True  # two bins, one lower by kT: deviations -kT/2 and +kT/2
    assert free_energy_mse(p, q / q.sum(), where=mask) == pytest.approx(kT ** 2 / 4)


def test_ramachandran_js_of_samples():
    rng = np.random.default_rng(1)
    a = rng.uniform(-np.pi, np.pi, (2, 200_000))
    b = rng.uniform(-np.pi, np.pi, (2, 200_000))
    assert ramachandran_js(*a, *b, bins=64) < 0.02  # sampling noise only
    assert ramachandran_histogram(*a, bins=61).shape == (61, 61)
    c = np.stack([rng.normal(-1.5, 0.2, 200_000), rng.normal(2.5, 0.2, 200_000)])
    assert ramachandran_js(*a, *c) > 0.4


def test_compare_plots_the_distributions_of_any_map(tmp_path):
    """A 4-bead map (no Ramachandran pair) still gets its table and a plot of bonds, angles and the dihedral; the
    5-bead backbone gets the Ramachandran row on top (one more row of panels)."""
    from PIL import Image

    from compscope.cg import compare, map_reference

    from .conftest import REF

    heights = {}
    for name, mapping in (("four", [4, 6, 8, 14]), ("backbone", "backbone")):
        cg = tmp_path / f"{name}.h5"
        map_reference(REF, mapping, cg)
        res = compare(cg, REF, tmp_path / f"{name}.png")
        assert res["js bond 0-1"] < 1e-9  # a file against its own reference: the same frames
        assert ("ramachandran_js_64" in res) == (name == "backbone")
        with Image.open(tmp_path / f"{name}.png") as im:
            heights[name] = im.size[1]
    assert heights["backbone"] > heights["four"] > 0
