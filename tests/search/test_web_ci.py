"""The browser test cannot silently vanish from CI: with CI=true a missing chromium fails it; elsewhere it skips."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

WEB_TEST = Path(__file__).with_name("test_web.py")


def _pytest_web(ci: str | None, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update({"COMPSCOPE_CHROMIUM": str(tmp_path / "no-chromium"), "COMPSCOPE_CHROMEDRIVER": str(tmp_path / "no")})
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", str(WEB_TEST)],
                          env=env, capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[2])


@pytest.mark.parametrize(("ci", "fails"), [("true", True), (None, False)], ids=["CI=true", "no-CI"])
def test_missing_browser_fails_in_ci_and_skips_elsewhere(ci, fails, tmp_path):
    r = _pytest_web(ci, tmp_path)
    out = r.stdout + r.stderr
    if fails:
        assert r.returncode == 1 and "CI=true but chromium/chromedriver not installed" in out, out[-3000:]
    else:
        assert r.returncode == 0 and "skipped" in out and "chromium/chromedriver not installed" in out, out[-3000:]
