"""benchmarks.ala2_remd_starts: a real (short) implicit-solvent replica exchange, its 300 K frames written in the
reference layout that the dense reference's ``--starts`` and ``md_reference_dense --openmm`` read."""

import os

import h5py
import numpy as np
import pytest

pytest.importorskip("openmmtools")


def test_run_then_write_gives_reference_layout_start_frames(tmp_path, monkeypatch):
    from benchmarks import ala2_remd_starts as starts
    from benchmarks.md_reference_dense import read_reference
    from compscope.md.reference._alanine_dense import _starts_from

    prog = starts.run(tmp_path, 0, cpu_s=0.01)  # stops after its first chunk of 20 exchanges
    assert prog["iterations"] == 20
    again = starts.run(tmp_path, 0, cpu_s=0.01)  # the budget is spent: a rerun adds nothing
    assert again["iterations"] == 20
    monkeypatch.delenv("HDF5_USE_FILE_LOCKING", raising=False)
    info = starts.write(tmp_path, tmp_path / "starts.h5", blocks=3)
    assert "HDF5_USE_FILE_LOCKING" not in os.environ  # HDF5 file locks stay on for the rest of the process
    assert info["groups"] == 3 and info["runs"][0]["frames"] == 19  # iterations 2-20 (0-1 burnt in)
    with h5py.File(tmp_path / "starts.h5") as h5:
        pos = np.concatenate([h5[f"replicas/{g}/positions"][:] for g in sorted(h5["replicas"])])
        assert pos.shape == (19, 22, 3) and np.isfinite(pos).all()
        assert np.allclose(h5["replicas/0000/time_ps"][:2], [0.0, starts.EXCHANGE_PS])
    phi, psi, meta = read_reference(tmp_path / "starts.h5")
    assert phi.shape == (3, 6) and meta["frame_ps"] == starts.EXCHANGE_PS
    from ase import Atoms

    frames = _starts_from(tmp_path / "starts.h5", Atoms("H22", positions=np.zeros((22, 3))), 5)
    assert len(frames) == 5 and np.allclose(frames[0].positions, pos[0], atol=1e-6)


def test_write_without_runs_says_what_to_do(tmp_path):
    from benchmarks import ala2_remd_starts as starts

    with pytest.raises(SystemExit, match="run the `run` verb first"):
        starts.write(tmp_path, tmp_path / "s.h5", blocks=2)
