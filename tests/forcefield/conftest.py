from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "forcefield"
TRAIN = FIXTURES / "ethanol_train_60.xyz"
TEST = FIXTURES / "ethanol_test_20.xyz"


def tiny_config(out: Path, **over) -> dict:
    """A seconds-long float64 config in the shipped format; ``over`` updates a section's ``init_args`` (the
    trainer's keys directly) or replaces a top-level value."""
    cfg = {
        "seed": 0,
        "dtype": "float64",
        "out": str(out),
        "model": {"preset": "tiny", "init_args": {"r_max": 4.0}},
        "data": {"init_args": {"train": str(TRAIN), "test": str(TEST), "n_train": 20, "n_valid": 10,
                               "batch_size": 5}},
        "task": {"init_args": {"lr": 0.005}},
        "trainer": {"max_epochs": 2, "progress_bar": False, "num_threads": 1, "ema_decay": 0.9},
    }
    for section, values in over.items():
        if isinstance(values, dict) and section == "trainer":
            cfg[section].update(values)
        elif isinstance(values, dict):
            cfg[section]["init_args"].update(values)
        else:
            cfg[section] = values
    return cfg


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """A tiny model trained once for the whole session (calculator, export, eval tests)."""
    from compscope.forcefield import fit

    out = tmp_path_factory.mktemp("ff") / "run"
    return fit(tiny_config(out, trainer={"max_epochs": 3}))
