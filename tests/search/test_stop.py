"""`compscope search build --jobs 2` stopped by SIGTERM or Ctrl-C (SIGINT): the workers stop with it, every finished
chunk is kept, the exit is non-zero with the resume hint, and ``--resume`` ends with the uninterrupted index."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from compscope.search import build_index
from compscope.testing import cli_command

from ._data import assert_same_index, library_records


def _group(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``, read from /proc."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # state, ppid, pgrp, ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(d.name))
    return out


def _default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _env():
    return {**os.environ, "COMPSCOPE_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}


def _stop(tmp_path, signum):
    """Start the build, stop it with ``signum`` once 3 chunks are checkpointed; check the exit and that no process
    of it is left. Returns (command, source, number of kept chunks)."""
    src = tmp_path / "lib.smi"
    src.write_text("".join(f"{s} {i}\n" for s, i in library_records()[:600]))
    run = tmp_path / "run.csi"
    parts = tmp_path / "run.csi.parts"
    cmd = cli_command("search", "build", src, "--out", run, "--jobs", "2", "--chunk-size", "10")
    # its own process group (the workers are found by their group), and SIGINT at its default even when this
    # test runs in a background job, whose shell starts it with SIGINT ignored (Python then keeps it ignored)
    p = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True, preexec_fn=_default_sigint)
    try:
        deadline = time.monotonic() + 60
        while len(list(parts.glob("chunk_*.npz"))) < 3:
            assert p.poll() is None, f"the build ended before it was stopped:\n{p.stdout.read()}"
            assert time.monotonic() < deadline, "no chunk was checkpointed in 60 s"
            time.sleep(0.02)
        assert len(_group(p.pid)) >= 3, "parent and two workers"
        os.kill(p.pid, signum)  # the parent alone, as `kill PID` does (a terminal's Ctrl-C reaches the workers too)
        out, _ = p.communicate(timeout=30)  # also waits for every worker: they hold the output pipe
        assert p.returncode == 128 + signum, out
        assert f"stopped by {signal.Signals(signum).name}" in out and "--resume" in out, out
        deadline = time.monotonic() + 10  # multiprocessing's resource tracker ends on its own without the parent
        while (left := _group(p.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not left, f"processes of the stopped build still run: {left}"
    finally:
        try:  # whatever happened, nothing of it outlives the test
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    kept = len(list(parts.glob("chunk_*.npz")))
    assert 3 <= kept < 60, kept
    assert f"{kept} finished chunks" in out, out
    assert not list(parts.glob("*.tmp.npz")) and not run.exists()
    return cmd, src, kept


def test_sigterm_stops_workers_keeps_chunks_and_resume_equals_uninterrupted(tmp_path):
    cmd, src, _ = _stop(tmp_path, signal.SIGTERM)
    resumed = subprocess.Popen([*cmd, "--resume"], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    ref = tmp_path / "ref.csi"  # the uninterrupted build, in this process (a serial build equals a parallel one)
    build_index(src, ref, n_jobs=1, chunk_size=10, checkpoint=False)
    out, _ = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, out
    run = tmp_path / "run.csi"
    assert "600 molecules" in out and not (tmp_path / "run.csi.parts").exists()
    assert_same_index(run, ref)


def test_ctrl_c_stops_workers_and_keeps_chunks(tmp_path):
    _stop(tmp_path, signal.SIGINT)
