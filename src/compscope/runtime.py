"""Threads on a shared CPU: one place that sets torch, numba and OpenMP threads and a passive wait policy.

Every ``compscope`` command goes through :func:`configure_threads` (the root ``--threads`` option), and so does
:func:`compscope.train.fit` for library use. On a busy machine, more compute threads than free cores, or threads
that spin while they wait, make every parallel region wait for a thread the OS has parked: MD of a small molecule
then runs many times slower than with one thread. So compscope

- chooses the thread count from the cores that are free now (``n = max(1, affinity cores - busy cores)``, busy
  measured from ``/proc/stat`` over a short window; ``COMPSCOPE_NUM_THREADS``, ``compscope --threads N``, a
  user's own ``OMP_NUM_THREADS`` or an explicit ``n`` win over that choice);
- asks OpenMP threads to sleep instead of spinning when idle (``OMP_WAIT_POLICY=PASSIVE``, ``KMP_BLOCKTIME=0``
  for Intel's runtime), unless the user set those variables.

What can be changed when:

- torch intra-op threads (``torch.set_num_threads``): any time;
- torch inter-op threads: once, before any inter-op work (later calls leave them as they are);
- numba threads (``numba.set_num_threads``): any time, but never above ``NUMBA_NUM_THREADS`` as it was when
  numba was imported (set here when numba is not imported yet);
- the OpenMP wait policy: read once, when the OpenMP runtime is loaded (``import torch``). Importing
  ``compscope`` sets its default, so it holds when ``compscope`` (or the CLI) comes before ``torch``; after that
  it only reaches child processes. :func:`thread_report` says which is the case.

Child processes inherit ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``, ``NUMBA_NUM_THREADS`` and the wait policy
from the environment this module sets.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time

from compscope.errors import ConfigError

__all__ = ["ENV_VAR", "WAIT_POLICY", "set_wait_policy", "available_cores", "busy_cores", "choose_threads",
           "resolve_threads", "configure_threads", "thread_report", "one_core"]

ENV_VAR = "COMPSCOPE_NUM_THREADS"
"""Environment variable that fixes the thread count (what ``compscope --threads N`` sets)."""

WAIT_POLICY = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}
"""Environment defaults that make idle OpenMP threads sleep instead of spinning (a user's own values win)."""

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# environment values this module wrote itself: a later call must not mistake them for the user's choice
_OURS: dict[str, str] = {}
# the free-core choice of this process (measured once; an explicit n or COMPSCOPE_NUM_THREADS still wins)
_CHOSEN: int | None = None
_STATE: dict[str, object] = {}


def set_wait_policy() -> dict[str, str]:
    """Set the passive wait-policy defaults in ``os.environ`` (values the user set are kept); returns them."""
    for key, value in WAIT_POLICY.items():
        if key not in os.environ:
            os.environ[key] = value
            _OURS[key] = value
    return {key: os.environ[key] for key in WAIT_POLICY}


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity; ``os.cpu_count()`` where affinity is unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@contextlib.contextmanager
def one_core():
    """Pin every thread of this process to one of its cores for the ``with`` block (restored after); yields
    whether it could.

    For timing a one-thread engine fairly: OpenMM's CPU platform with ``Threads=1`` still hands each step to a
    worker thread, and on an idle machine the two land on different cores, so every step pays a cross-core wake-up
    (measured: 22-atom implicit solvent 250 ns/day unpinned, 1,330 pinned, on this machine). Linux affinity is per
    thread, so the threads the engine already started (``/proc/self/task``) are pinned too.
    """
    def restore(saved: dict) -> None:
        for t, cpus in saved.items():
            try:
                os.sched_setaffinity(t, cpus)
            except OSError:  # the thread has ended
                pass

    before: dict = {}
    try:
        core = {min(os.sched_getaffinity(0))}
        for t in (int(t) for t in os.listdir("/proc/self/task")):
            before[t] = os.sched_getaffinity(t)
            os.sched_setaffinity(t, core)
    except (AttributeError, OSError, ValueError):
        restore(before)
        yield False
        return
    try:
        yield True
    finally:
        restore(before)


def _cpu_times(cpus: set[int] | None) -> tuple[float, float] | None:
    """(busy, total) jiffies summed over ``cpus`` (all when None) from ``/proc/stat``; None where unreadable."""
    busy = total = 0.0
    try:
        with open("/proc/stat") as fh:
            for line in fh:
                if not line.startswith("cpu") or line.startswith("cpu "):
                    continue
                name, *fields = line.split()
                if cpus is not None and int(name[3:]) not in cpus:
                    continue
                vals = [float(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
                idle = vals[3] + vals[4]
                total += sum(vals)
                busy += sum(vals) - idle
    except (OSError, ValueError):
        return None
    return (busy, total) if total > 0 else None


def busy_cores(sample_s: float = 0.1) -> float:
    """How many of this process's cores other work keeps busy now (0 .. :func:`available_cores`).

    Measured from ``/proc/stat`` over ``sample_s`` seconds while this process sleeps, so its own work does not
    count. Falls back to the 1-minute load average where ``/proc/stat`` cannot be read.
    """
    n = available_cores()
    try:
        cpus: set[int] | None = set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = None
    first = _cpu_times(cpus)
    if first is not None:
        time.sleep(sample_s)
        second = _cpu_times(cpus)
        if second is not None and second[1] > first[1]:
            frac = (second[0] - first[0]) / (second[1] - first[1])
            return min(float(n), max(0.0, frac * n))
    try:
        return min(float(n), max(0.0, os.getloadavg()[0]))
    except (AttributeError, OSError):
        return 0.0


def choose_threads(cores: int | None = None, busy: float | None = None) -> int:
    """Threads for the free cores: ``max(1, cores - busy)``, counting a core as free when 3/4 of it is idle.

    Args:
        cores: cores this process may use (default :func:`available_cores`).
        busy: cores kept busy by other work (default: measured now by :func:`busy_cores`).
    """
    cores = available_cores() if cores is None else int(cores)
    busy = busy_cores() if busy is None else float(busy)
    return max(1, min(cores, math.floor(cores - busy + 0.25)))


def _positive(value: object, where: str) -> int:
    try:
        n = int(str(value).strip())
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"{where}={value!r}: the number of threads must be a positive integer",
                          hint=f"e.g. {ENV_VAR}=1, or unset it to use the free cores")
    return n


def resolve_threads(n: int | None = None, busy: float | None = None) -> tuple[int, str]:
    """The thread count and where it came from, without setting anything.

    Order: explicit ``n`` > ``$COMPSCOPE_NUM_THREADS`` > a user's ``$OMP_NUM_THREADS`` (not one set here) > the
    free cores (measured once per process, or from ``busy`` when given).
    """
    global _CHOSEN
    if n is not None:
        return _positive(n, "threads"), "argument"
    if os.environ.get(ENV_VAR, "").strip():
        return _positive(os.environ[ENV_VAR], ENV_VAR), ENV_VAR
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if omp and _OURS.get("OMP_NUM_THREADS") != omp:
        try:
            return _positive(omp, "OMP_NUM_THREADS"), "OMP_NUM_THREADS"
        except ConfigError:
            pass  # not a plain number (OpenMP allows lists): choose ourselves
    if busy is not None:
        return choose_threads(busy=busy), f"free cores ({available_cores()} cores, {busy:.2f} busy)"
    if _CHOSEN is None:
        _CHOSEN = choose_threads()
    return _CHOSEN, f"free cores ({available_cores()} cores)"


def _set_env(key: str, value: str) -> None:
    os.environ[key] = value
    _OURS[key] = value


def configure_threads(n: int | None = None, *, busy: float | None = None) -> int:
    """Set every thread pool compscope uses to ``n`` threads (default: see :func:`resolve_threads`); returns n.

    Sets torch intra-op (and, while still possible, inter-op) threads when torch is imported, numba's threads,
    and ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``/``OPENBLAS_NUM_THREADS`` (plus ``NUMBA_NUM_THREADS`` before numba
    is imported) for libraries loaded later and for child processes; also the passive wait-policy defaults.
    Torch is not imported here: a command that never uses it does not pay for it.

    Args:
        n: threads (>= 1); None chooses as :func:`resolve_threads` says.
        busy: cores kept busy by other work, instead of measuring them (for the free-core choice).
    """
    n, source = resolve_threads(n, busy)
    set_wait_policy()
    for key in _THREAD_VARS:
        if not (key == "OMP_NUM_THREADS" and source == key):  # the user's own OMP_NUM_THREADS stays theirs
            _set_env(key, str(n))
    numba_threads = None
    if "numba" in sys.modules:
        import numba

        numba_threads = max(1, min(n, numba.config.NUMBA_NUM_THREADS))
        numba.set_num_threads(numba_threads)
    elif "NUMBA_NUM_THREADS" not in os.environ or _OURS.get("NUMBA_NUM_THREADS") == os.environ["NUMBA_NUM_THREADS"]:
        _set_env("NUMBA_NUM_THREADS", str(n))
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(n)
        if torch.get_num_interop_threads() != n and not _STATE.get("interop_fixed"):
            try:
                torch.set_num_interop_threads(n)
            except RuntimeError:  # inter-op work already started, or set before: leave it
                pass
            _STATE["interop_fixed"] = True
    _STATE.update(threads=n, source=source, numba_threads=numba_threads)
    return n


def _openmp_runtimes() -> list[str]:
    """File names of the OpenMP runtimes loaded in this process (Linux; [] elsewhere)."""
    try:
        with open("/proc/self/maps") as fh:
            libs = {line.split()[-1] for line in fh if "omp" in line and ".so" in line}
    except OSError:
        return []
    return sorted(os.path.basename(p) for p in libs if any(k in os.path.basename(p) for k in ("gomp", "iomp")))


def thread_report() -> dict[str, object]:
    """What is in effect now: threads and where they came from, torch/numba pools, the wait policy."""
    out: dict[str, object] = {"threads": _STATE.get("threads"), "source": _STATE.get("source"),
                              "available_cores": available_cores(),
                              "wait_policy": {k: os.environ.get(k) for k in WAIT_POLICY},
                              "openmp_loaded": _openmp_runtimes()}
    if "torch" in sys.modules:
        import torch

        out["torch_threads"] = torch.get_num_threads()
        out["torch_interop_threads"] = torch.get_num_interop_threads()
    if "numba" in sys.modules:
        import numba

        out["numba_threads"] = numba.get_num_threads()
    return out
