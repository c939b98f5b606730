import importlib.util
from pathlib import Path

import pytest
import torch

# small models on a shared 2-core machine: one intra-op thread avoids spin-wait contention (20x here)
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def pde_cache(tmp_path_factory):
    """One generated-data cache for the whole session (tests never touch the user cache)."""
    return tmp_path_factory.mktemp("pde_cache")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, pde_cache):
    """A tiny MP-PDE trained on E1 at nx=40 (a few seconds): (checkpoint, out_dir)."""
    from compscope.pde import train

    out = tmp_path_factory.mktemp("tiny_run")
    ckpt = train("E1", 40, out, model="mp-pde-tiny", n_train=16, n_valid=4, cache=str(pde_cache), max_epochs=4,
                 batch_size=8, repeat=8, max_unroll=0, lr=3e-3, workers=1, progress=False)
    return ckpt, out


BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_benchmark(name: str):
    """Import ``benchmarks/<name>.py`` as a module (its helpers are tested without running the benchmark)."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
