"""compscope.runtime: where the thread count comes from, what it sets, the wait policy, the free-core choice."""

import os
import subprocess
import sys
import time

import numba
import pytest
import torch

from compscope import runtime
from compscope.errors import CompscopeError
from compscope.runtime import ENV_VAR, choose_threads, configure_threads, resolve_threads


@pytest.fixture(autouse=True)
def _restore_one_thread(monkeypatch):
    for key in (ENV_VAR, "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS",
                "OMP_WAIT_POLICY", "KMP_BLOCKTIME"):
        if key in os.environ:
            monkeypatch.setenv(key, os.environ[key])  # restored after the test
    yield
    monkeypatch.undo()
    configure_threads(1)


def test_explicit_n_sets_torch_numba_and_the_environment_of_children():
    assert configure_threads(2) == 2
    assert torch.get_num_threads() == 2
    assert numba.get_num_threads() == min(2, numba.config.NUMBA_NUM_THREADS)
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        assert os.environ[key] == "2"
    child = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                           capture_output=True, text=True, timeout=120)
    assert child.stdout.strip() == "2", child.stderr
    assert runtime.thread_report()["source"] == "argument"


def test_environment_variable_wins_over_the_free_cores_and_an_argument_over_it(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "1")
    assert resolve_threads(busy=0.0) == (1, ENV_VAR)
    assert configure_threads() == 1 and torch.get_num_threads() == 1
    assert resolve_threads(2) == (2, "argument")


@pytest.mark.parametrize("value", ["0", "-3", "two", "1.5"])
def test_bad_thread_counts_are_refused_with_a_hint(monkeypatch, value):
    monkeypatch.setenv(ENV_VAR, value)
    with pytest.raises(CompscopeError, match=ENV_VAR) as info:
        configure_threads()
    assert info.value.hint
    with pytest.raises(CompscopeError, match="positive"):
        configure_threads(0)


@pytest.mark.parametrize(("cores", "busy", "expected"), [
    (2, 0.0, 2), (2, 0.2, 2), (2, 0.3, 1), (2, 1.0, 1), (2, 1.6, 1), (2, 2.0, 1), (4, 1.2, 3), (4, 1.5, 2), (1, 0.0, 1),
    (16, 0.0, 16),
])
def test_free_core_choice(cores, busy, expected):
    assert choose_threads(cores, busy) == expected


def test_free_cores_decide_without_a_variable(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cores = runtime.available_cores()
    assert configure_threads(busy=1.0) == max(1, cores - 1) == torch.get_num_threads()
    assert configure_threads(busy=0.0) == cores
    # what configure_threads wrote to OMP_NUM_THREADS is not mistaken for the user's choice ...
    assert resolve_threads(busy=1.0)[0] == max(1, cores - 1)
    # ... but the user's own value is honoured
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert resolve_threads(busy=0.0) == (1, "OMP_NUM_THREADS")


def test_busy_cores_sees_a_spinning_process():
    cores = runtime.available_cores()
    assert 0.0 <= runtime.busy_cores(0.05) <= cores
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        busy = max(runtime.busy_cores(0.2) for _ in range(3))
    finally:
        spin.kill()
        spin.wait()
    assert 0.5 <= busy <= cores


def test_wait_policy_defaults_keep_the_users_values(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setenv("KMP_BLOCKTIME", "200")
    assert runtime.set_wait_policy() == {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "200"}


def test_importing_compscope_sets_the_wait_policy_before_torch_loads_openmp():
    code = ("import os, compscope, torch; from compscope.runtime import thread_report; r = thread_report(); "
            "print(os.environ['OMP_WAIT_POLICY'], any('gomp' in x or 'iomp' in x for x in r['openmp_loaded']))")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.stdout.split() == ["PASSIVE", "True"], out.stderr
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**env, "OMP_WAIT_POLICY": "ACTIVE"})
    assert out.stdout.split()[0] == "ACTIVE", out.stderr


def test_fit_shares_a_free_core_choice_between_its_processes(monkeypatch):
    from compscope.train import TrainerConfig
    from compscope.train._trainer import _configure_threads

    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    chosen = resolve_threads()[0]
    assert _configure_threads(TrainerConfig(devices=2)) == max(1, chosen // 2)
    assert _configure_threads(TrainerConfig(devices=2, num_threads=2)) == 2  # per process, as given
    monkeypatch.setenv(ENV_VAR, "2")
    assert _configure_threads(TrainerConfig(devices=2)) == 2  # COMPSCOPE_NUM_THREADS is per process


def test_one_core_pins_the_process_and_restores_its_affinity():
    import os
    import threading

    from compscope.runtime import one_core

    before = os.sched_getaffinity(0)
    started, stop = threading.Event(), threading.Event()
    worker = threading.Thread(target=lambda: started.set() or stop.wait(10))  # a thread that exists before
    worker.start()
    started.wait(5)
    try:
        with one_core() as pinned:
            assert pinned and len(os.sched_getaffinity(0)) == 1 and os.sched_getaffinity(0) <= before
            assert os.sched_getaffinity(worker.native_id) == os.sched_getaffinity(0)  # every thread, not only this
        assert os.sched_getaffinity(0) == before and os.sched_getaffinity(worker.native_id) == before
    finally:
        stop.set()
        worker.join()
    with pytest.raises(RuntimeError), one_core():  # restored on an error too
        raise RuntimeError("x")
    assert os.sched_getaffinity(0) == before
