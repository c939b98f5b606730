"""The README's main job (`compscope quickstart`) runs end to end (here with a tiny budget)."""

import json

import pytest
from typer.testing import CliRunner

from compscope.cli import app

pytestmark = pytest.mark.slow


def test_quickstart_end_to_end(tmp_path):
    out = tmp_path / "qs"
    res = CliRunner().invoke(app, ["quickstart", "--out", str(out), "--minutes", "0.1", "--md-steps", "20"])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["errors"]["test"]["frames"] == 100
    assert summary["md"]["steps"] == 20 and summary["md"]["replicas"] == 4
    for name in ("model.pt", "parity.png", "learning_curves.png", "errors.json"):
        assert (out / "run" / name).exists()
    assert "model.pt" in res.output
    # a second call reuses the trained model instead of training again
    res2 = CliRunner().invoke(app, ["quickstart", "--out", str(out), "--minutes", "0.1", "--md-steps", "0"])
    assert res2.exit_code == 0 and "reusing" in res2.output
