"""Every verb of the one CLI answers --help; `info` and `data verify` work."""

import typer
from typer.testing import CliRunner

from compscope.cli import app

from .conftest import SHARED_DATA

runner = CliRunner()


def _all_command_paths():
    root = typer.main.get_command(app)
    stack = [((), root)]
    while stack:
        path, cmd = stack.pop()
        yield path
        if hasattr(cmd, "commands"):  # a group (typer may vendor its own click)
            for name, sub in cmd.commands.items():
                stack.append(((*path, name), sub))


def test_help_on_every_verb():
    paths = list(_all_command_paths())
    verbs = {p[0] for p in paths if p}
    assert {"info", "data", "train", "eval", "export", "quickstart", "committee"} <= verbs
    for path in paths:
        res = runner.invoke(app, [*path, "--help"])
        assert res.exit_code == 0, (path, res.output)
        assert "Usage" in res.output


def test_info():
    res = runner.invoke(app, ["info"])
    assert res.exit_code == 0, res.output
    assert "torch" in res.output and "data directory" in res.output and "GPU" in res.output


def test_data_verify_and_list(tmp_path):
    res = runner.invoke(app, ["data", "list", "--path", str(tmp_path)])
    assert res.exit_code == 0 and "rmd17" in res.output
    if SHARED_DATA.exists():
        res = runner.invoke(app, ["data", "verify", "--path", str(SHARED_DATA)])
        assert res.exit_code == 0, res.output
    (tmp_path / "rmd17").mkdir()
    (tmp_path / "rmd17" / "ethanol_train.xyz").write_text("corrupt")
    res = runner.invoke(app, ["data", "verify", "rmd17", "--path", str(tmp_path)])
    assert res.exit_code == 1 and "checksum mismatch" in res.output
    res = runner.invoke(app, ["data", "verify", "nope"])
    assert res.exit_code != 0 and "unknown dataset" in res.output


def test_user_errors_exit_2_with_hint(tmp_path):
    res = runner.invoke(app, ["train", str(tmp_path / "missing.yaml")])
    assert res.exit_code == 2, res.output
    assert "error:" in res.output and "missing.yaml" in res.output


def test_set_overrides_reach_init_args():
    from compscope.cli._common import apply_overrides, parse_overrides
    from compscope.errors import ConfigError

    cfg = {"model": {"class_path": "x.Y", "init_args": {"a": 1}}, "trainer": {"max_epochs": 3}}
    new = apply_overrides(cfg, parse_overrides(["model.a=2", "trainer.max_epochs=5", "model.init_args.b=[1, 2]"]))
    assert new["model"]["init_args"] == {"a": 2, "b": [1, 2]} and new["trainer"]["max_epochs"] == 5
    assert cfg["model"]["init_args"] == {"a": 1}
    import pytest

    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_overrides(["novalue"])


def test_threads_option_sets_the_pools_of_every_command(monkeypatch):
    import torch

    from compscope.runtime import ENV_VAR

    monkeypatch.setenv(ENV_VAR, "1")  # the option writes it for later calls and child processes
    res = runner.invoke(app, ["--threads", "1", "info"])
    assert res.exit_code == 0, res.output
    assert "1 (from argument)" in res.output and "OMP_WAIT_POLICY=" in res.output
    assert torch.get_num_threads() == 1


def test_threads_option_refuses_zero():
    res = runner.invoke(app, ["--threads", "0", "info"])
    assert res.exit_code == 2
    assert "--threads" in res.output


def test_bad_thread_variable_is_a_user_error(monkeypatch):
    monkeypatch.setenv("COMPSCOPE_NUM_THREADS", "many")
    res = runner.invoke(app, ["info"])
    assert res.exit_code == 2
    assert "COMPSCOPE_NUM_THREADS" in res.output and "hint:" in res.output
