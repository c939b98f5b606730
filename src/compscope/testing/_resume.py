"""Kill-and-resume harness: run a command in a subprocess, SIGKILL it at a chosen point, resume, compare.

Every long job of compscope claims that ``--resume`` after a hard interruption (out of memory, a pre-empted node,
``kill -9``) continues where it stopped and ends where an uninterrupted run ends. This module tests that claim
through the real command line:

1. start ``cmd`` (and, beside it, the uninterrupted ``reference_cmd`` at the same seed) in subprocesses;
2. watch the run folder (or the output) until ``kill_when`` says the chosen point is reached, then send SIGKILL to
   the whole process group (worker processes included: nothing gets to clean up);
3. rerun with ``--resume`` and wait for it;
4. the caller compares the two results (:func:`assert_same_weights`, :func:`assert_same_metrics`, or files).

Conditions for ``kill_when`` are callables ``f(output_so_far) -> bool``; :func:`file_appears`,
:func:`output_matches`, :func:`rows_at_least` and :func:`checkpoint_step_at_least` build the usual ones, and
:func:`all_of` combines them. Training runs use :func:`kill_and_resume_training`, which kills only after an
end-of-epoch checkpoint (``checkpoints/last.ckpt`` plus a ``metrics.jsonl`` row) exists.

Example (the shape of ``tests/md/test_resume.py``)::

    res = kill_and_resume(cli_command("md", "run", cfg, "start.xyz", "--out", str(out), ...),
                          kill_when=checkpoint_step_at_least(out / "restart.pt", 200),
                          reference_cmd=cli_command("md", "run", cfg, "start.xyz", "--out", str(ref), ...))
    assert res.killed_at_step >= 200
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Condition", "KillResumeResult", "RunRecord", "all_of", "assert_same_metrics", "assert_same_weights",
    "checkpoint_step_at_least", "cli_command", "file_appears", "kill_and_resume", "kill_and_resume_training",
    "output_matches", "rows_at_least",
]

#: ``f(output_so_far) -> bool``: True when the interrupted run should be killed now
Condition = Callable[[str], bool]


def cli_command(*args: str | os.PathLike) -> list[str]:
    """``python -m compscope ARGS...`` with this interpreter (the installed ``compscope`` script's equivalent)."""
    return [sys.executable, "-m", "compscope", *map(str, args)]


# ---------------------------------------------------------------------------------------------------- conditions
def file_appears(path: str | os.PathLike, count: int = 1) -> Condition:
    """True once ``path`` exists; a glob pattern (``dir/chunk_*.npz``) needs ``count`` matches."""
    path = Path(path)
    is_glob = any(c in path.name for c in "*?[")

    def cond(_: str) -> bool:
        if is_glob:
            return sum(1 for _ in path.parent.glob(path.name)) >= count
        return path.exists()

    cond.__doc__ = f"{path} ({count}x)" if is_glob else f"{path} exists"
    return cond


def output_matches(pattern: str) -> Condition:
    """True once the run's combined stdout/stderr matches the regular expression ``pattern``."""
    rx = re.compile(pattern)

    def cond(output: str) -> bool:
        return rx.search(output) is not None

    cond.__doc__ = f"output matches {pattern!r}"
    return cond


def rows_at_least(path: str | os.PathLike, n: int) -> Condition:
    """True once the text file ``path`` (e.g. ``metrics.jsonl``) holds ``n`` complete lines."""
    path = Path(path)

    def cond(_: str) -> bool:
        try:
            return path.read_text().count("\n") >= n
        except OSError:
            return False

    cond.__doc__ = f"{path} has {n} rows"
    return cond


def checkpoint_step_at_least(path: str | os.PathLike, step: int, key: str = "step") -> Condition:
    """True once the torch file ``path`` (an MD ``restart.pt``, a Lightning ``.ckpt`` with ``key="global_step"``)
    holds ``payload[key] >= step``. A file caught half written counts as not there yet."""
    path = Path(path)

    def cond(_: str) -> bool:
        if not path.exists():
            return False
        import torch

        try:
            payload = torch.load(path, map_location="cpu", weights_only=False)
        except Exception:  # noqa: BLE001 - being written right now: look again at the next poll
            return False
        return int(payload.get(key, -1)) >= step

    cond.__doc__ = f"{path}[{key!r}] >= {step}"
    return cond


def all_of(*conditions: Condition) -> Condition:
    """True when every condition is."""

    def cond(output: str) -> bool:
        return all(c(output) for c in conditions)

    cond.__doc__ = " and ".join(c.__doc__ or "?" for c in conditions)
    return cond


# ------------------------------------------------------------------------------------------------------- running
@dataclass
class RunRecord:
    """One finished (or killed) subprocess: its command, exit code, combined output and wall time."""

    cmd: list[str]
    returncode: int
    output: str
    seconds: float

    def check(self, what: str) -> RunRecord:
        """Raise AssertionError with the output's tail unless the run exited with 0."""
        if self.returncode != 0:
            raise AssertionError(f"{what} exited with {self.returncode}: {' '.join(self.cmd)}\n"
                                 f"{self.output[-4000:]}")
        return self


@dataclass
class KillResumeResult:
    """What :func:`kill_and_resume` saw: the killed run, the resumed run and the uninterrupted reference."""

    killed: RunRecord
    resumed: RunRecord
    reference: RunRecord | None
    killed_after_s: float  # wall time of the interrupted run when it was killed
    extra: dict[str, Any] = field(default_factory=dict)


class _Proc:
    """A subprocess in its own process group, its output collected by a thread."""

    def __init__(self, cmd: Sequence[str], env: Mapping[str, str], cwd: str | os.PathLike | None) -> None:
        self.cmd = list(map(str, cmd))
        self.t0 = time.monotonic()
        self.popen = subprocess.Popen(self.cmd, env=dict(env), cwd=cwd, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True, errors="replace",
                                      start_new_session=True)
        self._chunks: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self._chunks.append(line)
        self.popen.stdout.close()

    @property
    def output(self) -> str:
        return "".join(self._chunks)

    def kill_group(self) -> None:
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def wait(self, timeout: float | None) -> RunRecord:
        try:
            rc = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill_group()
            self.popen.wait()
            self._reader.join(timeout=10)
            raise AssertionError(f"timed out after {timeout} s: {' '.join(self.cmd)}\n{self.output[-4000:]}") \
                from None
        self._reader.join(timeout=10)
        return RunRecord(self.cmd, rc, self.output, time.monotonic() - self.t0)


def _environment(env: Mapping[str, str] | None) -> dict[str, str]:
    out = {**os.environ, **(env or {})}
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS", "COMPSCOPE_NUM_THREADS"):
        out.setdefault(k, "1")  # small runs beside each other on shared cores
    return out


def kill_and_resume(
    cmd: Sequence[str | os.PathLike],
    *,
    kill_when: Condition,
    resume_cmd: Sequence[str | os.PathLike] | None = None,
    reference_cmd: Sequence[str | os.PathLike] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
    timeout: float = 300.0,
    poll: float = 0.02,
    after_kill: Callable[[], Any] | None = None,
) -> KillResumeResult:
    """Run ``cmd``, SIGKILL it (its whole process group) as soon as ``kill_when`` holds, then run ``resume_cmd``
    (default: ``cmd + ["--resume"]``) to completion; ``reference_cmd`` (the same job uninterrupted, writing
    elsewhere) runs beside the interrupted one.

    Raises AssertionError when the run ends before the kill point is reached (make the job longer or the
    point earlier), when the kill point is not reached in ``timeout`` seconds, or when the resumed or
    reference run fails. ``after_kill()`` runs between the kill and the resume (to look at what the killed run
    left); its value is ``extra["after_kill"]``. Comparing the outputs is the caller's part.
    """
    env_ = _environment(env)
    ref = _Proc(reference_cmd, env_, cwd) if reference_cmd is not None else None
    proc = _Proc(cmd, env_, cwd)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.popen.poll() is not None:
                rec = proc.wait(timeout)
                raise AssertionError(
                    f"the run ended (exit {rec.returncode}) before the kill point ({kill_when.__doc__}) was reached: "
                    f"make the job longer or kill earlier\n{rec.output[-4000:]}")
            if kill_when(proc.output):
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"kill point ({kill_when.__doc__}) not reached in {timeout} s\n"
                                     f"{proc.output[-4000:]}")
            time.sleep(poll)
        killed_after = time.monotonic() - proc.t0
        proc.kill_group()
        killed = proc.wait(timeout)
        if killed.returncode != -signal.SIGKILL:
            raise AssertionError(f"the run was not killed (exit {killed.returncode}): it ended on its own "
                                 f"while being killed; make the job longer\n{killed.output[-4000:]}")
        extra = {"after_kill": after_kill()} if after_kill is not None else {}
        resumed = _Proc(list(resume_cmd) if resume_cmd is not None else [*cmd, "--resume"], env_, cwd)
        resumed_rec = resumed.wait(timeout).check("the resumed run")
        ref_rec = ref.wait(timeout).check("the uninterrupted reference run") if ref is not None else None
    finally:  # never leave a process behind, whatever failed
        for p in (proc, ref):
            if p is not None and p.popen.poll() is None:
                p.kill_group()
                p.popen.wait()
    return KillResumeResult(killed, resumed_rec, ref_rec, killed_after, extra)


def kill_and_resume_training(
    cmd: Sequence[str | os.PathLike],
    run_dir: str | os.PathLike,
    *,
    after_epochs: int = 1,
    total_epochs: int | None = None,
    reference_cmd: Sequence[str | os.PathLike] | None = None,
    reference_dir: str | os.PathLike | None = None,
    resume_cmd: Sequence[str | os.PathLike] | None = None,
    final: str | None = "train_time.json",
    env: Mapping[str, str] | None = None,
    timeout: float = 300.0,
) -> KillResumeResult:
    """:func:`kill_and_resume` for a training run of :func:`compscope.train.fit` writing to ``run_dir``.

    The kill lands as soon as ``after_epochs`` epochs have ended with their checkpoint (``checkpoints/last.ckpt``
    and their ``metrics.jsonl`` row, which is written after the checkpoint), i.e. early in the next epoch, so the
    resumed run must redo part of an epoch. Checks that the run was cut short (no ``final`` file yet), that the
    resumed and the reference run wrote ``final`` (a file in the run folder; None: no check) and, with
    ``total_epochs``, that the resumed run's metrics hold every epoch. ``extra["epochs_before_kill"]`` holds
    the rows seen at the kill.
    """
    run_dir = Path(run_dir)
    metrics = run_dir / "metrics.jsonl"

    def at_kill() -> int:
        if final is not None and (run_dir / final).exists():
            raise AssertionError(f"the run had finished ({final} written) before the kill; make it longer")
        return len(_rows(metrics))

    res = kill_and_resume(
        cmd, resume_cmd=resume_cmd, reference_cmd=reference_cmd, env=env, timeout=timeout, after_kill=at_kill,
        kill_when=all_of(file_appears(run_dir / "checkpoints" / "last.ckpt"), rows_at_least(metrics, after_epochs)))
    rows = _rows(metrics)
    res.extra["epochs_before_kill"] = res.extra.pop("after_kill")
    if total_epochs is not None:
        if res.extra["epochs_before_kill"] >= total_epochs:
            raise AssertionError(f"the kill landed after the last epoch ({total_epochs}); make the run longer")
        epochs = sorted({int(r["epoch"]) for r in rows})
        if epochs != list(range(total_epochs)):
            raise AssertionError(f"after --resume the metrics hold epochs {epochs}, expected 0..{total_epochs - 1}")
    for what, folder in (("resumed", run_dir), ("reference", reference_dir)):
        if final is not None and folder is not None and not (Path(folder) / final).exists():
            raise AssertionError(f"the {what} run wrote no {Path(folder) / final}")
    return res


def _rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ----------------------------------------------------------------------------------------------------- comparing
def _state_dict(obj: Any) -> dict[str, Any]:
    import torch

    if isinstance(obj, (str, os.PathLike)):
        obj = torch.load(obj, map_location="cpu", weights_only=Path(obj).suffix != ".ckpt")
    if isinstance(obj, torch.nn.Module):
        return obj.state_dict()
    if isinstance(obj, Mapping) and "state_dict" in obj:
        return obj["state_dict"]
    return dict(obj)


def assert_same_weights(a: Any, b: Any, atol: float = 0.0) -> float:
    """Two models have the same tensors (same names, shapes; floating values within ``atol``).

    ``a``/``b`` are model packages (``model.pt``), Lightning checkpoints (``.ckpt``), modules or state dicts.
    Returns the largest absolute difference.
    """
    sa, sb = _state_dict(a), _state_dict(b)
    if sa.keys() != sb.keys():
        raise AssertionError(f"different tensors: only in a {sorted(sa.keys() - sb.keys())[:5]}, "
                             f"only in b {sorted(sb.keys() - sa.keys())[:5]}")
    import torch

    worst, where = 0.0, ""
    for k in sa:
        x, y = sa[k], sb[k]
        if not hasattr(x, "shape"):
            continue
        if x.shape != y.shape:
            raise AssertionError(f"{k}: shape {tuple(x.shape)} != {tuple(y.shape)}")
        if not x.is_floating_point():
            if not bool((x == y).all()):
                raise AssertionError(f"{k}: integer tensors differ")
            continue
        if x.numel():
            nx, ny = x.isnan(), y.isnan()
            if not torch.equal(nx, ny):  # NaN where the other has a number (NaN in both: an unset buffer)
                raise AssertionError(f"{k}: NaN in one run only")
            if bool(nx.all()):
                continue
            d = float((x.double() - y.double())[~nx].abs().max())
            if d > worst:
                worst, where = d, k
    if worst > atol:
        raise AssertionError(f"weights differ by {worst:.3e} > {atol:.1e} (largest in {where})")
    return worst


def assert_same_metrics(a: str | os.PathLike, b: str | os.PathLike, keys: Sequence[str] | None = None,
                        rtol: float = 1e-7, atol: float = 0.0) -> None:
    """Two runs' ``metrics.jsonl`` (run folders or files) hold the same metrics epoch by epoch.

    A resumed run may hold an epoch twice (the row of the interrupted run and the redone one); the last row of
    each epoch counts. Compared keys: ``keys``, or every key both have except wall time (``time_s``).
    """
    def last_per_epoch(p) -> dict[int, dict]:
        p = Path(p)
        rows = _rows(p / "metrics.jsonl" if p.is_dir() else p)
        return {int(r["epoch"]): r for r in rows}

    ra, rb = last_per_epoch(a), last_per_epoch(b)
    if not ra or ra.keys() != rb.keys():
        raise AssertionError(f"different epochs: {sorted(ra)} vs {sorted(rb)}")
    for e in ra:
        names = keys or sorted((set(ra[e]) & set(rb[e])) - {"time_s"})
        for k in names:
            x, y = float(ra[e][k]), float(rb[e][k])
            if not abs(x - y) <= atol + rtol * abs(y):
                raise AssertionError(f"epoch {e}: {k} = {x!r} vs {y!r}")
