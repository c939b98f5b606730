"""Dense-engine alanine-dipeptide reference (numba amber14 + OBC2, many replicas at once): file layout, stored
forces/energies against OpenMM itself (units), resume of an interrupted run, bad input, and `cg map` reading it."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

pytest.importorskip("openmm")

from compscope.md.reference import PHI, ReferenceError, dihedral, generate_alanine_dipeptide_dense  # noqa: E402

KW = dict(replicas=4, equilibrate_ps=0.5, save_every_ps=0.5, chunk_ps=1.0, seed=3)


def test_layout_and_forces_match_openmm(tmp_path):
    import openmm as mm
    import openmm.unit as u
    from ase import units

    from compscope.integrations.openmm_systems import alanine_dipeptide_system

    info = generate_alanine_dipeptide_dense(tmp_path / "ref.h5", ns=0.002, **KW)
    assert info["replicas"] == 4 and info["frames_per_replica"] == 5  # 0, 0.5, ..., 2 ps after 0.5 ps dropped
    with h5py.File(tmp_path / "ref.h5", "r") as h5:
        assert h5.attrs["solvent"] == "obc" and h5.attrs["constraints"] == "none"
        assert len(h5["replicas"]) == 4 and h5["atomic_numbers"].shape == (22,)
        g = h5["replicas/0002"]
        x, f, e = g["positions"][-1], g["forces"][-1], g["energy"][-1]
        np.testing.assert_allclose(g["time_ps"][:], [0.0, 0.5, 1.0, 1.5, 2.0])
        np.testing.assert_allclose(g["phi"][:], dihedral(g["positions"][:], PHI))
        masses = h5.attrs["hydrogen_mass_amu"]
    assert masses == pytest.approx(3.024)
    _, system = alanine_dipeptide_system("obc", constraints=None)
    ctx = mm.Context(system, mm.VerletIntegrator(1.0), mm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(x * 0.1)
    st = ctx.getState(getEnergy=True, getForces=True)
    kj = units.kJ / units.mol
    assert e == pytest.approx(st.getPotentialEnergy().value_in_unit(u.kilojoule_per_mole) * kj, rel=1e-8)
    f_ref = st.getForces(asNumpy=True).value_in_unit(u.kilojoule_per_mole / u.nanometer) * kj / 10.0
    np.testing.assert_allclose(f, f_ref, rtol=1e-6, atol=1e-8)


def test_resume_after_interruption(tmp_path):
    """A run stopped at 1.5 ps (its file written) goes on from the engine's restart file to 2.5 ps."""
    generate_alanine_dipeptide_dense(tmp_path / "a.h5", ns=0.001, **KW)
    (tmp_path / "a.h5").rename(tmp_path / "first.h5")
    info = generate_alanine_dipeptide_dense(tmp_path / "a.h5", ns=0.002, **KW)
    assert info["frames_per_replica"] == 5
    with h5py.File(tmp_path / "first.h5", "r") as h1, h5py.File(tmp_path / "a.h5", "r") as h2:
        # the first 1 ps of the resumed file is the earlier run's, frame by frame
        np.testing.assert_array_equal(h1["replicas/0001/positions"][:], h2["replicas/0001/positions"][:3])


def test_starts_from_a_reference_file(tmp_path):
    """Replicas started from frames of another reference file begin exactly there (frame 0 is the start)."""
    generate_alanine_dipeptide_dense(tmp_path / "a.h5", ns=0.001, **KW)
    kw = {**KW, "equilibrate_ps": 0.0, "replicas": 3}
    generate_alanine_dipeptide_dense(tmp_path / "b.h5", ns=0.0005, starts=tmp_path / "a.h5", **kw)
    with h5py.File(tmp_path / "a.h5", "r") as a, h5py.File(tmp_path / "b.h5", "r") as b:
        frames = np.concatenate([a[f"replicas/{g}/positions"][:] for g in sorted(a["replicas"])])
        picked = frames[np.linspace(0, len(frames) - 1, 3).round().astype(int)]
        got = np.stack([b[f"replicas/{g}/positions"][0] for g in sorted(b["replicas"])])
        assert b.attrs["starts"] == str(tmp_path / "a.h5")
    np.testing.assert_allclose(got, picked, atol=1e-5)  # float32 trajectory storage
    with pytest.raises(ReferenceError, match="not found"):
        generate_alanine_dipeptide_dense(tmp_path / "c.h5", ns=0.001, starts=tmp_path / "nope.h5", **KW)


def test_bad_input(tmp_path):
    (tmp_path / "x.h5").write_bytes(b"")
    with pytest.raises(ReferenceError, match="exists"):
        generate_alanine_dipeptide_dense(tmp_path / "x.h5", ns=0.001, **KW)
    with pytest.raises(ReferenceError, match="multiple"):
        generate_alanine_dipeptide_dense(tmp_path / "y.h5", ns=0.001, replicas=2, save_every_ps=0.0031)
    with pytest.raises(ReferenceError, match="solvent"):
        generate_alanine_dipeptide_dense(tmp_path / "y.h5", solvent="water", ns=0.001)


def test_cg_map_reads_it(tmp_path):
    from compscope.cg import map_reference

    generate_alanine_dipeptide_dense(tmp_path / "ref.h5", ns=0.001, **KW)
    info = map_reference(tmp_path / "ref.h5", "backbone", out=tmp_path / "cg.h5")
    with h5py.File(tmp_path / "cg.h5", "r") as h5:
        assert any(np.asarray(v).size for v in h5.values())
    assert info


def test_cli(tmp_path):
    from typer.testing import CliRunner

    from compscope.cli import app

    args = ["md", "reference", "alanine-dipeptide", "--engine", "dense", "--solvent", "obc", "--replicas", "2",
            "--steps", "500", "--dt", "2", "--save-every", "250", "--equilibrate-ps", "0.5",
            "--out", str(tmp_path / "r.h5")]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "2 replicas x 3 frames" in r.output
    r = CliRunner().invoke(app, args)  # the file exists now
    assert r.exit_code == 2 and "exists" in r.output
    r = CliRunner().invoke(app, [*args[:4], "gpu", *args[5:]])
    assert r.exit_code == 2 and "--engine" in r.output
