"""Every shipped configs/generate/*.yaml resolves (every section checked against its constructor) and builds."""

from pathlib import Path

import pytest

from compscope.generate import MoleculeGenerator, build, resolve_config
from compscope.train import load_yaml

CONFIGS = sorted((Path(__file__).parents[2] / "configs" / "generate").glob("*.yaml"))


def test_configs_exist():
    assert len(CONFIGS) >= 3


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_resolves(path):
    cfg = resolve_config(load_yaml(path))
    assert cfg["out"].startswith("runs/generate/")
    assert cfg["data"]["init_args"]["condition"] == cfg["model"]["init_args"]["condition"]
    assert cfg["trainer"]["ema_decay"] == 0.999 and cfg["trainer"]["num_threads"] == 1


@pytest.mark.parametrize("path", CONFIGS[:1], ids=lambda p: p.name)
def test_config_builds(path, qm9):
    module, dm, trainer = build(load_yaml(path))
    assert isinstance(module.model, MoleculeGenerator)
    assert dm.condition == module.model.condition
    assert module.model.size_hist.sum() > 0 and trainer.max_time_minutes == 60
