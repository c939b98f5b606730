"""The biased-MD alanine-dipeptide reference: the frozen bias (periodic spline equal to OpenMM's energy and force),
exact reweighting on a torus toy against quadrature, a tiny two-stage run with interruption and a bitwise resume,
the loader's refusals, weighted basin populations and the CLI."""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import openmm as mm
import openmm.unit as unit
import pytest
import yaml
from typer.testing import CliRunner

from compscope.cli import app
from compscope.errors import CompscopeError, ResumeError, RunExistsError
from compscope.sampling import (
    ALA2_BIASED_DEFAULTS,
    TorsionBias,
    ala2_biased_reference,
    basin_population,
    dihedral_angles,
    make_ala2_biased_reference,
)
from compscope.sampling._biased_reference import _BIAS_GROUP, _lock, _savez, _system
from compscope.sampling._openmm_target import ALA2_PHI, MOLAR_GAS_CONSTANT_KJ

TINY = dict(metad_ns=0.01, metad_snapshot_ps=5.0, deposit_ps=0.1, run_ns=0.006, chunk_ps=2.0, frame_ps=0.1,
            equil_ps=0.5, n_runs=2, grid=31)


def _random_grid(g: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.linspace(-math.pi, math.pi, g)
    v = 6 * np.cos(x)[:, None] + 3 * np.sin(2 * x)[None, :] + 2 * np.cos(x[:, None] - x[None, :])
    v = v + rng.normal(0, 1, (g, g))
    v[-1], v[:, -1] = v[0], v[:, 0]
    return v


def test_bias_grid_is_periodic_smooth_and_interpolating():
    g = 25
    b = TorsionBias(_random_grid(g))
    x = np.linspace(-math.pi, math.pi, g)
    ii, jj = np.meshgrid(np.arange(g), np.arange(g), indexing="ij")
    np.testing.assert_allclose(b.energy(x[ii], x[jj]), b.values, atol=1e-12)  # passes through the grid
    rng = np.random.default_rng(1)
    phi, psi = rng.uniform(-math.pi, math.pi, (2, 200))
    e = b.energy(phi, psi)
    for k in (-2, 1, 3):  # periodic in both angles
        np.testing.assert_allclose(b.energy(phi + 2 * math.pi * k, psi), e, atol=1e-10)
        np.testing.assert_allclose(b.energy(phi, psi - 2 * math.pi * k), e, atol=1e-10)
    # value and slope continuous across the seam phi = +-pi (a non-periodic spline has a kink there)
    eps = 1e-6
    lo, hi = b.energy(math.pi - eps, psi), b.energy(-math.pi + eps, psi)
    np.testing.assert_allclose(lo, hi, atol=1e-4)
    slope_lo = (b.energy(math.pi - eps, psi) - b.energy(math.pi - 2 * eps, psi)) / eps
    slope_hi = (b.energy(-math.pi + 2 * eps, psi) - b.energy(-math.pi + eps, psi)) / eps
    np.testing.assert_allclose(slope_lo, slope_hi, atol=1e-3)


def test_bias_grid_refuses_bad_grids():
    with pytest.raises(CompscopeError, match="equal first and last"):
        TorsionBias(np.arange(36.0).reshape(6, 6))
    with pytest.raises(CompscopeError, match="square"):
        TorsionBias(np.zeros((5, 6)))


def test_python_bias_equals_openmm_energy_on_md_frames():
    """The weights' V (numpy) is the energy OpenMM's force applied, frame by frame, all over the torus."""
    b = TorsionBias(_random_grid(31, seed=3))
    pdb, system = _system(b.force())
    integ = mm.LangevinMiddleIntegrator(1500 * unit.kelvin, 5 / unit.picosecond, 0.001)  # hot: wide (phi, psi)
    integ.setRandomNumberSeed(5)
    ctx = mm.Context(system, integ, mm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(pdb.positions)
    pos, e = [], []
    for _ in range(60):
        integ.step(200)
        st = ctx.getState(getPositions=True, getEnergy=True, groups={_BIAS_GROUP})
        pos.append(st.getPositions(asNumpy=True)._value * 10.0)
        e.append(st.getPotentialEnergy()._value)
    pos = np.asarray(pos)
    phi = dihedral_angles(pos, ALA2_PHI)
    assert np.ptp(phi) > 2.0  # the frames cover a good part of the torus, not one grid cell
    np.testing.assert_allclose(b.energy_from_positions(pos), e, rtol=0, atol=1e-9)
    # and the force: OpenMM's force of the bias group against a finite difference of the numpy energy
    st = ctx.getState(getPositions=True, getForces=True, groups={_BIAS_GROUP})
    x = st.getPositions(asNumpy=True)._value * 10.0
    f = st.getForces(asNumpy=True)._value / 10.0  # kJ/mol/Å
    h = 1e-5
    for atom in (1, 7, 16):
        for d in range(3):
            xp, xm = x.copy(), x.copy()
            xp[atom, d] += h
            xm[atom, d] -= h
            fd = -(b.energy_from_positions(xp[None])[0] - b.energy_from_positions(xm[None])[0]) / (2 * h)
            assert abs(fd - f[atom, d]) < 1e-5 * max(1.0, abs(fd))


def _toy_energy(phi, psi):
    """kJ/mol on the torus: a deep basin at phi ~ -1.3 and a minor one at phi ~ +1 behind a ~25 kJ/mol barrier."""
    return (-14 * np.exp(2 * (np.cos(phi + 1.3) - 1)) - 5 * np.exp(3 * (np.cos(phi - 1.0) - 1))
            + 12 * (1 + np.cos(phi)) / 2 + 4 * np.cos(psi - 0.5) + 2 * np.cos(psi - phi) + 2 * np.sin(2 * psi))


def _write_run_folder(out, bias: TorsionBias, runs: list[tuple[np.ndarray, np.ndarray]], temperature=300.0):
    """A run folder in the module's layout holding given (phi, psi) frames (as if the MD had produced them)."""
    out.mkdir(parents=True)
    cfg = {**ALA2_BIASED_DEFAULTS, "temperature": temperature, "n_runs": len(runs), "grid": bias.grid}
    (out / "config.yaml").write_text(yaml.safe_dump(cfg))
    _savez(out / "bias.npz", bias=bias.values, snapshots=bias.values[None], cv=np.zeros((1, 2)),
           summary=json.dumps({"metad_ns": 0.0, "wall_s": 0.0, "cpu_s": 0.0, "n_gaussians": 0,
                               "bias_range_kjmol": float(np.ptp(bias.values))}))
    for r, (phi, psi) in enumerate(runs):
        d = out / "runs" / f"run_{r:02d}"
        d.mkdir(parents=True)
        _savez(d / "chunk_00000.npz", phi=phi, psi=psi, bias_openmm=bias.energy(phi, psi),
               time_ps=np.arange(1, len(phi) + 1) * 0.1)
        (d / "progress.json").write_text(json.dumps({"chunks": 1, "frames": len(phi), "wall_s": 0.0, "cpu_s": 0.0}))


def _sample_biased(bias: TorsionBias, kT: float, n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Exact draws from exp(-(U + V) / kT) on the torus by rejection from the uniform density."""
    g = np.linspace(-math.pi, math.pi, 721)
    gp, gs = np.meshgrid(g, g, indexing="ij")
    top = (-(_toy_energy(gp, gs) + bias.energy(gp, gs)) / kT).max() + 0.05  # a bound with margin
    phi, psi = [], []
    while sum(len(p) for p in phi) < n:
        p, s = rng.uniform(-math.pi, math.pi, (2, 4 * n))
        lp = -(_toy_energy(p, s) + bias.energy(p, s)) / kT
        assert (lp <= top).all()
        keep = np.log(rng.uniform(size=p.shape)) < lp - top
        phi.append(p[keep])
        psi.append(s[keep])
    return np.concatenate(phi)[:n], np.concatenate(psi)[:n]


def test_reweighting_a_fixed_bias_is_exact_on_a_torus_toy(tmp_path):
    """Frames drawn exactly from the biased density, written as a run and read through the loader, reweight to
    the unbiased basin population and phi histogram computed by quadrature (z-scores from the delta method; the
    bounds come from 40 seeds of 8000 draws: basin z has sd 1.02 and |z| <= 2.6, the largest |z| of the 8 phi bins
    is <= 3.1, their mean z^2 lies in [0.29, 2.33]; asserted: |z| < 4.5 and mean z^2 in (0.1, 3))."""
    kT = MOLAR_GAS_CONSTANT_KJ * 300.0
    g = np.linspace(-math.pi, math.pi, 37)
    gp, gs = np.meshgrid(g, g, indexing="ij")
    bias = TorsionBias(-0.8 * _toy_energy(gp, gs))  # flattens 80 % of the landscape, as metadynamics would
    q = np.linspace(-math.pi, math.pi, 2001)[:-1] + math.pi / 2000  # midpoint rule on the periodic integrand
    qp, qs = np.meshgrid(q, q, indexing="ij")
    dens = np.exp(-_toy_energy(qp, qs) / kT)
    dens /= dens.sum()
    in_basin = (qp > 0.0) & (qp < 2.2)
    pop_exact = float(dens[in_basin].sum())
    assert 0.005 < pop_exact < 0.1  # a minor basin, as alanine dipeptide's C7ax/alpha_L
    edges = np.linspace(-math.pi, math.pi, 9)
    hist_exact = np.array([dens[(qp >= a) & (qp < b)].sum() for a, b in zip(edges[:-1], edges[1:])])

    rng = np.random.default_rng(7)
    runs = [_sample_biased(bias, kT, 4000, rng) for _ in range(2)]
    out = tmp_path / "toy"
    _write_run_folder(out, bias, runs)
    ref = ala2_biased_reference(out)
    assert len(ref["phi"]) == 8000 and set(np.unique(ref["run"])) == {0, 1}
    np.testing.assert_allclose(ref["log_weight"], bias.energy(ref["phi"], ref["psi"]) / kT)  # w = exp(+V / kT)
    assert abs(ref["weight"].sum() - 1) < 1e-12 and 1000 < ref["kish_ess"] < 8000
    w = ref["weight"]

    def z(indicator):  # self-normalised estimate and its delta-method standard error
        est = float((w * indicator).sum())
        se = float(np.sqrt((w**2 * (indicator - est) ** 2).sum()))
        return est, se

    ind = ((ref["phi"] > 0) & (ref["phi"] < 2.2)).astype(float)
    est, se = z(ind)
    assert abs(est - pop_exact) < 4.5 * se
    pop = basin_population(ref["phi"], ref["run"], weights=ref["weight"])
    assert abs(pop["population"] - est) < 1e-12
    # the unweighted biased frames are far off: the test can fail if the weights are wrong or inverted
    assert abs(ind.mean() - pop_exact) > 10 * se
    zs = []
    for a, b, h in zip(edges[:-1], edges[1:], hist_exact):
        e, s = z(((ref["phi"] >= a) & (ref["phi"] < b)).astype(float))
        zs.append((e - h) / s)
    zs = np.asarray(zs)
    assert np.abs(zs).max() < 4.5 and 0.1 < (zs**2).mean() < 3.0


def test_tiny_two_stage_run_interrupts_resumes_and_loads(tmp_path):
    out = tmp_path / "ala2b"
    path, s = make_ala2_biased_reference(out, max_chunks=1, **TINY)  # interrupted after one chunk per run
    assert s["n_runs"] == 2 and s["biased_ns_per_run"] == pytest.approx([0.002, 0.002])
    assert s["max_bias_mismatch_kjmol"] < 1e-6 and s["metadynamics"]["n_gaussians"] == 100
    with pytest.raises(RunExistsError):
        make_ala2_biased_reference(out, **TINY)
    with pytest.raises(ResumeError, match="bias_factor"):
        make_ala2_biased_reference(out, resume=True, **{**TINY, "bias_factor": 8.0})
    lock = _lock(out)
    with pytest.raises(CompscopeError, match="being run by another process"):
        make_ala2_biased_reference(out, resume=True, **TINY)
    lock.close()
    # a chunk written after the last checkpoint (killed between the two writes) is sampled again, not kept
    (out / "runs" / "run_00" / "chunk_00001.npz").write_bytes(b"partial")
    path, s = make_ala2_biased_reference(out, resume=True, **TINY)
    assert s["biased_ns_per_run"] == pytest.approx([0.006, 0.006]) and s["n_frames"] == 120
    ref = ala2_biased_reference(out)
    with h5py.File(path) as h5:
        kT = h5.attrs["kT_kjmol"]
        np.testing.assert_allclose(h5["bias"][:], h5["bias_openmm"][:], atol=1e-9)
        np.testing.assert_allclose(ref["log_weight"], h5["bias"][:] / kT)
        assert h5["bias_grid"].shape == (31, 31)
    assert np.all(np.diff(ref["time_ps"][ref["run"] == 1]) > 0)
    # the bias pushes: the biased frames sit where the bias is high, i.e. where metadynamics had not filled
    assert np.isfinite(ref["weight"]).all() and 1 <= ref["kish_ess"] <= 120
    # the interrupted and resumed run is bitwise the uninterrupted one (checkpoints carry the integrator's RNG)
    make_ala2_biased_reference(tmp_path / "uninterrupted", **TINY)
    full = ala2_biased_reference(tmp_path / "uninterrupted")
    assert np.array_equal(full["phi"], ref["phi"]) and np.array_equal(full["log_weight"], ref["log_weight"])
    # extending run_ns on resume is allowed
    path, s = make_ala2_biased_reference(out, resume=True, **{**TINY, "run_ns": 0.008})
    assert s["biased_ns_per_run"] == pytest.approx([0.008, 0.008])


def test_loader_refuses_missing_and_corrupt_caches(tmp_path):
    with pytest.raises(CompscopeError, match="no biased alanine-dipeptide reference") as e:
        ala2_biased_reference(tmp_path / "nothing")
    assert "sample reference ala2-biased" in e.value.hint
    bad = tmp_path / "reference.h5"
    bad.write_bytes(b"not an hdf5 file")
    with pytest.raises(CompscopeError, match="not a readable") as e:
        ala2_biased_reference(bad)
    assert e.value.hint
    with h5py.File(tmp_path / "short.h5", "w") as h5:
        for k, n in (("phi", 3), ("psi", 3), ("log_weight", 2), ("run", 3), ("time_ps", 3)):
            h5[k] = np.zeros(n)
        h5.attrs["config"] = h5.attrs["summary"] = "{}"
    with pytest.raises(CompscopeError, match="inconsistent"):
        ala2_biased_reference(tmp_path / "short.h5")
    # a run folder whose bias does not match the frames' recorded bias energies is refused on assembly
    b = TorsionBias(_random_grid(13))
    _write_run_folder(tmp_path / "mismatch", b, [(np.zeros(5), np.zeros(5))])
    np.savez(tmp_path / "mismatch" / "bias.npz", bias=b.values + 1.0, snapshots=b.values[None], cv=np.zeros((1, 2)),
             summary="{}")
    with pytest.raises(CompscopeError, match="differs from OpenMM"):
        ala2_biased_reference(tmp_path / "mismatch")
    with pytest.raises(CompscopeError, match="unknown setting"):
        make_ala2_biased_reference(tmp_path / "x", n_replicas=3)


def test_cli_runs_and_resumes(tmp_path):
    out = tmp_path / "cli"
    sets = [a for k, v in {**TINY, "run_ns": 0.002}.items() for a in ("--set", f"{k}={v}")]
    res = CliRunner().invoke(app, ["sample", "reference", "ala2-biased", "--out", str(out), *sets])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output[res.output.index("{"):])
    assert summary["n_frames"] == 40 and 0.0 <= summary["basin_population"]["population"] <= 1.0
    res = CliRunner().invoke(app, ["sample", "reference", "ala2-biased", "--out", str(out), *sets])
    assert res.exit_code != 0 and "--resume" in res.output
    res = CliRunner().invoke(app, ["sample", "reference", "ala2-biased", "--out", str(out), "--resume", *sets,
                                   "--set", "run_ns=0.004"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output[res.output.index("{"):])["n_frames"] == 80


def test_weighted_basin_population_equals_repeated_frames():
    rng = np.random.default_rng(2)
    phi = rng.uniform(-math.pi, math.pi, 400)
    run = np.repeat([0, 1], 200)
    k = rng.integers(0, 4, 400)
    rep = basin_population(np.repeat(phi, k), np.repeat(run, k))
    wtd = basin_population(phi, run, weights=k)
    assert wtd["population"] == pytest.approx(rep["population"], rel=1e-12)
    np.testing.assert_allclose(wtd["per_run"], rep["per_run"], rtol=1e-12)
    plain = basin_population(phi, run)
    same = basin_population(phi, run, weights=np.full(400, 0.3))
    assert same["population"] == pytest.approx(plain["population"]) and same["error_blocks"] == pytest.approx(
        plain["error_blocks"])
    with pytest.raises(CompscopeError, match="weights"):
        basin_population(phi, run, weights=-k)
