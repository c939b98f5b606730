"""`compscope md run` killed with SIGKILL mid-run and resumed ends exactly where an uninterrupted run ends."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch
from ase.io import read, write

from compscope.testing import checkpoint_step_at_least, cli_command, kill_and_resume

LJ_ARGON = Path(__file__).resolve().parents[2] / "configs" / "md" / "lj_argon.yaml"


def test_md_run_killed_and_resumed_equals_uninterrupted(ar_cluster, tmp_path):
    """Langevin (random forces: the RNG state must survive too), 2 replicas, killed after the step-200 restart."""
    start = tmp_path / "ar13.xyz"
    write(start, ar_cluster)
    steps = 1500  # long enough that the kill lands mid-run on a fast machine (restart files every 50 steps)

    def cmd(out):
        return cli_command("md", "run", LJ_ARGON, start, "--steps", steps, "--dt", "4", "--temperature", "60",
                           "--replicas", "2", "--integrator", "langevin", "--seed", "3", "--traj-every", "50",
                           "--out", out, "--no-progress", "--no-plots")

    run, ref = tmp_path / "run", tmp_path / "ref"
    res = kill_and_resume(cmd(run), reference_cmd=cmd(ref), kill_when=checkpoint_step_at_least(run / "restart.pt", 200),
                          after_kill=lambda: int(torch.load(run / "restart.pt", weights_only=False)["step"]))
    killed_at = res.extra["after_kill"]
    assert 200 <= killed_at < steps, killed_at
    assert "2/2 replicas stable" in res.resumed.output and f"{steps} steps" in res.resumed.output

    a = torch.load(run / "restart.pt", weights_only=False)
    b = torch.load(ref / "restart.pt", weights_only=False)
    assert a["step"] == b["step"] == steps
    for key in ("positions", "momenta"):
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-10)
    with h5py.File(run / "trajectory.h5") as fa, h5py.File(ref / "trajectory.h5") as fb:
        steps_a = fa["particles/all/position/step"][:]
        assert steps_a.tolist() == list(range(0, steps + 1, 50))  # no frame lost or written twice
        assert np.array_equal(steps_a, fb["particles/all/position/step"][:])
        np.testing.assert_allclose(fa["particles/all/position/value"][:], fb["particles/all/position/value"][:],
                                   rtol=0, atol=1e-10)
        np.testing.assert_allclose(fa["observables/potential_energy/value"][:],
                                   fb["observables/potential_energy/value"][:], rtol=0, atol=1e-12)
    frames_a, frames_b = read(run / "trajectory.extxyz", ":"), read(ref / "trajectory.extxyz", ":")
    assert [f.info["step"] for f in frames_a] == [f.info["step"] for f in frames_b]
