"""Reference samples: cached run folder, resume, CLI grammar and errors, energy comparison statistics."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from compscope.cli import app
from compscope.sampling import (
    DoubleWell4,
    GaussianMixture,
    compare_energies,
    get_target,
    initial_positions,
    make_reference,
    read_reference,
)

runner = CliRunner()


@pytest.mark.parametrize("name", ["dw4", "lj13", "lj55"])
def test_initial_positions_are_finite_and_centred(name):
    t = get_target(name)
    x = initial_positions(t, 8, seed=1)
    u = t.energy(x)
    assert torch.isfinite(u).all() and x.mean(1).abs().max() < 1e-12
    if name != "dw4":  # lattice start: no overlaps, energy well below zero
        assert (u < 0).all()


def test_make_reference_caches_and_resumes(tmp_path):
    kw = dict(n_samples=40, n_chains=8, burn_in=20, thin=5, seed=3, checkpoint_every=10)
    path = make_reference("dw4", out=tmp_path / "ref", **kw)
    ref = read_reference(path)
    assert ref["positions"].shape == (40, 4, 2) and ref["energy"].shape == (40,)
    torch.testing.assert_close(DoubleWell4().energy(ref["positions"]), ref["energy"].double())
    assert ref["positions"].mean(1).abs().max() < 1e-12  # centred
    assert ref["chain"].tolist() == sum(([k] * 5 for k in range(8)), [])
    assert ref["attrs"]["target"]["name"] == "dw4" and 0 < ref["attrs"]["acceptance"] < 1
    mtime = path.stat().st_mtime_ns
    assert make_reference("dw4", out=tmp_path / "ref", **kw) == path and path.stat().st_mtime_ns == mtime
    # resuming a finished run gives the same samples; a changed setting is refused
    again = read_reference(make_reference("dw4", out=tmp_path / "ref", resume=True, **kw))
    assert torch.equal(again["positions"], ref["positions"])
    from compscope.errors import ResumeError

    with pytest.raises(ResumeError, match="thin"):
        make_reference("dw4", out=tmp_path / "ref", resume=True, **{**kw, "thin": 4})


def test_default_folder_is_under_the_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPSCOPE_DATA", str(tmp_path))
    path = make_reference("dw4", n_samples=8, n_chains=4, burn_in=2, thin=1, checkpoint_every=5)
    assert path == tmp_path / "sampling" / "dw4_mala_n8_seed0" / "reference.h5"


def test_cli_reference(tmp_path):
    out = tmp_path / "run"
    args = ["sample", "reference", "dw4", "--out", str(out), "--set", "n_samples=16", "--set", "n_chains=4",
            "--set", "burn_in=4", "--set", "thin=2", "--set", "sampler.step_size=0.005"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output[res.output.index("{"):])
    assert summary["n_samples"] == 16 and summary["file"] == str(out / "reference.h5")
    cfg = (out / "config.yaml").read_text()
    assert "max_drift: 0.5" in cfg and "step_size: 0.005" in cfg  # the default sampler, one argument changed
    res = runner.invoke(app, ["sample", "reference", "lj7"])
    assert res.exit_code == 2 and "unknown target" in res.output and "hint:" in res.output
    res = runner.invoke(app, ["sample", "reference", "dw4", "--out", str(tmp_path / "x"), "--set", "n_sample=3"])
    assert res.exit_code == 2 and "unknown key" in res.output and "n_samples" in res.output
    res = runner.invoke(app, ["sample", "reference", "dw4", "--out", str(tmp_path / "y"), "--set", "n_samples=10",
                              "--set", "n_chains=4"])
    assert res.exit_code == 2 and "multiple of n_chains" in res.output
    res = runner.invoke(app, ["sample", "reference", "dw4", "--out", str(tmp_path / "z"), "--resume"])
    assert res.exit_code == 2 and "nothing to resume" in res.output


def test_compare_energies_statistics():
    gen = np.random.default_rng(0)
    a, b = gen.normal(0, 1, 20000), gen.normal(0, 1, 20000)
    same = compare_energies(a, b)
    # two samples of one distribution: KS p-value not tiny, |z| small, histograms integrate to 1
    assert same["ks_pvalue"] > 1e-3 and abs(same["z_mean_difference"]) < 5
    width = np.diff(same["histogram_edges"])
    assert np.sum(np.array(same["histogram_reference"]) * width) == pytest.approx(1.0, abs=0.01)
    shifted = compare_energies(a, b + 0.1)
    assert shifted["ks_pvalue"] < 1e-6 and shifted["mean_difference"] == pytest.approx(0.1, abs=0.03)
    assert shifted["wasserstein1"] == pytest.approx(0.1, abs=0.03)
    # correlated samples: chain means give the honest (larger) standard error
    chains = np.repeat(np.arange(100), 200)
    c = gen.normal(0, 1, 100)[chains] + 0.1 * gen.normal(0, 1, 20000)
    naive = compare_energies(a, c)["se_mean_difference"]
    honest = compare_energies(a, c, sample_chain=chains)["se_mean_difference"]
    assert honest > 5 * naive


def test_reference_of_a_mixture_matches_exact_samples(tmp_path):
    # the whole pipeline (initial positions, burn-in with adaptation, thinning, chain-major layout) on a density
    # with exact samples: KS between our reference and exact draws
    gmm = GaussianMixture([[-1.0, 0.0], [1.0, 0.5]], [0.6, 0.6], [0.5, 0.5])
    path = make_reference(gmm, n_samples=2000, n_chains=200, burn_in=200, thin=20, seed=0, out=tmp_path / "g",
                          sampler={"name": "mala", "step_size": 0.1})
    ref = read_reference(path)
    exact = gmm.energy(gmm.sample(4000, torch.Generator().manual_seed(1)))
    cmp = compare_energies(exact, ref["energy"], sample_chain=ref["chain"])
    assert cmp["ks_pvalue"] > 1e-4 and abs(cmp["z_mean_difference"]) < 5
