import pytest
import torch

# small models on a shared 2-core machine: one intra-op thread avoids spin-wait contention (20x here)
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def pde_cache(tmp_path_factory):
    """One generated-data cache for the whole session (tests never touch the user cache)."""
    return tmp_path_factory.mktemp("pde_cache")


def tiny_config(cache, model: str = "mp-pde-tiny", **sections) -> dict:
    """A few-second PDE training config on E1 at nx=40; ``sections`` update its sections (``data={...}``)."""
    cfg = {"seed": 0, "model": model,
           "data": {"equation": "E1", "nx": 40, "n_train": 8, "n_valid": 4, "cache": str(cache), "batch_size": 8,
                    "workers": 1},
           "module": {},
           "trainer": {"max_epochs": 1, "progress_bar": False, "num_threads": 1}}
    for name, values in sections.items():
        cfg[name] = {**cfg[name], **values} if isinstance(values, dict) else values
    return cfg


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, pde_cache):
    """A tiny MP-PDE trained on E1 at nx=40 (a few seconds): (best checkpoint, run folder)."""
    from compscope.pde import train

    out = tmp_path_factory.mktemp("tiny_run")
    cfg = tiny_config(pde_cache, data={"n_train": 16, "repeat": 8}, module={"max_unroll": 0, "lr": 3e-3},
                      trainer={"max_epochs": 4})
    return train(cfg, out=out).best, out
