"""The kill-and-resume harness on a small real job: it catches a resume that restarts from scratch, and says so
when the kill point is never reached."""

from __future__ import annotations

import sys

import pytest

from compscope.testing import file_appears, kill_and_resume, output_matches, rows_at_least

# A job that appends one line per step to OUT (a running checksum) and keeps its state in OUT.state, written
# atomically; `--resume` continues from the state unless BROKEN is set (then it starts over: a resume bug).
JOB = r"""
import os, sys, time
out, steps, broken = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
resume = "--resume" in sys.argv
step, acc = 0, 0
if resume and not broken and os.path.exists(out + ".state"):
    step, acc = map(int, open(out + ".state").read().split())
    lines = open(out).read().splitlines()[:step]
    open(out, "w").write("".join(l + "\n" for l in lines))
elif resume:
    open(out, "w").close()
while step < steps:
    acc = (acc * 31 + step + (7 if resume and broken else 0)) % 1000003
    step += 1
    with open(out, "a") as fh:
        fh.write(f"{step} {acc}\n")
    with open(out + ".tmp", "w") as fh:
        fh.write(f"{step} {acc}")
    os.replace(out + ".tmp", out + ".state")
    print("step", step, flush=True)
    time.sleep(0.01)
"""


def _cmd(tmp_path, name, steps, broken=False):
    script = tmp_path / "job.py"
    script.write_text(JOB)
    return [sys.executable, str(script), str(tmp_path / name), str(steps), "1" if broken else "0"]


@pytest.mark.parametrize("broken", [False, True])
def test_harness_tells_a_good_resume_from_a_bad_one(tmp_path, broken):
    res = kill_and_resume(_cmd(tmp_path, "run.txt", 150, broken), reference_cmd=_cmd(tmp_path, "ref.txt", 150),
                          kill_when=rows_at_least(tmp_path / "run.txt", 40),
                          after_kill=lambda: (tmp_path / "run.txt.state").read_text())
    assert 40 <= int(res.extra["after_kill"].split()[0]) < 150
    assert res.killed.returncode < 0 and "step 1\n" in res.killed.output
    same = (tmp_path / "run.txt").read_text() == (tmp_path / "ref.txt").read_text()
    assert same != broken


def test_harness_refuses_a_run_that_ends_before_the_kill_point(tmp_path):
    with pytest.raises(AssertionError, match="before the kill point"):
        kill_and_resume(_cmd(tmp_path, "run.txt", 5), kill_when=file_appears(tmp_path / "never"))
    with pytest.raises(AssertionError, match="not reached in"):
        kill_and_resume(_cmd(tmp_path, "slow.txt", 100000), kill_when=output_matches("never"), timeout=2)
