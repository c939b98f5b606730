"""run_folder: the one place a training job's run folder is resolved from --out and the config."""

import pytest

from compscope.errors import ConfigError
from compscope.train import run_folder


def test_out_beats_the_config_and_is_written_back(tmp_path):
    cfg = {"out": "from_config"}
    assert run_folder(cfg, tmp_path / "cli") == str(tmp_path / "cli") == cfg["out"]
    cfg = {"out": "from_config"}
    assert run_folder(cfg) == "from_config" == cfg["out"]


def test_no_folder_anywhere_is_a_config_error_with_an_example():
    with pytest.raises(ConfigError, match="no run folder") as err:
        run_folder({"out": None}, example="runs/x")
    assert "--out runs/x" in err.value.hint
    with pytest.raises(ConfigError, match="no run folder"):
        run_folder({})
