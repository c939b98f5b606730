"""Alanine-dipeptide reference generator: real OpenMM + Ray with 2 workers, resume and append."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from compscope.errors import ResumeError

pytest.importorskip("openmm")
pytest.importorskip("ray")

from compscope.md.reference import (  # noqa: E402
    PHI,
    PSI,
    ReferenceError,
    dihedral,
    generate_alanine_dipeptide,
    run_replica,
)


def _spec(tmp_path, replica=0, solvent="vacuum", steps=400, name=None):
    return {"replica": replica, "seed": replica, "steps": steps, "dt_fs": 1.0, "temperature": 300.0,
            "save_every": 100, "solvent": solvent, "platform": "Reference",
            "shard": str(tmp_path / (name or f"replica_{replica:04d}.npz")), "chunk_frames": 1}


def test_dihedral_known_values():
    pos = np.array([[[1.0, 0, 0], [0, 0, 0], [0, 1, 0], [1, 1, 0]],
                    [[1.0, 0, 0], [0, 0, 0], [0, 1, 0], [0, 1, 1]]])
    np.testing.assert_allclose(dihedral(pos, (0, 1, 2, 3)), [0.0, -np.pi / 2], atol=1e-12)


def test_implicit_solvent_changes_energies(tmp_path):
    vac = np.load(run_replica(_spec(tmp_path, solvent="vacuum", steps=100, name="v.npz")))
    obc = np.load(run_replica(_spec(tmp_path, solvent="obc", steps=100, name="o.npz")))
    assert vac["energy"].shape == (1,) and obc["energy"].shape == (1,)
    assert obc["energy"][0] < vac["energy"][0] - 0.5  # GB solvation lowers the energy by ~1 eV


@pytest.mark.slow
def test_generate_resume_append_with_two_ray_workers(tmp_path):
    out = tmp_path / "ala.h5"
    parts = tmp_path / "ala.h5.parts"
    parts.mkdir()
    # an interrupted replica 0: 200 of 400 steps done, checkpoint in its shard
    spec = _spec(parts)
    run_replica(spec, max_steps=200)
    with np.load(parts / "replica_0000.npz") as z:
        assert int(z["done"]) == 200 and len(z["energy"]) == 2
    uninterrupted = np.load(run_replica(_spec(tmp_path, name="full.npz")))

    info = generate_alanine_dipeptide(out, replicas=2, steps=400, save_every=100, workers=2, platform="Reference",
                                      chunk_frames=1)
    assert info["new_replicas"] == 2 and info["total_replicas"] == 2 and info["total_frames"] == 8
    assert (tmp_path / "ala_phi_psi.png").stat().st_size > 5000
    with h5py.File(out) as f:
        r0 = f["replicas/0000"]
        # resumed from the OpenMM checkpoint: identical to the uninterrupted run (Reference platform)
        np.testing.assert_allclose(r0["positions"][:], uninterrupted["positions"], atol=1e-6)
        np.testing.assert_allclose(r0["time_ps"][:], [0.1, 0.2, 0.3, 0.4])
        np.testing.assert_allclose(r0["phi"][:], dihedral(r0["positions"][:], PHI))
        np.testing.assert_allclose(r0["psi"][:], dihedral(r0["positions"][:], PSI))
        assert np.all(np.isfinite(r0["forces"][:])) and 0.1 < np.abs(r0["forces"][:]).max() < 50.0
        assert f["atomic_numbers"][:].tolist().count(1) == 12
        assert not np.allclose(f["replicas/0001/positions"][:], r0["positions"][:])
    assert not parts.exists()

    # append one more replica through the real CLI
    from typer.testing import CliRunner

    from compscope.cli import app

    r = CliRunner().invoke(app, ["md", "reference", "alanine-dipeptide", "--out", str(out), "--replicas", "1",
                                 "--steps", "400", "--save-every", "100", "--workers", "2", "--platform", "Reference"])
    assert r.exit_code == 0, r.output
    assert "1 replica(s) run, 12 frames" in r.output
    with h5py.File(out) as f:
        assert [int(f[f"replicas/{k:04d}"].attrs["seed"]) for k in range(3)] == [0, 1, 2]

    with pytest.raises(ResumeError, match="adding to the data set with changed settings.*solvent: 'vacuum' -> 'gbn2'"):
        generate_alanine_dipeptide(out, solvent="gbn2", replicas=1, steps=400, save_every=100, workers=2)


def test_bad_arguments(tmp_path):
    with pytest.raises(ReferenceError, match="unknown solvent"):
        generate_alanine_dipeptide(tmp_path / "x.h5", solvent="water")
    with pytest.raises(ReferenceError, match="multiple of save_every"):
        generate_alanine_dipeptide(tmp_path / "x.h5", steps=150, save_every=100)


def test_total_replicas_tops_up_and_merges_each_replica(tmp_path):
    out = tmp_path / "ala.h5"
    info = generate_alanine_dipeptide(out, solvent="obc", total_replicas=1, steps=200, save_every=100, workers=1,
                                      platform="Reference", plot=False, chunk_frames=100)
    assert info["new_replicas"] == 1 and info["total_frames"] == 2
    # the same command again adds nothing: the file already holds one replica
    again = generate_alanine_dipeptide(out, solvent="obc", total_replicas=1, steps=200, save_every=100, workers=1,
                                       platform="Reference", plot=False)
    assert again["new_replicas"] == 0 and again["total_replicas"] == 1
    with h5py.File(out) as f:
        assert f.attrs["solvent"] == "obc" and "obc2" in f.attrs["forcefield"]
        assert np.isfinite(f["replicas/0000/forces"][:]).all()


def test_explicit_solvent_speed_runs_a_water_box():
    from compscope.md.reference import explicit_solvent_speed

    info = explicit_solvent_speed(seconds=0.5)
    assert info["n_waters"] > 50 and info["n_atoms"] == 22 + 3 * info["n_waters"]
    assert info["steps"] >= 50 and info["ns_per_day"] > 0 and info["pinned_one_core"]  # one thread, one core


def test_new_replicas_skip_indices_already_in_the_file(tmp_path):
    """A replica that finished out of order leaves a gap (0000 and 0002 merged, 0001 not yet run): topping up must
    run 0001, not a second 0002 with its seed; re-merging an already merged shard (a driver killed after the merge,
    before the shard was removed) replaces the group instead of failing."""
    out = tmp_path / "ala.h5"
    parts = tmp_path / "ala.h5.parts"
    parts.mkdir()
    for k in (0, 2):
        run_replica(_spec(parts, replica=k, steps=100))
    keep = np.load(parts / "replica_0002.npz")
    kept = {k: keep[k] for k in keep.files}
    info = generate_alanine_dipeptide(out, replicas=0, steps=100, save_every=100, workers=1, platform="Reference",
                                      plot=False)
    assert info["total_replicas"] == 2
    parts.mkdir(exist_ok=True)
    np.savez(parts / "replica_0002.npz", **kept)  # the same shard again
    info = generate_alanine_dipeptide(out, total_replicas=3, steps=100, save_every=100, workers=1,
                                      platform="Reference", plot=False)
    assert info["total_replicas"] == 3 and info["new_replicas"] == 1
    with h5py.File(out) as f:
        assert sorted(f["replicas"]) == ["0000", "0001", "0002"]
        assert [int(f[f"replicas/{k:04d}"].attrs["seed"]) for k in range(3)] == [0, 1, 2]
