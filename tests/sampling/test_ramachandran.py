"""Mode coverage of alanine-dipeptide samples: weighted Ramachandran histograms, basin populations, JS."""

from __future__ import annotations

import numpy as np
import pytest

from compscope.errors import CompscopeError
from compscope.sampling import ramachandran_report
from compscope.sampling._ramachandran import ramachandran_histogram


def test_ramachandran_report_reweighting_restores_the_basin(tmp_path):
    rng = np.random.default_rng(0)
    n = 40000
    # reference: 3 % in the basin (phi ~ 1.0), the rest at phi ~ -1.5; the "flow" puts 20 % there, weights correct it
    ref_phi = np.where(rng.random(n) < 0.03, rng.normal(1.0, 0.2, n), rng.normal(-1.5, 0.3, n))
    ref_psi = rng.normal(2.5, 0.3, n)
    in_b = rng.random(n) < 0.2
    phi = np.where(in_b, rng.normal(1.0, 0.2, n), rng.normal(-1.5, 0.3, n))
    psi = rng.normal(2.5, 0.3, n)
    log_w = np.where(in_b, np.log(0.03 / 0.2), np.log(0.97 / 0.8))
    log_w[:10] = -np.inf  # invalid samples carry no weight
    rep = ramachandran_report(phi, psi, log_w, ref_phi, ref_psi, out=tmp_path)
    assert rep["basin_flow"]["mean"] == pytest.approx(0.2, abs=0.01)
    assert rep["basin_reweighted"]["mean"] == pytest.approx(0.03, abs=4 * rep["basin_reweighted"]["se"] + 1e-3)
    assert rep["basin_reference"]["mean"] == pytest.approx(0.03, abs=0.003)
    assert rep["js_reweighted"] < 0.3 * rep["js_flow"]
    assert all((tmp_path / f).exists() for f in ("ramachandran.png", "phi_profile.png"))
    h = ramachandran_histogram(phi, psi, log_w)
    assert h.shape == (64, 64) and h.sum() == pytest.approx(1.0)
    with pytest.raises(CompscopeError, match="every weight is zero"):
        ramachandran_histogram(phi[:3], psi[:3], np.full(3, -np.inf))
