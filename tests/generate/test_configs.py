"""Every shipped configs/generate/*.yaml builds (model, data module, run options)."""

from pathlib import Path

import pytest

from compscope.generate import MoleculeGenerator, build_run, load_config

CONFIGS = sorted((Path(__file__).parents[2] / "configs" / "generate").glob("*.yaml"))


def test_configs_exist():
    assert len(CONFIGS) >= 3


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_builds(path):
    module, dm, run = build_run(load_config(path))
    assert isinstance(module.model, MoleculeGenerator)
    assert dm.condition == module.model.condition
    assert run.out and run.threads >= 1
